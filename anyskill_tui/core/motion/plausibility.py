"""Physical plausibility checks of a motion clip (kinematic; used by the tests and `motions validate --physical`).

Three checks, each with a threshold (metres):

- **floor penetration**: the lowest point of every collision geom (foot-box corners, sphere and capsule bottoms)
  may be at most `max_penetration` (1 cm) below the floor z = 0;
- **stance foot sliding**: a foot-sole corner is in contact in a frame when it is within `contact_height` (2 cm)
  of the floor and its horizontal speed is below `contact_speed` (0.5 m/s, the "slow" of a stance foot). For every
  run of consecutive contact frames of a corner (a contact phase), the largest horizontal distance of the corner
  from where the run began must stay below `max_slide` (2 cm). Working per corner lets a foot roll from heel to
  toe without counting the roll as a slide;
- **self-penetration**: with qpos set from the clip (MotionLib's `mujoco_state`, the state the simulator sees) and
  `mj_forward`, no contact between two character bodies may be deeper than `max_self_penetration` (1 cm). MuJoCo
  already excludes parent/child pairs.

Also reported: joint-limit excess (degrees) of the hinge angles the simulator would be set to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.motion.clip import Clip

__all__ = ["PlausibilityReport", "Thresholds", "check_clip", "clip_qpos", "foot_corners_world"]

FOOT_HALF = (0.0885, 0.045, 0.0275)
FOOT_CENTER = (0.045, 0.0, -0.0225)
FEET = (T.BODY_INDEX["right_foot"], T.BODY_INDEX["left_foot"])


@dataclass(frozen=True)
class Thresholds:
    max_penetration: float = 0.01
    contact_height: float = 0.02
    contact_speed: float = 0.5
    max_slide: float = 0.02
    max_self_penetration: float = 0.01
    max_limit_excess_deg: float = 0.5


@dataclass
class PlausibilityReport:
    """Figures of one clip; `ok` when every check passes, `problems` lists one line per failed check."""

    name: str
    num_frames: int
    max_penetration: float  # m below the floor (0 when nothing goes below)
    penetration_frame: int
    penetration_geom: str
    max_slide: float  # m, largest stance-corner slide over one contact phase
    slide_frame: int
    slide_foot: str
    max_self_penetration: float  # m, deepest body-body contact (0 when none)
    self_contact: str  # "frame F: body_a / body_b" of the deepest one ("" when none)
    max_limit_excess_deg: float
    limit_dof: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "frames": self.num_frames,
            "ok": self.ok,
            "max_penetration_m": round(self.max_penetration, 5),
            "max_slide_m": round(self.max_slide, 5),
            "max_self_penetration_m": round(self.max_self_penetration, 5),
            "max_limit_excess_deg": round(self.max_limit_excess_deg, 3),
            "problems": list(self.problems),
        }


def _foot_corners_local() -> np.ndarray:
    hx, hy, hz = FOOT_HALF
    cx, cy, cz = FOOT_CENTER
    return np.array([(cx + sx * hx, cy + sy * hy, cz + sz * hz) for sz in (-1, 1) for sx in (-1, 1) for sy in (-1, 1)])


def foot_corners_world(clip: Clip) -> np.ndarray:
    """(T, 2, 8, 3) world positions of the right and left foot-box corners (first 4 of each: the sole)."""
    import torch

    from anyskill_tui.core.motion.quat import quat_rotate

    pos = torch.as_tensor(clip.body_pos())
    rot = torch.as_tensor(clip.global_rot())
    c = torch.as_tensor(_foot_corners_local())
    n = pos.shape[0]
    out = [pos[:, f, None, :] + quat_rotate(rot[:, f, None, :].expand(n, 8, 4), c.expand(n, 8, 3)) for f in FEET]
    return torch.stack(out, dim=1).numpy()


def clip_qpos(clip: Clip) -> np.ndarray:
    """(T, 35) MuJoCo qpos of every frame (root pos, root quat wxyz, 28 hinge angles), via MotionLib."""
    import torch

    from anyskill_tui.core.motion.dataset import MotionDataset
    from anyskill_tui.core.motion.motion_lib import MotionLib

    lib = MotionLib(MotionDataset.from_clips([clip]), dtype=torch.float64)
    n = clip.num_frames
    times = torch.arange(n, dtype=torch.float64) / clip.fps
    qpos, _ = lib.mujoco_state(torch.zeros(n, dtype=torch.long), times)
    return qpos.numpy()


def _corner_slides(corners: np.ndarray, fps: float, th: Thresholds) -> tuple[float, int, int]:
    """Largest slide over a contact run of any sole corner: (slide m, frame, foot index)."""
    n = corners.shape[0]
    sole = corners[:, :, :4]  # (T, 2, 4, 3)
    xy = sole[..., :2]
    if n > 1:
        vel = np.gradient(xy, axis=0) * fps
        speed = np.linalg.norm(vel, axis=-1)
    else:
        speed = np.zeros(sole.shape[:-1])
    contact = (sole[..., 2] < th.contact_height) & (speed < th.contact_speed)  # (T, 2, 4)
    best, best_f, best_foot = 0.0, 0, 0
    for foot in range(2):
        for k in range(4):
            c = contact[:, foot, k]
            start = None
            for t in range(n + 1):
                on = t < n and c[t]
                if on and start is None:
                    start = t
                elif not on and start is not None:
                    d = np.linalg.norm(xy[start:t, foot, k] - xy[start, foot, k], axis=-1)
                    i = int(np.argmax(d))
                    if d[i] > best:
                        best, best_f, best_foot = float(d[i]), start + i, foot
                    start = None
    return best, best_f, best_foot


def check_clip(clip: Clip, thresholds: Thresholds | None = None, model=None) -> PlausibilityReport:
    """Run the plausibility checks on a clip; see the module docstring."""
    import mujoco

    from anyskill_tui.core.character.model import load_model

    th = thresholds or Thresholds()
    m = model if model is not None else load_model()
    d = mujoco.MjData(m)
    qpos = clip_qpos(clip)
    n = clip.num_frames

    # joint limits of the hinge angles the simulator is set to
    lo, hi = T.dof_limits()
    q = qpos[:, 7:]
    excess = np.maximum(lo - q, 0) + np.maximum(q - hi, 0)
    jd = int(np.argmax(excess.max(0)))
    max_excess = float(np.degrees(excess.max()))

    # lowest points of all geoms, and body-body contacts
    floor_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "floor")
    char_geoms = [g for g in range(m.ngeom) if m.geom_bodyid[g] != 0]
    pen, pen_f, pen_g = 0.0, 0, ""
    selfpen, self_desc = 0.0, ""
    for t in range(n):
        d.qpos[:] = qpos[t]
        mujoco.mj_forward(m, d)
        for g in char_geoms:
            typ = m.geom_type[g]
            size = m.geom_size[g]
            pos = d.geom_xpos[g]
            mat = d.geom_xmat[g].reshape(3, 3)
            if typ == mujoco.mjtGeom.mjGEOM_SPHERE:
                low = pos[2] - size[0]
            elif typ == mujoco.mjtGeom.mjGEOM_CAPSULE:
                low = pos[2] - abs(mat[2, 2]) * size[1] - size[0]
            elif typ == mujoco.mjtGeom.mjGEOM_BOX:
                low = pos[2] - float(np.abs(mat[2, :]) @ size[:3])
            else:  # pragma: no cover - the character has no other geom types
                continue
            if -low > pen:
                pen, pen_f, pen_g = float(-low), t, mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) or str(g)
        for c in d.contact[: d.ncon]:
            if floor_id in (c.geom1, c.geom2):
                continue
            b1, b2 = m.geom_bodyid[c.geom1], m.geom_bodyid[c.geom2]
            if b1 == 0 or b2 == 0:
                continue
            if -c.dist > selfpen:
                selfpen = float(-c.dist)
                self_desc = f"frame {t}: {T.BODY_NAMES[b1 - 1]} / {T.BODY_NAMES[b2 - 1]}"

    slide, slide_f, slide_foot = _corner_slides(foot_corners_world(clip), clip.fps, th)
    foot_name = T.BODY_NAMES[FEET[slide_foot]]
    problems = []
    if pen > th.max_penetration:
        problems.append(
            f"{pen_g} goes {pen * 100:.1f} cm below the floor at frame {pen_f} "
            f"(limit {th.max_penetration * 100:.0f} cm)"
        )
    if slide > th.max_slide:
        problems.append(
            f"{foot_name} slides {slide * 100:.1f} cm while in contact (by frame {slide_f}; limit "
            f"{th.max_slide * 100:.0f} cm)"
        )
    if selfpen > th.max_self_penetration:
        problems.append(
            f"self-penetration {selfpen * 100:.1f} cm at {self_desc} (limit {th.max_self_penetration * 100:.0f} cm)"
        )
    if max_excess > th.max_limit_excess_deg:
        problems.append(f"{T.DOF_NAMES[jd]} exceeds its joint limit by {max_excess:.1f} deg")
    return PlausibilityReport(
        name=clip.name,
        num_frames=n,
        max_penetration=pen,
        penetration_frame=pen_f,
        penetration_geom=pen_g,
        max_slide=slide,
        slide_frame=slide_f,
        slide_foot=foot_name,
        max_self_penetration=selfpen,
        self_contact=self_desc,
        max_limit_excess_deg=max_excess,
        limit_dof=T.DOF_NAMES[jd],
        problems=problems,
    )
