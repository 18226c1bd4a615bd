"""The library's query API: skills, runs, checkpoints, motion sets. One short session per call.

Every write runs in its own ``BEGIN IMMEDIATE`` transaction (it takes the write lock up front, so it
waits on the busy timeout instead of failing on a read-to-write upgrade) and commits before returning.
Returned objects are detached SQLModel rows with their columns loaded; change them only through this
API. Errors users can fix raise :class:`~anyskill_tui.errors.UserError` subclasses with one-line messages.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, or_, update
from sqlalchemy import text as sql_text
from sqlmodel import Session, col, select

from anyskill_tui.errors import NotFoundError, UserError
from anyskill_tui.store import db
from anyskill_tui.store.enums import (
    ACTIVE_RUN_STATUSES,
    Engine,
    RunKind,
    RunStatus,
    SkillStatus,
    coerce,
)
from anyskill_tui.store.models import Checkpoint, MotionSet, Run, Skill, utcnow
from anyskill_tui.store.prompts import (
    PromptEntry,
    check_text,
    check_weight,
    normalize_tags,
    normalize_text,
    read_texts_file,
)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
"""Marks an ``update_run`` argument that was not given (``None`` means "set to NULL")."""

SkillRef = int | str
"""A skill by id (int) or by its text (str, matched after normalising case and whitespace)."""

_ENDED = (RunStatus.DONE, RunStatus.FAILED, RunStatus.STOPPED)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _like(s: str) -> str:
    esc = s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{esc}%"


class Library:
    """A skill library: the ``skills.db`` of one workspace.

    Opening creates the file if needed and migrates it to :data:`~anyskill_tui.store.db.SCHEMA_VERSION`
    (with a ``.bak-v{N}`` copy first); it refuses a newer schema.

    Args:
        db_path: the SQLite file.
        timeout_s: busy timeout in seconds (default ``ANYSKILL_DB_TIMEOUT`` or 30).
    """

    def __init__(self, db_path: Path | str, *, timeout_s: float | None = None) -> None:
        self.path = Path(db_path)
        self.timeout_s = db.db_timeout() if timeout_s is None else timeout_s
        self.schema_version = db.ensure_schema(self.path, self.timeout_s)
        self.engine = db.open_engine(self.path, self.timeout_s)

    # -- plumbing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _translate(self, exc: BaseException) -> None:
        err = db.translate_error(exc, self.path, self.timeout_s)
        if err is not None:
            raise err from exc

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A short read-only session."""
        try:
            with Session(self.engine, expire_on_commit=False) as s:
                yield s
        except (sa_exc.DBAPIError, sqlite3.Error) as exc:
            self._translate(exc)
            raise

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A short write session in a ``BEGIN IMMEDIATE`` transaction, committed on success."""
        try:
            with Session(self.engine, expire_on_commit=False) as s:
                s.connection().exec_driver_sql("BEGIN IMMEDIATE")
                yield s
                s.commit()
        except (sa_exc.DBAPIError, sqlite3.Error) as exc:
            self._translate(exc)
            raise

    # -- skills ---------------------------------------------------------------------------------

    @staticmethod
    def _find_skill(s: Session, ref: SkillRef) -> Skill | None:
        if isinstance(ref, bool):
            raise TypeError("skill ref must be int or str")
        if isinstance(ref, int):
            return s.get(Skill, ref)
        return s.exec(select(Skill).where(Skill.normalized_text == normalize_text(ref))).first()

    @staticmethod
    def _skill_or_raise(s: Session, ref: SkillRef) -> Skill:
        skill = Library._find_skill(s, ref)
        if skill is None:
            what = f"id {ref}" if isinstance(ref, int) else f"text {ref!r}"
            raise NotFoundError(f"no skill with {what} (see `anyskill skills list`)")
        return skill

    @staticmethod
    def _check_unique(s: Session, text: str, exclude_id: int | None = None) -> None:
        other = s.exec(select(Skill).where(Skill.normalized_text == normalize_text(text))).first()
        if other is not None and other.id != exclude_id:
            raise UserError(f"{text!r} is already in the library as skill {other.id} ({other.text!r})")

    def add_skill(
        self,
        text: str,
        *,
        weight: float = 1.0,
        tags: Iterable[str] = (),
        notes: str = "",
        status: SkillStatus | str = SkillStatus.NEW,
    ) -> Skill:
        """Add a prompt. Raises UserError for an empty/over-long prompt, a bad weight or a duplicate."""
        cleaned = check_text(text)
        weight = check_weight(weight)
        tag_list = normalize_tags(tags)
        status = coerce(SkillStatus, status, "skill status")
        with self._write() as s:
            self._check_unique(s, cleaned)
            now = utcnow()
            skill = Skill(
                text=cleaned,
                normalized_text=normalize_text(cleaned),
                weight=weight,
                tags=_dumps(tag_list),
                notes=notes or "",
                status=status.value,
                created_at=now,
                updated_at=now,
            )
            s.add(skill)
            s.flush()
            s.refresh(skill)
        return skill

    def find_skill(self, ref: SkillRef) -> Skill | None:
        """The skill with this id (int) or text (str, normalised), or None."""
        with self._read() as s:
            return self._find_skill(s, ref)

    def get_skill(self, ref: SkillRef) -> Skill:
        """The skill with this id (int) or text (str, normalised). Raises NotFoundError."""
        with self._read() as s:
            return self._skill_or_raise(s, ref)

    def list_skills(
        self,
        *,
        search: str | None = None,
        tag: str | None = None,
        status: SkillStatus | str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Skill]:
        """Skills by id. ``search``: case-insensitive substring of text, notes or tags; ``tag``: exact tag."""
        q = select(Skill)
        if search:
            pat = _like(normalize_text(search))
            q = q.where(
                or_(
                    col(Skill.normalized_text).like(pat, escape="\\"),
                    func.lower(Skill.notes).like(pat, escape="\\"),
                    col(Skill.tags).like(pat, escape="\\"),
                )
            )
        if tag:
            t = normalize_tags([tag])
            q = q.where(
                sql_text("EXISTS (SELECT 1 FROM json_each(skill.tags) AS jt WHERE jt.value = :tag)").bindparams(
                    tag=t[0] if t else ""
                )
            )
        if status is not None:
            q = q.where(Skill.status == coerce(SkillStatus, status, "skill status").value)
        q = q.order_by(col(Skill.id)).offset(offset)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as s:
            return list(s.exec(q).all())

    def edit_skill(
        self,
        ref: SkillRef,
        *,
        text: str | None = None,
        weight: float | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
        notes: str | None = None,
        status: SkillStatus | str | None = None,
    ) -> Skill:
        """Change a skill's text, weight, tags, notes or status. Same checks as :meth:`add_skill`."""
        cleaned = check_text(text) if text is not None else None
        weight = check_weight(weight) if weight is not None else None
        add = normalize_tags(add_tags)
        drop = set(normalize_tags(remove_tags))
        status_v = coerce(SkillStatus, status, "skill status").value if status is not None else None
        with self._write() as s:
            skill = self._skill_or_raise(s, ref)
            if cleaned is not None:
                self._check_unique(s, cleaned, exclude_id=skill.id)
                skill.text = cleaned
                skill.normalized_text = normalize_text(cleaned)
            if weight is not None:
                skill.weight = weight
            if add or drop:
                tags = [t for t in skill.tag_list if t not in drop]
                tags += [t for t in add if t not in tags]
                skill.tags = _dumps(tags)
            if notes is not None:
                skill.notes = notes
            if status_v is not None:
                skill.status = status_v
            skill.updated_at = utcnow()
            s.add(skill)
            s.flush()
            s.refresh(skill)
        return skill

    def remove_skill(self, ref: SkillRef) -> Skill:
        """Delete a skill; its past runs stay (with no skill). Refused while a run of it is queued/running."""
        with self._write() as s:
            skill = self._skill_or_raise(s, ref)
            active = s.exec(
                select(Run).where(Run.skill_id == skill.id, col(Run.status).in_([x.value for x in ACTIVE_RUN_STATUSES]))
            ).first()
            if active is not None:
                raise UserError(
                    f"skill {skill.id} has run {active.id} {active.status}; stop it before removing the skill"
                )
            s.delete(skill)
        return skill

    def import_texts(self, entries: Sequence[PromptEntry]) -> list[Skill]:
        """Add every entry, or nothing: one transaction, refused as a whole if any entry is a duplicate."""
        seen: dict[str, PromptEntry] = {}
        for e in entries:
            key = normalize_text(check_text(e.text))
            if key in seen:
                raise UserError(f"{e.where} ({e.text!r}): duplicates texts[{seen[key].index}]")
            seen[key] = e
        with self._write() as s:
            added: list[Skill] = []
            for e in entries:
                other = s.exec(select(Skill).where(Skill.normalized_text == normalize_text(e.text))).first()
                if other is not None:
                    raise UserError(
                        f"{e.where} ({e.text!r}): already in the library as skill {other.id}; nothing was imported"
                    )
                now = utcnow()
                skill = Skill(
                    text=check_text(e.text),
                    normalized_text=normalize_text(e.text),
                    weight=check_weight(e.weight),
                    tags=_dumps(normalize_tags(e.tags)),
                    notes=e.notes,
                    created_at=now,
                    updated_at=now,
                )
                s.add(skill)
                added.append(skill)
            s.flush()
            for skill in added:
                s.refresh(skill)
        return added

    def import_texts_file(self, path: Path | str) -> list[Skill]:
        """Validate a prompt file (see ``prompts.parse_texts``) and import it all-or-nothing."""
        return self.import_texts(read_texts_file(path))

    def export_texts(
        self, *, tag: str | None = None, status: SkillStatus | str | None = None
    ) -> list[tuple[str, float]]:
        """``(text, weight)`` of the skills (by id), for AnySkill's prompt format (``prompts.dump_texts``)."""
        return [(sk.text, sk.weight) for sk in self.list_skills(tag=tag, status=status)]

    # -- runs -----------------------------------------------------------------------------------

    def create_run(
        self,
        kind: RunKind | str,
        engine: Engine | str,
        *,
        skill: SkillRef | None = None,
        config: dict[str, Any] | None = None,
        priority: int = 0,
        status: RunStatus | str = RunStatus.QUEUED,
        run_dir: str | None = None,
    ) -> Run:
        """Create a run (``queued`` by default) of ``kind`` on ``engine``, for ``skill`` if given."""
        kind_v = coerce(RunKind, kind, "run kind")
        engine_v = coerce(Engine, engine, "engine")
        status_v = coerce(RunStatus, status, "run status")
        with self._write() as s:
            skill_id = self._skill_or_raise(s, skill).id if skill is not None else None
            run = Run(
                skill_id=skill_id,
                kind=kind_v.value,
                engine=engine_v.value,
                status=status_v.value,
                priority=int(priority),
                run_dir=run_dir,
                config_json=_dumps(config or {}),
            )
            s.add(run)
            s.flush()
            s.refresh(run)
        return run

    def get_run(self, run_id: int) -> Run:
        """The run with this id. Raises NotFoundError."""
        with self._read() as s:
            run = s.get(Run, run_id)
        if run is None:
            raise NotFoundError(f"no run with id {run_id} (see `anyskill runs list`)")
        return run

    def list_runs(
        self,
        *,
        status: RunStatus | str | None = None,
        kind: RunKind | str | None = None,
        engine: Engine | str | None = None,
        skill: SkillRef | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Run]:
        """Runs, newest first, filtered by status, kind, engine and skill (id or text)."""
        q = select(Run)
        if status is not None:
            q = q.where(Run.status == coerce(RunStatus, status, "run status").value)
        if kind is not None:
            q = q.where(Run.kind == coerce(RunKind, kind, "run kind").value)
        if engine is not None:
            q = q.where(Run.engine == coerce(Engine, engine, "engine").value)
        q = q.order_by(col(Run.id).desc()).offset(offset)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as s:
            if skill is not None:
                q = q.where(Run.skill_id == self._skill_or_raise(s, skill).id)
            return list(s.exec(q).all())

    def update_run(
        self,
        run_id: int,
        *,
        status: RunStatus | str | _Unset = UNSET,
        pid: int | None | _Unset = UNSET,
        proc_create_time: float | None | _Unset = UNSET,
        step: int | None | _Unset = UNSET,
        total_steps: int | None | _Unset = UNSET,
        run_dir: str | None | _Unset = UNSET,
        config: dict[str, Any] | _Unset = UNSET,
        priority: int | _Unset = UNSET,
        heartbeat_at: datetime | None | _Unset = UNSET,
        error: str | None | _Unset = UNSET,
        started_at: datetime | None | _Unset = UNSET,
        ended_at: datetime | None | _Unset = UNSET,
    ) -> Run:
        """Set the given fields of a run (``None`` clears one). Moving to ``running`` fills ``started_at``
        and to ``done``/``failed``/``stopped`` fills ``ended_at``, unless given or already set."""
        with self._write() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise NotFoundError(f"no run with id {run_id} (see `anyskill runs list`)")
            now = utcnow()
            if not isinstance(status, _Unset):
                st = coerce(RunStatus, status, "run status")
                run.status = st.value
                if st is RunStatus.RUNNING and run.started_at is None and isinstance(started_at, _Unset):
                    run.started_at = now
                if st in _ENDED and run.ended_at is None and isinstance(ended_at, _Unset):
                    run.ended_at = now
            if not isinstance(pid, _Unset):
                run.pid = pid
            if not isinstance(proc_create_time, _Unset):
                run.proc_create_time = proc_create_time
            if not isinstance(step, _Unset):
                run.step = step
            if not isinstance(total_steps, _Unset):
                run.total_steps = total_steps
            if not isinstance(run_dir, _Unset):
                run.run_dir = run_dir
            if not isinstance(config, _Unset):
                run.config_json = _dumps(config)
            if not isinstance(priority, _Unset):
                run.priority = int(priority)
            if not isinstance(heartbeat_at, _Unset):
                run.heartbeat_at = heartbeat_at
            if not isinstance(error, _Unset):
                run.error = error
            if not isinstance(started_at, _Unset):
                run.started_at = started_at
            if not isinstance(ended_at, _Unset):
                run.ended_at = ended_at
            s.add(run)
            s.flush()
            s.refresh(run)
        return run

    def heartbeat(self, run_id: int) -> Run:
        """Stamp ``heartbeat_at`` with now."""
        return self.update_run(run_id, heartbeat_at=utcnow())

    def claim_run(self, run_id: int, *, pid: int | None = None) -> Run | None:
        """Atomically move one specific ``queued`` run to ``running`` (as :meth:`claim_next_queued_run` does
        for the next one). Returns None when the run is not queued any more (someone else took it)."""
        with self._write() as s:
            res = s.exec(
                update(Run)
                .where(col(Run.id) == run_id, col(Run.status) == RunStatus.QUEUED.value)
                .values(status=RunStatus.RUNNING.value, started_at=utcnow(), ended_at=None, error=None, pid=pid)
            )
            if res.rowcount != 1:
                if s.get(Run, run_id) is None:
                    raise NotFoundError(f"no run with id {run_id} (see `anyskill runs list`)")
                return None
            run = s.get(Run, run_id)
            assert run is not None
            s.refresh(run)
        return run

    def claim_next_queued_run(
        self,
        *,
        pid: int | None = None,
        kinds: Iterable[RunKind | str] | None = None,
        engines: Iterable[Engine | str] | None = None,
    ) -> Run | None:
        """Atomically take the next queued run (highest priority, then oldest) and mark it ``running``.

        Done under ``BEGIN IMMEDIATE`` with a conditional ``UPDATE ... WHERE status = 'queued'``, so two
        claimers never get the same run. Returns None when nothing matching is queued.
        """
        q = select(Run.id).where(Run.status == RunStatus.QUEUED.value)
        if kinds is not None:
            q = q.where(col(Run.kind).in_([coerce(RunKind, k, "run kind").value for k in kinds]))
        if engines is not None:
            q = q.where(col(Run.engine).in_([coerce(Engine, e, "engine").value for e in engines]))
        q = q.order_by(col(Run.priority).desc(), col(Run.id)).limit(1)
        with self._write() as s:
            run_id = s.exec(q).first()
            if run_id is None:
                return None
            res = s.exec(
                update(Run)
                .where(col(Run.id) == run_id, col(Run.status) == RunStatus.QUEUED.value)
                .values(status=RunStatus.RUNNING.value, started_at=utcnow(), pid=pid)
            )
            if res.rowcount != 1:  # pragma: no cover - impossible under the IMMEDIATE lock
                return None
            run = s.get(Run, run_id)
            assert run is not None
            s.refresh(run)
        return run

    # -- checkpoints ----------------------------------------------------------------------------

    def add_checkpoint(
        self, run_id: int, path: str, step: int = 0, metrics: dict[str, Any] | None = None
    ) -> Checkpoint:
        """Record a checkpoint file of a run."""
        with self._write() as s:
            if s.get(Run, run_id) is None:
                raise NotFoundError(f"no run with id {run_id} (see `anyskill runs list`)")
            ckpt = Checkpoint(run_id=run_id, path=str(path), step=int(step), metrics_json=_dumps(metrics or {}))
            s.add(ckpt)
            s.flush()
            s.refresh(ckpt)
        return ckpt

    def list_checkpoints(self, run_id: int) -> list[Checkpoint]:
        """A run's checkpoints by step."""
        with self._read() as s:
            q = select(Checkpoint).where(Checkpoint.run_id == run_id)
            return list(s.exec(q.order_by(col(Checkpoint.step), col(Checkpoint.id))).all())

    # -- motion sets ----------------------------------------------------------------------------

    def upsert_motion_set(self, path: str, *, clip_count: int, duration_s: float) -> MotionSet:
        """Insert a motion set or update the one with the same ``path``."""
        with self._write() as s:
            ms = s.exec(select(MotionSet).where(MotionSet.path == str(path))).first()
            if ms is None:
                ms = MotionSet(path=str(path))
            ms.clip_count = int(clip_count)
            ms.duration_s = float(duration_s)
            s.add(ms)
            s.flush()
            s.refresh(ms)
        return ms

    def list_motion_sets(self) -> list[MotionSet]:
        """All motion sets by id."""
        with self._read() as s:
            return list(s.exec(select(MotionSet).order_by(col(MotionSet.id))).all())

    # -- summary --------------------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        """Row counts: skills, runs (and runs by status), checkpoints, motion sets."""
        with self._read() as s:
            by_status = dict(s.exec(select(Run.status, func.count()).group_by(Run.status)).all())
            return {
                "skills": s.exec(select(func.count()).select_from(Skill)).one(),
                "runs": sum(by_status.values()),
                "runs_by_status": by_status,
                "checkpoints": s.exec(select(func.count()).select_from(Checkpoint)).one(),
                "motion_sets": s.exec(select(func.count()).select_from(MotionSet)).one(),
            }
