"""CALM's algorithmic pieces (spec §4.2–4.4): the conditional-discriminator reward and loss, the encoder
regulariser, the latent resampling schedule, ε-greedy action mixing and the total loss.

All windows given to these functions are already normalised by the shared AMP normaliser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.nn import functional as F

from anyskill_tui.core.learn.ppo import rng_device


@dataclass(frozen=True)
class CalmLossCoeffs:
    """The coefficients the CALM loss functions need, with the spec defaults.

    ``LlcConfig.loss_coeffs()`` builds one from a config.
    """

    critic: float = 5.0
    entropy: float = 0.0
    bounds: float = 10.0
    disc: float = 5.0
    enc: float = 0.1
    disc_logit_reg: float = 0.01
    disc_grad_penalty: float = 5.0
    disc_weight_decay: float = 1e-4
    disc_reward_scale: float = 2.0
    enc_uniformity_weight: float = 0.5


class ConditionalDisc(Protocol):
    def __call__(self, window: torch.Tensor, z: torch.Tensor) -> torch.Tensor: ...
    def logit_weights(self) -> torch.Tensor: ...
    def linear_weights(self) -> list[torch.Tensor]: ...


# ----------------------------------------------------------------------------------------------- reward


def cond_disc_reward(logits: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
    """``−log(max(1 − σ(logit), 1e−4)) · scale`` (spec §4.3); compute it under ``torch.no_grad``."""
    prob = torch.sigmoid(logits)
    return -torch.log((1.0 - prob).clamp_min(1e-4)) * scale


# ----------------------------------------------------------------------------------------------- discriminator


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def cond_disc_loss(
    disc: ConditionalDisc,
    agent_win: torch.Tensor,
    agent_z: torch.Tensor,
    replay_win: torch.Tensor | None,
    replay_z: torch.Tensor | None,
    demo_win: torch.Tensor,
    demo_z: torch.Tensor,
    coeffs: CalmLossCoeffs,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The conditional discriminator loss L_D (spec §4.4), before its ``disc`` coefficient.

    ``0.5·[BCE(D(agent ∪ replay), 0) + BCE(D(demo), 1)] + logit_reg·‖w_logit‖²
    + grad_penalty·mean_i ‖∂D(demo_i)/∂demo_i‖² + weight_decay·Σ‖W‖²``.

    The latents are detached here (the reference computes z_demo and z_replay without gradient and detaches
    z_agent), so L_D trains D only. ``replay_win``/``replay_z`` may be None or empty (an empty replay buffer).
    Returns the total and a dict of detached parts: the unweighted terms plus accuracies and mean logits.
    """
    if replay_win is not None and replay_win.shape[0] > 0:  # agent and replay rows in one pass of D
        neg_logit = disc(torch.cat([agent_win, replay_win]), torch.cat([agent_z.detach(), replay_z.detach()]))
    else:
        neg_logit = disc(agent_win, agent_z.detach())

    demo_in = demo_win.detach().clone().requires_grad_(True)
    demo_logit = disc(demo_in, demo_z.detach())

    bce_neg = _bce(neg_logit, 0.0)
    bce_pos = _bce(demo_logit, 1.0)
    bce = 0.5 * (bce_neg + bce_pos)

    logit_reg = disc.logit_weights().square().sum()

    (grad,) = torch.autograd.grad(demo_logit.sum(), demo_in, create_graph=True)
    grad_penalty = grad.reshape(grad.shape[0], -1).square().sum(dim=-1).mean()

    weight_decay = sum(w.square().sum() for w in disc.linear_weights())

    total = (
        bce
        + coeffs.disc_logit_reg * logit_reg
        + coeffs.disc_grad_penalty * grad_penalty
        + coeffs.disc_weight_decay * weight_decay
    )
    with torch.no_grad():
        parts = {
            "disc_loss": total.detach(),
            "bce": bce.detach(),
            "bce_agent": bce_neg.detach(),
            "bce_demo": bce_pos.detach(),
            "logit_reg": logit_reg.detach(),
            "grad_penalty": grad_penalty.detach(),
            "weight_decay": weight_decay.detach(),
            "agent_acc": (neg_logit < 0).float().mean(),
            "demo_acc": (demo_logit > 0).float().mean(),
            "agent_logit": neg_logit.mean(),
            "demo_logit": demo_logit.mean(),
        }
    return total, parts


# ----------------------------------------------------------------------------------------------- encoder


def encoder_uniformity(e: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """``log mean_{i<j} exp(−t‖e_i − e_j‖²)`` over the rows of ``e`` (needs at least 2 rows).

    The pairs i < j are selected with a cached (n, n) mask (the other entries at −inf before the logsumexp), not
    by gathering them: the gather's backward is a sorting index_put over n(n−1)/2 entries (3 ms per LLC gradient
    step at n = 4,096 on an H200), the mask's an elementwise select."""
    n = e.shape[0]
    if n < 2:
        raise ValueError("encoder_uniformity needs at least two encodings")
    sq = e.square().sum(dim=-1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * e @ e.T).clamp_min(0.0)
    upper = _triu_mask(n, e.device)
    logits = (-t * d2).masked_fill(~upper, float("-inf"))
    return torch.logsumexp(logits.reshape(-1), dim=0) - math.log(n * (n - 1) / 2)


_TRIU_CACHE: dict[tuple[int, torch.device], torch.Tensor] = {}


def _triu_mask(n: int, device: torch.device) -> torch.Tensor:
    """(n, n) bool, True at the pairs i < j; cached per (n, device), not rebuilt per minibatch."""
    key = (int(n), torch.device(device))
    mask = _TRIU_CACHE.get(key)
    if mask is None:
        mask = _TRIU_CACHE[key] = torch.ones((n, n), dtype=torch.bool, device=device).triu(diagonal=1)
    return mask


def encoder_alignment(e0: torch.Tensor, e1: torch.Tensor) -> torch.Tensor:
    """``mean_i ‖e0_i − e1_i‖²`` over pairs of encodings of overlapping windows."""
    return (e0 - e1).square().sum(dim=-1).mean()


def encoder_reg_loss(
    e0: torch.Tensor, e1: torch.Tensor, e_uniform: torch.Tensor | None = None, uniformity_weight: float = 0.5
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_E = align(e0, e1) + 0.5·uniform(e_uniform), with ``e_uniform`` defaulting to ``e0`` (spec §4.4)."""
    align = encoder_alignment(e0, e1)
    uniform = encoder_uniformity(e0 if e_uniform is None else e_uniform)
    loss = align + uniformity_weight * uniform
    return loss, {"enc_loss": loss.detach(), "enc_align": align.detach(), "enc_uniform": uniform.detach()}


# ----------------------------------------------------------------------------------------------- latent schedule


def latent_resample_deadlines(
    progress: torch.Tensor,
    deadline: torch.Tensor,
    min_steps: int = 10,
    max_steps: int = 150,
    reset: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which envs need a new latent this step, and the deadlines after the redraw (spec §4.2).

    An env needs one when it was reset (``reset`` true) or its episode progress has reached its deadline. For
    those envs the deadline becomes ``progress + randint(min_steps, max_steps)`` (``max_steps`` exclusive: 10…149
    LLC steps); the others keep theirs. Returns ``(need_new: bool (N,), new_deadline: like deadline)``.
    """
    need = progress >= deadline
    if reset is not None:
        need = need | reset.bool()
    dev = rng_device(generator, progress.device)
    steps = torch.randint(min_steps, max_steps, progress.shape, generator=generator, device=dev).to(progress.device)
    new_deadline = torch.where(need, progress + steps.to(progress.dtype), deadline)
    return need, new_deadline


# ----------------------------------------------------------------------------------------------- ε-greedy


def epsilon_greedy_probs(num_envs: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Per-env probability of acting stochastically: ``p_i = 1 − exp(10·(i/(N−1) − 1))``; p_0≈1, p_{N−1}=0.

    (Exactly, p_0 = 1 − e^{−10} ≈ 0.99995.) A single env always acts stochastically.
    """
    if num_envs < 2:
        return torch.ones(num_envs, device=device)
    i = torch.arange(num_envs, device=device, dtype=torch.float32)
    return 1.0 - torch.exp(10.0 * (i / (num_envs - 1) - 1.0))


def epsilon_greedy_mask(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample the ε-greedy mask: true where the env uses its sampled action, false where it uses μ."""
    u = torch.rand(probs.shape, generator=generator, device=rng_device(generator, probs.device)).to(probs.device)
    return u < probs


def mix_actions(mu: torch.Tensor, sampled: torch.Tensor, stochastic: torch.Tensor) -> torch.Tensor:
    """Row i is ``sampled[i]`` where ``stochastic[i]``, else ``mu[i]``."""
    return torch.where(stochastic.reshape(-1, *([1] * (mu.dim() - 1))), sampled, mu)


# ----------------------------------------------------------------------------------------------- total


def calm_total_loss(parts: Mapping[str, torch.Tensor], coeffs: CalmLossCoeffs) -> torch.Tensor:
    """``L_actor + c_critic·L_critic − c_ent·entropy + c_bounds·L_bounds + c_disc·L_D + c_enc·L_E``.

    ``parts`` holds ``actor``, ``critic``, ``bounds``, ``disc``, ``enc`` and optionally ``entropy`` (defaults
    1·5·0·10·5·0.1 from the spec). A missing ``disc``/``enc`` (an HLC-style update) counts as 0.
    """
    zero = torch.zeros((), device=parts["actor"].device)
    return (
        parts["actor"]
        + coeffs.critic * parts["critic"]
        - coeffs.entropy * parts.get("entropy", zero)
        + coeffs.bounds * parts["bounds"]
        + coeffs.disc * parts.get("disc", zero)
        + coeffs.enc * parts.get("enc", zero)
    )
