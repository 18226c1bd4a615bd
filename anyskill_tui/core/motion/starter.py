"""Procedural starter motions: keyframed joint-angle curves made physically plausible by construction.

Authored by this project (code, not data). Each clip is built in four steps:

1. **Angles.** Hinge angles per DoF (radians, the character's 28 DoFs) from keyframes with smooth per-segment
   easing (cosine, ease-in, ease-out), plus root pitch/roll/yaw; walking forward uses a footstep plan and
   analytic two-link leg IK instead. Every angle is clamped into `tables.DOFS` limits.
2. **Feet.** For each foot with a "flat" weight the ankle is solved so that the foot sole is level (keeping the
   foot's heading), blended with the keyframed ankle (heel raise, pointed toes).
3. **Balance** (optional, smooth weight per frame). A "hip strategy": the same offset is added to both hips'
   x and y hinges (legs lean, trunk keeps its pose) so the centre of mass lies above the support centre (a
   smooth blend of the stance feet's sole centres). Solved by Newton steps with a finite-difference Jacobian.
4. **Ground and planted feet.** Root height: each frame, the lowest foot-box corner of the stance feet touches
   z = 0; frames with no stance foot follow a ballistic arc (g = 9.81) between take-off and landing. Root x/y:
   integrated frame to frame so that each stance foot's contact pivot (the centroid of its sole corners within
   3 mm of its lowest corner) does not move horizontally between consecutive frames.

`generate_all()` returns the clips; `write_starter(out_dir)` writes `<name>.npy` files and `starter.yaml`.
Output is deterministic (float64 math on CPU, fixed keyframes, no randomness). Run
`python -m anyskill_tui.core.motion.starter [OUT_DIR]` or `anyskill motions starter [--out DIR]`;
`python -m anyskill_tui.core.motion.starter --previews [DIR]` renders the PNGs of docs/images/starter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.motion.clip import Clip, write_clip
from anyskill_tui.core.motion.fk import forward_kinematics
from anyskill_tui.core.motion.quat import (
    euler_xyz_to_quat,
    heading,
    quat_conjugate,
    quat_mul,
    quat_rotate,
    quat_to_euler_xyz,
)

__all__ = [
    "FPS",
    "GRAVITY",
    "STARTER_DIR",
    "ClipSpec",
    "foot_corners_local",
    "build_clip",
    "clip_specs",
    "generate_all",
    "write_starter",
]

FPS = 30
GRAVITY = 9.81
#: the checked-in starter set (configs/motions/starter/ and configs/motions/starter.yaml)
STARTER_DIR = Path(__file__).resolve().parents[3] / "configs" / "motions" / "starter"

FOOT_HALF = (0.0885, 0.045, 0.0275)
FOOT_CENTER = (0.045, 0.0, -0.0225)
RIGHT_FOOT = T.BODY_INDEX["right_foot"]
LEFT_FOOT = T.BODY_INDEX["left_foot"]
FEET = (RIGHT_FOOT, LEFT_FOOT)
DOF = {n: i for i, n in enumerate(T.DOF_NAMES)}
_LO, _HI = (torch.as_tensor(a) for a in T.dof_limits())
_DT = torch.float64
_PIVOT_TOL = 0.003


def foot_corners_local() -> np.ndarray:
    """(8, 3) corners of the foot box in the foot frame (first 4: the sole, z = -0.05)."""
    hx, hy, hz = FOOT_HALF
    cx, cy, cz = FOOT_CENTER
    pts = [(cx + sx * hx, cy + sy * hy, cz + sz * hz) for sz in (-1, 1) for sx in (-1, 1) for sy in (-1, 1)]
    return np.array(pts, dtype=np.float64)


_CORNERS = torch.as_tensor(foot_corners_local())
_SOLE_CENTER = torch.tensor((FOOT_CENTER[0], 0.0, FOOT_CENTER[2] - FOOT_HALF[2]), dtype=_DT)


# ---------------------------------------------------------------------------------------------------------
# keyframe curves


def _ease(u: np.ndarray, kind: str) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    if kind == "smooth":
        return 0.5 - 0.5 * np.cos(np.pi * u)
    if kind == "in":
        return u * u
    if kind == "out":
        return 1.0 - (1.0 - u) ** 2
    if kind == "linear":
        return u
    raise ValueError(f"unknown easing {kind!r}")


@dataclass
class Key:
    """A keyframe: time (s), pose (DoF name or root_pitch/root_roll/root_yaw -> degrees), easing into it."""

    t: float
    pose: dict[str, float]
    ease: str = "smooth"


ROOT_CHANNELS = ("root_roll", "root_pitch", "root_yaw")


def key_curves(times: np.ndarray, keys: list[Key]) -> np.ndarray:
    """(T, 31) radians: 28 DoFs then root roll, pitch, yaw, from keyframes.

    Each key is a full pose: channels a key does not name are 0. Before the first key the first pose holds,
    after the last the last; between keys the channel moves with the later key's easing.
    """
    names = list(T.DOF_NAMES) + list(ROOT_CHANNELS)
    for k in keys:
        unknown = set(k.pose) - set(names)
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}")
    vals = np.array([[math.radians(k.pose.get(n, 0.0)) for n in names] for k in keys])  # (K, 31)
    kt = np.array([k.t for k in keys])
    out = np.empty((len(times), len(names)))
    for i, t in enumerate(times):
        if t <= kt[0]:
            out[i] = vals[0]
            continue
        if t >= kt[-1]:
            out[i] = vals[-1]
            continue
        j = int(np.searchsorted(kt, t, side="right"))  # kt[j-1] <= t < kt[j]
        u = (t - kt[j - 1]) / (kt[j] - kt[j - 1])
        s = _ease(np.array(u), keys[j].ease)
        out[i] = vals[j - 1] + s * (vals[j] - vals[j - 1])
    return out


def intervals(times: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    """(T,) bool: True inside any [start, end) span."""
    m = np.zeros(len(times), dtype=bool)
    for a, b in spans:
        m |= (times >= a - 1e-9) & (times < b - 1e-9)
    return m


def ramp(times: np.ndarray, points: list[tuple[float, float]]) -> np.ndarray:
    """(T,) piecewise cosine-eased curve through (time, value) points (held constant outside)."""
    keys = [Key(t, {"root_roll": math.degrees(v)}) for t, v in points]
    return key_curves(times, keys)[:, T.NUM_DOFS]


def smooth_weights(mask: np.ndarray, width_s: float) -> np.ndarray:
    """Bool (T,) -> float (T,) in [0, 1], smoothed with a Hann window of `width_s` seconds ("nearest" edges)."""
    n = max(int(round(width_s * FPS)) | 1, 1)
    if n <= 1:
        return mask.astype(np.float64)
    w = np.hanning(n + 2)[1:-1]
    w /= w.sum()
    r = n // 2
    x = np.concatenate([np.full(r, mask[0]), mask, np.full(r, mask[-1])]).astype(np.float64)
    return np.convolve(x, w, mode="valid")


# ---------------------------------------------------------------------------------------------------------
# the spec of a clip and the solver


@dataclass
class ClipSpec:
    """What a starter clip is before it is made plausible.

    angles: (T, 31) radians (28 DoFs, root roll, pitch, yaw); stance: (T, 2) bool (right, left foot on the
    ground); flat: (T, 2) weight of the flat-foot ankle solution; balance: (T,) weight of the COM balance.
    """

    name: str
    text: str
    angles: np.ndarray
    stance: np.ndarray
    flat: np.ndarray
    balance: np.ndarray
    weight: float = 1.0
    support_width_s: float = 0.3
    support: np.ndarray | None = None  # (T, 2) explicit support weights (else smoothed stance)
    notes: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.angles.shape[0])


def _quat_axis(angle: torch.Tensor, k: int) -> torch.Tensor:
    half = 0.5 * angle
    parts = [torch.zeros_like(angle)] * 3 + [torch.cos(half)]
    parts[k] = torch.sin(half)
    return torch.stack(parts, dim=-1)


def _root_quat(rpy: torch.Tensor) -> torch.Tensor:
    """Root rotation Rz(yaw) Ry(pitch) Rx(roll) of (T, 3) roll, pitch, yaw."""
    return quat_mul(quat_mul(_quat_axis(rpy[:, 2], 2), _quat_axis(rpy[:, 1], 1)), _quat_axis(rpy[:, 0], 0))


def local_rotations(dofs: torch.Tensor, root_rpy: torch.Tensor) -> torch.Tensor:
    """(T, 15, 4) local rotations from (T, 28) hinge angles and (T, 3) root roll, pitch, yaw."""
    n = dofs.shape[0]
    rot = torch.zeros((n, T.NUM_BODIES, 4), dtype=_DT)
    rot[..., 3] = 1.0
    rot[:, 0] = _root_quat(root_rpy)
    for j in T.JOINTS:
        if j.num_dofs == 3:
            rot[:, j.body] = euler_xyz_to_quat(dofs[:, j.dof_start : j.dof_start + 3])
        else:
            rot[:, j.body] = _quat_axis(dofs[:, j.dof_start], 1)
    return rot


def _clamp(dofs: torch.Tensor) -> torch.Tensor:
    return torch.maximum(torch.minimum(dofs, _HI), _LO)


def _planted_heading(h: torch.Tensor, stance: np.ndarray | None) -> torch.Tensor:
    """Per foot heading (T,): during a stance phase the heading at the phase's first frame, else `h`."""
    if stance is None:
        return h
    out = h.clone()
    anchor = h[0]
    for t in range(h.shape[0]):
        if stance[t] and (t == 0 or not stance[t - 1]):
            anchor = h[t]
        if stance[t]:
            out[t] = anchor
    return out


def _flat_feet(
    dofs: torch.Tensor, root_rpy: torch.Tensor, flat: torch.Tensor, stance: np.ndarray | None = None
) -> torch.Tensor:
    """Replace each foot's ankle angles by the level-sole solution, blended by `flat` (T, 2).

    The level foot keeps its current heading, or during a stance phase the heading it landed with (a planted
    foot does not twist).
    """
    rot = local_rotations(dofs, root_rpy)
    _, grot = forward_kinematics(torch.zeros((dofs.shape[0], 3), dtype=_DT), rot)
    out = dofs.clone()
    for f, foot in enumerate(FEET):
        w = flat[:, f]
        if not bool((w > 0).any()):
            continue
        shin = grot[:, T.PARENT_INDICES[foot]]
        h = _planted_heading(heading(grot[:, foot]), None if stance is None else stance[:, f])
        want = _quat_axis(h, 2)  # level foot
        local = quat_mul(quat_conjugate(shin), want)
        j = next(j for j in T.JOINTS if j.body == foot)
        sl = slice(j.dof_start, j.dof_start + 3)
        e = quat_to_euler_xyz(local, _LO[sl], _HI[sl])
        e = torch.maximum(torch.minimum(e, _HI[sl]), _LO[sl])
        out[:, sl] = w[:, None] * e + (1.0 - w[:, None]) * dofs[:, sl]
    return out


_MASS: torch.Tensor | None = None
_IPOS: torch.Tensor | None = None


def _mass_props() -> tuple[torch.Tensor, torch.Tensor]:
    """Body masses (15,) and COM offsets in the body frames (15, 3), from the MuJoCo model."""
    global _MASS, _IPOS
    if _MASS is None:
        from anyskill_tui.core.character.model import load_model

        m = load_model()
        _MASS = torch.as_tensor(np.array(m.body_mass[1:]), dtype=_DT)
        _IPOS = torch.as_tensor(np.array(m.body_ipos[1:]), dtype=_DT)
    return _MASS, _IPOS


def center_of_mass(body_pos: torch.Tensor, body_rot: torch.Tensor) -> torch.Tensor:
    """(..., 3) centre of mass from FK body positions (..., 15, 3) and rotations (..., 15, 4)."""
    mass, ipos = _mass_props()
    com_b = body_pos + quat_rotate(body_rot, ipos.expand_as(body_pos))
    return (com_b * mass[:, None]).sum(-2) / mass.sum()


def _balance_error(dofs, root_rpy, flat, support_w, stance) -> tuple[torch.Tensor, torch.Tensor]:
    """COM minus support centre, horizontal (T, 2), and the dofs after the flat-foot fix."""
    fixed = _flat_feet(dofs, root_rpy, flat, stance)
    rot = local_rotations(fixed, root_rpy)
    pos, grot = forward_kinematics(torch.zeros((dofs.shape[0], 3), dtype=_DT), rot)
    com = center_of_mass(pos, grot)
    centers = torch.stack(
        [pos[:, f] + quat_rotate(grot[:, f], _SOLE_CENTER.expand(dofs.shape[0], 3)) for f in FEET], dim=1
    )  # (T, 2, 3)
    sw = support_w / support_w.sum(-1, keepdim=True).clamp_min(1e-9)
    support = (centers * sw[..., None]).sum(1)
    return (com - support)[:, :2], fixed


_HIP_X = (DOF["right_hip_x"], DOF["left_hip_x"])
_HIP_Y = (DOF["right_hip_y"], DOF["left_hip_y"])


def _with_offset(dofs: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    out = dofs.clone()
    for i in _HIP_X:
        out[:, i] = out[:, i] + delta[:, 0]
    for i in _HIP_Y:
        out[:, i] = out[:, i] + delta[:, 1]
    return _clamp(out)


def _balance(dofs, root_rpy, flat, support_w, weight, stance, iters: int = 6) -> torch.Tensor:
    """Hip-strategy balance: offsets (T, 2) added to both hips' (x, y) hinges, times `weight` (T,)."""
    delta = torch.zeros((dofs.shape[0], 2), dtype=_DT)
    eps = 1e-4
    for _ in range(iters):
        err, _ = _balance_error(_with_offset(dofs, delta), root_rpy, flat, support_w, stance)
        jac = torch.empty((dofs.shape[0], 2, 2), dtype=_DT)
        for k in range(2):
            d = delta.clone()
            d[:, k] += eps
            e2, _ = _balance_error(_with_offset(dofs, d), root_rpy, flat, support_w, stance)
            jac[:, :, k] = (e2 - err) / eps
        jt = jac.transpose(-1, -2)
        lhs = jt @ jac + 1e-6 * torch.eye(2, dtype=_DT)
        step = torch.linalg.solve(lhs, (jt @ err.unsqueeze(-1))).squeeze(-1)
        delta = delta - step.clamp(-0.3, 0.3)
    return _with_offset(dofs, delta * weight[:, None])


def _ground_and_plant(rot: torch.Tensor, stance: np.ndarray) -> torch.Tensor:
    """Root positions (T, 3): stance feet on the floor, pivots planted, ballistic flight."""
    n = rot.shape[0]
    pos, grot = forward_kinematics(torch.zeros((n, 3), dtype=_DT), rot)
    corners = torch.stack(
        [pos[:, f, None, :] + quat_rotate(grot[:, f, None, :].expand(n, 8, 4), _CORNERS.expand(n, 8, 3)) for f in FEET],
        dim=1,
    )  # (T, 2, 8, 3) relative to the root
    cz = corners[..., 2]
    foot_min = cz.min(-1).values  # (T, 2)
    st = torch.as_tensor(stance)
    big = torch.full_like(foot_min, 1e9)
    ground = torch.where(st, foot_min, big).min(-1).values  # (T,)
    contact = st.any(-1).numpy()
    com_rel = center_of_mass(pos, grot).numpy()  # (T, 3) relative to the root
    z = -ground.numpy().copy()
    # ballistic flight of the centre of mass between the last and the first contact frames
    flights = []
    t = 0
    while t < n:
        if contact[t]:
            t += 1
            continue
        a, b = t - 1, t
        while b < n and not contact[b]:
            b += 1
        if a < 0 or b >= n:
            raise ValueError("a flight phase must start and end in contact")
        flights.append((a, b))
        dur = (b - a) / FPS
        za, zb = z[a] + com_rel[a, 2], z[b] + com_rel[b, 2]
        v0 = (zb - za + 0.5 * GRAVITY * dur * dur) / dur
        for k in range(a + 1, b):
            tau = (k - a) / FPS
            z[k] = za + v0 * tau - 0.5 * GRAVITY * tau * tau - com_rel[k, 2]
        t = b
    # planted pivots: root xy increments that keep each continuing stance foot's pivot still
    xy = np.zeros((n, 2))
    com_vel = np.zeros(2)
    piv_local = []
    for f in range(2):
        near = (cz[:, f] - foot_min[:, f, None]) < _PIVOT_TOL  # (T, 8)
        w = near.to(_DT)
        piv_local.append((corners[:, f] * w[..., None]).sum(1) / w.sum(1, keepdim=True))  # (T, 3) rel. root
    for k in range(1, n):
        corr = []
        for f in range(2):
            if stance[k, f] and stance[k - 1, f]:
                # the pivot chosen at frame k, as a rigid point of the foot, seen at frame k-1
                foot = FEET[f]
                p_local = quat_rotate(quat_conjugate(grot[k, foot]), piv_local[f][k] - pos[k, foot])
                prev = pos[k - 1, foot] + quat_rotate(grot[k - 1, foot], p_local)
                corr.append((prev[:2] - piv_local[f][k][:2]).numpy())
        if corr:
            xy[k] = xy[k - 1] + np.mean(corr, axis=0)
            continue
        # flight (and the landing frame): the centre of mass keeps its take-off horizontal velocity
        if contact[k - 1] and k >= 3:
            com_vel = ((xy[k - 1] + com_rel[k - 1, :2]) - (xy[k - 3] + com_rel[k - 3, :2])) / 2.0
        com_prev = xy[k - 1] + com_rel[k - 1, :2]
        xy[k] = com_prev + com_vel - com_rel[k, :2]
    return torch.as_tensor(np.concatenate([xy, z[:, None]], axis=1))


def solve_spec(spec: ClipSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make a spec plausible: returns root_pos (T, 3), local_rot (T, 15, 4) and the final hinge angles (T, 28)."""
    ang = torch.as_tensor(spec.angles, dtype=_DT)
    dofs = _clamp(ang[:, : T.NUM_DOFS])
    rpy = ang[:, T.NUM_DOFS :]
    flat = torch.as_tensor(spec.flat, dtype=_DT)
    if (spec.balance > 0).any():
        if spec.support is not None:
            support = np.asarray(spec.support, dtype=np.float64).copy()
        else:
            support = np.stack([smooth_weights(spec.stance[:, f], spec.support_width_s) for f in range(2)], axis=1)
        support[support.sum(1) < 1e-6] = 1.0
        dofs = _balance(
            dofs, rpy, flat, torch.as_tensor(support), torch.as_tensor(spec.balance, dtype=_DT), spec.stance
        )
    dofs = _clamp(_flat_feet(dofs, rpy, flat, spec.stance))
    rot = local_rotations(dofs, rpy)
    root = _ground_and_plant(rot, spec.stance)
    return root.numpy(), rot.numpy(), dofs.numpy()


def build_clip(spec: ClipSpec) -> Clip:
    """The plausible `Clip` of a spec (root starts at x = y = 0)."""
    root, rot, _ = solve_spec(spec)
    return Clip(rot.astype(np.float32), root.astype(np.float32), FPS, spec.name)


# ---------------------------------------------------------------------------------------------------------
# the clips


def _times(duration: float) -> np.ndarray:
    return np.arange(int(round(duration * FPS)) + 1) / FPS


def _spec(name, text, keys, duration, stance=None, flat=None, balance=1.0, extra=None, weight=1.0) -> ClipSpec:
    t = _times(duration)
    ang = key_curves(t, keys)
    if extra is not None:
        ang = ang + extra(t)
    n = len(t)
    st = np.ones((n, 2), dtype=bool) if stance is None else stance(t)
    fl = np.ones((n, 2)) if flat is None else flat(t)
    bal = np.full(n, float(balance)) if np.isscalar(balance) else balance(t)
    return ClipSpec(name, text, ang, st, fl, bal, weight=weight)


def _channels(t: np.ndarray, **curves: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    names = list(T.DOF_NAMES) + list(ROOT_CHANNELS)
    out = np.zeros((len(t), len(names)))
    for k, f in curves.items():
        out[:, names.index(k)] = f(t)
    return out


def _deg(x):
    return np.radians(x)


#: arms relaxed at the sides, elbows slightly bent
ARMS_RELAXED = {
    "right_shoulder_x": -6,
    "left_shoulder_x": 6,
    "right_elbow": -12,
    "left_elbow": -12,
}


def idle() -> ClipSpec:
    """Standing idle: breathing (trunk, shoulders) and a slow ankle sway; loops (4 s)."""
    d = 4.0
    w = 2 * np.pi / d

    def extra(t):
        return _channels(
            t,
            abdomen_y=lambda t: _deg(1.5 * np.sin(w * t)),
            neck_y=lambda t: _deg(-1.0 * np.sin(w * t)),
            right_shoulder_x=lambda t: _deg(-1.5 * (1 - np.cos(w * t))),
            left_shoulder_x=lambda t: _deg(1.5 * (1 - np.cos(w * t))),
            right_shoulder_y=lambda t: _deg(2.0 * np.sin(w * t + 0.5)),
            left_shoulder_y=lambda t: _deg(2.0 * np.sin(w * t + 0.5)),
            root_pitch=lambda t: _deg(1.0 * np.sin(w * t)),
            right_hip_y=lambda t: _deg(-1.0 * np.sin(w * t)),
            left_hip_y=lambda t: _deg(-1.0 * np.sin(w * t)),
            right_hip_x=lambda t: _deg(1.2 * np.sin(w * t + 1.0)),
            left_hip_x=lambda t: _deg(1.2 * np.sin(w * t + 1.0)),
            root_roll=lambda t: _deg(-1.2 * np.sin(w * t + 1.0)),
        )

    keys = [Key(0.0, dict(ARMS_RELAXED, right_knee=3, left_knee=3, right_hip_y=-2, left_hip_y=-2))]
    return _spec("stand_idle", "stand idle", keys, d, balance=0.0, extra=extra)


def walk_in_place() -> ClipSpec:
    """Marching on the spot: alternate knee lifts, arms swinging opposite; 4 steps (3 s)."""
    d = 3.0
    step = 0.6
    t0 = 0.3
    base = dict(ARMS_RELAXED)
    keys = [Key(0.0, base), Key(t0, base)]
    lift = {"hip_y": -45, "knee": 90}
    for i in range(4):
        side, other = ("right", "left") if i % 2 == 0 else ("left", "right")
        up = dict(base)
        up.update({f"{side}_{k}": v for k, v in lift.items()})
        up[f"{other}_shoulder_y"] = -25
        up[f"{side}_shoulder_y"] = 20
        up[f"{other}_elbow"] = -35
        up[f"{side}_elbow"] = -20
        ts = t0 + i * step
        keys.append(Key(ts + 0.3, up))
        keys.append(Key(ts + step, base))
    swing = [(t0 + i * step + 0.03, t0 + (i + 1) * step - 0.03) for i in range(4)]

    def stance(t):
        r = ~intervals(t, swing[0::2])
        le = ~intervals(t, swing[1::2])
        return np.stack([r, le], axis=1)

    spec = _spec("walk_in_place", "walk in place", keys, d, stance=stance)
    spec.support_width_s = 0.35
    return spec


def squat() -> ClipSpec:
    """A deep squat and back up, arms reaching forward for balance (3 s)."""
    down = {
        "root_pitch": 30,
        "abdomen_y": 15,
        "neck_y": -25,
        "right_hip_y": -105,
        "left_hip_y": -105,
        "right_knee": 115,
        "left_knee": 115,
        "right_shoulder_y": -85,
        "left_shoulder_y": -85,
        "right_elbow": -10,
        "left_elbow": -10,
    }
    keys = [Key(0.0, ARMS_RELAXED), Key(0.3, ARMS_RELAXED), Key(1.3, down), Key(1.7, down), Key(2.7, ARMS_RELAXED)]
    return _spec("squat", "squat down and stand up", keys, 3.0)


def raise_right_arm() -> ClipSpec:
    """Raise the right arm forward and up overhead, hold, lower it (3 s)."""
    up = dict(ARMS_RELAXED, right_shoulder_y=-165, right_shoulder_x=-10, right_elbow=-8, neck_y=-8)
    keys = [Key(0.0, ARMS_RELAXED), Key(0.3, ARMS_RELAXED), Key(1.3, up), Key(1.9, up), Key(2.8, ARMS_RELAXED)]
    return _spec("raise_right_arm", "raise one arm", keys, 3.0)


def raise_both_arms() -> ClipSpec:
    """Raise both arms sideways and up overhead, hold, lower them (3 s)."""
    up = {
        "right_shoulder_x": -160,
        "left_shoulder_x": 160,
        "right_shoulder_z": 0,
        "right_elbow": -8,
        "left_elbow": -8,
        "neck_y": -10,
    }
    keys = [Key(0.0, ARMS_RELAXED), Key(0.3, ARMS_RELAXED), Key(1.4, up), Key(2.0, up), Key(2.9, ARMS_RELAXED)]
    return _spec("raise_both_arms", "raise both arms", keys, 3.0)


def bow() -> ClipSpec:
    """A bow at a right angle: trunk pitched ~90 deg from the hips, hold, back up (3 s)."""
    down = {
        "root_pitch": 45,
        "right_hip_y": -45,
        "left_hip_y": -45,
        "abdomen_y": 45,
        "neck_y": 5,
        "right_shoulder_y": -30,
        "left_shoulder_y": -30,
        "right_shoulder_x": -4,
        "left_shoulder_x": 4,
        "right_elbow": -10,
        "left_elbow": -10,
    }
    keys = [Key(0.0, ARMS_RELAXED), Key(0.3, ARMS_RELAXED), Key(1.2, down), Key(1.9, down), Key(2.8, ARMS_RELAXED)]
    return _spec("bow", "bow at right angle", keys, 3.0)


def front_kick() -> ClipSpec:
    """Weight onto the left leg, chamber the right knee, snap a front kick, re-chamber, step down (3 s)."""
    guard = {
        "right_shoulder_y": -45,
        "left_shoulder_y": -45,
        "right_shoulder_x": -10,
        "left_shoulder_x": 10,
        "right_elbow": -100,
        "left_elbow": -100,
    }
    ready = dict(guard, left_knee=6, left_hip_y=-3, right_knee=6, right_hip_y=-3)
    single = dict(guard, left_knee=12, left_hip_y=-6)
    knee_up = dict(single, right_hip_y=-40, right_knee=85)
    chamber = dict(single, right_hip_y=-85, right_knee=110, right_ankle_y=20, abdomen_y=-8)
    kick = dict(single, right_hip_y=-90, right_knee=5, right_ankle_y=35, abdomen_y=-15, root_pitch=-5)
    keys = [
        Key(0.0, ARMS_RELAXED),
        Key(0.2, ARMS_RELAXED),
        Key(0.7, ready),
        Key(0.9, knee_up),
        Key(1.1, chamber),
        Key(1.35, kick, "out"),
        Key(1.6, chamber),
        Key(1.85, knee_up),
        Key(2.1, ready),
        Key(2.6, ARMS_RELAXED),
    ]
    lift = (0.72, 2.08)

    def stance(t):
        return np.stack([~intervals(t, [lift]), np.ones(len(t), dtype=bool)], axis=1)

    def flat(t):
        f = ramp(t, [(0.95, 1.0), (1.1, 0.0), (1.6, 0.0), (1.8, 1.0)])
        return np.stack([f, np.ones(len(t))], axis=1)

    spec = _spec("front_kick", "raise one leg and kick it forward", keys, 3.0, stance=stance, flat=flat)
    t = _times(3.0)
    right = ramp(t, [(0.2, 1.0), (0.68, 0.0), (2.12, 0.0), (2.6, 1.0)])
    spec.support = np.stack([right, np.ones(len(t))], axis=1)
    return spec


def crouch() -> ClipSpec:
    """Sink into a low crouch (knees deep, trunk forward, hands near the knees), hold, rise (3 s)."""
    low = {
        "root_pitch": 40,
        "abdomen_y": 20,
        "neck_y": -35,
        "right_hip_y": -115,
        "left_hip_y": -115,
        "right_knee": 135,
        "left_knee": 135,
        "right_shoulder_y": -45,
        "left_shoulder_y": -45,
        "right_shoulder_x": -12,
        "left_shoulder_x": 12,
        "right_elbow": -40,
        "left_elbow": -40,
    }
    keys = [Key(0.0, ARMS_RELAXED), Key(0.3, ARMS_RELAXED), Key(1.2, low), Key(2.1, low), Key(2.9, ARMS_RELAXED)]
    return _spec("crouch", "crouch down low", keys, 3.0)


def jump() -> ClipSpec:
    """A vertical jump: crouch with arms back, explosive extension onto the toes, flight, landing (2.7 s)."""
    stand = dict(ARMS_RELAXED)
    load = {
        "root_pitch": 30,
        "abdomen_y": 10,
        "neck_y": -20,
        "right_hip_y": -85,
        "left_hip_y": -85,
        "right_knee": 95,
        "left_knee": 95,
        "right_shoulder_y": 45,
        "left_shoulder_y": 45,
        "right_elbow": -10,
        "left_elbow": -10,
    }
    extend = {
        "right_ankle_y": 35,
        "left_ankle_y": 35,
        "right_shoulder_y": -150,
        "left_shoulder_y": -150,
        "right_elbow": -10,
        "left_elbow": -10,
        "neck_y": -5,
    }
    air = dict(
        extend,
        right_knee=20,
        left_knee=20,
        right_hip_y=-15,
        left_hip_y=-15,
        right_ankle_y=25,
        left_ankle_y=25,
        right_shoulder_y=-160,
        left_shoulder_y=-160,
    )
    land = dict(extend, right_ankle_y=25, left_ankle_y=25, right_shoulder_y=-90, left_shoulder_y=-90)
    absorb = dict(
        load,
        right_shoulder_y=-40,
        left_shoulder_y=-40,
        right_hip_y=-70,
        left_hip_y=-70,
        right_knee=80,
        left_knee=80,
        root_pitch=25,
    )
    t_off, t_land = 1.1, 1.5
    keys = [
        Key(0.0, stand),
        Key(0.25, stand),
        Key(0.85, load),
        Key(t_off, extend, "in"),
        Key(1.3, air),
        Key(t_land, land),
        Key(1.75, absorb, "out"),
        Key(2.6, stand),
    ]

    def stance(t):
        s = ~intervals(t, [(t_off + 1e-6, t_land)])
        return np.stack([s, s], axis=1)

    def flat(t):
        f = ramp(t, [(0.9, 1.0), (1.05, 0.0), (t_land + 0.02, 0.0), (t_land + 0.12, 1.0)])
        return np.stack([f, f], axis=1)

    def bal(t):
        return ramp(t, [(t_off, 1.0), (t_off + 0.1, 0.0), (t_land - 0.1, 0.0), (t_land, 1.0)])

    spec = _spec("jump", "jump up", keys, 2.7, stance=stance, flat=flat, balance=bal)
    spec.notes = {"takeoff": t_off, "landing": t_land}
    return spec


def turn_in_place() -> ClipSpec:
    """Turn 135 deg to the left on the spot in six small steps; the stance foot keeps its heading (3 s)."""
    d = 3.0
    t0, step, n_steps = 0.3, 0.4, 6
    per_step = 135.0 / n_steps
    t = _times(d)
    n = len(t)
    yaw = np.zeros(n)
    foot_yaw = np.zeros((n, 2))  # right, left (degrees, world)
    lift = np.zeros((n, 2))  # 0..1 swing lift profile
    swing_spans: list[list[tuple[float, float]]] = [[], []]
    phi = [0.0, 0.0]
    for i in range(n_steps):
        f = 1 if i % 2 == 0 else 0  # the left foot leads a left turn
        a, b = t0 + i * step, t0 + (i + 1) * step
        u = np.clip((t - a) / (b - a), 0, 1)
        s = 0.5 - 0.5 * np.cos(np.pi * u)
        s_foot = 0.5 - 0.5 * np.cos(np.pi * np.clip((u - 0.2) / 0.6, 0, 1))
        yaw_a = i * per_step
        inside = (t >= a) & (t < b)
        yaw = np.where(t >= a, yaw_a + per_step * s, yaw)
        target = (i + 1) * per_step + (per_step if f == 1 else 0.0)
        target = min(target, 135.0)
        foot_yaw[:, f] = np.where(t >= a, phi[f] + (target - phi[f]) * s_foot, foot_yaw[:, f])
        phi[f] = target
        lift[:, f] = np.where(inside, np.sin(np.pi * u) ** 0.6, lift[:, f])
        swing_spans[f].append((a + 0.02, b - 0.02))
    # hold final values after the last step
    hip_z = foot_yaw - yaw[:, None]
    ang = np.zeros((n, T.NUM_DOFS + 3))
    for k, v in ARMS_RELAXED.items():
        ang[:, DOF[k]] = math.radians(v)
    ang[:, T.NUM_DOFS + 2] = np.radians(yaw)
    for f, side in enumerate(("right", "left")):
        ang[:, DOF[f"{side}_hip_z"]] = np.radians(hip_z[:, f])
        ang[:, DOF[f"{side}_hip_y"]] = np.radians(-30 * lift[:, f])
        ang[:, DOF[f"{side}_knee"]] = np.radians(60 * lift[:, f])
    # swing legs rotate about the vertical through the hip: hip = Rz(yaw) Ry(flex) as x, y, z hinges
    for side in ("right", "left"):
        sl = slice(DOF[f"{side}_hip_x"], DOF[f"{side}_hip_x"] + 3)
        e = torch.as_tensor(ang[:, sl])
        q = quat_mul(_quat_axis(e[:, 2], 2), _quat_axis(e[:, 1], 1))
        ang[:, sl] = quat_to_euler_xyz(q, _LO[sl], _HI[sl]).numpy()
    ang[:, DOF["abdomen_z"]] = np.radians(np.clip(np.gradient(yaw, t) * 0.06, -10, 10))
    ang[:, DOF["neck_z"]] = np.radians(np.clip(np.gradient(yaw, t) * 0.08, -15, 15))
    stance = np.stack([~intervals(t, swing_spans[0]), ~intervals(t, swing_spans[1])], axis=1)
    flat = np.ones((n, 2))
    spec = ClipSpec("turn_in_place", "turn around in place", ang, stance, flat, np.ones(n))
    spec.support_width_s = 0.3
    return spec


# --- walking forward: footstep plan + two-link leg IK -------------------------------------------------------

THIGH = float(-T.LOCAL_TRANSLATION[T.BODY_INDEX["right_shin"], 2])
SHIN = float(-T.LOCAL_TRANSLATION[T.BODY_INDEX["right_foot"], 2])
ANKLE_HEIGHT = -(FOOT_CENTER[2] - FOOT_HALF[2])  # ankle above the sole when the foot is level (0.05)


def leg_ik(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hip x, hip y and knee angles (radians) that put the ankle at d (N, 3) from the hip, in the pelvis frame.

    The thigh is Rx(hx) Ry(hy), the knee a y hinge; the distance is clamped to the reachable range.
    """
    r = np.linalg.norm(d, axis=1)
    r = np.clip(r, abs(THIGH - SHIN) + 1e-6, THIGH + SHIN - 1e-6)
    cosk = (r * r - THIGH * THIGH - SHIN * SHIN) / (2 * THIGH * SHIN)
    k = np.arccos(np.clip(cosk, -1, 1))
    d = d / np.linalg.norm(d, axis=1, keepdims=True) * r[:, None]
    hx = np.arctan2(d[:, 1], -d[:, 2])
    rho = np.sqrt(d[:, 1] ** 2 + d[:, 2] ** 2)
    px = -SHIN * np.sin(k)
    pz = -THIGH - SHIN * np.cos(k)
    hy = np.arctan2(d[:, 0], -rho) - np.arctan2(px, pz)
    hy = (hy + np.pi) % (2 * np.pi) - np.pi
    return hx, hy, k


def walk_forward() -> ClipSpec:
    """Walk forward about 1.6 m: start from standing, 5 steps of 0.4 s swing, stop with feet together (3.4 s)."""
    d = 3.4
    t = _times(d)
    n = len(t)
    hip_y_off = float(T.LOCAL_TRANSLATION[T.BODY_INDEX["left_thigh"], 1])
    step_len = 0.42
    t_start, swing, ds = 0.35, 0.4, 0.12
    # footprints (x) per foot; steps alternate right, left, ...
    prints = [[0.0], [0.0]]
    steps = []  # (foot, t_a, t_b, x_from, x_to)
    x_lead = 0.0
    n_steps = 5
    ta = t_start
    for i in range(n_steps):
        f = 0 if i % 2 == 0 else 1
        if i == 0:
            x_to = step_len / 2
        elif i == n_steps - 1:
            x_to = x_lead
        else:
            x_to = x_lead + step_len
        steps.append((f, ta, ta + swing, prints[f][-1], x_to))
        prints[f].append(x_to)
        x_lead = x_to
        ta += swing + ds
    t_end = steps[-1][2]
    foot_x = np.zeros((n, 2))
    foot_z = np.full((n, 2), ANKLE_HEIGHT)
    stance = np.ones((n, 2), dtype=bool)
    for f in range(2):
        foot_x[:, f] = 0.0
    for f, a, b, x0, x1 in steps:
        u = np.clip((t - a) / (b - a), 0, 1)
        s = u * u * u * (10 - 15 * u + 6 * u * u)  # minimum-jerk
        foot_x[:, f] = np.where(t >= a, x0 + (x1 - x0) * s, foot_x[:, f])
        inside = (t > a) & (t < b)
        foot_z[:, f] = np.where(inside, ANKLE_HEIGHT + 0.07 * np.sin(np.pi * u) ** 1.5, foot_z[:, f])
        stance[:, f] &= ~((t > a + 0.01) & (t < b - 0.01))
    # pelvis: x follows knots over the stance foot at mid-swing, y sways toward the stance foot
    from scipy.interpolate import PchipInterpolator

    knots_t = [0.0, t_start - 0.1]
    knots_x = [0.0, 0.0]
    knots_y = [0.0, 0.0]
    for f, a, b, _x0, x1 in steps:
        other = 1 - f
        mid = 0.5 * (a + b)
        stance_x = foot_x[np.searchsorted(t, mid), other]
        knots_t.append(mid)
        knots_x.append(stance_x + 0.06 if x1 > stance_x else stance_x)
        knots_y.append(0.035 * (1 if other == 1 else -1))
    knots_t += [t_end + 0.25, d + 1.0]
    knots_x += [x_lead, x_lead]
    knots_y += [0.0, 0.0]
    px = PchipInterpolator(knots_t, knots_x)(t)
    py = PchipInterpolator(knots_t, knots_y)(t)
    walk_w = ramp(t, [(t_start - 0.25, 0.0), (t_start + 0.2, 1.0), (t_end - 0.1, 1.0), (t_end + 0.3, 0.0)])
    pz = 0.875 - 0.035 * walk_w
    pitch = np.radians(4.0) * walk_w
    ang = np.zeros((n, T.NUM_DOFS + 3))
    ang[:, T.NUM_DOFS + 1] = pitch
    cp, sp = np.cos(pitch), np.sin(pitch)
    for f, side in enumerate(("right", "left")):
        hy_off = -hip_y_off if f == 0 else hip_y_off
        hip_w = np.stack([px, py + hy_off, pz], axis=1)  # pelvis Ry(pitch): hip offset is along y, unchanged
        ankle_w = np.stack([foot_x[:, f], np.full(n, hy_off * 1.0), foot_z[:, f]], axis=1)
        dw = ankle_w - hip_w
        # into the pelvis frame: Ry(pitch)^T
        dl = np.stack([cp * dw[:, 0] - sp * dw[:, 2], dw[:, 1], sp * dw[:, 0] + cp * dw[:, 2]], axis=1)
        hx, hy, k = leg_ik(dl)
        ang[:, DOF[f"{side}_hip_x"]] = hx
        ang[:, DOF[f"{side}_hip_y"]] = hy
        ang[:, DOF[f"{side}_knee"]] = k
    # arms swing opposite to the legs, trunk counter-rotates a little
    diff = foot_x[:, 1] - foot_x[:, 0]  # left ahead -> positive
    ang[:, DOF["right_shoulder_y"]] = np.radians(-40.0) * diff / step_len
    ang[:, DOF["left_shoulder_y"]] = np.radians(40.0) * diff / step_len
    ang[:, DOF["right_shoulder_x"]] = np.radians(-6)
    ang[:, DOF["left_shoulder_x"]] = np.radians(6)
    ang[:, DOF["right_elbow"]] = np.radians(-15) - np.radians(15) * np.clip(diff / step_len, 0, None)
    ang[:, DOF["left_elbow"]] = np.radians(-15) - np.radians(15) * np.clip(-diff / step_len, 0, None)
    ang[:, DOF["abdomen_z"]] = np.radians(-5.0) * diff / step_len
    flat = np.ones((n, 2))
    spec = ClipSpec("walk_forward", "walk forward", ang, stance, flat, np.zeros(n))
    spec.notes = {"distance": x_lead}
    return spec


SPECS: tuple[Callable[[], ClipSpec], ...] = (
    idle,
    walk_in_place,
    walk_forward,
    squat,
    raise_right_arm,
    raise_both_arms,
    bow,
    front_kick,
    turn_in_place,
    crouch,
    jump,
)


def clip_specs() -> list[ClipSpec]:
    """The specs of every starter clip, in the dataset's order."""
    return [f() for f in SPECS]


def generate_all() -> list[tuple[ClipSpec, Clip]]:
    """Every starter clip with its spec."""
    return [(s, build_clip(s)) for s in clip_specs()]


def write_starter(out_dir: str | Path | None = None) -> list[Path]:
    """Write every starter clip as `<out_dir>/<name>.npy` and the dataset `<out_dir>/../starter.yaml`-style index.

    With out_dir None the checked-in set (configs/motions/starter/ and configs/motions/starter.yaml) is rewritten.
    For any other folder the YAML goes inside it (`<out_dir>/starter.yaml`, files relative to it).
    Returns the written paths (clips first, the YAML last).
    """
    if out_dir is None:
        out = STARTER_DIR
        yaml_path = STARTER_DIR.parent / "starter.yaml"
    else:
        out = Path(out_dir)
        yaml_path = out / "starter.yaml"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    lines = [
        "# Starter motions, generated by anyskill_tui/core/motion/starter.py (`anyskill motions starter`).",
        "# Authored procedurally by this project; regenerate rather than edit.",
        "motions:",
    ]
    for spec, clip in generate_all():
        path = write_clip(out / f"{spec.name}.npy", clip)
        written.append(path)
        rel = Path(path).relative_to(yaml_path.parent).as_posix()
        lines.append(f"  - file: {rel}")
        lines.append(f"    weight: {spec.weight:g}")
        lines.append(f'    text: "{spec.text}"')
    yaml_path.write_text("\n".join(lines) + "\n")
    written.append(yaml_path)
    return written


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--previews":  # the PNGs in docs/images/starter
        paths = write_previews(args[1] if len(args) > 1 else STARTER_DIR.parents[2] / "docs" / "images" / "starter")
    else:
        paths = write_starter(args[0] if args else None)
    for p in paths:
        print(p)
    return 0


#: (time s, camera azimuth deg) of the representative frame of each clip, for the preview PNGs
PREVIEWS: dict[str, tuple[float, float]] = {
    "stand_idle": (2.0, 235.0),
    "walk_in_place": (0.6, 235.0),
    "walk_forward": (1.5, 270.0),
    "squat": (1.5, 250.0),
    "raise_right_arm": (1.6, 215.0),
    "raise_both_arms": (1.7, 200.0),
    "bow": (1.55, 260.0),
    "front_kick": (1.35, 260.0),
    "turn_in_place": (1.7, 235.0),
    "crouch": (1.65, 250.0),
    "jump": (1.3, 260.0),
}


def write_previews(out_dir: str | Path, size: int = 240) -> list[Path]:
    """One PNG per starter clip (its representative frame) plus `contact_sheet.png`; returns the paths."""
    from PIL import Image

    from anyskill_tui.core.motion.render import CameraSpec, contact_sheet, render_frames

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, images, labels = [], [], []
    for spec, clip in generate_all():
        t, az = PREVIEWS.get(spec.name, (clip.duration / 2, 235.0))
        frame = min(int(round(t * clip.fps)), clip.num_frames - 1)
        cam = CameraSpec(distance=3.2, azimuth=az, lookat_height=0.95)
        img = render_frames(clip, size=size, frames=[frame], camera=cam)[0]
        path = out / f"{spec.name}.png"
        Image.fromarray(img).save(path, optimize=True)
        paths.append(path)
        images.append(img)
        labels.append(f"{spec.name} t={t:.2f}s")
    sheet = out / "contact_sheet.png"
    Image.fromarray(contact_sheet(images, labels, columns=4)).save(sheet, optimize=True)
    paths.append(sheet)
    return paths


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
