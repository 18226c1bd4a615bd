"""The shipped default LLC (``configs/llc/default.pt``, trained on the starter motions on one H200; how: README,
docs/PERFORMANCE.md) and how ``anyskill train`` picks an LLC when none is named."""

from __future__ import annotations

import pytest
import torch

from anyskill_tui.commands.train import default_llc_file, resolve_llc
from anyskill_tui.core.learn.llc_eval import evaluate_llc
from anyskill_tui.core.learn.llc_policy import LlcPolicy, random_llc_policy, save_llc_policy
from anyskill_tui.errors import UserError
from anyskill_tui.store.library import Library
from anyskill_tui.workspace import init_workspace

SHIPPED = default_llc_file()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_shipped_llc_is_the_spec_sized_controller():
    state = torch.load(SHIPPED, map_location="cpu", weights_only=False)
    assert state["kind"] == "policy" and state["half"] is True
    assert state["extra"]["samples"] >= 100_000_000  # what docs/PERFORMANCE.md reports
    policy = LlcPolicy.load(SHIPPED)
    net = policy.cfg.network
    assert list(net.actor_hidden) == [1024, 1024, 512] and list(net.encoder_hidden) == [1024, 1024, 512]
    obs, z = torch.zeros(3, 223), torch.nn.functional.normalize(torch.randn(3, 64), dim=-1)
    act = policy.act(obs, z)
    assert act.shape == (3, 28) and torch.isfinite(act).all()
    assert policy.encode(torch.zeros(2, 60, 125)).shape == (2, 64)


def test_the_shipped_llc_keeps_the_character_up_where_a_random_one_falls(tmp_path):
    """On the cpu engine (it was trained on the gpu one): every starter clip's latent, 2 episodes of 3 s each from
    that clip's states; a random controller of the same interface falls."""
    shipped = evaluate_llc(SHIPPED, None, episodes=2, seconds=3.0, engine="cpu", threads=1)
    random_path = save_llc_policy(tmp_path / "random.pt", random_llc_policy(seed=0))
    random = evaluate_llc(random_path, None, episodes=2, seconds=3.0, engine="cpu", threads=1)
    print("shipped", shipped["summary"], "random", random["summary"])
    assert len(shipped["clips"]) == 11
    assert shipped["summary"]["fall_rate"] == 0.0
    assert random["summary"]["fall_rate"] >= 0.5
    assert shipped["summary"]["key_body_error_m"] < random["summary"]["key_body_error_m"]
    # the encoder separates the clips: windows of one clip map closer together than windows of different clips
    assert shipped["summary"]["intra_clip_cos"] > shipped["summary"]["inter_clip_cos"] + 0.5


def test_an_llc_is_picked_explicit_then_configured_then_the_users_run_then_the_shipped_one(tmp_path):
    ws = init_workspace(tmp_path / "ws")[0].root
    mine = save_llc_policy(tmp_path / "mine.pt", random_llc_policy(seed=1))
    with Library(ws / "skills.db") as lib:
        assert resolve_llc(None, None, lib, ws) == SHIPPED.resolve()  # a fresh workspace: the shipped one
        assert resolve_llc(mine, str(SHIPPED), lib, ws) == mine.resolve()
        assert resolve_llc(None, str(mine), lib, ws) == mine.resolve()
        run_dir = tmp_path / "run"
        (run_dir / "checkpoints").mkdir(parents=True)
        ckpt = run_dir / "checkpoints" / "ckpt_00000010.pt"
        ckpt.write_bytes(mine.read_bytes())
        lib.create_run("llc", "gpu", status="done", run_dir=str(run_dir))
        assert resolve_llc(None, None, lib, ws) == ckpt.resolve()  # the user's own trained LLC wins
        with pytest.raises(UserError, match="does not exist"):
            resolve_llc(tmp_path / "nope.pt", None, lib, ws)


def test_llc_eval_default_names_the_shipped_file(tmp_path):
    import json

    from typer.testing import CliRunner

    from anyskill_tui.cli import app

    args = ["llc", "eval", "default", "--episodes", "1", "--seconds", "1", "--engine", "cpu", "--json"]
    r = CliRunner().invoke(app, ["--workspace", str(tmp_path / "nowhere"), *args])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["checkpoint"] == str(SHIPPED) and len(report["clips"]) == 11
