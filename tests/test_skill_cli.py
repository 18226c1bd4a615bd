"""`anyskill train` end to end (foreground, through the runner), `anyskill skills score`, `anyskill proxy`, bad input.

A tiny random open_clip model registered under a test name and loaded from a weights file through the real
ClipRewardModel path; a tiny random LLC saved with save_llc_policy; 4 envs at 32 px on the cpu engine.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

pytest.importorskip("open_clip")

from _skill_helpers import TINY, register_tiny, tiny_open_clip  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from anyskill_tui.cli import app  # noqa: E402
from anyskill_tui.core.learn.llc_policy import random_llc_policy, save_llc_policy  # noqa: E402
from anyskill_tui.store.library import Library  # noqa: E402
from anyskill_tui.workspace import init_workspace  # noqa: E402

runner = CliRunner()

SMALL = {
    "env": {"threads": 1, "camera": {"width": 32, "height": 32}},
    "network": {"actor_hidden": [32, 32], "critic_hidden": [32, 32]},
    "ppo": {"minibatch_size": 8, "save_frequency": 1},
    "reward": {"render_every": "decision"},
    "eval": {"num_envs": 2},
    "clip": {"pretrained": None},
}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    register_tiny(monkeypatch)
    monkeypatch.delenv("ANYSKILL_HOME", raising=False)
    monkeypatch.delenv("ANYSKILL_CLIP_WEIGHTS", raising=False)
    monkeypatch.setenv("ANYSKILL_HEARTBEAT_S", "0.3")
    ws = init_workspace(tmp_path / "ws")[0].root
    weights = tmp_path / "tiny.pt"
    torch.save(tiny_open_clip(0).state_dict(), weights)
    llc = save_llc_policy(tmp_path / "llc.pt", random_llc_policy(0))
    cfg = tmp_path / "skill.yaml"
    cfg.write_text(yaml.safe_dump(SMALL))
    return ws, weights, llc, cfg


def invoke(ws: Path, *args: str):
    return runner.invoke(app, ["--workspace", str(ws), *args])


def base_args(weights, llc, cfg):
    return [
        "--llc", str(llc), "--engine", "cpu", "--envs", "4", "--epochs", "2",
        "--clip-model", TINY, "--clip-weights", str(weights), "--config", str(cfg),
    ]  # fmt: skip


def test_train_foreground_registers_skill_run_checkpoints_and_score(setup):
    ws, weights, llc, cfg = setup
    r = invoke(ws, "train", "raise both arms", *base_args(weights, llc, cfg), "--json")
    assert r.exit_code == 0, (r.output, r.exception)
    out = json.loads(r.stdout)
    assert out["status"] == "done" and isinstance(out["metrics"]["clip_score"], float)
    with Library(ws / "skills.db") as lib:
        sk = lib.get_skill("raise both arms")
        assert sk.status == "trained"
        (run,) = lib.list_runs(skill=sk.id)
        assert run.kind == "skill" and run.status == "done" and run.engine == "cpu"
        assert run.config["llc"]["path"] == str(llc.resolve()) and run.config["prompts"][0]["text"] == "raise both arms"
        ckpts = lib.list_checkpoints(run.id)
        assert [c.step for c in ckpts] == [1, 2]
        final = ckpts[-1].metrics
        assert final["clip_score"] == out["metrics"]["clip_score"] and final["clip_score_source"] == "render"
        assert -1.0 <= final["clip_score"] <= 1.0
        path = ckpts[-1].path
    from anyskill_tui.core.learn.skill_policy import SkillPolicy

    policy, llc_policy = SkillPolicy.load(path)
    assert policy.prompts == ["raise both arms"] and llc_policy.act(
        torch.zeros(1, 223), torch.ones(1, 64) / 8
    ).shape == (
        1,
        28,
    )
    # metrics went to the run's event files
    from anyskill_tui.core.jobs.launcher import resolve_run_dir
    from anyskill_tui.core.jobs.metrics import MetricsTail

    tags = MetricsTail(resolve_run_dir(ws, run)).poll()
    for tag in ("clip/similarity", "reward/style", "reward/total", "perf/samples_per_s", "losses/actor"):
        assert tag in tags, tag
    # skills score re-evaluates the newest checkpoint and stores the score on its row
    r = invoke(ws, "skills", "score", "raise both arms", "--clip-weights", str(weights), "--envs", "2", "--json")
    assert r.exit_code == 0, (r.output, r.exception)
    scored = json.loads(r.stdout)
    assert scored["checkpoint"] == path and scored["clip_score"] == pytest.approx(final["clip_score"], abs=1e-5)
    with Library(ws / "skills.db") as lib:
        assert "scored_at" in lib.list_checkpoints(run.id)[-1].metrics


def test_train_bad_inputs_leave_the_library_alone(setup, tmp_path):
    ws, weights, llc, cfg = setup
    args = base_args(weights, llc, cfg)
    r = invoke(ws, "train", "   ", *args)
    assert r.exit_code == 1 and "empty prompt" in r.output
    r = invoke(ws, "train", *args)
    assert r.exit_code == 1 and "no prompt" in r.output
    bad_llc = list(args)
    bad_llc[1] = str(tmp_path / "nope.pt")
    r = invoke(ws, "train", "jump", *bad_llc)
    assert r.exit_code == 1 and "anyskill llc train" in r.output and "--llc" in r.output
    with pytest.MonkeyPatch.context() as mp:  # no --llc, no llc run, and (here) nothing shipped
        mp.setattr("anyskill_tui.commands.train.default_llc_file", lambda: tmp_path / "not-shipped.pt")
        r = invoke(ws, "train", "jump", *args[2:])
    assert r.exit_code == 1 and "no LLC checkpoint found" in r.output
    bad_w = list(args)
    bad_w[bad_w.index("--clip-weights") + 1] = str(tmp_path / "missing.bin")
    r = invoke(ws, "train", "jump", *bad_w)
    assert r.exit_code == 1 and "CLIP weights file not found" in r.output
    r = invoke(ws, "train", "jump", *args, "--reward", "proxy")
    assert r.exit_code == 1 and "--proxy" in r.output
    with Library(ws / "skills.db") as lib:
        assert lib.list_skills() == [] and lib.list_runs() == []
    r = invoke(ws, "skills", "score", "nothing here")
    assert r.exit_code == 1


def test_clip_weights_error_fails_the_run_with_the_reward_modules_message(setup, monkeypatch, tmp_path):
    ws, weights, llc, cfg = setup
    other = tmp_path / "other.pt"
    other.write_bytes(b"not a checkpoint")
    args = base_args(other, llc, cfg)
    r = invoke(ws, "train", "jump", *args)
    assert r.exit_code == 1 and "could not load CLIP weights" in r.output
    with Library(ws / "skills.db") as lib:
        (run,) = lib.list_runs()
        assert run.status == "failed" and "CLIP weights" in run.error


def test_multi_prompt_file_one_run_without_detach(setup, tmp_path):
    ws, weights, llc, cfg = setup
    texts = tmp_path / "texts.yaml"
    texts.write_text("texts:\n  - text: raise both arms\n    weight: 2\n  - text: crouch down\n    weight: 1\n")
    args = base_args(weights, llc, cfg)
    args[args.index("--epochs") + 1] = "1"
    r = invoke(ws, "train", "--prompts", str(texts), *args, "--json")
    assert r.exit_code == 0, (r.output, r.exception)
    with Library(ws / "skills.db") as lib:
        runs = lib.list_runs()
        assert len(runs) == 1 and [p["text"] for p in runs[0].config["prompts"]] == ["raise both arms", "crouch down"]
        assert {s.status for s in lib.list_skills()} == {"trained"}
        m = lib.list_checkpoints(runs[0].id)[-1].metrics
        assert set(m["clip_score_per_prompt"]) == {"raise both arms", "crouch down"}


def test_proxy_train_and_report(setup, tmp_path):
    ws, weights, llc, cfg = setup
    pcfg = tmp_path / "proxy.yaml"
    pcfg.write_text(
        yaml.safe_dump(
            {
                "threads": 1,
                "camera": {"width": 32, "height": 32},
                "hidden": [64],
                "clip": {"pretrained": None},
                "train": {"batch_size": 16, "save_frequency": 5},
            }
        )
    )
    args = ["--engine", "cpu", "--envs", "8", "--states", "48", "--epochs", "10", "--clip-model", TINY]
    r = invoke(
        ws, "proxy", "train", *args, "--clip-weights", str(weights), "--llc", str(llc), "--config", str(pcfg), "--json"
    )
    assert r.exit_code == 0, (r.output, r.exception)
    out = json.loads(r.stdout)
    rep = out["report"]
    assert out["status"] == "done" and rep["n"] == 7 and rep["motion_states"] == 24 and rep["rollout_states"] == 24
    for key in ("cosine", "top1", "baseline_cosine", "baseline_top1"):
        assert isinstance(rep[key], float)
    r = invoke(ws, "proxy", "report", str(out["run"]), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["top1"] == rep["top1"]
    with Library(ws / "skills.db") as lib:
        (ck,) = [c for c in lib.list_checkpoints(out["run"]) if c.step == 10]
        assert ck.metrics["agreement_top1"] == rep["top1"]
    # the proxy checkpoint drives a skill run with --reward proxy
    r = invoke(ws, "proxy", "report", ck.path)
    assert r.exit_code == 0 and "top-1 retrieval" in r.output
    targs = base_args(weights, llc, cfg)
    targs[targs.index("--epochs") + 1] = "1"
    r = invoke(ws, "train", "jump", *targs, "--reward", "proxy", "--proxy", ck.path, "--json")
    assert r.exit_code == 0, (r.output, r.exception)
    assert json.loads(r.stdout)["metrics"]["clip_score_source"] == "proxy"


def test_train_without_clip_weights_stops_before_any_run(setup, tmp_path, monkeypatch):
    """No --clip-weights, no $ANYSKILL_CLIP_WEIGHTS, the default ViT-B-32 tag not in the (empty) hub cache and the
    hub offline: `anyskill train` stops with one error naming both options, before a skill, Run row or run dir
    exists, in both reward modes; `anyskill proxy train` likewise. No network: HF_HUB_OFFLINE is set and the hub
    probe is replaced by a recorder."""
    import huggingface_hub

    ws, weights, llc, cfg = setup
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    probes: list[tuple] = []

    def no_network(*args, **kwargs):
        probes.append(args)
        raise OSError("no network in tests")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", no_network)
    no_clip = tmp_path / "no_clip.yaml"
    no_clip.write_text(yaml.safe_dump({**SMALL, "clip": {"cache_dir": str(tmp_path / "empty_hub_cache")}}))
    args = ["--llc", str(llc), "--engine", "cpu", "--envs", "4", "--epochs", "1", "--config", str(no_clip)]
    for extra in ([], ["--reward", "proxy", "--proxy", str(llc)]):
        r = invoke(ws, "train", "jump", *args, *extra)
        msg = " ".join(r.output.split())
        assert r.exit_code == 1, msg
        assert "ViT-B-32/laion2b_s34b_b79k" in msg and "not in the cache" in msg and "HF_HUB_OFFLINE" in msg
        assert "--clip-weights PATH" in msg and "ANYSKILL_CLIP_WEIGHTS" in msg
    # `anyskill proxy train` encodes its states with the same CLIP: the same early stop
    pcfg = tmp_path / "no_clip_proxy.yaml"
    pcfg.write_text(yaml.safe_dump({"threads": 1, "clip": {"cache_dir": str(tmp_path / "empty_hub_cache")}}))
    r = invoke(ws, "proxy", "train", "--engine", "cpu", "--no-llc", "--config", str(pcfg))
    msg = " ".join(r.output.split())
    assert r.exit_code == 1 and "--clip-weights PATH" in msg and "ANYSKILL_CLIP_WEIGHTS" in msg, msg
    assert probes == []
    # $ANYSKILL_CLIP_WEIGHTS naming a missing file: the same early stop, naming the file and the variable
    monkeypatch.setenv("ANYSKILL_CLIP_WEIGHTS", str(tmp_path / "missing.safetensors"))
    r = invoke(ws, "train", "jump", *args)
    msg = " ".join(r.output.split())
    assert r.exit_code == 1 and "missing.safetensors" in msg and "from ANYSKILL_CLIP_WEIGHTS" in msg
    with Library(ws / "skills.db") as lib:
        assert lib.list_runs() == [] and lib.list_skills() == []
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())
    # the variable naming a weights file, or --clip-weights (the runs above): the check passes
    from anyskill_tui.commands.train import preflight_clip
    from anyskill_tui.core.learn.skill_config import load_skill_config

    monkeypatch.setenv("ANYSKILL_CLIP_WEIGHTS", str(weights))
    assert preflight_clip(load_skill_config(no_clip).clip) == f"file {weights}"
