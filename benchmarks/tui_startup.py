"""TUI start-up on a large library: time until the Library table is populated.

Generates a workspace with 10,000 skills and 1,000 runs (with a checkpoint each, CLIP scores in their
metrics) in a temp dir, then, in a fresh interpreter per repeat (so imports are counted), runs the app
headless with ``App.run_test()`` and measures:

- ``import``: ``import anyskill_tui.app``;
- ``ready``: from constructing the app until the Library table holds its first page;
- ``total``: both, i.e. what a user waits after the interpreter is up.

Prints every repeat and the medians. Usage::

    python benchmarks/tui_startup.py [--skills 10000] [--runs 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import asyncio, json, sys, time
t0 = time.perf_counter()
from anyskill_tui.app import AnySkillApp
t1 = time.perf_counter()

async def main():
    app = AnySkillApp(sys.argv[1])
    t2 = time.perf_counter()
    async with app.run_test(size=(120, 40)) as pilot:
        while not getattr(app.screen, "ready", False):
            await pilot.pause(0.005)
        t3 = time.perf_counter()
        rows = app.screen.query_one("#skills").row_count
    print(json.dumps({"import": t1 - t0, "ready": t3 - t2, "total": t3 - t0, "rows": rows,
                      "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "mujoco", "warp"))}))

asyncio.run(main())
"""


def build(root: Path, n_skills: int, n_runs: int) -> Path:
    from anyskill_tui.store.library import Library
    from anyskill_tui.store.prompts import PromptEntry
    from anyskill_tui.workspace import init_workspace

    ws, _ = init_workspace(root / "ws")
    verbs = ["jump", "walk", "run", "kick", "wave", "bow", "squat", "turn", "crouch", "punch"]
    with Library(ws.db_path) as lib:
        entries = [
            PromptEntry(f"{verbs[i % 10]} {['forward', 'back', 'left', 'right'][i % 4]} #{i}", 1.0, ["gen"], index=i)
            for i in range(n_skills)
        ]
        lib.import_texts(entries)
        for i in range(n_runs):
            run = lib.create_run("skill", "cpu", skill=1 + (i * 7) % n_skills, config={"epochs": 10})
            lib.update_run(run.id, status="done")
            lib.add_checkpoint(
                run.id, f"runs/{run.id}/checkpoints/ckpt_10.pt", 10, {"clip_similarity": 0.2 + i % 50 / 200}
            )
    return ws.root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skills", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=1_000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        root = build(Path(tmp), a.skills, a.runs)
        print(f"workspace: {a.skills} skills, {a.runs} runs, built in {time.perf_counter() - t:.1f}s", flush=True)
        results = []
        for i in range(a.repeats):
            out = subprocess.run([sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            print(
                f"repeat {i + 1}: import {r['import']:.3f}s  ready {r['ready']:.3f}s  total {r['total']:.3f}s  "
                f"rows {r['rows']}  heavy modules {r['heavy'] or 'none'}",
                flush=True,
            )
        for key in ("import", "ready", "total"):
            print(f"median {key}: {statistics.median(r[key] for r in results):.3f}s")


if __name__ == "__main__":
    main()
