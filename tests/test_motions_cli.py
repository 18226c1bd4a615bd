"""`anyskill motions ...`: info, validate, view, import, starter; one-line errors with exit code 1."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from anyskill_tui.cli import app
from anyskill_tui.core.motion.clip import read_clip

sys.path.insert(0, str(Path(__file__).parent))
from test_bvh import TEST_FRAMES, write_test_bvh  # noqa: E402

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
STARTER = REPO / "configs" / "motions" / "starter"


def run(*args: str):
    return runner.invoke(app, ["motions", *args])


def _error_line(r) -> str:
    text = r.stderr if hasattr(r, "stderr") else r.output
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines, r.output
    return lines[-1]


@pytest.fixture()
def clip_file(tmp_path) -> Path:
    dst = tmp_path / "bow.npy"
    shutil.copy(STARTER / "bow.npy", dst)
    return dst


def test_info_clip_and_dataset(clip_file):
    r = run("info", str(clip_file))
    assert r.exit_code == 0, r.output
    assert "bow" in r.stdout and "91" in r.stdout
    r = run("info", str(REPO / "configs" / "motions" / "starter.yaml"), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["totals"]["clips"] == len(data["clips"]) >= 10
    bow = next(c for c in data["clips"] if c["name"] == "bow")
    assert bow["frames"] == 91 and bow["fps"] == 30 and abs(bow["duration_s"] - 3.0) < 1e-6
    assert abs(sum(c["weight"] for c in data["clips"]) - 1.0) < 1e-4


def test_validate_good_and_bad(clip_file, tmp_path):
    r = run("validate", str(clip_file), "--physical")
    assert r.exit_code == 0, r.output
    assert "ok" in r.stderr and "bow" in r.stderr
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 4)))
    r = run("validate", str(bad))
    assert r.exit_code == 1
    assert "plain numeric array" in r.stderr and "FAIL bad" in r.stderr
    assert _error_line(r).startswith("error: 1 of 1 clip(s) failed")
    # a dataset with one bad entry: per-clip lines, exit 1
    ds = tmp_path / "ds.yaml"
    ds.write_text("motions:\n  - file: bow.npy\n    weight: 1\n  - file: bad.npy\n    weight: 1\n")
    r = run("validate", str(ds))
    assert r.exit_code == 1 and "ok   bow" in r.stderr and "FAIL bad" in r.stderr


def test_validate_physical_catches_a_floor_penetration(clip_file, tmp_path):
    from anyskill_tui.core.motion.clip import write_clip

    c = read_clip(clip_file)
    c.root_pos[:, 2] -= 0.05
    sunk = write_clip(tmp_path / "sunk.npy", c)
    assert run("validate", str(sunk)).exit_code == 0
    r = run("validate", str(sunk), "--physical")
    assert r.exit_code == 1 and "below the floor" in r.stderr


def test_errors_are_one_line(tmp_path, clip_file):
    r = run("info", str(tmp_path / "missing.npy"))
    assert r.exit_code == 1 and _error_line(r).startswith("error:") and "not found" in r.stderr
    assert "Traceback" not in r.output
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    r = run("info", str(bad))
    assert r.exit_code == 1 and "not a readable NumPy" in _error_line(r)
    r = run("view", str(clip_file), "--out", str(tmp_path / "x.avi"))
    assert r.exit_code == 1 and "unsupported extension" in _error_line(r)
    r = run("import", str(tmp_path / "nope.bvh"))
    assert r.exit_code == 1 and "not found" in _error_line(r)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_view_writes_a_decodable_video(clip_file, tmp_path, suffix):
    import imageio.v3 as iio

    out = tmp_path / f"bow{suffix}"
    r = run("view", str(clip_file), "--out", str(out), "--size", "96")
    assert r.exit_code == 0, r.output
    frames = iio.imread(out, index=None) if suffix == ".gif" else np.stack(list(iio.imiter(out)))
    assert frames.shape[0] == 91
    assert frames.shape[1:3] == (96, 96)
    assert frames[..., :3].std() > 5  # not a blank image


def test_import_bvh(tmp_path):
    bvh = write_test_bvh(tmp_path / "walk.bvh", TEST_FRAMES)
    r = run("import", str(bvh))
    assert r.exit_code == 0, r.output
    clip = read_clip(tmp_path / "walk.npy")
    assert clip.num_frames == 3 and clip.fps == 30
    out = tmp_path / "sub" / "w60.npy"
    r = run("import", str(bvh), "--fps", "60", "--out", str(out), "--skeleton", "cmu")
    assert r.exit_code == 0, r.output
    assert read_clip(out).num_frames == 5
    r = run("import", str(bvh), "--out", str(tmp_path / "w.txt"))
    assert r.exit_code == 1 and "unsupported extension" in _error_line(r)


def test_starter_command(tmp_path):
    r = run("starter", "--out", str(tmp_path / "s"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s" / "starter.yaml").is_file()
    # the shipped clips are what the command regenerates (compared as clips: the pickled bytes of a float can
    # differ in its last bit between numpy/torch builds)
    for f in STARTER.glob("*.npy"):
        a, b = read_clip(tmp_path / "s" / f.name), read_clip(f)
        assert a.fps == b.fps and a.num_frames == b.num_frames
        np.testing.assert_allclose(a.local_rot, b.local_rot, rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.root_pos, b.root_pos, rtol=0, atol=1e-6)
