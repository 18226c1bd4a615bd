"""Quaternion and Euler math, checked against MuJoCo's kinematics."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.character.model import load_model
from anyskill_tui.core.motion import quat as Q

D = torch.float64


def _rand_quat(n: int, gen: torch.Generator) -> torch.Tensor:
    return Q.quat_normalize(torch.randn(n, 4, generator=gen, dtype=D))


def _same_rot(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-9) -> None:
    """Quaternions equal up to sign."""
    dot = (a * b).sum(-1).abs()
    assert torch.all((1.0 - dot) < atol), float((1.0 - dot).max())


@pytest.fixture(scope="module")
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return load_model()


def test_mul_rotate_matrix_agree(gen):
    a, b = _rand_quat(64, gen), _rand_quat(64, gen)
    v = torch.randn(64, 3, generator=gen, dtype=D)
    ra, rb = Q.quat_to_matrix(a), Q.quat_to_matrix(b)
    torch.testing.assert_close(Q.quat_to_matrix(Q.quat_mul(a, b)), ra @ rb)
    torch.testing.assert_close(Q.quat_rotate(a, v), (ra @ v.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(Q.quat_rotate_inverse(a, Q.quat_rotate(a, v)), v)
    torch.testing.assert_close(Q.quat_mul(a, Q.quat_conjugate(a)), Q.quat_identity((64,), dtype=D))
    _same_rot(Q.quat_from_matrix(ra), a)
    # broadcasting (n,1,4) x (n,5,3)
    vv = torch.randn(64, 5, 3, generator=gen, dtype=D)
    torch.testing.assert_close(Q.quat_rotate(a.unsqueeze(1), vv), Q.quat_rotate(a.unsqueeze(1).expand(64, 5, 4), vv))


def test_axis_angle_and_exp_map(gen):
    q = _rand_quat(128, gen)
    axis, angle = Q.quat_to_axis_angle(q)
    assert torch.all((angle >= 0) & (angle <= math.pi + 1e-12))
    _same_rot(Q.quat_from_axis_angle(axis, angle), q)
    e = Q.quat_to_exp_map(q)
    _same_rot(Q.exp_map_to_quat(e), q)
    small = torch.randn(16, 3, generator=gen, dtype=D) * 1e-8
    torch.testing.assert_close(Q.quat_to_exp_map(Q.exp_map_to_quat(small)), small, rtol=1e-6, atol=1e-14)
    ident = Q.quat_identity((3,), dtype=D)
    torch.testing.assert_close(Q.quat_to_exp_map(ident), torch.zeros(3, 3, dtype=D))
    # spec §1.6.4: the exp-map reading of (0.3, -0.5, 0.7) is wxyz (0.8980, 0.1449, -0.2414, 0.3380)
    em = Q.xyzw_to_wxyz(Q.exp_map_to_quat(torch.tensor([0.3, -0.5, 0.7], dtype=D)))
    torch.testing.assert_close(em, torch.tensor([0.8980, 0.1449, -0.2414, 0.3380], dtype=D), atol=1e-4, rtol=0)


def test_slerp(gen):
    a, b = _rand_quat(32, gen), _rand_quat(32, gen)
    torch.testing.assert_close(Q.slerp(a, b, torch.zeros(32, dtype=D)), a)
    _same_rot(Q.slerp(a, b, torch.ones(32, dtype=D)), b)
    # hemisphere correction: -b is the same rotation, the path is the same
    torch.testing.assert_close(Q.slerp(a, -b, 0.3), Q.slerp(a, b, 0.3))
    # midpoint: equal angles to both ends, angle = half the arc
    m = Q.slerp(a, b, 0.5)
    _, ang_am = Q.quat_to_axis_angle(Q.quat_mul(Q.quat_conjugate(a), m))
    _, ang_mb = Q.quat_to_axis_angle(Q.quat_mul(Q.quat_conjugate(m), b))
    torch.testing.assert_close(ang_am, ang_mb)
    # identical inputs
    torch.testing.assert_close(Q.slerp(a, a, 0.7), a)
    # per-sample blend broadcast over bodies
    qa, qb = a.reshape(8, 4, 4), b.reshape(8, 4, 4)
    t = torch.rand(8, 1, generator=gen, dtype=D)
    torch.testing.assert_close(Q.slerp(qa, qb, t)[:, 2], Q.slerp(qa[:, 2], qb[:, 2], t[:, 0]))


def test_tan_norm_heading(gen):
    q = _rand_quat(64, gen)
    tn = Q.tan_norm(q)
    r = Q.quat_to_matrix(q)
    torch.testing.assert_close(tn[:, :3], r[:, :, 0])
    torch.testing.assert_close(tn[:, 3:], r[:, :, 2])
    h = Q.heading(q)
    torch.testing.assert_close(h, torch.atan2(r[:, 1, 0], r[:, 0, 0]))
    # H⁻¹ ⊗ q has zero heading; H ⊗ H⁻¹ = identity; H is yaw only
    torch.testing.assert_close(
        Q.heading(Q.quat_mul(Q.heading_quat_inv(q), q)), torch.zeros(64, dtype=D), atol=1e-9, rtol=0
    )
    hq = Q.heading_quat(q)
    assert torch.all(hq[:, :2] == 0)
    _same_rot(Q.quat_mul(hq, Q.heading_quat_inv(q)), Q.quat_identity((64,), dtype=D))


def test_wxyz_conversion():
    q = torch.tensor([0.1, 0.2, 0.3, 0.9])
    assert Q.xyzw_to_wxyz(q).tolist() == pytest.approx([0.9, 0.1, 0.2, 0.3])
    torch.testing.assert_close(Q.wxyz_to_xyzw(Q.xyzw_to_wxyz(q)), q)
    arr = np.array([[1.0, 2.0, 3.0, 4.0]])
    assert Q.wxyz_to_xyzw(arr).tolist() == [[2.0, 3.0, 4.0, 1.0]]


def _three_dof_joints():
    return [j for j in T.JOINTS if j.num_dofs == 3]


def test_euler_matches_mujoco(model, gen):
    """Random hinge angles on every joint: MuJoCo's body rotations = products of our Euler quaternions."""
    d = mujoco.MjData(model)
    lo, hi = T.dof_limits()
    rng = np.random.default_rng(1)
    for _ in range(20):
        d.qpos[:] = 0.0
        d.qpos[3:7] = Q.xyzw_to_wxyz(Q.quat_normalize(torch.randn(4, generator=gen, dtype=D))).numpy()
        # wider than the limits on purpose: the composition does not depend on the limits
        d.qpos[7:] = rng.uniform(lo - 0.5, hi + 0.5)
        mujoco.mj_kinematics(model, d)
        xq = Q.wxyz_to_xyzw(torch.as_tensor(d.xquat[1:].copy()))
        for j in T.JOINTS:
            parent = T.PARENT_INDICES[j.body]
            local = Q.quat_mul(Q.quat_conjugate(xq[parent]), xq[j.body])
            angles = torch.as_tensor(d.qpos[7 + j.dof_start : 7 + j.dof_start + j.num_dofs].copy())
            if j.num_dofs == 3:
                expect = Q.euler_xyz_to_quat(angles)
            else:
                expect = Q.quat_from_axis_angle(torch.tensor([0.0, 1.0, 0.0], dtype=D), angles[0])
            _same_rot(local, expect, 1e-12)


def test_quat_to_euler_roundtrip_and_limits(gen):
    q = _rand_quat(512, gen)
    e = Q.quat_to_euler_xyz(q)
    _same_rot(Q.euler_xyz_to_quat(e), q, 1e-12)
    assert torch.all(e[:, 1].abs() <= math.pi / 2 + 1e-9)
    lo, hi = T.dof_limits()
    for j in _three_dof_joints():
        sl = slice(j.dof_start, j.dof_start + 3)
        lower = torch.as_tensor(lo[sl])
        upper = torch.as_tensor(hi[sl])
        e_in = lower + (upper - lower) * torch.rand(256, 3, generator=gen, dtype=D)
        qj = Q.euler_xyz_to_quat(e_in)
        e_out = Q.quat_to_euler_xyz(qj, lower, upper)
        _same_rot(Q.euler_xyz_to_quat(e_out), qj, 1e-12)
        viol = (lower - e_out).clamp_min(0) + (e_out - upper).clamp_min(0)
        assert float(viol.max()) < 1e-9, j.name
        # random rotations: the result is a valid decomposition with no more violation than the default one
        e_any = Q.quat_to_euler_xyz(q, lower, upper)
        _same_rot(Q.euler_xyz_to_quat(e_any), q, 1e-12)
        v_any = ((lower - e_any).clamp_min(0) + (e_any - upper).clamp_min(0)).sum(-1)
        v_def = ((lower - e).clamp_min(0) + (e - upper).clamp_min(0)).sum(-1)
        assert torch.all(v_any <= v_def + 1e-9)


def test_quat_to_euler_second_solution_chosen():
    # (a, b, c) = (2.5, 2.0, 2.5) lies within [-π, π]³; its |b| <= π/2 twin is (2.5-π, π-2.0, 2.5-π)
    e = torch.tensor([2.5, 2.0, 2.5], dtype=D)
    q = Q.euler_xyz_to_quat(e)
    e_default = Q.quat_to_euler_xyz(q)
    assert abs(float(e_default[1])) <= math.pi / 2
    e_lim = Q.quat_to_euler_xyz(q, torch.tensor([2.0, 1.5, 2.0], dtype=D), torch.tensor([3.0, 2.5, 3.0], dtype=D))
    torch.testing.assert_close(e_lim, e)


def test_gimbal_lock():
    for b in (math.pi / 2, -math.pi / 2):
        e = torch.tensor([0.3, b, -0.4], dtype=D)
        q = Q.euler_xyz_to_quat(e)
        out = Q.quat_to_euler_xyz(q)
        assert torch.all(torch.isfinite(out))
        _same_rot(Q.euler_xyz_to_quat(out), q, 1e-12)
        w = torch.tensor([0.5, -1.0, 2.0], dtype=D)
        rates = Q.local_angvel_to_euler_xyz_rates(e, w)
        assert torch.all(torch.isfinite(rates))
        back = Q.euler_xyz_rates_to_local_angvel(e, rates)
        # the reachable part (y rotated by c, and z) is reproduced
        torch.testing.assert_close(back[2], w[2])
        c = e[2]
        ydir = torch.stack((torch.sin(c), torch.cos(c), torch.zeros((), dtype=D)))
        torch.testing.assert_close((back * ydir).sum(), (w * ydir).sum())


def test_euler_rates_match_mujoco(model, gen):
    """Random hinge angles and rates: the child-frame relative angular velocity MuJoCo computes equals ours."""
    d = mujoco.MjData(model)
    lo, hi = T.dof_limits()
    rng = np.random.default_rng(2)
    res = np.zeros(6)
    for _ in range(20):
        d.qpos[:] = 0.0
        d.qpos[3:7] = Q.xyzw_to_wxyz(Q.quat_normalize(torch.randn(4, generator=gen, dtype=D))).numpy()
        d.qpos[7:] = rng.uniform(lo, hi)
        d.qvel[:] = rng.normal(size=model.nv) * 2.0
        mujoco.mj_forward(model, d)
        xq = Q.wxyz_to_xyzw(torch.as_tensor(d.xquat[1:].copy()))
        w_world = []
        for b in range(T.NUM_BODIES):
            mujoco.mj_objectVelocity(model, d, mujoco.mjtObj.mjOBJ_XBODY, b + 1, res, 0)
            w_world.append(res[:3].copy())
        w_world = torch.as_tensor(np.array(w_world))
        for j in T.JOINTS:
            p = T.PARENT_INDICES[j.body]
            rel = Q.quat_rotate_inverse(xq[j.body], w_world[j.body] - w_world[p])
            sl = slice(j.dof_start, j.dof_start + j.num_dofs)
            angles = torch.as_tensor(d.qpos[7:][sl].copy())
            rates = torch.as_tensor(d.qvel[6:][sl].copy())
            if j.num_dofs == 3:
                torch.testing.assert_close(Q.euler_xyz_rates_to_local_angvel(angles, rates), rel)
                torch.testing.assert_close(Q.local_angvel_to_euler_xyz_rates(angles, rel), rates)
            else:
                torch.testing.assert_close(rel, torch.tensor([0.0, float(rates[0]), 0.0], dtype=D))


def test_float32_default_and_batch_shapes():
    q = Q.quat_normalize(torch.randn(2, 3, 15, 4))
    assert Q.tan_norm(q).shape == (2, 3, 15, 6)
    assert Q.heading(q).shape == (2, 3, 15)
    assert Q.quat_to_euler_xyz(q).dtype == torch.float32
    assert Q.quat_to_matrix(q).shape == (2, 3, 15, 3, 3)


def test_damped_rates():
    g = torch.Generator().manual_seed(5)
    n = 4096
    e = (torch.rand(n, 3, generator=g, dtype=D) - 0.5) * 2 * math.pi
    e[:, 1] = torch.linspace(-math.pi, math.pi, n, dtype=D)
    w = torch.randn(n, 3, generator=g, dtype=D)
    exact = Q.local_angvel_to_euler_xyz_rates(e, w)
    damped = Q.local_angvel_to_euler_xyz_rates(e, w, damping=0.1, singular_cos=0.1)
    far = torch.cos(e[:, 1]).abs() >= 0.1
    torch.testing.assert_close(damped[far], exact[far])
    torch.testing.assert_close(damped[:, 1], exact[:, 1])
    # bounded: with damping = singular_cos, |rate| <~ 1.5 |w| / singular_cos (the exact gain at the threshold)
    assert float((damped.norm(dim=-1) / w.norm(dim=-1)).max()) < 1.5 / 0.1 + 1.0
    assert float((exact.norm(dim=-1) / w.norm(dim=-1)).max()) > 100.0
    # continuous across the threshold
    b0 = math.acos(0.1)
    ee = torch.tensor([[0.2, b0 - 1e-9, 0.4], [0.2, b0 + 1e-9, 0.4]], dtype=D)
    ww = torch.tensor([[0.3, -0.7, 1.1]] * 2, dtype=D)
    r = Q.local_angvel_to_euler_xyz_rates(ee, ww, damping=0.1)
    torch.testing.assert_close(r[0], r[1], atol=1e-6, rtol=0)


def test_quat_to_matrix_rounds_as_the_entry_formula():
    """The table form of quat_to_matrix equals the entry-by-entry formula bit for bit (float32 and float64, unit and
    non-unit quaternions), so swapping it in changed no observation."""

    def entries(q):
        x, y, z, w = q.unbind(-1)
        xx, yy, zz, xy, xz, yz, wx, wy, wz = x * x, y * y, z * z, x * y, x * z, y * z, w * x, w * y, w * z
        rows = (
            torch.stack((1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)), dim=-1),
            torch.stack((2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)), dim=-1),
            torch.stack((2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)), dim=-1),
        )
        return torch.stack(rows, dim=-2)

    g = torch.Generator().manual_seed(11)
    for dtype in (torch.float32, torch.float64):
        q = torch.randn(4000, 15, 4, generator=g, dtype=dtype) * 3.0
        assert torch.equal(Q.quat_to_matrix(q), entries(q))
        u = q / q.norm(dim=-1, keepdim=True)
        assert torch.equal(Q.quat_to_matrix(u), entries(u))
