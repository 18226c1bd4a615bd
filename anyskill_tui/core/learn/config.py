"""Typed configuration for CALM low-level-controller training (spec §4.7, the AnySkill column).

Two deviations from the AnySkill fork's shipped config, both as the spec advises for training (§4.7, §9.7):
``env.state_init`` is ``hybrid`` with ``hybrid_init_prob`` 0.5 and ``env.episode_length`` is 300 LLC steps.

Load with :func:`load_llc_config`; every problem (YAML syntax, an unknown key, a wrong type, an out-of-range or
inconsistent value) raises :class:`ConfigError` whose one-line message names the file and the dotted key.
This module imports neither torch nor anything heavy, so the CLI can read configs cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from anyskill_tui.errors import UserError
from anyskill_tui.paths import configs_dir

if TYPE_CHECKING:
    from anyskill_tui.core.learn.calm import CalmLossCoeffs


_M = TypeVar("_M", bound=BaseModel)


class ConfigError(UserError):
    """A config file that cannot be used; the message names the file and the key."""


Widths = tuple[Annotated[int, Field(ge=1)], ...]


class ConfigSection(BaseModel):
    """A config section: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, not tuples) for writing a run's resolved config."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


class EnvConfig(ConfigSection):
    """The ``HumanoidAMPGetup`` environment (spec §4.6)."""

    num_envs: int = Field(1024, ge=1)
    episode_length: int = Field(300, ge=1, description="LLC steps before a time-out")
    state_init: Literal["default", "start", "random", "hybrid"] = "hybrid"
    hybrid_init_prob: float = Field(0.5, ge=0.0, le=1.0)
    recovery_episode_prob: float = Field(0.2, ge=0.0, le=1.0)
    recovery_steps: int = Field(60, ge=0)
    fall_init_prob: float = Field(0.1, ge=0.0, le=1.0)
    num_amp_obs_steps: int = Field(10, ge=2)
    num_amp_enc_obs_steps: int = Field(60, ge=2)
    local_root_obs: bool = True
    key_bodies: tuple[str, ...] = ("right_hand", "left_hand", "right_foot", "left_foot")
    termination_height: float = Field(0.15, ge=0.0)
    head_termination_height: float = Field(0.15, ge=0.0)
    control_freq: float = Field(30.0, gt=0.0, description="LLC steps per second")
    motion_pool_size: int = Field(0, ge=0, description="motion starts pre-drawn for the gpu reset (0: twice num_envs)")
    motion_pool_refresh: int = Field(16, ge=1, description="LLC steps between redraws of the motion-start pool")

    @model_validator(mode="after")
    def _windows(self) -> EnvConfig:
        if self.num_amp_obs_steps > self.num_amp_enc_obs_steps:
            raise ValueError("num_amp_obs_steps: must not exceed num_amp_enc_obs_steps (the AMP window lies inside)")
        return self


class NetworkConfig(ConfigSection):
    """Network sizes (spec §4.1)."""

    obs_dim: int = Field(223, ge=1)
    amp_obs_dim: int = Field(125, ge=1)
    action_dim: int = Field(28, ge=1)
    latent_dim: int = Field(64, ge=2)
    actor_hidden: Widths = (1024, 1024, 512)
    critic_hidden: Widths = (1024, 1024, 512)
    encoder_hidden: Widths = (1024, 1024, 512)
    disc_hidden: Widths = (1024, 1024, 512)
    style_hidden: Widths = (512, 256)
    style_dim: int = Field(64, ge=1)
    log_std: float = Field(-2.9, description="fixed, not learned")


class PPOConfig(ConfigSection):
    """PPO settings (spec §4.4–4.5, §4.7)."""

    horizon_length: int = Field(32, ge=1)
    minibatch_size: int = Field(4096, ge=1)
    mini_epochs: int = Field(6, ge=1)
    learning_rate: float = Field(2e-5, gt=0.0)
    lr_schedule: Literal["constant"] = "constant"
    adam_eps: float = Field(1e-8, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    gamma: float = Field(0.99, ge=0.0, le=1.0)
    tau: float = Field(0.95, ge=0.0, le=1.0, description="GAE lambda")
    e_clip: float = Field(0.2, gt=0.0)
    critic_coef: float = Field(5.0, ge=0.0)
    bounds_loss_coef: float = Field(10.0, ge=0.0)
    entropy_coef: float = Field(0.0, ge=0.0)
    clip_value: bool = False
    normalize_input: bool = True
    normalize_value: bool = True
    normalize_advantage: bool = True
    mixed_precision: bool = True
    grad_norm: float = Field(1.0, gt=0.0)
    truncate_grads: bool = False
    cuda_graph: bool = Field(
        True, description="replay the update's gradient step from a CUDA graph (CUDA, one process; LLC only)"
    )
    cuda_graph_rollout: bool = Field(
        False,
        description="replay the rollout's acting and next values from CUDA graphs (gpu engine, one process; LLC "
        "only). Off until measured on a GPU",
    )
    max_epochs: int = Field(100_000, ge=1)
    save_frequency: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _no_value_clip(self) -> PPOConfig:
        if self.clip_value:
            raise ValueError("clip_value: a clipped value loss is not implemented (the reference runs without it)")
        return self


class CalmConfig(ConfigSection):
    """CALM specifics: buffers, conditional discriminator, encoder, latent schedule (spec §4.2–4.5)."""

    demo_buffer_size: int = Field(50_000, ge=1)
    replay_buffer_size: int = Field(50_000, ge=1)
    replay_keep_prob: float = Field(0.01, ge=0.0, le=1.0)
    amp_batch_size: int = Field(512, ge=1, description="demo pairs added to the demo buffer per epoch")
    amp_minibatch_size: int = Field(1024, ge=1, description="rows of each PPO minibatch fed to D")
    disc_coef: float = Field(5.0, ge=0.0)
    disc_logit_reg: float = Field(0.01, ge=0.0)
    disc_grad_penalty: float = Field(5.0, ge=0.0)
    disc_weight_decay: float = Field(1e-4, ge=0.0)
    disc_reward_scale: float = Field(2.0, ge=0.0)
    negative_disc_samples: bool = False
    task_reward_w: float = 0.0
    disc_reward_w: float = 0.0
    conditional_disc_reward_w: float = 1.0
    enc_coef: float = Field(0.1, ge=0.0, description="enc_regularization_coeff")
    enc_uniformity_weight: float = Field(0.5, ge=0.0)
    enc_pair_max_offset: float = Field(0.5, ge=0.0, description="seconds between the two alignment windows")
    latent_steps_min: int = Field(10, ge=1)
    latent_steps_max: int = Field(150, ge=2, description="exclusive: deadlines advance by randint(min, max)")
    epsilon_greedy: bool = True

    @model_validator(mode="after")
    def _latent_steps(self) -> CalmConfig:
        if self.latent_steps_min >= self.latent_steps_max:
            raise ValueError("latent_steps_min: must be smaller than latent_steps_max")
        if self.negative_disc_samples:
            raise ValueError("negative_disc_samples: not implemented (off in the reference)")
        return self


class LlcConfig(ConfigSection):
    """The whole LLC training config, one section per concern."""

    seed: int = 0
    env: EnvConfig = EnvConfig()
    network: NetworkConfig = NetworkConfig()
    ppo: PPOConfig = PPOConfig()
    calm: CalmConfig = CalmConfig()

    @model_validator(mode="after")
    def _batches(self) -> LlcConfig:
        # each message ends with every override that fixes it, so one retry is enough
        batch, mb, amp_mb = self.batch_size, self.ppo.minibatch_size, self.calm.amp_minibatch_size
        if mb > batch or batch % mb:
            fit = max(d for d in range(1, min(mb, batch) + 1) if batch % d == 0)
            fix = f"--set ppo.minibatch_size={fit}" + (f" --set calm.amp_minibatch_size={fit}" if amp_mb > fit else "")
            if mb > batch:
                envs = -(-mb // self.ppo.horizon_length)
                raise ValueError(
                    f"ppo.minibatch_size: {mb} exceeds horizon_length x num_envs ({batch}): use at least {envs} "
                    f"envs, or {fix}"
                )
            raise ValueError(f"ppo.minibatch_size: {mb} must divide horizon_length x num_envs ({batch}): {fix}")
        if amp_mb > mb:
            raise ValueError(
                f"calm.amp_minibatch_size: {amp_mb} must not exceed ppo.minibatch_size ({mb}): "
                f"--set calm.amp_minibatch_size={mb}"
            )
        return self

    @property
    def batch_size(self) -> int:
        """Samples per epoch: ``horizon_length × num_envs``."""
        return self.ppo.horizon_length * self.env.num_envs

    def loss_coeffs(self) -> CalmLossCoeffs:
        """The loss coefficients for ``calm.py`` (imported lazily: this module stays free of torch)."""
        from anyskill_tui.core.learn.calm import CalmLossCoeffs

        c, p = self.calm, self.ppo
        return CalmLossCoeffs(
            critic=p.critic_coef,
            entropy=p.entropy_coef,
            bounds=p.bounds_loss_coef,
            disc=c.disc_coef,
            enc=c.enc_coef,
            disc_logit_reg=c.disc_logit_reg,
            disc_grad_penalty=c.disc_grad_penalty,
            disc_weight_decay=c.disc_weight_decay,
            disc_reward_scale=c.disc_reward_scale,
            enc_uniformity_weight=c.enc_uniformity_weight,
        )


def default_llc_config_path() -> Path:
    return configs_dir() / "llc.yaml"


def _format_errors(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        if e["type"] == "value_error":  # our validators write "field: message"; prefix the section
            key = ".".join(k for k in (key, msg.split(": ", 1)[0]) if k)
            msg = msg.split(": ", 1)[1]
        parts.append(f"{key}: {msg}")
    return f"{source}: " + "; ".join(parts)


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``data`` with dotted-key overrides applied, e.g. ``{"ppo.gamma": 0.98, "env.num_envs": 64}``."""
    out: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for dotted, value in (overrides or {}).items():
        node = out
        *path, leaf = dotted.split(".")
        for key in path:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {dotted}: {key} is not a section")
            node = child
        node[leaf] = value
    return out


def validate_config(
    model: type[_M],
    data: Mapping[str, Any] | None,
    source: str = "<config>",
    overrides: Mapping[str, Any] | None = None,
    drop_keys: tuple[str, ...] = (),
) -> _M:
    """Validate plain data (a YAML mapping or a run's stored config) into the pydantic ``model``, after
    dropping ``drop_keys`` and applying dotted ``overrides``; errors are one ConfigError naming ``source``."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, not {type(data).__name__}")
    clean = {k: v for k, v in data.items() if k not in drop_keys}
    try:
        return model.model_validate(apply_overrides(clean, overrides))
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def read_yaml_config(path: Path) -> Any:
    """The parsed YAML of a config file; unreadable files and YAML errors (with their line) are ConfigErrors."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config ({err.strerror or err})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: {problem}") from None


def llc_config_from_dict(
    data: Mapping[str, Any] | None, source: str = "<config>", overrides: Mapping[str, Any] | None = None
) -> LlcConfig:
    """Validate plain data into an :class:`LlcConfig`; ``source`` names the origin in error messages."""
    return validate_config(LlcConfig, data, source, overrides)


def load_llc_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> LlcConfig:
    """Read an LLC config YAML (default: the shipped ``configs/llc.yaml``); missing keys take spec defaults."""
    path = Path(path) if path is not None else default_llc_config_path()
    return llc_config_from_dict(read_yaml_config(path), source=str(path), overrides=overrides)
