"""The metrics tailer: growing files, partial records, several files, truncation, a live writer, downsampling."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from anyskill_tui.core.jobs.metrics import EventTail, MetricsTail, MetricsWriter, downsample


def write_events(run_dir: Path, steps: range, tag: str = "loss") -> Path:
    with MetricsWriter(run_dir) as w:
        for s in steps:
            w.add_scalar(tag, s * 0.5, s)
    files = sorted((run_dir / "metrics").glob("events.out.tfevents.*"))
    return files[-1]


def steps_of(points: list[tuple[int, float, float]]) -> list[int]:
    return [p[0] for p in points]


def test_partial_tail_records_resume_where_they_stopped(tmp_path: Path) -> None:
    src = write_events(tmp_path / "src", range(1, 101))
    data = src.read_bytes()
    run_dir = tmp_path / "run"
    dst = run_dir / "metrics" / src.name
    dst.parent.mkdir(parents=True)
    tail = MetricsTail(run_dir)
    got: list[int] = []
    # Feed the file in odd-sized pieces: every cut lands mid-record at some point.
    for cut in [1, 7, 13, 500, 501, 1777, 2500, len(data) - 3, len(data)]:
        dst.write_bytes(data[:cut])
        new = tail.poll()
        got += steps_of(new.get("loss", []))
    assert got == list(range(1, 101))  # every point exactly once, in order
    assert tail.poll() == {}  # nothing new: nothing returned
    assert tail.latest["loss"][0] == 100 and tail.latest["loss"][2] == 50.0


def test_second_file_and_only_new_points(tmp_path: Path) -> None:
    write_events(tmp_path, range(0, 10))
    tail = MetricsTail(tmp_path)
    assert steps_of(tail.poll()["loss"]) == list(range(10))
    time.sleep(0.01)
    write_events(tmp_path, range(10, 15))  # a resumed trainer: a new file
    write_events(tmp_path, range(0, 3), tag="reward")
    new = tail.poll()
    assert steps_of(new["loss"]) == list(range(10, 15))
    assert steps_of(new["reward"]) == [0, 1, 2]
    assert len(tail.files()) == 3
    assert tail.poll() == {}


def test_truncated_file_is_read_again(tmp_path: Path) -> None:
    f = write_events(tmp_path, range(0, 50))
    tail = MetricsTail(tmp_path)
    assert len(tail.poll()["loss"]) == 50
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 3])
    again = steps_of(tail.poll()["loss"])
    assert again and again == list(range(len(again)))  # from the start, complete records only


def test_rl_games_layout_and_big_record(tmp_path: Path) -> None:
    summaries = tmp_path / "output" / "Humanoid_01-02-03-04" / "summaries"
    from tensorboardX import SummaryWriter

    w = SummaryWriter(logdir=str(summaries))
    w.add_scalar("rewards0/frame", 3.0, 4096)
    w.add_text("note", "x" * 50_000)  # a record bigger than a small read chunk
    w.add_scalar("rewards0/frame", 4.0, 8192)
    w.close()
    out: dict = {}
    [path] = list(summaries.glob("events.out.tfevents.*"))
    EventTail(path).poll(out, max_bytes=1024)
    assert out["rewards0/frame"] == [(4096, pytest.approx(out["rewards0/frame"][0][1]), 3.0), out["rewards0/frame"][1]]
    assert MetricsTail(tmp_path).poll()["rewards0/frame"][1][2] == 4.0


def test_live_writer_every_point_exactly_once(tmp_path: Path) -> None:
    n = 3000
    script = textwrap.dedent(
        f"""
        import sys, time
        from anyskill_tui.core.jobs.metrics import MetricsWriter
        w = MetricsWriter(sys.argv[1], flush_secs=1)
        for s in range({n}):
            w.add_scalar("a", float(s), s)
            w.add_scalar("b", -float(s), s)
            if s % 300 == 0:
                w.flush()
                time.sleep(0.05)
        w.close()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    tail = MetricsTail(tmp_path)
    got: dict[str, list[int]] = {"a": [], "b": []}
    polls = 0
    while True:
        done = proc.poll() is not None
        for tag, pts in tail.poll().items():
            got[tag] += steps_of(pts)
        polls += 1
        if done:
            break
        time.sleep(0.02)
    for tag, pts in tail.poll().items():
        got[tag] += steps_of(pts)
    assert proc.returncode == 0
    assert got["a"] == list(range(n)) and got["b"] == list(range(n))
    assert polls > 3


def test_downsample_keeps_extremes() -> None:
    xs = list(range(10_000))
    ys = [0.0] * 10_000
    ys[1234], ys[8765] = 9.0, -9.0
    dx, dy = downsample(xs, ys, 200)
    assert len(dx) <= 200 and len(dx) == len(dy)
    assert 9.0 in dy and -9.0 in dy and 1234 in dx and 8765 in dx
    assert dx == sorted(dx)
    assert downsample([1, 2], [3, 4], 10) == ([1.0, 2.0], [3.0, 4.0])
    with pytest.raises(ValueError):
        downsample([1], [1, 2], 10)


def test_reader_does_not_import_torch(tmp_path: Path) -> None:
    write_events(tmp_path, range(3))
    code = (
        "import sys; from anyskill_tui.core.jobs.metrics import MetricsTail; "
        f"r = MetricsTail({str(tmp_path)!r}).poll(); assert len(r['loss']) == 3, r; "
        "import anyskill_tui.core.jobs.launcher, anyskill_tui.core.jobs.queue, anyskill_tui.core.jobs.trainers; "
        "import anyskill_tui.core.jobs.checkpoints, anyskill_tui.core.jobs.isaacgym; "
        "bad = [m for m in ('torch', 'textual', 'mujoco') if m in sys.modules]; assert not bad, bad; "
        "import tensorboardX; assert tensorboardX.SummaryWriter"  # the real package still imports afterwards
    )
    subprocess.run([sys.executable, "-c", code], check=True)
