"""Issue #6's learning test through the rendered path: a starter-clip frame as the target image, no real CLIP.

The target is the image embedding of a rendered reference pose: the character set kinematically
(``MotionLib.mujoco_state`` -> ``set_state``) to a frame of the starter clip ``raise_both_arms``, rendered by the
cpu engine's tracking camera (32 px, EGL) and encoded by a tiny randomly initialised open_clip model through
``ClipRewardModel`` (its preprocessing downsamples to the model's 16 px). Training renders every env's frame with
the same camera and encodes it the same way (``ClipScorer``, the ``reward.mode: render`` path); PPO maximises the
cosine. After a short run the deterministic policy's frame is closer to the target both in that embedding and in
body positions.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("open_clip")

from _skill_helpers import (  # noqa: E402
    POSE,
    posture_latent,
    posture_llc,
    register_tiny,
    small_cfg,
    tiny_open_clip,
    tiny_reward,
)

from anyskill_tui.core.character import tables as T  # noqa: E402
from anyskill_tui.core.learn import skill_train as st  # noqa: E402
from anyskill_tui.core.learn.skill_config import default_motion_file  # noqa: E402
from anyskill_tui.core.motion.dataset import load_dataset  # noqa: E402
from anyskill_tui.core.motion.motion_lib import MotionLib  # noqa: E402

CLIP_NAME, CLIP_TIME = "raise_both_arms", 1.0  # both arms raised sideways to 115 deg
K = 25  # LLC steps per decision = per episode; the frame after the last one is the one scored
SHOULDERS_X = [T.DOF_NAMES.index("right_shoulder_x"), T.DOF_NAMES.index("left_shoulder_x")]
#: the LLC stand-in's PD-target range of each shoulder's x hinge: from 20 deg out (a hanging arm rests against the
#: body, where targets further in do not move it: poses a reward cannot tell apart) to overhead (180 deg)
SHOULDER_RANGES = [(-math.radians(20), -math.pi), (math.radians(20), math.pi)]
#: a camera close enough for the character to fill the 32 px frame, in front (azimuth 0): the shoulders' x hinges
#: move the arms in the image plane, so the image shows every pose the LLC stand-in can take without depth ambiguity
CAMERA = {"width": 32, "height": 32, "distance": 2.2, "elevation_height": 1.1, "lookat_height": 1.0, "azimuth_deg": 0}


@pytest.fixture
def one_thread():
    """torch on one intra-op thread: these tiny ops (16 x 64 matmuls) took 10-100x longer on two threads of a
    loaded 2-core machine (thread wake-ups): 70 s instead of 18 s for this test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pose_error(body_pos: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean distance (m) of the 15 body origins (15, 3) to the reference's (15, 3)."""
    return float((body_pos - ref).norm(dim=-1).mean())


def run_rendered_learning(
    seed: int = 0, model_seed: int = 0, epochs: int = 30, lr: float = 3e-3, sign: float = 1.0
) -> dict[str, float]:
    """Train on the rendered CLIP reward of a starter-clip frame; the deterministic evaluation before and after.

    Returns ``sim0``/``sim1``: the cosine of the frame after K LLC steps with the target embedding, before and after
    ``epochs`` PPO epochs; ``err0``/``err1``: that frame's mean body distance to the reference frame (m);
    ``sim_star``/``err_star``: the same for the latent z* that holds the frame's shoulder angles; ``err_default``:
    the default pose's. ``sign=-1`` rewards the negated target (a check that the assertions need the reward).
    """
    reward = tiny_reward(tiny_open_clip(model_seed, POSE), POSE)
    cfg = small_cfg(
        seed=seed,
        env={"num_envs": 16, "episode_length": K + 1, "enable_early_termination": False, "camera": CAMERA},
        llc={"steps": K},
        reward={"render_every": "decision", "style_reward_w": 0.0},
        # one decision per episode (a contextual bandit from the default state): gamma 0, one decision per env and
        # epoch; the cosines differ in the 2nd-3rd decimal and reach PPO through the normalised advantages
        ppo={"horizon_length": 1, "gamma": 0.0, "minibatch_size": 16, "learning_rate": lr, "max_epochs": 1000},
    )
    ml = MotionLib(load_dataset(default_motion_file()))
    qpos, _ = ml.mujoco_state(torch.tensor([ml.clip_names.index(CLIP_NAME)]), torch.tensor([CLIP_TIME]))
    ev = st.build_env(cfg, num_envs=1)
    ev.backend.set_state(torch.tensor([0]), qpos, torch.zeros(1, ev.backend.nv))
    ref = ev.backend.body_pos[0].clone()  # (15, 3) the reference frame's bodies
    target = sign * reward.encode_images(ev.render())  # (1, 64) the reference frame's image embedding

    llc = posture_llc(seed, gain=1.0, dofs=SHOULDERS_X, ranges=SHOULDER_RANGES, offset=-1.0)
    scorer = st.ClipScorer(reward)
    trainer = st.SkillTrainer(cfg, llc, st.build_env(cfg), scorer, target, motion_lib=ml)

    def frame_at_k(z: torch.Tensor | None = None) -> tuple[float, float]:
        """Cosine with the (unsigned) target and pose error of the frame after K LLC steps from the default state:
        the deterministic policy (``evaluate_policy``), or the fixed latent z (1, 64)."""
        got: dict[str, float] = {}

        def on_frame(step: int, env) -> None:
            if step == K:
                got["sim"] = sign * float(scorer.features(env)[0] @ target[0])
                got["err"] = _pose_error(env.body_pos[0], ref)

        if z is None:
            st.evaluate_policy(trainer.policy, llc, ev, scorer, target, llc_steps=K, on_frame=on_frame)
        else:
            obs = ev.reset(mode="default")
            for step in range(1, K + 1):
                obs = ev.step(llc.act(obs, z)).obs
                on_frame(step, ev)
        return got["sim"], got["err"]

    sim_star, err_star = frame_at_k(posture_latent(llc, qpos[0, 7:]))
    ev.reset(mode="default")
    err_default = _pose_error(ev.body_pos[0], ref)
    sim0, err0 = frame_at_k()
    for _ in range(epochs):
        trainer.train_epoch()
    sim1, err1 = frame_at_k()
    return {
        "sim0": sim0,
        "sim1": sim1,
        "err0": err0,
        "err1": err1,
        "sim_star": sim_star,
        "err_star": err_star,
        "err_default": err_default,
    }


def test_learning_from_rendered_frames_moves_towards_a_starter_clip_pose(monkeypatch, one_thread):
    """Issue #6: target = the tiny CLIP image embedding of a rendered frame of the starter clip ``raise_both_arms``
    (t = 1.0 s: arms raised sideways to 115 deg); after 30 PPO epochs of 16 decisions on the rendered reward, the
    deterministic policy's frame after K = 25 LLC steps is closer to it in embedding cosine AND in mean body
    distance.

    The LLC is a stand-in (a random CALM actor's pose barely depends on its latent): ``posture_llc`` maps the latent
    smoothly to PD targets of the two shoulders' x hinges, between 20 deg out and overhead, every other joint held
    at 0 rad. Reachability, honestly: the frame itself is not exactly reachable, its neck (-7 deg), elbows (-9 deg),
    hips and ankles (4 deg) and root height are outside what the stand-in moves. The latent z* that holds the
    frame's shoulder angles gets within ``err_star`` (4 cm mean body distance) at step K, from 20 cm in the default
    pose (asserted below), so the frame is within reach up to that floor. The target stays the clip frame's
    embedding and the error is measured against the clip frame. (The learned policy targets the arms further up
    than z* does and gets slightly closer at step K: the arms are still rising there.)

    Why this stand-in: one camera cannot tell an arm raised forward from one lowered, and with the 8 arm DoFs the
    policy matched the image with arms forward (0.17 m error where z* got 0.03 m); with a clamped linear map a
    policy that pushed an arm into the body (a plateau: the arm does not move, nor the reward) stayed there in 3 of
    8 seeds. Why the POSE model: see ``_skill_helpers.POSE_CFG``.
    """
    register_tiny(monkeypatch)
    r = run_rendered_learning(seed=0)
    print(
        "rendered learning: 1-cos {:.4f} -> {:.4f} (z* {:.4f}); pose error {:.3f} -> {:.3f} m (z* {:.3f}, default "
        "pose {:.3f})".format(
            1 - r["sim0"], 1 - r["sim1"], 1 - r["sim_star"], r["err0"], r["err1"], r["err_star"], r["err_default"]
        )
    )
    # the clip frame is (nearly) reachable by the LLC stand-in
    assert r["err_star"] < 0.3 * r["err_default"]
    # closer in the embedding: at least half of the gap to a perfect match (cosine 1) closed
    assert r["sim1"] > r["sim0"] + 0.5 * (1.0 - r["sim0"])
    # and in body positions: at least half of the gap to the reachable floor (err_star) closed, and by 2 cm or more
    assert r["err1"] < r["err0"] - 0.5 * (r["err0"] - r["err_star"])
    assert r["err1"] < r["err0"] - 0.02
