"""The humanoid in tables: bodies, geoms, joints, DoFs, PD mapping, key and contact bodies.

Structurally the AMP humanoid used by AMP/ASE/CALM/AnySkill (15 bodies, 28 hinge DoF in 12 joints, same body
names, order, offsets, geoms, ranges and densities), so their poselib motion files load without conversion.
Everything else in the project (the MJCF in `model.py`, MotionLib, observations) derives from these tables.

Conventions: SI units, z up, the character faces +x at rest and +y is its left. Body index = poselib
skeleton node index = depth-first order; the MuJoCo body id is index + 1 (MuJoCo's world body is 0).
DoF index = the order of the hinge joints in the model = MuJoCo qpos[7:] / qvel[6:] / ctrl order (our
actuators are listed in DoF order, unlike the reference file which lists the hips as x, z, y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NUM_BODIES = 15
NUM_DOFS = 28
NUM_JOINTS = 12

BODY_NAMES: tuple[str, ...] = (
    "pelvis",
    "torso",
    "head",
    "right_upper_arm",
    "right_lower_arm",
    "right_hand",
    "left_upper_arm",
    "left_lower_arm",
    "left_hand",
    "right_thigh",
    "right_shin",
    "right_foot",
    "left_thigh",
    "left_shin",
    "left_foot",
)
BODY_INDEX: dict[str, int] = {n: i for i, n in enumerate(BODY_NAMES)}

#: parent body index of each body, -1 for the root (poselib `parent_indices`)
PARENT_INDICES: tuple[int, ...] = (-1, 0, 1, 1, 3, 4, 1, 6, 7, 0, 9, 10, 0, 12, 13)

#: (15, 3) body origin offset from its parent's origin, in the parent frame (poselib `local_translation`;
#: the pelvis entry is its position in the file, the root translation of a clip overrides it)
LOCAL_TRANSLATION = np.array(
    [
        (0.0, 0.0, 1.0),
        (0.0, 0.0, 0.236151),
        (0.0, 0.0, 0.223894),
        (-0.02405, -0.18311, 0.24350),
        (0.0, 0.0, -0.274788),
        (0.0, 0.0, -0.258947),
        (-0.02405, 0.18311, 0.24350),
        (0.0, 0.0, -0.274788),
        (0.0, 0.0, -0.258947),
        (0.0, -0.084887, 0.0),
        (0.0, 0.0, -0.421546),
        (0.0, 0.0, -0.409870),
        (0.0, 0.084887, 0.0),
        (0.0, 0.0, -0.421546),
        (0.0, 0.0, -0.409870),
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class GeomSpec:
    """One collision geom of a body, in the body frame (MJCF attributes)."""

    name: str
    type: str  # sphere | capsule | box
    size: tuple[float, ...]
    density: float
    pos: tuple[float, float, float] | None = None
    fromto: tuple[float, float, float, float, float, float] | None = None


def _arm_geoms(side: str) -> dict[str, tuple[GeomSpec, ...]]:
    return {
        f"{side}_upper_arm": (
            GeomSpec(f"{side}_upper_arm", "capsule", (0.045,), 982, fromto=(0, 0, -0.05, 0, 0, -0.23)),
        ),
        f"{side}_lower_arm": (
            GeomSpec(f"{side}_lower_arm", "capsule", (0.04,), 1056, fromto=(0, 0, -0.0525, 0, 0, -0.1875)),
        ),
        f"{side}_hand": (GeomSpec(f"{side}_hand", "sphere", (0.04,), 1865),),
    }


def _leg_geoms(side: str) -> dict[str, tuple[GeomSpec, ...]]:
    return {
        f"{side}_thigh": (GeomSpec(f"{side}_thigh", "capsule", (0.055,), 1269, fromto=(0, 0, -0.06, 0, 0, -0.36)),),
        f"{side}_shin": (GeomSpec(f"{side}_shin", "capsule", (0.05,), 1014, fromto=(0, 0, -0.045, 0, 0, -0.355)),),
        f"{side}_foot": (GeomSpec(f"{side}_foot", "box", (0.0885, 0.045, 0.0275), 1141, pos=(0.045, 0, -0.0225)),),
    }


#: collision geoms per body (spec §1.1)
BODY_GEOMS: dict[str, tuple[GeomSpec, ...]] = {
    "pelvis": (
        GeomSpec("pelvis", "sphere", (0.09,), 2226, pos=(0, 0, 0.07)),
        GeomSpec("upper_waist", "sphere", (0.07,), 2226, pos=(0, 0, 0.205)),
    ),
    "torso": (
        GeomSpec("torso", "sphere", (0.11,), 1794, pos=(0, 0, 0.12)),
        GeomSpec(
            "right_clavicle",
            "capsule",
            (0.045,),
            1100,
            fromto=(-0.0060125, -0.0457775, 0.2287955, -0.016835, -0.128177, 0.2376182),
        ),
        GeomSpec(
            "left_clavicle",
            "capsule",
            (0.045,),
            1100,
            fromto=(-0.0060125, 0.0457775, 0.2287955, -0.016835, 0.128177, 0.2376182),
        ),
    ),
    "head": (GeomSpec("head", "sphere", (0.095,), 1081, pos=(0, 0, 0.175)),),
    **_arm_geoms("right"),
    **_arm_geoms("left"),
    **_leg_geoms("right"),
    **_leg_geoms("left"),
}

#: masses MuJoCo computes from these geoms and densities (spec §1.1, kg); a test checks the model against them
BODY_MASSES = np.array(
    [9.996, 12.012, 3.882, 1.499, 1.000, 0.500, 1.499, 1.000, 0.500, 4.502, 3.000, 1.000, 4.502, 3.000, 1.000]
)


@dataclass(frozen=True)
class DofSpec:
    """One hinge DoF: axis in the child body frame, limits (deg), PD gains, armature, effort limit (N m)."""

    name: str
    axis: str  # "x" | "y" | "z"
    range_deg: tuple[float, float]
    kp: float
    kd: float
    armature: float
    gear: float


def _d(name: str, axis: str, lo: float, hi: float, kp: float, arm: float, gear: float) -> DofSpec:
    return DofSpec(name, axis, (lo, hi), kp, kp / 10.0, arm, gear)


def _xyz(prefix: str, ranges, kp: float, arm: float, gear: float) -> list[DofSpec]:
    return [_d(f"{prefix}_{a}", a, lo, hi, kp, arm, gear) for a, (lo, hi) in zip("xyz", ranges, strict=True)]


#: the 28 DoFs in model order (spec §1.2)
DOFS: tuple[DofSpec, ...] = tuple(
    _xyz("abdomen", [(-60, 60), (-60, 90), (-50, 50)], 1000, 0.02, 200)
    + _xyz("neck", [(-50, 50), (-40, 60), (-45, 45)], 100, 0.01, 50)
    + _xyz("right_shoulder", [(-180, 45), (-180, 60), (-90, 90)], 400, 0.02, 100)
    + [_d("right_elbow", "y", -160, 0, 300, 0.01, 70)]
    + _xyz("left_shoulder", [(-45, 180), (-180, 60), (-90, 90)], 400, 0.02, 100)
    + [_d("left_elbow", "y", -160, 0, 300, 0.01, 70)]
    + _xyz("right_hip", [(-60, 15), (-140, 60), (-60, 35)], 500, 0.02, 200)
    + [_d("right_knee", "y", 0, 160, 500, 0.02, 150)]
    + _xyz("right_ankle", [(-30, 30), (-55, 55), (-40, 40)], 400, 0.01, 90)
    + _xyz("left_hip", [(-15, 60), (-140, 60), (-35, 60)], 500, 0.02, 200)
    + [_d("left_knee", "y", 0, 160, 500, 0.02, 150)]
    + _xyz("left_ankle", [(-30, 30), (-55, 55), (-40, 40)], 400, 0.01, 90)
)
DOF_NAMES: tuple[str, ...] = tuple(d.name for d in DOFS)


@dataclass(frozen=True)
class JointSpec:
    """A joint group: the hinge DoFs (1 or 3) that move one child body relative to its parent."""

    name: str
    body: int  # child body index
    dof_start: int
    num_dofs: int  # 3: x, y, z hinges composed as intrinsic rotations Rx(a) Ry(b) Rz(c); 1: a y hinge


JOINTS: tuple[JointSpec, ...] = (
    JointSpec("abdomen", 1, 0, 3),
    JointSpec("neck", 2, 3, 3),
    JointSpec("right_shoulder", 3, 6, 3),
    JointSpec("right_elbow", 4, 9, 1),
    JointSpec("left_shoulder", 6, 10, 3),
    JointSpec("left_elbow", 7, 13, 1),
    JointSpec("right_hip", 9, 14, 3),
    JointSpec("right_knee", 10, 17, 1),
    JointSpec("right_ankle", 11, 18, 3),
    JointSpec("left_hip", 12, 21, 3),
    JointSpec("left_knee", 13, 24, 1),
    JointSpec("left_ankle", 14, 25, 3),
)
#: child body of each joint (reference `_dof_body_ids`)
DOF_BODY_IDS: tuple[int, ...] = tuple(j.body for j in JOINTS)
#: start of each joint's DoFs, plus the total (reference `_dof_offsets`)
DOF_OFFSETS: tuple[int, ...] = tuple(j.dof_start for j in JOINTS) + (NUM_DOFS,)

#: hands and feet: their root-relative positions enter the AMP observation
KEY_BODY_NAMES: tuple[str, ...] = ("right_hand", "left_hand", "right_foot", "left_foot")
KEY_BODY_IDS: tuple[int, ...] = tuple(BODY_INDEX[n] for n in KEY_BODY_NAMES)
#: bodies allowed to touch the ground without counting as a fall
CONTACT_BODY_NAMES: tuple[str, ...] = ("right_foot", "left_foot")
CONTACT_BODY_IDS: tuple[int, ...] = tuple(BODY_INDEX[n] for n in CONTACT_BODY_NAMES)

#: the default ("T-pose-like") start state: root height, arms down, legs straight
DEFAULT_ROOT_HEIGHT = 0.89

#: physics and control timing: 1/120 s physics, 4 substeps per 30 Hz control step
PHYSICS_DT = 1.0 / 120.0
CONTROL_SUBSTEPS = 4
CONTROL_DT = PHYSICS_DT * CONTROL_SUBSTEPS


def dof_limits() -> tuple[np.ndarray, np.ndarray]:
    """(28,) lower and (28,) upper joint limits in radians."""
    lo = np.array([math.radians(d.range_deg[0]) for d in DOFS])
    hi = np.array([math.radians(d.range_deg[1]) for d in DOFS])
    return lo, hi


def pd_offset_scale() -> tuple[np.ndarray, np.ndarray]:
    """(28,) PD offset and (28,) scale: pd_target = offset + scale * clip(action, -1, 1) (spec §1.3).

    3-DoF groups share a symmetric range [-s, s] with s = min(1.2 * max |limit| of the group, pi);
    1-DoF joints get offset = mid-range and scale = 0.7 * (upper - lower), deliberately past the limits.
    """
    lo, hi = dof_limits()
    offset = np.zeros(NUM_DOFS)
    scale = np.zeros(NUM_DOFS)
    for j in JOINTS:
        sl = slice(j.dof_start, j.dof_start + j.num_dofs)
        if j.num_dofs == 3:
            s = min(1.2 * float(np.max(np.maximum(np.abs(lo[sl]), np.abs(hi[sl])))), math.pi)
            scale[sl] = s
        else:
            offset[sl] = 0.5 * (hi[sl] + lo[sl])
            scale[sl] = 0.7 * (hi[sl] - lo[sl])
    return offset, scale


def body_children(index: int) -> list[int]:
    """Indices of the bodies whose parent is `index`."""
    return [i for i, p in enumerate(PARENT_INDICES) if p == index]
