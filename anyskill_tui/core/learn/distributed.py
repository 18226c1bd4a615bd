"""Data-parallel training over several processes (GPUs of one host, or several hosts) with ``torch.distributed``.

Launch: ``anyskill llc train ... --nproc N`` / ``anyskill train ... --nproc N`` start the run's runner under
``python -m torch.distributed.run --standalone --nproc-per-node N`` (:mod:`anyskill_tui.core.jobs.launcher`); every
rank runs ``anyskill_tui.core.jobs.runner``, rank 0 is the runner proper (it owns the Run row) and announces the job
to the other ranks, which run the same trainer silently. The trainers (``llc_train``, ``skill_train``) call
:func:`current` and the hooks of the returned :class:`DistContext`; with one process (no ``WORLD_SIZE`` > 1 in the
environment) that is :data:`SINGLE`, whose hooks do nothing and add no operation: the single-process numbers are
exactly those of the code without this module.

What a world of W ranks does, and why it equals one process with W times the envs:

- **Envs**: each rank simulates ``num_envs / W`` envs (an error when W does not divide it) seeded
  :meth:`DistContext.rank_seed` (seed + 1,000,003·rank: a stride wider than the offsets the trainers add, so no two
  generators of a run share a seed); networks start from the same seed and are broadcast from rank 0 anyway.
  Per-env constants indexed by the global env number (the LLC's ε-greedy probabilities) are strided
  (:meth:`DistContext.shard`: rank r holds global envs r, r+W, ...), so every rank sees the same mix.
- **Minibatches**: every size that is a batch of samples (``ppo.minibatch_size``, ``calm.amp_minibatch_size``)
  is divided by W, so the union of the ranks' minibatches is one global minibatch and an epoch takes as many
  optimiser steps as one process would. Each rank's loss is a mean over its equal share, so the average of the
  ranks' gradients (:meth:`DistContext.all_reduce_grads`: one flattened bucket, one all-reduce, after backward
  and before clipping/stepping, through ``MixedPrecision.grad_hook``) is the gradient of the global mean loss.
  Exceptions, documented: masked means (CALM's ε-greedy actor and bounds losses) average per-rank means
  (equal in expectation thanks to the strided ε probabilities, not sample for sample), and the encoder's
  uniformity term (a log-mean-exp over pairs) is taken within each rank's share.
- **Normalisers**: every ``RunningMeanStd.update`` or ``update_counts`` with rank-local data becomes the update
  with all ranks' data (:meth:`DistContext.make_global`: the batch moments (count, mean, var) of every rank are
  gathered and combined with the parallel-variance formula, then merged as one batch), so the statistics stay
  identical on every rank and equal those of one process that saw all the data. Advantages are normalised with
  the global masked mean and std (:meth:`DistContext.normalize_advantages`).
- **Buffers**: CALM's demo and replay buffers stay rank-local, each with 1/W of the configured capacity and
  fed with 1/W of the per-epoch demo pairs and this rank's agent windows. A rank's minibatch draws its share
  of demo/replay rows from its own buffer; the union of the ranks' draws is a stratified sample of the union of
  the buffers, which has the single-process size and fill schedule, so the discriminator sees the same
  distribution with no buffer traffic between GPUs.
- **Outputs**: rank 0 alone writes checkpoints, metrics and DB rows (:meth:`DistContext.rank_context` gives
  the other ranks a context that writes nothing). Logged scalars are averaged over the ranks (counts summed).
  Decisions that end the loop (a stop request, the time budget, a non-finite loss) are agreed by all ranks.
- **Checkpoints** (:meth:`DistContext.gather_checkpoint`): the learner (networks, optimiser, normalisers, epoch)
  is identical on every rank and stored once; the rank-local parts (env state, latents, buffers, generators)
  are rank 0's at the top level, so one process loads the file like any checkpoint, and those of ranks 1..W-1
  go under ``state["dist"]``. Resuming (:meth:`DistContext.resume_state`) on the same W restores every rank
  exactly; on another W each rank takes the learner and refills the rest: envs restart, generators restart from
  their seeds, and (LLC) the union of all saved buffer rows is dealt out again, every rank taking the same number
  (:func:`restripe_llc_buffers`), so 2 ranks -> 1 process keeps all rows and 1 -> 2 splits them.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as tdist

from anyskill_tui.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.core.jobs.trainers import TrainContext
    from anyskill_tui.core.learn.config import LlcConfig
    from anyskill_tui.core.learn.normalizer import RunningMeanStd
    from anyskill_tui.core.learn.ppo import MixedPrecision

__all__ = [
    "SINGLE",
    "DistContext",
    "check_nproc",
    "current",
    "init_from_env",
    "local_llc_config",
    "restripe_llc_buffers",
    "shutdown",
    "watch_parent",
]

#: added per rank to every seed of a rank-local generator (wider than any offset the trainers add to a seed)
RANK_SEED_STRIDE = 1_000_003
#: the LLC checkpoint's rank-local parts (everything else is the learner, identical on every rank)
LLC_LOCAL_KEYS: tuple[tuple[str, ...], ...] = (("buffers",), ("latents",), ("env",), ("rng",))
#: the skill checkpoint's rank-local parts
SKILL_LOCAL_KEYS: tuple[tuple[str, ...], ...] = (
    ("train", "rng"),
    ("train", "prompt_idx"),
    ("train", "prompt_timer"),
    ("train", "episode_lengths"),
)


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        if default is None:
            raise UserError(f"{name} is not set: start distributed training with torchrun (or --nproc N)")
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not an integer") from None


@dataclass
class DistContext:
    """Where this process stands in a data-parallel world, and the collectives the trainers need.

    Attributes:
        rank: global rank (0 is the main rank: the only one that writes).
        world_size: number of processes (1: no process group, every method is a no-op).
        local_rank: rank on this host (the CUDA device index under the nccl backend).
        device: the device the collectives run on: ``cuda:local_rank`` (nccl) or cpu (gloo).
        backend: ``nccl``, ``gloo`` or None (one process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    _announced: bool = field(default=False, repr=False)

    # -------------------------------------------------------------------------------------- basics

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the rank that writes checkpoints, metrics and DB rows)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1

    def rank_seed(self, seed: int) -> int:
        """The seed of this rank's env/rollout generators: ``seed + 1,000,003·rank`` (``seed`` on rank 0)."""
        return int(seed) + RANK_SEED_STRIDE * self.rank

    def local_count(self, n: int, what: str) -> int:
        """``n / world_size``; a UserError naming ``what`` when the world size does not divide ``n``."""
        n = int(n)
        if n % self.world_size:
            raise UserError(
                f"{what} {n} is not divisible by the {self.world_size} processes (--nproc {self.world_size}): "
                f"choose a multiple of {self.world_size}"
            )
        return n // self.world_size

    def local_llc_config(self, cfg: LlcConfig) -> LlcConfig:
        """This rank's share of a global LLC config (:func:`local_llc_config`); ``cfg`` itself with one process."""
        return local_llc_config(cfg, self.world_size)

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a per-env tensor indexed by the global env number: rows r, r+W, r+2W, ..."""
        return x if not self.enabled else x[self.rank :: self.world_size]

    def check_device(self, device: torch.device | str) -> None:
        """A UserError when the learner's device does not suit the backend (nccl: CUDA, gloo: CPU)."""
        if not self.enabled:
            return
        dev = torch.device(device)
        if self.backend == "nccl" and dev.type != "cuda":
            raise UserError(
                "distributed training on the cpu engine needs the gloo backend (ANYSKILL_DIST_BACKEND=gloo); "
                "`--nproc` with --engine cpu sets it"
            )
        if self.backend == "gloo" and dev.type != "cpu":
            raise UserError("the gpu engine trains over several GPUs with the nccl backend, not gloo")

    # -------------------------------------------------------------------------------------- collectives

    def _tensor(self, values: Sequence[float], dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.tensor(list(values), dtype=dtype, device=self.device)

    def broadcast_modules(self, *modules: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's modules (in place)."""
        if not self.enabled:
            return
        for m in modules:
            for t in (*m.parameters(), *m.buffers()):
                tdist.broadcast(t.data, src=0)

    def broadcast_tensors(self, tensors: Iterable[torch.Tensor]) -> None:
        """Copy rank 0's values of ``tensors`` into every rank's (in place)."""
        if not self.enabled:
            return
        for t in tensors:
            tdist.broadcast(t.data, src=0)

    def broadcast_object(self, obj: Any = None) -> Any:
        """Rank 0's ``obj`` on every rank (pickled)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    @torch.no_grad()
    def all_reduce_grads(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Average the gradients of ``params`` over the ranks: one flattened bucket per dtype, one all-reduce each.

        Parameters without a gradient contribute zeros and stay without one; a parameter must get a gradient on
        every rank or on none (true for both trainers: every parameter is in every loss).
        """
        if not self.enabled:
            return
        params = [p for p in params if p.requires_grad]
        groups: dict[tuple[torch.dtype, torch.device], list[torch.nn.Parameter]] = {}
        for p in params:
            groups.setdefault((p.dtype, p.device), []).append(p)
        for ps in groups.values():
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in ps])
            tdist.all_reduce(flat)
            flat.div_(self.world_size)
            offset = 0
            for p in ps:
                n = p.numel()
                if p.grad is not None:
                    p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
                offset += n

    def all_reduce_mean(self, x: Any) -> Any:
        """The mean over the ranks of a tensor (any shape) or of a dict of scalars (floats or 0-d tensors).

        A dict key missing on some ranks is averaged over the ranks that have it (one small all-gather of the key
        lists first). With one process ``x`` itself is returned.
        """
        if not self.enabled:
            return x
        if isinstance(x, torch.Tensor):
            y = x.detach().clone()
            tdist.all_reduce(y)
            return y / self.world_size
        keys = sorted(x)
        everyone: list[Any] = [None] * self.world_size
        tdist.all_gather_object(everyone, keys)
        union = sorted(set().union(*everyone))
        index = {k: i for i, k in enumerate(union)}
        buf = torch.zeros(2 * len(union), dtype=torch.float64, device=self.device)
        for k in keys:
            v = x[k]
            buf[index[k]] = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
            buf[len(union) + index[k]] = 1.0
        tdist.all_reduce(buf)
        vals = (buf[: len(union)] / buf[len(union) :].clamp_min(1.0)).tolist()
        out: dict[str, Any] = {}
        for k, v in zip(union, vals, strict=True):
            src = x.get(k)
            out[k] = torch.tensor(v, dtype=src.dtype, device=src.device) if isinstance(src, torch.Tensor) else v
        return out

    def any_true(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (a stop request, a time budget): one all-reduce."""
        if not self.enabled:
            return bool(flag)
        t = self._tensor([1.0 if flag else 0.0], torch.float32)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def normalize_advantages(
        self, adv: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8
    ) -> torch.Tensor:
        """:func:`~anyskill_tui.core.learn.ppo.normalize_advantages` with the mean and std of all ranks' entries."""
        from anyskill_tui.core.learn.ppo import normalize_advantages

        if not self.enabled:
            return normalize_advantages(adv, mask, eps)
        m = torch.ones_like(adv) if mask is None else mask.to(adv.dtype)
        s = torch.stack([(adv * m).sum(), m.sum()])
        tdist.all_reduce(s)
        count = s[1].clamp_min(1.0)
        mean = s[0] / count
        v = ((adv - mean).square() * m).sum()
        tdist.all_reduce(v)
        return (adv - mean) / ((v / count).sqrt() + eps)

    # -------------------------------------------------------------------------------------- normalisers

    def _gather_moments(
        self, count: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every rank's (count, mean, var), combined exactly: ``n = Σ n_r``, ``μ = Σ n_r μ_r / n``,
        ``σ² = Σ n_r (σ_r² + (μ_r − μ)²) / n`` (the parallel-variance formula for W parts; no cancellation).
        A zero total keeps mean 0 and var 1 (an empty normaliser)."""
        f = mean.numel()
        row = torch.cat([count.reshape(1).to(torch.float64), mean.reshape(-1), var.reshape(-1)]).to(self.device)
        table = torch.zeros((self.world_size, row.numel()), dtype=torch.float64, device=self.device)
        table[self.rank] = row
        tdist.all_reduce(table)  # an all-gather that works on every backend (adding zeros is exact)
        n_r, mu_r, var_r = table[:, 0], table[:, 1 : 1 + f], table[:, 1 + f :]
        n = n_r.sum()
        safe = n.clamp_min(1.0)
        mu = (n_r[:, None] * mu_r).sum(0) / safe
        m2 = (n_r[:, None] * (var_r + (mu_r - mu).square())).sum(0)
        var_g = torch.where(n > 0, m2 / safe, torch.ones_like(m2))
        shape = mean.shape
        return n, mu.reshape(shape), var_g.reshape(shape)

    @torch.no_grad()
    def sync_normalizer(self, rms: RunningMeanStd) -> None:
        """Combine the ranks' running statistics as disjoint samples: afterwards every rank holds the count, mean
        and var that one process would have after seeing all ranks' data (exact up to float64 rounding)."""
        if not self.enabled:
            return
        n, mu, var = self._gather_moments(rms.count, rms.mean, rms.var)
        rms.count.copy_(n.to(rms.count.device))
        rms.mean.copy_(mu.to(rms.mean.device))
        rms.var.copy_(var.to(rms.var.device))

    def make_global(self, rms: RunningMeanStd) -> None:
        """Make every later ``rms.update(x)`` / ``rms.update_counts(...)`` merge the batch of ALL ranks (called
        with each rank's own data).

        Every rank must call them the same number of times in the same order (both trainers do: the calls do not
        depend on rank-local data). Replaces the instance's ``merge_moments``; the class is unchanged.
        """
        if self.enabled:
            rms.merge_moments = _GlobalMerge(rms, self)  # type: ignore[method-assign]

    def install(self, mp: MixedPrecision | None = None, normalizers: Iterable[RunningMeanStd] = ()) -> None:
        """The trainer hooks: gradient averaging in ``mp.step`` (after backward, before unscale/clip/step) and
        global normaliser updates. Nothing happens with one process."""
        if not self.enabled:
            return
        if mp is not None:
            mp.grad_hook = self.all_reduce_grads
        for rms in normalizers:
            self.make_global(rms)

    # -------------------------------------------------------------------------------------- checkpoints

    def gather_checkpoint(self, state: dict[str, Any], local_keys: Sequence[tuple[str, ...]]) -> dict[str, Any] | None:
        """The checkpoint rank 0 writes (None on the other ranks; all ranks must call this together).

        ``state`` is this rank's full state; the parts under ``local_keys`` are rank-local. Rank 0's stay at the
        top level, the others' go to ``state["dist"] = {"world_size": W, "ranks": [None, parts_1, ...]}``.
        """
        if not self.enabled:
            return state
        mine = _pick(state, local_keys)
        box: list[Any] | None = [None] * self.world_size if self.is_main else None
        tdist.gather_object(None if self.is_main else mine, box, dst=0)
        if not self.is_main:
            return None
        assert box is not None
        state["dist"] = {"world_size": self.world_size, "ranks": [None, *box[1:]]}
        return state

    def resume_state(
        self,
        state: dict[str, Any],
        local_keys: Sequence[tuple[str, ...]],
        fresh: Callable[[], Mapping[str, Any]],
        merge: Mapping[tuple[str, ...], Callable[[list[Any]], Any]] | None = None,
    ) -> dict[str, Any]:
        """This rank's view of a checkpoint written by :meth:`gather_checkpoint` (or by one process).

        Same world size: this rank's own saved parts (an exact resume). Another world size: the learner is taken
        as saved and each rank-local part is refilled: ``merge[path](values of every saved rank)`` where given
        (the LLC buffers), else the trainer's ``fresh()`` value (envs restart, generators restart from this rank's
        seeds). A one-process checkpoint resumed by one process is returned unchanged.
        """
        info = state.get("dist") or {}
        saved_w = int(info.get("world_size", 1))
        if saved_w == 1 and not self.enabled:
            return state
        out = {k: v for k, v in state.items() if k != "dist"}
        ranks = [_pick(state, local_keys), *list(info.get("ranks") or [None])[1:]]
        if saved_w == self.world_size:
            own = ranks[self.rank]
            for path in local_keys:
                out = _set(out, path, _get(own, path))
            return out
        new = fresh()
        for path in local_keys:
            value = merge[path]([_get(r, path) for r in ranks]) if merge and path in merge else _get(new, path)
            out = _set(out, path, value)
        return out

    def rank_context(self, ctx: TrainContext) -> TrainContext:
        """``ctx`` on rank 0; on the other ranks a context with the same config, run dir, resume point and stop
        flag whose outputs (metrics, progress, heartbeats, checkpoints) go nowhere."""
        if self.is_main:
            return ctx
        return _silent_context(ctx)

    # -------------------------------------------------------------------------------------- runner <-> ranks

    def announce_job(self, job: Mapping[str, Any] | None) -> None:
        """Rank 0: tell the other ranks what to run (``None``: nothing). Sent once; later calls do nothing."""
        if not self.enabled or not self.is_main or self._announced:
            return
        self._announced = True
        self.broadcast_object(None if job is None else dict(job))

    def receive_job(self) -> dict[str, Any] | None:
        """Ranks > 0: wait for rank 0's :meth:`announce_job`."""
        return self.broadcast_object(None)


#: the one-process context: every hook is a no-op
SINGLE = DistContext()
_ACTIVE: DistContext | None = None


class _GlobalMerge:
    """``RunningMeanStd.merge_moments`` of all ranks' batches (see :meth:`DistContext.make_global`)."""

    def __init__(self, rms: RunningMeanStd, dist: DistContext) -> None:
        self.rms, self.dist = rms, dist

    @torch.no_grad()
    def __call__(self, n_local: int | torch.Tensor, mean_l: torch.Tensor, var_l: torch.Tensor) -> None:
        rms = self.rms
        count_l = torch.as_tensor(n_local, dtype=torch.float64, device=rms.mean.device)
        n_b, mean_b, var_b = self.dist._gather_moments(count_l, mean_l, var_l)
        # the class's merge of one batch, the global one (a batch of count 0 on every rank changes nothing)
        type(rms).merge_moments(rms, n_b.to(rms.mean.device), mean_b.to(rms.mean.device), var_b.to(rms.mean.device))


# ------------------------------------------------------------------------------------------ state paths


def _get(state: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = state
    for k in path:
        cur = cur[k]
    return cur


def _pick(state: Mapping[str, Any], paths: Sequence[tuple[str, ...]]) -> dict[str, Any]:
    """The parts of ``state`` at ``paths``, nested as in ``state`` (e.g. ``{"train": {"rng": ...}}``)."""
    out: dict[str, Any] = {}
    for path in paths:
        out = _set(out, path, _get(state, path))
    return out


def _set(state: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``state`` (copied along ``path`` only) with ``value`` at ``path``."""
    out = dict(state)
    if len(path) == 1:
        out[path[0]] = value
        return out
    out[path[0]] = _set(dict(state.get(path[0]) or {}), path[1:], value)
    return out


def _silent_context(ctx: TrainContext) -> TrainContext:
    from anyskill_tui.core.jobs.checkpoints import checkpoint_dir, checkpoint_name
    from anyskill_tui.core.jobs.trainers import TrainContext

    class _RankContext(TrainContext):
        """A rank > 0's context: same inputs, no outputs (rank 0 writes everything)."""

        def heartbeat(self) -> None:
            pass

        def write_heartbeat(self) -> None:
            pass

        def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
            pass

        def save_checkpoint(self, step: int, state: dict[str, Any], metrics: dict[str, Any] | None = None) -> Path:
            return checkpoint_dir(self.run_dir) / checkpoint_name(step)  # the file rank 0 writes

        def progress(self, step: int, total: int | None = None) -> None:
            with self._lock:
                self._progress = (int(step), None if total is None else int(total))

        def write_progress_file(self) -> None:
            pass

        def close(self) -> None:
            pass

    return _RankContext(
        run_id=ctx.run_id,
        run_dir=Path(ctx.run_dir),
        config=ctx.config,
        resume_from=ctx.resume_from,
        library=None,
        stop_event=ctx.stop_event,
    )


# ------------------------------------------------------------------------------------------ LLC specifics


def local_llc_config(cfg: LlcConfig, world_size: int) -> LlcConfig:
    """The config one of ``world_size`` ranks trains with: envs, minibatch sizes, per-epoch demo pairs and buffer
    capacities divided by the world size (envs and minibatches must divide exactly; capacities round up)."""
    if world_size <= 1:
        return cfg
    from anyskill_tui.core.learn.config import llc_config_from_dict

    d = DistContext(world_size=world_size)
    e, p, c = cfg.env, cfg.ppo, cfg.calm
    over = {
        "env.num_envs": d.local_count(e.num_envs, "env.num_envs"),
        "ppo.minibatch_size": d.local_count(p.minibatch_size, "ppo.minibatch_size"),
        "calm.amp_minibatch_size": d.local_count(c.amp_minibatch_size, "calm.amp_minibatch_size"),
        "calm.amp_batch_size": math.ceil(c.amp_batch_size / world_size),
        "calm.demo_buffer_size": math.ceil(c.demo_buffer_size / world_size),
        "calm.replay_buffer_size": math.ceil(c.replay_buffer_size / world_size),
    }
    return llc_config_from_dict(cfg.to_dict(), source=f"the per-process config (--nproc {world_size})", overrides=over)


def restripe_llc_buffers(
    saved: list[Mapping[str, Any]], rank: int, world_size: int, demo_capacity: int, replay_capacity: int
) -> dict[str, Any]:
    """The LLC buffers of ``rank`` in a new world: the union of every saved rank's rows dealt out by stride
    (rank r takes rows r, r+W, ...), every rank the same number (total // W, at most its capacity)."""

    def deal(rows: list[torch.Tensor], cap: int) -> torch.Tensor:
        allrows = torch.cat(rows) if rows else torch.zeros((0,))
        n = min(allrows.shape[0] // world_size, cap)
        return allrows[rank::world_size][:n]

    demo_rec = deal([b["demo"]["recipe"][: int(b["demo"]["size"])] for b in saved], demo_capacity)
    rep_rec = deal([b["replay"]["recipe"][: int(b["replay"]["size"])] for b in saved], replay_capacity)
    rep_amp = deal([b["replay"]["amp"][: int(b["replay"]["size"])] for b in saved], replay_capacity)
    return {
        "demo": {"size": demo_rec.shape[0], "head": demo_rec.shape[0] % demo_capacity, "recipe": demo_rec},
        "replay": {
            "size": rep_rec.shape[0],
            "head": rep_rec.shape[0] % replay_capacity,
            "amp": rep_amp,
            "recipe": rep_rec,
        },
    }


# ------------------------------------------------------------------------------------------ process group


def check_nproc(nproc: int, engine: str) -> None:
    """A UserError when ``nproc`` processes cannot run on ``engine``: the gpu engine needs one CUDA device per
    process; the cpu engine runs any number (gloo)."""
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1, got {nproc}")
    if engine == "gpu" and nproc > 1:
        n = torch.cuda.device_count()
        if nproc > n:
            vis = os.environ.get("CUDA_VISIBLE_DEVICES")
            where = f" (CUDA_VISIBLE_DEVICES={vis})" if vis is not None else ""
            raise UserError(
                f"--nproc {nproc} needs {nproc} CUDA devices, but {n} {'is' if n == 1 else 'are'} visible{where}; "
                f"use --nproc {max(n, 1)} or fewer"
            )


def init_from_env(backend: str | None = None) -> DistContext:
    """Join the process group described by torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT) and return this process's :class:`DistContext` (:data:`SINGLE` when WORLD_SIZE is 1).

    The backend: ``backend``, else ``ANYSKILL_DIST_BACKEND`` (the launcher sets it from the run's engine), else
    nccl with CUDA and gloo without. Under nccl the process uses ``cuda:LOCAL_RANK`` as its current device (so
    "cuda" means that GPU to torch and to warp). NVLink multicast stays off (``NCCL_NVLS_ENABLE=0``).
    """
    global _ACTIVE
    if _ACTIVE is not None:
        return _ACTIVE
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return SINGLE
    from anyskill_tui.core.jobs.launcher import DIST_BACKEND_ENV

    rank = _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK", rank)
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(var):
            raise UserError(f"{var} is not set: start distributed training with torchrun (or --nproc N)")
    backend = backend or os.environ.get(DIST_BACKEND_ENV) or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("nccl", "gloo"):
        raise UserError(f"{DIST_BACKEND_ENV}={backend!r}: choose nccl (GPUs) or gloo (CPU)")
    os.environ["NCCL_NVLS_ENABLE"] = "0"
    device = torch.device("cpu")
    if backend == "nccl":
        n = torch.cuda.device_count()
        if local_rank >= n:
            raise UserError(
                f"rank {rank} (local rank {local_rank}) has no CUDA device: {n} visible; start at most {n} "
                "processes per host"
            )
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        torch.zeros(1, device=device)  # make this GPU's context current, so warp's "cuda" is this GPU as well
    if not tdist.is_initialized():
        tdist.init_process_group(backend, rank=rank, world_size=world)
    _ACTIVE = DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device, backend=backend)
    return _ACTIVE


def current() -> DistContext:
    """This process's context: the active one, else one from torchrun's variables, else :data:`SINGLE`."""
    if _ACTIVE is not None:
        return _ACTIVE
    if _env_int("WORLD_SIZE", 1) > 1:
        return init_from_env()
    return SINGLE


def shutdown() -> None:
    """Leave the process group (if any) and forget the active context."""
    global _ACTIVE
    _ACTIVE = None
    if tdist.is_available() and tdist.is_initialized():
        with contextlib.suppress(Exception):
            tdist.destroy_process_group()


def watch_parent(interval_s: float = 1.0) -> threading.Thread | None:
    """Under torchrun: kill this process (SIGKILL) once its parent, the torchrun agent, is gone.

    torchrun starts each rank in its own session, so a SIGKILL of the agent's process group (``anyskill runs
    stop`` after its grace) would otherwise leave the ranks running on the GPUs. A daemon thread polls the parent
    pid (no ``PR_SET_PDEATHSIG``: that fires when the spawning *thread* exits). Returns the thread, or None when
    not under torchrun.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    parent = os.getppid()

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                print(f"[anyskill rank] torchrun (pid {parent}) is gone: exiting", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    t = threading.Thread(target=loop, name="anyskill-parent-watch", daemon=True)
    t.start()
    return t


def owner_pid() -> int:
    """The process that stands for the run in its Run row: the torchrun agent under torchrun (the launcher's
    child and the group ``anyskill runs stop`` signals), else this process."""
    return os.getppid() if "TORCHELASTIC_RUN_ID" in os.environ else os.getpid()
