"""The `anyskill` command line: Typer root. A bare `anyskill` opens the TUI.

Start-up must stay fast: nothing here (or in `anyskill_tui.commands.*` at module level) imports torch,
mujoco, warp or Textual. Each command imports what it needs inside its function.
"""

from __future__ import annotations

import typer

from anyskill_tui.commands import motions

app = typer.Typer(
    help="anyskill: author open-vocabulary physical skills for a simulated humanoid.",
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    no_args_is_help=False,
)
app.add_typer(motions.app, name="motions")


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    """With no command, open the TUI on the workspace."""
    if ctx.invoked_subcommand is None:
        from anyskill_tui.app import run_app

        run_app()


def main() -> None:
    app()
