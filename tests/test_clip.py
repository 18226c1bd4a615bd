"""Clip files: round trip, validation errors, the restricted unpickler, velocities, and motions.yaml datasets."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest
import torch

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.motion import quat as Q
from anyskill_tui.core.motion.clip import (
    Clip,
    ClipError,
    compute_velocities,
    gaussian_filter1d,
    read_clip,
    write_clip,
)
from anyskill_tui.core.motion.dataset import DatasetError, load_dataset
from anyskill_tui.paths import shared_reference_dir


def make_clip(num_frames: int = 20, fps: float = 30.0, seed: int = 0, name: str = "synthetic") -> Clip:
    g = torch.Generator().manual_seed(seed)
    e = 0.3 * torch.randn(num_frames, T.NUM_BODIES, 3, generator=g, dtype=torch.float64).cumsum(0) / num_frames
    rot = Q.euler_xyz_to_quat(e)
    rot[:, [4, 7, 10, 13]] = Q.quat_from_axis_angle(
        torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), e[:, [4, 7, 10, 13], 1]
    )
    root = torch.zeros(num_frames, 3, dtype=torch.float64)
    root[:, 0] = torch.linspace(0, 1, num_frames)
    root[:, 2] = 0.9
    return Clip(rot.numpy(), root.numpy(), fps, name)


def raw_motion_dict(clip: Clip | None = None, **override) -> collections.OrderedDict:
    """A poselib-style dict, built by hand so broken variants can be saved."""
    clip = clip or make_clip()
    d = collections.OrderedDict()
    d["rotation"] = {"arr": clip.local_rot, "context": {"dtype": "float32"}}
    d["root_translation"] = {"arr": clip.root_pos, "context": {"dtype": "float32"}}
    d["skeleton_tree"] = collections.OrderedDict(
        node_names=list(T.BODY_NAMES),
        parent_indices={"arr": np.array(T.PARENT_INDICES), "context": {"dtype": "int64"}},
        local_translation={"arr": T.LOCAL_TRANSLATION.astype(np.float32), "context": {"dtype": "float32"}},
    )
    d["is_local"] = True
    d["fps"] = 30
    d["__name__"] = "SkeletonMotion"
    for k, v in override.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def save_obj(path, obj) -> None:
    arr = np.empty((), dtype=object)
    arr[()] = obj
    np.save(path, arr, allow_pickle=True)


# ------------------------------------------------------------------------------------------------ round trip


def test_round_trip_local_identical(tmp_path):
    clip = make_clip()
    p = write_clip(tmp_path / "a.npy", clip)
    back = read_clip(p)
    assert back.local_rot.dtype == np.float32
    np.testing.assert_array_equal(back.local_rot, clip.local_rot)
    np.testing.assert_array_equal(back.root_pos, clip.root_pos)
    assert back.fps == clip.fps
    assert back.name == "a"
    vel, angvel = compute_velocities(clip)
    np.testing.assert_array_equal(back.global_vel, vel)
    np.testing.assert_array_equal(back.global_angvel, angvel)
    # and a second write/read of what was read is identical again
    p2 = write_clip(tmp_path / "b.npy", back, recompute_velocities=False)
    back2 = read_clip(p2)
    for f in ("local_rot", "root_pos", "global_vel", "global_angvel"):
        np.testing.assert_array_equal(getattr(back2, f), getattr(back, f))


def test_round_trip_global_with_position(tmp_path):
    clip = make_clip(fps=60.0)
    p = write_clip(tmp_path / "g.npy", clip, is_local=False)
    from anyskill_tui.core.motion.clip import _read_npy_object

    raw = _read_npy_object(p)
    assert raw["is_local"] is False
    assert raw["position"].shape == (clip.num_frames, 15, 3)
    back = read_clip(p)
    _q = torch.as_tensor(back.local_rot, dtype=torch.float64)
    dot = (_q * torch.as_tensor(clip.local_rot, dtype=torch.float64)).sum(-1).abs()
    assert float((1 - dot).max()) < 1e-6
    np.testing.assert_allclose(back.body_pos(), clip.body_pos(), atol=1e-5)
    assert back.fps == 60.0


def test_velocities_match_poselib_definition():
    clip = make_clip(num_frames=40)
    vel, angvel = compute_velocities(clip)
    pos = clip.body_pos()
    raw = np.gradient(pos, axis=0) * clip.fps
    # the Gaussian filter preserves a constant velocity: the root moves at constant speed in x
    np.testing.assert_allclose(vel[:, 0, 0], raw[:, 0, 0], atol=1e-5)
    assert vel.shape == angvel.shape == (40, 15, 3)
    scipy_nd = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).normal(size=(50, 15, 3))
    np.testing.assert_allclose(gaussian_filter1d(x, 2.0, 0), scipy_nd.gaussian_filter1d(x, 2, axis=0, mode="nearest"))


def test_reference_clips_read_and_velocities():
    ref = shared_reference_dir()
    if ref is None:
        pytest.skip("reference clips not available")
    for name in ("walk", "run", "jog"):
        clip = read_clip(ref / f"amp_humanoid_{name}.npy")
        assert clip.local_rot.shape[1:] == (15, 4)
        assert clip.fps == 30.0
        vel, angvel = compute_velocities(clip)
        # our recomputation reproduces the stored poselib velocities (float32 storage aside)
        np.testing.assert_allclose(vel, clip.global_vel, atol=1e-3)
        np.testing.assert_allclose(angvel, clip.global_angvel, atol=1e-3)


# ------------------------------------------------------------------------------------------------ validation


def _expect_error(path, *needles):
    with pytest.raises(ClipError) as ei:
        read_clip(path)
    msg = str(ei.value)
    assert str(path) in msg
    for n in needles:
        assert n in msg, msg
    assert ei.value.path == path
    return msg


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.npy", "not found")


def test_wrong_body_count(tmp_path):
    clip = make_clip()
    d = raw_motion_dict(clip)
    d["rotation"] = {"arr": clip.local_rot[:, :14], "context": {}}
    d["skeleton_tree"]["node_names"] = list(T.BODY_NAMES[:14])
    save_obj(tmp_path / "c.npy", d)
    msg = _expect_error(tmp_path / "c.npy", "left_foot", "Retarget")
    assert ", ".join(T.BODY_NAMES) in msg


def test_wrong_body_count_in_rotation_only(tmp_path):
    clip = make_clip()
    d = raw_motion_dict(clip, rotation={"arr": clip.local_rot[:, :14], "context": {}})
    save_obj(tmp_path / "c.npy", d)
    _expect_error(tmp_path / "c.npy", "14 bodies", "pelvis")


def test_wrong_body_names(tmp_path):
    d = raw_motion_dict()
    names = list(T.BODY_NAMES)
    names[2] = "skull"
    d["skeleton_tree"]["node_names"] = names
    save_obj(tmp_path / "n.npy", d)
    _expect_error(tmp_path / "n.npy", "skull", ", ".join(T.BODY_NAMES))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf(tmp_path, bad):
    clip = make_clip()
    rot = clip.local_rot.copy()
    rot[3, 5, 1] = bad
    save_obj(tmp_path / "x.npy", raw_motion_dict(clip, rotation={"arr": rot, "context": {}}))
    _expect_error(tmp_path / "x.npy", "NaN or inf", "rotation")
    root = clip.root_pos.copy()
    root[0, 0] = bad
    save_obj(tmp_path / "y.npy", raw_motion_dict(clip, root_translation={"arr": root, "context": {}}))
    _expect_error(tmp_path / "y.npy", "NaN or inf", "root_translation")


def test_non_unit_quaternion(tmp_path):
    clip = make_clip()
    rot = clip.local_rot.copy()
    rot[7, 11] *= 1.01
    save_obj(tmp_path / "u.npy", raw_motion_dict(clip, rotation={"arr": rot, "context": {}}))
    _expect_error(tmp_path / "u.npy", "frame 7", "body 11", "right_foot", "Normalise")
    rot = clip.local_rot.copy()
    rot[2, 0] *= 1.0005  # within tolerance
    save_obj(tmp_path / "ok.npy", raw_motion_dict(clip, rotation={"arr": rot, "context": {}}))
    read_clip(tmp_path / "ok.npy")


@pytest.mark.parametrize("fps", [None, 0, -30, "abc"])
def test_bad_fps(tmp_path, fps):
    d = raw_motion_dict(fps=fps)
    save_obj(tmp_path / "f.npy", d)
    _expect_error(tmp_path / "f.npy", "fps")


def test_single_pose_state_file(tmp_path):
    d = raw_motion_dict(fps=None, __name__="SkeletonState")
    save_obj(tmp_path / "pose.npy", d)
    _expect_error(tmp_path / "pose.npy", "fps is missing", "SkeletonState")


def test_empty_clip(tmp_path):
    d = raw_motion_dict(
        rotation={"arr": np.zeros((0, 15, 4), np.float32), "context": {}},
        root_translation={"arr": np.zeros((0, 3), np.float32), "context": {}},
    )
    save_obj(tmp_path / "e.npy", d)
    _expect_error(tmp_path / "e.npy", "empty")


def test_write_validates(tmp_path):
    clip = make_clip()
    clip.local_rot[0, 0] = np.nan
    with pytest.raises(ClipError):
        write_clip(tmp_path / "w.npy", clip)
    assert not (tmp_path / "w.npy").exists()


def test_pure_numeric_npy(tmp_path):
    np.save(tmp_path / "num.npy", np.zeros((10, 15, 4)))
    _expect_error(tmp_path / "num.npy", "plain numeric array", "SkeletonMotion")


def test_not_an_npy_file(tmp_path):
    (tmp_path / "t.npy").write_text("motions: []\n")
    _expect_error(tmp_path / "t.npy", "not a readable NumPy .npy file")


def test_object_array_not_a_dict(tmp_path):
    save_obj(tmp_path / "l.npy", [1, 2, 3])
    _expect_error(tmp_path / "l.npy", "not a motion dict")


class _Evil:
    """Writes a marker file when unpickled (a stand-in for any code execution)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


class _EvilOpen:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        import builtins

        return (builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("evil_cls", [_Evil, _EvilOpen])
def test_malicious_pickle_refused_without_side_effect(tmp_path, evil_cls):
    marker = tmp_path / "marker.txt"
    d = raw_motion_dict()
    d["rotation"] = evil_cls(str(marker))
    save_obj(tmp_path / "evil.npy", d)
    assert not marker.exists()
    msg = _expect_error(
        tmp_path / "evil.npy", "refuses to load: the pickle asks for", "which a motion clip never contains"
    )
    assert ("system" in msg) or ("exec" in msg)
    assert not marker.exists()
    if evil_cls is _EvilOpen:
        # the standard (unsafe) loader would run it: prove the file really is malicious
        np.load(tmp_path / "evil.npy", allow_pickle=True)
        assert marker.exists()


# ------------------------------------------------------------------------------------------------ datasets


def _write_yaml(path, text: str):
    path.write_text(text)
    return path


def test_dataset_yaml(tmp_path):
    (tmp_path / "clips").mkdir()
    write_clip(tmp_path / "clips" / "a.npy", make_clip(seed=1))
    write_clip(tmp_path / "clips" / "b.npy", make_clip(seed=2, num_frames=31))
    y = _write_yaml(
        tmp_path / "motions.yaml",
        "motions:\n  - file: clips/a.npy\n    weight: 3\n    text: walk\n  - file: clips/b.npy\n    weight: 1.0\n",
    )
    ds = load_dataset(y)
    assert len(ds) == 2
    np.testing.assert_allclose(ds.weights, [0.75, 0.25])
    assert ds.texts == ["walk", None]
    assert ds.files == [tmp_path / "clips" / "a.npy", tmp_path / "clips" / "b.npy"]
    assert ds.clips[1].num_frames == 31


def test_dataset_single_npy(tmp_path):
    p = write_clip(tmp_path / "one.npy", make_clip())
    ds = load_dataset(p)
    assert len(ds) == 1 and ds.weights.tolist() == [1.0] and ds.files == [p]


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("motions:\n  - file: a.npy\n  - file: missing.npy\n", ["entry 1", "missing.npy", "not found"]),
        ("motions:\n  - file: a.npy\n    weight: -1\n", ["entry 0", "weight -1"]),
        ("motions:\n  - file: a.npy\n    weight: heavy\n", ["entry 0", "not a number"]),
        ("motions:\n  - file: a.npy\n    weight: 0\n", ["all weights are 0"]),
        ("motions: [\n", ["not valid YAML"]),
        ("clips:\n  - a.npy\n", ["motions:"]),
        ("motions: []\n", ["non-empty list"]),
        ("motions:\n  - weight: 1\n", ["entry 0", "file:"]),
    ],
)
def test_dataset_errors(tmp_path, text, needles):
    write_clip(tmp_path / "a.npy", make_clip())
    y = _write_yaml(tmp_path / "motions.yaml", text)
    with pytest.raises(DatasetError) as ei:
        load_dataset(y)
    msg = str(ei.value)
    assert str(y) in msg
    for n in needles:
        assert n in msg, msg


def test_dataset_missing_yaml(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "motions.yaml")


def test_dataset_bad_clip_names_entry(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros(3))
    y = _write_yaml(tmp_path / "m.yaml", "motions:\n  - file: bad.npy\n    weight: 1\n")
    with pytest.raises(ClipError) as ei:
        load_dataset(y)
    assert "entry 0" in str(ei.value) and "bad.npy" in str(ei.value) and "m.yaml" in str(ei.value)


@pytest.mark.parametrize("fps", [np.float64(30.0), np.int64(30), np.array(30.0), 30.0])
def test_numpy_scalar_fps_accepted(tmp_path, fps):
    save_obj(tmp_path / "s.npy", raw_motion_dict(fps=fps))
    assert read_clip(tmp_path / "s.npy").fps == 30.0


def test_global_rotation_file_without_velocities(tmp_path):
    clip = make_clip()
    d = raw_motion_dict(clip, rotation={"arr": clip.global_rot().astype(np.float32), "context": {}}, is_local=False)
    d["position"] = clip.body_pos().astype(np.float32)
    save_obj(tmp_path / "g.npy", d)
    back = read_clip(tmp_path / "g.npy")
    assert back.global_vel is None and back.global_angvel is None
    np.testing.assert_allclose(back.body_pos(), clip.body_pos(), atol=1e-5)
