"""Workspaces: a folder holding ``skills.db``, ``configs/`` and ``runs/<run-id>/``.

How a command finds its workspace, first match wins:

1. ``--workspace PATH`` (the root option of ``anyskill``);
2. the environment variable ``ANYSKILL_HOME``;
3. the current directory (only the current directory: parents are not searched, so what a command
   touches is never a surprise).

A folder is a workspace when it holds ``skills.db``. Without one, commands fail with
``no workspace here (DIR); run `anyskill init` `` and exit code 1. ``anyskill init [DIR]`` makes one
(idempotent). Imports nothing heavy; the store is imported only by :func:`init_workspace`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from anyskill_tui.errors import UserError

HOME_ENV = "ANYSKILL_HOME"
DB_NAME = "skills.db"


class NoWorkspaceError(UserError):
    """No ``skills.db`` in the folder a command resolved as its workspace."""


@dataclass(frozen=True)
class Workspace:
    """A workspace folder and the paths inside it."""

    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def configs_dir(self) -> Path:
        return self.root / "configs"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def exists(self) -> bool:
        """True when the folder holds a ``skills.db``."""
        return self.db_path.is_file()


def workspace_dir(explicit: Path | str | None = None, *, cwd: Path | None = None) -> Path:
    """The folder a command should use: ``explicit``, else ``$ANYSKILL_HOME``, else the cwd (absolute)."""
    if explicit is not None and str(explicit) != "":
        chosen = Path(explicit)
    elif os.environ.get(HOME_ENV, "").strip():
        chosen = Path(os.environ[HOME_ENV].strip())
    else:
        chosen = cwd if cwd is not None else Path.cwd()
    return chosen.expanduser().absolute()


def find_workspace(explicit: Path | str | None = None, *, cwd: Path | None = None) -> Workspace:
    """The resolved workspace (see the module doc). Raises :class:`NoWorkspaceError` when absent."""
    ws = Workspace(workspace_dir(explicit, cwd=cwd))
    if not ws.exists():
        raise NoWorkspaceError(f"no workspace here ({ws.root}); run `anyskill init`")
    return ws


def init_workspace(root: Path | str) -> tuple[Workspace, bool]:
    """Create (or complete) a workspace at ``root``; returns it and whether ``skills.db`` was new.

    Idempotent: an existing workspace gets any missing folders and a schema upgrade, nothing else.
    """
    ws = Workspace(Path(root).expanduser().absolute())
    if ws.root.exists() and not ws.root.is_dir():
        raise UserError(f"{ws.root} exists and is not a folder")
    created = not ws.exists()
    try:
        ws.root.mkdir(parents=True, exist_ok=True)
        ws.configs_dir.mkdir(exist_ok=True)
        ws.runs_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create a workspace in {ws.root} ({exc.strerror})") from None
    from anyskill_tui.store.library import Library

    Library(ws.db_path).close()
    return ws, created
