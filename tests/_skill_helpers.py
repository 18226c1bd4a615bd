"""Shared fixtures for the skill/proxy tests: a tiny random open_clip model, tiny LLCs, small configs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TINY = "AnySkill-Tiny-Skill"
_TINY_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": _TINY_TEXT,
}
#: a tiny ViT whose image embedding follows the character's pose (tests/test_skill_learning.py): 16 px input (the
#: frames are downsampled by the real preprocessing, a blur that makes thin limbs overlap), 2x2 patches of 8 px,
#: average pooling of the patch tokens (a CLS token of a random 1-layer ViT mostly carries its constant
#: class/position embeddings) and width 128 (more random features, less seed-to-seed variation). Over 60 random
#: arm postures (32 px frames, front camera), the Spearman correlation of its cosine to a reference frame with minus
#: the body-position error was 0.59-0.74 for model seeds 0-4; TINY_CFG's was -0.04-0.65.
POSE = "AnySkill-Tiny-Pose"
POSE_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 128, "head_width": 32, "patch_size": 8, "pool_type": "avg"},
    "text_cfg": _TINY_TEXT,
}
_CONFIGS = {TINY: TINY_CFG, POSE: POSE_CFG}

#: a tiny LLC config (CPU-sized networks and buffers) for the LLC training tests
TINY_LLC = {
    "seed": 0,
    "env": {"num_envs": 16},
    "network": {
        "actor_hidden": [32, 32],
        "critic_hidden": [32, 32],
        "encoder_hidden": [32],
        "disc_hidden": [32, 32],
        "style_hidden": [16],
        "style_dim": 8,
        "latent_dim": 8,
    },
    "ppo": {"horizon_length": 8, "minibatch_size": 64, "mini_epochs": 2, "learning_rate": 1e-3, "save_frequency": 2},
    "calm": {"demo_buffer_size": 256, "replay_buffer_size": 96, "amp_batch_size": 64, "amp_minibatch_size": 32},
}


def register_tiny(monkeypatch) -> None:
    """Register the tiny open_clip configs (TINY, POSE) under their test names for the test's duration."""
    from open_clip import factory

    for name, cfg in _CONFIGS.items():
        monkeypatch.setitem(factory._MODEL_CONFIGS, name, cfg)


def tiny_open_clip(seed: int = 0, name: str = TINY):
    """A randomly initialised open_clip model of a registered tiny config (torch's global seed set to ``seed``)."""
    import open_clip

    torch.manual_seed(seed)
    return open_clip.create_model(name, pretrained=None)


def tiny_reward(model, name: str = TINY):
    """The real ClipRewardModel.from_model path on a tiny random open_clip model (its config's image size)."""
    import open_clip

    from anyskill_tui.core.reward.clip import ClipRewardModel

    size = _CONFIGS[name]["vision_cfg"]["image_size"]
    return ClipRewardModel.from_model(
        model, open_clip.get_tokenizer(name), size, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
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


def posture_llc(
    seed: int = 0,
    gain: float = 1.0,
    dofs: list[int] | None = None,
    ranges: list[tuple[float, float]] | None = None,
    offset: float = 0.0,
):
    """A random LLC whose actor is replaced by a linear *posture* map: a = clamp(a0 + G z, -1, 1).

    a0 holds every joint at 0 rad; G is a fixed random (28, 64) matrix (with ``dofs``: random rows for those DoFs
    only, zero rows elsewhere, so the other joints hold 0 rad). It ignores the observation, so each latent z is a
    held posture: every pose it produces is reachable by choosing z, and nearby latents give nearby poses, which a
    randomly initialised CALM actor does not give (its outputs barely depend on z and it falls within a second
    whatever z is). The encoder (style references) stays the random LLC's.

    ``ranges`` (a (start, end) pair of PD targets in rad per DoF of ``dofs``) makes those DoFs' map smooth and
    bounded instead: target = start + (end - start) * sigmoid(G z + offset). A clamp leaves whole regions of
    latents with one pose (actions past [-1, 1], or targets past a joint limit or into the body, such as an arm
    pressed against the torso), where no reward can tell latents apart and a policy that gets there stays there.
    ``llc.posture`` is (a0 (28,), G (28, 64), ranges, offset).
    """
    from anyskill_tui.core.character import tables as T
    from anyskill_tui.core.learn.llc_policy import random_llc_policy

    llc = random_llc_policy(seed)
    off, sc = (torch.as_tensor(x, dtype=torch.float32) for x in T.pd_offset_scale())
    a0 = -off / sc
    g = torch.Generator().manual_seed(seed + 100)
    if dofs is None:
        G = torch.randn(28, 64, generator=g) * gain
    else:
        G = torch.zeros(28, 64)
        G[list(dofs)] = torch.randn(len(dofs), 64, generator=g) * gain
    if ranges is not None:
        idx = torch.as_tensor(list(dofs))
        lo, hi = torch.tensor(ranges, dtype=torch.float32).T

    def act(obs, z):
        a = a0 + z.float() @ G.T
        if ranges is not None:
            target = lo + (hi - lo) * torch.sigmoid(a[:, idx] - a0[idx] + offset)
            a[:, idx] = (target - off[idx]) / sc[idx]
        return a.clamp(-1.0, 1.0)

    llc.act = act
    llc.posture = (a0, G, ranges, offset)
    return llc


def posture_latent(llc, pd_target) -> torch.Tensor:
    """(1, 64) unit latent z* with which :func:`posture_llc` holds the PD targets ``pd_target`` (28,) rad on its
    DoFs (least squares for G z*, plus a null-space part of G up to unit norm). Raises ValueError when no unit
    latent does (a target outside a DoF's range, or one that needs |z| > 1)."""
    from anyskill_tui.core.character import tables as T

    a0, G, ranges, offset = llc.posture
    off, sc = (torch.as_tensor(x, dtype=torch.float32) for x in T.pd_offset_scale())
    q = torch.as_tensor(pd_target, dtype=torch.float32)
    rows = torch.nonzero(G.abs().sum(-1) > 0).flatten()
    if ranges is None:
        want = ((q - off) / sc - a0)[rows]
    else:
        lo, hi = torch.tensor(ranges, dtype=torch.float32).T
        u = (q[rows] - lo) / (hi - lo)
        if not bool(((u > 0) & (u < 1)).all()):
            raise ValueError(f"targets {q[rows].tolist()} are not inside the ranges {ranges}")
        want = torch.logit(u) - offset
    Gr = G[rows]
    z0 = torch.linalg.pinv(Gr) @ want
    if float(z0.norm()) > 1.0:
        raise ValueError(f"the posture needs |z| = {float(z0.norm()):.2f} > 1; raise the LLC's gain")
    null = torch.linalg.svd(Gr, full_matrices=True).Vh[Gr.shape[0] :]
    return (z0 + (1.0 - z0.norm() ** 2).sqrt() * F.normalize(null[0], dim=0)).unsqueeze(0)


def unit(x):
    return F.normalize(x, dim=-1)
