"""HumanoidEnv on the cpu engine: resets, AMP history, termination, recovery, motion starts and camera frames."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")

from anyskill_tui.core.character import tables as T  # noqa: E402
from anyskill_tui.core.motion.clip import Clip  # noqa: E402
from anyskill_tui.core.motion.dataset import MotionDataset  # noqa: E402
from anyskill_tui.core.motion.motion_lib import MotionLib  # noqa: E402
from anyskill_tui.core.motion.quat import euler_xyz_to_quat, quat_from_axis_angle  # noqa: E402
from anyskill_tui.core.sim.backend import CameraSpec  # noqa: E402
from anyskill_tui.core.sim.env import EnvConfig, HumanoidEnv, body_features, load_env_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
_OFF, _SCALE = (torch.as_tensor(x, dtype=torch.float32) for x in T.pd_offset_scale())
#: the action whose PD targets are the zero pose (all hinges 0: arms down, legs straight)
ZERO = (-_OFF / _SCALE).unsqueeze(0)


def wave_clip(seconds: float = 2.0, fps: int = 30) -> Clip:
    """A slow synthetic clip: standing, arms rising and elbows bending, torso and head turning."""
    n = int(seconds * fps) + 1
    t = torch.arange(n, dtype=torch.float64) / fps
    s = 0.5 * (1 - torch.cos(math.pi * t / seconds))  # 0 -> 1, smooth
    z = torch.zeros_like(t)
    lr = torch.zeros(n, T.NUM_BODIES, 4, dtype=torch.float64)
    lr[..., 3] = 1.0

    def e(a, b, c):
        return euler_xyz_to_quat(torch.stack([a, b, c], -1))

    y = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(n, 3)
    lr[:, T.BODY_INDEX["right_upper_arm"]] = e(-1.0 * s, -0.3 * s, z)
    lr[:, T.BODY_INDEX["left_upper_arm"]] = e(1.0 * s, -0.3 * s, z)
    lr[:, T.BODY_INDEX["right_lower_arm"]] = quat_from_axis_angle(y, -1.2 * s)
    lr[:, T.BODY_INDEX["left_lower_arm"]] = quat_from_axis_angle(y, -1.2 * s)
    lr[:, T.BODY_INDEX["head"]] = e(z, 0.3 * s, 0.4 * torch.sin(2 * math.pi * t / seconds))
    lr[:, T.BODY_INDEX["torso"]] = e(z, 0.1 * s, 0.2 * s)
    rp = torch.zeros(n, 3, dtype=torch.float64)
    rp[:, 2] = 0.88
    return Clip(local_rot=lr.numpy(), root_pos=rp.numpy(), fps=fps, name="wave")


@pytest.fixture(scope="module")
def wave_lib() -> MotionLib:
    return MotionLib(MotionDataset.from_clips([wave_clip()]), dtype=torch.float64)


def make_env(n: int = 4, motion_lib=None, **kw) -> HumanoidEnv:
    base = dict(num_envs=n, engine="cpu", threads=2, state_init="default", fall_init_prob=0.0, seed=0)
    base.update(kw)
    return HumanoidEnv(EnvConfig(**base), motion_lib=motion_lib)


def lying_qpos(env: HumanoidEnv) -> torch.Tensor:
    """Character on its back on the floor: root rotated -90 deg about y (head towards -x), pelvis at 0.115 m."""
    q = env.backend.qpos[:1].clone().to(env.dtype)
    q[:, 7:] = 0.0
    q[:, :3] = torch.tensor([0.0, 0.0, 0.115])
    q[:, 3:7] = torch.tensor([math.cos(-math.pi / 4), 0.0, math.sin(-math.pi / 4), 0.0])
    return q


# ------------------------------------------------------------------------------------------------ config


def test_config_yaml_roundtrip(tmp_path):
    cfg = load_env_config()  # configs/env.yaml
    assert cfg.episode_length == 300 and cfg.history_length == 60
    assert cfg.camera.width == 224
    p = tmp_path / "env.yaml"
    p.write_text("env:\n  num_envs: 8\n  state_init: default\n  camera:\n    distance: 2.5\n")
    cfg = load_env_config(p, seed=3)
    assert (cfg.num_envs, cfg.state_init, cfg.seed, cfg.camera.distance) == (8, "default", 3, 2.5)
    p.write_text("env:\n  nmu_envs: 8\n")
    with pytest.raises(ValueError, match="nmu_envs"):
        load_env_config(p)
    with pytest.raises(ValueError, match="needs motion data"):
        HumanoidEnv(EnvConfig(num_envs=1, engine="cpu", state_init="hybrid"))


# ------------------------------------------------------------------------------------------------ features


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_fused_features_equal_motion_features(dtype, tol):
    """The env's fused `body_features` computes exactly `motion.features.policy_obs` / `amp_obs`."""
    from anyskill_tui.core.motion import features as F

    g = torch.Generator().manual_seed(0)
    n = 64
    pos = torch.randn(n, 15, 3, generator=g, dtype=dtype)
    rot = torch.randn(n, 15, 4, generator=g, dtype=dtype)
    rot = rot / rot.norm(dim=-1, keepdim=True)
    vel = torch.randn(n, 15, 3, generator=g, dtype=dtype)
    ang = torch.randn(n, 15, 3, generator=g, dtype=dtype)
    obs, amp = body_features(pos, rot, vel, ang)
    torch.testing.assert_close(obs, F.policy_obs(pos, rot, vel, ang), atol=tol, rtol=0)
    local_rot, local_angvel = F.joint_local_state(rot, ang)
    ref = F.amp_obs(pos[:, 0], rot[:, 0], vel[:, 0], ang[:, 0], local_rot, local_angvel, pos[:, list(T.KEY_BODY_IDS)])
    torch.testing.assert_close(amp, ref, atol=tol, rtol=0)


# ------------------------------------------------------------------------------------------------ default state


def test_default_reset_and_history_roll():
    env = make_env(3)
    assert env.obs.shape == (3, 223)
    torch.testing.assert_close(env.obs[:, 0], torch.full((3,), 0.89))
    h = env.amp_obs_history(60).reshape(3, 60, 125)
    torch.testing.assert_close(h, env.amp_obs.unsqueeze(1).expand(-1, 60, -1))  # current frame in every slot
    first = env.amp_obs.clone()
    seen = []
    for k in range(3):
        r = env.step(torch.full((3, T.NUM_DOFS), 0.1 * k))
        seen.append(env.amp_obs.clone())
        assert r.obs.shape == (3, 223) and not r.done.any()
    hist = env.amp_obs_history(5).reshape(3, 5, 125)
    torch.testing.assert_close(hist[:, 0], seen[2])
    torch.testing.assert_close(hist[:, 1], seen[1])
    torch.testing.assert_close(hist[:, 2], seen[0])
    torch.testing.assert_close(hist[:, 3], first)
    torch.testing.assert_close(hist[:, 4], first)
    assert env.amp_obs_history().shape == (3, 1250)
    torch.testing.assert_close(env.key_body_pos, env.body_pos[:, list(T.KEY_BODY_IDS)])
    env.close()


def test_standing_zero_action_does_not_terminate_and_times_out():
    env = make_env(2, episode_length=20)
    for k in range(1, 19):
        r = env.step(ZERO.expand(2, -1))
        assert not r.done.any(), k
    r = env.step(ZERO.expand(2, -1))  # progress 19 = episode_length - 1
    assert r.truncated.all() and not r.terminated.any()
    env.reset_done()
    assert (env.progress == 0).all() and not env.done.any()
    torch.testing.assert_close(env.root_pos[:, 2], torch.full((2,), 0.89))
    env.close()


# ------------------------------------------------------------------------------------------------ falls


def test_lying_body_terminates_after_progress_1():
    env = make_env(2)
    env.backend.set_state(torch.tensor([0]), lying_qpos(env), torch.zeros(1, 34))
    r = env.step(ZERO.expand(2, -1))  # progress 1: not evaluated
    assert not r.terminated.any()
    r = env.step(ZERO.expand(2, -1))
    assert env.fall_check().tolist() == [True, False]
    assert r.terminated.tolist() == [True, False] and not r.truncated.any()
    final_obs = r.obs.clone()
    env.reset_done()  # resets env 0; the StepResult keeps the final observation and flags
    assert r.terminated.tolist() == [True, False]
    torch.testing.assert_close(r.obs, final_obs)
    assert not env.done.any() and env.obs[0, 0] > 0.5 and env.progress.tolist() == [0, 2]
    # early termination off: nothing fires
    env2 = make_env(1, enable_early_termination=False)
    env2.backend.set_state(torch.tensor([0]), lying_qpos(env2), torch.zeros(1, 34))
    for _ in range(3):
        assert not env2.step(ZERO).terminated.any()
    env.close()
    env2.close()


def test_recovery_episode_keeps_state_and_suppresses_done():
    env = make_env(1, recovery_episode_prob=1.0, recovery_steps=6, episode_length=4)
    env.backend.set_state(torch.tensor([0]), lying_qpos(env), torch.zeros(1, 34))
    env.step(ZERO)
    assert env.step(ZERO).terminated.all()
    qpos = env.backend.qpos.clone()
    env.reset_done()  # a recovery episode: not moved
    torch.testing.assert_close(env.backend.qpos, qpos)
    assert env.progress.item() == 0 and env.recovery_counter.item() == 6 and not env.done.any()
    for _ in range(5):  # neither the fall test nor the time limit (4) fires inside the window
        r = env.step(ZERO)
        assert not r.done.any()
    r = env.step(ZERO)  # window over, still lying: a fall
    assert r.terminated.all()
    env.close()


def test_fall_pool_and_fall_init():
    env = make_env(8, fall_init_prob=1.0, recovery_steps=60)
    pool = env.fall_pool_qpos
    assert pool.shape == (8, 35) and torch.isfinite(pool).all()
    assert (pool[:, 2] < 0.6).float().mean() > 0.5  # most random starts end on the floor
    # every start came from the pool, at rest, with a recovery window
    assert (env.recovery_counter == 60).all()
    matches = (env.backend.qpos[:, None, :] - pool[None].to(env.backend.qpos)).abs().amax(-1) < 1e-6
    assert matches.any(1).all()
    assert torch.all(env.backend.qvel == 0)
    env.close()


def test_fall_pool_built_lazily_keeps_live_state():
    env = make_env(3)
    env.step(ZERO.expand(3, -1))
    qpos, qvel = env.backend.qpos.clone(), env.backend.qvel.clone()
    env.build_fall_pool()
    torch.testing.assert_close(env.backend.qpos, qpos)
    torch.testing.assert_close(env.backend.qvel, qvel)
    env.reset(torch.tensor([1]), mode="fall")
    assert env.recovery_counter.tolist() == [0, 60, 0]
    env.close()


def test_init_fractions(wave_lib):
    n = 256
    env = make_env(n, motion_lib=wave_lib, state_init="hybrid", hybrid_init_prob=0.5, fall_init_prob=0.1, seed=7)
    default = (env.backend.qpos[:, 7:] == 0).all(-1) & (env.backend.qpos[:, 2] == 0.89)
    fall = env.recovery_counter > 0
    motion = ~default & ~fall
    assert abs(fall.float().mean().item() - 0.1) < 0.06
    assert abs(motion.float().mean().item() - 0.45) < 0.09
    assert abs(default.float().mean().item() - 0.45) < 0.09
    # recovery draws: every terminated env with recovery_episode_prob 0.2
    env.terminated[:] = True
    qpos = env.backend.qpos.clone()
    env.reset_done()
    kept = (env.backend.qpos == qpos).all(-1) & (env.recovery_counter == env.cfg.recovery_steps)
    assert 0.12 < kept.float().mean().item() < 0.28  # recovery_episode_prob 0.2
    env.close()


@pytest.mark.parametrize("subset", [True, False], ids=["cpu-rows", "motion-pool"])
def test_masked_reset_restarts_only_done_envs_with_the_init_mix(wave_lib, subset):
    """`reset_done_masked` (the sync-free reset of LLC rollouts): done envs restart with the configured mix of
    starts, motion starts are exact clip states with their AMP history (also when picked from the motion-start
    pool, the GPU path), and envs that are not done keep their state."""
    n = 192
    env = make_env(
        n, motion_lib=wave_lib, state_init="hybrid", hybrid_init_prob=0.5, fall_init_prob=0.0, dtype="float64", seed=3
    )
    env._reset_subset = subset
    env.cfg.motion_pool_size, env.cfg.motion_pool_refresh = 32, 2
    env.step(ZERO.expand(n, -1).to(env.dtype))
    drawn = []  # every (clip ids, times) the env draws motion starts from
    draw = env._draw_motion_starts
    env._draw_motion_starts = lambda k: drawn.append(draw(k)) or drawn[-1]
    qpos0, hist0 = env.backend.qpos.clone(), env.amp_obs_history(60).clone()
    done = torch.zeros(n, dtype=torch.bool)
    done[::2] = True
    env.truncated = done.clone()
    env.reset_done_masked()
    q = env.backend.qpos
    # not done: untouched state and history
    torch.testing.assert_close(q[~done], qpos0[~done], atol=0, rtol=0)
    torch.testing.assert_close(env.amp_obs_history(60)[~done], hist0[~done], atol=0, rtol=0)
    assert not env.done.any() and (env.progress[done] == 0).all()
    default = done & (q[:, 7:] == 0).all(-1) & (q[:, 2] == T.DEFAULT_ROOT_HEIGHT)
    motion = done & ~default
    assert 0.3 < motion[done].float().mean().item() < 0.7  # hybrid_init_prob 0.5 of 96 restarts
    # each motion start is exactly one of the drawn clip states, with that state's AMP history
    ids, times = (torch.cat(x) for x in zip(*drawn, strict=True))
    assert len(drawn) == 1 and ids.numel() == (motion.sum().item() if subset else 32)
    mq, _ = wave_lib.mujoco_state(ids, times)
    hist = env.amp_obs_history(60).reshape(n, 60, 125)
    for i in torch.nonzero(motion).flatten().tolist():
        j = int((mq - q[i]).abs().sum(-1).argmin())
        torch.testing.assert_close(q[i], mq[j], atol=1e-12, rtol=0)
        demo = wave_lib.demo_windows(ids[j : j + 1], times[j : j + 1], 60)[0]
        torch.testing.assert_close(hist[i], demo, atol=1e-5, rtol=0)
    if not subset:
        assert env.motion_pool[0].shape == (32,) and env.motion_pool_calls == 1
        first = env.motion_pool[1].clone()
        env.reset_done_masked()
        assert torch.equal(env.motion_pool[1], first) and env.motion_pool_calls == 2  # kept for 2 calls
        env.reset_done_masked()
        assert not torch.equal(env.motion_pool[1], first) and env.motion_pool_calls == 1  # then redrawn
    env.close()


# ------------------------------------------------------------------------------------------------ motion


def test_motion_start_matches_demo_features(wave_lib):
    env = make_env(4, motion_lib=wave_lib, state_init="random", dtype="float64", seed=1)
    ids, times = env.last_motion_ids, env.last_motion_times
    from anyskill_tui.core.motion.features import policy_obs

    torch.testing.assert_close(env.amp_obs, wave_lib.amp_obs(ids, times), atol=1e-5, rtol=0)
    s = wave_lib.state(ids, times)
    demo_obs = policy_obs(s.body_pos, s.body_rot, s.body_vel, s.body_angvel)
    # positions and rotations (body velocities of the clip are finite differences, the sim's are exact)
    torch.testing.assert_close(env.obs[:, :133], demo_obs[:, :133], atol=1e-5, rtol=0)
    torch.testing.assert_close(env.obs[:, 133:136], demo_obs[:, 133:136], atol=1e-5, rtol=0)  # root velocity
    hist = env.amp_obs_history(60).reshape(4, 60, 125)
    torch.testing.assert_close(hist, wave_lib.demo_windows(ids, times, 60), atol=1e-5, rtol=0)


def test_motion_clip_is_followed_for_one_second(wave_lib):
    env = make_env(2, motion_lib=wave_lib, state_init="start", dtype="float64")
    ids, t0 = env.last_motion_ids, env.last_motion_times
    off, scale = (torch.as_tensor(x) for x in T.pd_offset_scale())
    errors = []
    for k in range(1, 31):  # 1 s
        t = t0 + k * T.CONTROL_DT
        qpos, _ = wave_lib.mujoco_state(ids, t)
        r = env.step((qpos[:, 7:] - off) / scale)
        assert not r.terminated.any()
        errors.append((env.body_pos - wave_lib.state(ids, t).body_pos).norm(dim=-1).mean().item())
    mean = float(np.mean(errors))
    print(f"\nmean body position error over 1 s of PD tracking: {mean * 100:.2f} cm (max {max(errors) * 100:.2f} cm)")
    assert mean < 0.03 and max(errors) < 0.05
    env.close()


# ------------------------------------------------------------------------------------------------ frames


def _green(frames: torch.Tensor) -> torch.Tensor:
    r, g, b = frames[:, 0], frames[:, 1], frames[:, 2]
    return (g > 0.3) & (g > r + 0.1) & (g > b + 0.25)


def test_default_frame_framing():
    env = make_env(1)
    frame = env.render()
    assert frame.shape == (1, 3, 224, 224)
    mask = _green(frame)[0]
    frac = mask.float().mean().item()
    assert 0.03 < frac < 0.40, frac
    ys, xs = torch.nonzero(mask, as_tuple=True)
    cx, cy = xs.float().mean().item() / 224, ys.float().mean().item() / 224
    assert 0.35 < cx < 0.65 and 0.3 < cy < 0.7, (cx, cy)
    assert ys.min() > 2 and ys.max() < 221  # head and feet inside the frame
    env.close()


def test_contact_sheet(wave_lib, tmp_path):
    """16 frames of fallen and motion states, each showing the character; saved as a 4x4 contact sheet."""
    from PIL import Image

    from anyskill_tui.paths import shared_reference_dir

    lib = wave_lib
    ref = shared_reference_dir()
    if ref is not None and (ref / "amp_humanoid_run.npy").is_file():  # real locomotion when the fixtures exist
        from anyskill_tui.core.motion.clip import read_clip

        clips = [read_clip(ref / f"amp_humanoid_{k}.npy") for k in ("walk", "jog", "run")] + [wave_clip()]
        lib = MotionLib(MotionDataset.from_clips(clips), dtype=torch.float64)
    env = make_env(16, motion_lib=lib, state_init="random", seed=5)
    env.reset(torch.arange(8), mode="fall")
    for _ in range(3):
        env.step(ZERO.expand(16, -1))
    frames = env.render(CameraSpec(width=128, height=128))
    assert frames.shape == (16, 3, 128, 128)
    frac = _green(frames).float().mean((1, 2))
    assert (frac > 0.01).all(), frac
    grid = frames.reshape(4, 4, 3, 128, 128).permute(0, 3, 1, 4, 2).reshape(4 * 128, 4 * 128, 3)
    img = Image.fromarray((grid.numpy() * 255).round().astype(np.uint8))
    img.save(tmp_path / "contact_sheet_cpu.png")
    if os.environ.get("ANYSKILL_UPDATE_IMAGES"):
        out = REPO / "docs" / "images" / "contact_sheet_cpu.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out, optimize=True)
    env.close()
