"""`anyskill runs ...`: training runs in the library (list, show)."""

from __future__ import annotations

from typing import Annotated

import typer

from anyskill_tui.commands._common import open_library, print_json, say, short_time
from anyskill_tui.store.enums import Engine, RunKind, RunStatus

app = typer.Typer(help="Training runs: list and inspect.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")]


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[RunStatus | None, typer.Option("--status", case_sensitive=False)] = None,
    kind: Annotated[RunKind | None, typer.Option("--kind", case_sensitive=False)] = None,
    engine: Annotated[Engine | None, typer.Option("--engine", case_sensitive=False)] = None,
    skill: Annotated[str | None, typer.Option("--skill", help="Skill id or prompt text.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    from anyskill_tui.commands.skills import skill_ref

    with open_library(ctx) as lib:
        runs = lib.list_runs(
            status=status, kind=kind, engine=engine, skill=skill_ref(skill) if skill else None, limit=limit
        )
        texts = {s.id: s.text for s in lib.list_skills()} if runs and not as_json else {}
    if as_json:
        print_json([r.to_dict() for r in runs])
        return
    if not runs:
        say("no runs match" if (status or kind or engine or skill) else "no runs yet")
        return
    from rich.table import Table

    from anyskill_tui.commands._common import out_console

    t = Table(show_edge=False, pad_edge=False)
    for c in ("id", "kind", "engine", "status", "prio", "skill", "created", "heartbeat"):
        t.add_column(c)
    for r in runs:
        sk = f"{r.skill_id}: {texts.get(r.skill_id, '')}" if r.skill_id is not None else ""
        d = r.to_dict()
        t.add_row(
            str(r.id),
            r.kind,
            r.engine,
            r.status,
            str(r.priority),
            sk,
            short_time(d["created_at"]),
            short_time(d["heartbeat_at"]),
        )
    out_console().print(t)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="ID", help="Run id.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one run and its checkpoints."""
    with open_library(ctx) as lib:
        run = lib.get_run(run_id)
        ckpts = lib.list_checkpoints(run_id)
        skill = lib.find_skill(run.skill_id) if run.skill_id is not None else None
    d = run.to_dict()
    d["skill_text"] = skill.text if skill else None
    d["checkpoints"] = [c.to_dict() for c in ckpts]
    if as_json:
        print_json(d)
        return
    import json

    from rich.table import Table

    from anyskill_tui.commands._common import out_console

    con = out_console()
    grid = Table.grid(padding=(0, 2))
    for key in (
        "id",
        "kind",
        "engine",
        "status",
        "priority",
        "skill_id",
        "skill_text",
        "pid",
        "run_dir",
        "created_at",
        "started_at",
        "ended_at",
        "heartbeat_at",
        "error",
    ):
        if d[key] is not None:
            grid.add_row(key, str(d[key]))
    grid.add_row("config", json.dumps(d["config"], sort_keys=True) if d["config"] else "{}")
    con.print(grid)
    if ckpts:
        t = Table(title="checkpoints", show_edge=False)
        for c in ("id", "step", "path", "metrics", "created"):
            t.add_column(c)
        for c in d["checkpoints"]:
            metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in c["metrics"].items())
            t.add_row(str(c["id"]), str(c["step"]), c["path"], metrics, short_time(c["created_at"]))
        con.print(t)
    else:
        con.print("no checkpoints yet")
