"""Allowed values of the library's kind/engine/status columns.

Kept free of SQLModel/SQLAlchemy so the CLI can use them for option choices without slowing start-up.
The database stores the plain string values; the store validates them on every write (there is no SQL
CHECK on these columns, so a later release can add a state without rebuilding a table).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from anyskill_tui.errors import UserError


class SkillStatus(StrEnum):
    """Where a skill is in its life: created, being trained, has a trained policy, or its last run failed."""

    NEW = "new"
    TRAINING = "training"
    TRAINED = "trained"
    FAILED = "failed"


class RunKind(StrEnum):
    """What a run trains: the low-level controller, one skill policy, or the render-free CLIP proxy."""

    LLC = "llc"
    SKILL = "skill"
    PROXY = "proxy"


class Engine(StrEnum):
    """The simulation engine of a run (see DESIGN.md, Engines)."""

    CPU = "cpu"
    GPU = "gpu"
    ISAACGYM = "isaacgym"


class RunStatus(StrEnum):
    """A run's lifecycle: queued -> running -> done | failed | stopped."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"


#: Run states in which a run still owns (or will own) a process.
ACTIVE_RUN_STATUSES: tuple[RunStatus, ...] = (RunStatus.QUEUED, RunStatus.RUNNING)

E = TypeVar("E", bound=StrEnum)


def coerce(enum: type[E], value: str | E, what: str) -> E:
    """Return ``value`` as a member of ``enum`` or raise a UserError listing the allowed values."""
    try:
        return enum(str(value).strip().lower())
    except ValueError:
        choices = ", ".join(m.value for m in enum)
        raise UserError(f"unknown {what} {str(value)!r} (choose from {choices})") from None
