"""Observation features: sizes, layouts (spec §3.1, §3.2), heading invariance, agreement with MuJoCo hinge state."""

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
from anyskill_tui.core.motion.fk import forward_kinematics

D = torch.float64


def test_dims():
    assert F.POLICY_OBS_DIM == 223
    assert F.AMP_OBS_DIM == 125
    assert F.JOINT_BODY_IDS == T.DOF_BODY_IDS == (1, 2, 3, 4, 6, 7, 9, 10, 11, 12, 13, 14)


def _random_state(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    local = Q.quat_normalize(torch.randn(n, 15, 4, generator=g, dtype=D))
    root = torch.randn(n, 3, generator=g, dtype=D)
    body_pos, body_rot = forward_kinematics(root, local)
    body_vel = torch.randn(n, 15, 3, generator=g, dtype=D)
    body_angvel = torch.randn(n, 15, 3, generator=g, dtype=D)
    return body_pos, body_rot, body_vel, body_angvel


def _amp_from_bodies(body_pos, body_rot, body_vel, body_angvel):
    lr, la = F.joint_local_state(body_rot, body_angvel)
    return F.amp_obs(
        body_pos[..., 0, :],
        body_rot[..., 0, :],
        body_vel[..., 0, :],
        body_angvel[..., 0, :],
        lr,
        la,
        body_pos[..., list(T.KEY_BODY_IDS), :],
    )


def test_rest_pose_values():
    body_pos, body_rot = forward_kinematics(torch.tensor([0.0, 0.0, 0.89]), Q.quat_identity((15,)))
    zeros = torch.zeros(15, 3)
    p = F.policy_obs(body_pos, body_rot, zeros, zeros)
    assert p.shape == (223,)
    assert float(p[0]) == pytest.approx(0.89)
    torch.testing.assert_close(p[1:4], torch.as_tensor(T.LOCAL_TRANSLATION[1], dtype=torch.float32))
    torch.testing.assert_close(p[43:49], torch.tensor([1.0, 0, 0, 0, 0, 1]))
    a = _amp_from_bodies(body_pos, body_rot, zeros, zeros)
    assert a.shape == (125,)
    torch.testing.assert_close(a[1:7], torch.tensor([1.0, 0, 0, 0, 0, 1]))
    torch.testing.assert_close(a[13:85], torch.tensor([1.0, 0, 0, 0, 0, 1]).repeat(12))
    assert float(a[85:113].abs().max()) == 0.0
    torch.testing.assert_close(a[113:116], body_pos[5] - body_pos[0])  # right hand


def test_heading_invariance():
    body_pos, body_rot, body_vel, body_angvel = _random_state(32)
    yaw = Q.quat_from_axis_angle(torch.tensor([0.0, 0.0, 1.0], dtype=D), torch.tensor(1.234, dtype=D))
    shift = torch.tensor([3.0, -2.0, 0.0], dtype=D)
    moved = (
        Q.quat_rotate(yaw, body_pos) + shift,
        Q.quat_mul(yaw.expand_as(body_rot), body_rot),
        Q.quat_rotate(yaw, body_vel),
        Q.quat_rotate(yaw, body_angvel),
    )
    torch.testing.assert_close(F.policy_obs(*moved), F.policy_obs(body_pos, body_rot, body_vel, body_angvel))
    torch.testing.assert_close(_amp_from_bodies(*moved), _amp_from_bodies(body_pos, body_rot, body_vel, body_angvel))


def test_layouts_match_spec():
    body_pos, body_rot, body_vel, body_angvel = _random_state(8, seed=1)
    h_inv = Q.heading_quat_inv(body_rot[:, 0]).unsqueeze(1)
    p = F.policy_obs(body_pos, body_rot, body_vel, body_angvel)
    assert p.shape == (8, 223)
    torch.testing.assert_close(p[:, 0], body_pos[:, 0, 2])
    torch.testing.assert_close(p[:, 1:43].reshape(8, 14, 3), Q.quat_rotate(h_inv, body_pos[:, 1:] - body_pos[:, :1]))
    torch.testing.assert_close(
        p[:, 43:133].reshape(8, 15, 6), Q.tan_norm(Q.quat_mul(h_inv.expand_as(body_rot), body_rot))
    )
    torch.testing.assert_close(p[:, 133:178].reshape(8, 15, 3), Q.quat_rotate(h_inv, body_vel))
    torch.testing.assert_close(p[:, 178:223].reshape(8, 15, 3), Q.quat_rotate(h_inv, body_angvel))

    a = _amp_from_bodies(body_pos, body_rot, body_vel, body_angvel)
    h = h_inv[:, 0]
    torch.testing.assert_close(a[:, 0], body_pos[:, 0, 2])
    torch.testing.assert_close(a[:, 1:7], Q.tan_norm(Q.quat_mul(h, body_rot[:, 0])))
    torch.testing.assert_close(a[:, 7:10], Q.quat_rotate(h, body_vel[:, 0]))
    torch.testing.assert_close(a[:, 10:13], Q.quat_rotate(h, body_angvel[:, 0]))
    for k, j in enumerate(T.JOINTS):
        parent = T.PARENT_INDICES[j.body]
        local = Q.quat_mul(Q.quat_conjugate(body_rot[:, parent]), body_rot[:, j.body])
        torch.testing.assert_close(a[:, 13 + 6 * k : 19 + 6 * k], Q.tan_norm(local))
        rel = Q.quat_rotate_inverse(body_rot[:, j.body], body_angvel[:, j.body] - body_angvel[:, parent])
        dv = a[:, 85 + j.dof_start : 85 + j.dof_start + j.num_dofs]
        torch.testing.assert_close(dv, rel if j.num_dofs == 3 else rel[:, 1:2])
    key = Q.quat_rotate(h.unsqueeze(1), body_pos[:, list(T.KEY_BODY_IDS)] - body_pos[:, :1])
    torch.testing.assert_close(a[:, 113:125], key.reshape(8, 12))


def test_joint_state_matches_mujoco_hinges():
    """From MuJoCo hinge state: local rotations are the Euler quaternions, 1-DoF dof velocities the hinge rates,
    3-DoF dof velocities the Euler-rate map of the hinge rates."""
    model = load_model()
    d = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    lo, hi = T.dof_limits()
    res = np.zeros(6)
    for _ in range(10):
        q = rng.normal(size=4)
        d.qpos[:3] = rng.normal(size=3)
        d.qpos[3:7] = q / np.linalg.norm(q)
        d.qpos[7:] = rng.uniform(lo, hi)
        d.qvel[:] = rng.normal(size=model.nv)
        mujoco.mj_forward(model, d)
        body_rot = Q.wxyz_to_xyzw(torch.as_tensor(d.xquat[1:].copy()))
        ang = []
        for b in range(1, 16):
            mujoco.mj_objectVelocity(model, d, mujoco.mjtObj.mjOBJ_XBODY, b, res, 0)
            ang.append(res[:3].copy())
        lr, la = F.joint_local_state(body_rot, torch.as_tensor(np.array(ang)))
        dv = F.dof_vel_obs(la)
        qv = torch.as_tensor(d.qvel[6:].copy())
        for k, j in enumerate(T.JOINTS):
            sl = slice(j.dof_start, j.dof_start + j.num_dofs)
            angles = torch.as_tensor(d.qpos[7:][sl].copy())
            if j.num_dofs == 3:
                expect = Q.euler_xyz_to_quat(angles)
                torch.testing.assert_close(dv[sl], Q.euler_xyz_rates_to_local_angvel(angles, qv[sl]))
            else:
                expect = Q.quat_from_axis_angle(torch.tensor([0.0, 1.0, 0.0], dtype=D), angles[0])
                torch.testing.assert_close(dv[sl], qv[sl])
            assert float(1 - (lr[k] * expect).sum().abs()) < 1e-12
        torch.testing.assert_close(F.dof_obs(lr).reshape(12, 6), Q.tan_norm(lr))


def test_batch_shapes_float32():
    body_pos, body_rot, body_vel, body_angvel = (x.float().reshape(2, 4, 15, -1) for x in _random_state(8))
    assert F.policy_obs(body_pos, body_rot, body_vel, body_angvel).shape == (2, 4, 223)
    a = _amp_from_bodies(body_pos, body_rot, body_vel, body_angvel)
    assert a.shape == (2, 4, 125) and a.dtype == torch.float32
    assert math.isfinite(float(a.abs().max()))


def test_forward_kinematics_by_levels_equals_the_body_loop():
    """The level-batched FK gives bit for bit what a body-by-body loop over the tree gives, any batch shape and
    dtype, and gradients flow to the root position and the local rotations."""
    from anyskill_tui.core.character import tables as T
    from anyskill_tui.core.motion.fk import (
        forward_kinematics,
        global_to_local_rot,
        local_to_global_rot,
        local_translation,
    )
    from anyskill_tui.core.motion.quat import quat_mul, quat_rotate

    def body_loop(root_pos, local_rot):
        offsets = local_translation(local_rot.device, local_rot.dtype)
        pos, rot = [root_pos], [local_rot[..., 0, :]]
        for b in range(1, T.NUM_BODIES):
            p = T.PARENT_INDICES[b]
            rot.append(quat_mul(rot[p], local_rot[..., b, :]))
            pos.append(pos[p] + quat_rotate(rot[p], offsets[b].expand_as(pos[p])))
        return torch.stack(pos, dim=-2), torch.stack(rot, dim=-2)

    g = torch.Generator().manual_seed(0)
    for shape, dtype in (((9,), torch.float32), ((3, 4), torch.float64), ((), torch.float32)):
        q = torch.randn(*shape, T.NUM_BODIES, 4, generator=g, dtype=dtype)
        q = q / q.norm(dim=-1, keepdim=True)
        r = torch.randn(*shape, 3, generator=g, dtype=dtype)
        got, want = forward_kinematics(r, q), body_loop(r, q)
        assert got[0].shape == (*shape, T.NUM_BODIES, 3) and got[1].shape == (*shape, T.NUM_BODIES, 4)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        torch.testing.assert_close(global_to_local_rot(local_to_global_rot(q)), q)  # the rotations alone, inverted
    q.requires_grad_(True)
    r.requires_grad_(True)
    forward_kinematics(r, q)[0][..., 5, :].sum().backward()  # right hand: depends on its chain of rotations
    assert r.grad is not None and torch.equal(r.grad, torch.ones(3))
    assert q.grad[..., 4, :].abs().sum() > 0 and q.grad[..., 5, :].abs().sum() == 0  # its parent moves it, it not
