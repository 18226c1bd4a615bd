"""The library store: SQLModel tables on SQLite and the small query API. The only code that speaks SQL.

Use :class:`Library` (``anyskill_tui.store.library``)::

    from anyskill_tui.store import Library
    lib = Library(workspace.db_path)
    skill = lib.add_skill("jump forward", weight=1.0, tags=["locomotion"])

Importing this package is cheap: SQLModel (about 0.5 s to import) is loaded only when ``Library``,
the table classes or the ``db`` helpers are first touched (PEP 562 lazy attributes), so the CLI's
``--help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from anyskill_tui.store.enums import Engine, RunKind, RunStatus, SkillStatus

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.store.db import SCHEMA_VERSION, open_engine
    from anyskill_tui.store.library import Library
    from anyskill_tui.store.models import Checkpoint, MotionSet, Run, Skill

_LAZY = {
    "Library": "anyskill_tui.store.library",
    "Skill": "anyskill_tui.store.models",
    "Run": "anyskill_tui.store.models",
    "Checkpoint": "anyskill_tui.store.models",
    "MotionSet": "anyskill_tui.store.models",
    "SCHEMA_VERSION": "anyskill_tui.store.db",
    "open_engine": "anyskill_tui.store.db",
}

__all__ = [
    "SCHEMA_VERSION",
    "Checkpoint",
    "Engine",
    "Library",
    "MotionSet",
    "Run",
    "RunKind",
    "RunStatus",
    "Skill",
    "SkillStatus",
    "open_engine",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
