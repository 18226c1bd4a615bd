"""SQLModel tables, mirroring the latest schema in ``db.py`` (which owns the DDL).

Timestamps are aware UTC datetimes (SQLModel's ``UTCDateTime`` stores them as UTC text, since SQLite has
no time zone type, and gives them back aware); ``to_dict`` writes them as ISO 8601 with ``+00:00``.
JSON columns (``tags``, ``config_json``, ``metrics_json``) hold text; the ``tag_list``, ``config`` and
``metrics`` properties read them.
Kind, engine and status columns hold the string values of the enums in ``enums.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    """A datetime as ISO 8601 with an explicit UTC offset (naive ones are taken as UTC)."""
    if dt is None:
        return None
    return (dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)).isoformat()


class Skill(SQLModel, table=True):
    """A prompt in the library. ``normalized_text`` (lowercase, whitespace collapsed) is unique."""

    __tablename__ = "skill"

    id: int | None = Field(default=None, primary_key=True)
    text: str
    normalized_text: str = Field(unique=True)
    weight: float = 1.0
    tags: str = "[]"
    notes: str = ""
    status: str = "new"
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def tag_list(self) -> list[str]:
        """The tags as a list (stored as a JSON array)."""
        return list(json.loads(self.tags or "[]"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "weight": self.weight,
            "tags": self.tag_list,
            "notes": self.notes,
            "status": self.status,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


class Run(SQLModel, table=True):
    """One training job (LLC, skill policy or CLIP proxy) on one engine."""

    __tablename__ = "run"

    id: int | None = Field(default=None, primary_key=True)
    skill_id: int | None = Field(default=None, foreign_key="skill.id", ondelete="SET NULL")
    kind: str
    engine: str
    status: str = "queued"
    priority: int = 0
    pid: int | None = None
    proc_create_time: float | None = None
    step: int | None = None
    total_steps: int | None = None
    run_dir: str | None = None
    config_json: str = "{}"
    heartbeat_at: datetime | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config (stored as JSON)."""
        return dict(json.loads(self.config_json or "{}"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "skill_id": self.skill_id,
            "kind": self.kind,
            "engine": self.engine,
            "status": self.status,
            "priority": self.priority,
            "pid": self.pid,
            "proc_create_time": self.proc_create_time,
            "step": self.step,
            "total_steps": self.total_steps,
            "run_dir": self.run_dir,
            "config": self.config,
            "heartbeat_at": iso(self.heartbeat_at),
            "error": self.error,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
        }


class Checkpoint(SQLModel, table=True):
    """A checkpoint file a run wrote; deleted with its run."""

    __tablename__ = "checkpoint"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", ondelete="CASCADE")
    path: str
    step: int = 0
    metrics_json: str = "{}"
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def metrics(self) -> dict[str, Any]:
        """Metrics at the checkpoint (stored as JSON)."""
        return dict(json.loads(self.metrics_json or "{}"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "path": self.path,
            "step": self.step,
            "metrics": self.metrics,
            "created_at": iso(self.created_at),
        }


class MotionSet(SQLModel, table=True):
    """A motion dataset (a ``motions.yaml`` or clip folder) known to the library; ``path`` is unique."""

    __tablename__ = "motion_set"

    id: int | None = Field(default=None, primary_key=True)
    path: str = Field(unique=True)
    clip_count: int = 0
    duration_s: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "clip_count": self.clip_count,
            "duration_s": self.duration_s,
            "created_at": iso(self.created_at),
        }
