"""`HumanoidEnv`: N humanoids on a `SimBackend`, with observations, AMP history, resets and termination.

Everything is batched torch on the backend's device, shapes (num_envs, ...); there is no Python loop over envs.

One control (LLC) step, `step(actions)`:
1. actions (N, 28) are clamped to [-1, 1] and mapped to PD targets offset + scale * a (spec §1.3);
2. the backend holds the targets for 4 physics substeps (1/120 s each: a 30 Hz control step);
3. the 223-d policy observation and this step's 125-d AMP observation are computed from the body state
   (`motion.features`); the AMP observation is pushed into a rolling history (newest first);
4. progress counters advance, recovery windows count down, and the done flags are computed:
   - `terminated` (a fall, spec §1.4): with early termination on and progress > 1, some non-foot body touches
     something (normal force > 0.1 N) and some non-foot body is below its termination height;
   - `truncated` (time limit): progress >= episode_length - 1;
   - during a recovery window (`recovery_counter > 0`) neither fires;
   - an env whose physics diverged in the step (`unstable`: non-finite observations, or the cpu engine's
     MuJoCo reset a diverging world) is `terminated` whatever its window, so that it gets reset.

Resets are explicit (no auto-reset inside `step`): done envs keep their final state and observation until the
caller runs `reset_done()`, which resets exactly the envs flagged by the last step and returns the new
observations. This is what both learners need: the LLC (CALM style) calls `reset_done()` before computing the
next actions, and the HLC steps its 5 LLC steps without resetting and calls `reset_done()` at the start of the
next HLC step (an env may then have run past its done step; its flags stay set, sticky, until it is reset).

`reset_done()` applies the getup logic (spec §4.6): an env that *fell* becomes, with probability
`recovery_episode_prob`, a recovery episode (not moved; progress reset; `recovery_steps` steps without
termination or time limit); otherwise, like every other reset, with probability `fall_init_prob` it restarts
from a random state of the fall pool (also with a recovery window), else per `state_init`.

State inits: `default` (root (0, 0, 0.89), identity, zero DoFs and velocities), `random` (a MotionLib clip at a
random time), `start` (a clip at time 0), `hybrid` (`random` with probability `hybrid_init_prob`, else
`default`), `fall` (the fall pool). Motion starts back-fill the AMP history with the clip's true history
(`MotionLib.demo_windows`, newest slot replaced by the simulated observation); default and fall starts copy the
current AMP observation into every slot.

The fall pool (spec §4.6): every env gets a random root orientation (normalised 4-d Gaussian) at the default
height with zero DoFs; fixed random actions U(-0.5, 0.5) are held for 2.5 s (75 control steps), all envs at once
on the backend; the resulting poses, with zero velocity, are the pool (one per env). It is built at construction
when `fall_init_prob > 0` (before the first reset), else on first use (saving and restoring the live state).

Scenes (`cfg.scene`, `core.sim.scene`): objects beside the character, in both engines' models after the character
(its qpos[:35] / qvel[:34], bodies 1..15, observations and AMP features are unchanged). Every episode start puts
the objects back at their start poses with zero velocity (`_reset_objects`; a recovery episode moves nothing);
the fall test counts only contacts with the floor or the character itself (`fall_check`). `object_pos`,
`object_rot` and `object_qpos` expose the objects' state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.device_cache import index_tensor
from anyskill_tui.core.sim.backend import CameraSpec, SimBackend

__all__ = ["EnvConfig", "HumanoidEnv", "StepResult", "body_features", "load_env_config", "STATE_INITS"]

STATE_INITS = ("default", "random", "start", "hybrid", "fall")
_MOTION_INITS = ("random", "start", "hybrid")
_NQ_CHAR = 7 + T.NUM_DOFS
_NV_CHAR = 6 + T.NUM_DOFS


@dataclass
class EnvConfig:
    """Env settings; `configs/env.yaml` holds the defaults (`load_env_config`)."""

    num_envs: int = 64
    #: "auto" (gpu when CUDA and mujoco_warp are available, else cpu), "cpu" or "gpu"
    engine: str = "auto"
    #: torch device of the env tensors; "auto": cuda for the gpu engine, cpu for the cpu engine
    device: str = "auto"
    #: threads of the cpu engine (None: all CPUs)
    threads: int | None = None
    seed: int = 0
    #: float dtype of observations: "float32" or "float64" (float64 only on the cpu engine)
    dtype: str = "float32"
    #: motion dataset (motions.yaml or one .npy) for motion state inits, when no MotionLib is passed in
    motion_file: str | None = None
    state_init: str = "hybrid"
    hybrid_init_prob: float = 0.5
    #: added to the root height of motion starts (m)
    motion_height_offset: float = 0.0
    enable_early_termination: bool = True
    #: every body's termination height (m); the head uses max(0.15, value)
    termination_height: float = 0.15
    #: episode length in LLC steps
    episode_length: int = 300
    recovery_episode_prob: float = 0.2
    recovery_steps: int = 60
    fall_init_prob: float = 0.1
    #: control steps of random actions that make the fall pool (2.5 s at 30 Hz)
    fall_pool_steps: int = 75
    num_amp_obs_steps: int = 10
    num_enc_obs_steps: int = 60
    #: motion starts of the sync-free reset (`reset_done_masked`, the gpu path) are picked from a pool of this many
    #: pre-drawn motion states (0: twice num_envs), redrawn every `motion_pool_refresh` calls (1: every call).
    #: Twice the envs every 16 steps computes as many states per step as num_envs every 8 with the same chance of
    #: two restarts sharing a start, and issues the refresh's few hundred tensor ops half as often.
    motion_pool_size: int = 0
    motion_pool_refresh: int = 16
    camera: CameraSpec = field(default_factory=CameraSpec)
    #: objects beside the character (`core.sim.scene`): a shipped scene's name, a scene YAML path, a resolved
    #: scene mapping or `SceneConfig`; None: the character alone
    scene: Any = None

    @property
    def history_length(self) -> int:
        return max(self.num_amp_obs_steps, self.num_enc_obs_steps)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EnvConfig:
        """Build from a mapping (e.g. YAML); unknown keys raise ValueError naming them."""
        data = dict(data or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown env config keys: {', '.join(unknown)} (known: {', '.join(sorted(names))})")
        cam = data.pop("camera", None)
        if isinstance(cam, dict):
            cnames = {f.name for f in dataclasses.fields(CameraSpec)}
            bad = sorted(set(cam) - cnames)
            if bad:
                raise ValueError(f"unknown camera keys: {', '.join(bad)} (known: {', '.join(sorted(cnames))})")
            data["camera"] = CameraSpec(**cam)
        elif cam is not None:
            data["camera"] = cam
        cfg = cls(**data)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> EnvConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {self.num_envs}")
        if self.engine not in ("auto", "cpu", "gpu"):
            raise ValueError(f"engine must be auto, cpu or gpu, got {self.engine!r}")
        if self.state_init not in STATE_INITS:
            raise ValueError(f"state_init must be one of {', '.join(STATE_INITS)}, got {self.state_init!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        for name in ("hybrid_init_prob", "recovery_episode_prob", "fall_init_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if self.episode_length < 2:
            raise ValueError(f"episode_length must be >= 2, got {self.episode_length}")
        if self.motion_pool_size < 0 or self.motion_pool_refresh < 1:
            raise ValueError(
                f"motion_pool_size must be >= 0 and motion_pool_refresh >= 1, got {self.motion_pool_size} and "
                f"{self.motion_pool_refresh}"
            )


def load_env_config(path: str | Path | None = None, **overrides: Any) -> EnvConfig:
    """Read an env YAML (default: `configs/env.yaml`; a top-level `env:` key is accepted) plus overrides."""
    import yaml

    from anyskill_tui.paths import configs_dir

    p = Path(path) if path is not None else configs_dir() / "env.yaml"
    data: dict[str, Any] = {}
    if p.is_file():
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{p}: not valid YAML: {err}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{p}: expected a mapping of env settings")
        data = loaded.get("env", loaded)
    elif path is not None:
        raise FileNotFoundError(f"env config {p} does not exist")
    data.update(overrides)
    try:
        return EnvConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{p}: {err}") from None


def _serial(method):
    """Run an env method with torch's intra-op threads at 1 when the env computes on the CPU (see `serial_torch`)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.serial_torch():
            return method(self, *args, **kwargs)

    return wrapper


@dataclass
class StepResult:
    """What `HumanoidEnv.step` returns (tensors on the env device). They are not modified by later resets, so
    a learner can keep the final observation and flags of a done env after `reset_done()`."""

    #: (N, 223) policy observations after the step
    obs: torch.Tensor
    #: (N,) placeholder zeros: rewards are the learners' business
    reward: torch.Tensor
    #: (N,) bool: fell (spec §1.4)
    terminated: torch.Tensor
    #: (N,) bool: reached the time limit (and did not fall)
    truncated: torch.Tensor

    @property
    def done(self) -> torch.Tensor:
        return self.terminated | self.truncated


class HumanoidEnv:
    """N humanoids: observations, AMP history, resets, falls and recovery (see the module docstring).

    Args:
        cfg: the settings.
        motion_lib: a `MotionLib` for motion state inits (else one is built from `cfg.motion_file` if set).
        backend: a ready `SimBackend` with `cfg.num_envs` worlds (else `make_backend` builds one).
    """

    def __init__(self, cfg: EnvConfig | None = None, motion_lib=None, backend: SimBackend | None = None) -> None:
        from anyskill_tui.core.sim import default_engine, make_backend

        self.cfg = cfg = cfg or EnvConfig()
        cfg.validate()
        self.dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        if backend is None:
            engine = default_engine() if cfg.engine == "auto" else cfg.engine
            device = cfg.device
            if device == "auto":
                device = "cuda" if engine == "gpu" else "cpu"
            backend = make_backend(
                engine,
                cfg.num_envs,
                device,
                threads=cfg.threads,
                dtype=self.dtype,
                render_size=_size(cfg.camera),
                scene=cfg.scene,
            )
            self.engine = engine
        else:
            self.engine = getattr(backend, "engine", None) or (
                "gpu" if type(backend).__name__ == "WarpBackend" else type(backend).__name__
            )
        if backend.num_envs != cfg.num_envs:
            raise ValueError(f"backend has {backend.num_envs} worlds, config asks for {cfg.num_envs}")
        self.backend = backend
        self.num_envs = n = cfg.num_envs
        self.device = dev = backend.device

        if motion_lib is None and cfg.motion_file:
            from anyskill_tui.core.motion.dataset import load_dataset
            from anyskill_tui.core.motion.motion_lib import MotionLib

            motion_lib = MotionLib(load_dataset(cfg.motion_file), device=dev, dtype=self.dtype)
        self.motion_lib = motion_lib
        if cfg.state_init in _MOTION_INITS and motion_lib is None:
            raise ValueError(
                f"state_init {cfg.state_init!r} needs motion data: pass a MotionLib or set motion_file "
                "(or use state_init 'default')"
            )

        self.generator = torch.Generator(device=dev)
        self.generator.manual_seed(int(cfg.seed))
        self._motion_gen = None
        if motion_lib is not None:
            self._motion_gen = torch.Generator(device=motion_lib.device)
            self._motion_gen.manual_seed(int(cfg.seed) + 1)

        offset, scale = T.pd_offset_scale()
        self._pd_offset = torch.as_tensor(offset, device=dev, dtype=self.dtype)
        self._pd_scale = torch.as_tensor(scale, device=dev, dtype=self.dtype)
        heights = torch.full((T.NUM_BODIES,), float(cfg.termination_height), device=dev, dtype=self.dtype)
        heights[T.BODY_INDEX["head"]] = max(0.15, float(cfg.termination_height))
        self.termination_heights = heights
        non_contact = torch.ones(T.NUM_BODIES, dtype=torch.bool, device=dev)
        non_contact[list(T.CONTACT_BODY_IDS)] = False
        self._non_contact = non_contact
        self._key_ids = torch.tensor(T.KEY_BODY_IDS, device=dev)

        from anyskill_tui.core.motion.features import AMP_OBS_DIM, POLICY_OBS_DIM

        self.obs_dim = POLICY_OBS_DIM
        self.amp_obs_dim = AMP_OBS_DIM
        self.history_length = h = cfg.history_length
        self._hist = torch.zeros((n, h, AMP_OBS_DIM), device=dev, dtype=self.dtype)
        self._head = 0
        self._obs = torch.zeros((n, POLICY_OBS_DIM), device=dev, dtype=self.dtype)
        self._amp = torch.zeros((n, AMP_OBS_DIM), device=dev, dtype=self.dtype)
        self.progress = torch.zeros(n, dtype=torch.long, device=dev)
        self.recovery_counter = torch.zeros(n, dtype=torch.long, device=dev)
        self.terminated = torch.zeros(n, dtype=torch.bool, device=dev)
        self.truncated = torch.zeros(n, dtype=torch.bool, device=dev)
        self._reward = torch.zeros(n, device=dev, dtype=self.dtype)
        #: (N,) bool: the physics of the env diverged in the last step (counted as a fall)
        self.unstable = torch.zeros(n, dtype=torch.bool, device=dev)
        self._all_ids = torch.arange(n, device=dev)
        self._init_scene()

        self.fall_pool_qpos: torch.Tensor | None = None
        #: the motion-start pool of `reset_done_masked`: clip ids (P,) and times (P,) of its states; the states
        #: themselves (qpos (P, 35), qvel (P, 34), AMP history (P, H, 125)) are computed from them
        self.motion_pool: tuple[torch.Tensor, torch.Tensor] | None = None
        self._motion_pool_states: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        #: `reset_done_masked` calls since the pool was drawn
        self.motion_pool_calls = 0
        if cfg.fall_init_prob > 0 or cfg.state_init == "fall":
            self.build_fall_pool(restore=False)
        self.reset()

    @contextlib.contextmanager
    def serial_torch(self) -> Iterator[None]:
        """Torch intra-op threads at 1 inside, when the env tensors are on the CPU.

        The env's tensors are small; torch's OpenMP workers gain nothing on them, and after a parallel op they
        spin on the cores MuJoCo's batch threads need, which halves the cpu engine's throughput (measured: 1.5k
        vs 4.5k control steps/s for 64 envs on 2 cores). Learners sharing the CPU with the cpu engine may want
        `torch.set_num_threads(1)` during rollouts for the same reason.
        """
        prev = torch.get_num_threads()
        if self.device.type != "cpu" or prev == 1:
            yield
            return
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(prev)

    # -------------------------------------------------------------------------------------------- state views

    @property
    def obs(self) -> torch.Tensor:
        """(N, 223) current policy observations."""
        return self._obs

    @property
    def amp_obs(self) -> torch.Tensor:
        """(N, 125) AMP observation of the current state (the newest history slot)."""
        return self._amp

    @property
    def done(self) -> torch.Tensor:
        return self.terminated | self.truncated

    def _body(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype=self.dtype)

    @property
    def body_pos(self) -> torch.Tensor:
        """(N, 15, 3) world body positions."""
        return self._body(self.backend.body_pos)

    @property
    def body_rot(self) -> torch.Tensor:
        """(N, 15, 4) world body rotations, xyzw."""
        return self._body(self.backend.body_rot)

    @property
    def body_vel(self) -> torch.Tensor:
        """(N, 15, 3) world linear velocities of the body origins."""
        return self._body(self.backend.body_vel)

    @property
    def body_angvel(self) -> torch.Tensor:
        """(N, 15, 3) world angular velocities."""
        return self._body(self.backend.body_angvel)

    @property
    def body_contact(self) -> torch.Tensor:
        """(N, 15) bool contact flags."""
        return self.backend.body_contact

    # -------------------------------------------------------------------------------------------- scene objects

    def _init_scene(self) -> None:
        """The scene (`cfg.scene`) and the objects' start state: the model's qpos0 after the character's 35."""
        from anyskill_tui.core.sim.scene import resolve_scene

        #: the resolved `scene.SceneConfig`, or None
        self.scene = resolve_scene(self.cfg.scene)
        nq = int(self.backend.qpos.shape[1])
        if self.scene is not None and nq != _NQ_CHAR + self.scene.nq:
            raise ValueError(
                f"the backend's model has {nq - _NQ_CHAR} object coordinates, scene {self.scene.name!r} has "
                f"{self.scene.nq}: build the backend with make_backend(..., scene=cfg.scene)"
            )
        self._object_qpos0: torch.Tensor | None = None
        if nq > _NQ_CHAR:
            mjm = getattr(self.backend, "mj_model", None) or getattr(self.backend, "model", None)
            q0 = torch.as_tensor(mjm.qpos0[_NQ_CHAR:], dtype=self.dtype)
            self._object_qpos0 = q0.to(self.device)

    def _reset_objects(self, qpos: torch.Tensor) -> torch.Tensor:
        """Write the scene objects' start poses into (n, nq) qpos rows (in place; velocities are the caller's
        zeros); no-op without a scene. Called by every episode start (`_base_state`, `reset_done_masked`)."""
        if self._object_qpos0 is not None:
            qpos[:, _NQ_CHAR:] = self._object_qpos0
        return qpos

    @property
    def object_pos(self) -> torch.Tensor:
        """(N, B, 3) world positions of the scene bodies (B = 0 without a scene), `scene.flat_bodies()` order."""
        return self._body(self.backend.object_pos)

    @property
    def object_rot(self) -> torch.Tensor:
        """(N, B, 4) world orientations (xyzw) of the scene bodies."""
        return self._body(self.backend.object_rot)

    @property
    def object_qpos(self) -> torch.Tensor:
        """(N, nq - 35) the scene joints' coordinates (free: position + wxyz quaternion; hinge/slide: 1 each)."""
        return self.backend.qpos[:, _NQ_CHAR:].to(self.dtype)

    @property
    def key_body_pos(self) -> torch.Tensor:
        """(N, 4, 3) world positions of right_hand, left_hand, right_foot, left_foot."""
        return self.body_pos[:, self._key_ids]

    @property
    def root_pos(self) -> torch.Tensor:
        return self.body_pos[:, 0]

    @property
    def root_rot(self) -> torch.Tensor:
        return self.body_rot[:, 0]

    @_serial
    def amp_obs_history(self, num_steps: int | None = None) -> torch.Tensor:
        """(N, num_steps * 125) the last `num_steps` AMP observations, newest first (default: num_amp_obs_steps)."""
        k = self.cfg.num_amp_obs_steps if num_steps is None else int(num_steps)
        if not 1 <= k <= self.history_length:
            raise ValueError(f"num_steps must be in [1, {self.history_length}], got {k}")
        idx = self._slots(k)
        return self._hist[:, idx].reshape(self.num_envs, k * self.amp_obs_dim)

    def _slots(self, k: int) -> torch.Tensor:
        """Ring-buffer slots of the k newest history entries, newest first (a cached index tensor: the rollout asks
        for it every step, and three tensor ops to build it cost more host time than the gather it feeds)."""
        h = self.history_length
        return index_tensor(tuple((self._head - j) % h for j in range(k)), self.device)

    # -------------------------------------------------------------------------------------------- stepping

    def _features(self, ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.backend
        if ids is None:
            pos, rot, vel, ang = b.body_pos, b.body_rot, b.body_vel, b.body_angvel
        else:
            pos, rot, vel, ang = b.body_pos[ids], b.body_rot[ids], b.body_vel[ids], b.body_angvel[ids]
        pos, rot, vel, ang = (x.to(dtype=self.dtype) for x in (pos, rot, vel, ang))
        return body_features(pos, rot, vel, ang)

    def pd_targets(self, actions: torch.Tensor) -> torch.Tensor:
        """(N, 28) PD targets (radians) of actions (N, 28), clamped to [-1, 1] first."""
        a = actions.to(device=self.device, dtype=self.dtype).clamp(-1.0, 1.0)
        return self._pd_offset + self._pd_scale * a

    @_serial
    def step(self, actions: torch.Tensor) -> StepResult:
        """One control step with actions (N, 28); see the module docstring. Done envs are not reset here."""
        if actions.shape != (self.num_envs, T.NUM_DOFS):
            raise ValueError(f"actions must be ({self.num_envs}, {T.NUM_DOFS}), got {tuple(actions.shape)}")
        self.backend.step(self.pd_targets(actions), T.CONTROL_SUBSTEPS)
        self.progress += 1
        self.recovery_counter.sub_(1).clamp_(min=0)
        obs, amp = self._features()
        self._obs = obs
        self._amp = amp
        self._head = (self._head + 1) % self.history_length
        self._hist[:, self._head] = amp
        self._update_done()
        return StepResult(obs=obs, reward=self._reward.clone(), terminated=self.terminated, truncated=self.truncated)

    def fall_check(self) -> torch.Tensor:
        """(N,) bool: a non-foot body touches something and a non-foot body is below its termination height.

        With a scene, "touches" counts only the floor and the character's own bodies (the backend's
        `body_fall_contact`): a hand or shin pushing an object is not a fall, a fallen character still touches
        the floor."""
        contact = (getattr(self.backend, "body_fall_contact", self.backend.body_contact) & self._non_contact).any(-1)
        low = ((self.backend.body_pos[..., 2].to(self.dtype) < self.termination_heights) & self._non_contact).any(-1)
        return contact & low

    def _update_done(self) -> None:
        recovering = self.recovery_counter > 0
        if self.cfg.enable_early_termination:
            fell = self.fall_check() & (self.progress > 1) & ~recovering
        else:
            fell = torch.zeros_like(self.terminated)
        # a world whose physics diverged (the cpu engine resets it; NaNs elsewhere) ends its episode as a fall
        bad = ~torch.isfinite(self._obs).all(-1)
        unstable = getattr(self.backend, "unstable", None)
        if unstable is not None:
            bad = bad | unstable
        self.unstable = bad
        fell = fell | bad
        timeout = (self.progress >= self.cfg.episode_length - 1) & ~recovering & ~fell
        # sticky until reset: an env stepped past its done step (HLC) keeps its flags
        self.terminated = self.terminated | fell
        self.truncated = (self.truncated | timeout) & ~self.terminated

    # -------------------------------------------------------------------------------------------- resets

    def _rand(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.generator, device=self.device, dtype=torch.float64)

    @_serial
    def reset_done(self) -> torch.Tensor:
        """Reset the envs flagged done by the last steps (getup logic); returns the (N, 223) observations."""
        ids = torch.nonzero(self.done, as_tuple=False).flatten()
        if ids.numel():
            self._reset_episodes(ids, fell=self.terminated[ids])
        return self._obs

    @_serial
    def reset_done_masked(self) -> torch.Tensor:
        """`reset_done()` without host synchronisation: the same getup logic and start distribution, in masks.

        Every env draws its random numbers (recovery, fall init, hybrid choice, fall-pool pick, motion clip and
        time) whether it is done or not, and the new states are written with `set_state_where` (the gpu engine; the
        cpu engine writes the masked rows with `set_state`). No `nonzero`, boolean indexing or `.item()` on the
        device: on CUDA this runs inside a rollout loop without stalling it. It draws from the env's generators in
        a different order than `reset_done()`, so the two give different (equally distributed) episodes. Motion
        starts are picked from the motion-start pool on CUDA (`_pick_motion_pool`), and drawn afresh for the
        motion-start envs only on the CPU (where a `nonzero` costs nothing). Returns the (N, 223) observations.
        """
        cfg, n, dev = self.cfg, self.num_envs, self.device
        done = self.done
        r_rec, r_fall, r_hyb = self._rand(n), self._rand(n), self._rand(n)
        recover = done & self.terminated & (r_rec < cfg.recovery_episode_prob)
        rest = done & ~recover
        fall = rest & (r_fall < cfg.fall_init_prob)
        rest = rest & ~fall
        si = cfg.state_init
        none = torch.zeros_like(rest)
        if si == "hybrid":
            motion = rest & (r_hyb < cfg.hybrid_init_prob)
            default = rest & ~motion
        elif si in ("random", "start"):
            motion, default = rest, none
        elif si == "default":
            motion, default = none, rest
        else:  # "fall"
            motion, default, fall = none, none, fall | rest
        start = fall | motion | default
        qpos = self._reset_objects(self.backend.qpos.to(self.dtype).clone())
        qvel = torch.zeros_like(self.backend.qvel, dtype=self.dtype)
        char = torch.zeros((n, _NQ_CHAR), device=dev, dtype=self.dtype)
        char[:, 2] = T.DEFAULT_ROOT_HEIGHT
        char[:, 3] = 1.0  # wxyz identity
        if cfg.fall_init_prob > 0 or si == "fall":
            if self.fall_pool_qpos is None:
                self.build_fall_pool(restore=True)
            pool = self.fall_pool_qpos
            pick = torch.randint(pool.shape[0], (n,), generator=self.generator, device=dev)
            char = torch.where(fall[:, None], pool[pick], char)
        demo = None
        if si in _MOTION_INITS:
            if getattr(self, "_reset_subset", dev.type == "cpu"):  # the attribute: a test hook
                # cpu: only the motion-start rows, drawn afresh (a `nonzero` costs nothing on the host)
                rows = torch.nonzero(motion).flatten()
                if rows.numel():
                    mq, mv, d = self._motion_start_states(*self._draw_motion_starts(rows.numel()))
                    char = char.index_put((rows,), mq)
                    qvel[rows, :_NV_CHAR] = mv
                    demo = torch.zeros((n, *d.shape[1:]), device=dev, dtype=self.dtype).index_put((rows,), d)
            else:
                mq, mv, demo = self._pick_motion_pool(n)
                char = torch.where(motion[:, None], mq, char)
                qvel[:, :_NV_CHAR] = torch.where(motion[:, None], mv, qvel[:, :_NV_CHAR])
        qpos[:, :_NQ_CHAR] = char
        set_where = getattr(self.backend, "set_state_where", None)
        if set_where is not None:
            set_where(start, qpos, qvel)
        else:
            ids = torch.nonzero(start).flatten()  # cpu engine: the env tensors live on the host
            if ids.numel():
                self.backend.set_state(ids, qpos[ids], qvel[ids])
        obs, amp = self._features()
        s1 = start[:, None]
        # new tensors, not in-place writes: a StepResult handed out before the reset keeps its values
        self._obs = torch.where(s1, obs, self._obs)
        self._amp = torch.where(s1, amp, self._amp)
        hist = torch.where(s1[:, :, None], amp.unsqueeze(1).expand(-1, self.history_length, -1), self._hist)
        if demo is not None:
            demo[:, 0] = amp
            # demo step j (newest first) goes to ring slot (head - j) % H, i.e. slot s holds step (head - s) % H
            hist = torch.where(motion[:, None, None], demo[:, self._slots(self.history_length)], hist)
        self._hist = hist
        cleared = start | recover
        self.progress = torch.where(cleared, torch.zeros_like(self.progress), self.progress)
        rc = torch.where(start, torch.zeros_like(self.recovery_counter), self.recovery_counter)
        self.recovery_counter = torch.where(recover | fall, torch.full_like(rc, cfg.recovery_steps), rc)
        self.terminated = self.terminated & ~cleared
        self.truncated = self.truncated & ~cleared
        return self._obs

    def _draw_motion_starts(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(n,) clip ids and (n,) times of motion starts (clip start times for state_init "start")."""
        ml = self.motion_lib
        clips = ml.draw_clips(n, generator=self._motion_gen)
        if self.cfg.state_init == "start":
            return clips, torch.zeros(n, device=ml.device, dtype=ml.dtype)
        return clips, ml.sample_times(clips, generator=self._motion_gen)

    def _motion_start_states(
        self, clips: torch.Tensor, times: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """qpos (n, 35), qvel (n, 34) and the AMP history (n, H, 125), newest first, of motion states."""
        ml = self.motion_lib
        mq, mv, d = ml.start_states(clips, times, self.history_length, height_offset=self.cfg.motion_height_offset)
        dev, dt = self.device, self.dtype
        return mq.to(device=dev, dtype=dt), mv.to(device=dev, dtype=dt), d.to(device=dev, dtype=dt)

    def set_motion_pool(self, clips: torch.Tensor, times: torch.Tensor, calls: int = 0) -> None:
        """Make the motion-start pool the states of these (P,) clip ids and times (a checkpoint restores it so)."""
        self.motion_pool = (clips, times)
        self._motion_pool_states = self._motion_start_states(clips, times)
        self.motion_pool_calls = int(calls)

    def _pick_motion_pool(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Motion-start states of n envs picked uniformly from the pool (redrawn every `motion_pool_refresh` calls).

        Computing a motion state (FK, Euler rates, a 60-step AMP history) for every env on every step, whether it
        restarts or not, was 3/4 of a sync-free rollout step on the GPU; the pool computes P states once per
        `motion_pool_refresh` steps and each call gathers from it. The start distribution is the same (every pool
        entry is an independent draw of the motion-start distribution); envs restarting within the same
        `motion_pool_refresh` steps may share a start state, with probability about (restarts in that window) / P.
        """
        cfg = self.cfg
        if self.motion_pool is None or self.motion_pool_calls >= max(1, cfg.motion_pool_refresh):
            p = cfg.motion_pool_size if cfg.motion_pool_size > 0 else 2 * self.num_envs
            self.set_motion_pool(*self._draw_motion_starts(p))
        self.motion_pool_calls += 1
        mq, mv, d = self._motion_pool_states
        pick = torch.randint(mq.shape[0], (n,), generator=self.generator, device=self.device)
        return mq[pick], mv[pick], d[pick]

    @_serial
    def reset(self, env_ids: torch.Tensor | None = None, mode: str | None = None) -> torch.Tensor:
        """Start new episodes in `env_ids` (default all); returns the (N, 223) observations.

        mode None: an ordinary episode start (the fall pool with probability `fall_init_prob`, else
        `state_init`); or one of `STATE_INITS` to force that start for every env of the call.
        """
        ids = self._all_ids if env_ids is None else torch.as_tensor(env_ids, device=self.device).long().flatten()
        if ids.numel() == 0:
            return self._obs
        if mode is None:
            self._reset_episodes(ids, fell=torch.zeros(ids.numel(), dtype=torch.bool, device=self.device))
        else:
            if mode not in STATE_INITS:
                raise ValueError(f"mode must be one of {', '.join(STATE_INITS)}, got {mode!r}")
            self._start(ids, mode)
        return self._obs

    def _reset_episodes(self, ids: torch.Tensor, fell: torch.Tensor) -> None:
        cfg = self.cfg
        n = ids.numel()
        recover = fell & (self._rand(n) < cfg.recovery_episode_prob)
        rec_ids = ids[recover]
        if rec_ids.numel():
            self.progress[rec_ids] = 0
            self.recovery_counter[rec_ids] = cfg.recovery_steps
            self._clear_done(rec_ids)
        rest = ids[~recover]
        if rest.numel() == 0:
            return
        if cfg.fall_init_prob > 0:
            fall = self._rand(rest.numel()) < cfg.fall_init_prob
            if fall.any():
                self._start(rest[fall], "fall")
            rest = rest[~fall]
        if rest.numel():
            self._start(rest, cfg.state_init)

    def _start(self, ids: torch.Tensor, mode: str) -> None:
        """Put envs `ids` in a new state of `mode` and restart their episodes (one backend write)."""
        n = ids.numel()
        if mode == "hybrid":
            motion = self._rand(n) < self.cfg.hybrid_init_prob
            groups = {"random": ids[motion], "default": ids[~motion]}
        else:
            groups = {mode: ids}
        groups = {k: v for k, v in groups.items() if v.numel()}
        all_ids, qpos_parts, qvel_parts, demo = [], [], [], {}
        for m, g in groups.items():
            if m == "default":
                qp, qv = self._default_state(g)
            elif m == "fall":
                qp, qv = self._fall_state(g)
            elif m in ("random", "start"):
                qp, qv, demo[m] = self._motion_state(g, start=m == "start")
            else:  # pragma: no cover - validated
                raise ValueError(mode)
            all_ids.append(g)
            qpos_parts.append(qp)
            qvel_parts.append(qv)
        cat_ids = torch.cat(all_ids)
        self.backend.set_state(cat_ids, torch.cat(qpos_parts), torch.cat(qvel_parts))

        obs, amp = self._features(cat_ids)
        # new tensors, not in-place writes: a StepResult handed out before the reset keeps its values
        self._obs = self._obs.index_put((cat_ids,), obs)
        self._amp = self._amp.index_put((cat_ids,), amp)
        # AMP history: demo history for motion starts, the current frame everywhere else
        self._hist[cat_ids] = amp.unsqueeze(1).expand(-1, self.history_length, -1)
        start = 0
        slots = self._slots(self.history_length)
        for m, g in groups.items():
            k = g.numel()
            if m in demo:
                d = demo[m]
                d[:, 0] = amp[start : start + k]
                self._hist[g.unsqueeze(1), slots.unsqueeze(0)] = d
            start += k
        self.progress[cat_ids] = 0
        self.recovery_counter[cat_ids] = self.cfg.recovery_steps if mode == "fall" else 0
        self._clear_done(cat_ids)

    def _clear_done(self, ids: torch.Tensor) -> None:
        false = torch.zeros(ids.numel(), dtype=torch.bool, device=self.device)
        self.terminated = self.terminated.index_put((ids,), false)
        self.truncated = self.truncated.index_put((ids,), false)

    def _base_state(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        qpos = self._reset_objects(self.backend.qpos[ids].to(self.dtype).clone())
        qvel = torch.zeros_like(self.backend.qvel[ids], dtype=self.dtype)
        return qpos, qvel

    def _default_state(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        qpos, qvel = self._base_state(ids)
        qpos[:, :_NQ_CHAR] = 0.0
        qpos[:, 2] = T.DEFAULT_ROOT_HEIGHT
        qpos[:, 3] = 1.0  # wxyz identity
        return qpos, qvel

    def _fall_state(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fall_pool_qpos is None:
            self.build_fall_pool(restore=True)
        pool = self.fall_pool_qpos
        pick = torch.randint(pool.shape[0], (ids.numel(),), generator=self.generator, device=self.device)
        qpos, qvel = self._base_state(ids)
        qpos[:, :_NQ_CHAR] = pool[pick]
        return qpos, qvel

    def _motion_state(self, ids: torch.Tensor, start: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ml = self.motion_lib
        if ml is None:
            raise ValueError("motion state inits need a MotionLib (pass motion_lib or set motion_file)")
        n = ids.numel()
        clips = ml.sample_clips(n, generator=self._motion_gen)
        if start:
            times = torch.zeros(n, device=ml.device, dtype=ml.dtype)
        else:
            times = ml.sample_times(clips, generator=self._motion_gen)
        mq, mv, demo = ml.start_states(clips, times, self.history_length, height_offset=self.cfg.motion_height_offset)
        qpos, qvel = self._base_state(ids)
        qpos[:, :_NQ_CHAR] = mq.to(device=self.device, dtype=self.dtype)
        qvel[:, :_NV_CHAR] = mv.to(device=self.device, dtype=self.dtype)
        self.last_motion_ids = clips.to(self.device)
        self.last_motion_times = times.to(self.device)
        return qpos, qvel, demo.to(device=self.device, dtype=self.dtype).clone()

    @_serial
    def build_fall_pool(self, restore: bool = True) -> torch.Tensor:
        """Make the fall-state pool (up to num_envs, 35) qpos (see the module docstring); returns it.

        Worlds whose physics diverged while falling are left out of the pool.

        restore: put every env back in the state it had before (velocities kept, warm starts cleared).
        """
        b = self.backend
        n = self.num_envs
        saved = (b.qpos.clone(), b.qvel.clone()) if restore else None
        q = torch.randn((n, 4), generator=self.generator, device=self.device, dtype=torch.float64)
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        qpos, qvel = self._default_state(self._all_ids)
        qpos[:, 3:7] = q.to(self.dtype)
        b.set_state(self._all_ids, qpos, qvel)
        a = torch.rand((n, T.NUM_DOFS), generator=self.generator, device=self.device, dtype=torch.float64) - 0.5
        target = self.pd_targets(a)
        bad = torch.zeros(n, dtype=torch.bool, device=self.device)
        for _ in range(int(self.cfg.fall_pool_steps)):
            b.step(target, T.CONTROL_SUBSTEPS)
            unstable = getattr(b, "unstable", None)
            if unstable is not None:
                bad |= unstable
        pool = b.qpos[:, :_NQ_CHAR].to(self.dtype).clone()
        bad |= ~torch.isfinite(pool).all(-1)
        if bad.all():  # pragma: no cover - every world diverged
            pool, _ = self._default_state(self._all_ids[:1])
            pool = pool[:, :_NQ_CHAR]
        elif bad.any():  # drop worlds whose physics diverged on the way down
            pool = pool[~bad]
        self.fall_pool_qpos = pool
        if saved is not None:
            b.set_state(self._all_ids, saved[0], saved[1])
        return self.fall_pool_qpos

    # -------------------------------------------------------------------------------------------- frames

    def render(self, camera: CameraSpec | None = None) -> torch.Tensor:
        """(N, 3, H, W) float32 frames in [0, 1] from each env's tracking camera (default `cfg.camera`)."""
        return self.backend.render(camera or self.cfg.camera)

    def close(self) -> None:
        self.backend.close()


_JOINT_CHILD = [j.body for j in T.JOINTS]
_JOINT_PARENT = [T.PARENT_INDICES[j.body] for j in T.JOINTS]
#: for each of the 28 DoFs, its entry in the flattened (12 joints x 3) relative angular velocities
_DOF_FLAT = [ji * 3 + c for ji, j in enumerate(T.JOINTS) for c in ((0, 1, 2) if j.num_dofs == 3 else (1,))]
_KEY_REL = [k - 1 for k in T.KEY_BODY_IDS]  # key bodies among the 14 non-root bodies
assert list(range(4, 14, 3)) == _KEY_REL  # hands and feet: a strided slice below
_INDEX_CACHE: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _indices(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    idx = _INDEX_CACHE.get(device)
    if idx is None:
        idx = tuple(torch.tensor(v, device=device) for v in (_JOINT_CHILD, _JOINT_PARENT, _DOF_FLAT))
        _INDEX_CACHE[device] = idx
    return idx


def body_features(
    body_pos: torch.Tensor, body_rot: torch.Tensor, body_vel: torch.Tensor, body_angvel: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy observation (N, 223) and AMP observation (N, 125) of world body states, in one fused pass.

    The same quantities as `motion.features.policy_obs` and `motion.features.amp_obs(... joint_local_state ...,
    key positions)` (spec §3.1, §3.2; a test keeps them equal), computed from rotation matrices with about a
    quarter of the tensor operations: the env calls this every step for every env, where op overhead dominates.
    body_pos (N, 15, 3), body_rot (N, 15, 4) xyzw, body_vel (N, 15, 3) origin velocities, body_angvel (N, 15, 3).
    """
    from anyskill_tui.core.motion.quat import quat_to_matrix

    n = body_pos.shape[0]
    child, parent, dof_flat = _indices(body_pos.device)
    R = quat_to_matrix(body_rot)  # (N, 15, 3, 3)
    # heading of the root: the direction of its x axis in the ground plane (identity when it points up/down)
    hx, hy = R[:, 0, 0, 0], R[:, 0, 1, 0]
    hn = torch.sqrt(hx * hx + hy * hy)
    ok = hn > 1e-9
    safe = torch.where(ok, hn, torch.ones_like(hn))
    c = torch.where(ok, hx / safe, torch.ones_like(hx)).view(n, 1)
    s = torch.where(ok, hy / safe, torch.zeros_like(hy)).view(n, 1)
    # everything that is rotated by H^-1, stacked: root-relative positions (14), x and z axes (15 + 15),
    # linear and angular velocities (15 + 15)
    cols = R[..., ::2].transpose(-1, -2)  # (N, 15, 2, 3): x axis, z axis of each body
    parts = torch.cat(
        (body_pos[:, 1:] - body_pos[:, :1], cols.reshape(n, 30, 3), body_vel, body_angvel), dim=1
    )  # (N, 74, 3)
    px, py, pz = parts.unbind(-1)
    rot = torch.stack((c * px + s * py, c * py - s * px, pz), dim=-1)
    rel, axes, vel, ang = rot[:, :14], rot[:, 14:44], rot[:, 44:59], rot[:, 59:74]
    root_h = body_pos[:, 0, 2:3]
    obs = torch.cat((root_h, rel.reshape(n, 42), axes.reshape(n, 90), vel.reshape(n, 45), ang.reshape(n, 45)), -1)
    # joints: local rotation R_p^T R_c (its x and z axes), relative angular velocity R_c^T (w_c - w_p)
    Rp_t = R.index_select(1, parent).transpose(-1, -2)  # (N, 12, 3, 3)
    Rc = R.index_select(1, child)
    local_axes = (Rp_t @ Rc[..., ::2]).transpose(-1, -2)  # (N, 12, 2, 3)
    w_rel = body_angvel.index_select(1, child) - body_angvel.index_select(1, parent)
    w_local = (Rc.transpose(-1, -2) @ w_rel.unsqueeze(-1)).reshape(n, 36)
    amp = torch.cat(
        (
            root_h,
            axes[:, :2].reshape(n, 6),
            vel[:, 0],
            ang[:, 0],
            local_axes.reshape(n, 72),
            w_local.index_select(1, dof_flat),
            rel[:, 4::3].reshape(n, 12),
        ),
        dim=-1,
    )
    return obs, amp


def _size(cam: CameraSpec) -> tuple[int, int]:
    return (int(cam.width), int(cam.height))
