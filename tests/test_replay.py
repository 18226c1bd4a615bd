"""Replay: videos (mp4/gif) of tiny checkpoints, the motion export round trip, determinism, the skill control loop,
the TUI frame source and exports, the viewer's no-display error, and resolving SKILL|RUN|CHECKPOINT."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from anyskill_tui.cli import app
from anyskill_tui.core.replay import resolve_target
from anyskill_tui.core.replay.export import run_replay
from anyskill_tui.core.replay.frames import compose_frame, frame_source, grid_shape
from anyskill_tui.core.replay.rollout import ReplayOptions, Rollout, load_policy, replay_camera
from anyskill_tui.core.replay.viewer import NO_DISPLAY_MESSAGE
from anyskill_tui.errors import NotFoundError, UserError

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
PX = 48  # tile size of most tests: rendering costs ~30 ms per tile on the CPU here


def _read_video(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return np.asarray(iio.imread(path, index=None))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random LLC (slim policy file) and a tiny skill checkpoint on it."""
    from anyskill_tui.core.jobs.checkpoints import save_checkpoint
    from anyskill_tui.core.learn.llc_policy import random_llc_policy, save_llc_policy
    from anyskill_tui.core.learn.skill_policy import SKILL_FORMAT, SkillPolicy

    d = tmp_path_factory.mktemp("ckpts")
    llc = save_llc_policy(d / "llc.pt", random_llc_policy(seed=0, hidden=(32, 32)))
    torch.manual_seed(0)
    hlc = SkillPolicy(hidden=(16,), prompts=["wave both arms"], llc_path=str(llc))
    skill = save_checkpoint(
        d / "skill.pt",
        {
            "format": SKILL_FORMAT,
            "prompts": ["wave both arms"],
            "prompt_weights": [1.0],
            "llc_path": str(llc),
            "llc_steps": 5,
            "config": {"network": {"actor_hidden": [16]}},
            "policy": hlc.policy_state(),
        },
        update_latest=False,
    )
    return {"llc": llc, "skill": skill}


def opts(**kw) -> ReplayOptions:
    kw.setdefault("camera", replay_camera(PX))
    return ReplayOptions(**kw)


# -- videos ----------------------------------------------------------------------------------------------


def test_cli_writes_mp4_with_frame_count_and_grid_size(ckpts, tmp_path: Path) -> None:
    out = tmp_path / "r.mp4"
    args = ["replay", str(ckpts["llc"]), "--seconds", "0.3", "--envs", "3", "--size", str(PX), "--out", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, (r.output, r.exception)
    assert f"wrote {out} (9 frames, {2 * PX}x{2 * PX}" in " ".join(r.output.split())
    v = _read_video(out)
    assert v.shape == (9, 2 * PX, 2 * PX, 3)  # 3 envs: a 2x2 grid, one cell empty
    assert v[:, PX + 4 : -4, PX + 4 : -4].max() < 20  # the empty cell stays black


def test_gif_and_non_square_frame_source(ckpts, tmp_path: Path) -> None:
    pol = load_policy(ckpts["llc"])
    res = run_replay(pol, opts(seconds=0.2, envs=2, random_latent=True), video=tmp_path / "r.gif")
    v = _read_video(tmp_path / "r.gif")
    assert v.shape[:3] == (6, PX, 2 * PX) and res.num_frames == 6 and res.frame_size == (2 * PX, PX)
    # the frame source renders at exactly the size asked, (width, height)
    src = frame_source(ckpts["llc"], size=(64, 40), seconds=0.1, seed=3)
    frames = list(src.frames((64, 40)))
    assert len(frames) == len(src) == 3 and frames[0].shape == (40, 64, 3) and frames[0].dtype == np.uint8


def test_caption_and_grid_helpers() -> None:
    assert [grid_shape(k) for k in (1, 2, 3, 4, 5, 9, 10)] == [(1, 1), (1, 2), (2, 2), (2, 2), (2, 3), (3, 3), (3, 4)]
    imgs = np.full((2, 64, 64, 3), 128, np.uint8)
    f = compose_frame(imgs, ["jump forward", "x"], index=7, fps=30.0, total=10)
    assert f.shape == (64, 128, 3)
    assert (f[:8] != 128).any() and (f[-14:-2] != 128).any()  # title band and time band drawn
    assert f[20:40, 20:40].min() == 128  # the middle of the image is untouched


# -- motion export ---------------------------------------------------------------------------------------


def test_motion_export_round_trips_through_the_motion_loader(ckpts, tmp_path: Path) -> None:
    from anyskill_tui.core.motion.clip import read_clip
    from anyskill_tui.core.motion.dataset import load_dataset
    from anyskill_tui.core.motion.motion_lib import MotionLib

    out = tmp_path / "skill_motion.npy"
    res = run_replay(load_policy(ckpts["skill"]), opts(seconds=0.5, envs=2), motion=out)
    assert res.motion == out and res.num_frames == 15
    raw = np.load(out, allow_pickle=True).item()  # our own file
    assert raw["is_local"] is False and raw["fps"] == 30 and raw["__name__"] == "SkeletonMotion"
    assert raw["position"].shape == (15, 15, 3)
    np.testing.assert_allclose(raw["position"], res.body_pos, atol=1e-4)
    np.testing.assert_allclose(raw["root_translation"]["arr"], res.body_pos[:, 0], atol=1e-5)
    # global rotations as stored = the simulator's body rotations (up to sign)
    q, q_sim = raw["rotation"]["arr"].astype(np.float64), res.body_rot
    assert np.abs(np.abs((q * q_sim).sum(-1)) - 1.0).max() < 1e-5

    clip = read_clip(out)
    assert clip.num_frames == 15 and clip.fps == 30
    np.testing.assert_allclose(clip.body_pos(), res.body_pos, atol=1e-4)
    lib = MotionLib(load_dataset(out))
    st = lib.state(torch.tensor([0, 0]), torch.tensor([0.0, 14 / 30]))
    np.testing.assert_allclose(st.body_pos.numpy()[0], res.body_pos[0], atol=1e-4)
    np.testing.assert_allclose(st.body_pos.numpy()[1], res.body_pos[-1], atol=1e-4)


def test_cli_export_motion_only(ckpts, tmp_path: Path) -> None:
    out = tmp_path / "m.npy"
    r = runner.invoke(app, ["replay", str(ckpts["llc"]), "--seconds", "0.2", "--export-motion", str(out)])
    assert r.exit_code == 0, (r.output, r.exception)
    assert out.is_file() and not list(tmp_path.glob("*.mp4"))
    bad = runner.invoke(app, ["replay", str(ckpts["llc"]), "--export-motion", str(tmp_path / "m.bvh")])
    assert bad.exit_code == 1 and "write a .npy clip" in bad.output


# -- determinism and the control loops -------------------------------------------------------------------


def _frames(ckpt: Path, **kw) -> np.ndarray:
    return np.stack(list(frame_source(ckpt, size=(PX, PX), **kw).frames((PX, PX))))


def test_same_seed_same_frames_other_seed_differs(ckpts) -> None:
    a = _frames(ckpts["llc"], seconds=0.2, seed=1, random_latent=True)
    b = _frames(ckpts["llc"], seconds=0.2, seed=1, random_latent=True)
    c = _frames(ckpts["llc"], seconds=0.2, seed=2, random_latent=True)
    assert np.array_equal(a, b)
    assert not np.array_equal(a[-1], c[-1])
    # clip latents: the seed picks the encoded window
    d = _frames(ckpts["llc"], seconds=0.2, seed=1, clip="walk_forward")
    e = _frames(ckpts["llc"], seconds=0.2, seed=1, clip="walk_forward")
    assert np.array_equal(d, e)


def test_llc_latents_clip_and_random(ckpts, tmp_path: Path) -> None:
    pol = load_policy(ckpts["llc"])
    with Rollout(pol, opts(seconds=0.1, envs=3)) as ro:  # default: env k takes clip k of the starter set
        assert ro.labels == ["stand_idle", "walk_in_place", "walk_forward"]
        z = [f.z for f in ro.frames(render=False)]
    assert torch.allclose(z[0].norm(dim=-1), torch.ones(3), atol=1e-5) and torch.equal(z[0], z[-1])
    with Rollout(pol, opts(seconds=2.2, envs=2, random_latent=True)) as ro:
        z = torch.stack([f.z for f in ro.frames(render=False)])  # (66, 2, 64)
    assert torch.equal(z[0], z[59]) and not torch.equal(z[59], z[60])  # resampled every 2 s (60 steps)
    assert not torch.equal(z[0, 0], z[0, 1])
    # an LLC that names its motion set (as `llc_train` checkpoints do: "motions"): its clips first, then the starter set
    from anyskill_tui.core.learn.llc_policy import save_llc_policy
    from anyskill_tui.core.replay.rollout import starter_motion_file

    jump = starter_motion_file().parent / "starter" / "jump.npy"
    own = save_llc_policy(tmp_path / "own.pt", pol.llc, extra={"motions": str(jump)})
    pol2 = load_policy(own)
    assert pol2.motion_file == jump
    assert Rollout(pol2, opts(envs=2)).labels == ["jump", "jump"]
    assert Rollout(pol2, opts(clip="SQUAT")).labels == ["squat"]
    with pytest.raises(UserError, match=r"no clip of that name .*clips: stand_idle"):
        Rollout(pol, opts(clip="moonwalk"))
    with pytest.raises(UserError, match="--prompt applies to skill checkpoints"):
        Rollout(pol, opts(prompt="jump"))
    with pytest.raises(UserError, match="exclude each other"):
        Rollout(pol, opts(clip="squat", random_latent=True))


def test_skill_rollout_follows_the_hlc_control_loop(ckpts) -> None:
    from anyskill_tui.core.learn.skill_policy import SkillPolicy, latent_from_action

    pol = load_policy(ckpts["skill"])
    assert pol.kind == "skill" and pol.llc_steps == 5 and pol.prompts == ["wave both arms"]
    with Rollout(pol, opts(seconds=0.4, envs=2, seed=5)) as ro:
        assert ro.labels == ["wave both arms"] * 2
        frames = list(ro.frames(render=False))
    z = torch.stack([f.z for f in frames])  # (12, 2, 64)
    for i in range(12):  # a decision every 5 LLC steps, held in between
        assert torch.equal(z[i], z[i - i % 5])
    hlc, _ = SkillPolicy.load(ckpts["skill"])
    with Rollout(pol, opts(seconds=0.1, envs=1)) as ro1:
        obs0 = ro1.env.obs.clone()
        z1 = next(iter(ro1.frames(render=False))).z
    assert torch.allclose(z1[0], latent_from_action(hlc.act(obs0))[0], atol=1e-6)
    assert torch.allclose(z[0, 0], z1[0], atol=1e-6)  # env 0 is deterministic whatever the number of envs
    assert not torch.allclose(z[0, 1], z[0, 0])  # env 1 samples a ~ N(mu, 0.1^2)
    with pytest.raises(UserError, match="not a prompt of skill.pt"):
        Rollout(pol, opts(prompt="jump"))
    with pytest.raises(UserError, match="apply to LLC checkpoints"):
        Rollout(pol, opts(random_latent=True))


# -- TUI hooks -------------------------------------------------------------------------------------------


def test_tui_hooks_frame_source_and_exports(ckpts, tmp_path: Path) -> None:
    from anyskill_tui.core import replay
    from anyskill_tui.core.jobs.checkpoints import checkpoint_dir
    from anyskill_tui.tui_services import FrameSource

    src = replay.frame_source(ckpts["skill"], seconds=0.1)
    assert isinstance(src, FrameSource) and not callable(src) and src.fps == 30.0 and len(src) == 3
    frames = list(src.frames((40, 40)))
    assert [f.shape for f in frames] == [(40, 40, 3)] * 3 and src.name == "wave both arms"
    assert all(np.array_equal(a, b) for a, b in zip(frames, src.frames((40, 40)), strict=True))  # cached
    # the Skill screen calls export_video(ckpt) / export_motion(ckpt): they write beside the run
    run_dir = tmp_path / "runs" / "7"
    ck = checkpoint_dir(run_dir) / "ckpt_00000010.pt"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(ckpts["skill"].read_bytes())
    v = replay.export_video(ck, seconds=0.1, size=PX)
    m = replay.export_motion(ck, seconds=0.1)
    assert v == run_dir / "exports" / "ckpt_00000010.mp4" and _read_video(v).shape == (3, PX, PX, 3)
    assert m == run_dir / "exports" / "ckpt_00000010.npy" and m.is_file()


def test_package_import_is_light() -> None:
    code = (
        "import anyskill_tui.core.replay, sys; print([m for m in ('torch', 'mujoco', 'sqlmodel') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


# -- the viewer window -----------------------------------------------------------------------------------


def test_window_without_display_fails_clearly(ckpts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    r = runner.invoke(app, ["replay", str(ckpts["llc"]), "--window"])
    assert r.exit_code == 1
    assert NO_DISPLAY_MESSAGE in " ".join(r.output.split())
    assert "DISPLAY/WAYLAND_DISPLAY is unset" in NO_DISPLAY_MESSAGE and "--out FILE.mp4" in NO_DISPLAY_MESSAGE


# -- resolving the target --------------------------------------------------------------------------------


@pytest.fixture
def library(ckpts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A workspace: skill 1 with two runs (scores 0.2 @ step 10 of run 1, 0.3 @ step 5 of run 1, none in run 2),
    skill 2 without metrics, skill 3 without checkpoints."""
    from anyskill_tui.store.library import Library
    from anyskill_tui.workspace import init_workspace

    monkeypatch.delenv("ANYSKILL_HOME", raising=False)
    ws = init_workspace(tmp_path / "ws")[0]
    files = {}
    for name in ("a5", "a10", "b20", "c1", "c2"):
        p = ws.root / "runs" / name / "checkpoints" / f"{name}.pt"
        p.parent.mkdir(parents=True)
        p.write_bytes(ckpts["skill"].read_bytes())
        files[name] = p
    with Library(ws.db_path) as lib:
        s1 = lib.add_skill("wave both arms")
        s2 = lib.add_skill("jump forward")
        s3 = lib.add_skill("do a cartwheel")
        r1 = lib.create_run("skill", "cpu", skill=s1.id)
        lib.add_checkpoint(r1.id, str(files["a5"]), step=5, metrics={"clip_score": 0.3})
        lib.add_checkpoint(r1.id, str(files["a10"]), step=10, metrics={"clip_score": 0.2})
        r2 = lib.create_run("skill", "cpu", skill=s1.id)
        lib.add_checkpoint(r2.id, str(files["b20"]), step=20)
        r3 = lib.create_run("skill", "cpu", skill=s2.id)
        lib.add_checkpoint(r3.id, "runs/c1/checkpoints/c1.pt", step=1)  # relative to the workspace
        lib.add_checkpoint(r3.id, str(files["c2"]), step=2)
        r4 = lib.create_run("skill", "cpu", skill=s3.id)
    return ws, files, {"r1": r1.id, "r2": r2.id, "r3": r3.id, "r4": r4.id, "s3": s3.id}


def test_resolve_skill_run_and_checkpoint(library) -> None:
    ws, files, ids = library
    t = resolve_target("1", ws.root)
    assert t.checkpoint == files["a5"] and t.label == "wave both arms" and "CLIP 0.300" in t.how
    assert resolve_target("Wave  Both arms", ws.root).checkpoint == files["a5"]  # by text, normalised
    assert resolve_target("skill:jump forward", ws.root).checkpoint == files["c2"]  # no scores: latest
    assert resolve_target(f"run:{ids['r1']}", ws.root).checkpoint == files["a10"]  # a run: its latest
    assert resolve_target(f"#{ids['r2']}", ws.root).checkpoint == files["b20"]
    assert resolve_target(str(files["c1"])).checkpoint == files["c1"]  # a file: no workspace needed
    ck = ws.root / "runs" / "x" / "checkpoints" / "ckpt_00000003.pt"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(files["c1"].read_bytes())
    assert resolve_target(str(ck.parent.parent)).checkpoint == ck  # a run folder: its latest complete file


def test_resolve_errors(library, tmp_path: Path) -> None:
    ws, files, ids = library
    with pytest.raises(NotFoundError, match="no skill with id 99"):
        resolve_target("99", ws.root)
    with pytest.raises(NotFoundError, match="no skill with text 'moonwalk'"):
        resolve_target("moonwalk", ws.root)
    with pytest.raises(NotFoundError, match="no run with id 42"):
        resolve_target("run:42", ws.root)
    with pytest.raises(
        UserError, match=r"skill 3 has no checkpoint: train it with `anyskill train \"do a cartwheel\"`"
    ):
        resolve_target("3", ws.root)
    with pytest.raises(UserError, match=f"run {ids['r4']} has no checkpoint yet"):
        resolve_target(f"run:{ids['r4']}", ws.root)
    with pytest.raises(UserError, match="does not exist"):
        resolve_target(str(tmp_path / "nope.pt"), ws.root)
    files["b20"].unlink()  # a recorded file that is gone is skipped
    with pytest.raises(UserError, match=f"run {ids['r2']} has no checkpoint yet"):
        resolve_target(f"#{ids['r2']}", ws.root)
    assert resolve_target("1", ws.root).checkpoint == files["a5"]


def test_cli_resolution_and_unreadable_files(library, ckpts, tmp_path: Path) -> None:
    ws, files, ids = library

    def run(*args: str):
        return runner.invoke(app, ["--workspace", str(ws.root), "replay", *args])

    out = tmp_path / "s.mp4"
    r = run("wave both arms", "--seconds", "0.1", "--size", str(PX), "--out", str(out))
    assert r.exit_code == 0, (r.output, r.exception)
    assert "best checkpoint (run 1, step 5, CLIP 0.300)" in r.output and _read_video(out).shape[0] == 3
    r = run("3")
    assert r.exit_code == 1 and "skill 3 has no checkpoint: train it with `anyskill train" in r.output
    r = run("77")
    assert r.exit_code == 1 and "no skill with id 77" in r.output
    r = run("run:42")
    assert r.exit_code == 1 and "no run with id 42" in r.output
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    r = run(str(garbage))
    assert r.exit_code == 1 and "cannot be read" in r.output and "garbage.pt" in r.output
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    r = run(str(foreign))
    assert r.exit_code == 1 and "is not an anyskill checkpoint" in " ".join(r.output.split())
    r = run(str(files["c1"]), "--out", str(tmp_path / "x.avi"))
    assert r.exit_code == 1 and "write a .mp4 or a .gif" in r.output
    r = runner.invoke(app, ["replay", "--help"])
    assert r.exit_code == 0 and "--export-motion" in r.output and "--random-latent" in r.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without a CUDA GPU")
def test_gpu_engine_without_gpu_is_a_clear_error(ckpts) -> None:
    r = runner.invoke(app, ["replay", str(ckpts["llc"]), "--engine", "gpu"])
    assert r.exit_code == 1 and "use --engine cpu" in r.output
