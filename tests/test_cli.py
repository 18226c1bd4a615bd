"""The library commands: init, info, skills *, runs *; errors; --json; import hygiene and start-up."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from anyskill_tui.cli import app
from anyskill_tui.commands import skills as skills_cmd
from anyskill_tui.store.library import Library
from anyskill_tui.workspace import init_workspace

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYSKILL_HOME", raising=False)
    monkeypatch.delenv("ANYSKILL_DB_TIMEOUT", raising=False)
    monkeypatch.delenv("ANYSKILL_CLIP_WEIGHTS", raising=False)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return init_workspace(tmp_path / "ws")[0].root


def cli(ws: Path, *args: str, input: str | None = None):
    return runner.invoke(app, ["--workspace", str(ws), *args], input=input)


def ok(ws: Path, *args: str, input: str | None = None):
    r = cli(ws, *args, input=input)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return r


def dump(ws: Path) -> list[str]:
    conn = sqlite3.connect(ws / "skills.db")
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def fails(ws: Path, *args: str, message: str, input: str | None = None) -> None:
    """The command exits non-zero with one `error: ...` line holding `message`; the library is unchanged."""
    before = dump(ws)
    r = cli(ws, *args, input=input)
    assert r.exit_code != 0, (r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    if r.exit_code == 1:
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr
    assert dump(ws) == before


# -- info --------------------------------------------------------------------------------------


def test_info(ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(ws, "skills", "add", "jump")
    data = json.loads(ok(ws, "info", "--json").stdout)
    assert data["workspace"] == str(ws) and data["schema_version"] == data["schema_latest"] == 3
    assert data["counts"]["skills"] == 1 and data["counts"]["runs"] == 0
    assert set(data["engines"]) == {"cpu", "gpu", "isaacgym"}
    assert set(data["engines"]["gpu"]["modules"]) == {"mujoco_warp", "warp"}
    assert isinstance(data["cuda"]["available"], bool)
    from anyskill_tui.commands.train import default_llc_file

    assert data["llc"] == {"path": str(default_llc_file().resolve()), "shipped": True}  # no llc run of one's own
    weights = tmp_path / "clip.bin"
    weights.write_bytes(b"0")
    monkeypatch.setenv("ANYSKILL_CLIP_WEIGHTS", str(weights))
    data = json.loads(ok(ws, "info", "--json").stdout)
    assert data["clip_weights"] == {"found": True, "path": str(weights), "source": "ANYSKILL_CLIP_WEIGHTS"}
    monkeypatch.delenv("ANYSKILL_CLIP_WEIGHTS")
    hub = tmp_path / "hub" / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" / "snapshots" / "abc"
    hub.mkdir(parents=True)
    (hub / "open_clip_model.safetensors").write_bytes(b"0")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert json.loads(ok(ws, "info", "--json").stdout)["clip_weights"]["found"] is True
    human = ok(ws, "info").stdout
    assert str(ws) in human and "schema" in human and "engine cpu" in human and "default LLC" in human
    monkeypatch.setattr("anyskill_tui.commands.train.default_llc_file", lambda: tmp_path / "not-shipped.pt")
    assert json.loads(ok(ws, "info", "--json").stdout)["llc"] == {"path": None, "shipped": False}


# -- skills ------------------------------------------------------------------------------------


def test_skills_add_list_show(ws: Path) -> None:
    r = ok(ws, "skills", "add", "jump  forward", "--weight", "0.5", "--tag", "Loco", "-t", "demo")
    assert "added skill 1" in r.stderr and r.stdout == ""
    added = json.loads(ok(ws, "skills", "add", "wave hand", "--json").stdout)
    assert added["id"] == 2 and added["weight"] == 1.0
    ok(ws, "skills", "add", "run", "--tag", "loco")

    rows = json.loads(ok(ws, "skills", "list", "--json").stdout)
    assert [(s["id"], s["text"], s["weight"], s["tags"]) for s in rows] == [
        (1, "jump forward", 0.5, ["loco", "demo"]),
        (2, "wave hand", 1.0, []),
        (3, "run", 1.0, ["loco"]),
    ]
    assert [s["id"] for s in json.loads(ok(ws, "skills", "list", "--tag", "loco", "--json").stdout)] == [1, 3]
    assert [s["id"] for s in json.loads(ok(ws, "skills", "list", "--search", "WAVE", "--json").stdout)] == [2]
    assert json.loads(ok(ws, "skills", "list", "--status", "trained", "--json").stdout) == []
    table = ok(ws, "skills", "list").stdout
    assert "jump forward" in table and "wave hand" in table
    assert "no skills match" in ok(ws, "skills", "list", "--search", "zzz").stderr

    shown = json.loads(ok(ws, "skills", "show", "1", "--json").stdout)
    assert shown["text"] == "jump forward" and shown["runs"] == []
    assert json.loads(ok(ws, "skills", "show", "WAVE  Hand", "--json").stdout)["id"] == 2
    assert "jump forward" in ok(ws, "skills", "show", "1").stdout


def test_skill_with_all_digit_text(ws: Path) -> None:
    ok(ws, "skills", "add", "123")
    assert json.loads(ok(ws, "skills", "show", "123", "--json").stdout)["text"] == "123"
    assert json.loads(ok(ws, "skills", "show", "1", "--json").stdout)["text"] == "123"


def test_skills_edit(ws: Path) -> None:
    ok(ws, "skills", "add", "jump", "--tag", "a", "--tag", "b")
    ok(ws, "skills", "add", "wave")
    r = ok(
        ws,
        "skills",
        "edit",
        "1",
        "--text",
        "Jump high",
        "--weight",
        "2",
        "--tag",
        "c",
        "--untag",
        "a",
        "--notes",
        "n",
        "--status",
        "trained",
        "--json",
    )
    d = json.loads(r.stdout)
    assert (d["text"], d["weight"], d["tags"], d["notes"], d["status"]) == (
        "Jump high",
        2.0,
        ["b", "c"],
        "n",
        "trained",
    )
    assert "updated skill 1" in ok(ws, "skills", "edit", "jump high", "--weight", "3").stderr
    fails(ws, "skills", "edit", "1", message="nothing to change")
    fails(ws, "skills", "edit", "1", "--text", "WAVE", message="'WAVE' is already in the library as skill 2")
    fails(ws, "skills", "edit", "1", "--text", "   ", message="empty prompt")
    fails(ws, "skills", "edit", "1", "--weight", "-1", message="weight must be a finite number >= 0")
    fails(ws, "skills", "edit", "9", "--weight", "1", message="no skill with id 9")
    fails(ws, "skills", "edit", "1", "--status", "bogus", message="Invalid value for '--status'")  # usage error, exit 2


def test_skills_rm(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(ws, "skills", "add", "jump")
    ok(ws, "skills", "add", "wave")
    # CI: stdin is not a terminal and there is no --yes -> refuse, do not hang.
    fails(ws, "skills", "rm", "1", message="not removing skill 1 ('jump'): stdin is not a terminal; pass --yes")
    monkeypatch.setattr(skills_cmd, "stdin_is_interactive", lambda: True)
    before = dump(ws)
    r = cli(ws, "skills", "rm", "1", input="n\n")
    assert r.exit_code == 1 and "remove skill 1 ('jump')? [y/N]" in r.stderr and "error: not removed" in r.stderr
    assert dump(ws) == before
    r = ok(ws, "skills", "rm", "1", input="y\n")
    assert "removed skill 1" in r.stderr
    assert "removed skill 2" in ok(ws, "skills", "rm", "wave", "--yes").stderr
    assert json.loads(ok(ws, "skills", "list", "--json").stdout) == []
    fails(ws, "skills", "rm", "1", "--yes", message="no skill with id 1")


def test_rm_refused_while_run_active(ws: Path) -> None:
    ok(ws, "skills", "add", "jump")
    with Library(ws / "skills.db") as lib:
        lib.create_run("skill", "cpu", skill=1)
    fails(ws, "skills", "rm", "1", "--yes", message="skill 1 has run 1 queued; stop it before removing the skill")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["skills", "add", ""], "empty prompt"),
        (["skills", "add", "  \t  "], "empty prompt"),
        (["skills", "add", "x" * 301], "301 characters, over the limit of 300"),
        (["skills", "add", "  JUMP    forward "], "is already in the library as skill 1 ('jump forward')"),
        (["skills", "add", "run", "--weight", "-0.5"], "weight must be a finite number >= 0"),
        (
            ["skills", "add", "run", "--weight", "heavy"],
            "Invalid value for '--weight'",
        ),  # usage error from Typer, exit 2
        (["skills", "show", "42"], "no skill with id 42"),
        (["skills", "show", "no such prompt"], "no skill with text 'no such prompt'"),
        (["runs", "show", "7"], "no run with id 7"),
    ],
)
def test_bad_input(ws: Path, args: list[str], message: str) -> None:
    ok(ws, "skills", "add", "jump forward")
    fails(ws, *args, message=message)


# -- import / export ---------------------------------------------------------------------------


def _texts(n: int, weight: float = 0.125) -> str:
    return "texts:\n" + "".join(f"  - text: prompt {i}\n    weight: {weight}\n" for i in range(n))


def test_import_export_round_trip(ws: Path, tmp_path: Path) -> None:
    src = tmp_path / "texts.yaml"
    src.write_text("texts:\n- text: bow at right angle\n  weight: 1.0\n- text: Kick the door\n  weight: 0.125\n")
    r = ok(ws, "skills", "import", str(src))
    assert "imported 2 skill(s)" in r.stderr
    out = ok(ws, "skills", "export").stdout
    assert out == src.read_text()
    dest = tmp_path / "out.yaml"
    assert "exported 2 skill(s)" in ok(ws, "skills", "export", str(dest)).stderr
    assert dest.read_text() == src.read_text()
    # what was exported imports again into a fresh workspace, identically
    ws2 = init_workspace(tmp_path / "ws2")[0].root
    ok(ws2, "skills", "import", str(dest))
    assert ok(ws2, "skills", "export", "-").stdout == out
    assert ok(ws, "skills", "export", "--tag", "nope").stdout == "texts: []\n"


def test_import_json_output(ws: Path, tmp_path: Path) -> None:
    src = tmp_path / "t.yaml"
    src.write_text(_texts(3))
    rows = json.loads(ok(ws, "skills", "import", str(src), "--json").stdout)
    assert [r["text"] for r in rows] == ["prompt 0", "prompt 1", "prompt 2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("texts:\n  - text: a\n    weight: [1\n", "t.yaml:4:1: malformed YAML"),
        ("texts: [\n", "t.yaml:2:1: malformed YAML"),
        ("- text: a\n", "t.yaml:1: expected a mapping with a `texts:` list"),
        ("prompts: []\n", "no `texts:` key"),
        ("texts:\n  - text: a\n  - weight: 2\n", "t.yaml:3: texts[1]: entry has no `text`"),
        (
            "texts:\n  - text: a\n    weight: lots\n",
            "t.yaml:2: texts[0] ('a'): weight must be a number >= 0, got 'lots'",
        ),
        ("texts:\n  - text: a\n    weight: -1\n", "t.yaml:2: texts[0] ('a'): weight must be a finite number >= 0"),
        ("texts:\n  - text: ''\n", "t.yaml:2: texts[0]: empty prompt"),
        ("texts:\n  - text: a\n  - text: ' A'\n", "t.yaml:3: texts[1]: 'A' duplicates texts[0] (line 2)"),
        ("texts:\n  - text: Jump Forward\n", "t.yaml:2: texts[0] ('Jump Forward'): already in the library as skill 1"),
    ],
)
def test_import_bad_files(ws: Path, tmp_path: Path, content: str, message: str) -> None:
    ok(ws, "skills", "add", "jump forward")
    f = tmp_path / "t.yaml"
    f.write_text(content)
    fails(ws, "skills", "import", str(f), message=message)


def test_import_100_with_one_bad_entry_imports_nothing(ws: Path, tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(_texts(100).replace("prompt 63\n    weight: 0.125", "prompt 63\n    weight: -3"))
    fails(ws, "skills", "import", str(f), message="texts[63] ('prompt 63'): weight must be a finite number >= 0")
    assert json.loads(ok(ws, "skills", "list", "--json").stdout) == []
    f.write_text(_texts(100))
    ok(ws, "skills", "import", str(f))
    assert len(json.loads(ok(ws, "skills", "list", "--json").stdout)) == 100


def test_import_missing_file(ws: Path, tmp_path: Path) -> None:
    fails(ws, "skills", "import", str(tmp_path / "nope.yaml"), message="nope.yaml: no such file")


# -- runs --------------------------------------------------------------------------------------


def test_runs_list_show(ws: Path) -> None:
    ok(ws, "skills", "add", "jump")
    assert "no runs yet" in ok(ws, "runs", "list").stderr
    assert json.loads(ok(ws, "runs", "list", "--json").stdout) == []
    with Library(ws / "skills.db") as lib:
        r1 = lib.create_run("skill", "cpu", skill=1, config={"envs": 16})
        lib.create_run("llc", "gpu", priority=2)
        # A live process (this one): `runs list/show` reconcile, and a dead pid would show as failed.
        me = psutil.Process()
        lib.update_run(r1.id, status="running", pid=me.pid, proc_create_time=me.create_time())
        lib.add_checkpoint(r1.id, "runs/1/ckpt_10.pt", 10, {"clip_sim": 0.25})
    rows = json.loads(ok(ws, "runs", "list", "--json").stdout)
    assert [(r["id"], r["kind"], r["status"]) for r in rows] == [(2, "llc", "queued"), (1, "skill", "running")]
    assert [r["id"] for r in json.loads(ok(ws, "runs", "list", "--status", "running", "--json").stdout)] == [1]
    assert [r["id"] for r in json.loads(ok(ws, "runs", "list", "--kind", "llc", "--json").stdout)] == [2]
    assert [r["id"] for r in json.loads(ok(ws, "runs", "list", "--skill", "jump", "--json").stdout)] == [1]
    table = ok(ws, "runs", "list").stdout
    assert "skill" in table and "llc" in table and "1: jump" in table
    d = json.loads(ok(ws, "runs", "show", "1", "--json").stdout)
    assert d["skill_text"] == "jump" and d["config"] == {"envs": 16} and d["pid"] == me.pid
    assert [(c["step"], c["metrics"]) for c in d["checkpoints"]] == [(10, {"clip_sim": 0.25})]
    human = ok(ws, "runs", "show", "1").stdout
    assert "ckpt_10.pt" in human and "running" in human
    assert json.loads(ok(ws, "skills", "show", "1", "--json").stdout)["runs"][0]["id"] == 1
    fails(ws, "runs", "list", "--kind", "walk", message="Invalid value for '--kind'")  # usage error, exit 2
    fails(ws, "runs", "list", "--skill", "nope", message="no skill with text 'nope'")


# -- database states ---------------------------------------------------------------------------


def test_newer_schema_is_refused(ws: Path) -> None:
    conn = sqlite3.connect(ws / "skills.db")
    conn.execute("PRAGMA user_version = 5")
    conn.close()
    for args in (["skills", "list"], ["info"], ["skills", "add", "x"]):
        fails(
            ws,
            *args,
            message="skills.db was made by a newer anyskill (schema v5, this release knows v3); upgrade anyskill",
        )


def test_locked_database(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(ws, "skills", "add", "jump")
    monkeypatch.setenv("ANYSKILL_DB_TIMEOUT", "0.2")
    blocker = sqlite3.connect(ws / "skills.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        r = cli(ws, "skills", "add", "wave")
        assert r.exit_code == 1
        assert r.stderr.startswith("error: ") and "skills.db is locked by another process (waited 0.2 s)" in r.stderr
        assert "ANYSKILL_DB_TIMEOUT" in r.stderr and "Traceback" not in r.stderr
        assert json.loads(ok(ws, "skills", "list", "--json").stdout)[0]["text"] == "jump"  # reads still work
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert len(json.loads(ok(ws, "skills", "list", "--json").stdout)) == 1


def test_old_workspace_is_migrated_with_backup(tmp_path: Path) -> None:
    from anyskill_tui.store import db

    ws = tmp_path / "old"
    ws.mkdir()
    conn = sqlite3.connect(ws / "skills.db", isolation_level=None)
    db.migrate(conn, target=1)
    conn.close()
    assert json.loads(ok(ws, "info", "--json").stdout)["schema_version"] == 3
    assert (ws / "skills.db.bak-v1").is_file()


# -- start-up ----------------------------------------------------------------------------------


def test_help_lists_groups() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for name in ("init", "info", "skills", "runs", "motions", "--workspace"):
        assert name in r.stdout


def _imported_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"{statement}; import sys; print(sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(out.stdout.replace("'", '"'))


def test_import_hygiene() -> None:
    heavy = ("torch", "mujoco", "warp", "textual")
    assert _imported_after("import anyskill_tui.cli", heavy) == []


def test_cli_and_store_package_do_not_import_sqlmodel() -> None:
    """SQLModel costs about 0.5 s to import: `anyskill --help` must not pay it."""
    heavy = ("torch", "mujoco", "warp", "textual", "sqlmodel", "sqlalchemy")
    assert _imported_after("import anyskill_tui.cli, anyskill_tui.store", heavy) == []
    assert _imported_after("import anyskill_tui.store.library", ("torch", "mujoco", "warp", "textual")) == []
