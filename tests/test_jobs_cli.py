"""The run commands: queue, worker --once, runs tail/logs/stop/resume, and list/show reconciling."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anyskill_tui.cli import app
from anyskill_tui.store.library import Library
from anyskill_tui.store.models import utcnow
from anyskill_tui.workspace import init_workspace

runner = CliRunner()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYSKILL_ENABLE_TOY_TRAINER", "1")
    monkeypatch.setenv("ANYSKILL_HEARTBEAT_S", "0.3")
    monkeypatch.delenv("ANYSKILL_HOME", raising=False)


def ok(ws: Path, *args: str):
    r = runner.invoke(app, ["--workspace", str(ws), *args])
    assert r.exit_code == 0, (r.output, r.exception)
    return r


def test_queue_worker_tail_logs(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")[0].root
    with Library(ws / "skills.db") as lib:
        a = lib.create_run("proxy", "cpu", config={"trainer": "toy", "steps": 6, "step_s": 0})
        b = lib.create_run("proxy", "cpu", config={"trainer": "toy"}, priority=5)
        assert [r["id"] for r in json.loads(ok(ws, "queue", "--json").stdout)] == [b.id, a.id]
        assert json.loads(ok(ws, "runs", "stop", str(b.id), "--json").stdout)["status"] == "stopped"
        assert "started 1 run(s): 1" in ok(ws, "worker", "--once", "--slots", "1").output
        assert [r["id"] for r in json.loads(ok(ws, "queue", "--json").stdout)] == [a.id]
        end = time.monotonic() + 30
        while lib.get_run(a.id).status == "running" and time.monotonic() < end:
            time.sleep(0.2)
        assert lib.get_run(a.id).status == "done"
    snap = json.loads(ok(ws, "runs", "tail", str(a.id), "--once", "--json").stdout)
    assert snap["status"] == "done" and snap["metrics"]["loss"]["step"] == 6 and snap["progress"]["total"] == 6
    human = ok(ws, "runs", "tail", str(a.id), "--once").stdout
    assert "loss" in human and "weight_norm" in human and "6/6" in human
    assert f"run {a.id} done" in ok(ws, "runs", "logs", str(a.id), "-f").stdout  # ends with the run
    assert "already done" in ok(ws, "runs", "stop", str(a.id)).output
    r = runner.invoke(app, ["--workspace", str(ws), "runs", "resume", str(a.id)])
    assert r.exit_code == 1 and "nothing to resume" in r.output


def test_list_and_show_reconcile_stale_runs(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")[0].root
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Library(ws / "skills.db") as lib:
        run = lib.create_run("proxy", "cpu")
        lib.update_run(run.id, status="running", pid=dead.pid, proc_create_time=1.0, heartbeat_at=utcnow())
    rows = json.loads(ok(ws, "runs", "list", "--json").stdout)
    assert rows[0]["status"] == "failed" and "is gone" in rows[0]["error"]
    assert json.loads(ok(ws, "runs", "show", str(run.id), "--json").stdout)["status"] == "failed"
    assert "nothing queued or running" in ok(ws, "queue").output
