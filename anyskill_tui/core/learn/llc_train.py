"""CALM low-level-controller training (spec §4): ``train_llc(ctx)``, the ``llc`` trainer of the job runner.

One epoch:

1. **Rollout** of ``horizon_length`` LLC steps on ``HumanoidEnv`` (hybrid init, fall pool, recovery episodes,
   episode length from the config). Each env acts on a latent z = E(60-step demo window), redrawn on every reset
   and when its progress reaches a deadline that then advances by randint(min, max) (``latent_resample_deadlines``).
   Actions are ε-greedy per env and step: stochastic with probability p_i = 1 − exp(10·(i/(N−1) − 1)), else μ.
   Each sample keeps the *recipe* of its latent's 60-step window (clip id, end index in the demo bank), not the
   window: 7,500 floats per sample would cost GBs at 4,096 envs, and the update rebuilds a minibatch's windows by
   one gather from the bank. The loop has no host synchronisation (the gpu engine): latents are redrawn for
   every env and kept with ``torch.where`` where due, and envs restart through ``HumanoidEnv.reset_done_masked``
   (``set_state_where``); the episode statistics stay device tensors until the epoch's single read-back.
2. **Reward** after the rollout: r = w_cdisc·(−log(max(1 − σ(D(o_t, z_t)), 1e−4))·scale) with the current D and
   AMP normaliser, no gradient (the task and plain-AMP terms have weight 0 in the reference and are not computed).
3. **GAE** (γ, λ), the bootstrap zeroed on falls only, cut at every episode end; advantages normalised over the
   stochastic samples; the value normaliser (when on) updated with the values, then the returns, once per epoch.
4. **Update**: ``mini_epochs`` shuffled passes in minibatches; per minibatch the obs and AMP normalisers update
   (train mode, spec §3.4: the AMP one with every window D and the encoder regulariser see), z is recomputed as
   E(stored window) *with* gradient for actor and critic (each of the epoch's distinct windows encoded once per
   step, about 6,000 at 4,096 envs, not one per minibatch row), the conditional-disc loss uses the first
   ``amp_minibatch_size`` rows with replay windows (E under no_grad) and demo windows of the demo buffer, the encoder
   regulariser uses fresh alignment pairs, and one Adam step takes the total loss (on CUDA: bf16 autocast without
   a GradScaler, fused Adam; gradient clipping only with ``truncate_grads``). The encoder runs once with
   gradient (latent windows + alignment pairs; the pairs' normaliser statistics come from table-row counts, not
   gathered windows) and once without (demo + replay windows); D runs once on the
   agent + replay rows and once on the demo rows (the gradient penalty's double backward sees only those). No
   host synchronisation per minibatch: the logged statistics are summed on the device and read once per epoch.
   On CUDA (one process, ``ppo.cuda_graph``) the gradient step is captured once in a CUDA graph and replayed; the
   step's random draws stay outside it, so a graphed run equals an eager one bit for bit (measured on an H200).
5. **Buffers**: the demo buffer is filled at start and gets ``amp_batch_size`` new pairs per epoch; the epoch's
   agent windows go to the replay buffer (all until full, then each kept with ``replay_keep_prob``).

Checkpoints (``ctx.save_checkpoint`` every ``ppo.save_frequency`` epochs, at the end and on a stop request) hold
everything needed for an exact resume: all networks, optimiser, GradScaler, normalisers, the env's full state
(MuJoCo integration state rows, AMP history, counters, flags), the per-env latents and deadlines, the buffers,
epoch, samples and every RNG (torch cpu+cuda, the trainer's and env's generators, numpy, python). Buffers are
stored compactly: a demo window is stored as its *recipe* (clip id, window end times), from which MotionLib
rebuilds it exactly on load; replay entries keep their 10-step agent window and the recipe of their latent's
60-step window. With a fixed seed on the cpu engine, "train 4 epochs" equals "train 2, checkpoint, resume,
train 2" bit for bit (a test checks it). Resuming with a different ``env.num_envs`` restarts every episode.

The run config (``ctx.config``) is ``{"llc": <LlcConfig dict>, "motions": PATH, "engine": "cpu"|"gpu"|"auto",
"device": "auto", "threads": null, "time_budget_s": null, "keep_checkpoints": null}``; ``llc.ppo.max_epochs`` is
the epoch count. A non-finite loss raises ``UserError`` naming the loss, the epoch and the last good checkpoint,
without saving the bad state.

Several processes (``--nproc``, torchrun): every rank runs this trainer on 1/W of the envs, minibatches and buffers
of the (global) config, through the hooks of :mod:`~anyskill_tui.core.learn.distributed` (gradients averaged in
``mp.step``, normaliser updates and advantage statistics over all ranks, per-rank seeds, strided ε-greedy
probabilities, epoch metrics averaged, stop decisions agreed, rank 0 writing checkpoints that hold every rank's
env/buffer/RNG state). "2 ranks: train 4" equals "2 ranks: train 2, resume, train 2" bit for bit on the cpu engine.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyskill_tui.core.learn.buffers import DemoBuffer, ReplayBuffer
from anyskill_tui.core.learn.calm import (
    calm_total_loss,
    cond_disc_loss,
    cond_disc_reward,
    encoder_reg_loss,
    epsilon_greedy_mask,
    epsilon_greedy_probs,
    latent_resample_deadlines,
    mix_actions,
)
from anyskill_tui.core.learn.config import LlcConfig, llc_config_from_dict
from anyskill_tui.core.learn.cuda_graph import GraphedCall
from anyskill_tui.core.learn.distributed import LLC_LOCAL_KEYS, SINGLE, DistContext, restripe_llc_buffers
from anyskill_tui.core.learn.llc_policy import LLC_FORMAT, LlcPolicy
from anyskill_tui.core.learn.networks import CalmCritic, ConditionalDiscriminator
from anyskill_tui.core.learn.normalizer import RunningMeanStd
from anyskill_tui.core.learn.ppo import (
    MixedPrecision,
    bounds_loss,
    clip_fraction,
    gae,
    gaussian_log_prob,
    ppo_actor_loss,
    sample_gaussian,
    value_loss,
)
from anyskill_tui.errors import UserError

__all__ = ["train_llc", "LlcTrainer", "EPOCH_TAGS", "default_motions_path", "run_config"]

#: the TensorBoard scalar tags written every epoch
EPOCH_TAGS = (
    "losses/a_loss",
    "losses/c_loss",
    "losses/bounds_loss",
    "losses/conditional_disc_loss",
    "losses/enc_reg_loss",
    "info/conditional_disc_demo_acc",
    "info/conditional_disc_agent_acc",
    "info/conditional_disc_demo_logit",
    "info/conditional_disc_agent_logit",
    "info/conditional_disc_grad_penalty",
    "info/conditional_disc_reward_mean",
    "info/conditional_disc_reward_std",
    "info/encoder_alignment",
    "info/encoder_uniformity",
    "info/clip_frac",
    "info/epochs",
    "info/fall_rate",
    "info/episodes",
    "episode_lengths/iter",
    "performance/total_fps",
    "performance/epoch_time",
    "performance/play_time",
    "performance/update_time",
)

_LOSS_KEYS = ("actor", "critic", "bounds", "disc", "enc", "total")
_STAT_KEYS = (
    *_LOSS_KEYS,
    "demo_acc",
    "agent_acc",
    "demo_logit",
    "agent_logit",
    "grad_penalty",
    "enc_align",
    "enc_uniform",
    "clip_frac",
)


def default_motions_path() -> Path:
    from anyskill_tui.paths import configs_dir

    return configs_dir() / "motions" / "starter.yaml"


def run_config(
    llc: LlcConfig | Mapping[str, Any],
    motions: str | Path | None = None,
    engine: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    time_budget_s: float | None = None,
    keep_checkpoints: int | None = None,
) -> dict[str, Any]:
    """The run config ``train_llc`` reads (see the module docstring)."""
    llc_dict = llc.to_dict() if isinstance(llc, LlcConfig) else dict(llc)
    return {
        "llc": llc_dict,
        "motions": str(Path(motions).expanduser().absolute()) if motions else str(default_motions_path()),
        "engine": engine,
        "device": device,
        "threads": threads,
        "time_budget_s": time_budget_s,
        "keep_checkpoints": keep_checkpoints,
    }


# ---------------------------------------------------------------------------------------------------------- RNG


def _rng_state(gens: Mapping[str, torch.Generator]) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "generators": {k: g.get_state() for k, g in gens.items()},
    }


def _load_rng_state(state: Mapping[str, Any], gens: Mapping[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    for k, g in gens.items():
        if k in state["generators"]:
            g.set_state(state["generators"][k])


# ---------------------------------------------------------------------------------------------------------- env state


def _backend_state(backend) -> dict[str, Any]:
    """The full integration state of the worlds (exact for the cpu engine; qpos/qvel/warm start on gpu)."""
    batch = getattr(backend, "batch", None)
    if batch is not None:  # cpu engine: mujoco.batch state rows
        return {
            "kind": "cpu",
            "fields": {
                f: np.array(batch.bind(f), copy=True) for f in ("time", "qpos", "qvel", "act", "qacc_warmstart", "ctrl")
            },
        }
    out = {"kind": "other", "qpos": backend.qpos.detach().cpu().clone(), "qvel": backend.qvel.detach().cpu().clone()}
    ws = getattr(backend, "_qacc_warmstart", None)
    if ws is not None:
        out["warmstart"] = ws.detach().cpu().clone()
    return out


def _load_backend_state(backend, state: Mapping[str, Any]) -> None:
    batch = getattr(backend, "batch", None)
    if state["kind"] == "cpu" and batch is not None:
        import mujoco

        fields = state["fields"]
        for f in ("time", "qpos", "qvel", "act", "ctrl"):
            batch.bind(f)[:] = fields[f]
        batch.forward(stage=mujoco.mjtStage.mjSTAGE_ACC)
        batch.bind("qacc_warmstart")[:] = fields["qacc_warmstart"]
        backend._refresh()
        return
    ids = torch.arange(backend.num_envs, device=backend.device)
    qpos = state["qpos"] if "qpos" in state else torch.as_tensor(state["fields"]["qpos"])
    qvel = state["qvel"] if "qvel" in state else torch.as_tensor(state["fields"]["qvel"])
    backend.set_state(ids, qpos.to(backend.device), qvel.to(backend.device))
    ws = getattr(backend, "_qacc_warmstart", None)
    if ws is not None and "warmstart" in state:
        ws.copy_(state["warmstart"].to(ws.device, ws.dtype))


_ENV_TENSORS = ("_hist", "_obs", "_amp", "progress", "recovery_counter", "terminated", "truncated", "unstable")


def _env_state(env) -> dict[str, Any]:
    out = {k: getattr(env, k).detach().cpu().clone() for k in _ENV_TENSORS}
    out["_head"] = int(env._head)
    out["fall_pool_qpos"] = None if env.fall_pool_qpos is None else env.fall_pool_qpos.detach().cpu().clone()
    out["backend"] = _backend_state(env.backend)
    out["generator"] = env.generator.get_state()
    out["motion_generator"] = None if env._motion_gen is None else env._motion_gen.get_state()
    # the motion-start pool by its draws (clip ids, times): its states are recomputed on load
    pool = env.motion_pool
    out["motion_pool"] = None if pool is None else tuple(t.detach().cpu().clone() for t in pool)
    out["motion_pool_calls"] = int(env.motion_pool_calls)
    return out


def _load_env_state(env, state: Mapping[str, Any]) -> None:
    _load_backend_state(env.backend, state["backend"])
    for k in _ENV_TENSORS:
        ref = getattr(env, k)
        setattr(env, k, state[k].to(device=ref.device, dtype=ref.dtype).clone())
    env._head = int(state["_head"])
    if state["fall_pool_qpos"] is not None:
        env.fall_pool_qpos = state["fall_pool_qpos"].to(device=env.device, dtype=env.dtype)
    env.generator.set_state(state["generator"])
    if env._motion_gen is not None and state["motion_generator"] is not None:
        env._motion_gen.set_state(state["motion_generator"])
    pool = state.get("motion_pool")  # absent in checkpoints before the pool: drawn afresh at the next reset
    if pool is not None and env.motion_lib is not None:
        dev = env.motion_lib.device
        env.set_motion_pool(pool[0].to(dev), pool[1].to(dev), calls=state.get("motion_pool_calls", 0))


# ---------------------------------------------------------------------------------------------------------- demo bank


class DemoWindowBank:
    """Demo AMP windows as table lookups: every clip's AMP features precomputed on a grid of ``sub`` points per
    control step (1/120 s for ``sub`` 4), so a window is a gather, not ``steps`` MotionLib interpolations + FK.

    Window end times are drawn as ``MotionLib.fetch_enc_amp_pair`` / ``fetch_alignment_pair`` draw them (spec
    §2.4; clips by ``MotionLib.draw_clips``, the same distribution without a host sync) and then rounded to the
    grid (at most 1/240 s off); steps go back by whole control steps and stop at the clip start (clamped at 0, as
    ``demo_windows``). A window is named by its *recipe* (clip id, end index), which is how checkpoints store the
    buffers.
    """

    def __init__(self, ml, enc_steps: int, amp_steps: int, device, generator: torch.Generator, sub: int = 4):
        from anyskill_tui.core.character import tables as T

        self.ml, self.K, self.k, self.sub, self.gen = ml, int(enc_steps), int(amp_steps), int(sub), generator
        self.dt = T.CONTROL_DT
        self.rate = self.sub / self.dt  # grid points per second
        self.device = torch.device(device)
        lengths = ml.clip_lengths.double().cpu()
        last = torch.floor(lengths * self.rate + 1e-6).long()  # index of the last grid point of each clip
        counts = last + 1
        starts = torch.cumsum(counts, 0) - counts
        clip = torch.repeat_interleave(torch.arange(ml.num_clips), counts)
        local = torch.arange(int(counts.sum())) - starts[clip]
        times = local.double() / self.rate
        rows = []
        for s in range(0, clip.numel(), 8192):
            rows.append(ml.amp_obs(clip[s : s + 8192].to(ml.device), times[s : s + 8192].to(ml.device)).float())
        self.table = torch.cat(rows).to(self.device)
        self.starts = starts.to(self.device)
        self.last = last.to(self.device)
        self.ml_last = last.to(ml.device)
        self._norm_cache: dict[tuple, tuple[tuple, torch.Tensor]] = {}  # normalized_table's, per normaliser and dtype

    def _q(self, clip: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        j = torch.round(t.double() * self.rate).long()
        return torch.minimum(j.clamp_min(0), self.ml_last[clip])

    def sample(self, n: int, with_amp: bool = True) -> torch.Tensor:
        """(n, 3) long: clip id, encoder-window end index, AMP-window end index (inside the encoder window)."""
        ml, g = self.ml, self.gen
        ids = ml.draw_clips(n, generator=g)
        length = ml.clip_lengths[ids]
        w = (self.K - 1) * self.dt
        t_e = ml._window_end_times(ids, self.K, self.dt, g)
        t_a = t_e - ml._rand(n, g) * (length.clamp(max=w) - self.k * self.dt).clamp_min(0.0) if with_amp else t_e
        return torch.stack([ids.long(), self._q(ids, t_e), self._q(ids, t_a)], dim=-1).to(self.device)

    def windows(
        self, clip: torch.Tensor, end: torch.Tensor, steps: int, table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(n, steps, F) windows, newest step first, gathered from ``table`` (default: the raw feature table)."""
        return (self.table if table is None else table)[self.window_rows(clip, end, steps)]

    def window_rows(self, clip: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
        """(n, steps) long: the table rows of each window, newest step first."""
        clip, end = clip.to(self.device).long(), end.to(self.device).long()
        back = torch.arange(steps, device=self.device) * self.sub
        return self.starts[clip].unsqueeze(-1) + (end.unsqueeze(-1) - back).clamp_min(0)

    def window_row_counts(self, clip: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
        """(rows,) float32: how often each table row occurs in the windows ``windows(clip, end, steps)`` would
        gather (static shape, no host sync; the counts are integers, so the atomic adds are exact)."""
        idx = self.window_rows(clip, end, steps)
        counts = torch.zeros(self.table.shape[0], device=self.device)
        return counts.index_add_(0, idx.reshape(-1), torch.ones(idx.numel(), device=self.device))

    def normalized_table(self, norm, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(rows, F) the table through ``norm.normalize`` (per feature, clamp included), cast to ``dtype``.

        A window gathered from it equals ``norm.normalize(window).to(dtype)`` exactly, but normalising the few
        thousand table rows replaces passes over every gathered (n, 60, 125) batch (in the update, 24,576 windows
        per gradient step: gather, subtract, divide, clamp, cast). Cached until the normaliser's statistics
        change (their in-place version counters are the key, as in ``RunningMeanStd``)."""
        m, v = norm.mean, norm.var
        try:
            key = (m.data_ptr(), v.data_ptr(), m._version, v._version, dtype)
        except RuntimeError:  # inference tensors have no version counter: no cache
            return norm.normalize(self.table).to(dtype)
        hit = self._norm_cache.get((id(norm), dtype))
        if hit is None or hit[0] != key:
            hit = self._norm_cache[(id(norm), dtype)] = (key, norm.normalize(self.table).to(dtype))
        return hit[1]

    def clear_norm_cache(self) -> None:
        """Forget the normalised tables (see :meth:`normalized_table`; for writes that bump no version counter)."""
        self._norm_cache.clear()

    def alignment_recipes(self, n: int, max_shift: float) -> torch.Tensor:
        """(n, 3) long: clip id and the end indices of two encoder windows of that clip, ending at t0 and
        min(t0 + U(0, max_shift), L) (CALM's alignment pairs)."""
        ml, g = self.ml, self.gen
        ids = ml.draw_clips(n, generator=g)
        length = ml.clip_lengths[ids]
        t0 = ml._window_end_times(ids, self.K, self.dt, g)
        t1 = torch.minimum(t0 + ml._rand(n, g) * max_shift, length)
        return torch.stack([ids.long(), self._q(ids, t0), self._q(ids, t1)], dim=-1).to(self.device)


# ---------------------------------------------------------------------------------------------------------- trainer


class LlcTrainer:
    """The CALM trainer's state and its epoch; :func:`train_llc` drives it through a ``TrainContext``.

    Args:
        cfg: the LLC config.
        motions: the motion dataset (motions.yaml or .npy).
        engine: ``cpu``, ``gpu`` or ``auto``; device: torch device of the learner (``auto``: the env's).
        threads: threads of the cpu engine.
        dist: this process's place in a data-parallel world (:mod:`~anyskill_tui.core.learn.distributed`);
            default one process. With W ranks ``cfg`` is the global config: this trainer runs 1/W of its envs,
            minibatches and buffers (``self.cfg``; ``self.global_cfg`` is ``cfg``, which checkpoints record).
    """

    def __init__(
        self,
        cfg: LlcConfig,
        motions: str | Path,
        engine: str = "auto",
        device: str = "auto",
        threads: int | None = None,
        dist: DistContext | None = None,
    ) -> None:
        from anyskill_tui.core.motion.dataset import load_dataset
        from anyskill_tui.core.motion.motion_lib import MotionLib
        from anyskill_tui.core.sim import default_engine
        from anyskill_tui.core.sim.env import EnvConfig, HumanoidEnv

        self.dist = dist = dist if dist is not None else SINGLE
        self.global_cfg = cfg
        self.cfg = cfg = dist.local_llc_config(cfg)
        e, n, p, c = cfg.env, cfg.network, cfg.ppo, cfg.calm
        if abs(e.control_freq - 30.0) > 1e-9:
            raise UserError(f"env.control_freq: the simulator runs the LLC at 30 Hz, not {e.control_freq}")
        if tuple(e.key_bodies) != ("right_hand", "left_hand", "right_foot", "left_foot"):
            raise UserError("env.key_bodies: only right_hand, left_hand, right_foot, left_foot are supported")
        engine = default_engine() if engine == "auto" else engine
        if engine not in ("cpu", "gpu"):
            raise UserError(f"unknown engine {engine!r}: choose cpu, gpu or auto")
        if engine == "gpu" and not torch.cuda.is_available():
            raise UserError("engine gpu needs CUDA, and no CUDA device is available; use --engine cpu")
        self.engine = engine
        torch.manual_seed(cfg.seed)  # the same on every rank: the networks start alike
        np.random.seed(dist.rank_seed(cfg.seed) % 2**32)
        random.seed(dist.rank_seed(cfg.seed))

        try:
            dataset = load_dataset(motions)
        except (ValueError, OSError) as exc:
            raise UserError(str(exc)) from None
        self.motions = str(motions)
        env_cfg = EnvConfig(
            num_envs=e.num_envs,
            engine=engine,
            threads=threads,
            seed=dist.rank_seed(cfg.seed),
            state_init=e.state_init,
            hybrid_init_prob=e.hybrid_init_prob,
            termination_height=e.termination_height,
            episode_length=e.episode_length,
            recovery_episode_prob=e.recovery_episode_prob,
            recovery_steps=e.recovery_steps,
            fall_init_prob=e.fall_init_prob,
            num_amp_obs_steps=e.num_amp_obs_steps,
            num_enc_obs_steps=e.num_amp_enc_obs_steps,
            motion_pool_size=e.motion_pool_size,
            motion_pool_refresh=e.motion_pool_refresh,
        )
        env_dev = "cuda" if engine == "gpu" else "cpu"
        self.motion_lib = MotionLib(dataset, device=env_dev)
        try:
            self.env = HumanoidEnv(env_cfg, motion_lib=self.motion_lib)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        self.env_device = self.env.device
        self.device = torch.device(self.env_device if device == "auto" else device)
        if self.env.obs_dim != n.obs_dim or self.env.amp_obs_dim != n.amp_obs_dim:
            raise UserError(
                f"network.obs_dim/amp_obs_dim ({n.obs_dim}/{n.amp_obs_dim}) must match the env "
                f"({self.env.obs_dim}/{self.env.amp_obs_dim})"
            )

        dev = self.device
        if dev.type == "cuda":  # fp32 matmuls outside autocast (rollout) on tensor cores
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.policy = LlcPolicy(cfg).to(dev)
        self.actor, self.encoder = self.policy.actor, self.policy.encoder
        self.obs_norm, self.amp_norm = self.policy.obs_norm, self.policy.amp_norm
        self.critic = CalmCritic(n.obs_dim, n.latent_dim, n.critic_hidden).to(dev)
        self.disc = ConditionalDiscriminator(
            n.amp_obs_dim, e.num_amp_obs_steps, n.latent_dim, n.disc_hidden, n.style_hidden, n.style_dim
        ).to(dev)
        self.value_norm = RunningMeanStd((1,)).to(dev)
        self.params = [
            prm
            for m in (self.actor, self.critic, self.encoder, self.disc)
            for prm in m.parameters()
            if prm.requires_grad
        ]
        # the gradient step replayed from a CUDA graph: CUDA, one process (several ranks average gradients through
        # a hook between backward and step), and bf16 autocast below, so no GradScaler reading the device
        self._graph_update = p.cuda_graph and dev.type == "cuda" and dist.world_size == 1
        # the rollout's acting replayed from CUDA graphs: also needs the env on the learner's device
        self._graph_rollout = (
            p.cuda_graph_rollout and dev.type == "cuda" and self.env_device == dev and dist.world_size == 1
        )
        # fused Adam on CUDA: one kernel for all parameters and no host reads of the step counts; capturable for
        # the graph
        self._opt_flags = (
            {"fused": True, "capturable": self._graph_update}
            if dev.type == "cuda"
            else {"fused": None, "capturable": False}
        )
        self.opt = torch.optim.Adam(
            self.params, lr=p.learning_rate, eps=p.adam_eps, weight_decay=p.weight_decay, **self._opt_flags
        )
        self._graph: dict[str, Any] | None = None  # the captured gradient step and its static tensors (CUDA)
        self._rollout_graphs: tuple[GraphedCall, GraphedCall] | None = None  # _act and _next_value (_rollout_calls)
        self.enc_rows_cap = 0  # rows of the update's latent encoder pass (_distinct_latent_recipes)
        # bf16 autocast: float32's range, so no GradScaler (whose found-inf checks read the device every step)
        self.mp = MixedPrecision(dev, enabled=p.mixed_precision, dtype=torch.bfloat16)
        self.coeffs = cfg.loss_coeffs()
        # several ranks: rank 0's networks everywhere, gradients averaged in mp.step, normaliser updates global
        dist.check_device(dev)
        dist.broadcast_modules(self.policy, self.critic, self.disc, self.value_norm)
        dist.install(self.mp, (self.obs_norm, self.amp_norm, self.value_norm))

        self.gen = torch.Generator(device=dev)
        self.gen.manual_seed(dist.rank_seed(cfg.seed) + 12345)
        self.ml_gen = torch.Generator(device=self.motion_lib.device)
        self.ml_gen.manual_seed(dist.rank_seed(cfg.seed) + 23456)

        self.K, self.k, self.F = e.num_amp_enc_obs_steps, e.num_amp_obs_steps, n.amp_obs_dim
        self.bank = DemoWindowBank(self.motion_lib, self.K, self.k, device=dev, generator=self.ml_gen)
        N = self.num_envs = e.num_envs
        # the buffers hold AMP windows; each row's encoder window is a recipe into the bank (below)
        self.demo = DemoBuffer(c.demo_buffer_size, (self.k, self.F), None, device=dev)
        self.replay = ReplayBuffer(
            c.replay_buffer_size, (self.k, self.F), None, keep_prob=c.replay_keep_prob, device=dev
        )
        # recipes of the windows in the buffers: clip id, encoder-window end index, AMP-window end index
        self.demo_recipe = torch.zeros((c.demo_buffer_size, 3), dtype=torch.long, device=dev)
        self.replay_recipe = torch.zeros((c.replay_buffer_size, 2), dtype=torch.long, device=dev)

        # ε-greedy probabilities are indexed by the global env number; a rank holds every W-th env (dist.shard)
        self.eps_probs = (
            dist.shard(epsilon_greedy_probs(N * dist.world_size, device=dev))
            if c.epsilon_greedy
            else torch.ones(N, device=dev, dtype=torch.float32)
        )
        # per-env latent state (the 60-step window behind z is rebuilt from its recipe when needed)
        self.z = torch.zeros((N, n.latent_dim), device=dev)
        self.env_recipe = torch.zeros((N, 2), dtype=torch.long, device=dev)
        self.deadline = torch.zeros(N, dtype=torch.long, device=self.env_device)
        self.need_reset = torch.ones(N, dtype=torch.bool, device=self.env_device)  # every env needs a first latent

        self.epoch = 0
        self.samples = 0
        self.history: list[dict[str, float]] = []
        self.last_checkpoint: Path | None = None
        self.fill_demo_buffer()

    # ------------------------------------------------------------------------------------------ demo data

    def sample_recipes(self, n: int, with_amp: bool = True) -> torch.Tensor:
        """(n, 3) long recipes (clip id, encoder end index, AMP end index) of the window bank."""
        return self.bank.sample(n, with_amp=with_amp)

    def windows(self, clip_ids: torch.Tensor, end_idx: torch.Tensor, steps: int) -> torch.Tensor:
        """Demo windows (n, steps, F) float32 on the learner device, rebuilt from recipe columns."""
        return self.bank.windows(clip_ids, end_idx, steps)

    def _enc_table(self, autocast: bool = False) -> torch.Tensor:
        """The bank's table normalised by ``amp_norm``, in the encoder's input dtype: the autocast dtype for the
        update's passes (``autocast``; what autocast would cast the normalised windows to), else float32."""
        dtype = self.mp.dtype if autocast and self.mp.enabled else torch.float32
        return self.bank.normalized_table(self.amp_norm, dtype)

    def push_demo(self, n: int) -> None:
        rec = self.sample_recipes(n)
        cap = self.demo.capacity
        if n >= cap:
            rec = rec[-cap:]
        idx = (self.demo.head + torch.arange(rec.shape[0], device=self.device)) % cap
        self.demo.push(self.windows(rec[:, 0], rec[:, 2], self.k))
        self.demo_recipe[idx] = rec

    def fill_demo_buffer(self) -> None:
        c = self.cfg.calm
        chunks = math.ceil(c.demo_buffer_size / c.amp_batch_size)
        for _ in range(chunks):
            self.push_demo(c.amp_batch_size)

    def sample_demo(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` demo rows with replacement: AMP windows (n, k, F) and encoder-window recipes (n, 2)."""
        idx = self.demo.sample_index(n, generator=self.gen)
        return self.demo.amp[idx], self.demo_recipe[idx, :2]

    def sample_replay(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` replay rows with replacement: agent AMP windows (n, k, F) and their latents' recipes (n, 2)."""
        idx = self.replay.sample_index(n, generator=self.gen)
        return self.replay.amp[idx], self.replay_recipe[idx]

    def push_replay(self, amp: torch.Tensor, recipe: torch.Tensor) -> None:
        """Agent windows to the replay buffer: all until full, then each kept with ``replay_keep_prob``.

        ``recipe`` (n, 2): clip id and encoder-window end index of each window's latent."""
        r = self.replay
        free = r.capacity - r.size
        if free > 0:
            m = min(free, amp.shape[0])
            idx = (r.head + torch.arange(m, device=self.device)) % r.capacity
            r.amp[idx] = amp[:m]
            self.replay_recipe[idx] = recipe[:m]
            r.head = (r.head + m) % r.capacity
            r.size = min(r.size + m, r.capacity)
            rest = torch.arange(m, amp.shape[0], device=self.device)
        else:
            rest = torch.arange(amp.shape[0], device=self.device)
        if rest.numel() == 0:
            return
        keep = torch.rand(rest.numel(), generator=self.gen, device=self.device) < r.keep_prob
        rows = rest[keep]
        if rows.numel() == 0:
            return
        slots = torch.randint(0, r.capacity, (rows.numel(),), generator=self.gen, device=self.device)
        r.amp[slots] = amp[rows]
        self.replay_recipe[slots] = recipe[rows]

    # ------------------------------------------------------------------------------------------ rollout

    def _resample_latents(self, progress: torch.Tensor, need_reset: torch.Tensor) -> None:
        """Redraw the latents of the envs that were reset (``need_reset`` (N,) bool) or whose episode ``progress``
        (N,) reached their deadline (spec §4.2), without a host sync: every env draws a recipe and its window is
        encoded, and ``torch.where`` keeps the new latent only where one is due (at 4,096 envs one encoder pass
        costs less than the ``nonzero`` it replaces). ``z``, ``env_recipe`` and ``deadline`` change in place."""
        N = self.num_envs
        need, deadline = latent_resample_deadlines(
            progress,
            self.deadline,
            self.cfg.calm.latent_steps_min,
            self.cfg.calm.latent_steps_max,
            reset=need_reset,
            generator=None if self.env_device != self.device else self.gen,
        )
        self.deadline.copy_(deadline)
        rec = self.sample_recipes(N, with_amp=False)[:, :2]
        z = self.encoder(self.bank.windows(rec[:, 0], rec[:, 1], self.K, table=self._enc_table())).float()
        need = need.to(self.device)[:, None]
        self.z.copy_(torch.where(need, z, self.z))
        self.env_recipe.copy_(torch.where(need, rec, self.env_recipe))

    def _act(
        self, obs: torch.Tensor, progress: torch.Tensor, need_reset: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A rollout step's acting on observations ``obs`` (N, obs_dim): the due latents redrawn
        (:meth:`_resample_latents`), then actor and critic on (normalised obs, z), a Gaussian sample and the
        ε-greedy mix. Returns action (N, A), its log-probability (N,), the value (N,) and the ε mask (N,) bool.
        Fixed shapes, no host sync, draws from ``gen`` and ``ml_gen`` only: on the gpu engine it is replayed from a
        CUDA graph (:meth:`_rollout_calls`)."""
        self._resample_latents(progress, need_reset)
        log_std = self.actor.log_std
        nobs = self.policy.norm_obs(obs)
        mu = self.actor(nobs, self.z)
        value = self.critic(nobs, self.z)
        sampled = sample_gaussian(mu, log_std, generator=self.gen)
        mask = epsilon_greedy_mask(self.eps_probs, generator=self.gen)
        action = mix_actions(mu, sampled, mask)
        return action, gaussian_log_prob(action, mu, log_std), value, mask

    def _next_value(self, next_obs: torch.Tensor) -> torch.Tensor:
        """(N,) the critic's value of the observations after a step (N, obs_dim), under the current latents."""
        return self.critic(self.policy.norm_obs(next_obs), self.z)

    def _rollout_calls(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """``_act`` and ``_next_value``, each replayed from a CUDA graph when ``ppo.cuda_graph_rollout`` is on,
        the env and the learner share a CUDA device and there is one process; else the methods themselves.

        Why: on an H200 at 4,096 envs a rollout step took 11.4 ms while its kernels ran for 6.5 ms (profiler,
        2026-12-04): the host's launches bound it, and acting is about a quarter of them. The option is off by
        default until a GPU session has measured it (``tests/test_llc_cuda_graph.py`` checks it there)."""
        if not self._graph_rollout:
            return self._act, self._next_value
        if self._rollout_graphs is None:
            drop = self._drop_norm_caches
            self._rollout_graphs = (
                GraphedCall(self._act, (self.gen, self.ml_gen), around_capture=drop),
                GraphedCall(self._next_value, around_capture=drop),  # draws nothing
            )
        return self._rollout_graphs

    @torch.no_grad()
    def rollout(self) -> dict[str, Any]:
        """``horizon_length`` steps of every env; no host synchronisation inside the loop (the gpu engine)."""
        env, cfg = self.env, self.cfg
        T, N, dev = cfg.ppo.horizon_length, self.num_envs, self.device
        buf = {
            "obs": torch.empty((T, N, cfg.network.obs_dim), device=dev),
            "actions": torch.empty((T, N, cfg.network.action_dim), device=dev),
            "logp": torch.empty((T, N), device=dev),
            "values": torch.empty((T, N), device=dev),
            "next_values": torch.empty((T, N), device=dev),
            "terminated": torch.empty((T, N), dtype=torch.bool, device=dev),
            "done": torch.empty((T, N), dtype=torch.bool, device=dev),
            "mask": torch.empty((T, N), dtype=torch.bool, device=dev),
            # clip id and encoder-window end index of each sample's latent (its window is a bank gather)
            "recipe": torch.empty((T, N, 2), dtype=torch.long, device=dev),
            "z": torch.empty((T, N, cfg.network.latent_dim), device=dev),
            "amp": torch.empty((T, N, self.k, self.F), device=dev),
        }
        ep_len_sum = torch.zeros((), device=dev)
        ep_count = torch.zeros((), device=dev)
        fall_count = torch.zeros((), device=dev)
        same = self.env_device == dev
        act, next_value = self._rollout_calls()
        for t in range(T):
            obs = env.obs.to(device=dev, dtype=torch.float32)
            action, logp, value, mask = act(obs, env.progress, self.need_reset)
            buf["obs"][t] = obs
            buf["actions"][t] = action
            buf["logp"][t] = logp
            buf["values"][t] = value
            buf["mask"][t] = mask
            buf["recipe"][t] = self.env_recipe
            buf["z"][t] = self.z
            res = env.step(action if same else action.to(self.env_device))
            next_obs = res.obs.to(device=dev, dtype=torch.float32)
            buf["next_values"][t] = next_value(next_obs)
            done = res.done
            term = res.terminated
            buf["terminated"][t] = term
            buf["done"][t] = done
            buf["amp"][t] = env.amp_obs_history().view(N, self.k, self.F)
            prog = env.progress.to(dev)
            ep_len_sum += (prog * done.to(dev)).sum()
            ep_count += done.sum()
            fall_count += term.sum()
            self.need_reset.copy_(done)
            env.reset_done_masked()
        buf["ep_len_sum"], buf["ep_count"], buf["fall_count"] = ep_len_sum, ep_count, fall_count
        return buf

    # ------------------------------------------------------------------------------------------ update

    @torch.no_grad()
    def rewards(self, buf: dict[str, Any]) -> torch.Tensor:
        T, N = buf["logp"].shape
        amp = buf["amp"].reshape(T * N, self.k, self.F)
        z = buf["z"].reshape(T * N, -1)
        out = torch.empty(T * N, device=self.device)
        chunk = 16384
        for s in range(0, T * N, chunk):
            with self.mp.autocast():
                logits = self.disc(self.amp_norm.normalize(amp[s : s + chunk]), z[s : s + chunk])
            out[s : s + chunk] = cond_disc_reward(logits.float(), self.coeffs.disc_reward_scale)
        return (self.cfg.calm.conditional_disc_reward_w * out).reshape(T, N)

    def update(self, buf: dict[str, Any]) -> dict[str, torch.Tensor]:
        """GAE, then ``mini_epochs`` shuffled passes of gradient steps (:meth:`_grad_step`); returns the mean
        statistics of those steps (device tensors) and ``_nonfinite`` (per loss, the steps where it was not finite).

        The random draws of each step (minibatch rows, demo and replay rows, alignment pairs) are made here, in
        the same order as always; everything else of the step is :meth:`_grad_step`, which on CUDA (one process,
        ``ppo.cuda_graph``) is captured once in a CUDA graph and replayed (:meth:`_graphed_step`)."""
        p, c = self.cfg.ppo, self.cfg.calm
        dev = self.device
        T, N = buf["logp"].shape
        B, b = p.minibatch_size, c.amp_minibatch_size
        vn = p.normalize_value
        values = buf["values"]
        next_values = buf["next_values"]
        if vn:  # the critic predicts normalised values
            values = self.value_norm.denormalize(values.unsqueeze(-1)).squeeze(-1)
            next_values = self.value_norm.denormalize(next_values.unsqueeze(-1)).squeeze(-1)
        rewards = buf["rewards"]
        adv, returns = gae(rewards, values, next_values, buf["terminated"], buf["done"], p.gamma, p.tau)
        mask = buf["mask"]
        if p.normalize_advantage:
            adv = self.dist.normalize_advantages(adv, mask)  # over all ranks' samples (one process: the same call)
        if vn:
            self.value_norm.update(values.reshape(-1, 1))
            self.value_norm.update(returns.reshape(-1, 1))
            returns = self.value_norm.normalize(returns.unsqueeze(-1)).squeeze(-1)
        src = {
            "recipe": buf["recipe"].reshape(T * N, 2),
            "obs": buf["obs"].reshape(T * N, -1),
            "actions": buf["actions"].reshape(T * N, -1),
            "logp": buf["logp"].reshape(-1),
            "adv": adv.reshape(-1),
            "returns": returns.reshape(-1),
            "mask": mask.reshape(-1),
            "amp": buf["amp"].reshape(T * N, self.k, self.F),
        }
        src.update(self._distinct_latent_recipes(src["recipe"], B))
        acc = {
            "stats": torch.zeros(len(_STAT_KEYS), device=dev),
            "nonfinite": torch.zeros(len(_LOSS_KEYS), device=dev),
        }
        graph = self._graph_update  # full minibatches replay a captured gradient step
        staged = False
        steps = 0
        for _ in range(p.mini_epochs):
            perm = torch.randperm(T * N, generator=self.gen, device=dev)
            for s in range(0, T * N, B):
                # this step's draws, in the order the trainer has always drawn them (resume and tests rely on it)
                mb = {"idx": perm[s : s + B]}
                mb["demo_amp"], mb["demo_rec"] = self.sample_demo(b)
                if len(self.replay) > 0:
                    mb["replay_amp"], mb["replay_rec"] = self.sample_replay(b)
                mb["align"] = self.bank.alignment_recipes(b, c.enc_pair_max_offset)  # (b, 3) clip, end t0, end t1
                if graph and "replay_amp" in mb and mb["idx"].shape[0] == B:
                    if not staged:
                        self._stage_graph_inputs(src)
                        staged = True
                    self._graphed_step(mb)
                else:
                    self._grad_step(src, mb, acc)
                steps += 1
        if staged:
            # the graph's normaliser updates bumped no version counters: drop the caches keyed on them
            self._drop_norm_caches()
            for name in ("stats", "nonfinite"):
                acc[name] += self._graph["acc"][name]
        out = dict(zip(_STAT_KEYS, (acc["stats"] / max(steps, 1)).unbind(0), strict=True))
        out["_nonfinite"] = acc["nonfinite"]
        return out

    def _distinct_latent_recipes(self, recipe: torch.Tensor, minibatch: int) -> dict[str, torch.Tensor]:
        """The epoch's distinct latent recipes, for :meth:`_grad_step` to encode each once per step instead of
        once per minibatch row: ``enc_recipe`` (cap, 2), the distinct (clip, end) pairs padded with copies of the
        first recipe (encoded, never read), and ``enc_inverse`` (S,), each sample's row in it.

        A latent lasts 10–149 steps, so the 131,072 samples of a 4,096-env epoch hold about 6,000 distinct
        recipes, against 16,384 rows per minibatch. ``cap`` only grows (25 % headroom, multiples of 8) so that a
        captured step keeps its shapes; it is part of the checkpoint, so a resumed run pads the same way. Empty
        (the per-row path) when ``cap`` would not be smaller than the minibatch. One host sync per epoch (the
        count of distinct recipes)."""
        key = recipe[:, 0] * self.bank.table.shape[0] + recipe[:, 1]  # end indices are below the table's rows
        distinct, inverse = torch.unique(key, return_inverse=True)
        n = int(distinct.numel())
        if n > self.enc_rows_cap:
            self.enc_rows_cap = -(-(n + n // 4) // 8) * 8
        if self.enc_rows_cap >= minibatch:
            return {}
        enc_recipe = recipe[:1].expand(self.enc_rows_cap, 2).clone()
        enc_recipe[inverse] = recipe
        return {"enc_recipe": enc_recipe, "enc_inverse": inverse}

    def _grad_step(self, src: Mapping[str, torch.Tensor], mb: Mapping[str, torch.Tensor], acc: dict) -> None:
        """One gradient step on the minibatch ``mb`` of the epoch's samples ``src`` (device tensors only: no host
        sync, no random draw, so that a CUDA graph can replay it).

        ``src``: the epoch's flattened samples (recipe (S, 2), obs (S, obs_dim), actions (S, A), logp, adv,
        returns, mask (S,), amp (S, k, F)). ``mb``: ``idx`` (B,) rows of ``src``; ``demo_amp`` (b, k, F) and
        ``demo_rec`` (b, 2) demo windows and their encoder recipes; ``replay_amp``/``replay_rec`` the same from
        the replay buffer (absent while it is empty); ``align`` (b, 3) alignment recipes. Adds the step's
        statistics to ``acc["stats"]`` and its non-finite loss flags to ``acc["nonfinite"]``."""
        p = self.cfg.ppo
        b = self.cfg.calm.amp_minibatch_size
        amp_norm, enc = self.amp_norm, self.encoder
        log_std = self.actor.log_std
        idx = mb["idx"]
        obs, actions = src["obs"][idx], src["actions"][idx]
        old_logp, adv_mb, ret_mb, m = src["logp"][idx], src["adv"][idx], src["returns"][idx], src["mask"][idx]
        agent_amp = src["amp"][idx[:b]]
        demo_amp, demo_rec = mb["demo_amp"], mb["demo_rec"]
        rep_amp, rep_rec = mb.get("replay_amp"), mb.get("replay_rec")
        al = mb["align"]
        b_al = al.shape[0]
        # normaliser statistics (train mode, spec §3.4)
        if p.normalize_input:
            self.obs_norm.update(obs)
        amp_norm.update(agent_amp)
        if rep_amp is not None:
            amp_norm.update(rep_amp)
        amp_norm.update(demo_amp)
        # the alignment windows' statistics from how often each table row occurs in them (not gathered)
        al_clips = torch.cat([al[:, 0], al[:, 0]])
        amp_norm.update_counts(
            self.bank.table, self.bank.window_row_counts(al_clips, torch.cat([al[:, 1], al[:, 2]]), self.K)
        )
        # the latents' recipes: the epoch's distinct ones when update() found them (each encoded once, every
        # sample's latent a row of that pass), else one per minibatch row
        if "enc_recipe" in src:
            enc_rec, z_rows = src["enc_recipe"], src["enc_inverse"][idx]
        else:
            enc_rec, z_rows = src["recipe"][idx], None
        U = enc_rec.shape[0]
        # encoder windows come normalised (and in the autocast dtype) from the bank's normalised table
        table = self._enc_table(autocast=True)
        with self.mp.autocast():
            # one encoder pass with gradient for the latents and the alignment pairs
            clips = torch.cat([enc_rec[:, 0], al_clips])
            e_all = enc(self.bank.windows(clips, torch.cat([enc_rec[:, 1], al[:, 1], al[:, 2]]), self.K, table))
            z = e_all[:U] if z_rows is None else e_all[:U][z_rows]
            e0, e1 = e_all[U : U + b_al].float(), e_all[U + b_al :].float()
            nobs = self.policy.norm_obs(obs)
            mu = self.actor(nobs, z).float()
            logp = gaussian_log_prob(actions, mu, log_std)
            parts = {
                "actor": ppo_actor_loss(logp, old_logp, adv_mb, p.e_clip, m),
                "critic": value_loss(self.critic(nobs, z).float(), ret_mb),
                "bounds": bounds_loss(mu, mask=m),
            }
            with torch.no_grad():  # demo and replay latents in one pass
                nd = demo_rec if rep_rec is None else torch.cat([demo_rec, rep_rec])
                z_nd = enc(self.bank.windows(nd[:, 0], nd[:, 1], self.K, table))
                z_demo, z_rep = z_nd[:b], (z_nd[b:] if rep_rec is not None else None)
            disc_loss, dparts = cond_disc_loss(
                self.disc,
                amp_norm.normalize(agent_amp),
                z[:b],
                amp_norm.normalize(rep_amp) if rep_amp is not None else None,
                z_rep,
                amp_norm.normalize(demo_amp),
                z_demo,
                self.coeffs,
            )
            parts["disc"] = disc_loss
            parts["enc"], eparts = encoder_reg_loss(e0, e1, uniformity_weight=self.coeffs.enc_uniformity_weight)
            parts = {k_: v.float() for k_, v in parts.items()}
            total = calm_total_loss(parts, self.coeffs)
        parts["total"] = total
        parts = _inject(parts)
        self.mp.step(total, self.opt, self.params, max_norm=p.grad_norm, clip=p.truncate_grads, want_norm=False)
        with torch.no_grad():
            losses = torch.stack([parts[k_].detach() for k_ in _LOSS_KEYS])
            acc["nonfinite"] += ~torch.isfinite(losses)
            cf = clip_fraction(logp.detach(), old_logp, p.e_clip, m)
            row = torch.stack(
                [
                    *losses,
                    dparts["demo_acc"],
                    dparts["agent_acc"],
                    dparts["demo_logit"],
                    dparts["agent_logit"],
                    dparts["grad_penalty"],
                    eparts["enc_align"],
                    eparts["enc_uniform"],
                    cf,
                ]
            ).float()
            acc["stats"] += row

    # ------------------------------------------------------------------------------------------ CUDA graph

    #: eager steps (on a side stream) before the gradient step is captured: optimiser state, autocast and cuBLAS
    #: workspaces, cached masks all exist before capture
    GRAPH_WARMUP_STEPS = 2

    def _stage_graph_inputs(self, src: Mapping[str, torch.Tensor]) -> None:
        """Copy the epoch's samples into the graph's static tensors (allocated on first use; new shapes drop the
        graph) and zero the graph's accumulators."""
        g = self._graph
        if g is not None and (
            g["src"].keys() != src.keys()
            or any(g["src"][k].shape != v.shape or g["src"][k].dtype != v.dtype for k, v in src.items())
        ):
            g = None
        if g is None:
            g = self._graph = {
                "src": {k: torch.empty_like(v) for k, v in src.items()},
                "mb": None,
                "acc": {
                    "stats": torch.zeros(len(_STAT_KEYS), device=self.device),
                    "nonfinite": torch.zeros(len(_LOSS_KEYS), device=self.device),
                },
                "warm": 0,
                "graph": None,
            }
        for k, v in src.items():
            g["src"][k].copy_(v)
        for v in g["acc"].values():
            v.zero_()

    def _graphed_step(self, mb: Mapping[str, torch.Tensor]) -> None:
        """:meth:`_grad_step` on the static inputs: warm-up steps run eagerly on a side stream, the next one is
        captured, and every step after that (this one included) is a replay of that graph."""
        g = self._graph
        if g["mb"] is None:
            g["mb"] = {k: torch.empty_like(v) for k, v in mb.items()}
        for k, v in mb.items():
            g["mb"][k].copy_(v)
        if g["graph"] is None:
            cur = torch.cuda.current_stream(self.device)
            if g["warm"] < self.GRAPH_WARMUP_STEPS:
                side = torch.cuda.Stream(self.device)
                side.wait_stream(cur)
                with torch.cuda.stream(side):
                    self._grad_step(g["src"], g["mb"], g["acc"])
                cur.wait_stream(side)
                g["warm"] += 1
                return
            self._drop_norm_caches()  # no tensor computed outside the graph may be read from a cache inside it
            self.opt.zero_grad(set_to_none=True)  # backward allocates the gradients in the graph's pool
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self._grad_step(g["src"], g["mb"], g["acc"])
            g["graph"] = graph
            self._drop_norm_caches()
        g["graph"].replay()

    def _drop_norm_caches(self) -> None:
        """Forget the normalisers' and the bank's cached casts (keyed on version counters, which a graph replay's
        in-place updates do not bump)."""
        for norm in (self.obs_norm, self.amp_norm, self.value_norm):
            norm.clear_cache()
        self.bank.clear_norm_cache()

    def epoch_step(self) -> dict[str, float]:
        """One epoch: rollout, reward, update, buffers. Returns the epoch's metrics (host floats)."""
        t0 = time.perf_counter()
        buf = self.rollout()
        self._sync()
        t1 = time.perf_counter()
        buf["rewards"] = self.rewards(buf)
        self.push_demo(self.cfg.calm.amp_batch_size)
        stats = self.update(buf)
        T, N = buf["logp"].shape
        amp_flat = buf["amp"].reshape(T * N, self.k, self.F)
        self.push_replay(amp_flat, buf["recipe"].reshape(T * N, 2))
        rew = buf["rewards"]
        nonfinite = stats.pop("_nonfinite")
        epoch_vec = torch.stack(
            [
                *stats.values(),
                rew.mean(),
                rew.std(),
                buf["ep_len_sum"],
                buf["ep_count"],
                buf["fall_count"],
                *nonfinite,
            ]
        )
        # several ranks: averaged over them (ratios of sums unchanged; counts scaled back below; a NaN anywhere
        # stops every rank)
        host = self.dist.all_reduce_mean(epoch_vec).tolist()
        W = self.dist.world_size
        t2 = time.perf_counter()
        keys = list(stats)
        vals = dict(zip(keys, host[: len(keys)], strict=True))
        rmean, rstd, len_sum, count, falls = host[len(keys) : len(keys) + 5]
        bad = host[len(keys) + 5 :]
        for name, flag in zip(_LOSS_KEYS, bad, strict=True):
            if flag > 0:
                return {"_nonfinite": name}  # type: ignore[dict-item]
        self.epoch += 1
        self.samples += T * N * W
        epoch_time = t2 - t0
        metrics = {
            "losses/a_loss": vals["actor"],
            "losses/c_loss": vals["critic"],
            "losses/bounds_loss": vals["bounds"],
            "losses/conditional_disc_loss": vals["disc"],
            "losses/enc_reg_loss": vals["enc"],
            "info/conditional_disc_demo_acc": vals["demo_acc"],
            "info/conditional_disc_agent_acc": vals["agent_acc"],
            "info/conditional_disc_demo_logit": vals["demo_logit"],
            "info/conditional_disc_agent_logit": vals["agent_logit"],
            "info/conditional_disc_grad_penalty": vals["grad_penalty"],
            "info/conditional_disc_reward_mean": rmean,
            "info/conditional_disc_reward_std": rstd,
            "info/encoder_alignment": vals["enc_align"],
            "info/encoder_uniformity": vals["enc_uniform"],
            "info/clip_frac": vals["clip_frac"],
            "info/epochs": float(self.epoch),
            "info/fall_rate": falls / count if count > 0 else 0.0,
            "info/episodes": count * W,
            "episode_lengths/iter": len_sum / count if count > 0 else float(self.env.progress.float().mean()),
            "performance/total_fps": T * N * W / epoch_time,
            "performance/epoch_time": epoch_time,
            "performance/play_time": t1 - t0,
            "performance/update_time": t2 - t1,
        }
        self.history.append({"epoch": self.epoch, **metrics})
        return metrics

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------------------------------ state

    def state_dict(self, run_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        model, norms = self.policy.state_parts()
        model["critic"] = {k: v.detach().cpu().clone() for k, v in self.critic.state_dict().items()}
        model["disc"] = {k: v.detach().cpu().clone() for k, v in self.disc.state_dict().items()}
        norms["value"] = {k: v.detach().cpu().clone() for k, v in self.value_norm.state_dict().items()}
        d, r = self.demo, self.replay
        return {
            "format": LLC_FORMAT,
            "kind": "train",
            "config": self.global_cfg.to_dict(),
            "run_config": dict(run_config or {}),
            "motions": self.motions,
            "epoch": self.epoch,
            "samples": self.samples,
            "model": model,
            "normalizers": norms,
            "optimizer": self.opt.state_dict(),
            "scaler": self.mp.state_dict(),
            "buffers": {
                "demo": {"size": d.size, "head": d.head, "recipe": self.demo_recipe[: d.size].cpu().clone()},
                "replay": {
                    "size": r.size,
                    "head": r.head,
                    "amp": r.amp[: r.size].cpu().clone(),
                    "recipe": self.replay_recipe[: r.size].cpu().clone(),
                },
            },
            "latents": {
                "z": self.z.cpu().clone(),
                "recipe": self.env_recipe.cpu().clone(),
                "deadline": self.deadline.cpu().clone(),
                "need_reset": self.need_reset.cpu().clone(),
            },
            "enc_rows_cap": self.enc_rows_cap,
            "env": _env_state(self.env),
            "rng": _rng_state({"trainer": self.gen, "motion": self.ml_gen}),
            "history": list(self.history),
        }

    def load_state_dict(self, state: Mapping[str, Any], source: str = "<checkpoint>") -> None:
        dev = self.device
        try:
            self.policy.load_parts(state["model"], state["normalizers"])
            self.critic.load_state_dict(state["model"]["critic"])
            self.disc.load_state_dict(state["model"]["disc"])
            self.value_norm.load_state_dict(state["normalizers"]["value"])
        except (KeyError, RuntimeError) as exc:
            raise UserError(f"{source}: cannot resume: the networks do not match this config ({exc})") from None
        self.opt.load_state_dict(state["optimizer"])
        for group in self.opt.param_groups:  # this trainer's implementation, whatever the saving one used
            group.update(self._opt_flags)
        step_on_device = bool(self._opt_flags["fused"] or self._opt_flags["capturable"])
        for prm, st in self.opt.state.items():  # fused/capturable Adam keeps its step counts on the device
            if torch.is_tensor(st.get("step")):
                st["step"] = st["step"].to(prm.device if step_on_device else "cpu", torch.float32)
        self._graph = None  # the optimiser's state tensors are new objects: capture again
        self._rollout_graphs = None  # the generators get new states: capture again
        self.mp.load_state_dict(state.get("scaler") or {})
        self.epoch = int(state["epoch"])
        self.samples = int(state["samples"])
        self.history = list(state.get("history", []))
        bufs = state["buffers"]
        dd = bufs["demo"]
        n = int(dd["size"])
        rec = dd["recipe"].to(dev)
        if n > self.demo.capacity:
            raise UserError(f"{source}: the demo buffer holds {n} entries, more than calm.demo_buffer_size")
        self.demo_recipe[:n] = rec
        self.demo.amp[:n] = self.windows(rec[:, 0], rec[:, 2], self.k)
        self.demo.size, self.demo.head = n, int(dd["head"]) % self.demo.capacity
        rr = bufs["replay"]
        n = min(int(rr["size"]), self.replay.capacity)
        rec = rr["recipe"][:n].to(dev)
        self.replay_recipe[:n] = rec
        self.replay.amp[:n] = rr["amp"][:n].to(dev)
        self.replay.size, self.replay.head = n, int(rr["head"]) % self.replay.capacity
        lat = state["latents"]
        same_envs = lat["z"].shape[0] == self.num_envs
        if same_envs:  # in place: the rollout's graphs read these tensors
            self.z.copy_(lat["z"])
            self.env_recipe.copy_(lat["recipe"])
            self.deadline.copy_(lat["deadline"])
            self.need_reset.copy_(lat["need_reset"])
            _load_env_state(self.env, state["env"])
        else:  # a different env count: every episode restarts, every env draws a latent
            self.env.reset()
            self.need_reset.fill_(True)
        _load_rng_state(state["rng"], {"trainer": self.gen, "motion": self.ml_gen})
        self.enc_rows_cap = int(state.get("enc_rows_cap", 0))


def _inject(parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Test hook: tests monkeypatch this to plant a NaN in a loss; the identity otherwise."""
    return parts


# ---------------------------------------------------------------------------------------------------------- entry


def _parse_run_config(config: Mapping[str, Any]) -> tuple[LlcConfig, dict[str, Any]]:
    if "llc" in config:
        cfg = llc_config_from_dict(config.get("llc") or {}, source="the run's llc config")
    else:  # a bare LlcConfig dict
        cfg = llc_config_from_dict({k: v for k, v in config.items() if k in LlcConfig.model_fields}, "run config")
    rc = dict(config)
    rc.setdefault("motions", str(default_motions_path()))
    rc.setdefault("engine", "auto")
    rc.setdefault("device", "auto")
    return cfg, rc


def _prune(run_dir: Path, keep: int | None) -> None:
    if not keep or keep < 1:
        return
    from anyskill_tui.core.jobs.checkpoints import list_checkpoints

    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)


def train_llc(ctx) -> None:
    """Train the CALM LLC through a ``TrainContext`` (see the module docstring); resumes from ``ctx.resume_from``.

    Under torchrun (several ranks, :mod:`~anyskill_tui.core.learn.distributed`) every rank calls this; rank 0
    alone writes (the others get a silent context)."""
    from anyskill_tui.core.learn import distributed

    dist = distributed.current()
    ctx = dist.rank_context(ctx)
    cfg, rc = _parse_run_config(ctx.config)
    if dist.is_main:
        Path(ctx.run_dir).mkdir(parents=True, exist_ok=True)
    trainer = LlcTrainer(
        cfg,
        rc["motions"],
        engine=rc.get("engine") or "auto",
        device=rc.get("device") or "auto",
        threads=rc.get("threads"),
        dist=dist,
    )
    if ctx.resume_from is not None:
        from anyskill_tui.core.jobs.checkpoints import load_checkpoint

        state = load_checkpoint(ctx.resume_from, map_location="cpu")
        if state.get("format") != LLC_FORMAT or state.get("kind") != "train":
            raise UserError(f"{ctx.resume_from} is not an LLC training checkpoint; cannot resume from it")
        # this rank's env/latents/buffers/generators (another world size: buffers dealt out again, the rest fresh)
        state = dist.resume_state(
            state,
            LLC_LOCAL_KEYS,
            fresh=trainer.state_dict,
            merge={
                ("buffers",): lambda saved: restripe_llc_buffers(
                    saved, dist.rank, dist.world_size, trainer.demo.capacity, trainer.replay.capacity
                )
            },
        )
        trainer.load_state_dict(state, source=str(ctx.resume_from))
        trainer.last_checkpoint = Path(ctx.resume_from)
    total = cfg.ppo.max_epochs
    save_every = cfg.ppo.save_frequency
    budget = rc.get("time_budget_s")
    keep = rc.get("keep_checkpoints")
    start = time.monotonic()
    epoch_times: list[float] = []

    def save(metrics: Mapping[str, float] | None = None) -> None:
        small = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
        state = dist.gather_checkpoint(trainer.state_dict(ctx.config), LLC_LOCAL_KEYS)  # None on ranks > 0
        if state is None:
            return
        trainer.last_checkpoint = ctx.save_checkpoint(trainer.epoch, state, small)
        _prune(Path(ctx.run_dir), keep)

    metrics: dict[str, float] = {}
    saved_at = trainer.epoch if ctx.resume_from is not None else -1
    ctx.progress(trainer.epoch, total)
    while trainer.epoch < total:
        over_budget = (
            budget is not None
            and bool(epoch_times)
            and time.monotonic() - start + max(epoch_times[-3:]) * 1.5 > float(budget)
        )
        if dist.any_true(ctx.should_stop() or over_budget):  # several ranks: all stop at the same epoch
            break
        t = time.monotonic()
        out = trainer.epoch_step()
        if "_nonfinite" in out:
            last = trainer.last_checkpoint
            raise UserError(
                f"non-finite loss '{out['_nonfinite']}' at epoch {trainer.epoch + 1}; the last good checkpoint is "
                + (str(last) if last is not None else "none (no checkpoint was written yet)")
            )
        epoch_times.append(time.monotonic() - t)
        metrics = out
        ctx.log_metrics(trainer.epoch, metrics)
        ctx.progress(trainer.epoch, total)
        ctx.heartbeat()
        if trainer.epoch % save_every == 0:
            save(metrics)
            saved_at = trainer.epoch
    if saved_at != trainer.epoch:
        save(metrics)
