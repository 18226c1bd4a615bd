"""Benchmark the metrics tailer: 20 run dirs x ~10k points; first read and the idle re-poll.

    python benchmarks/metrics_poll.py [--runs 20] [--points 10000] [--tags 4]

Prints the time of the first full read of every run dir, and the per-poll cost (all dirs) when nothing
is new, and after appending a few points to one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--points", type=int, default=10_000, help="points per run (spread over the tags)")
    ap.add_argument("--tags", type=int, default=4)
    args = ap.parse_args()

    from anyskill_tui.core.jobs.metrics import MetricsTail, MetricsWriter, downsample

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        steps = args.points // args.tags
        for i in range(args.runs):
            with MetricsWriter(root / f"run{i}", flush_secs=60) as w:
                for s in range(steps):
                    for k in range(args.tags):
                        w.add_scalar(f"tag{k}", s * 0.1 + k, s)
        size = sum(p.stat().st_size for p in root.rglob("events.out.tfevents.*"))
        took = time.perf_counter() - t0
        print(f"wrote {args.runs} runs x {steps * args.tags} points ({size / 1e6:.1f} MB) in {took:.1f} s")

        tails = [MetricsTail(root / f"run{i}") for i in range(args.runs)]
        t0 = time.perf_counter()
        total = sum(sum(len(v) for v in t.poll().values()) for t in tails)
        first = time.perf_counter() - t0
        print(f"first read: {total} points in {first * 1e3:.0f} ms ({total / first / 1e6:.2f} M points/s)")

        n = 50
        t0 = time.perf_counter()
        for _ in range(n):
            for t in tails:
                assert not t.poll()
        idle = (time.perf_counter() - t0) / n
        print(f"idle poll, nothing new: {idle * 1e3:.2f} ms for {args.runs} runs ({idle / args.runs * 1e6:.0f} us/run)")

        with MetricsWriter(root / "run0") as w:
            for s in range(steps, steps + 10):
                w.add_scalar("tag0", 1.0, s)
        t0 = time.perf_counter()
        new = sum(sum(len(v) for v in t.poll().values()) for t in tails)
        print(f"poll after 10 new points in one run: {(time.perf_counter() - t0) * 1e3:.2f} ms ({new} new)")

        xs = list(range(steps))
        t0 = time.perf_counter()
        dx, _ = downsample(xs, [float(x % 97) for x in xs], 400)
        print(f"downsample {steps} -> {len(dx)} points: {(time.perf_counter() - t0) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
