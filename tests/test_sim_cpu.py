"""The cpu engine (core/sim/cpu.py) against plain MuJoCo: one MjData per world, stepped in a Python loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

mujoco = pytest.importorskip("mujoco")

from anyskill_tui.core.character import tables as T  # noqa: E402
from anyskill_tui.core.sim import make_backend  # noqa: E402
from anyskill_tui.core.sim.cpu import CONTACT_FORCE_THRESHOLD, CpuBackend, build_model  # noqa: E402

N = 6
STEPS = 40


def _random_start(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random root orientations at the default height, zero DoFs; fixed random PD targets."""
    rng = np.random.default_rng(seed)
    m = build_model()
    qpos = np.tile(m.qpos0, (n, 1))
    qpos[:, 2] = T.DEFAULT_ROOT_HEIGHT
    q = rng.normal(size=(n, 4))
    qpos[:, 3:7] = q / np.linalg.norm(q, axis=1, keepdims=True)
    qpos[0, 3:7] = (1, 0, 0, 0)  # one stands
    qvel = np.zeros((n, m.nv))
    qvel[:, 6:] = rng.normal(scale=0.5, size=(n, T.NUM_DOFS))
    off, scale = T.pd_offset_scale()
    target = off + scale * rng.uniform(-0.5, 0.5, size=(n, T.NUM_DOFS))
    target[0] = 0.0
    return qpos, qvel, target


def _reference_contacts(m, d) -> tuple[np.ndarray, np.ndarray]:
    """Per character body, from d.contact + mj_contactForce: (15,) normal force of its contact with the largest
    force magnitude (what the contact sensors report) and (15,) bool "some contact has normal force > 0.1 N"."""
    best = np.zeros(T.NUM_BODIES)
    best_norm = np.full(T.NUM_BODIES, -1.0)
    touch = np.zeros(T.NUM_BODIES, bool)
    f = np.zeros(6)
    for i in range(d.ncon):
        mujoco.mj_contactForce(m, d, i, f)
        for g in d.contact[i].geom:
            b = m.geom_bodyid[g]
            if 1 <= b <= T.NUM_BODIES:
                k = b - 1
                if np.linalg.norm(f[:3]) > best_norm[k]:
                    best_norm[k], best[k] = np.linalg.norm(f[:3]), f[0]
                touch[k] |= f[0] > CONTACT_FORCE_THRESHOLD
    return best, touch


def _reference_body_state(m, d) -> tuple[np.ndarray, np.ndarray]:
    """(15, 3) origin linear and (15, 3) angular world velocities via mj_objectVelocity at the current state.

    mjOBJ_XBODY: the body frame's origin (mjOBJ_BODY would give the velocity of the body's centre of mass).
    """
    mujoco.mj_kinematics(m, d)
    mujoco.mj_comPos(m, d)
    mujoco.mj_comVel(m, d)
    lin = np.zeros((T.NUM_BODIES, 3))
    ang = np.zeros((T.NUM_BODIES, 3))
    res = np.zeros(6)
    for b in range(T.NUM_BODIES):
        mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_XBODY, b + 1, res, 0)
        ang[b], lin[b] = res[:3], res[3:]
    return lin, ang


@pytest.fixture(scope="module")
def paired():
    """A CpuBackend and a per-world MjData loop, stepped identically; records per-step comparisons."""
    qpos, qvel, target = _random_start(N, seed=3)
    backend = CpuBackend(N, nthread=2, dtype=torch.float64)
    backend.set_state(torch.arange(N), torch.from_numpy(qpos), torch.from_numpy(qvel))
    m = build_model()
    datas = []
    for i in range(N):
        d = mujoco.MjData(m)
        d.qpos[:] = qpos[i]
        d.qvel[:] = qvel[i]
        mujoco.mj_forward(m, d)
        datas.append(d)
    records = []
    for _ in range(STEPS):
        backend.step(torch.from_numpy(target), T.CONTROL_SUBSTEPS)
        rec = {"qpos": [], "qvel": [], "contact": [], "touch": [], "lin": [], "ang": [], "pos": [], "quat": []}
        for i, d in enumerate(datas):
            d.ctrl[:] = target[i]
            for _ in range(T.CONTROL_SUBSTEPS):
                mujoco.mj_step(m, d)
            rec["qpos"].append(d.qpos.copy())
            rec["qvel"].append(d.qvel.copy())
            normal, touch = _reference_contacts(m, d)  # the last substep's contacts and forces
            rec["contact"].append(normal)
            rec["touch"].append(touch)
            lin, ang = _reference_body_state(m, d)
            rec["lin"].append(lin)
            rec["ang"].append(ang)
            rec["pos"].append(d.xpos[1:16].copy())
            rec["quat"].append(d.xquat[1:16].copy())
        rec = {k: np.stack(v) for k, v in rec.items()}
        rec["backend"] = {
            "qpos": backend.qpos.numpy().copy(),
            "qvel": backend.qvel.numpy().copy(),
            "body_pos": backend.body_pos.numpy().copy(),
            "body_rot": backend.body_rot.numpy().copy(),
            "body_vel": backend.body_vel.numpy().copy(),
            "body_angvel": backend.body_angvel.numpy().copy(),
            "contact": backend.body_contact.numpy().copy(),
            "normal": backend.body_contact_normal_force.numpy().copy(),
        }
        records.append(rec)
    yield backend, records
    backend.close()


def test_steps_bit_identical_to_mjdata_loop(paired):
    _, records = paired
    for rec in records:
        b = rec["backend"]
        assert np.array_equal(b["qpos"], rec["qpos"])
        assert np.array_equal(b["qvel"], rec["qvel"])


def test_body_state_matches_mj_object_velocity(paired):
    _, records = paired
    for rec in records:
        b = rec["backend"]
        np.testing.assert_allclose(b["body_pos"], rec["pos"], atol=1e-12)
        np.testing.assert_allclose(b["body_rot"], rec["quat"][..., [1, 2, 3, 0]], atol=1e-12)
        np.testing.assert_allclose(b["body_vel"], rec["lin"], atol=1e-9)
        np.testing.assert_allclose(b["body_angvel"], rec["ang"], atol=1e-9)


def test_contacts_match_contact_forces(paired):
    _, records = paired
    touched = 0
    for rec in records:
        b = rec["backend"]
        np.testing.assert_allclose(b["normal"], rec["contact"], atol=1e-9, rtol=1e-9)
        assert np.array_equal(b["contact"], rec["touch"])
        touched += int(b["contact"][:, list(set(range(15)) - set(T.CONTACT_BODY_IDS))].sum())
    assert touched > 0  # the random starts do put non-foot bodies on the floor


def test_default_state_and_feet_contact():
    b = CpuBackend(2, nthread=1)
    torch.testing.assert_close(b.body_pos[:, 0], torch.tensor([[0.0, 0.0, 0.89]] * 2))
    torch.testing.assert_close(b.body_rot[:, 0], torch.tensor([[0.0, 0.0, 0.0, 1.0]] * 2))
    for _ in range(15):
        b.step(torch.zeros(2, T.NUM_DOFS), T.CONTROL_SUBSTEPS)
    feet = list(T.CONTACT_BODY_IDS)
    assert b.body_contact[:, feet].all()
    others = [i for i in range(T.NUM_BODIES) if i not in feet]
    assert not b.body_contact[:, others].any()
    assert abs(float(b.body_pos[0, 0, 2]) - 0.88) < 0.01
    assert not b.unstable.any()
    b.close()


def test_set_state_subset_leaves_others():
    b = make_backend("cpu", 4, threads=2, dtype=torch.float64)
    for _ in range(3):
        b.step(torch.zeros(4, T.NUM_DOFS), T.CONTROL_SUBSTEPS)
    before = b.qpos.clone()
    qpos = b.qpos[[1, 3]].clone()
    qpos[:, 0] += torch.tensor([1.0, 2.0], dtype=torch.float64)
    b.set_state(torch.tensor([3, 1]), qpos.flip(0), torch.zeros(2, b.qvel.shape[1], dtype=torch.float64))
    torch.testing.assert_close(b.qpos[[0, 2]], before[[0, 2]])
    torch.testing.assert_close(b.qpos[[1, 3]], qpos)
    torch.testing.assert_close(b.body_pos[[1, 3], 0], qpos[:, :3])
    assert torch.all(b.qvel[[1, 3]] == 0)
    b.close()


def test_render_shapes_and_range():
    b = CpuBackend(2, nthread=1)
    from anyskill_tui.core.sim.backend import CameraSpec

    frames = b.render(CameraSpec(width=64, height=48))
    assert frames.shape == (2, 3, 48, 64) and frames.dtype == torch.float32
    assert float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0
    torch.testing.assert_close(frames[0], frames[1])  # identical worlds, identical frames
    b.close()


def test_track_camera_render_equals_free_camera_render():
    """Writing the look-at pose into the `track` camera (both engines) renders what a MjvCamera free camera with
    `camera.set_free_camera` renders (the viewer's path)."""
    import copy

    from anyskill_tui.core.sim.backend import CameraSpec
    from anyskill_tui.core.sim.camera import set_free_camera, tracking_camera_pose

    spec = CameraSpec(width=96, height=96, azimuth_deg=-35.0)
    b = CpuBackend(1, nthread=1)
    frame = b.render(spec)[0].permute(1, 2, 0).numpy()
    m = copy.copy(b.model)
    m.vis.global_.fovy = spec.fovy_deg
    d = mujoco.MjData(m)
    d.qpos[:] = b.qpos[0].double().numpy()
    mujoco.mj_forward(m, d)
    cam_pos, lookat = tracking_camera_pose(b.body_pos[:, 0].double(), spec)
    with mujoco.Renderer(m, height=96, width=96) as r:
        r.update_scene(d, camera=set_free_camera(mujoco.MjvCamera(), cam_pos[0], lookat[0]))
        ref = r.render().astype(np.float32) / 255.0
    assert np.abs(frame - ref).mean() < 0.01
    b.close()
