"""Roll out a checkpoint in the simulator: a skill (HLC + LLC) or a bare LLC driven by clip or random latents.

What a replay is (the choices, in one place):

- **One continuous episode per env.** Every env starts from the default state (root (0, 0, 0.89), identity,
  zero joints and velocities) and runs `num_frames - 1` LLC steps (30 Hz) with no resets: early termination is
  off and the time limit is past the end, so a fall stays on screen (and in an exported motion).
- **Frames.** Frame i is the state after i LLC steps (frame 0 is the start state): `num_frames` =
  round(seconds * 30), one frame per LLC step, 30 fps.
- **Skill checkpoints** (spec §5.1): every `llc_steps` (5) LLC steps the HLC decides a = μ(obs) and the LLC
  latent is z = normalize(clamp(a, -1, 1)); in between the frozen LLC acts deterministically, μ_LLC(s, z).
  Env 0 always plays the deterministic HLC (the skill as trained, and what `--export-motion` writes). With
  `envs` > 1, envs 1.. sample the HLC as in training, a = μ + σ·ε (σ = exp(log_std) = 0.1), ε drawn from a
  generator seeded by (seed, env): they show the skill's spread, and `seed` picks the samples.
- **LLC checkpoints**: the latent comes from motion data or is random:
  - clip latents (default): env k encodes a 60-step window of clip k mod C of the LLC's motion set (the
    starter set when the checkpoint names none) with the LLC's encoder (`MotionLib.windows_per_clip`, window
    end drawn from the (seed, env) generator); `clip` names one clip for every env (each env its own window).
    The latent is held for the whole replay.
  - `random_latent`: a random unit latent per env, resampled every `latent_hold_s` seconds (2 s by default,
    about CALM's latent-resampling interval during LLC training), drawn from the (seed, env) generator.
- **Scenes.** A skill trained with a scene (``anyskill train --scene door``) replays in that scene: its stored
  config holds the resolved scene, rebuilt here with the env (objects at their start poses at frame 0, in
  every rendered frame and in `RolloutFrame.qpos` after the character's 35 numbers).
- **Determinism.** Everything random comes from per-env generators seeded by (seed, env index), so env k's
  behaviour does not depend on how many envs run, and the same seed gives the same frames (the cpu engine is
  deterministic; the gpu engine is up to float rounding).

This module imports torch and the simulator; keep it out of module-level imports of the CLI and the TUI.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.sim.backend import CameraSpec
from anyskill_tui.errors import UserError

__all__ = [
    "FPS",
    "LLC_FORMAT",
    "SKILL_FORMAT",
    "ReplayOptions",
    "ReplayPolicy",
    "RolloutFrame",
    "Rollout",
    "load_policy",
    "checkpoint_format",
    "starter_motion_file",
    "replay_camera",
    "env_generator",
    "check_engine",
]

#: frames per second of a replay: one frame per LLC step
FPS = 1.0 / T.CONTROL_DT
LLC_FORMAT = "anyskill.llc/1"
SKILL_FORMAT = "anyskill.skill/1"
#: random LLC latents are resampled this often by default (seconds)
DEFAULT_LATENT_HOLD_S = 2.0


def replay_camera(
    size: int | tuple[int, int] = 320,
    distance: float | None = None,
    azimuth: float | None = None,
    height: float | None = None,
) -> CameraSpec:
    """The tracking camera of a replay: `size` px square (or (width, height)); distance (m), azimuth (deg)
    and camera height (m) default to the training camera's (`CameraSpec`: 3 m, 20°, 1.2 m)."""
    w, h = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if w < 8 or h < 8:
        raise UserError(f"frame size {w}x{h} is too small: use at least 8 pixels (e.g. --size 320)")
    cam = CameraSpec(width=w, height=h)
    changes: dict[str, Any] = {}
    if distance is not None:
        if not distance > 0:
            raise UserError(f"--camera-distance must be > 0 m, got {distance}")
        changes["distance"] = float(distance)
    if azimuth is not None:
        changes["azimuth_deg"] = float(azimuth)
    if height is not None:
        changes["elevation_height"] = float(height)
    return replace(cam, **changes)


@dataclass
class ReplayOptions:
    """How to roll out (see the module docstring)."""

    seconds: float = 4.0
    envs: int = 1
    seed: int = 0
    #: "cpu" (default: deterministic, the viewer's engine) or "gpu"
    engine: str = "cpu"
    #: LLC only: a clip name of the LLC's motion set or the starter set, or a .npy path
    clip: str | None = None
    #: LLC only: random unit latents instead of clip latents
    random_latent: bool = False
    #: LLC random latents: seconds between resamples (<= 0: hold the first one)
    latent_hold_s: float = DEFAULT_LATENT_HOLD_S
    #: skill only: the caption (must be one of the checkpoint's prompts when it lists them)
    prompt: str | None = None
    camera: CameraSpec = field(default_factory=replay_camera)
    #: cpu engine threads (None: min(envs, CPUs))
    threads: int | None = None

    @property
    def num_frames(self) -> int:
        return max(1, int(round(float(self.seconds) * FPS)))

    def validate(self) -> None:
        if not (isinstance(self.seconds, int | float) and math.isfinite(self.seconds) and self.seconds > 0):
            raise UserError(f"--seconds must be a number > 0, got {self.seconds}")
        if self.seconds > 3600:
            raise UserError(f"--seconds {self.seconds} is more than an hour; replay at most 3600 s")
        if int(self.envs) < 1 or int(self.envs) > 256:
            raise UserError(f"--envs must be between 1 and 256, got {self.envs}")
        if self.engine not in ("cpu", "gpu"):
            raise UserError(f"--engine must be cpu or gpu, got {self.engine!r}")
        if self.clip is not None and self.random_latent:
            raise UserError("--clip and --random-latent exclude each other: pick one latent source")


def check_engine(engine: str) -> str:
    """The torch device of `engine` ("cpu" or "gpu"); a UserError when the gpu engine cannot run here."""
    if engine == "cpu":
        return "cpu"
    if engine != "gpu":
        raise UserError(f"--engine must be cpu or gpu, got {engine!r}")
    import importlib.util

    if importlib.util.find_spec("mujoco_warp") is None or importlib.util.find_spec("warp") is None:
        raise UserError("--engine gpu needs mujoco_warp and warp-lang (pip install 'anyskill[gpu]'); use --engine cpu")
    if not torch.cuda.is_available():
        raise UserError("--engine gpu needs a CUDA GPU and none is visible; use --engine cpu")
    return "cuda"


def env_generator(seed: int, env: int, stream: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """The generator of env `env` for a replay `seed` (independent of the number of envs)."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(env) * 7_919 + int(stream) * 104_729) % (2**63 - 1))
    return g


def starter_motion_file() -> Path:
    """The shipped starter motion set (configs/motions/starter.yaml)."""
    from anyskill_tui.paths import configs_dir

    return configs_dir() / "motions" / "starter.yaml"


def checkpoint_format(state: Any, source: str | os.PathLike) -> str:
    """`anyskill.llc/1` or `anyskill.skill/1` of a loaded checkpoint dict; a UserError naming the file otherwise."""
    fmt = state.get("format") if isinstance(state, dict) else None
    if fmt not in (LLC_FORMAT, SKILL_FORMAT):
        found = fmt if isinstance(state, dict) else type(state).__name__
        raise UserError(
            f"{source} is not an anyskill checkpoint (format {found!r}); replay takes a skill checkpoint "
            f"({SKILL_FORMAT}, from `anyskill train`) or an LLC checkpoint ({LLC_FORMAT})"
        )
    return fmt


def _motion_file_hint(state: dict[str, Any]) -> Path | None:
    """The motion set an LLC checkpoint names (if any, and if it still exists): `motions` (what `llc_train`
    stores, also in `run_config`) or `motion_file`, at the top level or under `extra`, `run_config`, `config`."""
    cands: list[Any] = [state.get("motions"), state.get("motion_file")]
    for key in ("extra", "run_config", "config"):
        sub = state.get(key)
        if isinstance(sub, dict):
            cands += [sub.get("motions"), sub.get("motion_file")]
            env = sub.get("env")
            if isinstance(env, dict):
                cands.append(env.get("motion_file"))
    for c in cands:
        if isinstance(c, str | os.PathLike) and str(c) and Path(c).expanduser().exists():
            return Path(c).expanduser()
    return None


@dataclass
class ReplayPolicy:
    """A loaded checkpoint: the LLC, and for skills the HLC with its prompts."""

    kind: str  # "skill" | "llc"
    path: Path
    llc: Any  # LlcPolicy
    hlc: Any | None = None  # SkillPolicy
    prompts: list[str] = field(default_factory=list)
    llc_steps: int = 5
    motion_file: Path | None = None

    @property
    def scene(self) -> dict[str, Any] | None:
        """The scene a skill was trained in (its stored config's resolved ``scene``), else None."""
        if self.kind != "skill" or self.hlc is None:
            return None
        return (getattr(self.hlc, "config", None) or {}).get("scene")

    @property
    def label(self) -> str:
        if self.kind == "skill":
            return " / ".join(self.prompts) if self.prompts else f"skill {self.path.stem}"
        return f"LLC {self.path.stem}"


def load_policy(path: str | os.PathLike, device: str | torch.device = "cpu") -> ReplayPolicy:
    """Load a skill or LLC checkpoint (detected by its `format`); UserError for a missing, unreadable or foreign
    file."""
    from anyskill_tui.core.jobs.checkpoints import load_checkpoint

    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a folder: give a checkpoint file (.pt), a skill or a run")
    state = load_checkpoint(path, map_location="cpu")
    fmt = checkpoint_format(state, path)
    if fmt == LLC_FORMAT:
        from anyskill_tui.core.learn.llc_policy import LlcPolicy

        llc = LlcPolicy.from_state(state, source=str(path), device=device)
        return ReplayPolicy("llc", path, llc, motion_file=_motion_file_hint(state))
    from anyskill_tui.core.learn.skill_policy import SkillPolicy, load_llc_of

    hlc = SkillPolicy.from_state(state, source=str(path), device=device)
    llc = load_llc_of(state, source=str(path), device=device)
    return ReplayPolicy("skill", path, llc, hlc, list(hlc.prompts), max(1, int(hlc.llc_steps)))


@dataclass
class RolloutFrame:
    """The state after `index` LLC steps (time = index / 30 s), on the CPU.

    body_pos (N, 15, 3) and body_rot (N, 15, 4) xyzw are float64 world states of every env; images (N, H, W, 3)
    uint8 when the rollout renders, else None; z (N, 64) the latents in use for the next step.
    """

    index: int
    time: float
    body_pos: torch.Tensor
    body_rot: torch.Tensor
    qpos: np.ndarray
    z: torch.Tensor
    images: np.ndarray | None = None


class Rollout:
    """A replay of `policy` under `opts`: `frames()` steps the envs lazily (see the module docstring).

    Build it, iterate `frames(render=True)` once (a new iteration restarts from the start state), then
    `close()` (or use it as a context manager).
    """

    def __init__(self, policy: ReplayPolicy, opts: ReplayOptions) -> None:
        opts.validate()
        self.policy = policy
        self.opts = opts
        self.num_envs = int(opts.envs)
        self.num_frames = opts.num_frames
        self.fps = FPS
        if policy.kind == "llc" and opts.prompt is not None:
            raise UserError("--prompt applies to skill checkpoints; for an LLC use --clip NAME or --random-latent")
        if policy.kind == "skill" and (opts.clip is not None or opts.random_latent):
            raise UserError("--clip and --random-latent apply to LLC checkpoints; a skill's HLC picks its latents")
        self.labels = self._labels()
        self._clip_latents: torch.Tensor | None = None
        if policy.kind == "llc" and not opts.random_latent:
            self._clip_latents = self._encode_clip_latents()
        self._env = None

    # ----------------------------------------------------------------------------------------- latents

    def _labels(self) -> list[str]:
        p, o = self.policy, self.opts
        if p.kind == "skill":
            label = p.label
            if o.prompt is not None:
                want = " ".join(o.prompt.split())
                if p.prompts and want.lower() not in (q.lower() for q in p.prompts):
                    raise UserError(
                        f"--prompt {o.prompt!r} is not a prompt of {p.path.name} (trained for: "
                        f"{', '.join(repr(q) for q in p.prompts)})"
                    )
                label = want
            return [label] * self.num_envs
        if o.random_latent:
            return ["random latent"] * self.num_envs
        return []  # filled by _encode_clip_latents

    def _motion_lib(self, clip: str | None):
        """(MotionLib, clip ids per env) for the clip latents."""
        from anyskill_tui.core.motion.clip import ClipError, read_clip
        from anyskill_tui.core.motion.dataset import DatasetError, MotionDataset, load_dataset
        from anyskill_tui.core.motion.motion_lib import MotionLib

        sets = [p for p in (self.policy.motion_file, starter_motion_file()) if p is not None]
        try:
            if clip is not None and clip.lower().endswith(".npy"):
                path = Path(clip).expanduser()
                if not path.is_file():
                    raise UserError(f"--clip {clip}: no such clip file")
                ds = MotionDataset.from_clips([read_clip(path)])
                return MotionLib(ds), [0] * self.num_envs
            names_seen: list[str] = []
            for s in sets:
                ds = load_dataset(s)
                names = [c.name for c in ds.clips]
                if clip is None:
                    return MotionLib(ds), [k % len(names) for k in range(self.num_envs)]
                lowered = [nm.lower() for nm in names]
                if clip.lower() in lowered:
                    cid = lowered.index(clip.lower())
                    return MotionLib(MotionDataset.from_clips([ds.clips[cid]])), [0] * self.num_envs
                names_seen += [nm for nm in names if nm not in names_seen]
        except (ClipError, DatasetError) as exc:
            raise UserError(" ".join(str(exc).split())) from None
        where = " or ".join(str(s) for s in sets)
        raise UserError(f"--clip {clip}: no clip of that name in {where} (clips: {', '.join(names_seen)})")

    @torch.no_grad()
    def _encode_clip_latents(self) -> torch.Tensor:
        llc = self.policy.llc
        lib, ids = self._motion_lib(self.opts.clip)
        steps = int(getattr(llc, "num_enc_steps", 60))
        windows = []
        for k, cid in enumerate(ids):
            g = env_generator(self.opts.seed, k, stream=1)
            windows.append(lib.windows_per_clip(1, cid, steps=steps, generator=g))
        z = llc.encode(torch.cat(windows).float())
        self.labels = [lib.clip_names[c] for c in ids]
        return torch.nn.functional.normalize(z.float(), dim=-1)

    def _random_latents(self, gens: list[torch.Generator], dim: int) -> torch.Tensor:
        z = torch.stack([torch.randn(dim, generator=g) for g in gens])
        return torch.nn.functional.normalize(z, dim=-1)

    # ----------------------------------------------------------------------------------------- env

    def _make_env(self):
        from anyskill_tui.core.sim.env import EnvConfig, HumanoidEnv

        o = self.opts
        threads = o.threads if o.threads is not None else max(1, min(self.num_envs, os.cpu_count() or 1))
        cfg = EnvConfig(
            num_envs=self.num_envs,
            engine=o.engine,
            device="auto",
            threads=threads,
            seed=int(o.seed),
            state_init="default",
            enable_early_termination=False,
            episode_length=self.num_frames + 10,
            recovery_episode_prob=0.0,
            recovery_steps=0,
            fall_init_prob=0.0,
            num_enc_obs_steps=10,
            camera=o.camera,
            scene=self.policy.scene,
        )
        try:
            return HumanoidEnv(cfg)
        except ImportError as exc:
            raise UserError(f"--engine {o.engine}: the engine cannot start ({exc}); use --engine cpu") from None

    @property
    def env(self):
        if self._env is None:
            self._env = self._make_env()
            if self.policy.kind == "skill" and self.policy.hlc is not None:
                self.policy.hlc.to(self._env.device)
            self.policy.llc.to(self._env.device)
        return self._env

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    def __enter__(self) -> Rollout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------- stepping

    @torch.no_grad()
    def frames(self, render: bool = True, camera: CameraSpec | None = None) -> Iterator[RolloutFrame]:
        """Yield `num_frames` frames (frame i: the state after i LLC steps); render the envs' cameras when
        `render`. Each iteration restarts from the start state with fresh generators."""
        env = self.env
        p, o = self.policy, self.opts
        n = self.num_envs
        dev = env.device
        cam = camera or o.camera
        env.reset(mode="default")
        obs = env.obs
        latent_dim = int(getattr(p.llc, "latent_dim", 64))
        gens = [env_generator(o.seed, k, stream=2) for k in range(n)]
        hold = max(1, int(round(o.latent_hold_s * FPS))) if o.latent_hold_s > 0 else None
        z = torch.zeros((n, latent_dim), device=dev)
        if self._clip_latents is not None:
            z = self._clip_latents.to(dev)
        for i in range(self.num_frames):
            # the latent for the step i -> i + 1 (decided on the state after i steps)
            if p.kind == "skill":
                if i % p.llc_steps == 0:
                    z = self._hlc_latents(obs, gens)
            elif o.random_latent and (i == 0 or (hold is not None and i % hold == 0)):
                z = self._random_latents(gens, latent_dim).to(dev)
            images = None
            if render:
                rgb = env.render(cam)  # (N, 3, H, W) in [0, 1]
                images = (rgb.permute(0, 2, 3, 1).mul(255.0).round().clamp(0, 255)).to(torch.uint8).cpu().numpy()
            yield RolloutFrame(
                index=i,
                time=i / FPS,
                body_pos=env.body_pos.detach().to("cpu", torch.float64).clone(),
                body_rot=env.body_rot.detach().to("cpu", torch.float64).clone(),
                qpos=env.backend.qpos.detach().cpu().numpy().astype(np.float64).copy(),
                z=z.detach().cpu().clone(),
                images=images,
            )
            if i == self.num_frames - 1:
                break
            with env.serial_torch():  # small batches: torch's thread pool only fights MuJoCo's threads
                actions = p.llc.act(obs, z)
            obs = env.step(actions).obs

    def _hlc_latents(self, obs: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        from anyskill_tui.core.learn.skill_policy import latent_from_action
        from anyskill_tui.core.learn.skill_train import hlc_observation, uses_object_obs

        hlc = self.policy.hlc
        with self.env.serial_torch():
            a = hlc.act(hlc_observation(self.env, obs, uses_object_obs(hlc.config)), deterministic=True)
        if a.shape[0] > 1:  # envs 1..: a = mu + sigma * eps, as in training (env 0 stays deterministic)
            std = torch.exp(hlc.log_std.float()).to(a.device)
            eps = torch.stack([torch.randn(a.shape[1], generator=g) for g in gens[1:]]).to(a.device)
            a = torch.cat((a[:1], a[1:] + std * eps))
        return latent_from_action(a)
