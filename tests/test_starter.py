"""The procedural starter motions: the checked-in files match the generator, and every clip is plausible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.motion import starter as S
from anyskill_tui.core.motion.clip import read_clip
from anyskill_tui.core.motion.plausibility import check_clip, clip_qpos, foot_corners_world

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO / "configs" / "motions" / "starter.yaml"
REQUIRED = {
    "stand_idle", "walk_in_place", "walk_forward", "squat", "raise_right_arm", "raise_both_arms", "bow",
    "front_kick", "turn_in_place", "crouch", "jump",
}  # fmt: skip


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("starter")
    S.write_starter(out)
    return out


def _entries() -> list[dict]:
    return yaml.safe_load(DATASET.read_text())["motions"]


def test_dataset_lists_the_clips():
    entries = _entries()
    names = {Path(e["file"]).stem for e in entries}
    assert len(entries) >= 10 and names >= REQUIRED
    for e in entries:
        assert (DATASET.parent / e["file"]).is_file()
        assert e["weight"] > 0 and isinstance(e["text"], str) and e["text"]


def _flat_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every numeric array stored in a clip file, by its key path."""
    from anyskill_tui.core.motion.clip import _read_npy_object

    out: dict[str, np.ndarray] = {}

    def walk(v, key):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{key}/{k}")
        elif isinstance(v, np.ndarray) and v.dtype.kind in "fiu":
            out[key] = v

    walk(_read_npy_object(path), "")
    return out


def test_checked_in_files_match_the_generator(generated):
    for e in _entries():
        mine = read_clip(DATASET.parent / e["file"])
        fresh = read_clip(generated / Path(e["file"]).name)
        assert mine.fps == fresh.fps == 30
        np.testing.assert_array_equal(mine.local_rot, fresh.local_rot, err_msg=e["file"])
        np.testing.assert_array_equal(mine.root_pos, fresh.root_pos, err_msg=e["file"])
        # every other stored array too (velocities...), to float32 round-off: values of ~1e-18 differ in their
        # last bits between numpy/torch builds, so the files are not byte-identical on every machine
        a, b = _flat_arrays(DATASET.parent / e["file"]), _flat_arrays(generated / Path(e["file"]).name)
        assert a.keys() == b.keys() and len(a) >= 2
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=f"{e['file']}: {k}")
    assert (generated / "starter.yaml").read_text().count("- file:") == len(_entries())


@pytest.fixture(scope="module")
def clips() -> list:
    return [read_clip(DATASET.parent / e["file"]) for e in _entries()]


def test_durations(clips):
    for c in clips:
        assert 2.0 <= c.duration <= 4.0, c.name


def test_plausibility(clips):
    from anyskill_tui.core.character.model import load_model

    model = load_model()
    for c in clips:
        rep = check_clip(c, model=model)
        assert rep.ok, f"{c.name}: {rep.problems}"
        assert rep.max_penetration <= 0.01 and rep.max_slide < 0.02 and rep.max_self_penetration <= 0.01


def test_joint_angles_within_limits(clips):
    lo, hi = T.dof_limits()
    for c in clips:
        q = clip_qpos(c)[:, 7:]
        assert (q >= lo - 1e-3).all() and (q <= hi + 1e-3).all(), c.name
        # the 1-DoF joints are pure y rotations, as the hinges require
        for j in T.JOINTS:
            if j.num_dofs == 1:
                assert np.abs(c.local_rot[:, j.body, [0, 2]]).max() < 1e-6, (c.name, j.name)


def test_clips_do_what_their_names_say(clips):
    by = {c.name: c for c in clips}
    b = T.BODY_INDEX

    def pos(name):
        return by[name].body_pos()

    # jump: a flight phase with both feet clear of the floor by > 10 cm
    feet = foot_corners_world(by["jump"])[..., 2].min(axis=(1, 2))
    assert feet.max() > 0.10
    # walk forward: moves > 1 m along +x
    assert by["walk_forward"].root_pos[-1, 0] - by["walk_forward"].root_pos[0, 0] > 1.0
    # squat and crouch: the pelvis drops by > 30 cm
    for n in ("squat", "crouch"):
        assert by[n].root_pos[:, 2].min() < by[n].root_pos[0, 2] - 0.3, n
    # bow: the trunk (torso -> head) tilts to about a right angle
    p = pos("bow")
    trunk = p[:, b["head"]] - p[:, b["torso"]]
    angle = np.degrees(np.arctan2(np.linalg.norm(trunk[:, :2], axis=1), trunk[:, 2]))
    assert 75 < angle.max() < 110
    # raise arms: hands above the head
    p = pos("raise_right_arm")
    assert (p[:, b["right_hand"], 2] > p[:, b["head"], 2] + 0.2).any()
    assert (p[:, b["left_hand"], 2] < p[:, b["pelvis"], 2]).all()
    p = pos("raise_both_arms")
    both = np.minimum(p[:, b["right_hand"], 2], p[:, b["left_hand"], 2])
    assert (both > p[:, b["head"], 2] + 0.1).any()
    # kick: the right foot rises above the pelvis height minus 15 cm, in front of the body
    p = pos("front_kick")
    rel = p[:, b["right_foot"]] - p[:, b["pelvis"]]
    assert (rel[:, 2] > -0.15).any() and rel[:, 0].max() > 0.6
    # turn: the heading changes by > 90 deg
    import torch

    from anyskill_tui.core.motion.quat import heading

    h = heading(torch.as_tensor(by["turn_in_place"].local_rot[:, 0]))
    assert abs(float(h[-1] - h[0])) > np.radians(90)
