"""Simulator throughput: physics, control steps with observations and resets, camera frames.

    python benchmarks/sim.py --engine cpu --envs 64 --threads 2
    python benchmarks/sim.py --engine gpu --envs 4096 --steps 500
    python benchmarks/sim.py --engine cpu --envs 256 --threads 2 --no-render --repeats 3

Prints (warm-up excluded):
- physics: `backend.step(pd_target, 4)` alone: physics steps/s (worlds x substeps) and control steps/s;
- env: `env.step(actions)` + `env.reset_done()` (policy and AMP observations, history, termination, resets):
  control steps/s, and the fraction of env-steps that ended an episode;
- render: `env.render()` at the camera size (224x224 by default): frames/s.
Actions are smooth random policies (a per-env random mean, U(-0.5, 0.5), plus N(0, 0.1) noise per step), from the
env's default and fallen starts, so contacts and resets are like those of training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from anyskill_tui.core.character import tables as T  # noqa: E402
from anyskill_tui.core.sim.backend import CameraSpec  # noqa: E402
from anyskill_tui.core.sim.env import EnvConfig, HumanoidEnv  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="cpu", choices=["cpu", "gpu", "auto"])
    ap.add_argument("--envs", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200, help="timed control steps per measurement")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=1, help="repeat the physics and env measurements; median + each")
    ap.add_argument("--threads", type=int, default=None, help="cpu engine threads (default: all CPUs)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--render-calls", type=int, default=None, help="timed render calls (default: 1 cpu, 20 gpu)")
    ap.add_argument("--width", type=int, default=224)
    ap.add_argument("--height", type=int, default=224)
    ap.add_argument("--no-render", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    camera = CameraSpec(width=args.width, height=args.height)
    cfg = EnvConfig(
        num_envs=args.envs,
        engine=args.engine,
        device=args.device,
        threads=args.threads,
        state_init="default",
        fall_init_prob=0.1,
        camera=camera,
    )
    t0 = time.perf_counter()
    env = HumanoidEnv(cfg)
    setup_s = time.perf_counter() - t0
    dev = env.device
    n = env.num_envs
    gen = torch.Generator(device=dev).manual_seed(0)
    mean = torch.rand((n, T.NUM_DOFS), generator=gen, device=dev) - 0.5

    def actions() -> torch.Tensor:
        return mean + 0.1 * torch.randn((n, T.NUM_DOFS), generator=gen, device=dev)

    out: dict = {
        "engine": env.engine,
        "device": str(dev),
        "envs": n,
        "threads": getattr(env.backend, "nthread", None),
        "setup_s": round(setup_s, 3),
    }

    reps: dict[str, list[float]] = {}
    for rep in range(args.repeats):
        # physics only (the worlds fall and lie on the floor under the fixed targets: no resets)
        if rep:
            env.reset()
        target = env.pd_targets(actions())
        for _ in range(args.warmup):
            env.backend.step(target, T.CONTROL_SUBSTEPS)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            env.backend.step(target, T.CONTROL_SUBSTEPS)
        _sync(dev)
        dt = time.perf_counter() - t0
        reps.setdefault("physics_steps_per_s", []).append(n * args.steps * T.CONTROL_SUBSTEPS / dt)
        reps.setdefault("physics_control_steps_per_s", []).append(n * args.steps / dt)

        # env steps with observations and resets
        env.reset()
        for _ in range(args.warmup):
            env.step(actions())
            env.reset_done()
        _sync(dev)
        dones = torch.zeros((), dtype=torch.long, device=dev)
        unstable = torch.zeros((), dtype=torch.long, device=dev)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            r = env.step(actions())
            dones += r.done.sum()
            unstable += env.unstable.sum()
            env.reset_done()
        _sync(dev)
        dt = time.perf_counter() - t0
        reps.setdefault("env_control_steps_per_s", []).append(n * args.steps / dt)
        reps.setdefault("episode_end_fraction", []).append(int(dones) / (n * args.steps))
        reps.setdefault("unstable_fraction", []).append(int(unstable) / (n * args.steps))
    for k, v in reps.items():
        out[k] = statistics.median(v)  # the median repetition; each one below
        if args.repeats > 1:
            out[f"{k}_repeats"] = v

    if not args.no_render:
        calls = args.render_calls or (1 if env.engine == "cpu" else 20)
        env.render(camera)  # warm-up: context / graph creation
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(calls):
            frames = env.render(camera)
        _sync(dev)
        dt = time.perf_counter() - t0
        out["render_frames_per_s"] = n * calls / dt
        out["render_size"] = f"{args.width}x{args.height}"
        assert frames.shape == (n, 3, args.height, args.width)

    def fmt(v):
        if isinstance(v, list):
            return ", ".join(fmt(x) for x in v)
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
        return v

    for k, v in out.items():
        print(f"{k:>36}: {fmt(v)}")
    if args.threads or out.get("threads"):
        th = out["threads"] or args.threads
        print(f"{'env control steps/s per thread':>36}: {fmt([x / th for x in reps['env_control_steps_per_s']])}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    env.close()
    return out


if __name__ == "__main__":
    main()
