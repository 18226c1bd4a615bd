"""Helpers shared by the command modules: output consoles, JSON, the resolved workspace and library.

Light at import time (no SQLModel): the library is imported when a command opens it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from anyskill_tui.workspace import Workspace, find_workspace

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from anyskill_tui.store.library import Library


@dataclass
class CliState:
    """What the root callback resolved: the ``--workspace`` option (None: env, then cwd)."""

    workspace_opt: Path | None = None


def state(ctx: typer.Context) -> CliState:
    """The root callback's state (a default one when a sub-app is invoked on its own, as in tests)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def workspace(ctx: typer.Context) -> Workspace:
    """The resolved workspace; raises NoWorkspaceError (a UserError) when there is none."""
    return find_workspace(state(ctx).workspace_opt)


def open_library(ctx: typer.Context) -> Library:
    """The resolved workspace's library, migrated to the current schema. Close it (``with``)."""
    from anyskill_tui.store.library import Library

    return Library(workspace(ctx).db_path)


def err_console() -> Console:
    """Rich console on stderr, for messages to people (stdout stays machine-clean)."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


def out_console() -> Console:
    """Rich console on stdout, for human tables."""
    from rich.console import Console

    return Console(highlight=False)


def say(message: str) -> None:
    """One line for people, on stderr (Rich markup allowed)."""
    err_console().print(message)


def print_json(obj: Any) -> None:
    """``obj`` as JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def short_time(iso: str | None) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM`` (UTC) for tables."""
    return "" if not iso else iso[:16].replace("T", " ")


def print_fields(d: dict[str, Any], keys: tuple[str, ...], extra: tuple[tuple[str, str], ...] = ()) -> Console:
    """Print `key  value` rows of `d` for `keys` (None values skipped, lists joined), then `extra` rows, on the
    stdout console; returns that console for what the caller prints next."""
    from rich.table import Table

    con = out_console()
    grid = Table.grid(padding=(0, 2))
    for key in keys:
        val = d.get(key)
        if val is not None:
            grid.add_row(key, ", ".join(map(str, val)) if isinstance(val, list) else str(val))
    for key, val in extra:
        grid.add_row(key, val)
    con.print(grid)
    return con
