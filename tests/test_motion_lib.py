"""MotionLib: FK and reference states against MuJoCo, demo AMP features against MuJoCo state, sampling, windows."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.character.model import load_model
from anyskill_tui.core.motion import features as F
from anyskill_tui.core.motion import quat as Q
from anyskill_tui.core.motion.clip import Clip, compute_velocities, read_clip
from anyskill_tui.core.motion.dataset import MotionDataset
from anyskill_tui.core.motion.motion_lib import MotionLib
from anyskill_tui.paths import shared_reference_dir

D = torch.float64


def synthetic_clip(num_frames: int, fps: float, seed: int, name: str = "synthetic") -> Clip:
    """Smooth random motion: every hinge a sinusoid inside its limits (1-DoF joints pure y rotations), hands
    rigid, the root translating, turning and tilting."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / fps
    lo, hi = T.dof_limits()
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    freq = rng.uniform(0.2, 1.2, size=T.NUM_DOFS)
    phase = rng.uniform(0, 2 * math.pi, size=T.NUM_DOFS)
    amp = rng.uniform(0.3, 0.95, size=T.NUM_DOFS)
    angles = torch.as_tensor(mid + amp * half * np.sin(2 * math.pi * freq * t[:, None] + phase))
    local = Q.quat_identity((num_frames, T.NUM_BODIES), dtype=D)
    y = torch.tensor([0.0, 1.0, 0.0], dtype=D)
    for j in T.JOINTS:
        a = angles[:, j.dof_start : j.dof_start + j.num_dofs]
        local[:, j.body] = Q.euler_xyz_to_quat(a) if j.num_dofs == 3 else Q.quat_from_axis_angle(y, a[:, 0])
    tt = torch.as_tensor(t)
    root_e = torch.stack((0.3 * torch.sin(1.3 * tt), 0.2 * torch.sin(0.7 * tt + 1), 0.8 * tt + seed), -1)
    local[:, 0] = Q.euler_xyz_to_quat(root_e)
    root = torch.stack((0.9 * tt, 0.2 * torch.sin(tt), 0.9 + 0.05 * torch.sin(3 * tt)), -1)
    return Clip(local.numpy(), root.numpy(), fps, f"{name}{seed}")


def reference_clips() -> list[Clip]:
    ref = shared_reference_dir()
    if ref is None:
        pytest.skip("reference clips not available (../shared/reference/calm)")
    return [read_clip(ref / f"amp_humanoid_{n}.npy") for n in ("walk", "run", "jog")]


def synthetic_clips() -> list[Clip]:
    return [synthetic_clip(45, 30.0, 1), synthetic_clip(70, 60.0, 2), synthetic_clip(33, 24.0, 3)]


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return load_model()


def _frame_and_mid_times(lib: MotionLib, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = int(lib.clip_num_frames[c])
    fps = float(lib.clip_fps[c])
    t = torch.cat((torch.arange(n, dtype=D) / fps, (torch.arange(n - 1, dtype=D) + 0.37) / fps))
    return torch.full((t.shape[0],), c, dtype=torch.long), t


def _fk_error(model, lib: MotionLib) -> tuple[float, float]:
    d = mujoco.MjData(model)
    pos_err = rot_err = 0.0
    for c in range(lib.num_clips):
        ids, t = _frame_and_mid_times(lib, c)
        s = lib.state(ids, t)
        qpos, _ = lib.mujoco_state(ids, t)
        for i in range(ids.shape[0]):
            d.qpos[:] = qpos[i].double().numpy()
            mujoco.mj_kinematics(model, d)
            pos_err = max(pos_err, float(np.abs(d.xpos[1:] - s.body_pos[i].double().numpy()).max()))
            xq = Q.wxyz_to_xyzw(torch.as_tensor(d.xquat[1:].copy()))
            dot = (xq * s.body_rot[i].double()).sum(-1).abs()
            rot_err = max(rot_err, float((1 - dot).max()))
    return pos_err, rot_err


def test_fk_matches_mujoco_synthetic(model):
    lib = MotionLib(MotionDataset.from_clips(synthetic_clips()))  # float32, the default
    pos_err, rot_err = _fk_error(model, lib)
    assert pos_err < 1e-3, pos_err
    assert rot_err < 1e-6, rot_err


def test_fk_matches_mujoco_reference(model):
    clips = reference_clips()
    lib = MotionLib(MotionDataset.from_clips(clips))
    pos_err, rot_err = _fk_error(model, lib)
    print(f"reference clips: FK max body position error {pos_err:.2e} m")
    assert pos_err < 1e-3, pos_err
    # the reference 1-DoF joints are pure y rotations
    jr = lib.state(*_frame_and_mid_times(lib, 0)).joint_local_rot
    assert float(jr[:, [3, 5, 7, 10]][..., [0, 2]].abs().max()) < 1e-6


def _mujoco_amp_obs(model, d, qpos: np.ndarray, qvel: np.ndarray) -> torch.Tensor:
    d.qpos[:] = qpos
    d.qvel[:] = qvel
    mujoco.mj_forward(model, d)
    res = np.zeros(6)
    ang, lin = [], []
    for b in range(1, T.NUM_BODIES + 1):
        mujoco.mj_objectVelocity(
            model, d, mujoco.mjtObj.mjOBJ_XBODY, b, res, 0
        )  # [angular, linear] at the body origin, world
        ang.append(res[:3].copy())
        lin.append(res[3:].copy())
    body_rot = Q.wxyz_to_xyzw(torch.as_tensor(d.xquat[1:].copy()))
    body_pos = torch.as_tensor(d.xpos[1:].copy())
    ang = torch.as_tensor(np.array(ang))
    lin = torch.as_tensor(np.array(lin))
    local_rot, local_angvel = F.joint_local_state(body_rot, ang)
    return F.amp_obs(body_pos[0], body_rot[0], lin[0], ang[0], local_rot, local_angvel, body_pos[list(T.KEY_BODY_IDS)])


def _amp_error(model, lib: MotionLib, rate_damping: float = 0.0, skip_near_lock: bool = False) -> float:
    d = mujoco.MjData(model)
    err = 0.0
    for c in range(lib.num_clips):
        ids, t = _frame_and_mid_times(lib, c)
        demo = lib.amp_obs(ids, t)
        qpos, qvel = lib.mujoco_state(ids, t, rate_damping=rate_damping)
        j3_y = torch.tensor([j.dof_start + 1 for j in T.JOINTS if j.num_dofs == 3])
        near_lock = (torch.cos(qpos[:, 7 + j3_y]).abs() < 0.1).any(-1)
        for i in range(ids.shape[0]):
            if skip_near_lock and bool(near_lock[i]):
                continue
            sim = _mujoco_amp_obs(model, d, qpos[i].numpy(), qvel[i].numpy())
            err = max(err, float((sim - demo[i]).abs().max()))
    return err


def test_demo_amp_obs_equal_mujoco_features_synthetic(model):
    lib = MotionLib(MotionDataset.from_clips(synthetic_clips()), dtype=D)
    err = _amp_error(model, lib)
    assert err < 1e-5, err


def test_demo_amp_obs_equal_mujoco_features_reference(model):
    lib = MotionLib(MotionDataset.from_clips(reference_clips()), dtype=D)
    err = _amp_error(model, lib)
    print(f"reference clips: demo vs MuJoCo AMP feature max error {err:.2e}")
    assert err < 1e-5, err
    # the reference clips never come near gimbal lock: the default (damped) rates are exact too
    assert _amp_error(model, lib, rate_damping=0.1) < 1e-5


def test_default_rate_damping_bounds_hinge_rates_near_gimbal_lock(model):
    """Synthetic clips sweep shoulders and hips through y = -90 deg (gimbal lock of x-y-z hinges): exact rates
    reach hundreds of rad/s; the default damped rates stay within a few times |omega|, and every state away from
    the lock still gives the exact features."""
    lib = MotionLib(MotionDataset.from_clips(synthetic_clips()), dtype=D)
    ids = torch.cat([_frame_and_mid_times(lib, c)[0] for c in range(lib.num_clips)])
    t = torch.cat([_frame_and_mid_times(lib, c)[1] for c in range(lib.num_clips)])
    _, exact = lib.mujoco_state(ids, t, rate_damping=0.0)
    _, damped = lib.mujoco_state(ids, t)
    w_max = float(lib.state(ids, t).joint_local_angvel.norm(dim=-1).max())
    assert float(exact[:, 6:].abs().max()) > 20 * w_max  # the problem is real in these clips
    assert float(damped[:, 6:].abs().max()) < 5 * w_max
    assert _amp_error(model, lib, rate_damping=0.1, skip_near_lock=True) < 1e-5


# ------------------------------------------------------------------------------------------------ states


@pytest.fixture(scope="module")
def lib() -> MotionLib:
    return MotionLib(MotionDataset.from_clips(synthetic_clips(), weights=[1.0, 2.0, 1.0]))


def test_metadata(lib):
    assert lib.num_clips == 3
    torch.testing.assert_close(lib.clip_lengths, torch.tensor([44 / 30, 69 / 60, 32 / 24]))
    torch.testing.assert_close(lib.clip_weights, torch.tensor([0.25, 0.5, 0.25]))
    assert lib.clip_start.tolist() == [0, 45, 115]
    assert lib.num_frames == 45 + 70 + 33


def test_state_at_frames_and_interpolation(lib):
    clip = synthetic_clips()[1]
    ids = torch.tensor([1, 1, 1, 1])
    t = torch.tensor([0.0, 10 / 60, 10.5 / 60, 100.0])
    s = lib.state(ids, t)
    torch.testing.assert_close(s.root_pos[0], torch.as_tensor(clip.root_pos[0]))
    torch.testing.assert_close(s.root_pos[1], torch.as_tensor(clip.root_pos[10]))
    torch.testing.assert_close(s.root_pos[2], torch.as_tensor(0.5 * (clip.root_pos[10] + clip.root_pos[11])))
    torch.testing.assert_close(s.root_pos[3], torch.as_tensor(clip.root_pos[-1]))  # times clamp at the end
    mid = Q.slerp(torch.as_tensor(clip.local_rot[10]), torch.as_tensor(clip.local_rot[11]), torch.full((15,), 0.5))
    torch.testing.assert_close(s.local_rot[2], mid)
    # velocities at f0, not interpolated
    torch.testing.assert_close(s.root_vel[2], torch.as_tensor(compute_velocities(clip)[0][10, 0]))
    assert s.key_pos.shape == (4, 4, 3)
    torch.testing.assert_close(s.key_pos, s.body_pos[:, list(T.KEY_BODY_IDS)])
    torch.testing.assert_close(s.root_rot, s.body_rot[:, 0])


def test_local_angvel_finite_difference():
    n, fps, rate = 12, 30.0, 1.5
    local = Q.quat_identity((n, T.NUM_BODIES), dtype=D)
    ang = -0.2 - rate * torch.arange(n, dtype=D) / fps
    local[:, 4] = Q.quat_from_axis_angle(torch.tensor([0.0, 1.0, 0.0], dtype=D), ang)  # right elbow
    e = torch.stack((0.1 * torch.arange(n, dtype=D) / fps, torch.zeros(n, dtype=D), torch.zeros(n, dtype=D)), -1)
    local[:, 1] = Q.euler_xyz_to_quat(e)  # abdomen about x at 0.1 rad/s
    root = np.tile([0.0, 0.0, 0.9], (n, 1))
    lib = MotionLib(MotionDataset.from_clips([Clip(local.numpy(), root, fps)]), dtype=D)
    t = torch.tensor([0.0, 5 / fps, (n - 1) / fps], dtype=D)
    s = lib.state(torch.zeros(3, dtype=torch.long), t)
    torch.testing.assert_close(
        s.joint_local_angvel[:, 3], torch.tensor([[0.0, -rate, 0.0]] * 3, dtype=D), atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(
        s.joint_local_angvel[:, 0], torch.tensor([[0.1, 0.0, 0.0]] * 3, dtype=D), atol=1e-5, rtol=1e-4
    )
    dof = F.dof_vel_obs(s.joint_local_angvel)
    assert dof.shape == (3, 28)
    torch.testing.assert_close(dof[:, 9], torch.full((3,), -rate, dtype=D), atol=1e-5, rtol=1e-4)


def test_velocities_from_file_or_recomputed():
    clip = synthetic_clip(20, 30.0, 5)
    vel, angvel = compute_velocities(clip)
    stored = Clip(clip.local_rot, clip.root_pos, 30.0, global_vel=vel * 0 + 7.0, global_angvel=angvel)
    lib_stored = MotionLib(MotionDataset.from_clips([stored]))
    lib_recomputed = MotionLib(MotionDataset.from_clips([clip]))
    t = torch.tensor([0.1])
    assert lib_stored.state(torch.zeros(1, dtype=torch.long), t).root_vel.tolist() == [[7.0, 7.0, 7.0]]
    torch.testing.assert_close(
        lib_recomputed.state(torch.zeros(1, dtype=torch.long), t).root_vel[0], torch.as_tensor(vel[3, 0])
    )


def test_mujoco_state_layout(lib):
    ids = torch.tensor([0, 2])
    t = torch.tensor([0.3, 0.9])
    qpos, qvel = lib.mujoco_state(ids, t)
    qpos2, _ = lib.mujoco_state(ids, t, height_offset=0.25)
    assert qpos.shape == (2, 35) and qvel.shape == (2, 34)
    s = lib.state(ids, t)
    torch.testing.assert_close(qpos[:, :3], s.root_pos)
    torch.testing.assert_close(qpos[:, 3:7], Q.xyzw_to_wxyz(s.root_rot))
    torch.testing.assert_close(qpos2[:, 2], qpos[:, 2] + 0.25)
    torch.testing.assert_close(qvel[:, 3:6], Q.quat_rotate_inverse(s.root_rot, s.root_angvel))
    lo, hi = T.dof_limits()
    inside = (qpos[:, 7:] >= torch.as_tensor(lo, dtype=torch.float32) - 1e-5) & (
        qpos[:, 7:] <= torch.as_tensor(hi, dtype=torch.float32) + 1e-5
    )
    assert bool(inside.all())  # synthetic clips stay inside the limits, and so must the chosen Euler solution


# ------------------------------------------------------------------------------------------------ sampling & windows


def test_sampling(lib):
    g = torch.Generator().manual_seed(0)
    ids = lib.sample_clips(20000, generator=g)
    frac = torch.bincount(ids, minlength=3).float() / 20000
    torch.testing.assert_close(frac, torch.tensor([0.25, 0.5, 0.25]), atol=0.02, rtol=0)
    t = lib.sample_times(ids, truncate=0.5, generator=g)
    assert bool((t >= 0).all()) and bool((t <= lib.clip_lengths[ids] - 0.5 + 1e-6).all())
    only = MotionLib(MotionDataset.from_clips(synthetic_clips(), weights=[0.0, 1.0, 0.0]))
    assert set(only.sample_clips(500).tolist()) == {1}


def test_demo_windows_newest_first_and_clipped(lib):
    ids = torch.tensor([0, 1])
    end = torch.tensor([1.0, 0.05])
    w = lib.demo_windows(ids, end, 7)
    assert w.shape == (2, 7, 125)
    dt = T.CONTROL_DT
    for k in range(7):
        tk = (end - k * dt).clamp_min(0.0)
        torch.testing.assert_close(w[:, k], lib.amp_obs(ids, tk))
    torch.testing.assert_close(w[1, 2], w[1, 6])  # clipped at time 0
    w2 = lib.demo_windows(ids, end, 4, dt=0.1)
    torch.testing.assert_close(w2[0, 3], lib.amp_obs(ids[:1], torch.tensor([0.7]))[0])


def test_pairs_and_per_clip_windows(lib):
    g = torch.Generator().manual_seed(1)
    enc, amp = lib.fetch_enc_amp_pair(6, generator=g)
    assert enc.shape == (6, 60, F.AMP_OBS_DIM) and amp.shape == (6, 10, F.AMP_OBS_DIM)
    enc, amp, ids = lib.fetch_enc_amp_pair(5, enc_steps=20, amp_steps=4, return_ids=True, generator=g)
    assert enc.shape == (5, 20, 125) and amp.shape == (5, 4, 125) and ids.shape == (5,)
    a, b = lib.fetch_alignment_pair(4, enc_steps=12, generator=g)
    assert a.shape == b.shape == (4, 12, 125)
    w = lib.windows_per_clip(3, 2, steps=15, generator=g)
    assert w.shape == (3, 15, 125)
    for x in (enc, amp, a, b, w):
        assert bool(torch.isfinite(x).all())
    # window end times: a full window inside the clip when it fits, else the clip end
    ends = lib._window_end_times(torch.tensor([0, 1, 2] * 100), 60, T.CONTROL_DT, g)
    lengths = lib.clip_lengths[torch.tensor([0, 1, 2] * 100)]
    w_len = 59 * T.CONTROL_DT
    assert bool((ends <= lengths + 1e-6).all()) and bool((ends >= torch.clamp(lengths, max=w_len) - 1e-6).all())


def test_amp_window_lies_inside_encoder_window():
    """A single clip with a root moving at constant speed: root x identifies the time exactly."""
    n, fps = 200, 30.0
    local = Q.quat_identity((n, T.NUM_BODIES), dtype=D)
    root = np.zeros((n, 3))
    root[:, 0] = np.arange(n) / fps
    root[:, 2] = 0.9
    lib = MotionLib(MotionDataset.from_clips([Clip(local.numpy(), root, fps)]), dtype=D)
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        # white-box: replay the generator to recover the sampled end times, then check their relation
        g_state = g.get_state()
        enc, amp, ids = lib.fetch_enc_amp_pair(64, return_ids=True, generator=g)
        g2 = torch.Generator()
        g2.set_state(g_state)
        lib.sample_clips(64, generator=g2)
        t_e = lib._window_end_times(ids, 60, T.CONTROL_DT, g2)
        u = lib._rand(64, g2)
        t_a = t_e - u * (lib.clip_lengths[ids].clamp(max=59 * T.CONTROL_DT) - 10 * T.CONTROL_DT).clamp_min(0)
        assert bool((t_a <= t_e + 1e-9).all())
        assert bool((t_a - 9 * T.CONTROL_DT >= t_e - 59 * T.CONTROL_DT - 1e-9).all())
        torch.testing.assert_close(enc, lib.demo_windows(ids, t_e, 60))
        torch.testing.assert_close(amp, lib.demo_windows(ids, t_a, 10))


def test_single_frame_clip():
    clip = synthetic_clip(1, 30.0, 7)
    lib = MotionLib(MotionDataset.from_clips([clip, synthetic_clip(10, 30.0, 8)]))
    assert float(lib.clip_lengths[0]) == 0.0
    ids = torch.zeros(3, dtype=torch.long)
    s = lib.state(ids, torch.tensor([0.0, 0.5, 2.0]))
    torch.testing.assert_close(s.root_pos, torch.as_tensor(clip.root_pos).expand(3, 3))
    assert float(s.joint_local_angvel.abs().max()) == 0.0 and float(s.root_vel.abs().max()) == 0.0
    w = lib.demo_windows(ids, torch.zeros(3), 5)
    assert bool(torch.isfinite(w).all())
    assert lib.fetch_enc_amp_pair(8)[0].shape == (8, 60, 125)


def test_start_states_equal_mujoco_state_and_demo_windows():
    """One reference-state pass gives the episode start (qpos, qvel) and its AMP history: the history equals
    demo_windows bit for bit, and the start state equals mujoco_state at the same (float64) times."""
    lib = MotionLib(MotionDataset.from_clips(synthetic_clips()), dtype=D)
    g = torch.Generator().manual_seed(4)
    clips = lib.sample_clips(12, generator=g)
    times = lib.sample_times(clips, generator=g)
    times[0] = 0.0  # a window clipped at the clip start
    qpos, qvel, hist = lib.start_states(clips, times, 10, height_offset=0.02)
    q_ref, v_ref = lib.mujoco_state(clips, times, height_offset=0.02)
    assert qpos.shape == (12, 35) and qvel.shape == (12, 34) and hist.shape == (12, 10, 125)
    assert torch.equal(hist, lib.demo_windows(clips, times, 10))
    assert torch.equal(qpos, q_ref) and torch.equal(qvel, v_ref)
    assert not torch.equal(hist[:, 0], hist[:, 1])  # the history moves
