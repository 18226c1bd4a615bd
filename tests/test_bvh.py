"""BVH import and retargeting: a CMU-style file written here, with known offsets and channel angles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.motion.bvh_import import BvhError, import_bvh
from anyskill_tui.core.motion.clip import read_clip, write_clip

INCH = 0.0254  # the test file's unit, in metres
TOL = 0.005  # m, body positions
B = T.BODY_INDEX


def _bvh(ours) -> str:
    """An offset in our axes (metres) as BVH text (x left, y up, z forward; inches)."""
    x, y, z = ours
    return f"{y / INCH:.6f} {z / INCH:.6f} {x / INCH:.6f}"


def _joint(name: str, offset, children: str, indent: str, end=None, root: bool = False) -> str:
    kw = "ROOT" if root else "JOINT"
    ch = (
        "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
        if root
        else ("CHANNELS 3 Zrotation Xrotation Yrotation")
    )
    s = f"{indent}{kw} {name}\n{indent}{{\n{indent}  OFFSET {_bvh(offset)}\n{indent}  {ch}\n"
    if end is not None:
        s += f"{indent}  End Site\n{indent}  {{\n{indent}    OFFSET {_bvh(end)}\n{indent}  }}\n"
    s += children
    s += f"{indent}}}\n"
    return s


#: joints in file order (the MOTION columns follow it)
JOINT_ORDER = [
    "Hips", "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "RightUpLeg", "RightLeg", "RightFoot",
    "RightToeBase", "Spine", "Spine1", "Neck", "Head", "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand",
    "RightShoulder", "RightArm", "RightForeArm", "RightHand",
]  # fmt: skip


def hierarchy() -> str:
    """A CMU-named T-pose skeleton with our character's proportions (in inches, Y-up, facing +Z)."""
    lt = T.LOCAL_TRANSLATION

    def leg(side: str, sy: float, ind: str) -> str:
        toe = _joint(f"{side}ToeBase", (0.12, 0, -0.03), "", ind + "      ", end=(0.05, 0, 0))
        foot = _joint(f"{side}Foot", lt[B["left_foot"]], toe, ind + "    ")
        shin = _joint(f"{side}Leg", lt[B["left_shin"]], foot, ind + "  ")
        return _joint(f"{side}UpLeg", (0, sy * 0.084887, 0), shin, ind)

    def arm(side: str, sy: float, ind: str) -> str:
        hand = _joint(f"{side}Hand", (0, sy * 0.258947, 0), "", ind + "      ", end=(0, sy * 0.08, 0))
        fore = _joint(f"{side}ForeArm", (0, sy * 0.274788, 0), hand, ind + "    ")
        upper = _joint(f"{side}Arm", (0, sy * 0.12311, 0), fore, ind + "  ")
        return _joint(f"{side}Shoulder", (-0.02405, sy * 0.06, 0.2435), upper, ind)

    head = _joint("Head", (0, 0, 0.103894), "", "        ", end=(0, 0, 0.17))
    neck = _joint("Neck", (0, 0, 0.12), head, "      ")
    spine1 = _joint("Spine1", (0, 0, 0.116151), neck + arm("Left", 1, "      ") + arm("Right", -1, "      "), "    ")
    spine = _joint("Spine", (0, 0, 0.12), spine1, "  ")
    hips = _joint("Hips", (0, 0, 0), leg("Left", 1, "  ") + leg("Right", -1, "  ") + spine, "", root=True)
    return "HIERARCHY\n" + hips


def write_test_bvh(path: Path, frames: list[dict[str, tuple[float, float, float]]], frame_time=1 / 30) -> Path:
    """Write the test skeleton with the given frames: {joint: (z, x, y) rotation degrees, "pos": (x, y, z) in}."""
    rows = []
    for f in frames:
        vals = []
        for j in JOINT_ORDER:
            if j == "Hips":
                vals += list(f.get("pos", (0.0, 0.0, 0.0)))
            vals += list(f.get(j, (0.0, 0.0, 0.0)))
        rows.append(" ".join(f"{v:.6f}" for v in vals))
    text = hierarchy() + f"MOTION\nFrames: {len(frames)}\nFrame Time: {frame_time:.7f}\n" + "\n".join(rows) + "\n"
    path.write_text(text)
    return path


HIPS_POS_IN = (10.0, 35.0, 20.0)  # BVH x (left), y (up), z (forward), inches
TEST_FRAMES = [
    {"pos": HIPS_POS_IN},  # T-pose
    {"pos": HIPS_POS_IN, "RightArm": (90.0, 0.0, 0.0), "LeftLeg": (0.0, 60.0, 0.0)},  # right arm down, left knee 60
    {"pos": HIPS_POS_IN, "Hips": (0.0, 0.0, 90.0), "RightArm": (90.0, 0.0, 0.0), "LeftArm": (-90.0, 0.0, 0.0)},
]


@pytest.fixture()
def test_bvh(tmp_path) -> Path:
    return write_test_bvh(tmp_path / "cmu_test.bvh", TEST_FRAMES)


def _zero_pose_positions() -> np.ndarray:
    """Body origins of our zero pose relative to the pelvis (15, 3)."""
    pos = np.zeros((T.NUM_BODIES, 3))
    for i in range(1, T.NUM_BODIES):
        pos[i] = pos[T.PARENT_INDICES[i]] + T.LOCAL_TRANSLATION[i]
    return pos


def test_scale_axes_and_ground(test_bvh):
    clip = import_bvh(test_bvh)
    assert clip.fps == 30 and clip.num_frames == 3
    # auto scale: the file's leg is in inches -> metres per unit = 0.0254
    # Y-up -> Z-up: BVH (x, y, z) = (10, 35, 20) in -> ours (x, y) = (20, 10) * 0.0254; z from ground contact
    np.testing.assert_allclose(clip.root_pos[0, :2], (20 * INCH, 10 * INCH), atol=1e-4)
    # ground: the straight legs of frame 0 stand on the floor (ankle 0.05 above the sole)
    leg = 0.421546 + 0.40987 + 0.05
    assert abs(clip.root_pos[0, 2] - leg) < 1e-3
    # facing: a BVH hips yaw of +90 deg (turn from +Z to +X, its left) turns ours from +x to +y
    rot = clip.global_rot()
    x_axis = _rotate(rot[2, 0], (1.0, 0.0, 0.0))
    np.testing.assert_allclose(x_axis, (0.0, 1.0, 0.0), atol=1e-4)


def test_explicit_scale(test_bvh):
    clip = import_bvh(test_bvh, scale=0.0127)  # half the true unit: the root moves half as far
    np.testing.assert_allclose(clip.root_pos[0, :2], (20 * 0.0127, 10 * 0.0127), atol=1e-4)


def _rotate(q, v):
    x, y, z, w = q
    u = np.array([x, y, z])
    v = np.asarray(v, dtype=np.float64)
    t = 2 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def test_tpose_maps_to_arms_horizontal(test_bvh):
    clip = import_bvh(test_bvh)
    pos = clip.body_pos()[0] - clip.root_pos[0]
    zero = _zero_pose_positions()
    # legs and trunk as in our zero pose
    for b in ("torso", "head", "right_foot", "left_foot", "right_shin"):
        np.testing.assert_allclose(pos[B[b]], zero[B[b]], atol=TOL, err_msg=b)
    # arms horizontal, sideways: hands at shoulder height, 0.534 m out
    for side, sy in (("left", 1), ("right", -1)):
        sh = zero[B[f"{side}_upper_arm"]]
        np.testing.assert_allclose(pos[B[f"{side}_hand"]], sh + (0, sy * (0.274788 + 0.258947), 0), atol=TOL)


def test_lowered_arm_and_bent_knee(test_bvh):
    clip = import_bvh(test_bvh)
    pos = clip.body_pos()[1] - clip.root_pos[1]
    zero = _zero_pose_positions()
    # the lowered right arm hangs in our zero pose: the hand beside the hips
    np.testing.assert_allclose(pos[B["right_hand"]], zero[B["right_hand"]], atol=TOL)
    assert abs(pos[B["right_hand"], 2]) < 0.1 and pos[B["right_hand"], 1] < -0.15
    # a 60 deg BVH knee bend is our left knee at 60 deg, the foot behind and above the straight-leg foot
    knee = clip.local_rot[1, B["left_shin"]]
    angle = np.degrees(2 * np.arctan2(knee[1], knee[3]))
    assert abs(angle - 60.0) < 0.5
    expect = zero[B["left_shin"]] + 0.40987 * np.array([-np.sin(np.pi / 3), 0, -np.cos(np.pi / 3)])
    np.testing.assert_allclose(pos[B["left_foot"]], expect, atol=TOL)
    # the other leg stays straight and on the floor
    np.testing.assert_allclose(pos[B["right_foot"]], zero[B["right_foot"]], atol=TOL)


def test_resample_and_round_trip(test_bvh, tmp_path):
    clip = import_bvh(test_bvh, fps=60)
    assert clip.fps == 60 and clip.num_frames == 5
    out = write_clip(tmp_path / "x.npy", clip)
    back = read_clip(out)
    np.testing.assert_allclose(back.root_pos, clip.root_pos)


def test_bad_files(tmp_path):
    with pytest.raises(BvhError, match="not found"):
        import_bvh(tmp_path / "missing.bvh")
    bad = tmp_path / "bad.bvh"
    bad.write_text("hello")
    with pytest.raises(BvhError, match="not a BVH"):
        import_bvh(bad)
    good = write_test_bvh(tmp_path / "g.bvh", TEST_FRAMES)
    with pytest.raises(BvhError, match="unknown skeleton"):
        import_bvh(good, skeleton="nope")
    text = good.read_text().replace("LeftForeArm", "LeftElbowThing")
    renamed = tmp_path / "r.bvh"
    renamed.write_text(text)
    with pytest.raises(BvhError, match="left_lower_arm"):
        import_bvh(renamed)
