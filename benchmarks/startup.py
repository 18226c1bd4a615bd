"""Time `anyskill --help` start-up (a fresh process each time); print the median in seconds.

    python benchmarks/startup.py [--repeats N] [--json]

The budget is 0.5 s: `anyskill --help` must not import torch, mujoco, warp, Textual or SQLModel.
One warm-up run is not counted (it fills the OS file cache and writes .pyc files).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time


def time_help(repeats: int) -> list[float]:
    exe = shutil.which("anyskill")
    cmd = [exe, "--help"] if exe else [sys.executable, "-m", "anyskill_tui", "--help"]
    subprocess.run(cmd, capture_output=True, check=True)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--json", action="store_true", help="print a JSON object instead of a line")
    args = ap.parse_args()
    times = time_help(args.repeats)
    med = statistics.median(times)
    if args.json:
        print(
            json.dumps(
                {
                    "command": "anyskill --help",
                    "repeats": args.repeats,
                    "median_s": med,
                    "min_s": min(times),
                    "max_s": max(times),
                }
            )
        )
    else:
        print(
            f"anyskill --help: median {med:.3f} s over {args.repeats} runs (min {min(times):.3f}, max {max(times):.3f})"
        )


if __name__ == "__main__":
    main()
