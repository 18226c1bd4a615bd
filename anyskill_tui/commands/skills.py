"""`anyskill skills ...`: the prompt library (add, list, show, edit, rm, import, export)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from anyskill_tui.commands._common import open_library, print_json, say, short_time
from anyskill_tui.errors import UserError
from anyskill_tui.store.enums import SkillStatus

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.store.library import Library
    from anyskill_tui.store.models import Skill

app = typer.Typer(
    help="The skill library: add, list, show, edit, remove, import and export prompts.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")]


def skill_ref(token: str) -> int | str:
    """A command-line skill reference: all digits is an id, anything else a prompt text."""
    token = token.strip()
    return int(token) if token.isdigit() else token


def _get(lib: Library, token: str) -> Skill:
    """Look a skill up by id, falling back to text for an all-digit prompt."""
    from anyskill_tui.errors import NotFoundError

    ref = skill_ref(token)
    try:
        return lib.get_skill(ref)
    except NotFoundError:
        if isinstance(ref, int):
            found = lib.find_skill(token)
            if found is not None:
                return found
        raise


def stdin_is_interactive() -> bool:
    """True when a person can answer a confirmation prompt (stdin is a terminal)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _skill_table(skills: list[Skill]) -> None:
    from rich.table import Table

    from anyskill_tui.commands._common import out_console

    table = Table(show_edge=False, pad_edge=False)
    for name, kw in (
        ("id", {"justify": "right"}),
        ("text", {}),
        ("weight", {"justify": "right"}),
        ("tags", {}),
        ("status", {}),
        ("updated", {}),
    ):
        table.add_column(name, **kw)
    for sk in skills:
        d = sk.to_dict()
        table.add_row(
            str(d["id"]), d["text"], f"{d['weight']:g}", ", ".join(d["tags"]), d["status"], short_time(d["updated_at"])
        )
    out_console().print(table)


@app.command("add")
def add(
    ctx: typer.Context,
    text: Annotated[
        str, typer.Argument(metavar="TEXT", help="The prompt, e.g. 'jump forward' (at most 300 characters).")
    ],
    weight: Annotated[float, typer.Option("--weight", "-w", help="Sampling weight, >= 0.")] = 1.0,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="A tag (repeatable).")] = None,
    notes: Annotated[str, typer.Option("--notes", help="Free-form notes.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Add a prompt to the library."""
    with open_library(ctx) as lib:
        sk = lib.add_skill(text, weight=weight, tags=tag or [], notes=notes)
    if as_json:
        print_json(sk.to_dict())
    else:
        say(f"added skill {sk.id}: {sk.text!r}")


@app.command("list")
def list_(
    ctx: typer.Context,
    search: Annotated[str | None, typer.Option("--search", "-s", help="Substring of text, notes or tags.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Only skills with this tag.")] = None,
    status: Annotated[SkillStatus | None, typer.Option("--status", case_sensitive=False)] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List skills."""
    with open_library(ctx) as lib:
        skills = lib.list_skills(search=search, tag=tag, status=status, limit=limit, offset=offset)
    if as_json:
        print_json([s.to_dict() for s in skills])
    elif not skills:
        say("no skills match" if (search or tag or status) else "no skills yet; add one with `anyskill skills add`")
    else:
        _skill_table(skills)


@app.command("show")
def show(
    ctx: typer.Context,
    skill: Annotated[str, typer.Argument(metavar="ID|TEXT", help="Skill id or prompt text.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one skill and its runs."""
    with open_library(ctx) as lib:
        sk = _get(lib, skill)
        runs = lib.list_runs(skill=sk.id)
    d = sk.to_dict()
    d["runs"] = [r.to_dict() for r in runs]
    if as_json:
        print_json(d)
        return
    from rich.table import Table

    from anyskill_tui.commands._common import print_fields

    con = print_fields(d, ("id", "text", "weight", "tags", "status", "notes", "created_at", "updated_at"))
    if runs:
        t = Table(title="runs", show_edge=False)
        for c in ("id", "kind", "engine", "status", "created"):
            t.add_column(c)
        for r in d["runs"]:
            t.add_row(str(r["id"]), r["kind"], r["engine"], r["status"], short_time(r["created_at"]))
        con.print(t)
    else:
        con.print("no runs yet")


@app.command("edit")
def edit(
    ctx: typer.Context,
    skill: Annotated[str, typer.Argument(metavar="ID|TEXT", help="Skill id or prompt text.")],
    text: Annotated[str | None, typer.Option("--text", help="New prompt text.")] = None,
    weight: Annotated[float | None, typer.Option("--weight", "-w", help="New weight, >= 0.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Add a tag (repeatable).")] = None,
    untag: Annotated[list[str] | None, typer.Option("--untag", help="Remove a tag (repeatable).")] = None,
    notes: Annotated[str | None, typer.Option("--notes", help="Replace the notes.")] = None,
    status: Annotated[SkillStatus | None, typer.Option("--status", case_sensitive=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a skill's text, weight, tags, notes or status."""
    if text is None and weight is None and not tag and not untag and notes is None and status is None:
        raise UserError("nothing to change; pass --text, --weight, --tag, --untag, --notes or --status")
    with open_library(ctx) as lib:
        sk = _get(lib, skill)
        sk = lib.edit_skill(
            sk.id,
            text=text,
            weight=weight,
            add_tags=tag or [],
            remove_tags=untag or [],
            notes=notes,
            status=status,
        )
    if as_json:
        print_json(sk.to_dict())
    else:
        say(f"updated skill {sk.id}: {sk.text!r}")


@app.command("rm")
def rm(
    ctx: typer.Context,
    skill: Annotated[str, typer.Argument(metavar="ID|TEXT", help="Skill id or prompt text.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a skill (its past runs stay, without a skill)."""
    with open_library(ctx) as lib:
        sk = _get(lib, skill)
        if not yes:
            if not stdin_is_interactive():
                raise UserError(f"not removing skill {sk.id} ({sk.text!r}): stdin is not a terminal; pass --yes")
            if not typer.confirm(f"remove skill {sk.id} ({sk.text!r})?", default=False, err=True):
                raise UserError("not removed", exit_code=1)
        lib.remove_skill(sk.id)
    say(f"removed skill {sk.id}: {sk.text!r}")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="AnySkill prompt file: YAML `texts:` list of {text, weight}.")],
    as_json: JsonOpt = False,
) -> None:
    """Import a prompt file, all or nothing."""
    from anyskill_tui.store.prompts import read_texts_file

    entries = read_texts_file(file)  # validate before touching the library
    with open_library(ctx) as lib:
        added = lib.import_texts(entries)
    if as_json:
        print_json([s.to_dict() for s in added])
    else:
        say(f"imported {len(added)} skill(s) from {file}")


@app.command("export")
def export(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="[FILE|-]", help="Where to write; '-' is stdout.")] = "-",
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Only skills with this tag.")] = None,
    status: Annotated[SkillStatus | None, typer.Option("--status", case_sensitive=False)] = None,
) -> None:
    """Export skills as an AnySkill prompt file (YAML `texts:` list of {text, weight})."""
    from anyskill_tui.store.prompts import dump_texts

    with open_library(ctx) as lib:
        items = lib.export_texts(tag=tag, status=status)
    content = dump_texts(items)
    if file == "-":
        sys.stdout.write(content)
        sys.stdout.flush()
        return
    dest = Path(file)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent if str(dest.parent) else ".")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, dest)
    except OSError as exc:
        raise UserError(f"cannot write {dest} ({exc.strerror})") from None
    say(f"exported {len(items)} skill(s) to {dest}")


def _store_checkpoint_metrics(lib: Library, ckpt_id: int, metrics: dict) -> None:
    """Merge ``metrics`` into a Checkpoint row's metrics (``Library.update_checkpoint`` when the store has it)."""
    update = getattr(lib, "update_checkpoint", None)
    if update is not None:
        update(ckpt_id, metrics=metrics)
        return
    import json

    from anyskill_tui.store.models import Checkpoint

    with lib._write() as s:  # the store has no public update for checkpoint rows yet
        row = s.get(Checkpoint, ckpt_id)
        if row is None:
            raise UserError(f"no checkpoint row {ckpt_id}")
        merged = {**row.metrics, **metrics}
        row.metrics_json = json.dumps(merged, default=str)
        s.add(row)


@app.command("score")
def score(
    ctx: typer.Context,
    skill: Annotated[str, typer.Argument(metavar="ID|TEXT", help="Skill id or prompt text.")],
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="Checkpoint file (default: the skill's newest).")
    ] = None,
    envs: Annotated[int | None, typer.Option("--envs", min=1, help="Envs of the evaluation episode.")] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="auto | cpu | gpu.")] = None,
    clip_weights: Annotated[Path | None, typer.Option("--clip-weights", help="Local CLIP weights file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-evaluate a skill checkpoint (one deterministic episode, mean CLIP similarity) and store the score."""
    from anyskill_tui.commands._common import workspace
    from anyskill_tui.commands.train import check_clip_weights
    from anyskill_tui.core.learn.skill_train import score_checkpoint
    from anyskill_tui.store.models import utcnow

    ws = workspace(ctx)
    weights = check_clip_weights(clip_weights)
    with open_library(ctx) as lib:
        sk = _get(lib, skill)
        rows = [(r, c) for r in lib.list_runs(skill=sk.id, kind="skill") for c in lib.list_checkpoints(r.id)]
        if checkpoint is not None:
            target = str(Path(checkpoint).expanduser().resolve())
            row = next((c for _, c in rows if str(Path(c.path).resolve()) == target), None)
            path = target
        else:
            if not rows:
                raise UserError(f"skill {sk.id} ({sk.text!r}) has no checkpoints yet; train it with `anyskill train`")
            _, row = max(rows, key=lambda rc: (rc[1].created_at, rc[1].id))
            path = row.path
    if not Path(path).is_file():
        raise UserError(f"checkpoint {path} does not exist")
    ev = score_checkpoint(path, workspace=ws.root, num_envs=envs, engine=engine, clip_weights=weights)
    data = {
        "skill": sk.id,
        "checkpoint": path,
        "clip_score": ev["clip_score"],
        "episode_length": ev["episode_length"],
        "frames": ev["frames"],
    }
    if row is not None:
        with open_library(ctx) as lib:
            _store_checkpoint_metrics(
                lib,
                row.id,
                {"clip_score": ev["clip_score"], "clip_similarity": ev["clip_score"], "scored_at": str(utcnow())},
            )
        data["checkpoint_id"] = row.id
    if as_json:
        print_json(data)
    else:
        stored = f" (stored on checkpoint {row.id})" if row is not None else " (not a library checkpoint: not stored)"
        say(f"skill {sk.id} {sk.text!r}: clip_score {ev['clip_score']:.4f} over {ev['frames']} frames{stored}")
