"""Workspaces: resolution order (--workspace, ANYSKILL_HOME, cwd), `anyskill init`, bare `anyskill`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from anyskill_tui import app as tui_app
from anyskill_tui.cli import app
from anyskill_tui.errors import UserError
from anyskill_tui.workspace import NoWorkspaceError, Workspace, find_workspace, init_workspace, workspace_dir

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYSKILL_HOME", raising=False)
    monkeypatch.delenv("ANYSKILL_DB_TIMEOUT", raising=False)


def test_init_creates_and_is_idempotent(tmp_path: Path) -> None:
    ws, created = init_workspace(tmp_path / "a" / "b")
    assert created and ws.exists()
    assert ws.db_path.is_file() and ws.configs_dir.is_dir() and ws.runs_dir.is_dir()
    ws.runs_dir.rmdir()
    ws2, created2 = init_workspace(tmp_path / "a" / "b")
    assert ws2 == ws and not created2 and ws.runs_dir.is_dir()


def test_init_on_a_file_fails(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        init_workspace(f)


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env, cwd = (init_workspace(tmp_path / n)[0] for n in ("explicit", "env", "cwd"))
    monkeypatch.chdir(cwd.root)
    assert find_workspace() == Workspace(cwd.root)
    monkeypatch.setenv("ANYSKILL_HOME", str(env.root))
    assert find_workspace() == Workspace(env.root)
    assert find_workspace(explicit.root) == Workspace(explicit.root)
    assert workspace_dir("rel", cwd=tmp_path).is_absolute()


def test_no_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NoWorkspaceError) as info:
        find_workspace()
    assert str(info.value) == f"no workspace here ({tmp_path}); run `anyskill init`"
    # Only the cwd counts: a workspace in a parent is not picked up.
    init_workspace(tmp_path)
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    with pytest.raises(NoWorkspaceError, match="no workspace here"):
        find_workspace()


def test_cli_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ws"
    r = runner.invoke(app, ["init", str(target)])
    assert r.exit_code == 0, r.output
    assert f"created workspace in {target}" in r.stderr
    assert r.stdout == ""
    r = runner.invoke(app, ["init", str(target)])
    assert r.exit_code == 0 and "already exists" in r.stderr
    # default: --workspace, else ANYSKILL_HOME, else cwd
    r = runner.invoke(app, ["--workspace", str(tmp_path / "ws2"), "init"])
    assert r.exit_code == 0 and (tmp_path / "ws2" / "skills.db").is_file()
    monkeypatch.setenv("ANYSKILL_HOME", str(tmp_path / "ws3"))
    assert runner.invoke(app, ["init"]).exit_code == 0 and (tmp_path / "ws3" / "skills.db").is_file()
    monkeypatch.delenv("ANYSKILL_HOME")
    monkeypatch.chdir(tmp_path / "ws")
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert runner.invoke(app, ["init"]).exit_code == 0 and (tmp_path / "here" / "skills.db").is_file()


def test_commands_without_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (["info"], ["skills", "list"], ["runs", "list", "--json"], ["skills", "add", "x"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 1, args
        assert r.stderr.strip() == f"error: no workspace here ({tmp_path}); run `anyskill init`"
        assert r.stdout == ""
    assert not (tmp_path / "skills.db").exists()
    r = runner.invoke(app, ["--workspace", str(tmp_path / "missing"), "skills", "list"])
    assert r.exit_code == 1 and f"no workspace here ({tmp_path / 'missing'})" in r.stderr


def test_bare_anyskill_without_workspace_opens_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[bool] = []
    monkeypatch.setattr(tui_app, "run_app", lambda: opened.append(True))
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, [])
    assert r.exit_code == 1
    assert "no workspace here" in r.stderr and opened == []


def test_bare_anyskill_opens_tui_on_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    import os

    monkeypatch.setattr(tui_app, "run_app", lambda: opened.append(os.environ["ANYSKILL_HOME"]))
    init_workspace(tmp_path / "ws")
    # recorded by monkeypatch, so the value the CLI writes for the TUI is undone after the test;
    # also shows that --workspace beats ANYSKILL_HOME
    monkeypatch.setenv("ANYSKILL_HOME", str(tmp_path / "elsewhere"))
    r = runner.invoke(app, ["--workspace", str(tmp_path / "ws")])
    assert r.exit_code == 0, r.output
    assert opened == [str(tmp_path / "ws")]
