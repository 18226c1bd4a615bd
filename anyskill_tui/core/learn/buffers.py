"""Buffers for CALM (spec §4.5): the demo buffer, the agent replay buffer and the rollout storage.

Both window buffers hold pairs: a ``num_amp_obs_steps`` AMP window (what D sees) and the ``num_amp_enc_obs_steps``
encoder window that produced its latent (D is conditioned on ``E(enc window)``). They live on one device,
are preallocated, and round-trip through ``state_dict``. With ``enc_shape=None`` a buffer stores the AMP windows
alone: the LLC trainer keeps each encoder window as a recipe into its demo window bank instead (60 x 125 floats
per row would be 1.5 GB per 50,000-row buffer).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch

from anyskill_tui.core.learn.ppo import rng_device


def _shape(s: int | Sequence[int]) -> tuple[int, ...]:
    return (int(s),) if isinstance(s, int) else tuple(int(d) for d in s)


class _PairBuffer:
    """Preallocated storage of ``(amp, enc)`` pairs with uniform sampling."""

    def __init__(
        self,
        capacity: int,
        amp_shape: int | Sequence[int],
        enc_shape: int | Sequence[int] | None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.amp = torch.zeros((self.capacity, *_shape(amp_shape)), device=self.device, dtype=dtype)
        self.enc = (
            None
            if enc_shape is None
            else torch.zeros((self.capacity, *_shape(enc_shape)), device=self.device, dtype=dtype)
        )
        self.size = 0
        self.head = 0  # next slot of the FIFO ring

    def __len__(self) -> int:
        return self.size

    @property
    def full(self) -> bool:
        return self.size == self.capacity

    def _check(self, amp: torch.Tensor, enc: torch.Tensor | None) -> None:
        if (enc is None) != (self.enc is None):
            raise ValueError("enc windows must be given exactly when the buffer stores them (enc_shape)")
        if enc is None or self.enc is None:
            if amp.shape[1:] != self.amp.shape[1:]:
                raise ValueError(f"expected rows shaped {tuple(self.amp.shape[1:])}, got {tuple(amp.shape[1:])}")
            return
        if amp.shape[0] != enc.shape[0]:
            raise ValueError(f"amp and enc batches differ in length: {amp.shape[0]} vs {enc.shape[0]}")
        if amp.shape[1:] != self.amp.shape[1:] or enc.shape[1:] != self.enc.shape[1:]:
            raise ValueError(
                f"expected rows shaped {tuple(self.amp.shape[1:])} and {tuple(self.enc.shape[1:])}, "
                f"got {tuple(amp.shape[1:])} and {tuple(enc.shape[1:])}"
            )

    def _write_fifo(self, amp: torch.Tensor, enc: torch.Tensor | None) -> None:
        n = amp.shape[0]
        if n >= self.capacity:  # only the newest `capacity` rows survive
            amp, n = amp[-self.capacity :], self.capacity
            enc = None if enc is None else enc[-self.capacity :]
        idx = (self.head + torch.arange(n, device=self.device)) % self.capacity
        self.amp[idx] = amp.to(self.device, self.amp.dtype)
        if self.enc is not None and enc is not None:
            self.enc[idx] = enc.to(self.device, self.enc.dtype)
        self.head = (self.head + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample_index(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n,) long: rows drawn uniformly with replacement (on the buffer's device)."""
        if self.size == 0:
            raise RuntimeError(f"{type(self).__name__} is empty")
        dev = rng_device(generator, self.device)
        return torch.randint(0, self.size, (n,), generator=generator, device=dev).to(self.device)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n`` pairs drawn uniformly with replacement (enc None when the buffer stores no encoder windows)."""
        idx = self.sample_index(n, generator)
        return self.amp[idx], None if self.enc is None else self.enc[idx]

    def state_dict(self) -> dict:
        enc = None if self.enc is None else self.enc[: self.size].clone()
        return {"amp": self.amp[: self.size].clone(), "enc": enc, "head": self.head}

    def load_state_dict(self, state: Mapping) -> None:
        amp, enc = state["amp"], state.get("enc")
        if amp.shape[0] > self.capacity:
            raise ValueError(f"state holds {amp.shape[0]} rows, more than the capacity {self.capacity}")
        self._check(amp, enc)
        n = amp.shape[0]
        self.amp[:n] = amp.to(self.device, self.amp.dtype)
        if self.enc is not None and enc is not None:
            self.enc[:n] = enc.to(self.device, self.enc.dtype)
        self.size = n
        self.head = int(state["head"]) % self.capacity


class DemoBuffer(_PairBuffer):
    """Demo ``(amp window, encoder window)`` pairs in a FIFO ring: once full, new pairs replace the oldest."""

    def push(self, amp: torch.Tensor, enc: torch.Tensor | None = None) -> None:
        self._check(amp, enc)
        self._write_fifo(amp, enc)


class ReplayBuffer(_PairBuffer):
    """Agent ``(amp window, encoder window)`` pairs from past rollouts.

    Until full, every pair is stored. Once full, each new pair is kept with probability ``keep_prob`` and the kept
    pairs overwrite uniformly random slots.
    """

    def __init__(self, capacity, amp_shape, enc_shape, keep_prob: float = 0.01, device="cpu", dtype=torch.float32):
        super().__init__(capacity, amp_shape, enc_shape, device, dtype)
        if not 0.0 <= keep_prob <= 1.0:
            raise ValueError("keep_prob must lie in [0, 1]")
        self.keep_prob = float(keep_prob)

    def push(
        self, amp: torch.Tensor, enc: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> None:
        self._check(amp, enc)
        free = self.capacity - self.size
        if free > 0:
            self._write_fifo(amp[:free], None if enc is None else enc[:free])
            amp, enc = amp[free:], None if enc is None else enc[free:]
        if amp.shape[0] == 0:
            return
        dev = rng_device(generator, amp.device)
        keep = (torch.rand(amp.shape[0], generator=generator, device=dev) < self.keep_prob).to(amp.device)
        k = int(keep.sum())
        if k == 0:
            return
        slots = torch.randint(0, self.capacity, (k,), generator=generator, device=dev).to(self.device)
        self.amp[slots] = amp[keep].to(self.device, self.amp.dtype)
        if self.enc is not None and enc is not None:
            self.enc[slots] = enc[keep].to(self.device, self.enc.dtype)


class RolloutStorage:
    """Per-step rollout tensors shaped ``(horizon, num_envs, *shape)`` and shuffled minibatches over them.

    Args:
        shapes: field name to per-sample shape, ``()`` for scalars, e.g. ``{"obs": (223,), "actions": (28,),
            "logp": (), "values": (), "rewards": (), "dones": (), "latents": (64,)}``.
        dtypes: optional per-field dtypes (default float32), e.g. ``{"dones": torch.bool}``.

    Fill it with :meth:`insert` at each step (or write ``storage[name][t]`` directly), add derived fields such
    as advantages with :meth:`set`, then iterate :meth:`minibatches`.
    """

    def __init__(
        self,
        horizon: int,
        num_envs: int,
        shapes: Mapping[str, int | Sequence[int]],
        device: torch.device | str = "cpu",
        dtypes: Mapping[str, torch.dtype] | None = None,
    ) -> None:
        self.horizon, self.num_envs, self.device = int(horizon), int(num_envs), torch.device(device)
        dtypes = dtypes or {}
        self.data: dict[str, torch.Tensor] = {
            name: torch.zeros(
                (self.horizon, self.num_envs, *_shape(shape)), device=self.device, dtype=dtypes.get(name, torch.float32)
            )
            for name, shape in shapes.items()
        }

    @property
    def batch_size(self) -> int:
        return self.horizon * self.num_envs

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.data[name]

    def insert(self, t: int, **values: torch.Tensor) -> None:
        """Write step ``t`` of the named fields (each ``(num_envs, *shape)``)."""
        for name, value in values.items():
            self.data[name][t] = value

    def set(self, name: str, value: torch.Tensor) -> None:
        """Add or replace a whole field; ``value`` must be ``(horizon, num_envs, ...)``."""
        if tuple(value.shape[:2]) != (self.horizon, self.num_envs):
            raise ValueError(f"{name}: expected leading dims {(self.horizon, self.num_envs)}, got {tuple(value.shape)}")
        self.data[name] = value.to(self.device)

    def flat(self, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """The fields flattened to ``(horizon·num_envs, *shape)``; row ``t·num_envs + i`` is step t of env i."""
        names = list(self.data) if names is None else names
        return {n: self.data[n].reshape(self.batch_size, *self.data[n].shape[2:]) for n in names}

    def minibatches(
        self,
        minibatch_size: int,
        names: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """One shuffled pass over all samples in minibatches of ``minibatch_size`` (the last may be short)."""
        flat = self.flat(names)
        dev = rng_device(generator, self.device)
        perm = torch.randperm(self.batch_size, generator=generator, device=dev).to(self.device)
        for start in range(0, self.batch_size, minibatch_size):
            idx = perm[start : start + minibatch_size]
            if drop_last and idx.numel() < minibatch_size:
                return
            yield {n: v[idx] for n, v in flat.items()}
