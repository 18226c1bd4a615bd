"""The Isaac Gym runner: the README's exact command lines, clear errors, and a run against a stand-in
``calm/run.py`` (argparse over the reference flags; writes rl_games-style summaries and .pth files)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from anyskill_tui.core.jobs import isaacgym as ig
from anyskill_tui.core.jobs import launcher, runner
from anyskill_tui.core.jobs.metrics import MetricsTail
from anyskill_tui.errors import UserError
from anyskill_tui.store.library import Library
from anyskill_tui.workspace import init_workspace

M = "/data/motions.yaml"
L = "/ckpt/Humanoid_00014500.pth"
T = "/run/texts.yaml"
C = "/ckpt/Humanoid_00000100.pth"
HLC_ENV = "calm/data/cfg/humanoid_anyskill.yaml"
SPEC = "calm/data/cfg/train/rlg/spec_anyskill.yaml"
SCENE = "calm/data/cfg/train/rlg/scene_anyskill.yaml"


def readme(text: str) -> list[str]:
    return text.split()


def test_llc_commands_match_the_readme() -> None:
    train = ig.build_command("llc", motion_file=M, track=True, headless=False)
    assert train == readme(
        f"python calm/run.py --task HumanoidAMPGetup --cfg_env calm/data/cfg/humanoid.yaml "
        f"--cfg_train calm/data/cfg/train/rlg/calm_humanoid.yaml --motion_file {M} --track"
    )
    assert ig.build_command("llc", motion_file=M, output_path="/r/output") == readme(
        f"python calm/run.py --task HumanoidAMPGetup --cfg_env calm/data/cfg/humanoid.yaml "
        f"--cfg_train calm/data/cfg/train/rlg/calm_humanoid.yaml --motion_file {M} --headless --output_path /r/output"
    )
    assert ig.build_command("llc", motion_file=M, test=True, checkpoint=L) == readme(
        f"python calm/run.py --test --task HumanoidAMPGetup --num_envs 16 --cfg_env calm/data/cfg/humanoid.yaml "
        f"--cfg_train calm/data/cfg/train/rlg/calm_humanoid.yaml --motion_file {M} --checkpoint {L}"
    )


@pytest.mark.parametrize(
    ("variant", "task", "cfg_train", "project", "arti"),
    [
        ("skill", "HumanoidSpecAnySKill", SPEC, "special_policy", ""),
        ("rigid", "HumanoidSpecAnySKillRigid", SPEC, "special_policy_scene", ""),
        ("articulated", "HumanoidSpecAnySKillArti", SCENE, "special_policy_scene", "--articulated"),
    ],
)
def test_skill_commands_match_the_readme(variant: str, task: str, cfg_train: str, project: str, arti: str) -> None:
    kw = {"motion_file": M, "llc_checkpoint": L, "text_file": T, "render": True}
    assert ig.build_command(variant, headless=False, **kw) == readme(
        f"python calm/run.py --task {task} --cfg_env {HLC_ENV} --cfg_train {cfg_train} --motion_file {M} "
        f"--llc_checkpoint {L} --track --text_file {T} --wandb_project_name {project} {arti} --render"
    )
    assert ig.build_command(variant, test=True, checkpoint=C, **kw) == readme(
        f"python calm/run.py --test --num_envs 16 --task {task} --cfg_env {HLC_ENV} --cfg_train {cfg_train} "
        f"--motion_file {M} --llc_checkpoint {L} --track --render {arti} --text_file {T} --checkpoint {C}"
    )
    both = ig.build_commands(variant, python="/py", output_path="/r/out", checkpoint=C, **kw)
    assert both["train"][:2] == ["/py", "calm/run.py"] and both["train"][-3:] == [
        "--headless",
        "--output_path",
        "/r/out",
    ]
    assert both["test"][-2:] == ["--checkpoint", C] and "--output_path" not in both["test"]
    resumed = ig.build_command(variant, resume_from="/r/out/x/nn/Humanoid.pth", **kw)
    assert resumed[-4:] == ["--resume", "1", "--checkpoint", "/r/out/x/nn/Humanoid.pth"]
    no_render = ig.build_command(variant, **{**kw, "render": False})
    assert "--render" not in no_render and "--track" in no_render  # the HLC needs wandb.init (spec 9.3)


def test_command_errors() -> None:
    with pytest.raises(UserError, match="needs an LLC checkpoint"):
        ig.build_command("skill", motion_file=M, text_file=T)
    with pytest.raises(UserError, match="needs its checkpoint"):
        ig.build_command("llc", motion_file=M, test=True)
    with pytest.raises(UserError, match="unknown Isaac Gym variant"):
        ig.build_command("door", motion_file=M)


def test_checkout_and_interpreter_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        ig.check_checkout(tmp_path / "nope")
    with pytest.raises(UserError, match=r"not an AnySkill checkout \(no calm/run.py\)"):
        ig.check_checkout(tmp_path)
    with pytest.raises(UserError, match="pass --anyskill-repo"):
        ig.check_checkout(None)
    with pytest.raises(UserError, match="'python9.9' was not found; pass --isaacgym-python PATH or set ANYSKILL_ISAA"):
        ig.check_python("python9.9")
    with pytest.raises(UserError, match=r"cannot import isaacgym \(ModuleNotFoundError: No module named 'isaacgym'\)"):
        ig.check_python(sys.executable)


STAND_IN = textwrap.dedent(
    '''
    """Stand-in for AnySkill's calm/run.py: the reference flags, rl_games-style outputs, then exit."""
    import argparse, json, os, sys, time
    p = argparse.ArgumentParser()
    for flag in ("test", "play", "headless", "track", "render", "articulated", "horovod", "metadata"):
        p.add_argument("--" + flag, action="store_true")
    for flag in ("task", "cfg_env", "cfg_train", "motion_file", "checkpoint", "llc_checkpoint", "text_file",
                 "output_path", "wandb_project_name", "experiment"):
        p.add_argument("--" + flag, type=str, default="")
    for flag in ("num_envs", "max_iterations", "resume"):
        p.add_argument("--" + flag, type=int, default=0)
    args = p.parse_args()
    assert os.environ.get("WANDB_MODE") == "offline"
    assert os.path.exists(args.text_file), args.text_file
    exp = os.path.join(args.output_path, "Humanoid_24-10-11-12")
    os.makedirs(os.path.join(exp, "nn"), exist_ok=True)
    json.dump({"argv": sys.argv, "cwd": os.getcwd(), "texts": open(args.text_file).read()},
              open(os.path.join(args.output_path, "argv.json"), "w"))
    from tensorboardX import SummaryWriter
    w = SummaryWriter(os.path.join(exp, "summaries"), flush_secs=1)
    for epoch in range(1, args.max_iterations + 1):
        w.add_scalar("rewards0/frame", 0.1 * epoch, epoch * 4096)
        w.add_scalar("info/epochs", epoch, epoch * 4096)
        w.flush()
        if epoch % 2 == 0:
            open(os.path.join(exp, "nn", "Humanoid_%08d.pth" % epoch), "wb").write(b"weights")
            open(os.path.join(exp, "nn", "Humanoid.pth"), "wb").write(b"weights")
        time.sleep(0.3)
    w.close()
    '''
)


def test_run_against_a_stand_in_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "AnySkill"
    (repo / "calm").mkdir(parents=True)
    (repo / "calm" / "run.py").write_text(STAND_IN)
    fake = tmp_path / "site"
    (fake / "isaacgym").mkdir(parents=True)
    (fake / "isaacgym" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    monkeypatch.setenv("ANYSKILL_HEARTBEAT_S", "0.3")
    ws = init_workspace(tmp_path / "ws")[0].root
    with Library(ws / "skills.db") as lib:
        skill = lib.add_skill("raise both hands", weight=0.7)
        cfg = {
            "anyskill_repo": str(repo),
            "isaacgym_python": sys.executable,
            "motion_file": M,
            "llc_checkpoint": L,
            "reward": "render",
            "max_iterations": 6,
        }
        run = lib.create_run("skill", "isaacgym", skill=skill.id, config=cfg)
        assert runner.execute(ws, run.id, install_signals=False) == 0
        r = lib.get_run(run.id)
        assert r.status == "done", r.error
        assert lib.get_skill(skill.id).status == "trained"
        run_dir = launcher.run_dir_for(ws, run.id)
        seen = json.loads((run_dir / "output" / "argv.json").read_text())
        assert seen["cwd"] == str(repo)
        assert (
            seen["argv"][1:]
            == ig.build_command(
                "skill",
                motion_file=M,
                llc_checkpoint=L,
                text_file=str(run_dir / "texts.yaml"),
                render=True,
                output_path=str(run_dir / "output"),
                max_iterations=6,
            )[2:]
        )
        assert "raise both hands" in seen["texts"] and "0.7" in seen["texts"]
        nn = run_dir / "output" / "Humanoid_24-10-11-12" / "nn"
        ckpts = lib.list_checkpoints(run.id)
        assert [(Path(c.path).name, c.step) for c in ckpts] == [
            ("Humanoid_00000002.pth", 2),
            ("Humanoid_00000004.pth", 4),
            ("Humanoid_00000006.pth", 6),
            ("Humanoid.pth", 6),
        ]
        assert all(Path(c.path).parent == nn for c in ckpts)
        pts = MetricsTail(run_dir).poll()["rewards0/frame"]
        assert [p[0] for p in pts] == [4096 * e for e in range(1, 7)]
        assert (r.step, r.total_steps) == (6, 6)
        # A resumed Isaac Gym run continues from the newest .pth.
        job = ig.IsaacGymJob.from_run(_ctx(run_dir, cfg, lib, run.id), lib.get_run(run.id))
        assert job.command()[-4:] == ["--resume", "1", "--checkpoint", str(ig.latest_pth(run_dir))]


def _ctx(run_dir: Path, cfg: dict, lib: Library, run_id: int):
    from anyskill_tui.core.jobs.trainers import TrainContext

    return TrainContext(run_id=run_id, run_dir=run_dir, config=cfg, library=lib)


def test_isaacgym_run_fails_clearly_without_a_checkout(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")[0].root
    with Library(ws / "skills.db") as lib:
        run = lib.create_run("llc", "isaacgym", config={"anyskill_repo": str(tmp_path / "none"), "motion_file": M})
        assert runner.execute(ws, run.id, install_signals=False) == 1
        r = lib.get_run(run.id)
        assert r.status == "failed" and "does not exist" in r.error
