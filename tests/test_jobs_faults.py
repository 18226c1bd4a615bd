"""Faults that must not lose work: kill -9 of the runner at random moments, and two workers racing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from anyskill_tui.core.jobs import checkpoints, launcher
from anyskill_tui.core.jobs.trainers import TrainContext, read_progress, train_toy
from anyskill_tui.store.library import Library
from anyskill_tui.workspace import init_workspace

KILLS = int(os.environ.get("ANYSKILL_TEST_KILLS", "12"))


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYSKILL_ENABLE_TOY_TRAINER", "1")
    monkeypatch.setenv("ANYSKILL_HEARTBEAT_S", "0.3")


def test_random_kill9_never_loses_a_checkpoint_and_resume_is_exact(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")[0].root
    cfg = {"trainer": "toy", "steps": 300, "ckpt_every": 3, "step_s": 0.01, "seed": 7}
    rng = random.Random(1234)
    with Library(ws / "skills.db") as lib:
        run = lib.create_run("proxy", "cpu", config=cfg)
        run_dir = launcher.run_dir_for(ws, run.id)
        launcher.start_run(ws, run.id)
        best = 0
        kills = 0
        t0 = time.monotonic()
        started = time.time()
        while kills < KILLS:
            r = lib.get_run(run.id)
            assert r.status == "running", r.error
            # Mostly while training (checkpoint writes included), sometimes during the runner's start-up.
            if rng.random() < 0.8:
                for _ in range(300):
                    prog = read_progress(run_dir)
                    if prog and prog["session_start_time"] > started:
                        break
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, 0.5))
            else:
                time.sleep(rng.uniform(0.0, 2.0))
            os.killpg(r.pid, signal.SIGKILL)
            launcher._CHILDREN[r.pid].wait()
            kills += 1
            assert launcher.reconcile(lib) == [run.id]
            failed = lib.get_run(run.id)
            assert failed.status == "failed" and f"worker process {r.pid} is gone" in failed.error
            latest = checkpoints.latest_checkpoint(run_dir)
            if latest is not None:
                state = checkpoints.load_checkpoint(latest)  # the last complete checkpoint loads
                assert state["step"] >= best  # never goes back: no work lost
                best = state["step"]
            if best >= cfg["steps"]:
                break
            started = time.time()
            launcher.resume_run(ws, run.id)
        launcher.resume_run(ws, run.id) if lib.get_run(run.id).status == "failed" else None
        deadline = time.monotonic() + 60
        while lib.get_run(run.id).status == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        done = lib.get_run(run.id)
        assert done.status == "done", done.error
        assert done.step == cfg["steps"]
        final = checkpoints.load_checkpoint(checkpoints.latest_checkpoint(run_dir))
        assert final["step"] == cfg["steps"]
        assert kills >= min(KILLS, 5), kills
        assert best > 0  # kills landed while training, not only during start-up
        print(f"{kills} kills, last checkpoint before finishing at step {best}, {time.monotonic() - t0:.1f} s")

    # The same training without interruptions ends at the same weights: resume restored model,
    # optimizer, step and RNG exactly.
    ref_dir = tmp_path / "ref"
    ctx = TrainContext(run_id=0, run_dir=ref_dir, config={**cfg, "step_s": 0})
    train_toy(ctx)
    ctx.close()
    ref = checkpoints.load_checkpoint(checkpoints.latest_checkpoint(ref_dir))
    for k, v in ref["model"].items():
        assert torch.equal(v, final["model"][k]), k


def test_two_workers_never_take_the_same_run(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")[0].root
    n = 60
    with Library(ws / "skills.db") as lib:
        for i in range(n):
            lib.create_run("proxy", "cpu", config={"trainer": "toy"}, priority=i % 3)
    out = tmp_path / "starts.txt"
    script = textwrap.dedent(
        """
        import os, sys, time
        from pathlib import Path
        from anyskill_tui.core.jobs.queue import Worker
        from anyskill_tui.store.library import Library

        out = sys.argv[2]
        def launch(root, run_id):
            with open(out, "a") as f:
                f.write(f"{run_id} {os.getpid()}\\n")
            return 0
        w = Worker(sys.argv[1], slots=10_000, launch=launch, stale_after=3600)
        lib = Library(Path(sys.argv[1]) / "skills.db")
        while lib.list_runs(status="queued"):
            w.run_once()
        print(len(w.started))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(ws), str(out)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    counts = [int(p.communicate(timeout=120)[0].strip()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    ids = [int(line.split()[0]) for line in out.read_text().splitlines()]
    assert sorted(ids) == list(range(1, n + 1))  # each run started exactly once
    assert sum(counts) == n
    with Library(ws / "skills.db") as lib:
        assert {r.status for r in lib.list_runs()} == {"running"}
