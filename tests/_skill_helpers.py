"""Shared fixtures for the skill/proxy tests: a tiny random open_clip model, tiny LLCs, small configs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TINY = "AnySkill-Tiny-Skill"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def register_tiny(monkeypatch) -> None:
    from open_clip import factory

    monkeypatch.setitem(factory._MODEL_CONFIGS, TINY, TINY_CFG)


def tiny_open_clip(seed: int = 0):
    import open_clip

    torch.manual_seed(seed)
    return open_clip.create_model(TINY, pretrained=None)


def tiny_reward(model):
    """The real ClipRewardModel.from_model path on a tiny random open_clip model (32 px)."""
    import open_clip

    from anyskill_tui.core.reward.clip import ClipRewardModel

    return ClipRewardModel.from_model(
        model, open_clip.get_tokenizer(TINY), 32, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    )


def small_cfg(**sections):
    from anyskill_tui.core.learn.skill_config import skill_config_from_dict

    base = {
        "prompts": [{"text": "a person raises both arms"}],
        "env": {"num_envs": 4, "engine": "cpu", "threads": 1, "camera": {"width": 32, "height": 32}},
        "network": {"actor_hidden": [64, 64], "critic_hidden": [64, 64]},
        "ppo": {"minibatch_size": 16, "learning_rate": 1e-3, "max_epochs": 2, "save_frequency": 1},
        "eval": {"num_envs": 2},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return skill_config_from_dict(base)


def posture_llc(seed: int = 0, gain: float = 1.0):
    """A random LLC whose actor is replaced by a linear *posture* map: a = clamp(a0 + G z, -1, 1).

    a0 holds every joint at 0 rad; G is a fixed random (28, 64) matrix. It ignores the observation, so each latent
    z is a held posture: every pose it produces is reachable by choosing z, and nearby latents give nearby poses,
    which a randomly initialised CALM actor does not give (its outputs barely depend on z and it falls within a
    second whatever z is). The encoder (style references) stays the random LLC's.
    """
    from anyskill_tui.core.character import tables as T
    from anyskill_tui.core.learn.llc_policy import random_llc_policy

    llc = random_llc_policy(seed)
    off, sc = T.pd_offset_scale()
    a0 = -torch.as_tensor(off, dtype=torch.float32) / torch.as_tensor(sc, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed + 100)
    G = torch.randn(28, 64, generator=g) * gain

    def act(obs, z):
        return (a0 + z.float() @ G.T).clamp(-1.0, 1.0)

    llc.act = act
    return llc


def unit(x):
    return F.normalize(x, dim=-1)
