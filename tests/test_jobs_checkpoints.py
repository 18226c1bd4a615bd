"""Atomic checkpoints: interrupted writes never replace a good file; latest_checkpoint ignores partial ones."""

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

from anyskill_tui.core.jobs import checkpoints as ck
from anyskill_tui.errors import UserError


def test_roundtrip_and_latest_pointer(tmp_path: Path) -> None:
    assert ck.latest_checkpoint(tmp_path) is None
    d = ck.checkpoint_dir(tmp_path)
    for step in (10, 20, 5):
        ck.save_checkpoint(d / ck.checkpoint_name(step), {"step": step, "w": torch.full((3,), float(step))})
    # The pointer names the last save (step 5), but a complete higher step exists: that one wins.
    assert (d / "latest").read_text().strip() == "ckpt_00000005.pt"
    assert ck.latest_checkpoint(tmp_path) == d / "ckpt_00000020.pt"
    assert ck.load_checkpoint(d / "ckpt_00000010.pt")["step"] == 10
    assert [ck.step_of(p) for p in ck.list_checkpoints(tmp_path)] == [5, 10, 20]
    with pytest.raises(UserError, match="does not exist"):
        ck.load_checkpoint(d / "nope.pt")


def test_failed_replace_keeps_the_good_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ck.checkpoint_dir(tmp_path) / ck.checkpoint_name(1)
    ck.save_checkpoint(path, {"v": 1})
    good = path.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.os, "replace", boom)
    with pytest.raises(OSError):
        ck.save_checkpoint(path, {"v": 2, "big": torch.zeros(1000)})
    assert path.read_bytes() == good
    assert {p.name for p in path.parent.iterdir()} == {"ckpt_00000001.pt", "latest"}  # no temp file left
    monkeypatch.undo()
    assert ck.load_checkpoint(ck.latest_checkpoint(tmp_path))["v"] == 1


def test_partial_and_temp_files_are_ignored(tmp_path: Path) -> None:
    d = ck.checkpoint_dir(tmp_path)
    ck.save_checkpoint(d / ck.checkpoint_name(3), {"v": 3})
    data = (d / ck.checkpoint_name(3)).read_bytes()
    (d / ".ckpt_00000009.pt.tmp-1-ab").write_bytes(data[: len(data) // 2])  # a killed writer's temp file
    (d / ck.checkpoint_name(7)).write_bytes(data[: len(data) // 2])  # a truncated copy under a final name
    (d / "latest").write_text("ckpt_00000007.pt\n")
    assert ck.latest_checkpoint(tmp_path) == d / ck.checkpoint_name(3)
    assert ck.clean_temp_files(tmp_path) == 1
    assert not (d / ".ckpt_00000009.pt.tmp-1-ab").exists()


def test_kill_during_writes_never_leaves_a_bad_latest(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, torch
        from anyskill_tui.core.jobs.checkpoints import checkpoint_dir, checkpoint_name, save_checkpoint
        print("ready", flush=True)
        step = 0
        while True:
            step += 1
            path = checkpoint_dir(sys.argv[1]) / checkpoint_name(step)
            save_checkpoint(path, {"step": step, "w": torch.randn(400_000)})
        """
    )
    rng = random.Random(1)
    last = 0
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.3, 1.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        latest = ck.latest_checkpoint(tmp_path)
        assert latest is not None
        state = ck.load_checkpoint(latest)  # complete and loadable
        assert state["step"] == ck.step_of(latest) and state["w"].shape == (400_000,)
        last = state["step"]
    assert last > 0


def test_latest_pointer_and_run_dirs_resolve_to_the_newest_checkpoint(tmp_path: Path) -> None:
    from anyskill_tui.core.jobs.checkpoints import load_checkpoint, resolve_checkpoint_path, save_checkpoint
    from anyskill_tui.errors import UserError

    run_dir = tmp_path / "run"
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True)
    for step in (1, 2):
        save_checkpoint(folder / f"ckpt_{step:08d}.pt", {"step": step})
    newest = folder / "ckpt_00000002.pt"
    assert resolve_checkpoint_path(folder / "latest") == newest
    assert resolve_checkpoint_path(run_dir) == newest
    assert resolve_checkpoint_path(folder) == newest
    assert load_checkpoint(folder / "latest")["step"] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="holds no complete checkpoint"):
        resolve_checkpoint_path(empty)
