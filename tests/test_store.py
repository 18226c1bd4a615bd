"""The store: tables, query API, prompt files, migrations, locking and concurrent writers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from anyskill_tui.errors import DatabaseError, DatabaseLockedError, NotFoundError, SchemaTooNewError, UserError
from anyskill_tui.store import db
from anyskill_tui.store.library import Library
from anyskill_tui.store.models import Checkpoint, MotionSet, Run, Skill
from anyskill_tui.store.prompts import PromptEntry, dump_texts, parse_texts, read_texts_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYSKILL_HOME", raising=False)
    monkeypatch.delenv("ANYSKILL_DB_TIMEOUT", raising=False)


@pytest.fixture
def lib(tmp_path: Path):
    with Library(tmp_path / "skills.db") as library:
        yield library


def dump(path: Path) -> list[str]:
    """Every row and schema statement of a database, to assert it did not change."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


# -- engine and pragmas ------------------------------------------------------------------------


def test_every_connection_has_the_pragmas(lib: Library) -> None:
    with lib.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    raw = db.connect_raw(lib.path, 2.5)
    assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
    assert raw.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    raw.close()


def test_timeout_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYSKILL_DB_TIMEOUT", "0.25")
    assert db.db_timeout() == 0.25
    monkeypatch.setenv("ANYSKILL_DB_TIMEOUT", "soon")
    with pytest.raises(UserError, match="ANYSKILL_DB_TIMEOUT"):
        db.db_timeout()


def test_schema_matches_models(lib: Library) -> None:
    conn = sqlite3.connect(lib.path)
    for model in (Skill, Run, Checkpoint, MotionSet):
        table = model.__tablename__
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        assert sorted(cols) == sorted(model.__table__.c.keys()), table
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    conn.close()


# -- skills ------------------------------------------------------------------------------------


def test_add_get_normalise(lib: Library) -> None:
    sk = lib.add_skill("  Jump   forward\n", weight=0.5, tags=["Loco", "loco", " demo "], notes="n")
    assert sk.id == 1 and sk.text == "Jump forward" and sk.normalized_text == "jump forward"
    assert sk.weight == 0.5 and sk.tag_list == ["loco", "demo"] and sk.status == "new"
    assert lib.get_skill(1).text == "Jump forward"
    assert lib.get_skill("JUMP FORWARD").id == 1
    assert lib.find_skill("nope") is None
    with pytest.raises(NotFoundError, match="no skill with id 9"):
        lib.get_skill(9)
    with pytest.raises(NotFoundError, match="no skill with text 'x'"):
        lib.get_skill("x")


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, "empty prompt"),
        ("  \t\n ", {}, "empty prompt"),
        ("x" * 301, {}, "301 characters, over the limit of 300"),
        ("JUMP   Forward", {}, "already in the library as skill 1"),
        ("run", {"weight": -1}, "weight must be a finite number >= 0"),
        ("run", {"weight": float("nan")}, "weight must be a finite number >= 0"),
        ("run", {"weight": True}, "weight must be a number"),
        ("run", {"status": "bogus"}, "unknown skill status 'bogus'"),
    ],
)
def test_add_bad_input_changes_nothing(lib: Library, text: str, kwargs: dict, message: str) -> None:
    lib.add_skill("jump forward")
    before = dump(lib.path)
    with pytest.raises(UserError, match=message):
        lib.add_skill(text, **kwargs)
    assert dump(lib.path) == before


def test_300_characters_is_fine(lib: Library) -> None:
    assert len(lib.add_skill("y" * 300).text) == 300


def test_list_filters(lib: Library) -> None:
    lib.add_skill("jump forward", tags=["loco"])
    lib.add_skill("wave hand", tags=["arms", "greet"], notes="Friendly")
    lib.add_skill("run fast", tags=["loco"], status="trained")
    lib.add_skill("100% effort_x", tags=[])
    assert [s.id for s in lib.list_skills()] == [1, 2, 3, 4]
    assert [s.id for s in lib.list_skills(tag="LOCO")] == [1, 3]
    assert [s.id for s in lib.list_skills(tag="lo")] == []  # exact tag, not substring
    assert [s.id for s in lib.list_skills(search="WAVE")] == [2]
    assert [s.id for s in lib.list_skills(search="friendly")] == [2]  # notes
    assert [s.id for s in lib.list_skills(search="greet")] == [2]  # tags
    assert [s.id for s in lib.list_skills(search="%")] == [4]  # LIKE wildcards escaped
    assert [s.id for s in lib.list_skills(search="t_x")] == [4]
    assert [s.id for s in lib.list_skills(status="trained")] == [3]
    assert [s.id for s in lib.list_skills(tag="loco", status="new")] == [1]
    assert [s.id for s in lib.list_skills(limit=2, offset=1)] == [2, 3]


def test_edit_skill(lib: Library) -> None:
    lib.add_skill("jump forward", tags=["a", "b"])
    lib.add_skill("wave")
    sk = lib.edit_skill(1, text="Jump  HIGH", weight=2, add_tags=["c"], remove_tags=["A"], notes="x", status="trained")
    assert (sk.text, sk.normalized_text, sk.weight, sk.tag_list, sk.notes, sk.status) == (
        "Jump HIGH",
        "jump high",
        2.0,
        ["b", "c"],
        "x",
        "trained",
    )
    assert sk.updated_at >= sk.created_at
    assert lib.edit_skill(1, text="jump high").text == "jump high"  # same skill, new case: fine
    before = dump(lib.path)
    with pytest.raises(UserError, match="already in the library as skill 2"):
        lib.edit_skill(1, text="WAVE")
    with pytest.raises(UserError, match="empty prompt"):
        lib.edit_skill(1, text=" ")
    with pytest.raises(UserError, match="weight"):
        lib.edit_skill(1, weight=-0.1)
    with pytest.raises(NotFoundError):
        lib.edit_skill(42, weight=1)
    assert dump(lib.path) == before


def test_remove_skill_keeps_runs(lib: Library) -> None:
    sk = lib.add_skill("jump")
    run = lib.create_run("skill", "cpu", skill=sk.id)
    with pytest.raises(UserError, match=f"skill {sk.id} has run {run.id} queued"):
        lib.remove_skill(sk.id)
    lib.update_run(run.id, status="done")
    assert lib.remove_skill("JUMP").id == sk.id
    assert lib.list_skills() == []
    assert lib.get_run(run.id).skill_id is None
    with pytest.raises(NotFoundError):
        lib.remove_skill(sk.id)


# -- prompt files and import/export ------------------------------------------------------------


def test_parse_texts_ok() -> None:
    entries = parse_texts("texts:\n  - text: bow at right angle\n    weight: 1.0\n  - {text: run, weight: 0}\n")
    assert [(e.text, e.weight, e.index, e.line) for e in entries] == [
        ("bow at right angle", 1.0, 0, 2),
        ("run", 0.0, 1, 4),
    ]
    assert parse_texts("texts:\n - text: jump\n")[0].weight == 1.0  # weight defaults to 1
    assert parse_texts("texts: []\n") == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("texts:\n  - text: a\n    weight: [1\n", r"f.yaml:4:1: malformed YAML: expected ',' or ']'"),
        ("texts:\n\t- text: a\n", r"f.yaml:2:1: malformed YAML"),
        ("", "f.yaml: empty file"),
        ("- text: a\n", r"f.yaml:1: expected a mapping with a `texts:` list, got list"),
        ("prompts:\n  - text: a\n", r"no `texts:` key \(found: prompts\)"),
        ("texts: jump\n", r"f.yaml:1: `texts` must be a list"),
        ("texts:\n  - text: a\n  - weight: 1\n", r"f.yaml:3: texts\[1\]: entry has no `text`"),
        ("texts:\n  - jump\n", r"f.yaml:2: texts\[0\]: expected a mapping"),
        ("texts:\n  - text: a\n    weight: heavy\n", r"f.yaml:2: texts\[0\] \('a'\): weight must be a number"),
        ("texts:\n  - text: a\n    weight: -2\n", r"texts\[0\] \('a'\): weight must be a finite number >= 0"),
        ("texts:\n  - text: a\n  - text: '  '\n", r"f.yaml:3: texts\[1\]: empty prompt"),
        ("texts:\n  - text: 12\n", r"texts\[0\]: prompt must be text"),
        ("texts:\n  - text: a\n  - text: ' A '\n", r"f.yaml:3: texts\[1\]: 'A' duplicates texts\[0\] \(line 2\)"),
        ("texts:\n  - text: a\n    wieght: 2\n", r"texts\[0\]: unknown key\(s\) wieght"),
        (f"texts:\n  - text: {'z' * 301}\n", r"texts\[0\] .*301 characters"),
    ],
)
def test_parse_texts_errors(content: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_texts(content, source="f.yaml")


def test_read_texts_file_missing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        read_texts_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"texts:\n  - text: \xff\xfe\n")
    with pytest.raises(UserError, match="not UTF-8"):
        read_texts_file(bad)


def test_import_all_or_nothing(lib: Library, tmp_path: Path) -> None:
    lib.add_skill("existing one")
    good = "".join(f"  - text: prompt number {i}\n    weight: {i / 100}\n" for i in range(100))
    f = tmp_path / "t.yaml"
    f.write_text("texts:\n" + good.replace("prompt number 57\n", "existing ONE\n"))
    before = dump(lib.path)
    with pytest.raises(
        UserError, match=r"t.yaml:116: texts\[57\] \('existing ONE'\): already in the library as skill 1"
    ):
        lib.import_texts_file(f)
    assert dump(lib.path) == before
    f.write_text("texts:\n" + good.replace("weight: 0.42", "weight: -1"))
    with pytest.raises(UserError, match=r"texts\[42\] \('prompt number 42'\): weight"):
        lib.import_texts_file(f)
    assert dump(lib.path) == before
    f.write_text("texts:\n" + good)
    added = lib.import_texts_file(f)
    assert len(added) == 100 and len(lib.list_skills()) == 101
    assert added[7].text == "prompt number 7" and added[7].weight == 0.07


def test_import_rejects_duplicates_in_entries(lib: Library) -> None:
    with pytest.raises(UserError, match=r"texts\[1\] \('A'\): duplicates texts\[0\]"):
        lib.import_texts([PromptEntry("a", index=0), PromptEntry("A", index=1)])
    assert lib.list_skills() == []


def test_export_round_trip(lib: Library, tmp_path: Path) -> None:
    content = "texts:\n- text: bow at right angle\n  weight: 0.125\n- text: Kick the door\n  weight: 3.0\n"
    f = tmp_path / "in.yaml"
    f.write_text(content)
    lib.import_texts_file(f)
    out = dump_texts(lib.export_texts())
    assert out == content
    assert [(e.text, e.weight) for e in parse_texts(out)] == [("bow at right angle", 0.125), ("Kick the door", 3.0)]


# -- runs, checkpoints, motion sets ------------------------------------------------------------


def test_runs(lib: Library) -> None:
    sk = lib.add_skill("jump")
    r1 = lib.create_run("skill", "cpu", skill="JUMP", config={"lr": 1e-4, "envs": 16})
    r2 = lib.create_run("LLC", "gpu", priority=3)
    assert (r1.skill_id, r1.kind, r1.engine, r1.status, r1.config) == (
        sk.id,
        "skill",
        "cpu",
        "queued",
        {"envs": 16, "lr": 1e-4},
    )
    assert r2.kind == "llc" and r2.priority == 3 and r2.skill_id is None
    assert [r.id for r in lib.list_runs()] == [r2.id, r1.id]
    assert [r.id for r in lib.list_runs(kind="llc")] == [r2.id]
    assert [r.id for r in lib.list_runs(skill=sk.id)] == [r1.id]
    assert [r.id for r in lib.list_runs(engine="cpu", status="queued")] == [r1.id]
    with pytest.raises(UserError, match="unknown run kind 'walk'"):
        lib.create_run("walk", "cpu")
    with pytest.raises(UserError, match="unknown engine 'tpu'"):
        lib.create_run("skill", "tpu")
    with pytest.raises(NotFoundError):
        lib.create_run("skill", "cpu", skill=99)
    with pytest.raises(UserError, match="unknown run status"):
        lib.list_runs(status="paused")

    r = lib.update_run(r1.id, status="running", pid=1234, run_dir="runs/1")
    assert r.started_at is not None and r.ended_at is None and r.pid == 1234 and r.run_dir == "runs/1"
    assert lib.heartbeat(r1.id).heartbeat_at is not None
    r = lib.update_run(r1.id, status="failed", error="boom", pid=None)
    assert r.ended_at is not None and r.error == "boom" and r.pid is None
    assert lib.update_run(r1.id, config={"x": 1}).config == {"x": 1}
    with pytest.raises(NotFoundError, match="no run with id 77"):
        lib.update_run(77, status="done")
    with pytest.raises(NotFoundError):
        lib.get_run(77)


def test_checkpoints_cascade(lib: Library) -> None:
    run = lib.create_run("llc", "cpu")
    lib.add_checkpoint(run.id, "runs/1/ckpt_200.pt", 200, {"reward": 0.5})
    lib.add_checkpoint(run.id, "runs/1/ckpt_100.pt", 100)
    cks = lib.list_checkpoints(run.id)
    assert [c.step for c in cks] == [100, 200] and cks[1].metrics == {"reward": 0.5}
    with pytest.raises(NotFoundError):
        lib.add_checkpoint(99, "x.pt", 1)
    with lib.engine.begin() as conn:  # foreign_keys=ON: deleting a run deletes its checkpoints
        conn.exec_driver_sql("DELETE FROM run WHERE id = ?", (run.id,))
    assert lib.list_checkpoints(run.id) == []
    assert lib.counts()["checkpoints"] == 0


def test_motion_sets(lib: Library) -> None:
    a = lib.upsert_motion_set("configs/motions/starter.yaml", clip_count=3, duration_s=12.5)
    b = lib.upsert_motion_set("configs/motions/starter.yaml", clip_count=4, duration_s=15.0)
    lib.upsert_motion_set("other.yaml", clip_count=1, duration_s=1.0)
    assert a.id == b.id
    assert [(m.path, m.clip_count, m.duration_s) for m in lib.list_motion_sets()] == [
        ("configs/motions/starter.yaml", 4, 15.0),
        ("other.yaml", 1, 1.0),
    ]


def test_claim_order_and_filters(lib: Library) -> None:
    r1 = lib.create_run("skill", "cpu")
    r2 = lib.create_run("skill", "gpu", priority=5)
    r3 = lib.create_run("proxy", "cpu", priority=5)
    lib.create_run("llc", "cpu", status="done")
    first = lib.claim_next_queued_run(pid=42)
    assert first is not None and first.id == r2.id and first.status == "running" and first.pid == 42
    assert first.started_at is not None
    assert lib.claim_next_queued_run(kinds=["skill"], engines=["cpu"]).id == r1.id
    assert lib.claim_next_queued_run().id == r3.id
    assert lib.claim_next_queued_run() is None


def test_counts(lib: Library) -> None:
    lib.add_skill("a")
    lib.create_run("llc", "cpu")
    lib.create_run("llc", "cpu", status="done")
    c = lib.counts()
    assert c == {"skills": 1, "runs": 2, "runs_by_status": {"queued": 1, "done": 1}, "checkpoints": 0, "motion_sets": 0}


# -- migrations --------------------------------------------------------------------------------


def make_v1_db(path: Path) -> None:
    """A library as version 1 of the code wrote it (v1 DDL, no run.priority), with some data."""
    conn = sqlite3.connect(path, isolation_level=None)
    assert db.migrate(conn, target=1) == 1
    ts = "2025-01-02 03:04:05.000000"
    conn.execute(
        "INSERT INTO skill (text, normalized_text, weight, tags, notes, status, created_at, updated_at) "
        "VALUES ('Jump forward', 'jump forward', 0.5, '[\"loco\"]', 'old', 'trained', ?, ?)",
        (ts, ts),
    )
    conn.execute(
        "INSERT INTO run (skill_id, kind, engine, status, config_json, created_at) "
        "VALUES (1, 'skill', 'cpu', 'queued', '{\"a\": 1}', ?)",
        (ts,),
    )
    conn.execute("INSERT INTO checkpoint (run_id, path, step, created_at) VALUES (1, 'c.pt', 10, ?)", (ts,))
    conn.close()


def test_v1_database_migrates_to_latest(tmp_path: Path) -> None:
    path = tmp_path / "skills.db"
    make_v1_db(path)
    cols = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(run)")]
    assert "priority" not in cols
    v1_dump = dump(path)
    with Library(path) as lib:
        assert lib.schema_version == db.SCHEMA_VERSION == 3
        sk = lib.get_skill(1)
        assert (sk.text, sk.weight, sk.tag_list, sk.notes, sk.status) == (
            "Jump forward",
            0.5,
            ["loco"],
            "old",
            "trained",
        )
        assert sk.created_at.year == 2025
        run = lib.get_run(1)
        assert run.priority == 0 and run.config == {"a": 1} and run.skill_id == 1
        assert [c.path for c in lib.list_checkpoints(1)] == ["c.pt"]
        assert lib.claim_next_queued_run().id == 1  # the new column works
    backup = tmp_path / "skills.db.bak-v1"
    assert backup.is_file()
    bconn = sqlite3.connect(backup)
    assert bconn.execute("PRAGMA user_version").fetchone()[0] == 1
    bconn.close()
    assert dump(backup) == v1_dump
    # Re-opening the latest schema is a no-op: no new backup.
    backup.unlink()
    Library(path).close()
    assert not backup.exists()


def test_fresh_database_has_no_backup(tmp_path: Path) -> None:
    Library(tmp_path / "skills.db").close()
    assert list(tmp_path.glob("*.bak-*")) == []


def test_migrate_is_idempotent_and_bounded(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    assert db.migrate(conn) == db.SCHEMA_VERSION
    assert db.migrate(conn) == db.SCHEMA_VERSION
    with pytest.raises(ValueError):
        db.migrate(conn, target=db.SCHEMA_VERSION + 1)
    conn.close()


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "skills.db"
    Library(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 9")
    conn.close()
    before = dump(path)
    with pytest.raises(
        SchemaTooNewError,
        match=r"skills.db was made by a newer anyskill \(schema v9, this release knows v3\); upgrade anyskill",
    ):
        Library(path)
    assert dump(path) == before
    assert list(tmp_path.glob("*.bak-*")) == []


def test_not_a_library(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(DatabaseError, match="not an anyskill library"):
        Library(foreign)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(DatabaseError, match="not a readable anyskill library"):
        Library(garbage)


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "skills.db"
    make_v1_db(path)
    before = dump(path)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE run ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")
        conn.execute("THIS IS NOT SQL")

    monkeypatch.setattr(db, "MIGRATIONS", [db.MIGRATIONS[0], broken])
    with pytest.raises(DatabaseError, match=r"upgrading .* from schema v1 failed .*skills.db.bak-v1"):
        Library(path)
    assert dump(path) == before


# -- locking and concurrency -------------------------------------------------------------------


def test_locked_database_is_a_clear_error(lib: Library) -> None:
    lib.add_skill("a")
    blocker = sqlite3.connect(lib.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        quick = Library(lib.path, timeout_s=0.2)
        t0 = time.monotonic()
        with pytest.raises(DatabaseLockedError, match=r"skills.db is locked by another process \(waited 0.2 s\)"):
            quick.add_skill("b")
        assert time.monotonic() - t0 < 5
        assert [s.text for s in quick.list_skills()] == ["a"]  # WAL: readers are not blocked
        quick.close()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert [s.text for s in lib.list_skills()] == ["a"]


WRITER = textwrap.dedent(
    """
    import sys, time, pathlib
    from anyskill_tui.store.library import Library
    db, name, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), pathlib.Path(sys.argv[4])
    lib = Library(db)
    pathlib.Path(go.parent / f"ready-{name}").touch()
    while not go.exists():
        time.sleep(0.005)
    for i in range(n):
        lib.add_skill(f"{name} prompt {i}")
    print("ok")
    """
)

CLAIMER = textwrap.dedent(
    """
    import json, os, sys, time, pathlib
    from anyskill_tui.store.library import Library
    db, name, go = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    lib = Library(db)
    pathlib.Path(go.parent / f"ready-{name}").touch()
    while not go.exists():
        time.sleep(0.005)
    got = []
    while (run := lib.claim_next_queued_run(pid=os.getpid())) is not None:
        got.append(run.id)
    print(json.dumps(got))
    """
)


def _race(tmp_path: Path, script: str, extra: list[list[str]]) -> list[str]:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for args in extra
    ]
    deadline = time.monotonic() + 60
    names = [a[1] for a in extra]
    while not all((tmp_path / f"ready-{n}").exists() for n in names):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "Traceback" not in err and "locked" not in err, err
        outs.append(out)
    return outs


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "skills.db"
    Library(path).close()
    outs = _race(tmp_path, WRITER, [[str(path), "alpha", "200"], [str(path), "beta", "200"]])
    assert [o.strip() for o in outs] == ["ok", "ok"]
    with Library(path) as lib:
        skills = lib.list_skills()
    assert len(skills) == 400
    assert len({s.normalized_text for s in skills}) == 400


def test_two_processes_claim_each_run_once(tmp_path: Path) -> None:
    path = tmp_path / "skills.db"
    with Library(path) as lib:
        ids = [lib.create_run("skill", "cpu").id for _ in range(50)]
    outs = _race(tmp_path, CLAIMER, [[str(path), "a"], [str(path), "b"]])
    a, b = (json.loads(o) for o in outs)
    assert not set(a) & set(b)
    assert sorted(a + b) == ids
    with Library(path) as lib:
        assert {r.status for r in lib.list_runs()} == {"running"}
        assert len({r.pid for r in lib.list_runs()}) <= 2
