"""Quaternion and rotation math in torch, batched over leading dimensions.

Conventions (binding for the whole project):
- quaternions are **xyzw** (poselib / Isaac Gym order) everywhere in our code; MuJoCo's **wxyz** appears only at
  the MuJoCo boundary, converted with `wxyz_to_xyzw` / `xyzw_to_wxyz`;
- Hamilton product, active rotations: `quat_rotate(q, v)` = R(q) v, and `quat_mul(a, b)` is the rotation
  "first b, then a" (R(a ⊗ b) = R(a) R(b));
- every function works on any leading batch shape `...`, any device and any float dtype (float32 by default in
  the project, tests use float64), and never loops in Python over batch elements;
- angles in radians; 3-DoF joints of the character are x, y, z hinges composed as intrinsic rotations
  q_local = Rx(a) ⊗ Ry(b) ⊗ Rz(c) (MuJoCo's composition of consecutive hinges): see the `euler_*` functions.

Shapes are written as (..., 4) for quaternions, (..., 3) for vectors, (...) for scalars per element.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = [
    "quat_mul",
    "quat_conjugate",
    "quat_inverse",
    "quat_normalize",
    "quat_identity",
    "quat_rotate",
    "quat_rotate_inverse",
    "quat_from_axis_angle",
    "quat_to_axis_angle",
    "exp_map_to_quat",
    "quat_to_exp_map",
    "quat_standardize",
    "slerp",
    "tan_norm",
    "heading",
    "heading_quat",
    "heading_quat_inv",
    "quat_to_matrix",
    "quat_from_matrix",
    "wxyz_to_xyzw",
    "xyzw_to_wxyz",
    "wrap_angle",
    "euler_xyz_to_quat",
    "quat_to_euler_xyz",
    "euler_xyz_rates_to_local_angvel",
    "local_angvel_to_euler_xyz_rates",
]

_EPS = 1e-9


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a ⊗ b of xyzw quaternions (..., 4) x (..., 4) -> (..., 4) (broadcasting)."""
    ax, ay, az, aw = a.unbind(-1)
    bx, by, bz, bw = b.unbind(-1)
    x = aw * bx + ax * bw + ay * bz - az * by
    y = aw * by - ax * bz + ay * bw + az * bx
    z = aw * bz + ax * by - ay * bx + az * bw
    w = aw * bw - ax * bx - ay * by - az * bz
    return torch.stack((x, y, z, w), dim=-1)


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    """Conjugate (..., 4) -> (..., 4); the inverse of a unit quaternion."""
    return torch.cat((-q[..., :3], q[..., 3:]), dim=-1)


def quat_inverse(q: torch.Tensor) -> torch.Tensor:
    """Inverse of a unit quaternion (..., 4) -> (..., 4) (alias of `quat_conjugate`)."""
    return quat_conjugate(q)


def quat_normalize(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (..., 4) -> (..., 4)."""
    return q / q.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def quat_identity(shape: tuple[int, ...] = (), device=None, dtype=torch.float32) -> torch.Tensor:
    """Identity quaternions of shape (*shape, 4): (0, 0, 0, 1)."""
    q = torch.zeros((*shape, 4), device=device, dtype=dtype)
    q[..., 3] = 1.0
    return q


def quat_standardize(q: torch.Tensor) -> torch.Tensor:
    """The representative with w >= 0 of each quaternion (..., 4) -> (..., 4)."""
    return torch.where(q[..., 3:4] < 0, -q, q)


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors: R(q) v, with q (..., 4) and v (..., 3) (broadcasting) -> (..., 3)."""
    u = q[..., :3]
    w = q[..., 3:4]
    u, v = torch.broadcast_tensors(u, v)
    w = w.expand(u.shape[:-1] + (1,))
    t = 2.0 * torch.linalg.cross(u, v, dim=-1)
    return v + w * t + torch.linalg.cross(u, t, dim=-1)


def quat_rotate_inverse(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors by the inverse: R(q)ᵀ v, with q (..., 4) and v (..., 3) -> (..., 3)."""
    return quat_rotate(quat_conjugate(q), v)


def quat_from_axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Quaternion of a rotation by `angle` (...) about `axis` (..., 3) (normalised here) -> (..., 4)."""
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    half = 0.5 * angle.unsqueeze(-1)
    return torch.cat((axis * torch.sin(half), torch.cos(half)), dim=-1)


def quat_to_axis_angle(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis (..., 3) and angle (...) in [0, π] of unit quaternions (..., 4).

    The axis is (1, 0, 0) for (near-)identity rotations.
    """
    q = quat_standardize(q)
    v = q[..., :3]
    s = v.norm(dim=-1)
    angle = 2.0 * torch.atan2(s, q[..., 3])
    small = s < 1e-12
    default = torch.zeros_like(v)
    default[..., 0] = 1.0
    axis = torch.where(small.unsqueeze(-1), default, v / s.clamp_min(1e-12).unsqueeze(-1))
    return axis, angle


def exp_map_to_quat(e: torch.Tensor) -> torch.Tensor:
    """Rotation vector (axis * angle) (..., 3) -> unit quaternion (..., 4)."""
    angle = e.norm(dim=-1, keepdim=True)
    small = angle < 1e-6
    # sin(θ/2)/θ, with its Taylor expansion near 0
    safe = torch.where(small, torch.ones_like(angle), angle)
    k = torch.where(small, 0.5 - angle * angle / 48.0, torch.sin(0.5 * safe) / safe)
    return torch.cat((e * k, torch.cos(0.5 * angle)), dim=-1)


def quat_to_exp_map(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (..., 4) -> rotation vector (..., 3), angle in [0, π]."""
    q = quat_standardize(q)
    v = q[..., :3]
    s = v.norm(dim=-1, keepdim=True)
    w = q[..., 3:4]
    angle = 2.0 * torch.atan2(s, w)
    small = s < 1e-6
    k = torch.where(small, 2.0 / w.clamp_min(_EPS), angle / s.clamp_min(1e-12))
    return v * k


def slerp(q0: torch.Tensor, q1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Spherical interpolation from q0 (t=0) to q1 (t=1) along the shorter arc (hemisphere correction).

    q0, q1: (..., 4); t: a float or a tensor broadcastable to q0.shape[:-1] (one blend per quaternion; pass
    (n, 1) to share one blend over the bodies of (n, 15, 4)). Returns (..., 4), unit length.
    """
    t = torch.as_tensor(t, dtype=q0.dtype, device=q0.device).unsqueeze(-1)
    cos = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(cos < 0, -q1, q1)
    cos = cos.abs().clamp(max=1.0)
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    near = sin < 1e-6
    safe_sin = torch.where(near, torch.ones_like(sin), sin)
    w0 = torch.where(near, 1.0 - t, torch.sin((1.0 - t) * theta) / safe_sin)
    w1 = torch.where(near, t, torch.sin(t * theta) / safe_sin)
    return quat_normalize(w0 * q0 + w1 * q1)


def tan_norm(q: torch.Tensor) -> torch.Tensor:
    """Tangent-normal encoding (..., 4) -> (..., 6): [R(q) x̂, R(q) ẑ] (spec §3)."""
    x = torch.zeros(q.shape[:-1] + (3,), dtype=q.dtype, device=q.device)
    z = torch.zeros_like(x)
    x[..., 0] = 1.0
    z[..., 2] = 1.0
    return torch.cat((quat_rotate(q, x), quat_rotate(q, z)), dim=-1)


def heading(q: torch.Tensor) -> torch.Tensor:
    """Heading angle (...) of (..., 4): atan2 of the y and x components of R(q) x̂."""
    x, y, z, w = q.unbind(-1)
    # first column of R(q)
    r00 = 1.0 - 2.0 * (y * y + z * z)
    r10 = 2.0 * (x * y + w * z)
    return torch.atan2(r10, r00)


def _yaw_quat(angle: torch.Tensor) -> torch.Tensor:
    half = 0.5 * angle
    zeros = torch.zeros_like(angle)
    return torch.stack((zeros, zeros, torch.sin(half), torch.cos(half)), dim=-1)


def heading_quat(q: torch.Tensor) -> torch.Tensor:
    """The yaw-only rotation H (..., 4) about z by heading(q)."""
    return _yaw_quat(heading(q))


def heading_quat_inv(q: torch.Tensor) -> torch.Tensor:
    """H⁻¹ (..., 4): the rotation about z by −heading(q)."""
    return _yaw_quat(-heading(q))


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrix (..., 3, 3) of unit quaternions (..., 4); R @ v == quat_rotate(q, v).

    R = I + C·(q qᵀ): each entry is the identity's plus ±2 times two products q_i q_j (e.g. R_00 = 1 − 2(yy + zz),
    R_01 = 2(xy − wz)), summed over the 16 products with a constant ±2/0 table. Scaling by 2 is exact and the other
    14 terms are exact zeros, so this rounds exactly as the entry-by-entry formula does (a test compares them bit
    for bit) in about 10 tensor ops instead of 40: the env computes it every step for every body."""
    qq = (q.unsqueeze(-1) * q.unsqueeze(-2)).flatten(-2)  # (..., 16): q_i q_j, i and j over x, y, z, w
    coeff, eye = _quat_to_matrix_consts(q.device, q.dtype)  # (9, 16), (9,)
    return ((qq.unsqueeze(-2) * coeff).sum(-1) + eye).unflatten(-1, (3, 3))


@functools.lru_cache(maxsize=32)
def _quat_to_matrix_consts(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The coefficient table (9, 16) and the flat identity (9,) of `quat_to_matrix`, once per device and dtype."""
    coeff = torch.tensor(_quat_to_matrix_coeff(), dtype=dtype, device=device)
    eye = torch.eye(3, dtype=dtype, device=device).reshape(9)
    return coeff, eye


def _quat_to_matrix_coeff() -> list[list[float]]:
    """(9, 16): R's entries (row-major) as ±2 times products q_i q_j (index 4i + j, xyzw order)."""
    x, y, z, w = range(4)
    terms = (
        ((-2, y, y), (-2, z, z)),
        ((2, x, y), (-2, w, z)),
        ((2, x, z), (2, w, y)),
        ((2, x, y), (2, w, z)),
        ((-2, x, x), (-2, z, z)),
        ((2, y, z), (-2, w, x)),
        ((2, x, z), (-2, w, y)),
        ((2, y, z), (2, w, x)),
        ((-2, x, x), (-2, y, y)),
    )
    rows = []
    for entry in terms:
        row = [0.0] * 16
        for c, i, j in entry:
            row[4 * i + j] = float(c)
        rows.append(row)
    return rows


def quat_from_matrix(m: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (..., 4), w >= 0, of rotation matrices (..., 3, 3) (branch-free Shepperd method)."""
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    cands = torch.stack(
        (
            torch.stack(
                (
                    1 + m00 - m11 - m22,
                    m[..., 1, 0] + m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 2, 1] - m[..., 1, 2],
                ),
                -1,
            ),
            torch.stack(
                (
                    m[..., 1, 0] + m[..., 0, 1],
                    1 - m00 + m11 - m22,
                    m[..., 2, 1] + m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                ),
                -1,
            ),
            torch.stack(
                (
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 2, 1] + m[..., 1, 2],
                    1 - m00 - m11 + m22,
                    m[..., 1, 0] - m[..., 0, 1],
                ),
                -1,
            ),
            torch.stack(
                (
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                    1 + m00 + m11 + m22,
                ),
                -1,
            ),
        ),
        dim=-2,
    )  # (..., 4 candidates, 4): candidate k has component k equal to 4 q_k^2
    diag = torch.stack((cands[..., 0, 0], cands[..., 1, 1], cands[..., 2, 2], cands[..., 3, 3]), -1)
    best = diag.argmax(-1, keepdim=True)
    q = torch.gather(cands, -2, best.unsqueeze(-1).expand(best.shape[:-1] + (1, 4))).squeeze(-2)
    return quat_standardize(quat_normalize(q))


def wxyz_to_xyzw(q: torch.Tensor) -> torch.Tensor:
    """MuJoCo order (..., 4) w,x,y,z -> our order x,y,z,w. Works on numpy arrays too."""
    if isinstance(q, torch.Tensor):
        return torch.cat((q[..., 1:], q[..., :1]), dim=-1)
    return q[..., [1, 2, 3, 0]]


def xyzw_to_wxyz(q: torch.Tensor) -> torch.Tensor:
    """Our order (..., 4) x,y,z,w -> MuJoCo order w,x,y,z. Works on numpy arrays too."""
    if isinstance(q, torch.Tensor):
        return torch.cat((q[..., 3:], q[..., :3]), dim=-1)
    return q[..., [3, 0, 1, 2]]


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    """Angles wrapped to [-π, π)."""
    return torch.remainder(a + math.pi, 2.0 * math.pi) - math.pi


# ---------------------------------------------------------------------------------------------------------
# intrinsic XYZ Euler angles: the 3-hinge joints of the character (q = Rx(a) Ry(b) Rz(c))


def _axis_quat(angle: torch.Tensor, k: int) -> torch.Tensor:
    half = 0.5 * angle
    parts = [torch.zeros_like(angle)] * 3 + [torch.cos(half)]
    parts[k] = torch.sin(half)
    return torch.stack(parts, dim=-1)


def euler_xyz_to_quat(e: torch.Tensor) -> torch.Tensor:
    """Intrinsic XYZ Euler angles (..., 3) = (a, b, c) -> q = Rx(a) ⊗ Ry(b) ⊗ Rz(c) (..., 4).

    This is how MuJoCo composes consecutive x, y, z hinges of one body.
    """
    qa = _axis_quat(e[..., 0], 0)
    qb = _axis_quat(e[..., 1], 1)
    qc = _axis_quat(e[..., 2], 2)
    return quat_mul(quat_mul(qa, qb), qc)


def _limit_violation(e: torch.Tensor, lower, upper) -> torch.Tensor:
    v = torch.zeros_like(e)
    if lower is not None:
        v = v + (lower - e).clamp_min(0.0)
    if upper is not None:
        v = v + (e - upper).clamp_min(0.0)
    return v


def _best_wrap(e: torch.Tensor, lower, upper) -> torch.Tensor:
    """Per component, of e, e - 2π, e + 2π the one with the least limit violation (ties: e)."""
    if lower is None and upper is None:
        return e
    best = e
    best_v = _limit_violation(e, lower, upper)
    for shift in (-2.0 * math.pi, 2.0 * math.pi):
        cand = e + shift
        v = _limit_violation(cand, lower, upper)
        better = v < best_v - 1e-12
        best = torch.where(better, cand, best)
        best_v = torch.where(better, v, best_v)
    return best


def quat_to_euler_xyz(
    q: torch.Tensor,
    lower: torch.Tensor | None = None,
    upper: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unit quaternions (..., 4) -> intrinsic XYZ Euler angles (..., 3) with Rx(a) Ry(b) Rz(c) = R(q).

    Every rotation has two solutions, (a, b, c) and (a ± π, π − b, c ± π). With `lower` / `upper` (tensors
    broadcastable to (..., 3), radians, e.g. one joint's hinge limits) the solution with the least total limit
    violation is returned (each angle also shifted by ±2π when that violates less); ties and no limits give the
    solution with |b| <= π/2. At gimbal lock (|cos b| < 1e-6) a is set to 0 (clamped into the limits) and c takes
    the remaining rotation. Angles are otherwise in [-π, π].
    """
    m = quat_to_matrix(quat_normalize(q))
    r12 = m[..., 1, 2]
    r22 = m[..., 2, 2]
    cb_abs = torch.sqrt(r12 * r12 + r22 * r22)
    a1 = torch.atan2(-r12, r22)
    lock = cb_abs < 1e-6
    a_lock = torch.zeros_like(a1)
    if lower is not None or upper is not None:
        lo = lower[..., 0] if lower is not None else None
        hi = upper[..., 0] if upper is not None else None
        if lo is not None:
            a_lock = torch.maximum(a_lock, torch.as_tensor(lo, dtype=a1.dtype, device=a1.device).expand_as(a1))
        if hi is not None:
            a_lock = torch.minimum(a_lock, torch.as_tensor(hi, dtype=a1.dtype, device=a1.device).expand_as(a1))
    a1 = torch.where(lock, a_lock, a1)
    a2 = torch.where(lock, a1, wrap_angle(a1 + math.pi))

    def solve_bc(a: torch.Tensor) -> torch.Tensor:
        # M = Rx(-a) R = Ry(b) Rz(c) = [[cb cc, -cb sc, sb], [sc, cc, 0], [-sb cc, sb sc, cb]]
        ca, sa = torch.cos(a), torch.sin(a)
        m02 = m[..., 0, 2]
        m10 = ca * m[..., 1, 0] + sa * m[..., 2, 0]
        m11 = ca * m[..., 1, 1] + sa * m[..., 2, 1]
        m22 = -sa * m[..., 1, 2] + ca * m[..., 2, 2]
        b = torch.atan2(m02, m22)
        c = torch.atan2(m10, m11)
        return torch.stack((a, b, c), dim=-1)

    e1 = solve_bc(a1)
    if lower is None and upper is None:
        return e1
    e2 = solve_bc(a2)
    e1 = _best_wrap(e1, lower, upper)
    e2 = _best_wrap(e2, lower, upper)
    v1 = _limit_violation(e1, lower, upper).sum(-1)
    v2 = _limit_violation(e2, lower, upper).sum(-1)
    return torch.where((v2 < v1 - 1e-9).unsqueeze(-1), e2, e1)


def euler_xyz_rates_to_local_angvel(e: torch.Tensor, e_dot: torch.Tensor) -> torch.Tensor:
    """Hinge rates (..., 3) at Euler angles e (..., 3) -> angular velocity (..., 3) of the child relative to the
    parent, expressed in the child frame: ω = Rz(c)ᵀRy(b)ᵀ[ȧ,0,0] + Rz(c)ᵀ[0,ḃ,0] + [0,0,ċ]."""
    b, c = e[..., 1], e[..., 2]
    cb, sb = torch.cos(b), torch.sin(b)
    cc, sc = torch.cos(c), torch.sin(c)
    ad, bd, cd = e_dot.unbind(-1)
    wx = cb * cc * ad + sc * bd
    wy = -cb * sc * ad + cc * bd
    wz = sb * ad + cd
    return torch.stack((wx, wy, wz), dim=-1)


def local_angvel_to_euler_xyz_rates(
    e: torch.Tensor, w: torch.Tensor, damping: float = 0.0, singular_cos: float = 0.1
) -> torch.Tensor:
    """Inverse of `euler_xyz_rates_to_local_angvel`: child-frame relative angular velocity w (..., 3) at Euler
    angles e (..., 3) -> hinge rates (ȧ, ḃ, ċ) (..., 3).

    The map's determinant is cos b, so near gimbal lock (b -> ±π/2) exact rates grow like |w| / |cos b|.
    damping = 0 (default): the exact inverse; at |cos b| < 1e-6 the minimum-norm least-squares solution (the
    component of w the hinges cannot produce is dropped; ȧ and ċ share the z rate).
    damping > 0: where |cos b| < singular_cos, (ȧ, ċ) are the damped least-squares solution with
    λ² = damping² · (1 − (cos b / singular_cos)²) (continuous, exact where |cos b| >= singular_cos), which bounds
    them at the price of not reproducing w exactly there; ḃ is always exact. With damping = singular_cos the
    gain |ȧ| / |w| never exceeds 1 / singular_cos, its exact value at the threshold (|ȧ| + |ċ| <~ 1.5 |w| / s).
    """
    b, c = e[..., 1], e[..., 2]
    cb, sb = torch.cos(b), torch.sin(b)
    cc, sc = torch.cos(c), torch.sin(c)
    wx, wy, wz = w.unbind(-1)
    # in the frame rotated by Rz(c) the map is [[cb, 0, 0], [0, 1, 0], [sb, 0, 1]] acting on (ȧ, ḃ, ċ)
    p = cc * wx - sc * wy
    bd = sc * wx + cc * wy
    lock = cb.abs() < 1e-6
    safe_cb = torch.where(lock, torch.ones_like(cb), cb)
    ad = torch.where(lock, 0.5 * sb * wz, p / safe_cb)
    cd = torch.where(lock, 0.5 * wz, wz - sb * ad)
    if damping > 0.0:
        lam2 = damping**2 * (1.0 - (cb / singular_cos) ** 2).clamp(0.0, 1.0)
        k = 1.0 + lam2
        det = (k * k - sb * sb).clamp_min(1e-30)
        rhs_a = cb * p + sb * wz
        ad_d = (k * rhs_a - sb * wz) / det
        cd_d = (k * wz - sb * rhs_a) / det
        damped = lam2 > 0
        ad = torch.where(damped, ad_d, ad)
        cd = torch.where(damped, cd_d, cd)
    return torch.stack((ad, bd, cd), dim=-1)
