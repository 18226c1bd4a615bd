"""The PPO core shared by the LLC (CALM) and the HLC (AnySkill): GAE, losses, Gaussian log-probs, gradient
clipping and mixed precision (spec §4.4–4.5, §5.1).

Every loss takes an optional ``mask`` (1 = counts). CALM masks the actor, entropy and bounds losses with the
ε-greedy "stochastic action" mask and leaves the critic unmasked (spec §4.2).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import torch

_LOG_2PI = math.log(2.0 * math.pi)


def rng_device(generator: torch.Generator | None, default: torch.device | str) -> torch.device:
    """Where to draw random numbers: the generator's device if one is given, else ``default``.

    Every sampler here takes an optional ``generator`` (for reproducible tests) and moves its draws to the data's
    device, so a CPU generator works with CUDA data and no generator means no host-device copy.
    """
    return generator.device if generator is not None else torch.device(default)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is true (all entries when ``mask`` is None).

    An all-false mask gives 0 rather than NaN.
    """
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


@torch.no_grad()
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a ``(T, N)`` rollout.

    Args:
        rewards: r_t.
        values: V(s_t).
        next_values: V(s_{t+1}) of the observation that followed step t, *before* any reset (for a time-out
            that is the last real observation of the episode).
        terminated: true where step t ended the episode by a real termination (a fall); the bootstrap
            value is zeroed there only.
        done: true where step t ended the episode for any reason (terminated or truncated); the recursion is
            cut there, so advantages never leak across episodes.

    Returns:
        ``(advantages, returns)`` with ``returns = advantages + values``.

    δ_t = r_t + γ·(1 − term_t)·V(s_{t+1}) − V(s_t);  A_t = δ_t + γλ·(1 − done_t)·A_{t+1}.
    """
    not_term = 1.0 - terminated.to(values.dtype)
    not_done = 1.0 - done.to(values.dtype)
    deltas = rewards + gamma * not_term * next_values - values
    adv = torch.zeros_like(values)
    last = torch.zeros_like(values[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        last = deltas[t] + gamma * lam * not_done[t] * last
        adv[t] = last
    return adv, adv + values


def normalize_advantages(adv: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """``(adv − mean) / (std + eps)`` with mean and std taken over the masked entries only."""
    mean = masked_mean(adv, mask)
    var = masked_mean((adv - mean).square(), mask)
    return (adv - mean) / (var.sqrt() + eps)


def gaussian_log_prob(actions: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Log density of a diagonal Gaussian, summed over the last dim. Use the *unclamped* sampled action."""
    z = (actions - mu) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * _LOG_2PI).sum(dim=-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian with the given log-stds (last dim summed)."""
    return (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(dim=-1)


def sample_gaussian(mu: torch.Tensor, log_std: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One sample of N(mu, exp(log_std)²) per row."""
    noise = torch.randn(mu.shape, generator=generator, device=rng_device(generator, mu.device), dtype=mu.dtype)
    return mu + torch.exp(log_std) * noise.to(mu.device)


def ppo_actor_loss(
    new_logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    clip: float = 0.2,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The clipped surrogate: masked mean of ``−min(r·A, clip(r, 1−ε, 1+ε)·A)`` with ``r = exp(new − old)``."""
    ratio = torch.exp(new_logp - old_logp)
    surr = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    return masked_mean(-surr, mask)


@torch.no_grad()
def clip_fraction(new_logp: torch.Tensor, old_logp: torch.Tensor, clip: float = 0.2, mask=None) -> torch.Tensor:
    """Share of samples whose ratio lies outside ``[1−ε, 1+ε]`` (for logging)."""
    ratio = torch.exp(new_logp - old_logp)
    return masked_mean(((ratio - 1.0).abs() > clip).float(), mask)


def value_loss(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Unclipped ``(R − V)²``, masked mean (the reference has ``clip_value`` off and no ½)."""
    return masked_mean((returns - values).square(), mask)


def bounds_loss(mu: torch.Tensor, bound: float = 1.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ_k [max(μ_k − b, 0)² + min(μ_k + b, 0)²]`` per sample, masked mean over the batch."""
    per_sample = ((mu - bound).clamp_min(0.0).square() + (mu + bound).clamp_max(0.0).square()).sum(dim=-1)
    return masked_mean(per_sample, mask)


def clip_grad_norm_if(params: Iterable[torch.nn.Parameter], max_norm: float, enabled: bool) -> torch.Tensor:
    """Clip the total gradient norm to ``max_norm`` when ``enabled``; always return the pre-clip norm.

    The reference configures ``grad_norm`` 1.0 but runs with ``truncate_grads`` False, i.e. no clipping
    (spec §9.10); ``enabled`` is that switch.
    """
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(params, max_norm if enabled else float("inf"))


class MixedPrecision:
    """Autocast (fp16 plus a GradScaler, or bf16 without one) on CUDA; a transparent no-op on CPU or when disabled.

    Usage per minibatch::

        with mp.autocast():
            loss = compute_loss()
        grad_norm = mp.step(loss, optimizer, params, max_norm=1.0, clip=False)
    """

    def __init__(self, device: torch.device | str, enabled: bool = True, dtype: torch.dtype = torch.float16) -> None:
        self.device = torch.device(device)
        self.enabled = bool(enabled) and self.device.type == "cuda"
        self.dtype = dtype
        # bfloat16 has float32's exponent range: no loss scaling, hence no GradScaler and none of its host syncs
        use_scaler = self.enabled and dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=True) if use_scaler else None
        self.skipped_steps = 0  # steps the scaler skipped because of inf/NaN gradients (logged by the trainer)
        #: called with the parameters right after backward, before unscale/clip/step (None: nothing); the
        #: data-parallel trainers average the gradients over the ranks here (core.learn.distributed)
        self.grad_hook: Callable[[list[torch.nn.Parameter]], None] | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)

    def step(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        params: Iterable[torch.nn.Parameter],
        max_norm: float = 1.0,
        clip: bool = False,
        want_norm: bool = True,
    ) -> torch.Tensor | None:
        """``zero_grad``, backward, (unscale), optional clip, optimiser step, scaler update. Returns the grad norm
        (None when ``want_norm`` is false and nothing is clipped: the norm is then not computed at all).

        With a scaler, a step whose gradients are inf/NaN is skipped (the returned norm is then inf or NaN), the
        scale is halved and ``skipped_steps`` counts it; the first few steps of a run are typically skipped while
        the scale (initially 2^16) settles.
        """
        params = list(params)
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            if self.grad_hook is not None:
                self.grad_hook(params)
            norm = clip_grad_norm_if(params, max_norm, clip) if (want_norm or clip) else None
            optimizer.step()
            return norm
        self.scaler.scale(loss).backward()
        if self.grad_hook is not None:  # scaled gradients: an inf on any rank reaches every rank, all skip alike
            self.grad_hook(params)
        self.scaler.unscale_(optimizer)
        norm = clip_grad_norm_if(params, max_norm, clip) if (want_norm or clip) else None
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        self.skipped_steps += int(self.scaler.get_scale() < scale)
        return norm

    def state_dict(self) -> dict:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
