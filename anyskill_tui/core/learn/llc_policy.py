"""The frozen CALM low-level controller as the skill policy (HLC) and replay use it.

An :class:`LlcPolicy` holds the actor π(a | s, z), the encoder E (60-step AMP window -> unit latent) and the two
normalisers they need (policy observations, AMP features). It is rebuilt from any LLC file:

* a full training checkpoint written by :func:`anyskill_tui.core.learn.llc_train.train_llc`
  (``RUN_DIR/checkpoints/ckpt_<epoch>.pt``: every network, the optimiser, buffers, RNG states...), or
* a slim policy file written by :func:`save_llc_policy` (actor, encoder, normalisers, config; optionally fp16).

Both are ``torch.save`` dicts of the same shape::

    {"format": "anyskill.llc/1", "kind": "train" | "policy", "config": <resolved LlcConfig dict>,
     "model": {"actor": state_dict, "encoder": state_dict, ...}, "normalizers": {"obs": ..., "amp": ...}, ...}

so :meth:`LlcPolicy.load` builds networks of whatever sizes the stored config names.

This module imports torch; keep it out of module-level imports of the CLI and the TUI.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyskill_tui.core.learn.config import LlcConfig, llc_config_from_dict
from anyskill_tui.core.learn.networks import CalmActor, CalmEncoder
from anyskill_tui.core.learn.normalizer import RunningMeanStd
from anyskill_tui.errors import UserError

__all__ = ["LLC_FORMAT", "LlcPolicy", "save_llc_policy", "random_llc_policy", "build_actor", "build_encoder"]

LLC_FORMAT = "anyskill.llc/1"


def build_actor(cfg: LlcConfig) -> CalmActor:
    n = cfg.network
    return CalmActor(
        obs_dim=n.obs_dim,
        latent_dim=n.latent_dim,
        action_dim=n.action_dim,
        hidden=n.actor_hidden,
        style_hidden=n.style_hidden,
        style_dim=n.style_dim,
        log_std=n.log_std,
    )


def build_encoder(cfg: LlcConfig) -> CalmEncoder:
    n = cfg.network
    return CalmEncoder(
        amp_obs_dim=n.amp_obs_dim,
        num_steps=cfg.env.num_amp_enc_obs_steps,
        latent_dim=n.latent_dim,
        hidden=n.encoder_hidden,
    )


class LlcPolicy(nn.Module):
    """The LLC's actor and encoder with their normalisers; inference only (every method runs without grad).

    Args:
        config: a resolved LLC config (``LlcConfig.to_dict()``, or an :class:`LlcConfig`).

    Attributes: ``latent_dim``, ``obs_dim``, ``action_dim``, ``amp_obs_dim``, ``num_enc_steps`` (encoder window
    steps, 60), ``num_amp_steps`` (discriminator window steps, 10), ``config`` (the plain dict).
    """

    def __init__(self, config: Mapping[str, Any] | LlcConfig) -> None:
        super().__init__()
        cfg = config if isinstance(config, LlcConfig) else llc_config_from_dict(config, source="LLC config")
        self.cfg = cfg
        self.config: dict[str, Any] = cfg.to_dict()
        self.latent_dim = cfg.network.latent_dim
        self.obs_dim = cfg.network.obs_dim
        self.action_dim = cfg.network.action_dim
        self.amp_obs_dim = cfg.network.amp_obs_dim
        self.num_enc_steps = cfg.env.num_amp_enc_obs_steps
        self.num_amp_steps = cfg.env.num_amp_obs_steps
        self.normalize_input = cfg.ppo.normalize_input
        self.actor = build_actor(cfg)
        self.encoder = build_encoder(cfg)
        self.obs_norm = RunningMeanStd(self.obs_dim)
        self.amp_norm = RunningMeanStd(self.amp_obs_dim)

    @property
    def device(self) -> torch.device:
        return self.actor.mu.weight.device

    # -------------------------------------------------------------------------------------------- inference

    def norm_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Policy observations as the actor sees them (normalised when ``ppo.normalize_input``)."""
        return self.obs_norm.normalize(obs) if self.normalize_input else obs

    @torch.no_grad()
    def act(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Deterministic action: obs (N, obs_dim) raw, z (N, latent_dim) unit -> μ (N, action_dim) in [-1, 1]."""
        dev = self.device
        obs = obs.to(device=dev, dtype=torch.float32)
        z = z.to(device=dev, dtype=torch.float32)
        return self.actor(self.norm_obs(obs), z).clamp(-1.0, 1.0)

    @torch.no_grad()
    def encode(self, enc_windows: torch.Tensor) -> torch.Tensor:
        """(N, num_enc_steps, amp_obs_dim) raw AMP windows (newest step first; or flattened) -> (N, latent) unit."""
        w = enc_windows.to(device=self.device, dtype=torch.float32)
        w = w.reshape(w.shape[0], self.num_enc_steps, self.amp_obs_dim)
        return self.encoder(self.amp_norm.normalize(w))

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.act(obs, z)

    # -------------------------------------------------------------------------------------------- files

    def state_parts(self, half: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(model, normalizers)`` dicts as stored in LLC files (network weights in fp16 when ``half``)."""

        def sd(module: nn.Module) -> dict[str, torch.Tensor]:
            out = {}
            for k, v in module.state_dict().items():
                v = v.detach().cpu().clone()
                out[k] = v.half() if half and v.is_floating_point() else v
            return out

        model = {"actor": sd(self.actor), "encoder": sd(self.encoder)}
        norms = {"obs": _cpu(self.obs_norm), "amp": _cpu(self.amp_norm)}
        return model, norms

    def load_parts(self, model: Mapping[str, Any], normalizers: Mapping[str, Any]) -> None:
        """Load actor, encoder and normaliser states (fp16 weights are cast back to float32)."""

        def fp32(state: Mapping[str, torch.Tensor], like: nn.Module) -> dict[str, torch.Tensor]:
            ref = like.state_dict()
            return {k: v.to(ref[k].dtype) if k in ref else v for k, v in state.items()}

        self.actor.load_state_dict(fp32(model["actor"], self.actor))
        self.encoder.load_state_dict(fp32(model["encoder"], self.encoder))
        self.obs_norm.load_state_dict(fp32(normalizers["obs"], self.obs_norm))
        self.amp_norm.load_state_dict(fp32(normalizers["amp"], self.amp_norm))

    @classmethod
    def from_state(cls, state: Mapping[str, Any], source: str = "<state>", device: str | torch.device = "cpu"):
        """Build from a loaded LLC file dict (full checkpoint or slim policy)."""
        if not isinstance(state, Mapping) or state.get("format") != LLC_FORMAT:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise UserError(
                f"{source} is not an LLC checkpoint (format {found!r}, expected {LLC_FORMAT!r}); "
                "give a checkpoint of an `anyskill llc train` run or a file from save_llc_policy"
            )
        try:
            policy = cls(state["config"])
            policy.load_parts(state["model"], state["normalizers"])
        except UserError as exc:
            raise UserError(f"{source}: {exc.message}") from None
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise UserError(f"{source}: an LLC checkpoint with missing or mismatched parts ({exc})") from None
        policy.eval()
        return policy.to(device)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> LlcPolicy:
        """Read an LLC training checkpoint or slim policy file; a clear UserError naming the file otherwise."""
        from anyskill_tui.core.jobs.checkpoints import load_checkpoint

        path = Path(path)
        state = load_checkpoint(path, map_location="cpu")
        return cls.from_state(state, source=str(path), device=device)


def _cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_llc_policy(path: str | Path, policy: LlcPolicy, extra: dict | None = None, *, half: bool = False) -> Path:
    """Write the slim policy file (actor, encoder, normalisers, config) atomically; returns the path.

    ``half``: store network weights in fp16 (about half the size; loading casts them back to float32). The
    normaliser statistics always stay float64. ``extra`` entries are stored beside (e.g. the source run).
    """
    from anyskill_tui.core.jobs.checkpoints import save_checkpoint

    model, norms = policy.state_parts(half=half)
    state: dict[str, Any] = {
        "format": LLC_FORMAT,
        "kind": "policy",
        "config": policy.config,
        "model": model,
        "normalizers": norms,
        "half": bool(half),
    }
    if extra:
        state["extra"] = dict(extra)
    return save_checkpoint(Path(path), state, update_latest=False)


def random_llc_policy(seed: int = 0, hidden: tuple[int, ...] = (64, 64), device: str | torch.device = "cpu"):
    """A small randomly initialised :class:`LlcPolicy` (real dims: 223 obs, 28 actions, 64-d latent, 60x125)."""
    widths = [int(h) for h in hidden]
    cfg = llc_config_from_dict(
        {
            "seed": int(seed),
            "network": {
                "actor_hidden": widths,
                "critic_hidden": widths,
                "encoder_hidden": widths,
                "disc_hidden": widths,
                "style_hidden": widths[:1],
            },
        },
        source="random_llc_policy",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        policy = LlcPolicy(cfg)
    policy.eval()
    return policy.to(device)
