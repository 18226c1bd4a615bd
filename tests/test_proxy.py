"""The proxy reward: collect rendered + CLIP-encoded states, fit the MLP, report agreement vs a shuffled baseline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("open_clip")

from _skill_helpers import register_tiny, tiny_open_clip, tiny_reward  # noqa: E402

from anyskill_tui.core.learn.llc_policy import random_llc_policy  # noqa: E402
from anyskill_tui.core.learn.skill_config import (
    default_motion_file,  # noqa: E402
    proxy_config_from_dict,  # noqa: E402
)
from anyskill_tui.core.motion.dataset import load_dataset  # noqa: E402
from anyskill_tui.core.motion.motion_lib import MotionLib  # noqa: E402
from anyskill_tui.core.reward.proxy import ProxyModel, agreement, proxy_input, save_proxy  # noqa: E402
from anyskill_tui.core.reward.proxy_train import (  # noqa: E402
    build_proxy_env,
    collect_proxy_data,
    fit_proxy,
    split_holdout,
)
from anyskill_tui.errors import UserError  # noqa: E402


@pytest.fixture(autouse=True)
def _tiny(monkeypatch):
    register_tiny(monkeypatch)


def test_proxy_input_keeps_height_and_heading_drops_xy():
    p = torch.randn(2, 15, 3)
    shifted = p.clone()
    shifted[..., :2] += torch.tensor([3.0, -1.0])
    torch.testing.assert_close(proxy_input(p), proxy_input(shifted))
    lifted = p.clone()
    lifted[..., 2] += 0.2
    assert not torch.allclose(proxy_input(p), proxy_input(lifted))
    turned = p.clone()  # 90 degrees about z around the root: the camera sees another side
    rel = p[:, :, :2] - p[:, :1, :2]
    turned[..., 0] = p[:, :1, 0] - rel[..., 1]
    turned[..., 1] = p[:, :1, 1] + rel[..., 0]
    assert not torch.allclose(proxy_input(p), proxy_input(turned))


def test_agreement_measures():
    real = torch.nn.functional.normalize(torch.randn(50, 16), dim=-1)
    perfect = agreement(real, real, generator=torch.Generator().manual_seed(0))
    assert perfect["cosine"] == pytest.approx(1.0) and perfect["top1"] == 1.0
    assert perfect["baseline_top1"] < 0.2 and perfect["baseline_cosine"] < 0.5


def test_proxy_trains_on_rendered_states_and_beats_shuffled(tmp_path):
    cfg = proxy_config_from_dict({"num_envs": 8, "engine": "cpu", "threads": 1, "camera": {"width": 32, "height": 32}})
    ml = MotionLib(load_dataset(default_motion_file()))
    env = build_proxy_env(cfg, ml)
    clip = tiny_reward(tiny_open_clip(0))
    data = collect_proxy_data(
        env, clip, motion_states=96, rollout_states=48, llc=random_llc_policy(0), capture_every=3, log=lambda s: None
    )
    assert data["body_pos"].shape == (144, 15, 3) and data["features"].shape == (144, 32)
    assert int((data["source"] == 1).sum()) == 48
    # the targets are what the reward model gives for the same rendered frames
    env.reset(mode="random")
    torch.testing.assert_close(clip.encode_images(env.render()), clip.encode_images(env.render()))
    tr, ho = split_holdout(144, 0.15, 0)
    assert len(set(tr.tolist()) & set(ho.tolist())) == 0 and ho.numel() == 22
    model = ProxyModel(32, (128, 128))
    losses = []
    fit_proxy(
        model,
        data["body_pos"][tr],
        data["features"][tr],
        epochs=150,
        batch_size=32,
        lr=1e-3,
        on_epoch=lambda e, loss: losses.append(loss) and False,
    )
    assert losses[-1] < losses[0]
    with torch.no_grad():
        rep = agreement(model(data["body_pos"][ho]), data["features"][ho], generator=torch.Generator().manual_seed(0))
    print(f"proxy agreement: {rep}")
    assert rep["cosine"] > rep["baseline_cosine"]
    assert rep["top1"] > rep["baseline_top1"]
    assert rep["top1"] > rep["chance_top1"]
    # save / load round trip keeps predictions; another CLIP embedding size is refused
    path = save_proxy(tmp_path / "proxy.pt", model, rep)
    loaded = ProxyModel.load(path)
    torch.testing.assert_close(loaded(data["body_pos"][:4]), model(data["body_pos"][:4]))
    loaded.meta["clip_model"] = clip.model_id
    loaded.check_compatible(clip)
    loaded.out_dim = 64
    with pytest.raises(UserError, match="64-d"):
        loaded.check_compatible(clip)


def test_proxy_load_refuses_other_files(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"format": "something"}, bad)
    with pytest.raises(UserError, match="not a proxy checkpoint"):
        ProxyModel.load(bad)
