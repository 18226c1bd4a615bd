"""The `cpu` engine: N humanoid worlds in C MuJoCo, stepped on a thread pool by `mujoco.batch.Batch`.

Physics: `Batch.step(nstep=substeps, stage=mjSTAGE_VEL)` runs the substeps of all worlds on `nthread` threads
(bit-identical to a loop of `mj_step` over one MjData per world) and recomputes the position and velocity stages
at the new state, so `xpos`, `xquat`, `cvel` and `subtree_com` describe the state after the last substep. That
refresh costs 9 % more instructions per physics step, as the next step's first substep recomputes those stages
from the world's state row. A persistent batch (`persistent=True`, one MjData per world, ~0.25 MB each) reuses
them instead and executes 8 % fewer instructions, but it is no faster in wall-clock time on this 2-core machine
(its per-world data no longer stays in cache), so the batch shares one MjData per thread by default.

Derived quantities (see `backend.py` for the conventions):
- body origin linear velocity from `cvel` = [omega, v] at the subtree COM of the body's tree root (world
  orientation): v_origin = v + omega x (xpos - subtree_com[root]) (what `mj_objectVelocity` returns);
- body contacts from one MuJoCo `contact` sensor per character body (added here through MjSpec; `Batch` cannot
  bind `d.contact`): body1 = the body, data = "found force", reduce = "maxforce", so each reports how many
  contacts involve the body and the contact-frame force of its strongest one. A body is in contact when that
  contact's normal force exceeds 0.1 N (the GPU engine's rule: a contact of the body with normal force > 0.1 N;
  self contacts flag both bodies). The forces are those of the last substep's constraint solve (contacts detected
  one substep before the returned positions), as Isaac Gym's net contact forces are those of its last simulate
  call; after `set_state` they are solved at the new state. The sensors cost about 3 % of a physics step.
- with scene objects (`core.sim.scene`), two more sensors per character body, its contacts with the floor and
  with the character's own bodies, give `body_fall_contact` (contacts with objects left out: the contact of the
  fall test); without a scene `body_fall_contact` is `body_contact`. Object bodies (ids 16..) are reported in
  `object_pos`, `object_rot` (xyzw), `object_vel`, `object_angvel` (N, B, ...), B = 0 without a scene.

Rendering: one `mujoco.Renderer` (EGL when there is no display), one scratch MjData; per world the qpos is copied
in, `mj_kinematics` + `mj_camlight` run, and the model's `track` camera gets the tracking pose of
`camera.tracking_camera_pose` / `camera.look_at_matrix` written into `cam_xpos` / `cam_xmat` (what the GPU engine
does per world). This path loops over worlds in Python; it is per-frame GL work (about 50 frames/s at 224x224
with Mesa llvmpipe on 2 cores), meant for tests, previews and small runs.
"""

from __future__ import annotations

import copy
import os

from anyskill_tui.core.gl import ensure_headless_gl, prefer_egl_env

# headless: mujoco reads MUJOCO_GL once, at its import (and fails to import if EGL is asked for but absent)
prefer_egl_env()

import mujoco  # noqa: E402
import mujoco.batch  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from anyskill_tui.core.character import tables as T  # noqa: E402
from anyskill_tui.core.character.model import ModelOptions, humanoid_xml  # noqa: E402
from anyskill_tui.core.sim.backend import CameraSpec, SimBackend  # noqa: E402
from anyskill_tui.core.sim.camera import look_at_matrix, tracking_camera_pose  # noqa: E402

__all__ = ["CpuBackend", "build_model", "CONTACT_FORCE_THRESHOLD", "CONTACT_SENSOR_NAMES", "TRACK_CAMERA"]

#: a body is in contact when one of its contacts has a normal force above this (N), spec §1.4
CONTACT_FORCE_THRESHOLD = 0.1
#: the model camera the tracking pose is written into
TRACK_CAMERA = "track"
#: names of the per-body contact sensors added by `build_model`
CONTACT_SENSOR_NAMES: tuple[str, ...] = tuple(f"_contact_{n}" for n in T.BODY_NAMES)
#: with scene objects: per-body sensors of the contacts with the floor, and with the character's own bodies
FLOOR_SENSOR_NAMES: tuple[str, ...] = tuple(f"_floor_contact_{n}" for n in T.BODY_NAMES)
SELF_SENSOR_NAMES: tuple[str, ...] = tuple(f"_self_contact_{n}" for n in T.BODY_NAMES)
# contact sensor parameters (intprm): data bits (1 found | 2 force), reduce (2 = maxforce), num (1 contact)
_CONTACT_DATA_FOUND_FORCE = 1 | 2
_CONTACT_REDUCE_MAXFORCE = 2
#: C MuJoCo features `build_model` turns off, as runtime options (not in the MJCF, which MuJoCo Warp shares and
#: which rejects the midphase flag); instructions per physics step from `benchmarks/cpu_callgrind.py`:
#: - constraint islands: the character is one kinematic tree, so one island whenever it has contacts and the island
#:   bookkeeping only adds work (-3.7 %, trajectories bit-identical);
#: - the collision midphase: BVH culling inside the multi-geom pelvis and torso (-1.1 %, bit-identical);
#: - the solver's warm start: when the PD targets change every control step (policies, clip tracking) the last
#:   step's accelerations are a worse start for Newton than the unconstrained ones (2.5 -> 1.9 iterations, -7 %;
#:   env steps +9-12 % wall-clock); a body lying still under fixed targets is the opposite case (+10 %). Same
#:   problem, same solution to the solver tolerance: clip tracking over 2 s differs by 1e-13..1e-6 rad.
CPU_DISABLE_FLAGS = int(
    mujoco.mjtDisableBit.mjDSBL_ISLAND | mujoco.mjtDisableBit.mjDSBL_MIDPHASE | mujoco.mjtDisableBit.mjDSBL_WARMSTART
)


def build_model(options: ModelOptions | None = None) -> mujoco.MjModel:
    """The humanoid model plus one `contact` sensor per character body (see the module docstring); with scene
    objects also the floor and self contact sensors of `body_fall_contact`."""
    spec = mujoco.MjSpec.from_string(humanoid_xml(options))
    anything = mujoco.mjtObj.mjOBJ_UNKNOWN  # no second object: every contact of the body
    sensors = [(n, b, anything, "") for n, b in zip(CONTACT_SENSOR_NAMES, T.BODY_NAMES, strict=True)]
    if len(spec.bodies) > T.NUM_BODIES + 1:  # scene bodies follow the character's
        root, geom, subtree = T.BODY_NAMES[0], mujoco.mjtObj.mjOBJ_GEOM, mujoco.mjtObj.mjOBJ_XBODY
        sensors += [(n, b, geom, "floor") for n, b in zip(FLOOR_SENSOR_NAMES, T.BODY_NAMES, strict=True)]
        sensors += [(n, b, subtree, root) for n, b in zip(SELF_SENSOR_NAMES, T.BODY_NAMES, strict=True)]
    for name, body, reftype, refname in sensors:
        s = spec.add_sensor(
            name=name,
            type=mujoco.mjtSensor.mjSENS_CONTACT,
            objtype=mujoco.mjtObj.mjOBJ_BODY,
            objname=body,
            reftype=reftype,
            refname=refname,
        )
        s.intprm[0] = _CONTACT_DATA_FOUND_FORCE
        s.intprm[1] = _CONTACT_REDUCE_MAXFORCE
        s.intprm[2] = 1
    model = spec.compile()
    model.opt.disableflags |= CPU_DISABLE_FLAGS
    return model


class CpuBackend(SimBackend):
    """`num_envs` worlds of the humanoid in C MuJoCo (see the module docstring).

    Args:
        num_envs: number of worlds.
        device: torch device of the state tensors (the physics runs on the CPU whatever it is).
        nthread: threads of the batch (including the caller's); None: `os.cpu_count()`.
        model_options: options of the generated model (`ModelOptions()` by default).
        dtype: float dtype of the state tensors (float32; float64 for exact comparisons).
        persistent: keep one MjData per world (`mujoco.batch.Batch(persistent=True)`): more memory, 8 % fewer
            instructions, no faster (module docstring). State written into a persistent batch must be followed by
            `batch.forward` before the next step (`set_state` does it), else that step starts from stale positions.
    """

    engine = "cpu"

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        *,
        nthread: int | None = None,
        model_options: ModelOptions | None = None,
        dtype: torch.dtype = torch.float32,
        persistent: bool = False,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.dtype = dtype
        self.model_options = model_options or ModelOptions()
        self.model = build_model(self.model_options)
        self.nthread = int(nthread or os.cpu_count() or 1)
        self.batch = mujoco.batch.Batch(self.model, nsim=self.num_envs, nthread=self.nthread, persistent=persistent)
        m = self.model
        self.nq, self.nv, self.nu = m.nq, m.nv, m.nu
        # actuator k drives DoF act_dof[k]; ctrl[:, k] = pd_target[:, act_dof[k]]
        act_dof = m.jnt_dofadr[m.actuator_trnid[:, 0]] - 6
        if sorted(act_dof.tolist()) != list(range(T.NUM_DOFS)):
            raise ValueError("the model's actuators do not drive the 28 character DoFs one each")
        self._act_dof = act_dof.astype(np.int64)
        self._ctrl_identity = bool(np.array_equal(self._act_dof, np.arange(T.NUM_DOFS)))
        self._body_ids = np.arange(1, T.NUM_BODIES + 1)
        self._root_ids = m.body_rootid[self._body_ids]
        # the character's bodies are 1..15 and one tree rooted at the pelvis: slices (views) instead of gathers
        self._bodies = slice(1, T.NUM_BODIES + 1)
        if not (self._root_ids == 1).all():
            raise ValueError("the character's bodies must form one tree rooted at body 1")
        # live state rows and derived outputs of the batch
        b = self.batch
        self._qpos = b.bind("qpos")
        self._qvel = b.bind("qvel")
        self._ctrl = b.bind("ctrl")
        self._xpos = b.bind("xpos")
        self._xquat = b.bind("xquat")
        self._cvel = b.bind("cvel")
        self._subtree_com = b.bind("subtree_com")
        self._time = b.bind("time")
        self._sensordata = b.bind("sensordata")
        adr = [m.sensor_adr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SENSOR, n)] for n in CONTACT_SENSOR_NAMES]
        self._contact_found = np.asarray(adr, np.int64)  # sensordata column: number of contacts of the body
        self._contact_normal = self._contact_found + 1  # normal force of its strongest contact
        # scene objects: bodies after the character's, and the floor/self contact columns of the fall contact
        self._obj_ids = np.arange(T.NUM_BODIES + 1, m.nbody)
        self._obj_root_ids = m.body_rootid[self._obj_ids]
        self._fall_normal: np.ndarray | None = None
        if self._obj_ids.size:
            self._fall_normal = np.asarray(
                [
                    [m.sensor_adr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SENSOR, n)] + 1 for n in names]
                    for names in (FLOOR_SENSOR_NAMES, SELF_SENSOR_NAMES)
                ],
                np.int64,
            )
        # rendering, created on first use
        self._renderer: mujoco.Renderer | None = None
        self._render_model: mujoco.MjModel | None = None
        self._render_data: mujoco.MjData | None = None
        self._render_size: tuple[int, int] | None = None
        self._track_cam = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, TRACK_CAMERA)
        # every world starts in the default standing state (spec §1.4)
        qpos0 = np.array(m.qpos0)
        qpos0[2] = T.DEFAULT_ROOT_HEIGHT
        qpos0[3:7] = (1.0, 0.0, 0.0, 0.0)
        self.default_qpos = qpos0
        self.batch.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        #: (nstate,) the integration state `mj_resetData` leaves (model defaults, time 0, no warm start or controls)
        self._reset_row = np.array(self.batch.state[0])
        self._qpos[:] = qpos0
        self._qvel[:] = 0.0
        self.batch.forward(stage=mujoco.mjtStage.mjSTAGE_ACC)
        #: (N,) bool: the world diverged during the last step and MuJoCo reset it to the model defaults
        self.unstable = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        #: (N, B, 3) / (N, B, 4) xyzw / (N, B, 3) / (N, B, 3): world state of the scene bodies (B = 0: no scene)
        self.object_pos = self._to_torch(np.zeros((self.num_envs, 0, 3)))
        self.object_rot = self._to_torch(np.zeros((self.num_envs, 0, 4)))
        self.object_vel = self.object_angvel = self.object_pos
        self._refresh()

    # ------------------------------------------------------------------------------------------------ state

    def _to_torch(self, a: np.ndarray) -> torch.Tensor:
        """A new tensor (one copy, never a view of the batch's arrays) of `a` in the state dtype and device."""
        np_dtype = np.float32 if self.dtype == torch.float32 else np.float64
        return torch.from_numpy(np.array(a, dtype=np_dtype, order="C")).to(device=self.device, dtype=self.dtype)

    def _refresh(self) -> None:
        """Rebuild the torch state tensors from the batch's bound fields (~0.25 ms for 256 worlds)."""
        b = self._bodies
        xpos = self._xpos[:, b]
        cvel = self._cvel[:, b]
        ang = cvel[..., :3]
        lin = cvel[..., 3:]
        r = xpos - self._subtree_com[:, 1:2]  # from the tree's COM, where cvel's linear part is taken
        vel = np.empty_like(r)  # lin + ang x r, written out (np.cross costs 4x more on these small arrays)
        vel[..., 0] = lin[..., 0] + (ang[..., 1] * r[..., 2] - ang[..., 2] * r[..., 1])
        vel[..., 1] = lin[..., 1] + (ang[..., 2] * r[..., 0] - ang[..., 0] * r[..., 2])
        vel[..., 2] = lin[..., 2] + (ang[..., 0] * r[..., 1] - ang[..., 1] * r[..., 0])
        quat = self._xquat[:, b]
        rot = np.empty_like(quat)  # wxyz -> xyzw
        rot[..., :3] = quat[..., 1:]
        rot[..., 3] = quat[..., 0]
        normal = self._sensordata[:, self._contact_normal]
        self.body_pos = self._to_torch(xpos)
        self.body_rot = self._to_torch(rot)
        self.body_vel = self._to_torch(vel)
        self.body_angvel = self._to_torch(ang)
        #: (N, 15) normal force of each body's strongest contact (0 without contact), last substep's solve
        self.body_contact_normal_force = self._to_torch(normal)
        #: (N, 15) number of contacts involving each body
        self.body_contact_count = torch.from_numpy(self._sensordata[:, self._contact_found].astype(np.int64)).to(
            self.device
        )
        self.body_contact = torch.from_numpy(normal > CONTACT_FORCE_THRESHOLD).to(self.device)
        #: (N, 15) bool: body_contact without contacts with scene objects (floor and self contacts only)
        self.body_fall_contact = self.body_contact
        if self._fall_normal is not None:
            fall = self._sensordata[:, self._fall_normal].max(axis=1)  # (N, 15): floor or self, the stronger
            self.body_fall_contact = torch.from_numpy(fall > CONTACT_FORCE_THRESHOLD).to(self.device)
            oids = self._obj_ids
            opos = self._xpos[:, oids]
            ocvel = self._cvel[:, oids]
            ocom = self._subtree_com[:, self._obj_root_ids]
            self.object_pos = self._to_torch(opos)
            self.object_rot = self._to_torch(self._xquat[:, oids][..., [1, 2, 3, 0]])
            self.object_vel = self._to_torch(ocvel[..., 3:] + np.cross(ocvel[..., :3], opos - ocom))
            self.object_angvel = self._to_torch(ocvel[..., :3])
        self.qpos = self._to_torch(self._qpos)
        self.qvel = self._to_torch(self._qvel)

    def _np(self, x, cols: int) -> np.ndarray:
        a = x.detach().to("cpu", torch.float64).numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)
        return a.reshape(-1, cols)

    def step(self, pd_target: torch.Tensor, substeps: int = T.CONTROL_SUBSTEPS) -> None:
        target = self._np(pd_target, T.NUM_DOFS)
        if target.shape[0] != self.num_envs:
            raise ValueError(f"pd_target has {target.shape[0]} rows, expected {self.num_envs}")
        self._ctrl[:] = target if self._ctrl_identity else target[:, self._act_dof]
        t0 = self._time.copy()
        self.batch.step(nstep=int(substeps), stage=mujoco.mjtStage.mjSTAGE_VEL)
        # MuJoCo resets a diverging simulation (bad qacc) to the model defaults, time 0, and warns
        self.unstable = torch.from_numpy(self._time < t0 + 0.5 * substeps * self.model.opt.timestep).to(self.device)
        self._refresh()

    def set_state(self, env_ids: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        ids = np.asarray(env_ids.detach().cpu().numpy() if isinstance(env_ids, torch.Tensor) else env_ids, np.int64)
        ids = ids.reshape(-1)
        if ids.size == 0:
            return
        qp = self._np(qpos, self.nq)
        qv = self._np(qvel, self.nv)
        order = np.argsort(ids, kind="stable")
        ids, qp, qv = ids[order], qp[order], qv[order]
        if ids.size > 1 and not (ids[1:] > ids[:-1]).all():
            raise ValueError("env_ids must be unique")
        # a clean start: warm start, controls and time cleared, as mj_resetData
        self.batch.state[ids] = self._reset_row  # the state `batch.reset` would leave, without a batch call
        self._qpos[ids] = qp
        self._qvel[ids] = qv
        self.batch.forward(ids, stage=mujoco.mjtStage.mjSTAGE_ACC)
        self._refresh()

    # ------------------------------------------------------------------------------------------------ render

    def _ensure_renderer(self, camera: CameraSpec) -> None:
        size = (int(camera.height), int(camera.width))
        if self._renderer is not None and self._render_size == size:
            self._render_model.cam_fovy[self._track_cam] = camera.fovy_deg
            return
        self.close_renderer()
        ensure_headless_gl()
        rm = copy.copy(self.model)
        rm.vis.global_.offwidth = max(int(rm.vis.global_.offwidth), size[1])
        rm.vis.global_.offheight = max(int(rm.vis.global_.offheight), size[0])
        rm.cam_fovy[self._track_cam] = camera.fovy_deg
        self._render_model = rm
        self._render_data = mujoco.MjData(rm)
        self._renderer = mujoco.Renderer(rm, height=size[0], width=size[1])
        self._render_size = size

    def render(self, camera: CameraSpec, env_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 3, H, W) float32 RGB in [0, 1] from each world's tracking camera (or only the worlds `env_ids`)."""
        self._ensure_renderer(camera)
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids.cpu().numpy()).reshape(-1)
        qpos = self._qpos[ids]
        root = torch.from_numpy(np.ascontiguousarray(qpos[:, :3]))
        cam_pos, lookat = tracking_camera_pose(root, camera)
        xmat = look_at_matrix(cam_pos, lookat).reshape(-1, 9).numpy()
        cam_pos = cam_pos.numpy()
        m, d, r = self._render_model, self._render_data, self._renderer
        out = np.empty((len(ids), camera.height, camera.width, 3), np.uint8)
        c = self._track_cam
        for k in range(len(ids)):
            d.qpos[:] = qpos[k]
            mujoco.mj_kinematics(m, d)
            mujoco.mj_camlight(m, d)
            d.cam_xpos[c] = cam_pos[k]
            d.cam_xmat[c] = xmat[k]
            r.update_scene(d, camera=c)
            r.render(out=out[k])
        frames = torch.from_numpy(out).permute(0, 3, 1, 2).to(dtype=torch.float32).div_(255.0)
        return frames.to(self.device)

    def close_renderer(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
        self._renderer = None
        self._render_model = None
        self._render_data = None
        self._render_size = None

    def close(self) -> None:
        self.close_renderer()
