"""SQLite plumbing: connection pragmas, the engine factory, schema versions and forward migrations.

Every connection (raw ``sqlite3`` or through SQLAlchemy) gets::

    PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=<ms>

The busy timeout is ``ANYSKILL_DB_TIMEOUT`` seconds (default 30). WAL needs every process on one host:
keep ``skills.db`` on a local disk, never on NFS.

Schema versions live in ``PRAGMA user_version``. :data:`MIGRATIONS` is an ordered list; migration ``i``
takes a database from version ``i`` to ``i + 1``. :func:`ensure_schema` applies the missing ones in one
``BEGIN IMMEDIATE`` transaction, after copying an existing library to ``skills.db.bak-v{N}`` with the
backup API, and refuses a database newer than :data:`SCHEMA_VERSION`. The DDL is written out by hand
(not ``create_all``) so that what version 1 means never changes; ``models.py`` mirrors the latest version.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from anyskill_tui.errors import DatabaseError, DatabaseLockedError, SchemaTooNewError, UserError

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import Engine as SAEngine

DEFAULT_TIMEOUT_S = 30.0
TIMEOUT_ENV = "ANYSKILL_DB_TIMEOUT"


def db_timeout() -> float:
    """The busy timeout in seconds: ``ANYSKILL_DB_TIMEOUT`` if set, else 30."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise UserError(f"{TIMEOUT_ENV}={raw!r} must be >= 0 seconds")
    return value


def apply_pragmas(dbapi_conn: sqlite3.Connection, timeout_s: float) -> None:
    """Set the house pragmas on one DB-API connection (WAL, synchronous, foreign keys, busy timeout)."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def is_locked_error(exc: BaseException) -> bool:
    """True when ``exc`` (sqlite3 or SQLAlchemy-wrapped) is SQLITE_BUSY / SQLITE_LOCKED."""
    orig = getattr(exc, "orig", exc)
    if not isinstance(orig, sqlite3.OperationalError):
        return False
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return True
    return "locked" in str(orig) or "busy" in str(orig)


def locked_error(path: Path, timeout_s: float) -> DatabaseLockedError:
    """The user-facing error for a database whose write lock another process held too long."""
    return DatabaseLockedError(
        f"{path} is locked by another process (waited {timeout_s:g} s); try again when it finishes, "
        f"or set {TIMEOUT_ENV} to wait longer"
    )


def translate_error(exc: BaseException, path: Path, timeout_s: float) -> UserError | None:
    """Map a sqlite3/SQLAlchemy error to a UserError, or None when it is not the user's to fix."""
    if is_locked_error(exc):
        return locked_error(path, timeout_s)
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, sqlite3.DatabaseError) and ("not a database" in str(orig) or "malformed" in str(orig)):
        return DatabaseError(f"{path} is not a readable anyskill library ({orig}); restore a backup")
    if isinstance(orig, sqlite3.OperationalError) and "unable to open" in str(orig):
        return DatabaseError(f"cannot open {path} ({orig}); check the folder exists and is writable")
    return None


# ---------------------------------------------------------------------------------------------------
# Schema versions
# ---------------------------------------------------------------------------------------------------


def _v1_initial(conn: sqlite3.Connection) -> None:
    """Version 1: skill, run, checkpoint and motion_set tables."""
    statements = [
        """CREATE TABLE skill (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            text VARCHAR NOT NULL,
            normalized_text VARCHAR NOT NULL UNIQUE,
            weight FLOAT NOT NULL DEFAULT 1.0 CHECK (weight >= 0),
            tags VARCHAR NOT NULL DEFAULT '[]',
            notes VARCHAR NOT NULL DEFAULT '',
            status VARCHAR NOT NULL DEFAULT 'new',
            created_at DATETIME NOT NULL,
            updated_at DATETIME NOT NULL
        )""",
        "CREATE INDEX ix_skill_status ON skill (status)",
        """CREATE TABLE run (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            skill_id INTEGER REFERENCES skill (id) ON DELETE SET NULL,
            kind VARCHAR NOT NULL,
            engine VARCHAR NOT NULL,
            status VARCHAR NOT NULL DEFAULT 'queued',
            pid INTEGER,
            run_dir VARCHAR,
            config_json VARCHAR NOT NULL DEFAULT '{}',
            heartbeat_at DATETIME,
            error VARCHAR,
            created_at DATETIME NOT NULL,
            started_at DATETIME,
            ended_at DATETIME
        )""",
        "CREATE INDEX ix_run_skill_id ON run (skill_id)",
        "CREATE INDEX ix_run_status ON run (status)",
        """CREATE TABLE checkpoint (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
            path VARCHAR NOT NULL,
            step INTEGER NOT NULL DEFAULT 0,
            metrics_json VARCHAR NOT NULL DEFAULT '{}',
            created_at DATETIME NOT NULL
        )""",
        "CREATE INDEX ix_checkpoint_run_id ON checkpoint (run_id)",
        """CREATE TABLE motion_set (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path VARCHAR NOT NULL UNIQUE,
            clip_count INTEGER NOT NULL DEFAULT 0,
            duration_s FLOAT NOT NULL DEFAULT 0.0,
            created_at DATETIME NOT NULL
        )""",
    ]
    for sql in statements:
        conn.execute(sql)


def _v2_run_priority(conn: sqlite3.Connection) -> None:
    """Version 2: ``run.priority`` (higher first) and an index for the queue's claim order."""
    conn.execute("ALTER TABLE run ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")
    conn.execute("CREATE INDEX ix_run_queue ON run (status, priority DESC, id)")


def _v3_run_process(conn: sqlite3.Connection) -> None:
    """Version 3: the run's process identity and progress, for the job runner (``core/jobs``).

    ``proc_create_time`` (psutil ``create_time()`` of ``pid``) guards stale detection against PID reuse;
    ``step`` / ``total_steps`` are the trainer's last reported progress.
    """
    conn.execute("ALTER TABLE run ADD COLUMN proc_create_time FLOAT")
    conn.execute("ALTER TABLE run ADD COLUMN step INTEGER")
    conn.execute("ALTER TABLE run ADD COLUMN total_steps INTEGER")


#: Ordered forward migrations; ``MIGRATIONS[i]`` upgrades version ``i`` to ``i + 1``.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1_initial, _v2_run_priority, _v3_run_process]
#: The schema version this release writes and knows.
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    """The database's ``PRAGMA user_version``."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _has_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    return bool(row[0])


def too_new_error(path: Path, version: int) -> SchemaTooNewError:
    return SchemaTooNewError(
        f"{path.name} was made by a newer anyskill (schema v{version}, this release knows "
        f"v{SCHEMA_VERSION}); upgrade anyskill"
    )


def migrate(conn: sqlite3.Connection, target: int | None = None) -> int:
    """Apply the missing migrations up to ``target`` (default: latest) in one IMMEDIATE transaction.

    Safe against a concurrent migrator: the version is re-read after taking the write lock. Returns the
    version the database is at afterwards. ``conn`` must not be inside a transaction.
    """
    target = SCHEMA_VERSION if target is None else target
    if not 0 <= target <= SCHEMA_VERSION:
        raise ValueError(f"target schema version {target} outside 0..{SCHEMA_VERSION}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = user_version(conn)
        for i in range(version, target):
            MIGRATIONS[i](conn)
            version = i + 1
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def backup_database(conn: sqlite3.Connection, dest: Path) -> Path:
    """Copy the database behind ``conn`` to ``dest`` with sqlite's online backup API (WAL included)."""
    dest.unlink(missing_ok=True)
    target = sqlite3.connect(dest)
    try:
        conn.backup(target)
    finally:
        target.close()
    return dest


def connect_raw(path: Path, timeout_s: float | None = None) -> sqlite3.Connection:
    """A plain ``sqlite3`` connection in autocommit mode with the house pragmas."""
    timeout_s = db_timeout() if timeout_s is None else timeout_s
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    try:
        apply_pragmas(conn, timeout_s)
    except BaseException:
        conn.close()
        raise
    return conn


def ensure_schema(path: Path, timeout_s: float | None = None) -> int:
    """Create or upgrade the library at ``path`` to :data:`SCHEMA_VERSION`; return that version.

    Before upgrading an existing library, writes ``<name>.bak-v{old}`` beside it. Raises
    :class:`SchemaTooNewError` for a newer database, :class:`DatabaseLockedError` when the write lock
    cannot be had within the timeout, :class:`DatabaseError` for a file that is not a library.
    """
    path = Path(path)
    timeout_s = db_timeout() if timeout_s is None else timeout_s
    try:
        conn = connect_raw(path, timeout_s)
        try:
            version = user_version(conn)
            if version > SCHEMA_VERSION:
                raise too_new_error(path, version)
            if version == SCHEMA_VERSION:
                return version
            if version == 0 and _has_tables(conn):
                raise DatabaseError(f"{path} is a SQLite file but not an anyskill library (no schema version)")
            if version > 0:
                backup_database(conn, path.with_name(f"{path.name}.bak-v{version}"))
            try:
                return migrate(conn)
            except sqlite3.Error as exc:
                if is_locked_error(exc):
                    raise
                raise DatabaseError(
                    f"upgrading {path} from schema v{version} failed ({exc}); the library is unchanged"
                    + (f", a copy is in {path.name}.bak-v{version}" if version else "")
                ) from exc
        finally:
            conn.close()
    except sqlite3.Error as exc:
        err = translate_error(exc, path, timeout_s)
        if err is None:
            raise
        raise err from exc


def open_engine(path: Path, timeout_s: float | None = None) -> SAEngine:
    """A SQLAlchemy engine on ``path`` whose every connection gets the house pragmas.

    Does not create or migrate the schema; :class:`~anyskill_tui.store.library.Library` does that.
    """
    from sqlalchemy import URL, create_engine, event

    timeout_s = db_timeout() if timeout_s is None else timeout_s
    engine = create_engine(
        URL.create("sqlite", database=str(path)),
        connect_args={"timeout": timeout_s, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        apply_pragmas(dbapi_conn, timeout_s)

    return engine
