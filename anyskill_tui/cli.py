"""The `anyskill` command line: Typer root. A bare `anyskill` opens the TUI.

Start-up must stay fast: nothing here (or in `anyskill_tui.commands.*` at module level) imports torch,
mujoco, warp, Textual or SQLModel. Each command imports what it needs inside its function.

Errors: any :class:`anyskill_tui.errors.UserError` raised by a command is caught once, by the root
group (:class:`_RootGroup`), printed as one red ``error: ...`` line on stderr, and turned into its
exit code (1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from anyskill_tui.commands import llc, motions, runs, skills
from anyskill_tui.commands import proxy as proxy_cmd
from anyskill_tui.commands import queue as queue_cmd
from anyskill_tui.commands import replay as replay_cmd
from anyskill_tui.commands import train as train_cmd
from anyskill_tui.commands._common import CliState, err_console, print_json, say, state
from anyskill_tui.errors import UserError
from anyskill_tui.workspace import HOME_ENV


def report_user_error(exc: UserError) -> None:
    """Print ``error: <message>`` in red on stderr, on one line."""
    from rich.markup import escape

    err_console().print(f"[bold red]error:[/bold red] {escape(exc.message)}")


class _RootGroup(TyperGroup):
    """The root group: turns a UserError from any command into one red line and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            report_user_error(exc)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=_RootGroup,
    help="anyskill: author open-vocabulary physical skills for a simulated humanoid.",
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    no_args_is_help=False,
)
app.add_typer(motions.app, name="motions")
app.add_typer(skills.app, name="skills")
app.add_typer(runs.app, name="runs")
app.add_typer(llc.app, name="llc")
app.command("queue")(queue_cmd.queue)
app.command("worker")(queue_cmd.worker)
app.command("train")(train_cmd.train)
app.add_typer(proxy_cmd.app, name="proxy")
app.command("replay")(replay_cmd.replay)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            envvar=HOME_ENV,
            help="Workspace folder (holds skills.db, configs/, runs/). Default: the current directory.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """With no command, open the TUI on the workspace."""
    ctx.obj = CliState(workspace_opt=workspace)
    if ctx.invoked_subcommand is None:
        from anyskill_tui.workspace import find_workspace

        ws = find_workspace(workspace)  # no workspace: one clear error, nothing opens
        os.environ[HOME_ENV] = str(ws.root)
        from anyskill_tui.app import run_app

        run_app()


@app.command("init")
def init(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Argument(metavar="[DIR]", help="Folder to make a workspace (default: --workspace or cwd)."),
    ] = None,
) -> None:
    """Create a workspace: skills.db, configs/ and runs/. Safe to re-run."""
    from anyskill_tui.workspace import init_workspace, workspace_dir

    target = directory if directory is not None else workspace_dir(state(ctx).workspace_opt)
    ws, created = init_workspace(target)
    if created:
        say(f"created workspace in {ws.root}")
    else:
        say(f"workspace already exists in {ws.root} (nothing to do)")


@app.command("info")
def info(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
) -> None:
    """Show the workspace, schema version, library counts, engines, GPU, CLIP weights and the default LLC."""
    from anyskill_tui import __version__
    from anyskill_tui.commands import _environment as env
    from anyskill_tui.commands._common import open_library, workspace
    from anyskill_tui.commands.train import default_llc_file, resolve_llc
    from anyskill_tui.errors import UserError
    from anyskill_tui.store.db import SCHEMA_VERSION

    ws = workspace(ctx)
    with open_library(ctx) as lib:
        counts = lib.counts()
        version = lib.schema_version
        try:  # the LLC `anyskill train` uses when none is named
            llc_path: str | None = str(resolve_llc(None, None, lib, ws.root))
        except UserError:
            llc_path = None
    gpus = env.cuda_gpus()
    data = {
        "version": __version__,
        "workspace": str(ws.root),
        "db": str(ws.db_path),
        "schema_version": version,
        "schema_latest": SCHEMA_VERSION,
        "counts": counts,
        "engines": env.engines(),
        "cuda": {"available": bool(gpus), "gpus": gpus},
        "clip_weights": env.clip_weights(),
        "llc": {"path": llc_path, "shipped": llc_path == str(default_llc_file().resolve())},
    }
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    from anyskill_tui.commands._common import out_console

    def yn(v: bool | None) -> str:
        return "[green]yes[/green]" if v else ("[dim]n/a[/dim]" if v is None else "[red]no[/red]")

    g = Table.grid(padding=(0, 2))
    g.add_row("anyskill", __version__)
    g.add_row("workspace", str(ws.root))
    g.add_row("schema", f"v{version} (latest v{SCHEMA_VERSION})")
    by = ", ".join(f"{k} {v}" for k, v in sorted(counts["runs_by_status"].items()))
    g.add_row("skills", str(counts["skills"]))
    g.add_row("runs", f"{counts['runs']}" + (f" ({by})" if by else ""))
    g.add_row("checkpoints", str(counts["checkpoints"]))
    g.add_row("motion sets", str(counts["motion_sets"]))
    for name, e in data["engines"].items():
        mods = ", ".join(m for m in e["modules"]) or e.get("note", "")
        g.add_row(f"engine {name}", f"{yn(e['available'])}  [dim]({mods})[/dim]")
    g.add_row("CUDA GPU", yn(bool(gpus)) + (f"  {'; '.join(gpus)}" if gpus else ""))
    cw = data["clip_weights"]
    g.add_row("CLIP weights", yn(cw["found"]) + f"  [dim]{cw.get('path') or cw.get('note', '')}[/dim]")
    llc = data["llc"]
    if llc["path"] is None:
        g.add_row("default LLC", "[red]none[/red]  [dim](anyskill llc train, or --llc PATH)[/dim]")
    else:
        g.add_row("default LLC", ("shipped  " if llc["shipped"] else "") + f"[dim]{llc['path']}[/dim]")
    out_console().print(g)


def main() -> None:
    app()
