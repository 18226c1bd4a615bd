"""Run lifecycle with real detached runners on the toy trainer: done, stop, resume, SIGKILL after the grace,
stale detection, missing trainers, disk full / unwritable run dirs, and the v3 store migration."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from anyskill_tui.core.jobs import checkpoints, launcher, runner
from anyskill_tui.core.jobs.metrics import MetricsTail
from anyskill_tui.core.jobs.trainers import read_progress
from anyskill_tui.errors import UserError
from anyskill_tui.store import db
from anyskill_tui.store.library import Library
from anyskill_tui.store.models import utcnow
from anyskill_tui.workspace import init_workspace


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYSKILL_ENABLE_TOY_TRAINER", "1")
    monkeypatch.setenv("ANYSKILL_HEARTBEAT_S", "0.3")
    monkeypatch.delenv("ANYSKILL_STALE_S", raising=False)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return init_workspace(tmp_path / "ws")[0].root


@pytest.fixture
def lib(ws: Path):
    with Library(ws / "skills.db") as lib:
        yield lib


def toy(lib: Library, **cfg: object):
    return lib.create_run("proxy", "cpu", config={"trainer": "toy", **cfg})


def wait_for(pred, timeout: float = 30.0, every: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError("timed out")


def wait_status(lib: Library, run_id: int, statuses: tuple[str, ...], timeout: float = 40.0):
    return wait_for(lambda: (r := lib.get_run(run_id)).status in statuses and r, timeout)


def test_queued_running_done(ws: Path, lib: Library) -> None:
    skill = lib.add_skill("jump forward")
    run = lib.create_run("proxy", "cpu", skill=skill.id, config={"trainer": "toy", "steps": 12, "ckpt_every": 5})
    pid = launcher.start_run(ws, run.id)
    r = lib.get_run(run.id)
    assert r.status == "running" and r.pid == pid and r.proc_create_time is not None
    with pytest.raises(UserError, match="already running"):
        launcher.start_run(ws, run.id)
    r = wait_status(lib, run.id, ("done", "failed"))
    assert (r.status, r.error, r.step, r.total_steps) == ("done", None, 12, 12), r.error
    assert r.started_at and r.ended_at and r.heartbeat_at
    assert [c.step for c in lib.list_checkpoints(run.id)] == [5, 10, 12]
    run_dir = launcher.run_dir_for(ws, run.id)
    assert r.run_dir == f"runs/{run.id}" and run_dir.is_dir()
    assert [p[0] for p in MetricsTail(run_dir).poll()["loss"]] == list(range(1, 13))
    assert read_progress(run_dir)["step"] == 12
    log = (run_dir / "train.log").read_text()
    assert f"run {run.id} done" in log
    with pytest.raises(UserError, match="resume"):
        launcher.start_run(ws, run.id)
    with pytest.raises(UserError, match="nothing to resume"):
        launcher.resume_run(ws, run.id)
    assert launcher.stop_run(ws, run.id) == "done"


def test_stop_then_resume_continues_at_the_right_step(ws: Path, lib: Library) -> None:
    run = toy(lib, steps=400, ckpt_every=1000, step_s=0.02)  # only the stop saves a checkpoint
    launcher.start_run(ws, run.id)
    wait_for(lambda: (lib.get_run(run.id).step or 0) >= 5)
    assert launcher.stop_run(ws, run.id, grace_s=15) == "stopped"
    r = lib.get_run(run.id)
    assert r.error is None
    ckpt = checkpoints.latest_checkpoint(launcher.run_dir_for(ws, run.id))
    saved = checkpoints.load_checkpoint(ckpt)["step"]
    assert saved >= 5 and [c.step for c in lib.list_checkpoints(run.id)] == [saved]
    launcher.resume_run(ws, run.id)
    log = launcher.run_dir_for(ws, run.id) / "train.log"
    wait_for(lambda: f"resumed from {ckpt} at step {saved}" in log.read_text())
    wait_for(lambda: (lib.get_run(run.id).step or 0) > saved)
    assert launcher.stop_run(ws, run.id, grace_s=15) == "stopped"
    assert lib.list_checkpoints(run.id)[-1].step > saved


def test_sigterm_ignoring_trainer_is_killed_after_grace(ws: Path, lib: Library) -> None:
    run = toy(lib, steps=10_000, step_s=0.02, ignore_sigterm=True)
    pid = launcher.start_run(ws, run.id)
    wait_for(lambda: (lib.get_run(run.id).step or 0) >= 2)
    t0 = time.monotonic()
    assert launcher.stop_run(ws, run.id, grace_s=1.0) == "stopped"
    assert 1.0 <= time.monotonic() - t0 < 10
    r = lib.get_run(run.id)
    assert r.error == "killed after a 1 s grace"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_stop_queued_cancels(ws: Path, lib: Library) -> None:
    run = toy(lib)
    assert launcher.stop_run(ws, run.id) == "stopped"
    assert lib.get_run(run.id).error == "cancelled before it started"


def test_stale_pid_gone_and_pid_reuse(lib: Library) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = toy(lib)
    lib.update_run(gone.id, status="running", pid=dead.pid, proc_create_time=1.0, heartbeat_at=utcnow())
    reused = toy(lib)  # a live pid (ours) but another process's create time: PID reuse
    lib.update_run(reused.id, status="running", pid=os.getpid(), proc_create_time=12345.0, heartbeat_at=utcnow())
    alive = toy(lib)
    me = psutil.Process()
    lib.update_run(alive.id, status="running", pid=me.pid, proc_create_time=me.create_time(), heartbeat_at=utcnow())
    other = lib.add_skill("wave")
    assert sorted(launcher.reconcile(lib)) == sorted([gone.id, reused.id])
    assert lib.get_run(gone.id).status == "failed"
    assert lib.get_run(gone.id).error.startswith(f"worker process {dead.pid} is gone (last heartbeat ")
    assert lib.get_run(alive.id).status == "running"
    assert lib.get_skill(other.id).status == "new"
    assert launcher.reconcile(lib) == []


def test_stale_heartbeat_kills_the_silent_process(lib: Library) -> None:
    silent = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        run = toy(lib)
        ctime = psutil.Process(silent.pid).create_time()
        lib.update_run(
            run.id,
            status="running",
            pid=silent.pid,
            proc_create_time=ctime,
            heartbeat_at=utcnow() - timedelta(seconds=5),
        )
        assert launcher.reconcile(lib, stale_after=30) == []
        assert launcher.reconcile(lib, stale_after=2) == [run.id]
        r = lib.get_run(run.id)
        assert r.status == "failed" and "sent no heartbeat for" in r.error and "killed" in r.error
        assert silent.wait(timeout=5) == -signal.SIGKILL
        # A claimed run that never got a process is stale too, once the threshold passes.
        claimed = toy(lib)
        lib.update_run(claimed.id, status="running", started_at=utcnow() - timedelta(seconds=10))
        assert launcher.reconcile(lib, stale_after=2) == [claimed.id]
        assert "never started a process" in lib.get_run(claimed.id).error
    finally:
        silent.kill()
        silent.wait()


def test_missing_trainer_fails_clearly(ws: Path, lib: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    from anyskill_tui.core.jobs import trainers

    # a build without the LLC trainer module
    monkeypatch.setitem(trainers.TRAINERS, "llc", "anyskill_tui.core.learn.no_such_trainer:train_llc")
    run = lib.create_run("llc", "cpu")
    assert runner.execute(ws, run.id, install_signals=False) == 1
    r = lib.get_run(run.id)
    assert r.status == "failed"
    assert r.error.startswith("the llc trainer is not available in this build")


def test_trainer_exception_fails_with_reason(ws: Path, lib: Library) -> None:
    run = toy(lib, steps=20, step_s=0, fail_at_step=3)
    assert runner.execute(ws, run.id, install_signals=False) == 1
    r = lib.get_run(run.id)
    assert (r.status, r.error) == ("failed", "RuntimeError: toy trainer failed at step 3 (fail_at_step)")


def test_disk_full_fails_the_run_only(ws: Path, lib: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    skill = lib.add_skill("bow")
    other = toy(lib)
    run = lib.create_run("proxy", "cpu", skill=skill.id, config={"trainer": "toy", "steps": 20, "step_s": 0})
    import torch

    def full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    assert runner.execute(ws, run.id, install_signals=False) == 1
    r = lib.get_run(run.id)
    assert r.status == "failed" and r.error.startswith("disk full: No space left on device")
    assert lib.get_run(other.id).status == "queued" and lib.get_skill(skill.id).status == "new"
    assert lib.list_checkpoints(run.id) == []
    assert list(checkpoints.checkpoint_dir(launcher.run_dir_for(ws, run.id)).iterdir()) == []  # no temp left


def test_unwritable_run_dir(ws: Path, lib: Library) -> None:
    # Tests run as root (chmod does not stop root): make the checkpoint folder a regular file instead.
    run = toy(lib, steps=20, step_s=0)
    run_dir = launcher.run_dir_for(ws, run.id)
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoints").write_text("not a folder")
    assert runner.execute(ws, run.id, install_signals=False) == 1
    r = lib.get_run(run.id)
    assert r.status == "failed" and "checkpoints" in r.error
    # A run dir under a regular file: start_run cannot even open train.log.
    blocked = lib.create_run("proxy", "cpu", config={"trainer": "toy"}, run_dir=str(ws / "configs" / "f" / "r"))
    (ws / "configs" / "f").write_text("a file")
    with pytest.raises(UserError, match="cannot write the run dir"):
        launcher.start_run(ws, blocked.id)
    b = lib.get_run(blocked.id)
    assert b.status == "failed" and "cannot write the run dir" in b.error
    assert lib.get_run(run.id).error == r.error  # the other run is untouched


def test_toy_needs_the_switch(ws: Path, lib: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYSKILL_ENABLE_TOY_TRAINER")
    import anyskill_tui.core.jobs.trainers as tr

    monkeypatch.delitem(tr.TRAINERS, "toy", raising=False)
    run = toy(lib)
    assert runner.execute(ws, run.id, install_signals=False) == 1
    assert "only for tests" in lib.get_run(run.id).error


def test_v2_library_migrates_to_v3(tmp_path: Path) -> None:
    path = tmp_path / "skills.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert db.migrate(conn, target=2) == 2
    conn.execute(
        "INSERT INTO run (kind, engine, status, pid, created_at) VALUES ('llc', 'cpu', 'running', 7, '2025-01-01')"
    )
    conn.close()
    with Library(path) as lib:
        assert lib.schema_version == db.SCHEMA_VERSION == 3
        r = lib.get_run(1)
        assert (r.pid, r.proc_create_time, r.step, r.total_steps) == (7, None, None, None)
        r = lib.update_run(1, proc_create_time=1.5, step=3, total_steps=9)
        assert (r.proc_create_time, r.step, r.total_steps) == (1.5, 3, 9)
        assert r.to_dict()["total_steps"] == 9
    assert (tmp_path / "skills.db.bak-v2").is_file()
