"""Running mean/std normaliser for observations, AMP features and values (spec §3.4).

The statistics change only when :meth:`RunningMeanStd.update` is called. The trainer calls it once per PPO
minibatch while training (the reference updates in train mode only, never during rollouts); acting and reward
computation only call :meth:`normalize`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Per-feature running mean and variance, merged batch by batch (Chan et al.'s parallel formula).

    Args:
        shape: the feature shape, e.g. ``223`` or ``(125,)``. Inputs may carry any number of leading dims
            (batch, time, window steps); their trailing dims must equal ``shape``. One 125-d normaliser can
            therefore serve 10- and 60-step AMP windows shaped ``(B, K, 125)``.
        eps: added to the variance before the square root.
        clip: normalised values are clamped to ``[-clip, clip]``; ``None`` or ``inf`` disables the clamp.

    The statistics are float64 buffers (in ``state_dict``, moved by ``.to(device)``); outputs keep the input dtype.
    ``count`` starts at 0, when :meth:`normalize` is the identity map up to ``eps``.
    """

    def __init__(self, shape: int | Sequence[int], eps: float = 1e-5, clip: float | None = 5.0) -> None:
        super().__init__()
        self.shape = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
        self.eps = float(eps)
        self.clip = None if clip is None or clip == float("inf") else float(clip)
        self.register_buffer("mean", torch.zeros(self.shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(self.shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.shape)
        if tuple(x.shape[x.dim() - n :]) != self.shape:
            raise ValueError(f"RunningMeanStd{self.shape}: input shape {tuple(x.shape)} has the wrong trailing dims")
        return x.reshape(-1, *self.shape)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the batch statistics of ``x`` (all leading dims pooled) into the running ones."""
        x = self._flat(x.detach())
        n_b = x.shape[0]
        if n_b:
            # batch moments in one pass at the input's precision (float64 inputs stay exact), merged in float64: a
            # float64 copy of a (16,384 x 60, 125) window batch cost more than the reduction itself
            var_b, mean_b = torch.var_mean(x, dim=0, unbiased=False)
            var_b, mean_b = var_b.to(self.var.dtype), mean_b.to(self.mean.dtype)
        else:
            mean_b, var_b = torch.zeros_like(self.mean), torch.zeros_like(self.var)
        self.merge_moments(n_b, mean_b, var_b)

    @torch.no_grad()
    def update_counts(self, rows: torch.Tensor, counts: torch.Tensor) -> None:
        """Merge the statistics of the multiset in which ``rows[r]`` occurs ``counts[r]`` times: the same as
        ``update(rows.repeat_interleave(counts, 0))`` without building that batch, and without a host sync.

        ``rows`` (R, *shape), ``counts`` (R,) non-negative. The trainer's alignment windows are gathers of a few
        thousand table rows; their statistics from row counts cost a (R,)·(R, F) product instead of passes over a
        (b, 60, F) batch."""
        x = self._flat(rows.detach()).to(self.mean.dtype)
        w = counts.detach().to(self.mean.dtype)
        n_b = w.sum()
        safe = n_b.clamp_min(1.0)
        mean_b = (w @ x.flatten(1)).reshape(self.shape) / safe
        var_b = (w @ (x - mean_b).square().flatten(1)).reshape(self.shape) / safe
        self.merge_moments(n_b, mean_b, var_b)

    @torch.no_grad()
    def merge_moments(self, n_b: int | torch.Tensor, mean_b: torch.Tensor, var_b: torch.Tensor) -> None:
        """Merge a batch given by its count, mean and population variance (float64, this normaliser's shape) into
        the running statistics (Chan et al.). A batch of count 0 changes nothing. A data-parallel run replaces
        this method on the instance with one that merges all ranks' batches
        (:meth:`~anyskill_tui.core.learn.distributed.DistContext.make_global`)."""
        if not torch.is_tensor(n_b) and n_b == 0:
            return
        n_a = self.count
        total = n_a + n_b
        safe = total.clamp_min(1.0)
        delta = mean_b - self.mean
        new_mean = self.mean + delta * (n_b / safe)
        new_var = (self.var * n_a + var_b * n_b + delta.square() * (n_a * n_b / safe)) / safe
        if torch.is_tensor(n_b):  # a count on the device: keep the statistics where it is 0, without a host sync
            keep = n_b <= 0
            new_mean, new_var = torch.where(keep, self.mean, new_mean), torch.where(keep, self.var, new_var)
        self.mean.copy_(new_mean)
        self.var.copy_(new_var)
        self.count.copy_(total)

    def _mean_std(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean`` and ``sqrt(var + eps)`` cast to ``dtype``, cached until the statistics change.

        The key holds the buffers' identity and in-place version counters, so ``update``, ``load_state_dict``,
        ``.to()`` and any direct in-place write invalidate it: a rollout normalising every step pays for the float64
        square root and casts once per statistics change, not once per call. The values are exactly those the
        uncached expression gives.
        """
        m, v = self.mean, self.var
        try:
            key = (m.data_ptr(), v.data_ptr(), m._version, v._version, m.device, dtype)
        except RuntimeError:  # inference tensors have no version counter: no cache
            return m.to(dtype), torch.sqrt(v + self.eps).to(dtype)
        cache = self.__dict__.get("_ms_cache")
        if cache is None or cache[0] != key:
            cache = (key, m.to(dtype), torch.sqrt(v + self.eps).to(dtype))
            self.__dict__["_ms_cache"] = cache
        return cache[1], cache[2]

    def clear_cache(self) -> None:
        """Forget the cached casts of :meth:`_mean_std`. Needed only after writes that bump no version counter,
        e.g. a CUDA graph replaying :meth:`update`."""
        self.__dict__.pop("_ms_cache", None)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / sqrt(var + eps)``, clamped to ``±clip``; differentiable in ``x``, same dtype as ``x``."""
        self._flat(x)  # shape check
        mean, std = self._mean_std(x.dtype)
        y = (x - mean) / std
        if self.clip is not None:
            y = y.clamp(-self.clip, self.clip)
        return y

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize` without the clamp (used for the value normaliser)."""
        self._flat(y)
        mean, std = self._mean_std(y.dtype)
        return y * std + mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, eps={self.eps}, clip={self.clip}"
