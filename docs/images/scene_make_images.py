"""Make docs/images/scene_*: the shipped scenes from the training camera, and a replay of a door-opening skill.

    python docs/images/scene_make_images.py docs/images     (cpu engine, about 40 s on 2 cores)

The skill is the constructed learning problem of tests/test_scenes.py (no trained LLC ships): a posture LLC
(`tests/_skill_helpers.posture_llc`: each latent is a held pose), the door scene, and a scorer of the door's hinge
angle against -60 degrees in place of the image encoder, through the real SkillTrainer reward path; seed 1, 60
epochs of 16 envs. The replay goes through `core.replay` (`Rollout` rebuilds the scene from the policy's stored
config): env 0 plays the deterministic policy, env 1 samples it as in training.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from _skill_helpers import posture_llc, small_cfg, unit  # noqa: E402

from anyskill_tui.core.learn import skill_train as st  # noqa: E402
from anyskill_tui.core.replay.export import run_replay  # noqa: E402
from anyskill_tui.core.replay.rollout import ReplayOptions, ReplayPolicy, replay_camera  # noqa: E402
from anyskill_tui.core.sim.backend import CameraSpec  # noqa: E402
from anyskill_tui.core.sim.env import EnvConfig, HumanoidEnv  # noqa: E402


class DoorScorer:
    """(cos θ, sin θ) of the door's hinge angle: its cosine to (cos θ*, sin θ*) is cos(θ - θ*)."""

    renders = False

    def features(self, env: HumanoidEnv) -> torch.Tensor:
        th = env.object_qpos[:, 0].float()
        return torch.stack([th.cos(), th.sin()], -1)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    tiles = []
    for name in ("chair", "ball", "door"):
        cfg = EnvConfig(num_envs=1, engine="cpu", threads=1, state_init="default", fall_init_prob=0.0, scene=name)
        frame = HumanoidEnv(cfg).render(CameraSpec())[0]
        tiles.append((frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    Image.fromarray(np.concatenate(tiles, 1)).save(out / "scene_gallery.png")

    seed, theta = 1, math.radians(-60)
    cfg = small_cfg(
        seed=seed,
        prompts=[{"text": "open the door (hinge-angle scorer)"}],
        scene="door",
        env={"num_envs": 16, "episode_length": 20, "enable_early_termination": False},
        reward={"style_reward_w": 0.0},
        ppo={"minibatch_size": 32, "learning_rate": 1e-3, "mini_epochs": 6, "max_epochs": 1000},
    )
    torch.manual_seed(seed)
    llc = posture_llc(seed)
    env = st.build_env(cfg)
    target = torch.tensor([[math.cos(theta), math.sin(theta)]])
    tr = st.SkillTrainer(cfg, llc, env, DoorScorer(), target, style_refs=unit(torch.randn(8, 64)))
    for _ in range(60):
        stats = tr.train_epoch()
    print(f"similarity after 60 epochs: {stats['clip/similarity']:.3f}")
    policy = ReplayPolicy("skill", Path("door_skill.pt"), llc, tr.policy, tr.prompts, cfg.llc.steps)
    opts = ReplayOptions(seconds=1.0, envs=2, seed=0, engine="cpu", camera=replay_camera(200), threads=1)
    res = run_replay(policy, opts, video=out / "scene_door_replay.mp4", sheet=out / "scene_door_replay_sheet.png")
    print(f"wrote {res.video} and {res.sheet} ({res.num_frames} frames)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent))
