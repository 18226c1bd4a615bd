"""The trained AnySkill high-level policy (HLC) as replay, scoring and resume load it (spec §5.1, §5.2).

A skill checkpoint is a ``torch.save`` dict written by :mod:`anyskill_tui.core.learn.skill_train` through
``ctx.save_checkpoint`` (``RUN_DIR/checkpoints/ckpt_<epoch:08d>.pt``)::

    {"format": "anyskill.skill/1",
     "prompts": [str, ...], "prompt_weights": [float, ...],
     "llc_path": "/abs/path/to/llc.pt", "llc_steps": 5,
     "config": <the resolved skill config (SkillConfig.to_dict())>,
     "policy": {"actor": SkillActor state_dict, "obs_norm": RunningMeanStd state_dict},
     "llc": <slim LLC policy dict (save_llc_policy layout, fp16 weights)>   # final checkpoint only
     "train": {critic, value_norm, optimizer, scaler, rng, epoch, ...}      # for exact resume
     "text_features": (P, D) float32, "style_refs": (R, 64) float32, "epoch": int, ...}

**The LLC a skill runs on.** A skill is only meaningful on the frozen LLC it was trained with. The checkpoint
stores that LLC's absolute path (``llc_path``). The *final* checkpoint of a run also embeds a slim copy of the
LLC (actor, encoder, normalisers, config; network weights in fp16: about 22 MB for the spec-sized networks), so
the finished skill file is self-contained; intermediate checkpoints (every ``ppo.save_frequency`` epochs) only
carry the path, to keep a run dir small. :meth:`SkillPolicy.load` uses the file at ``llc_path`` when it exists
(bit-exact with training) and falls back to the embedded copy (fp16-rounded weights: replays may drift slightly
from training) when the path is gone; with neither, one clear error names both.

This module imports torch; keep it out of module-level imports of the CLI and the TUI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from anyskill_tui.core.learn.networks import SkillActor
from anyskill_tui.core.learn.normalizer import RunningMeanStd
from anyskill_tui.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.core.learn.llc_policy import LlcPolicy

__all__ = ["SKILL_FORMAT", "SkillPolicy", "latent_from_action", "load_skill_state"]

SKILL_FORMAT = "anyskill.skill/1"


def latent_from_action(a: torch.Tensor) -> torch.Tensor:
    """The LLC latent of an HLC action: ``normalize(clamp(a, -1, 1))``, (N, 64) unit rows (spec §5.1 step 2)."""
    return F.normalize(a.clamp(-1.0, 1.0), dim=-1)


def load_skill_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a skill checkpoint and check its format; a UserError naming the file otherwise."""
    from anyskill_tui.core.jobs.checkpoints import load_checkpoint

    state = load_checkpoint(Path(path), map_location=str(map_location))
    if not isinstance(state, Mapping) or state.get("format") != SKILL_FORMAT:
        found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
        raise UserError(
            f"{path} is not a skill checkpoint (format {found!r}, expected {SKILL_FORMAT!r}); give a checkpoint "
            "of an `anyskill train` run"
        )
    return dict(state)


class SkillPolicy(nn.Module):
    """The HLC actor ``tanh(MLP(norm(obs)))`` with its own observation normaliser and fixed log-std.

    Args:
        obs_dim, action_dim, hidden, log_std: the actor (spec §5.2: 223, 64, (1024, 512), −2.3).
        normalize_input: apply the running observation normaliser (spec §5.8: true).
        prompts, prompt_weights, llc_path, config, llc_steps: what the skill was trained for and on.
    """

    def __init__(
        self,
        obs_dim: int = 223,
        action_dim: int = 64,
        hidden: Sequence[int] = (1024, 512),
        log_std: float = -2.3,
        *,
        normalize_input: bool = True,
        prompts: Sequence[str] = (),
        prompt_weights: Sequence[float] | None = None,
        llc_path: str = "",
        config: Mapping[str, Any] | None = None,
        llc_steps: int = 5,
    ) -> None:
        super().__init__()
        self.actor = SkillActor(obs_dim, action_dim, hidden, log_std)
        self.obs_norm = RunningMeanStd(obs_dim)
        self.obs_dim = int(obs_dim)
        self.action_dim = int(action_dim)
        self.normalize_input = bool(normalize_input)
        self.prompts: list[str] = list(prompts)
        self.prompt_weights: list[float] = (
            [float(w) for w in prompt_weights] if prompt_weights is not None else [1.0] * len(self.prompts)
        )
        self.llc_path: str = str(llc_path)
        self.config: dict[str, Any] = dict(config or {})
        self.llc_steps: int = int(llc_steps)

    @property
    def device(self) -> torch.device:
        return self.actor.mu.weight.device

    @property
    def log_std(self) -> torch.Tensor:
        return self.actor.log_std

    def norm_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_norm.normalize(obs) if self.normalize_input else obs

    def mu(self, obs: torch.Tensor) -> torch.Tensor:
        """The action mean (N, 64) in (−1, 1) of raw observations (N, 223); differentiable."""
        return self.actor(self.norm_obs(obs.to(device=self.device, dtype=torch.float32)))

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, deterministic: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Raw action (N, 64) for raw observations (N, 223): μ, or μ + σ·ε when not deterministic.

        Turn it into the LLC latent with :func:`latent_from_action`.
        """
        mu = self.mu(obs)
        if deterministic:
            return mu
        from anyskill_tui.core.learn.ppo import sample_gaussian

        return sample_gaussian(mu, self.actor.log_std, generator)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.act(obs, deterministic=True)

    # -------------------------------------------------------------------------------------------- files

    def policy_state(self) -> dict[str, Any]:
        """``{"actor": ..., "obs_norm": ...}`` on the CPU, as stored under ``"policy"`` in skill checkpoints."""

        def cpu(m: nn.Module) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}

        return {"actor": cpu(self.actor), "obs_norm": cpu(self.obs_norm)}

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], source: str = "<state>", device: str | torch.device = "cpu"
    ) -> SkillPolicy:
        """Build from a loaded skill checkpoint dict (sizes from its stored config)."""
        cfg = dict(state.get("config") or {})
        net = dict(cfg.get("network") or {})
        ppo = dict(cfg.get("ppo") or {})
        try:
            policy = cls(
                obs_dim=int(net.get("obs_dim", 223)),
                action_dim=int(net.get("action_dim", 64)),
                hidden=tuple(int(h) for h in net.get("actor_hidden", (1024, 512))),
                log_std=float(net.get("log_std", -2.3)),
                normalize_input=bool(ppo.get("normalize_input", True)),
                prompts=list(state.get("prompts") or []),
                prompt_weights=state.get("prompt_weights"),
                llc_path=str(state.get("llc_path") or ""),
                config=cfg,
                llc_steps=int(state.get("llc_steps") or cfg.get("llc", {}).get("steps", 5)),
            )
            policy.actor.load_state_dict(state["policy"]["actor"])
            policy.obs_norm.load_state_dict(state["policy"]["obs_norm"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise UserError(f"{source}: a skill checkpoint with missing or mismatched parts ({exc})") from None
        policy.eval()
        return policy.to(device)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> tuple[SkillPolicy, LlcPolicy]:
        """The HLC of a skill checkpoint and the LLC it was trained on (see the module docstring)."""
        state = load_skill_state(path)
        policy = cls.from_state(state, source=str(path), device=device)
        return policy, load_llc_of(state, source=str(path), device=device)


def load_llc_of(state: Mapping[str, Any], source: str = "<state>", device: str | torch.device = "cpu") -> LlcPolicy:
    """The LLC of a skill checkpoint: the file at ``llc_path`` if it exists, else the embedded slim copy."""
    from anyskill_tui.core.learn.llc_policy import LlcPolicy

    llc_path = str(state.get("llc_path") or "")
    if llc_path and Path(llc_path).is_file():
        return LlcPolicy.load(llc_path, device=device)
    embedded = state.get("llc")
    if isinstance(embedded, Mapping):
        return LlcPolicy.from_state(embedded, source=f"{source} (embedded LLC)", device=device)
    raise UserError(
        f"{source}: the LLC this skill was trained on is gone ({llc_path or 'no path stored'}) and the checkpoint "
        "embeds no copy (only a run's final checkpoint does); put the LLC file back or use the final checkpoint"
    )
