"""Typed configuration for skill (AnySkill HLC) training: ``configs/skill.yaml`` (spec §5).

Load with :func:`load_skill_config`; every problem (YAML syntax, an unknown key, a wrong type, an out-of-range or
inconsistent value) raises :class:`~anyskill_tui.core.learn.config.ConfigError` whose one-line message names the
file and the dotted key. A run stores the resolved config (:meth:`SkillConfig.to_dict`), prompts and LLC path
included, and the trainer rebuilds it from that dict.

Deviations from the reference, all deliberate (spec §9):

- no hard-coded env count: ``env.num_envs`` is free, and ``ppo.minibatch_size`` is capped to the batch;
- each env is scored against its own prompt (spec §9.5);
- no punish counter (spec §5.7, §9.4): falls are the only early termination, recovery is 300 LLC steps with
  probability 0.2;
- ``reward.disc_reward_w`` must be 0 (the LLC's plain discriminator is untrained in the reference, §9.9).

This module imports neither torch nor anything heavy, so the CLI can read configs cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from anyskill_tui.core.learn.config import ConfigError, ConfigSection, read_yaml_config, validate_config
from anyskill_tui.core.sim.scene import SceneConfig
from anyskill_tui.errors import UserError
from anyskill_tui.paths import configs_dir

__all__ = [
    "BASE_OBS_DIM",
    "ConfigError",
    "SkillConfig",
    "check_scene_reward",
    "default_skill_config_path",
    "default_motion_file",
    "load_skill_config",
    "skill_config_from_dict",
    "ProxyConfig",
    "load_proxy_config",
    "proxy_config_from_dict",
]

Widths = tuple[Annotated[int, Field(ge=1)], ...]
#: the HLC's observation without objects: the character's 223-d policy observation (spec §3.1)
BASE_OBS_DIM = 223


class CameraSection(ConfigSection):
    """The tracking camera (``anyskill_tui.core.sim.backend.CameraSpec``)."""

    width: int = Field(224, ge=8)
    height: int = Field(224, ge=8)
    distance: float = Field(3.0, gt=0.0)
    elevation_height: float = 1.2
    lookat_height: float = 0.9
    azimuth_deg: float = 20.0
    fovy_deg: float = Field(45.0, gt=0.0, lt=180.0)


class SkillEnvSection(ConfigSection):
    """The HLC environment (spec §5.7): 50-step episodes from the default state, termination 0.05 m."""

    num_envs: int = Field(1024, ge=1)
    engine: Literal["auto", "cpu", "gpu"] = "auto"
    threads: int | None = Field(None, ge=1, description="cpu engine threads (null: all CPUs)")
    episode_length: int = Field(50, ge=2, description="LLC steps")
    state_init: Literal["default", "random", "start", "hybrid"] = "default"
    hybrid_init_prob: float = Field(0.5, ge=0.0, le=1.0)
    enable_early_termination: bool = True
    termination_height: float = Field(0.05, ge=0.0, description="m; the head uses max(0.15, value)")
    recovery_episode_prob: float = Field(0.2, ge=0.0, le=1.0)
    recovery_steps: int = Field(300, ge=0)
    fall_init_prob: float = Field(0.0, ge=0.0, le=1.0)
    camera: CameraSection = CameraSection()


class LlcSection(ConfigSection):
    """The frozen low-level controller."""

    path: str | None = Field(None, description="LLC checkpoint (null: the CLI resolves one)")
    steps: int = Field(5, ge=1, description="LLC steps per HLC decision (llc_steps)")


class SkillNetworkSection(ConfigSection):
    """HLC networks (spec §5.2)."""

    obs_dim: int = Field(223, ge=1)
    action_dim: int = Field(64, ge=2)
    actor_hidden: Widths = (1024, 512)
    critic_hidden: Widths = (1024, 512)
    log_std: float = Field(-2.3, description="fixed, not learned")
    object_obs: bool = Field(
        False,
        description="with a scene: the HLC also observes its moving objects (root-relative pose, 9 per body; "
        "obs_dim grows to 223 + 9·B); the reference did not (spec §6)",
    )


class SkillPPOSection(ConfigSection):
    """PPO settings (spec §5.8)."""

    horizon_length: int = Field(4, ge=1, description="HLC steps per env per epoch")
    minibatch_size: int = Field(2048, ge=1, description="capped to horizon_length x num_envs")
    mini_epochs: int = Field(6, ge=1)
    learning_rate: float = Field(2e-5, gt=0.0)
    adam_eps: float = Field(1e-8, gt=0.0)
    gamma: float = Field(0.99, ge=0.0, le=1.0, description="per HLC step")
    tau: float = Field(0.95, ge=0.0, le=1.0)
    e_clip: float = Field(0.2, gt=0.0)
    critic_coef: float = Field(5.0, ge=0.0)
    bounds_loss_coef: float = Field(10.0, ge=0.0)
    entropy_coef: float = Field(0.0, ge=0.0)
    normalize_input: bool = True
    normalize_value: bool = True
    normalize_advantage: bool = True
    mixed_precision: bool = Field(False, description="PPO update under fp16 autocast (CUDA only)")
    grad_norm: float = Field(1.0, gt=0.0)
    truncate_grads: bool = False
    max_epochs: int = Field(500, ge=1)
    save_frequency: int = Field(50, ge=1)


class RewardSection(ConfigSection):
    """R = task_w·mean_t(clip_scale·cos(f_img, g_prompt)) + style_w·max_j (cos(â, e_j)+1)/2 (spec §5.1, §5.4)."""

    mode: Literal["render", "proxy"] = "render"
    render_every: Literal["llc_step", "decision"] = Field(
        "llc_step", description="score frames every LLC step (spec) or only the last LLC step of each decision"
    )
    clip_scale: float = 0.8
    task_reward_w: float = 0.5
    disc_reward_w: float = 0.0
    style_reward_w: float = 0.4
    style_reference_size: int = Field(128, ge=1)
    style_windows_per_clip: int = Field(3, ge=1)
    proxy: str | None = Field(None, description="proxy checkpoint for mode proxy")

    @model_validator(mode="after")
    def _no_disc(self) -> RewardSection:
        if self.disc_reward_w != 0.0:
            raise ValueError("disc_reward_w: must be 0 (the reference's plain discriminator is untrained, spec §9.9)")
        return self


class ClipSection(ConfigSection):
    """Mirror of ``anyskill_tui.core.reward.clip.ClipConfig`` (kept torch-free here)."""

    model: str = "ViT-B-32"
    pretrained: str | None = "laion2b_s34b_b79k"
    weights: str | None = None
    batch_size: int = Field(1024, ge=1)
    autocast: Literal["auto", "bf16", "fp16", "off"] = "auto"
    half_image_tower: bool = True
    raw_255_input: bool = False
    cache_dir: str | None = None


class PromptItem(ConfigSection):
    text: str = Field(min_length=1)
    weight: float = Field(1.0, ge=0.0)


class PromptSchedule(ConfigSection):
    """Each env draws a prompt by weight at start and every randint(min, max) LLC steps (spec §5.3)."""

    resample_min: int = Field(32, ge=1)
    resample_max: int = Field(96, ge=2, description="exclusive")

    @model_validator(mode="after")
    def _order(self) -> PromptSchedule:
        if self.resample_min >= self.resample_max:
            raise ValueError("resample_min: must be smaller than resample_max")
        return self


class EvalSection(ConfigSection):
    """The end-of-training evaluation: a deterministic rollout of ``num_envs`` envs for one episode."""

    num_envs: int = Field(16, ge=1)
    scorer: Literal["auto", "render", "proxy"] = Field(
        "auto", description="auto: rendered CLIP when the reward renders, the proxy in proxy mode"
    )


class SkillConfig(ConfigSection):
    """The whole skill training config."""

    seed: int = 0
    prompts: tuple[PromptItem, ...] = ()
    prompt_schedule: PromptSchedule = PromptSchedule()
    motion_file: str | None = Field(None, description="style references (null: the shipped starter set)")
    env: SkillEnvSection = SkillEnvSection()
    llc: LlcSection = LlcSection()
    network: SkillNetworkSection = SkillNetworkSection()
    ppo: SkillPPOSection = SkillPPOSection()
    reward: RewardSection = RewardSection()
    clip: ClipSection = ClipSection()
    eval: EvalSection = EvalSection()
    scene: SceneConfig | None = Field(
        None, description="objects beside the character: a configs/scenes name, a scene YAML, or the resolved scene"
    )

    @field_validator("scene", mode="before")
    @classmethod
    def _resolve_scene(cls, v: Any) -> Any:
        """A name or path becomes the scene's content, so a run's stored config carries the scene itself."""
        if isinstance(v, str | Path):
            from anyskill_tui.core.sim.scene import load_scene

            return load_scene(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> SkillConfig:
        if self.prompts and sum(p.weight for p in self.prompts) <= 0:
            raise ValueError("prompts: at least one prompt needs a weight > 0")
        want = BASE_OBS_DIM + (self.scene.object_obs_dim if self.uses_object_obs else 0)
        if self.network.obs_dim != want:
            if self.network.obs_dim != BASE_OBS_DIM:
                raise ValueError(
                    f"network: obs_dim is {self.network.obs_dim}, the env gives {want} (223 + 9 per moving "
                    "object with object_obs); leave obs_dim at 223"
                )
            return self.model_copy(update={"network": self.network.model_copy(update={"obs_dim": want})})
        return self

    @property
    def uses_object_obs(self) -> bool:
        """The HLC observes the scene's objects (``network.object_obs`` with a scene)."""
        return self.network.object_obs and self.scene is not None

    @property
    def batch_size(self) -> int:
        """HLC transitions per epoch: ``horizon_length × num_envs``."""
        return self.ppo.horizon_length * self.env.num_envs

    @property
    def minibatch_size(self) -> int:
        return min(self.ppo.minibatch_size, self.batch_size)

    @property
    def llc_steps_per_epoch(self) -> int:
        return self.batch_size * self.llc.steps


def check_scene_reward(cfg: SkillConfig, reward_option: str = "reward.mode proxy") -> None:
    """A UserError when a scene would be scored by the proxy: its MLP sees the character's 15 body positions only,
    never the objects (spec §5.6), so no prompt about an object could be rewarded. ``reward_option`` names the
    setting as the user gave it (``--reward proxy`` on the command line)."""
    if cfg.scene is None:
        return
    if cfg.reward.mode == "proxy":
        raise UserError(
            f"{reward_option} cannot train with scene {cfg.scene.name!r}: the proxy sees only the character's "
            "body positions, not the objects; use --reward render (the default), or drop --scene"
        )
    if cfg.eval.scorer == "proxy":
        raise UserError(
            f"eval.scorer proxy cannot score scene {cfg.scene.name!r} (the proxy does not see objects); "
            "set eval.scorer to render or auto"
        )


def default_skill_config_path() -> Path:
    return configs_dir() / "skill.yaml"


def default_motion_file() -> Path:
    """The shipped starter motion set (style references when ``motion_file`` is null)."""
    return configs_dir() / "motions" / "starter.yaml"


#: keys a run's stored config may carry beside the SkillConfig sections (the runner's and the CLI's)
_RUN_KEYS = ("trainer", "workspace", "skill_ids", "clip_weights_arg", "nproc")


def skill_config_from_dict(
    data: Mapping[str, Any] | None, source: str = "<config>", overrides: Mapping[str, Any] | None = None
) -> SkillConfig:
    """Validate plain data (a YAML mapping or a run's stored config) into a :class:`SkillConfig`."""
    return validate_config(SkillConfig, data, source, overrides, drop_keys=_RUN_KEYS)


def load_skill_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> SkillConfig:
    """Read a skill config YAML (default: the shipped ``configs/skill.yaml``); missing keys take spec defaults."""
    path = Path(path) if path is not None else default_skill_config_path()
    return skill_config_from_dict(read_yaml_config(path), source=str(path), overrides=overrides)


# ------------------------------------------------------------------------------------------------ proxy


class ProxyDataSection(ConfigSection):
    """Which states the proxy learns from (rendered with the skill camera, CLIP-encoded)."""

    motion_states: int = Field(20_000, ge=0, description="MotionLib states at random clip times")
    rollout_states: int = Field(20_000, ge=0, description="LLC rollout states with random latents")
    capture_every: int = Field(5, ge=1, description="LLC steps between captured rollout states")
    latent_steps_min: int = Field(10, ge=1, description="rollout latents are redrawn every randint(min, max) steps")
    latent_steps_max: int = Field(150, ge=2)
    holdout: float = Field(0.15, gt=0.0, lt=0.9, description="share of states held out for the report")


class ProxyTrainSection(ConfigSection):
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    save_frequency: int = Field(50, ge=1)


class ProxyConfig(ConfigSection):
    """``configs/proxy.yaml``: data collection, the MLP and its fit (anyskill_tui/core/reward/proxy_train.py)."""

    seed: int = 0
    engine: Literal["auto", "cpu", "gpu"] = "auto"
    threads: int | None = Field(None, ge=1)
    num_envs: int = Field(256, ge=1, description="worlds rendered per batch")
    motion_file: str | None = None
    llc_path: str | None = Field(None, description="LLC for rollout states (null: motion states only)")
    camera: CameraSection = CameraSection()
    clip: ClipSection = ClipSection()
    hidden: Widths = (512, 512)
    data: ProxyDataSection = ProxyDataSection()
    train: ProxyTrainSection = ProxyTrainSection()

    @model_validator(mode="after")
    def _check(self) -> ProxyConfig:
        if self.data.latent_steps_min >= self.data.latent_steps_max:
            raise ValueError("data.latent_steps_min: must be smaller than data.latent_steps_max")
        if self.data.motion_states + self.data.rollout_states < 10:
            raise ValueError("data.motion_states: need at least 10 states in all (motion + rollout)")
        return self


def default_proxy_config_path() -> Path:
    return configs_dir() / "proxy.yaml"


def proxy_config_from_dict(
    data: Mapping[str, Any] | None, source: str = "<config>", overrides: Mapping[str, Any] | None = None
) -> ProxyConfig:
    return validate_config(ProxyConfig, data, source, overrides, drop_keys=_RUN_KEYS)


def load_proxy_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> ProxyConfig:
    """Read a proxy config YAML (default: the shipped ``configs/proxy.yaml``)."""
    path = Path(path) if path is not None else default_proxy_config_path()
    return proxy_config_from_dict(read_yaml_config(path), source=str(path), overrides=overrides)
