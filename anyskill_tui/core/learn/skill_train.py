"""Skill (AnySkill HLC) training on a frozen CALM LLC: ``train_skill(ctx)`` (spec §5; DESIGN.md).

One HLC decision (spec §5.1), all envs at once, no Python loop over envs:

1. ``env.reset_done()`` resets the envs that were done during the previous decision (never inside one);
2. prompts are redrawn, by weight, for envs whose timer ran out (every randint(32, 96) LLC steps, spec §5.3);
3. the HLC samples a ~ N(μ, σ²) (μ = tanh(MLP(norm(obs))), σ = e^−2.3) and z = normalize(clamp(a, −1, 1));
4. ``llc.steps`` (5) LLC steps with the LLC's deterministic, clamped action μ_LLC(s, z); after each LLC step
   (``reward.render_every: llc_step``, the spec) or only after the last one (``decision``), each env's image
   feature f is obtained — ``render``: tracking-camera frames -> CLIP image encoder; ``proxy``: the body
   positions -> :class:`~anyskill_tui.core.reward.proxy.ProxyModel` — and scored with the plain cosine against
   ITS OWN prompt's text feature (a row-wise gather: not the reference's mis-indexing, spec §9.5);
5. R = task_w · mean_t(clip_scale · cos) + style_w · max_j (cos(normalize(â), e_j) + 1)/2 with the unclamped
   action â and e_j the LLC encoder's latents of real clip windows (3 per clip, a random subset of 128,
   spec §5.4). done = any LLC step done; terminated = any fall.

PPO (spec §5.8, rl_games' plain loss, spec §5.1 step 8): horizon 4 decisions per env, GAE (γ 0.99, λ 0.95 per
decision) with time-outs bootstrapped, normalised advantages, ``actor + critic_coef·critic + bounds_coef·bounds``,
minibatches of 2048 (capped to the batch) for 6 mini-epochs, Adam 2e-5. Observation statistics update per
minibatch, value statistics once per epoch on the returns. No env count is hard-coded (spec §9.1).

Scenes (``scene``, spec §6): the env carries the scene's objects (reset with every episode) and the camera sees
them; the reward is the same rendered CLIP score (the proxy does not see objects: refused). With
``network.object_obs`` the HLC also observes the moving objects' root-relative poses
(:func:`hlc_observation`); the LLC never does.

Metrics (``ctx.log_metrics``, step = epoch): ``clip/similarity`` (the mean cosine itself, not the reference's
delta), ``reward/task``, ``reward/style``, ``reward/total``, ``info/episode_length`` (LLC steps, finished
episodes), ``perf/samples_per_s`` (LLC steps per second, rollout + update), ``perf/rollout_s``,
``perf/update_s``, ``losses/*``, ``info/clip_frac``, ``info/kl``; with several prompts ``clip/similarity_p<i>``.

Checkpoints (``ctx.save_checkpoint``, atomic) every ``ppo.save_frequency`` epochs, on a stop request and at the
end hold everything for an exact resume of the learner (networks, optimiser, normalisers, RNG states, epoch,
style references); the env restarts from fresh episodes on resume. The layout is described in
:mod:`anyskill_tui.core.learn.skill_policy`. At the end, :func:`evaluate_policy` runs one deterministic episode
of ``eval.num_envs`` envs from the default state and stores the mean CLIP similarity as ``clip_score`` in the
final checkpoint's metrics.

Several processes (``--nproc``, torchrun): each rank trains on 1/W of the envs and of each minibatch through the
hooks of :mod:`~anyskill_tui.core.learn.distributed` (gradients averaged, normaliser and advantage statistics over
all ranks, per-rank seeds, rank 0's targets and networks everywhere, the epoch's scalars averaged); rank 0 alone
writes, and evaluates at the end.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from anyskill_tui.core.learn.buffers import RolloutStorage
from anyskill_tui.core.learn.distributed import SINGLE, SKILL_LOCAL_KEYS, DistContext
from anyskill_tui.core.learn.networks import SkillCritic
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
from anyskill_tui.core.learn.skill_config import (
    SkillConfig,
    check_scene_reward,
    default_motion_file,
    skill_config_from_dict,
)
from anyskill_tui.core.learn.skill_policy import SKILL_FORMAT, SkillPolicy, latent_from_action
from anyskill_tui.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.core.jobs.trainers import TrainContext
    from anyskill_tui.core.learn.llc_policy import LlcPolicy
    from anyskill_tui.core.motion.motion_lib import MotionLib
    from anyskill_tui.core.reward.clip import ClipRewardModel
    from anyskill_tui.core.reward.proxy import ProxyModel
    from anyskill_tui.core.sim.env import HumanoidEnv

__all__ = [
    "ClipScorer",
    "ProxyScorer",
    "SkillTrainer",
    "build_env",
    "build_style_references",
    "hlc_observation",
    "evaluate_policy",
    "score_checkpoint",
    "train_skill",
]


# ------------------------------------------------------------------------------------------------ scorers


class ClipScorer:
    """Image features of every env from its tracking camera: ``env.render()`` -> CLIP (spec §5.5)."""

    renders = True

    def __init__(self, model: ClipRewardModel) -> None:
        self.model = model

    def features(self, env: HumanoidEnv) -> torch.Tensor:
        return self.model.encode_images(env.render()).to(env.device)


class ProxyScorer:
    """Image features predicted from body positions by the proxy MLP (spec §5.6); no rendering."""

    renders = False

    def __init__(self, proxy: ProxyModel) -> None:
        self.proxy = proxy

    @torch.no_grad()
    def features(self, env: HumanoidEnv) -> torch.Tensor:
        return self.proxy(env.body_pos.to(self.proxy.device, torch.float32)).to(env.device)


Scorer = ClipScorer | ProxyScorer


def prompt_cosine(features: torch.Tensor, text_features: torch.Tensor, prompt_index: torch.Tensor) -> torch.Tensor:
    """(N,) cosine of each env's (L2-normalised) feature with its own prompt's text feature."""
    from anyskill_tui.core.reward.clip import cosine_to_prompts

    return cosine_to_prompts(features.float(), text_features.to(features.device).float(), prompt_index)


# ------------------------------------------------------------------------------------------------ builders


def env_config_for(cfg: SkillConfig, num_envs: int | None = None, seed: int | None = None):
    """The :class:`~anyskill_tui.core.sim.env.EnvConfig` of the HLC env (``configs/env.yaml`` + the skill's env)."""
    from anyskill_tui.core.sim.backend import CameraSpec
    from anyskill_tui.core.sim.env import load_env_config

    e = cfg.env
    return load_env_config(
        num_envs=int(num_envs or e.num_envs),
        engine=e.engine,
        device="auto",
        threads=e.threads,
        seed=int(cfg.seed if seed is None else seed),
        state_init=e.state_init,
        hybrid_init_prob=e.hybrid_init_prob,
        enable_early_termination=e.enable_early_termination,
        termination_height=e.termination_height,
        episode_length=e.episode_length,
        recovery_episode_prob=e.recovery_episode_prob,
        recovery_steps=e.recovery_steps,
        fall_init_prob=e.fall_init_prob,
        motion_file=None,
        camera=CameraSpec(**e.camera.model_dump()),
        scene=cfg.scene,
    )


def build_motion_lib(cfg: SkillConfig, device: torch.device | str = "cpu") -> MotionLib:
    """The motion set of the style references (``motion_file``, default: the shipped starter set)."""
    from anyskill_tui.core.motion.dataset import DatasetError, load_dataset
    from anyskill_tui.core.motion.motion_lib import MotionLib

    path = Path(cfg.motion_file) if cfg.motion_file else default_motion_file()
    try:
        return MotionLib(load_dataset(path), device=device)
    except (DatasetError, OSError, ValueError) as exc:
        raise UserError(
            f"motion set {path}: {exc} (set motion_file to a motions.yaml the LLC was trained on)"
        ) from None


def build_env(
    cfg: SkillConfig, num_envs: int | None = None, motion_lib: MotionLib | None = None, seed: int | None = None
) -> HumanoidEnv:
    """The HLC env (``seed``: the env's seed, default ``cfg.seed``; a data-parallel rank passes its own)."""
    from anyskill_tui.core.sim.env import HumanoidEnv

    ecfg = env_config_for(cfg, num_envs, seed)
    needs_motion = cfg.env.state_init != "default"
    return HumanoidEnv(ecfg, motion_lib=motion_lib if needs_motion else None)


@torch.no_grad()
def build_style_references(
    llc: LlcPolicy,
    motion_lib: MotionLib,
    per_clip: int = 3,
    size: int = 128,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """e_1..e_R (R = min(size, per_clip·#clips), 64) unit latents: LLC encoder outputs of real clip windows (§5.4).

    ``per_clip`` random encoder windows of every clip, encoded with the LLC's AMP normaliser and encoder, then a
    random subset of ``size``.
    """
    wins = [
        motion_lib.windows_per_clip(per_clip, c, steps=llc.num_enc_steps, generator=generator)
        for c in range(motion_lib.num_clips)
    ]
    enc = llc.encode(torch.cat(wins).to(llc.device))
    if enc.shape[0] > size:
        dev = generator.device if generator is not None else enc.device
        pick = torch.randperm(enc.shape[0], generator=generator, device=dev)[:size].to(enc.device)
        enc = enc[pick]
    return F.normalize(enc.float(), dim=-1)


def hlc_observation(env: HumanoidEnv, obs: torch.Tensor, object_obs: bool) -> torch.Tensor:
    """The HLC's observation: the env's (N, 223) ``obs``, and with ``object_obs`` the scene's moving objects
    (``scene.object_observation``: 9 per body with a joint, root-relative, heading frame) after it. The LLC always
    gets the 223 alone."""
    scene = getattr(env, "scene", None)
    if not object_obs or scene is None:
        return obs
    from anyskill_tui.core.sim.scene import object_observation

    ids = scene.moving_body_indices()
    extra = object_observation(env.root_pos, env.root_rot, env.object_pos[:, ids], env.object_rot[:, ids])
    return torch.cat((obs, extra.to(device=obs.device, dtype=obs.dtype)), dim=-1)


def uses_object_obs(config: Mapping[str, Any]) -> bool:
    """Whether a stored skill config (a checkpoint's ``config``) has the HLC observe its scene's objects."""
    net = config.get("network") or {}
    return bool(net.get("object_obs")) and config.get("scene") is not None


def style_reward(actions: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """(N,) max_j (cos(normalize(a), e_j) + 1)/2 of the UNCLAMPED actions (spec §5.4), in [0, 1]."""
    a = F.normalize(actions.float(), dim=-1)
    return ((a @ refs.to(a.device).float().T).max(dim=-1).values + 1.0) * 0.5


# ------------------------------------------------------------------------------------------------ trainer


@dataclass
class DecisionResult:
    obs: torch.Tensor  # (N, 223) after the last LLC step, before any reset
    sim: torch.Tensor  # (N,) mean cosine over the scored LLC steps
    done: torch.Tensor  # (N,) bool
    terminated: torch.Tensor  # (N,) bool
    sims: torch.Tensor  # (S, N) every scored cosine


class SkillTrainer:
    """PPO for the HLC on a frozen LLC (see the module docstring). Usable without a run (tests, benchmarks).

    Args:
        cfg: the skill config.
        llc: the frozen LLC (on the env's device).
        env: the HLC env (its ``num_envs`` is the training batch width).
        scorer: :class:`ClipScorer` or :class:`ProxyScorer`.
        text_features: (P, D) L2-normalised target features, one per prompt (text features, or in tests any
            target embedding).
        prompt_weights: P sampling weights (default: from ``cfg.prompts``, else uniform).
        style_refs: (R, 64) style references (default: built from ``motion_lib``).
        motion_lib: the motion set for the style references (default: ``cfg.motion_file`` / the starter set).
        llc_path: stored in checkpoints.
    """

    def __init__(
        self,
        cfg: SkillConfig,
        llc: LlcPolicy,
        env: HumanoidEnv,
        scorer: Scorer,
        text_features: torch.Tensor,
        *,
        prompts: Sequence[str] | None = None,
        prompt_weights: Sequence[float] | None = None,
        style_refs: torch.Tensor | None = None,
        motion_lib: MotionLib | None = None,
        llc_path: str = "",
        dist: DistContext | None = None,
    ) -> None:
        self.cfg = cfg
        # data-parallel rank (core.learn.distributed): env = this rank's share, cfg = the global config
        self.dist = dist = dist if dist is not None else SINGLE
        self.minibatch_size = dist.local_count(cfg.minibatch_size, "ppo.minibatch_size")
        self.llc = llc
        self.env = env
        self.scorer = scorer
        self.device = dev = env.device
        self.num_envs = n = env.num_envs
        self.llc_path = str(llc_path)
        tf = text_features.to(dev, torch.float32)
        self.text_features = F.normalize(tf.reshape(-1, tf.shape[-1]), dim=-1)
        p = self.text_features.shape[0]
        self.prompts = list(prompts) if prompts is not None else [q.text for q in cfg.prompts][:p]
        if len(self.prompts) != p:
            self.prompts = [f"target {i}" for i in range(p)]
        if prompt_weights is None:
            prompt_weights = [q.weight for q in cfg.prompts] if len(cfg.prompts) == p else [1.0] * p
        self.prompt_weights = [float(w) for w in prompt_weights]
        if len(self.prompt_weights) != p or sum(self.prompt_weights) <= 0:
            raise ValueError(f"need {p} prompt weights with a positive sum, got {self.prompt_weights}")
        self._pw = torch.tensor(self.prompt_weights, dtype=torch.float32, device=dev)

        torch.manual_seed(int(cfg.seed))
        self.gen = torch.Generator(device=dev)
        self.gen.manual_seed(dist.rank_seed(int(cfg.seed)) + 11)
        self.cpu_gen = torch.Generator()
        self.cpu_gen.manual_seed(dist.rank_seed(int(cfg.seed)) + 12)

        net, ppo = cfg.network, cfg.ppo
        self.policy = SkillPolicy(
            net.obs_dim,
            net.action_dim,
            net.actor_hidden,
            net.log_std,
            normalize_input=ppo.normalize_input,
            prompts=self.prompts,
            prompt_weights=self.prompt_weights,
            llc_path=self.llc_path,
            config=cfg.to_dict(),
            llc_steps=cfg.llc.steps,
        ).to(dev)
        self.critic = SkillCritic(net.obs_dim, net.critic_hidden).to(dev)
        self.value_norm = RunningMeanStd(1, clip=None).to(dev)
        params = list(self.policy.actor.parameters()) + list(self.critic.parameters())
        self.params = params
        self.optimizer = torch.optim.Adam(params, lr=ppo.learning_rate, eps=ppo.adam_eps)
        self.mp = MixedPrecision(dev, enabled=ppo.mixed_precision)

        if style_refs is None:
            ml = motion_lib if motion_lib is not None else build_motion_lib(cfg, device="cpu")
            g = torch.Generator()
            g.manual_seed(int(cfg.seed) + 13)
            style_refs = build_style_references(
                llc, ml, cfg.reward.style_windows_per_clip, cfg.reward.style_reference_size, generator=g
            )
        self.style_refs = style_refs.to(dev, torch.float32)
        # several ranks: rank 0's networks and targets everywhere, gradients averaged, normaliser updates global
        dist.check_device(dev)
        dist.broadcast_modules(self.policy, self.critic, self.value_norm)
        dist.broadcast_tensors((self.text_features, self.style_refs))
        dist.install(self.mp, (self.policy.obs_norm, self.value_norm))

        self.prompt_idx = torch.zeros(n, dtype=torch.long, device=dev)
        self.prompt_timer = torch.zeros(n, dtype=torch.long, device=dev)  # LLC steps left; 0: draw now
        self.epoch = 0
        self.llc_steps_total = 0
        self.obs: torch.Tensor | None = None
        self.episode_lengths: deque[float] = deque(maxlen=200)
        #: per LLC step of the current rollout: (N,) bool episode ended, (N,) its progress (read once per epoch)
        self._ended: list[tuple[torch.Tensor, torch.Tensor]] = []

    # -------------------------------------------------------------------------------------------- acting

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """(N,) value estimates in return units."""
        v = self.critic(self.policy.norm_obs(obs.float()))
        if self.cfg.ppo.normalize_value:
            v = self.value_norm.denormalize(v.unsqueeze(-1)).squeeze(-1)
        return v

    def hlc_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """(N, obs_dim) the HLC's observation of the env's (N, 223) ``obs`` (see :func:`hlc_observation`)."""
        return hlc_observation(self.env, obs, self.cfg.uses_object_obs)

    def _draw_prompts(self) -> None:
        """Redraw the prompt (by weight) and its timer of every env whose timer ran out; masks, no host sync."""
        due = self.prompt_timer <= 0
        s, n = self.cfg.prompt_schedule, self.num_envs
        idx = torch.multinomial(self._pw, n, replacement=True, generator=self.gen)
        timer = torch.randint(s.resample_min, s.resample_max, (n,), generator=self.gen, device=self.device)
        self.prompt_idx = torch.where(due, idx, self.prompt_idx)
        self.prompt_timer = torch.where(due, timer, self.prompt_timer)

    @torch.no_grad()
    def decision(self, z: torch.Tensor, obs: torch.Tensor, score_every_step: bool | None = None) -> DecisionResult:
        """``llc.steps`` LLC steps with latent z (N, 64) from obs; envs are not reset in between."""
        env, llc = self.env, self.llc
        k_steps = self.cfg.llc.steps
        every = self.cfg.reward.render_every == "llc_step" if score_every_step is None else score_every_step
        o = obs
        sims = []
        was_done = env.done.clone()
        for k in range(k_steps):
            res = env.step(llc.act(o, z))
            o = res.obs
            # episode ends of this step (N,) and their lengths, read on the host once per epoch (`rollout`)
            self._ended.append((res.done & ~was_done, env.progress.clone()))
            was_done = was_done | res.done
            if every or k == k_steps - 1:
                f = self.scorer.features(env)
                sims.append(prompt_cosine(f, self.text_features, self.prompt_idx))
        self.prompt_timer -= k_steps
        self.llc_steps_total += k_steps * self.num_envs * self.dist.world_size  # all ranks' steps
        s = torch.stack(sims)
        return DecisionResult(o, s.mean(0), env.done.clone(), env.terminated.clone(), s)

    # -------------------------------------------------------------------------------------------- epoch

    @torch.no_grad()
    def rollout(self) -> tuple[RolloutStorage, dict[str, float]]:
        cfg, env = self.cfg, self.env
        T, n = cfg.ppo.horizon_length, self.num_envs
        store = RolloutStorage(
            T,
            n,
            {
                "obs": (cfg.network.obs_dim,),
                "actions": (cfg.network.action_dim,),
                "logp": (),
                "values": (),
                "next_values": (),
                "rewards": (),
                "dones": (),
                "terminated": (),
            },
            device=self.device,
        )
        sim_sum = torch.zeros(len(self.prompts), device=self.device)
        sim_cnt = torch.zeros(len(self.prompts), device=self.device)
        reward_sums = torch.zeros(3, device=self.device)  # task, style, total
        self._ended = []
        rw = cfg.reward
        for t in range(T):
            # masked resets: no host synchronisation inside the rollout on the gpu engine
            obs = env.reset() if self.obs is None else env.reset_done_masked()
            obs = obs.float()
            self._draw_prompts()
            hobs = self.hlc_obs(obs)  # (N, obs_dim): the env's 223 (+ the scene objects with object_obs)
            mu = self.policy.mu(hobs)
            a = sample_gaussian(mu, self.policy.log_std, self.gen)
            logp = gaussian_log_prob(a, mu, self.policy.log_std)
            v = self.value(hobs)
            res = self.decision(latent_from_action(a), obs)
            r_task = rw.clip_scale * res.sim
            r_style = style_reward(a, self.style_refs)
            r = rw.task_reward_w * r_task + rw.style_reward_w * r_style
            nv = self.value(self.hlc_obs(res.obs.float()))
            store.insert(
                t,
                obs=hobs,
                actions=a,
                logp=logp,
                values=v,
                next_values=nv,
                rewards=r,
                dones=res.done.float(),
                terminated=res.terminated.float(),
            )
            self.obs = res.obs
            sim_sum.index_add_(0, self.prompt_idx, res.sim)
            sim_cnt.index_add_(0, self.prompt_idx, torch.ones_like(res.sim))
            reward_sums += torch.stack([r_task.mean(), r_style.mean(), r.mean()]).float()
        adv, ret = gae(
            store["rewards"],
            store["values"],
            store["next_values"],
            store["terminated"],
            store["dones"],
            cfg.ppo.gamma,
            cfg.ppo.tau,
        )
        store.set("advantages", adv)
        store.set("returns", ret)
        if self._ended:  # the epoch's episode lengths, in the order they ended (one host read)
            ended = torch.stack([e for e, _ in self._ended])
            lengths = torch.stack([p for _, p in self._ended])[ended]
            self.episode_lengths.extend(lengths.float().tolist())
        self._ended = []
        per_prompt = (sim_sum / sim_cnt.clamp_min(1)).tolist()
        task_mean, style_mean, total_mean = (reward_sums / T).tolist()
        stats = {
            "clip/similarity": float(sim_sum.sum() / sim_cnt.sum().clamp_min(1)),
            "reward/task": task_mean,
            "reward/style": style_mean,
            "reward/total": total_mean,
        }
        if len(self.prompts) > 1:
            for i, v in enumerate(per_prompt):
                if sim_cnt[i] > 0:
                    stats[f"clip/similarity_p{i}"] = v
        if self.episode_lengths:
            stats["info/episode_length"] = sum(self.episode_lengths) / len(self.episode_lengths)
        return store, stats

    def update(self, store: RolloutStorage) -> dict[str, float]:
        cfg = self.cfg.ppo
        flat = store.flat(["obs", "actions", "logp", "advantages", "returns"])
        returns = flat["returns"]
        if cfg.normalize_value:
            self.value_norm.update(returns.unsqueeze(-1))
            ret_n = self.value_norm.normalize(returns.unsqueeze(-1)).squeeze(-1)
        else:
            ret_n = returns
        adv = self.dist.normalize_advantages(flat["advantages"]) if cfg.normalize_advantage else flat["advantages"]
        b = ret_n.shape[0]
        mb = min(self.minibatch_size, b)  # this rank's share of the global minibatch
        n_mb = max(1, b // mb)
        log_std = self.policy.log_std
        sums = {"losses/actor": 0.0, "losses/critic": 0.0, "losses/bounds": 0.0, "info/clip_frac": 0.0, "info/kl": 0.0}
        count = 0
        for _ in range(cfg.mini_epochs):
            perm = torch.randperm(b, generator=self.cpu_gen).to(self.device)
            for idx in perm.tensor_split(n_mb):
                obs = flat["obs"][idx]
                if cfg.normalize_input:
                    self.policy.obs_norm.update(obs)
                with self.mp.autocast():
                    nobs = self.policy.norm_obs(obs)
                    mu = self.policy.actor(nobs).float()
                    new_logp = gaussian_log_prob(flat["actions"][idx], mu, log_std)
                    a_loss = ppo_actor_loss(new_logp, flat["logp"][idx], adv[idx], cfg.e_clip)
                    c_loss = value_loss(self.critic(nobs).float(), ret_n[idx])
                    b_loss = bounds_loss(mu)
                    loss = a_loss + cfg.critic_coef * c_loss + cfg.bounds_loss_coef * b_loss
                self.mp.step(loss, self.optimizer, self.params, max_norm=cfg.grad_norm, clip=cfg.truncate_grads)
                with torch.no_grad():
                    sums["losses/actor"] += float(a_loss)
                    sums["losses/critic"] += float(c_loss)
                    sums["losses/bounds"] += float(b_loss)
                    sums["info/clip_frac"] += float(clip_fraction(new_logp, flat["logp"][idx], cfg.e_clip))
                    sums["info/kl"] += float((flat["logp"][idx] - new_logp).mean())
                count += 1
        return {k: v / max(count, 1) for k, v in sums.items()}

    def train_epoch(self) -> dict[str, float]:
        """One rollout + PPO update; returns the epoch's scalars."""
        t0 = time.perf_counter()
        steps0 = self.llc_steps_total
        store, stats = self.rollout()
        t1 = time.perf_counter()
        stats.update(self.update(store))
        t2 = time.perf_counter()
        self.epoch += 1
        steps = self.llc_steps_total - steps0
        stats["perf/rollout_s"] = t1 - t0
        stats["perf/update_s"] = t2 - t1
        stats["perf/samples_per_s"] = steps / max(t2 - t0, 1e-9)
        stats["info/epoch"] = float(self.epoch)
        stats["info/llc_steps"] = float(self.llc_steps_total)
        return stats

    # -------------------------------------------------------------------------------------------- state

    def checkpoint_state(self, *, embed_llc: bool = False, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The skill checkpoint dict (see :mod:`~anyskill_tui.core.learn.skill_policy`)."""

        def cpu(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu().clone() for k, v in sd.items()}

        rng = {"gen": self.gen.get_state(), "cpu_gen": self.cpu_gen.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state: dict[str, Any] = {
            "format": SKILL_FORMAT,
            "prompts": list(self.prompts),
            "prompt_weights": list(self.prompt_weights),
            "llc_path": self.llc_path,
            "llc_steps": self.cfg.llc.steps,
            "config": self.cfg.to_dict(),
            "policy": self.policy.policy_state(),
            "text_features": self.text_features.detach().cpu().clone(),
            "style_refs": self.style_refs.detach().cpu().clone(),
            "epoch": self.epoch,
            "llc_steps_total": self.llc_steps_total,
            "train": {
                "critic": cpu(self.critic.state_dict()),
                "value_norm": cpu(self.value_norm.state_dict()),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.mp.state_dict(),
                "rng": rng,
                "prompt_idx": self.prompt_idx.cpu().clone(),
                "prompt_timer": self.prompt_timer.cpu().clone(),
                "episode_lengths": list(self.episode_lengths),
            },
        }
        if embed_llc:
            from anyskill_tui.core.learn.llc_policy import LLC_FORMAT

            model, norms = self.llc.state_parts(half=True)
            state["llc"] = {
                "format": LLC_FORMAT,
                "kind": "policy",
                "config": self.llc.config,
                "model": model,
                "normalizers": norms,
                "half": True,
            }
        if extra:
            state.update(extra)
        return state

    def load_checkpoint_state(self, state: Mapping[str, Any]) -> None:
        """Restore the learner from a checkpoint dict (same config sizes and env count)."""
        dev = self.device
        self.policy.actor.load_state_dict(state["policy"]["actor"])
        self.policy.obs_norm.load_state_dict(state["policy"]["obs_norm"])
        tr = state["train"]
        self.critic.load_state_dict(tr["critic"])
        self.value_norm.load_state_dict(tr["value_norm"])
        self.optimizer.load_state_dict(tr["optimizer"])
        self.mp.load_state_dict(tr.get("scaler") or {})
        self.style_refs = state["style_refs"].to(dev, torch.float32)
        rng = tr["rng"]
        self.gen.set_state(rng["gen"])
        self.cpu_gen.set_state(rng["cpu_gen"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and dev.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], dev)
        if tr["prompt_idx"].shape[0] == self.num_envs:
            self.prompt_idx = tr["prompt_idx"].to(dev)
            self.prompt_timer = tr["prompt_timer"].to(dev)
        self.episode_lengths.extend(tr.get("episode_lengths") or [])
        self.epoch = int(state["epoch"])
        self.llc_steps_total = int(state.get("llc_steps_total", 0))


# ------------------------------------------------------------------------------------------------ evaluation


@torch.no_grad()
def evaluate_policy(
    policy: SkillPolicy,
    llc: LlcPolicy,
    env: HumanoidEnv,
    scorer: Scorer,
    text_features: torch.Tensor,
    *,
    llc_steps: int = 5,
    prompt_index: torch.Tensor | None = None,
    on_frame: Callable[[int, HumanoidEnv], None] | None = None,
) -> dict[str, Any]:
    """One deterministic episode of every env from the default state; the mean cosine with each env's prompt.

    Env i is scored against prompt ``i mod P`` (unless ``prompt_index`` is given), at every LLC step until its
    episode ends (a fall or the time limit; no resets, no recovery). Returns ``clip_score`` (mean over all scored
    frames), ``clip_score_per_prompt``, ``episode_length`` (mean LLC steps) and ``frames``.
    ``on_frame(step, env)`` is called after every LLC step (tests use it to record poses).
    """
    dev = env.device
    n = env.num_envs
    tf = F.normalize(text_features.to(dev, torch.float32).reshape(-1, text_features.shape[-1]), dim=-1)
    p = tf.shape[0]
    idx = torch.arange(n, device=dev) % p if prompt_index is None else prompt_index.to(dev).long()
    object_obs = uses_object_obs(policy.config)
    env.reset(mode="default")
    obs = env.obs.float()
    alive = torch.ones(n, dtype=torch.bool, device=dev)
    total = torch.zeros(n, device=dev)
    count = torch.zeros(n, device=dev)
    length = torch.zeros(n, device=dev)
    max_steps = int(env.cfg.episode_length)
    step = 0
    while step < max_steps and bool(alive.any()):
        z = latent_from_action(policy.act(hlc_observation(env, obs, object_obs), deterministic=True))
        for _ in range(llc_steps):
            res = env.step(llc.act(obs, z).to(dev))
            obs = res.obs.float()
            step += 1
            sim = prompt_cosine(scorer.features(env), tf, idx)
            total += torch.where(alive, sim, torch.zeros_like(sim))
            count += alive.float()
            length += alive.float()
            if on_frame is not None:
                on_frame(step, env)
            alive = alive & ~res.done
            if step >= max_steps or not bool(alive.any()):
                break
    per_env = total / count.clamp_min(1)
    per_prompt = [
        float(total[idx == i].sum() / count[idx == i].sum().clamp_min(1)) if bool((idx == i).any()) else float("nan")
        for i in range(p)
    ]
    return {
        "clip_score": float(total.sum() / count.sum().clamp_min(1)),
        "clip_score_per_prompt": per_prompt,
        "clip_score_per_env": per_env.tolist(),
        "episode_length": float(length.mean()),
        "frames": int(count.sum()),
    }


# ------------------------------------------------------------------------------------------------ run glue


def _workspace_of(ctx: TrainContext) -> Path | None:
    ws = ctx.config.get("workspace")
    if ws:
        return Path(ws)
    lib = ctx.library
    if lib is not None and getattr(lib, "path", None) is not None:
        return Path(lib.path).parent
    return None


def load_clip_model(cfg: SkillConfig, device: torch.device, weights: str | None = None) -> ClipRewardModel:
    """The CLIP model of the config (``clip:`` section; ``weights`` overrides it). Weight errors are the reward
    module's own (:class:`~anyskill_tui.core.reward.clip.ClipWeightsError`)."""
    from anyskill_tui.core.reward.clip import ClipConfig, ClipRewardModel

    return ClipRewardModel.from_config(ClipConfig.from_mapping(cfg.clip.model_dump()), device=device, weights=weights)


def load_proxy(cfg: SkillConfig, device: torch.device) -> ProxyModel:
    from anyskill_tui.core.reward.proxy import ProxyModel

    if not cfg.reward.proxy:
        raise UserError(
            "reward mode proxy needs a proxy checkpoint: train one with `anyskill proxy train`, then pass "
            "--proxy CKPT (or set reward.proxy)"
        )
    return ProxyModel.load(cfg.reward.proxy, device=device)


def _check_llc(cfg: SkillConfig) -> str:
    path = cfg.llc.path
    if not path:
        raise UserError(
            "no LLC checkpoint: train one with `anyskill llc train`, or pass --llc PATH (a checkpoint of an llc run)"
        )
    if not Path(path).is_file():
        raise UserError(f"LLC checkpoint {path} does not exist; pass --llc PATH or train one with `anyskill llc train`")
    return str(Path(path).resolve())


def _fmt(stats: Mapping[str, float]) -> str:
    keys = ("clip/similarity", "reward/style", "reward/total", "info/episode_length", "perf/samples_per_s")
    short = {"clip/similarity": "clip", "reward/style": "style", "reward/total": "R", "info/episode_length": "len"}
    parts = []
    for k in keys:
        if k in stats and math.isfinite(stats[k]):
            name = short.get(k, "llc_steps/s")
            parts.append(f"{name} {stats[k]:.4g}" if k != "perf/samples_per_s" else f"{name} {stats[k]:,.0f}")
    return "  ".join(parts)


def train_skill(ctx: TrainContext) -> None:
    """The ``skill`` trainer (see :mod:`anyskill_tui.core.jobs.trainers` and the module docstring).

    Under torchrun every rank calls this with 1/W of the envs (:mod:`~anyskill_tui.core.learn.distributed`);
    rank 0 alone writes, and evaluates at the end."""
    from anyskill_tui.core.jobs.checkpoints import load_checkpoint
    from anyskill_tui.core.learn import distributed
    from anyskill_tui.core.learn.llc_policy import LlcPolicy

    dist = distributed.current()
    ctx = dist.rank_context(ctx)
    cfg = skill_config_from_dict(ctx.config, source=f"run {ctx.run_id} config")
    if not cfg.prompts:
        raise UserError("a skill run needs at least one prompt (config `prompts`)")
    check_scene_reward(cfg)
    llc_path = _check_llc(cfg)
    env = build_env(cfg, num_envs=dist.local_count(cfg.env.num_envs, "env.num_envs"), seed=dist.rank_seed(cfg.seed))
    dev = env.device
    print(f"skill: {env.num_envs} envs on {env.engine} ({dev}), prompts {[p.text for p in cfg.prompts]}", flush=True)
    llc = LlcPolicy.load(llc_path, device=dev)
    prompts = [p.text for p in cfg.prompts]
    clip_model = None
    if cfg.reward.mode == "render" or cfg.eval.scorer == "render":
        clip_model = load_clip_model(cfg, dev, ctx.config.get("clip_weights_arg"))
    if cfg.reward.mode == "proxy":
        proxy = load_proxy(cfg, dev)
        scorer: Scorer = ProxyScorer(proxy)
        if clip_model is None:
            clip_model = load_clip_model(cfg, dev, ctx.config.get("clip_weights_arg"))
        proxy.check_compatible(clip_model)
    else:
        scorer = ClipScorer(clip_model)
    # (the text cache lives in the workspace: rank 0's to write; the others' features are replaced by rank 0's)
    text = clip_model.text_features(prompts, cache=_workspace_of(ctx) if dist.is_main else None)
    if cfg.reward.mode == "proxy" and cfg.eval.scorer != "render":
        clip_model = None  # not needed any more: free its memory
    trainer = SkillTrainer(cfg, llc, env, scorer, text, prompts=prompts, llc_path=llc_path, dist=dist)
    if ctx.resume_from is not None:
        state = load_checkpoint(ctx.resume_from, map_location="cpu")
        # this rank's generators/prompt timers (another world size: this rank's fresh ones)
        state = dist.resume_state(state, SKILL_LOCAL_KEYS, fresh=trainer.checkpoint_state)
        trainer.load_checkpoint_state(state)
        print(f"skill: resumed at epoch {trainer.epoch} from {ctx.resume_from}", flush=True)
    total = cfg.ppo.max_epochs
    stats: dict[str, float] = {}

    def ckpt_metrics(s: Mapping[str, float]) -> dict[str, Any]:
        keep = ("clip/similarity", "reward/style", "reward/total", "info/episode_length")
        out = {k.split("/", 1)[1]: float(s[k]) for k in keep if k in s and math.isfinite(s[k])}
        out["epoch"] = trainer.epoch
        out["llc_steps"] = trainer.llc_steps_total
        return out

    def save(state: dict[str, Any], metrics: dict[str, Any]) -> None:
        state = dist.gather_checkpoint(state, SKILL_LOCAL_KEYS)  # all ranks' local parts; None on ranks > 0
        if state is not None:
            ctx.save_checkpoint(trainer.epoch, state, metrics)

    ctx.progress(trainer.epoch, total)
    while trainer.epoch < total:
        if dist.any_true(ctx.should_stop()):  # several ranks: all stop at the same epoch
            save(trainer.checkpoint_state(), ckpt_metrics(stats))
            print(f"skill: stop requested; saved epoch {trainer.epoch}", flush=True)
            return
        stats = dist.all_reduce_mean(trainer.train_epoch())  # the mean over the ranks (one process: as is)
        ctx.log_metrics(trainer.epoch, stats)
        ctx.progress(trainer.epoch, total)
        ctx.heartbeat()
        print(f"epoch {trainer.epoch}/{total}  {_fmt(stats)}", flush=True)
        if trainer.epoch % cfg.ppo.save_frequency == 0 and trainer.epoch < total:
            save(trainer.checkpoint_state(), ckpt_metrics(stats))
    final_state = None
    if dist.enabled:  # the last collective; then rank 0 alone evaluates and writes
        final_state = dist.gather_checkpoint(trainer.checkpoint_state(embed_llc=True), SKILL_LOCAL_KEYS)
        if final_state is None:
            return

    # evaluation: one deterministic episode of eval.num_envs envs (a fresh env on the cpu engine; the training
    # env's first worlds are reused otherwise, since a new GPU backend is expensive)
    eval_scorer: Scorer = scorer
    if cfg.eval.scorer == "render" and clip_model is not None:
        eval_scorer = ClipScorer(clip_model)
    reuse = env.engine == "gpu" or env.num_envs == cfg.eval.num_envs
    eval_env = env if reuse else build_env(cfg, num_envs=cfg.eval.num_envs)
    ev = evaluate_policy(trainer.policy, llc, eval_env, eval_scorer, trainer.text_features, llc_steps=cfg.llc.steps)
    metrics = ckpt_metrics(stats)
    metrics["train_clip_similarity"] = metrics.pop("similarity", float("nan"))
    metrics["clip_score"] = ev["clip_score"]
    metrics["clip_similarity"] = ev["clip_score"]
    metrics["eval_episode_length"] = ev["episode_length"]
    metrics["clip_score_source"] = "render" if getattr(eval_scorer, "renders", False) else "proxy"
    if len(prompts) > 1:
        metrics["clip_score_per_prompt"] = dict(zip(prompts, ev["clip_score_per_prompt"], strict=True))
    ctx.log_metrics(trainer.epoch, {"eval/clip_score": ev["clip_score"]})
    if final_state is None:
        final_state = trainer.checkpoint_state(embed_llc=True)
    ctx.save_checkpoint(trainer.epoch, final_state, metrics)
    print(
        f"skill: done after {trainer.epoch} epochs; clip_score {ev['clip_score']:.4f} "
        f"({metrics['clip_score_source']}, {ev['frames']} frames)",
        flush=True,
    )
    _mark_trained(ctx)


def _mark_trained(ctx: TrainContext) -> None:
    """Set every skill of a multi-prompt run to ``trained`` (the runner does the run's own skill)."""
    lib = ctx.library
    ids = ctx.config.get("skill_ids") or []
    if lib is None:
        return
    for sid in ids:
        try:
            lib.edit_skill(int(sid), status="trained")
        except Exception as exc:  # never fail a finished run over a status
            print(f"skill: could not mark skill {sid} trained: {exc}", flush=True)


# ------------------------------------------------------------------------------------------------ scoring


def score_checkpoint(
    path: str | Path,
    *,
    workspace: str | Path | None = None,
    num_envs: int | None = None,
    engine: str | None = None,
    clip_weights: str | None = None,
    clip_model: ClipRewardModel | None = None,
    scorer: str = "render",
) -> dict[str, Any]:
    """Re-evaluate a skill checkpoint: one deterministic episode (see :func:`evaluate_policy`)."""
    from anyskill_tui.core.learn.skill_policy import load_llc_of, load_skill_state

    state = load_skill_state(path)
    data = dict(state.get("config") or {})
    overrides: dict[str, Any] = {}
    if engine:
        overrides["env.engine"] = engine
    cfg = skill_config_from_dict(data, source=f"{path} config", overrides=overrides)
    if scorer == "proxy" and cfg.scene is not None:
        raise UserError(
            f"{path}: a skill of scene {cfg.scene.name!r} cannot be scored by the proxy (it does not see objects); "
            "score it with the rendered CLIP scorer"
        )
    k = int(num_envs or cfg.eval.num_envs)
    env = build_env(cfg, num_envs=k)
    dev = env.device
    policy = SkillPolicy.from_state(state, source=str(path), device=dev)
    llc = load_llc_of(state, source=str(path), device=dev)
    if scorer == "proxy":
        s: Scorer = ProxyScorer(load_proxy(cfg, dev))
        text = state["text_features"]
    else:
        clip_model = clip_model or load_clip_model(cfg, dev, clip_weights)
        s = ClipScorer(clip_model)
        text = clip_model.text_features(policy.prompts, cache=workspace)
    ev = evaluate_policy(policy, llc, env, s, text, llc_steps=policy.llc_steps)
    ev["source"] = scorer
    ev["prompts"] = policy.prompts
    return ev
