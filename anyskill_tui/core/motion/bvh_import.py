"""BVH import and retargeting onto the 15-body character.

Pipeline (`import_bvh`):

1. **Parse** with the PyPI `bvh` package (hierarchy, offsets, channels); the frame block is read into one numpy
   array. Rotation channels compose in the order listed (``Zrotation Xrotation Yrotation`` -> Rz Rx Ry), the
   usual BVH convention; positions are in file units.
2. **Axes.** BVH is Y-up with the character facing +Z (and so +X on its left). Ours is Z-up facing +X with +Y on
   the left: ours (x, y, z) = BVH (z, x, y), a proper rotation C; rotations map as C R Cᵀ.
3. **Scale.** Unless given, scale = our leg (pelvis origin to ankle, 0.831 m) / the BVH's vertical rest
   distance from the hips joint to the foot joint (CMU files are in inches-like units, about 0.056 m each).
4. **Rest-pose correction.** For each of our bodies a BVH joint is chosen by the skeleton preset (a table per
   skeleton; add presets to `SKELETONS`). Our body's world rotation is BVH world rotation × K_b, where K_b is
   the shortest-arc rotation taking our bone's rest direction (e.g. (0, 0, -1) for an upper arm) onto the BVH
   bone's rest direction (e.g. horizontal in a T-pose), so the BVH rest pose maps onto the rest pose it shows
   and a BVH pose with arms down maps onto our zero pose. Feet get a yaw-only correction (from the toe
   direction), hands reuse their forearm's, the pelvis none.
5. **Local rotations**, parents first, relative to the parent's *achieved* rotation: 3-DoF joints are turned
   into intrinsic x, y, z hinge angles within limits and clamped; 1-DoF joints (elbows, knees) keep only the
   twist about their y axis (swing-twist projection), clamped.
6. **Root and ground.** The root follows the BVH hips position (scaled, converted); then the whole clip is
   shifted vertically so the lowest foot-box corner over the clip touches z = 0 (`ground="clip"`), or per
   frame by a 1 s running minimum of the lowest foot corner (`ground="window"`, for files whose floor drifts).
7. **Rate.** Output fps = the BVH frame rate, or resampled to `fps` (root lerp, local-rotation slerp).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.motion.clip import Clip, ClipError

__all__ = ["SKELETONS", "BvhError", "BvhData", "read_bvh", "import_bvh", "AXES_BVH_TO_OURS"]

#: ours = C @ bvh: (x, y, z)_ours = (z, x, y)_bvh
AXES_BVH_TO_OURS = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

#: our body -> candidate BVH joint names (first present wins), per skeleton preset
SKELETONS: dict[str, dict[str, tuple[str, ...]]] = {
    "cmu": {
        "pelvis": ("Hips", "hip", "Hip"),
        "torso": ("Spine1", "Spine", "Chest", "LowerBack"),
        "head": ("Head", "Neck1", "Neck"),
        "right_upper_arm": ("RightArm", "RightUpArm"),
        "right_lower_arm": ("RightForeArm", "RightLowArm"),
        "right_hand": ("RightHand",),
        "left_upper_arm": ("LeftArm", "LeftUpArm"),
        "left_lower_arm": ("LeftForeArm", "LeftLowArm"),
        "left_hand": ("LeftHand",),
        "right_thigh": ("RightUpLeg", "RightHip"),
        "right_shin": ("RightLeg", "RightKnee", "RightLowLeg"),
        "right_foot": ("RightFoot", "RightAnkle"),
        "left_thigh": ("LeftUpLeg", "LeftHip"),
        "left_shin": ("LeftLeg", "LeftKnee", "LeftLowLeg"),
        "left_foot": ("LeftFoot", "LeftAnkle"),
    },
}
#: the joint after the foot that gives its forward direction
_TOE_NAMES = {"right_foot": ("RightToeBase", "RightToe"), "left_foot": ("LeftToeBase", "LeftToe")}

#: our bone rest direction of each body (toward its main child), None: no own correction
_OUR_DIR: dict[str, tuple[float, float, float] | None] = {
    "pelvis": None,
    "torso": (0.0, 0.0, 1.0),
    "head": (0.0, 0.0, 1.0),
    "right_upper_arm": (0.0, 0.0, -1.0),
    "right_lower_arm": (0.0, 0.0, -1.0),
    "right_hand": None,
    "left_upper_arm": (0.0, 0.0, -1.0),
    "left_lower_arm": (0.0, 0.0, -1.0),
    "left_hand": None,
    "right_thigh": (0.0, 0.0, -1.0),
    "right_shin": (0.0, 0.0, -1.0),
    "right_foot": None,
    "left_thigh": (0.0, 0.0, -1.0),
    "left_shin": (0.0, 0.0, -1.0),
    "left_foot": None,
}
#: the body whose mapped joint ends our bone (for the BVH rest direction)
_DIR_CHILD = {
    "torso": "head",
    "right_upper_arm": "right_lower_arm",
    "right_lower_arm": "right_hand",
    "left_upper_arm": "left_lower_arm",
    "left_lower_arm": "left_hand",
    "right_thigh": "right_shin",
    "right_shin": "right_foot",
    "left_thigh": "left_shin",
    "left_shin": "left_foot",
}
OUR_LEG = float(-T.LOCAL_TRANSLATION[T.BODY_INDEX["left_shin"], 2] - T.LOCAL_TRANSLATION[T.BODY_INDEX["left_foot"], 2])


class BvhError(ClipError):
    """A BVH file could not be imported (a `ClipError`, so the CLI reports it the same way)."""


@dataclass
class BvhData:
    """A parsed BVH: joints in file order with parents, offsets (file units, BVH axes), channels, end sites,
    the (F, C) channel values and the frame time."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray  # (J, 3)
    channels: list[list[str]]
    end_sites: dict[int, np.ndarray]  # joint index -> end-site offset (3,)
    motion: np.ndarray  # (F, total channels)
    frame_time: float

    def index(self, name: str) -> int:
        return self.names.index(name)


def read_bvh(path: str | os.PathLike) -> BvhData:
    """Parse a BVH file (BvhError on any problem)."""
    from bvh import Bvh

    path = Path(path)
    if not path.is_file():
        raise BvhError(path, "file not found. Give the path of a .bvh motion capture file.")
    try:
        text = path.read_text(errors="strict")
    except UnicodeDecodeError:
        raise BvhError(path, "is not a text file; a .bvh file is plain text (HIERARCHY ... MOTION ...).") from None
    if "HIERARCHY" not in text or "MOTION" not in text:
        raise BvhError(path, "is not a BVH file (no HIERARCHY/MOTION sections).")
    try:
        mocap = Bvh(text)
        joints = mocap.get_joints()
        names = [j.name for j in joints]
        index = {id(j): i for i, j in enumerate(joints)}
        parents, offsets, channels, end_sites = [], [], [], {}
        for i, j in enumerate(joints):
            parents.append(index.get(id(j.parent), -1))
            offsets.append([float(v) for v in j["OFFSET"]])
            channels.append(list(j["CHANNELS"][1:]))
            for child in j.children:
                if child.value and child.value[0] == "End":
                    end_sites[i] = np.array([float(v) for v in child["OFFSET"]])
        nframes = mocap.nframes
        frame_time = float(mocap.frame_time)
        motion = np.array(mocap.frames, dtype=np.float64) if nframes > 0 else np.zeros((0, 0))
    except (LookupError, IndexError, ValueError, StopIteration, TypeError) as e:
        raise BvhError(path, f"could not be parsed ({type(e).__name__}: {e}). Check the file is a valid BVH.") from None
    total = sum(len(c) for c in channels)
    if nframes <= 0:
        raise BvhError(path, "has no frames (Frames: 0). Export at least one frame.")
    if motion.ndim != 2 or motion.shape != (nframes, total):
        raise BvhError(
            path, f"the MOTION block has shape {motion.shape}, expected ({nframes}, {total}) from the hierarchy."
        )
    if not np.isfinite(motion).all():
        raise BvhError(path, "the MOTION block contains NaN or inf values.")
    if not (frame_time > 0 and math.isfinite(frame_time)):
        raise BvhError(path, f"Frame Time is {frame_time}; it must be positive.")
    return BvhData(names, parents, np.array(offsets), channels, end_sites, motion, frame_time)


def _axis_rot(axis: str, deg: np.ndarray) -> np.ndarray:
    """(F, 3, 3) rotation matrices about a BVH axis ('X', 'Y', 'Z') by angles in degrees."""
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    m = np.zeros(a.shape + (3, 3))
    i = "XYZ".index(axis)
    j, k = (i + 1) % 3, (i + 2) % 3
    m[..., i, i] = 1.0
    m[..., j, j] = c
    m[..., k, k] = c
    m[..., j, k] = -s
    m[..., k, j] = s
    return m


def _bvh_globals(b: BvhData) -> tuple[np.ndarray, np.ndarray]:
    """World rotations (F, J, 3, 3) and positions (F, J, 3) of every joint, in BVH axes and file units."""
    f = b.motion.shape[0]
    nj = len(b.names)
    rot = np.zeros((f, nj, 3, 3))
    pos = np.zeros((f, nj, 3))
    col = 0
    for j in range(nj):
        local = np.broadcast_to(np.eye(3), (f, 3, 3)).copy()
        trans = np.broadcast_to(b.offsets[j], (f, 3)).copy()
        for ch in b.channels[j]:
            v = b.motion[:, col]
            col += 1
            kind = ch[1:].lower()
            if kind == "position":
                trans[:, "XYZ".index(ch[0].upper())] += v
            elif kind == "rotation":
                local = local @ _axis_rot(ch[0].upper(), v)
        p = b.parents[j]
        if p < 0:
            rot[:, j] = local
            pos[:, j] = trans
        else:
            rot[:, j] = rot[:, p] @ local
            pos[:, j] = pos[:, p] + np.einsum("fab,fb->fa", rot[:, p], trans)
    return rot, pos


def _rest_positions(b: BvhData) -> np.ndarray:
    """(J, 3) joint positions of the rest pose (offsets only), BVH axes."""
    pos = np.zeros((len(b.names), 3))
    for j, p in enumerate(b.parents):
        pos[j] = b.offsets[j] + (pos[p] if p >= 0 else 0.0)
    return pos


def _shortest_arc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 rotation taking unit vector a onto unit vector b along the shortest arc."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1 + 1e-9:  # opposite: rotate pi about any axis orthogonal to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def _resolve(b: BvhData, skeleton: str, path) -> dict[str, int]:
    if skeleton not in SKELETONS:
        raise BvhError(path, f"unknown skeleton preset {skeleton!r}; known: {', '.join(sorted(SKELETONS))}.")
    table = SKELETONS[skeleton]
    found, missing = {}, []
    for body in T.BODY_NAMES:
        hit = next((n for n in table[body] if n in b.names), None)
        if hit is None:
            missing.append(f"{body} ({'/'.join(table[body])})")
        else:
            found[body] = b.index(hit)
    if missing:
        raise BvhError(
            path,
            f"the {skeleton!r} skeleton needs joints that are not in the file: {', '.join(missing)}. "
            f"The file has: {', '.join(b.names)}.",
        )
    return found


def _rest_corrections(b: BvhData, joint: dict[str, int], path) -> dict[str, np.ndarray]:
    """K_b (3x3, our axes) per body: BVH rest world rotation (identity) times K_b points our bone like the BVH's."""
    c = AXES_BVH_TO_OURS
    rest = _rest_positions(b) @ c.T  # our axes
    k: dict[str, np.ndarray] = {}
    for body in T.BODY_NAMES:
        ours = _OUR_DIR[body]
        if body == "head":
            j = joint["head"]
            if j in b.end_sites and np.linalg.norm(b.end_sites[j]) > 1e-9:
                k[body] = _shortest_arc(np.array(ours), c @ b.end_sites[j])
            else:
                k[body] = np.eye(3)
        elif ours is not None:
            d = rest[joint[_DIR_CHILD[body]]] - rest[joint[body]]
            if np.linalg.norm(d) < 1e-9:
                raise BvhError(path, f"the bone of {body} has zero length in the rest pose.")
            k[body] = _shortest_arc(np.array(ours), d)
        elif body.endswith("_foot"):
            toe = next((n for n in _TOE_NAMES[body] if n in b.names), None)
            j = joint[body]
            if toe is not None:
                d = rest[b.index(toe)] - rest[j]
            elif j in b.end_sites:
                d = c @ b.end_sites[j]
            else:
                d = np.array([1.0, 0.0, 0.0])
            d = np.array([d[0], d[1], 0.0])
            k[body] = _shortest_arc(np.array([1.0, 0.0, 0.0]), d) if np.linalg.norm(d) > 1e-9 else np.eye(3)
        else:
            k[body] = np.eye(3)
    k["right_hand"] = k["right_lower_arm"]
    k["left_hand"] = k["left_lower_arm"]
    return k


def _auto_scale(b: BvhData, joint: dict[str, int], path) -> float:
    rest = _rest_positions(b)
    legs = [rest[joint["pelvis"], 1] - rest[joint[f], 1] for f in ("left_foot", "right_foot")]
    leg = float(np.mean(legs))
    if not leg > 1e-9:
        raise BvhError(
            path, "cannot auto-scale: the feet are not below the hips in the rest pose (Y-up). Pass --scale."
        )
    return OUR_LEG / leg


def import_bvh(
    path: str | os.PathLike,
    skeleton: str = "cmu",
    scale: float | None = None,
    fps: float | None = None,
    ground: str = "clip",
    name: str | None = None,
) -> Clip:
    """Import a BVH file as a `Clip` of our character (see the module docstring for every step).

    skeleton: preset name in `SKELETONS`; scale: metres per file unit (None: from the leg length);
    fps: resample to this rate (None: the file's); ground: "clip" (one vertical shift) or "window".
    """
    import torch

    from anyskill_tui.core.motion.plausibility import foot_corners_world
    from anyskill_tui.core.motion.quat import (
        euler_xyz_to_quat,
        quat_conjugate,
        quat_from_matrix,
        quat_mul,
        quat_to_euler_xyz,
    )

    path = Path(path)
    b = read_bvh(path)
    joint = _resolve(b, skeleton, path)
    if scale is None:
        scale = _auto_scale(b, joint, path)
    elif not (scale > 0 and math.isfinite(scale)):
        raise BvhError(path, f"scale {scale} must be a positive number (metres per file unit).")
    if ground not in ("clip", "window"):
        raise BvhError(path, f"ground {ground!r} must be 'clip' or 'window'.")
    c = AXES_BVH_TO_OURS
    grot, gpos = _bvh_globals(b)
    k = _rest_corrections(b, joint, path)
    nf = grot.shape[0]
    # target world rotations of our bodies, our axes
    target = np.zeros((nf, T.NUM_BODIES, 3, 3))
    for i, body in enumerate(T.BODY_NAMES):
        g = grot[:, joint[body]]
        target[:, i] = c @ g @ c.T @ k[body]
    target_q = quat_from_matrix(torch.as_tensor(target))  # (F, 15, 4) xyzw
    lo, hi = (torch.as_tensor(a) for a in T.dof_limits())
    local = torch.zeros((nf, T.NUM_BODIES, 4), dtype=torch.float64)
    achieved = torch.zeros_like(local)
    local[:, 0] = target_q[:, 0]
    achieved[:, 0] = target_q[:, 0]
    joints_by_body = {j.body: j for j in T.JOINTS}
    for i in range(1, T.NUM_BODIES):
        p = T.PARENT_INDICES[i]
        want = quat_mul(quat_conjugate(achieved[:, p]), target_q[:, i])
        j = joints_by_body.get(i)
        if j is None:  # hands are welded to the forearm
            local[:, i, 3] = 1.0
            achieved[:, i] = achieved[:, p]
            continue
        sl = slice(j.dof_start, j.dof_start + j.num_dofs)
        if j.num_dofs == 3:
            e = quat_to_euler_xyz(want, lo[sl], hi[sl])
            e = torch.maximum(torch.minimum(e, hi[sl]), lo[sl])
            q = euler_xyz_to_quat(e)
        else:
            a = 2.0 * torch.atan2(want[:, 1], want[:, 3])
            a = torch.remainder(a + math.pi, 2 * math.pi) - math.pi
            a = torch.clamp(a, lo[sl][0], hi[sl][0])
            q = torch.zeros_like(want)
            q[:, 1] = torch.sin(0.5 * a)
            q[:, 3] = torch.cos(0.5 * a)
        local[:, i] = q
        achieved[:, i] = quat_mul(achieved[:, p], q)
    root = (gpos[:, joint["pelvis"]] * scale) @ c.T
    src_fps = 1.0 / b.frame_time
    clip = Clip(local.numpy().astype(np.float32), root.astype(np.float32), _nice_fps(src_fps), name or path.stem)
    if fps is not None:
        if not (fps > 0 and math.isfinite(fps)):
            raise BvhError(path, f"fps {fps} must be a positive number.")
        clip = _resample(clip, float(fps))
    # ground contact
    corners = foot_corners_world(clip)  # (T, 2, 8, 3)
    low = corners[..., 2].min(axis=(1, 2))
    if ground == "clip":
        shift = np.full_like(low, -low.min())
    else:
        r = max(int(round(clip.fps * 0.5)), 1)
        pad = np.concatenate([np.full(r, low[0]), low, np.full(r, low[-1])])
        shift = -np.array([pad[t : t + 2 * r + 1].min() for t in range(len(low))])
    root = clip.root_pos.astype(np.float64)
    root[:, 2] += shift
    return Clip(clip.local_rot, root.astype(np.float32), clip.fps, clip.name)


def _nice_fps(fps: float) -> float:
    """Round a rate read from a Frame Time (e.g. 0.0083333 -> 120) when it is within 0.01 of an integer."""
    r = round(fps)
    return float(r) if abs(fps - r) < 0.01 else float(fps)


def _resample(clip: Clip, fps: float) -> Clip:
    """Resample to `fps` over the same duration: root lerp, local rotations slerp."""
    import torch

    from anyskill_tui.core.motion.quat import slerp

    n = clip.num_frames
    if n < 2 or abs(fps - clip.fps) < 1e-9:
        return Clip(clip.local_rot, clip.root_pos, fps if n < 2 else clip.fps, clip.name)
    dur = (n - 1) / clip.fps
    m = int(math.floor(dur * fps + 1e-6)) + 1
    t = np.arange(m) / fps * clip.fps  # in source frames
    f0 = np.clip(np.floor(t).astype(int), 0, n - 1)
    f1 = np.minimum(f0 + 1, n - 1)
    w = (t - f0)[:, None]
    root = clip.root_pos[f0] * (1 - w) + clip.root_pos[f1] * w
    q0 = torch.as_tensor(clip.local_rot[f0], dtype=torch.float64)
    q1 = torch.as_tensor(clip.local_rot[f1], dtype=torch.float64)
    rot = slerp(q0, q1, torch.as_tensor(w, dtype=torch.float64)).numpy()
    return Clip(rot.astype(np.float32), root.astype(np.float32), fps, clip.name)
