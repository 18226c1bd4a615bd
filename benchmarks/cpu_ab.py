"""Interleaved wall-clock A/B of `mujoco.batch` configurations of the cpu engine's model.

    python benchmarks/cpu_ab.py --variants before,ours --persistent no,yes --envs 256 --threads 2 --rounds 15

Wall-clock figures on a shared 2-core machine drift with the load; running the configurations in turn, round after
round, and comparing their best (and median) rounds cancels most of the drift. Each round of a configuration starts
all worlds from the `cpu_callgrind.py` workload's 48 states (tiled to --envs; --workload policy: clip tracking and
random-policy falls; fixed: lying under fixed targets) and runs --steps control steps of its PD targets (the last of
the 8 recorded held beyond them) as `CpuBackend.step` does: `Batch.step(nstep=4, stage=mjSTAGE_VEL)`. Variants are
`cpu_callgrind.py` names (`--help` there lists the tokens); --persistent runs each on a batch with one MjData per
world (yes), a shared MjData per thread (no), or both.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpu_callgrind import SUBSTEPS, _ctrl, build_variant, make_workload  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="before,ours")
    ap.add_argument("--persistent", default="no,yes", help="comma-separated: no, yes")
    ap.add_argument("--envs", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=16, help="control steps per round")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--workload", default="policy", choices=["policy", "fixed"], help="cpu_callgrind.make_workload")
    args = ap.parse_args(argv)

    import mujoco
    import mujoco.batch
    import numpy as np

    wl = make_workload(args.workload)
    reps = -(-args.envs // wl["qpos"].shape[0])
    qpos = np.tile(wl["qpos"], (reps, 1))[: args.envs]
    qvel = np.tile(wl["qvel"], (reps, 1))[: args.envs]
    configs = []
    for name, pers in itertools.product(args.variants.split(","), args.persistent.split(",")):
        m, kind = build_variant(name)
        if m is None:
            print(f"{name}: skipped (reference file not available)")
            continue
        ctrl = np.tile(_ctrl(m, kind, wl), (reps, 1, 1))[: args.envs]
        b = mujoco.batch.Batch(m, nsim=args.envs, nthread=args.threads, persistent=pers == "yes")
        configs.append({"name": f"{name} persistent={pers}", "batch": b, "ctrl": ctrl, "times": []})
    vel = mujoco.mjtStage.mjSTAGE_VEL
    for r in range(args.rounds + 1):  # round 0: warm-up
        for c in configs:
            b, ctrl = c["batch"], c["ctrl"]
            b.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
            b.bind("qpos")[:] = qpos
            b.bind("qvel")[:] = qvel
            b.forward()
            bc = b.bind("ctrl")
            t0 = time.perf_counter()
            for k in range(args.steps):
                bc[:] = ctrl[:, min(k, ctrl.shape[1] - 1)]
                b.step(nstep=SUBSTEPS, stage=vel)
            dt = time.perf_counter() - t0
            if r:
                c["times"].append(dt)
    out = {}
    print(
        f"workload {args.workload}: {args.envs} worlds, {args.threads} threads, {args.rounds} rounds of "
        f"{args.steps} control steps"
    )
    for c in configs:
        best = args.envs * args.steps / min(c["times"])
        med = args.envs * args.steps / statistics.median(c["times"])
        out[c["name"]] = {"best": best, "median": med}
        print(
            f"{c['name']:>60}: control steps/s best {best:9,.0f} ({best / args.threads:7,.0f} per thread), "
            f"median {med:9,.0f}"
        )
    return out


if __name__ == "__main__":
    main()
