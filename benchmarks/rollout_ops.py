"""Host work of one LLC rollout step: the torch ops it issues, by section (no GPU needed).

    python benchmarks/rollout_ops.py [--envs 16] [--steps 16] [--json out.json]

On the GPU a 4,096-env rollout step is bound by the host launching its kernels, not by the kernels (H200,
2026-12-04: 11.4 ms per step against 6.5 ms of kernels), so the number of ops a step issues is what its time
follows. This runs the trainer's rollout on the cpu engine with the gpu engine's reset path (the motion-start pool,
`HumanoidEnv._reset_subset = False`) under `torch.profiler` and counts top-level aten ops (ops not issued by
another aten op) per step, attributed to the innermost section below. The counts do not depend on the env count;
the simulator's own kernels (one CUDA graph on the gpu engine, C MuJoCo here) are not torch ops.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

#: (object attribute path, method, label): the sections a step is split into
SECTIONS = (
    ("trainer", "_act", "act"),
    ("trainer", "_resample_latents", "act/latent redraw"),
    ("trainer", "_next_value", "next value"),
    ("env", "step", "env.step"),
    ("env", "_features", "features"),
    ("env", "reset_done_masked", "env.reset_done_masked"),
    ("env", "_pick_motion_pool", "motion-start pool"),
    ("backend", "step", "backend.step"),
)


def _label(obj, name: str, label: str) -> None:
    fn = getattr(obj, name)

    def wrapped(*args, **kwargs):
        with record_function("SECTION:" + label):
            return fn(*args, **kwargs)

    setattr(obj, name, wrapped)


def count_ops(envs: int, steps: int) -> dict[str, float]:
    """Top-level aten ops per rollout step, by innermost section (``(loop)``: the rollout loop's own)."""
    from anyskill_tui.core.learn.config import llc_config_from_dict
    from anyskill_tui.core.learn.llc_train import LlcTrainer, default_motions_path
    from anyskill_tui.core.sim.env import HumanoidEnv

    torch.set_num_threads(1)
    HumanoidEnv._reset_subset = False  # the gpu engine's sync-free reset path
    small = {"actor_hidden": [64, 64], "critic_hidden": [64, 64], "encoder_hidden": [64], "disc_hidden": [64, 64]}
    cfg = llc_config_from_dict(
        {
            "env": {"num_envs": envs},
            "network": small,
            "ppo": {"horizon_length": steps, "minibatch_size": envs * steps},
            "calm": {"amp_minibatch_size": envs * steps, "amp_batch_size": envs * steps, "demo_buffer_size": 1024},
        },
        source="benchmark",
    )
    tr = LlcTrainer(cfg, default_motions_path(), engine="cpu", threads=1)
    tr.epoch_step()  # lazily built caches and pools exist before counting ...
    for _ in range(-(-tr.env.history_length // steps)):  # ... also those per AMP-history ring position
        tr.rollout()
    owners = {"trainer": tr, "env": tr.env, "backend": tr.env.backend}
    for owner, name, label in SECTIONS:
        _label(owners[owner], name, label)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        tr.rollout()
    counts: dict[str, int] = {}
    for e in prof.events():
        if not e.name.startswith("aten::"):
            continue
        parent, nested, section = e.cpu_parent, False, None
        while parent is not None:
            nested = nested or parent.name.startswith("aten::")
            if section is None and parent.name.startswith("SECTION:"):
                section = parent.name.removeprefix("SECTION:")
            parent = parent.cpu_parent
        if not nested:
            counts[section or "(loop)"] = counts.get(section or "(loop)", 0) + 1
    per_step = {k: v / steps for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
    per_step["total"] = sum(counts.values()) / steps
    return per_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16, help="rollout steps counted (a multiple of the pool refresh)")
    ap.add_argument("--json", type=Path, default=None, help="also write the counts here")
    args = ap.parse_args()
    per_step = count_ops(args.envs, args.steps)
    for k, v in per_step.items():
        print(f"{v:8.1f}  {k}")
    if args.json:
        args.json.write_text(json.dumps({"envs": args.envs, "steps": args.steps, "ops_per_step": per_step}, indent=1))


if __name__ == "__main__":
    main()
