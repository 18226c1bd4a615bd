"""`anyskill llc train|eval`: a tiny foreground run through the runner, eval JSON, and the bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from anyskill_tui.cli import app
from anyskill_tui.core.learn.llc_train import EPOCH_TAGS
from anyskill_tui.store.library import Library
from anyskill_tui.workspace import init_workspace

runner = CliRunner()

TINY = {
    "env": {"num_envs": 8},
    "network": {
        "actor_hidden": [16],
        "critic_hidden": [16],
        "encoder_hidden": [16],
        "disc_hidden": [16],
        "style_hidden": [8],
        "style_dim": 8,
        "latent_dim": 8,
    },
    "ppo": {"horizon_length": 8, "minibatch_size": 32, "mini_epochs": 1, "save_frequency": 1},
    "calm": {"demo_buffer_size": 128, "replay_buffer_size": 128, "amp_batch_size": 32, "amp_minibatch_size": 16},
}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYSKILL_HEARTBEAT_S", "0.3")
    monkeypatch.delenv("ANYSKILL_HOME", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def motions(tmp_path_factory) -> Path:
    from anyskill_tui.paths import configs_dir

    star = configs_dir() / "motions" / "starter"
    p = tmp_path_factory.mktemp("m") / "two.yaml"
    p.write_text(
        yaml.safe_dump({"motions": [{"file": str(star / f"{n}.npy"), "weight": 1} for n in ("stand_idle", "squat")]})
    )
    return p


def invoke(ws: Path, *args: str):
    return runner.invoke(app, ["--workspace", str(ws), *args])


def test_train_foreground_then_eval(tmp_path: Path, motions: Path) -> None:
    ws = init_workspace(tmp_path / "ws")[0].root
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    r = invoke(
        ws,
        "llc",
        "train",
        "--motions",
        str(motions),
        "--engine",
        "cpu",
        "--epochs",
        "2",
        "--config",
        str(cfg),
        "--set",
        "ppo.learning_rate=1e-3",
        "--seed",
        "3",
    )
    assert r.exit_code == 0, (r.output, r.exception)
    with Library(ws / "skills.db") as lib:
        (run,) = lib.list_runs()
        assert run.kind == "llc" and run.engine == "cpu" and run.status == "done", run.error
        assert run.config["llc"]["ppo"]["learning_rate"] == 1e-3 and run.config["llc"]["seed"] == 3
        ckpts = lib.list_checkpoints(run.id)
    assert [c.step for c in ckpts] == [1, 2]
    run_dir = ws / "runs" / str(run.id)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["llc"]["env"]["num_envs"] == 8
    from anyskill_tui.core.jobs.metrics import MetricsTail

    tail = MetricsTail(run_dir)
    tail.poll()
    assert set(EPOCH_TAGS) <= set(tail.latest)

    ck = ckpts[-1].path
    r = invoke(
        ws,
        "llc",
        "eval",
        ck,
        "--motions",
        str(motions),
        "--episodes",
        "1",
        "--seconds",
        "0.5",
        "--engine",
        "cpu",
        "--json",
    )
    assert r.exit_code == 0, (r.output, r.exception)
    rep = json.loads(r.stdout)
    assert [c["clip"] for c in rep["clips"]] == ["stand_idle", "squat"]
    for c in rep["clips"]:
        assert 0.0 <= c["fall_rate"] <= 1.0 and c["key_body_error_m"] is not None and len(c["mean_latent"]) == 8
    assert {"fall_rate", "key_body_error_m", "intra_clip_cos", "inter_clip_cos", "silhouette"} <= set(rep["summary"])
    r = invoke(
        ws, "llc", "eval", ck, "--motions", str(motions), "--episodes", "1", "--seconds", "0.2", "--engine", "cpu"
    )
    assert r.exit_code == 0 and "silhouette" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--motions", "nope.yaml"], "does not exist"),
        (["--set", "ppo.bogus=1"], "ppo.bogus: unknown key"),
        (["--set", "ppo.learning_rate=-1"], "ppo.learning_rate"),
        (["--set", "nonsense"], "expected key=value"),
        (["--envs", "0"], "--envs must be at least 1"),
        (["--engine", "tpu"], "unknown engine 'tpu'"),
    ],
)
def test_train_bad_inputs(tmp_path: Path, args: list[str], message: str) -> None:
    ws = init_workspace(tmp_path / "ws")[0].root
    r = (
        invoke(ws, "llc", "train", "--engine", "cpu", *args)
        if "--engine" not in args
        else invoke(ws, "llc", "train", *args)
    )
    assert r.exit_code == 1, r.output
    assert message in " ".join(r.output.split())
    with Library(ws / "skills.db") as lib:
        assert lib.list_runs() == []


def test_gpu_without_cuda_and_bad_checkpoint(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")[0].root
    if not torch.cuda.is_available():
        r = invoke(ws, "llc", "train", "--engine", "gpu")
        assert r.exit_code == 1 and ("CUDA" in r.output or "mujoco_warp" in r.output)
    bad = tmp_path / "x.pt"
    torch.save({"a": 1}, bad)
    r = invoke(ws, "llc", "eval", str(bad), "--engine", "cpu")
    assert r.exit_code == 1 and "not an LLC checkpoint" in r.output
    r = invoke(ws, "llc", "eval", str(tmp_path / "missing.pt"), "--engine", "cpu")
    assert r.exit_code == 1 and "does not exist" in r.output
