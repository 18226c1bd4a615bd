"""The `gpu` engine: N humanoid worlds in MuJoCo Warp, state shared with torch without copies.

`WarpBackend(model, num_envs, device="cuda:0")` implements `SimBackend` (see `backend.py` for the tensor
conventions). It also runs on warp's CPU device (`device="cpu"`), which is how the parity tests run in CI.

How a control step runs (`step(pd_target, substeps)`):
1. `pd_target` (N, 28) is copied into MuJoCo Warp's `ctrl` (the model's position actuators are in DoF order, so
   ctrl = target);
2. `substeps` x `mujoco_warp.step`;
3. the state is refreshed at the new qpos/qvel (`mjw.kinematics`, `mjw.com_pos`, `mjw.com_vel`: `mjw.step` leaves
   positions and velocities of bodies one substep behind, as `mj_step` does);
4. two small warp kernels of this module write the torch-visible tensors: body positions, xyzw rotations,
   origin linear velocities and angular velocities of bodies 1..15, and the per-body contact flags.
On CUDA the whole sequence is one CUDA graph per `substeps` value (captured on first use, replayed after that, on
torch's current stream so it is ordered with the caller's torch work); on CPU it runs eagerly. There is no host
synchronisation and no allocation in `step()`.

Contacts (`body_contact`): a body is in contact when one of MuJoCo Warp's active contacts (`d.nacon`, flat across
worlds, `d.contact.worldid`) involves one of its geoms and the contact's normal force, decoded from the solver's
constraint forces (`d.efc.force` at `d.contact.efc_address`; the sum of the pyramid edges for the pyramidal cone,
the first row for the elliptic cone), exceeds `contact_force_threshold` (0.1 N). As with `mj_step`, these are the
contacts and forces of the last substep (detected at the start of that substep). Self contacts flag both bodies.
With scene objects (`core.sim.scene`: bodies after the character's), `body_fall_contact` is the same flag
without the contacts that involve an object's geom (the fall test's contact; without a scene it is
`body_contact` itself), and `object_pos` / `object_rot` / `object_vel` / `object_angvel` (N, B, ...) hold the
scene bodies' world state, written by the body-state kernel with the character's.

Velocities: `cvel` is [angular, linear] at the subtree COM of each body's root body, so the world velocity of a
body origin is v + w x (xpos - subtree_com[root]) (what `mj_objectVelocity(..., flg_local=0)` returns), and the
angular velocity is w.

Rendering (`render(camera)`): MuJoCo Warp's batched ray-traced renderer. Per call the tracking-camera pose of
every world (`camera.tracking_camera_pose` / `look_at_matrix`) is written into `d.cam_xpos` / `d.cam_xmat` of the
model's `track` camera, then `refit_bvh` and `render` run (one CUDA graph on CUDA), and a kernel of this module
unpacks the renderer's packed 8-bit pixels (what `mjw.get_rgb` reads) straight into a new (N, 3, H, W) float32
tensor in [0, 1] (no intermediate (N, H, W, 3) buffer: at 16,384 worlds and 224x224 that would be 10 GB).
A render context exists per (width, height, fovy); the one for `render_size` is created in the constructor (its
packed buffer is 4 bytes per pixel per world: 3.3 GB at 16,384 worlds and 224x224).

Sizing: contacts are pooled across worlds (`naconmax = nconmax * N`; a standing or lying character has 4-8, a
fall up to ~50 in one world for an instant), constraint rows are per world (`njmax`; a lying character ~24,
measured peaks ~180 right before an unstable step). Rows past `njmax` are dropped by MuJoCo Warp, so keep it
generous.

This module imports only torch, numpy, mujoco, warp, mujoco_warp and `core.character` / `core.sim` (no store,
CLI or Textual), so it runs on the lent GPU machine with a bare install.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import mujoco
import mujoco_warp as mjw
import numpy as np
import torch
import warp as wp

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.sim.backend import CameraSpec, SimBackend
from anyskill_tui.core.sim.camera import look_at_matrix, tracking_camera_pose

__all__ = ["WarpBackend", "DEFAULT_NCONMAX", "DEFAULT_NJMAX"]

#: contacts per world (pooled: `naconmax = nconmax * num_envs`)
DEFAULT_NCONMAX = 32
#: constraint rows per world (hard per-world cap)
DEFAULT_NJMAX = 192

_PYRAMIDAL = wp.constant(int(mujoco.mjtCone.mjCONE_PYRAMIDAL))


@wp.kernel
def _body_state_kernel(
    xpos: wp.array2d(dtype=wp.vec3),
    xquat: wp.array2d(dtype=wp.quat),
    cvel: wp.array2d(dtype=wp.spatial_vector),
    subtree_com: wp.array2d(dtype=wp.vec3),
    body_ids: wp.array(dtype=int),
    root_ids: wp.array(dtype=int),
    pos_out: wp.array2d(dtype=wp.vec3),
    rot_out: wp.array2d(dtype=wp.vec4),
    vel_out: wp.array2d(dtype=wp.vec3),
    angvel_out: wp.array2d(dtype=wp.vec3),
):
    w, i = wp.tid()
    b = body_ids[i]
    p = xpos[w, b]
    q = xquat[w, b]  # MuJoCo order: q[0] = w
    v6 = cvel[w, b]
    ang = wp.spatial_top(v6)
    lin = wp.spatial_bottom(v6)
    pos_out[w, i] = p
    rot_out[w, i] = wp.vec4(q[1], q[2], q[3], q[0])
    vel_out[w, i] = lin + wp.cross(ang, p - subtree_com[w, root_ids[i]])
    angvel_out[w, i] = ang


@wp.kernel
def _contact_kernel(
    nacon: wp.array(dtype=int),
    contact_geom: wp.array(dtype=wp.vec2i),
    contact_worldid: wp.array(dtype=int),
    contact_dim: wp.array(dtype=int),
    contact_efc_address: wp.array2d(dtype=int),
    efc_force: wp.array2d(dtype=float),
    geom_slot: wp.array(dtype=int),
    geom_object: wp.array(dtype=int),
    cone: int,
    threshold: float,
    contact_out: wp.array2d(dtype=wp.bool),
    fall_out: wp.array2d(dtype=wp.bool),
):
    c = wp.tid()
    if c >= nacon[0]:
        return
    adr = contact_efc_address[c, 0]
    if adr < 0:
        return
    w = contact_worldid[c]
    dim = contact_dim[c]
    njmax = efc_force.shape[1]
    fn = wp.float32(0.0)
    if cone == _PYRAMIDAL and dim > 1:
        for j in range(2 * (dim - 1)):
            if adr + j < njmax:
                fn += efc_force[w, adr + j]
    else:
        if adr < njmax:
            fn = efc_force[w, adr]
    if fn <= threshold:
        return
    g = contact_geom[c]
    # a contact with a scene object does not count for the fall test (fall_out is contact_out without a scene)
    nobj = int(0)  # noqa: UP018 - a typed warp local that the branches below update
    if g[0] >= 0:
        nobj += geom_object[g[0]]
    if g[1] >= 0:
        nobj += geom_object[g[1]]
    fall = nobj == 0
    if g[0] >= 0:
        s0 = geom_slot[g[0]]
        if s0 >= 0:
            contact_out[w, s0] = True
            if fall:
                fall_out[w, s0] = True
    if g[1] >= 0:
        s1 = geom_slot[g[1]]
        if s1 >= 0:
            contact_out[w, s1] = True
            if fall:
                fall_out[w, s1] = True


@wp.kernel
def _unpack_rgb_kernel(
    packed: wp.array2d(dtype=wp.uint32),
    adr: int,
    width: int,
    out: wp.array4d(dtype=float),
):
    """MuJoCo Warp's packed pixels (0xAARRGGBB per pixel, row-major) -> (N, 3, H, W) float in [0, 1]."""
    w, p = wp.tid()
    val = packed[w, adr + p]
    y = p // width
    x = p - y * width
    out[w, 0, y, x] = float((val >> wp.uint32(16)) & wp.uint32(0xFF)) * (1.0 / 255.0)
    out[w, 1, y, x] = float((val >> wp.uint32(8)) & wp.uint32(0xFF)) * (1.0 / 255.0)
    out[w, 2, y, x] = float(val & wp.uint32(0xFF)) * (1.0 / 255.0)


class WarpBackend(SimBackend):
    """N humanoid worlds in MuJoCo Warp; tensors are zero-copy torch views of warp arrays on `device`.

    Args:
        model: the compiled humanoid (`character.model.load_model`); copied, not modified.
        num_envs: number of worlds N.
        device: "cuda", "cuda:K" or "cpu" (warp's CPU device: slow, for tests).
        render_size: (width, height) of the render context built up front; None builds it on first `render()`.
        use_graph: capture step/refresh/render in CUDA graphs (ignored on CPU).
        nconmax: contacts allocated per world (pooled across worlds).
        njmax: constraint rows per world.
        solver_iterations, ls_iterations: override the model's solver iterations (None: keep the model's).
        contact_force_threshold: normal force (N) above which a contact counts for `body_contact`.
        jacobian: "dense" | "sparse" | "auto" constraint Jacobian (None: the model's; auto = sparse for nv > 32).

    Tensors returned by `render()` are new each call; the state tensors (`body_*`, `qpos`, `qvel`) are views that
    the next `step()` / `set_state()` overwrite in place: clone what you keep.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        num_envs: int,
        device: str = "cuda:0",
        render_size: tuple[int, int] | None = (224, 224),
        use_graph: bool = True,
        nconmax: int = DEFAULT_NCONMAX,
        njmax: int = DEFAULT_NJMAX,
        solver_iterations: int | None = None,
        ls_iterations: int | None = None,
        contact_force_threshold: float = 0.1,
        jacobian: str | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        wp.init()
        self.num_envs = int(num_envs)
        self._wp_device = wp.get_device(device)
        self.device = torch.device("cpu") if self._wp_device.is_cpu else torch.device(f"cuda:{self._wp_device.ordinal}")
        self._use_graph = bool(use_graph) and self._wp_device.is_cuda
        self._threshold = float(contact_force_threshold)

        mjm = copy.deepcopy(model)
        if solver_iterations is not None:
            mjm.opt.iterations = int(solver_iterations)
        if ls_iterations is not None:
            mjm.opt.ls_iterations = int(ls_iterations)
        if jacobian is not None:
            mjm.opt.jacobian = {
                "dense": mujoco.mjtJacobian.mjJAC_DENSE,
                "sparse": mujoco.mjtJacobian.mjJAC_SPARSE,
                "auto": mujoco.mjtJacobian.mjJAC_AUTO,
            }[jacobian]
        self.mj_model = mjm
        if mjm.nu != T.NUM_DOFS:
            raise ValueError(f"expected {T.NUM_DOFS} actuators (DoF order), the model has {mjm.nu}")
        self._cam_id = mujoco.mj_name2id(mjm, mujoco.mjtObj.mjOBJ_CAMERA, "track")
        if self._cam_id < 0:
            raise ValueError("the model has no camera named 'track'")

        mjd = mujoco.MjData(mjm)
        mujoco.mj_forward(mjm, mjd)
        self.nconmax = int(nconmax)
        self.njmax = int(njmax)

        with wp.ScopedDevice(self._wp_device):
            self.m = mjw.put_model(mjm)
            self.d = mjw.put_data(mjm, mjd, nworld=self.num_envs, nconmax=self.nconmax, njmax=self.njmax)

            nb = T.NUM_BODIES
            body_ids = np.arange(1, nb + 1, dtype=np.int32)
            self._body_ids = wp.array(body_ids, dtype=int)
            self._root_ids = wp.array(mjm.body_rootid[body_ids].astype(np.int32), dtype=int)
            slot = np.full(mjm.ngeom, -1, dtype=np.int32)
            gb = mjm.geom_bodyid
            char = (gb >= 1) & (gb <= nb)
            slot[char] = gb[char] - 1
            self._geom_slot = wp.array(slot, dtype=int)
            # scene objects: the bodies after the character's (core.sim.scene) and their geoms
            obj_ids = np.arange(nb + 1, mjm.nbody, dtype=np.int32)
            self._num_objects = nob = len(obj_ids)
            self._geom_object = wp.array((gb > nb).astype(np.int32), dtype=int)
            self._obj_ids = wp.array(obj_ids, dtype=int)
            self._obj_root_ids = wp.array(mjm.body_rootid[obj_ids].astype(np.int32), dtype=int)

            n = self.num_envs
            self._pos_wp = wp.zeros((n, nb), dtype=wp.vec3)
            self._rot_wp = wp.zeros((n, nb), dtype=wp.vec4)
            self._vel_wp = wp.zeros((n, nb), dtype=wp.vec3)
            self._angvel_wp = wp.zeros((n, nb), dtype=wp.vec3)
            self._contact_wp = wp.zeros((n, nb), dtype=wp.bool)
            # without a scene the fall contact is the contact (the kernel writes the same flags twice)
            self._fall_contact_wp = wp.zeros((n, nb), dtype=wp.bool) if nob else self._contact_wp
            self._obj_pos_wp = wp.zeros((n, nob), dtype=wp.vec3)
            self._obj_rot_wp = wp.zeros((n, nob), dtype=wp.vec4)
            self._obj_vel_wp = wp.zeros((n, nob), dtype=wp.vec3)
            self._obj_angvel_wp = wp.zeros((n, nob), dtype=wp.vec3)

        # zero-copy torch views
        tt = wp.to_torch
        self.qpos = tt(self.d.qpos)
        self.qvel = tt(self.d.qvel)
        self.ctrl = tt(self.d.ctrl)
        self._qacc_warmstart = tt(self.d.qacc_warmstart)
        self._qacc = tt(self.d.qacc)
        self._act = tt(self.d.act) if mjm.na > 0 else None
        self._cam_xpos = tt(self.d.cam_xpos)  # (N, ncam, 3)
        self._cam_xmat = tt(self.d.cam_xmat)  # (N, ncam, 3, 3)
        self.body_pos = tt(self._pos_wp)
        self.body_rot = tt(self._rot_wp)
        self.body_vel = tt(self._vel_wp)
        self.body_angvel = tt(self._angvel_wp)
        self.body_contact = tt(self._contact_wp)
        #: (N, 15) bool: body_contact without contacts with scene objects (the fall test's; body_contact if none)
        self.body_fall_contact = tt(self._fall_contact_wp) if self._num_objects else self.body_contact
        #: (N, B, 3) / (N, B, 4) xyzw / (N, B, 3) / (N, B, 3): world state of the scene bodies (B = 0: no scene)
        self.object_pos = tt(self._obj_pos_wp)
        self.object_rot = tt(self._obj_rot_wp)
        self.object_vel = tt(self._obj_vel_wp)
        self.object_angvel = tt(self._obj_angvel_wp)
        # raw MuJoCo Warp views, for benchmarks and diagnostics
        self.xpos = tt(self.d.xpos)
        self.xquat = tt(self.d.xquat)
        self.cvel = tt(self.d.cvel)
        self.subtree_com = tt(self.d.subtree_com)
        self.nacon = tt(self.d.nacon)

        self._streams: dict[int, Any] = {}
        self._graphs: dict[Any, Any] = {}  # key -> CUDA graph, or False (capture failed: run eagerly)
        self._render_ctx: dict[tuple[int, int, float], Any] = {}
        self._rgb_adr: dict[tuple[int, int, float], int] = {}

        if render_size is not None:
            self._context(int(render_size[0]), int(render_size[1]), float(mjm.cam_fovy[self._cam_id]))
        if self._wp_device.is_cuda:
            wp.synchronize_device(self._wp_device)  # uploads ran on warp's stream; later work runs on torch's
        self._launch("refresh", self._refresh_body)

    # ------------------------------------------------------------------ internals

    def _torch_stream(self):
        """Warp's handle on torch's current CUDA stream (cached per stream)."""
        ts = torch.cuda.current_stream(self.device)
        s = self._streams.get(ts.cuda_stream)
        if s is None:
            s = self._streams[ts.cuda_stream] = wp.stream_from_torch(ts)
        return s

    def _launch(self, key, fn, *args) -> None:
        """Run `fn(*args)`: replay its CUDA graph (cached under `key`) on torch's current stream, or eagerly.

        On CUDA the first call of a key runs `fn` eagerly (compiling kernels, creating lazy buffers; this is the
        call's real work) and then captures a graph for the next calls; a capture that fails falls back to eager
        execution for that key, with a warning.
        """
        if self._use_graph:
            graph = self._graphs.get(key)
            if graph is not None and graph is not False:
                wp.capture_launch(graph, stream=self._torch_stream())
                return
            if graph is None:
                self._eager(fn, *args)
                self._graphs[key] = self._capture(key, fn, *args)
                return
        self._eager(fn, *args)

    def _eager(self, fn, *args) -> None:
        with wp.ScopedDevice(self._wp_device):
            if self._wp_device.is_cuda:
                with wp.ScopedStream(self._torch_stream()):
                    fn(*args)
            else:
                fn(*args)

    def _capture(self, key, fn, *args):
        """Capture `fn(*args)` into a CUDA graph on warp's stream (records only: nothing runs); False on failure."""
        torch.cuda.synchronize(self.device)
        try:
            with (
                wp.ScopedDevice(self._wp_device),
                wp.ScopedCapture(device=self._wp_device, force_module_load=False) as cap,
            ):
                fn(*args)
            return cap.graph
        except Exception as e:  # pragma: no cover - CUDA only
            warnings.warn(f"WarpBackend: CUDA graph capture of {key} failed ({e}); running it eagerly", stacklevel=3)
            return False

    def _refresh_body(self) -> None:
        m, d = self.m, self.d
        mjw.kinematics(m, d)
        mjw.com_pos(m, d)
        mjw.com_vel(m, d)
        wp.launch(
            _body_state_kernel,
            dim=(self.num_envs, T.NUM_BODIES),
            inputs=[d.xpos, d.xquat, d.cvel, d.subtree_com, self._body_ids, self._root_ids],
            outputs=[self._pos_wp, self._rot_wp, self._vel_wp, self._angvel_wp],
        )
        if self._num_objects:
            wp.launch(
                _body_state_kernel,
                dim=(self.num_envs, self._num_objects),
                inputs=[d.xpos, d.xquat, d.cvel, d.subtree_com, self._obj_ids, self._obj_root_ids],
                outputs=[self._obj_pos_wp, self._obj_rot_wp, self._obj_vel_wp, self._obj_angvel_wp],
            )

    def _contacts_body(self) -> None:
        d = self.d
        self._contact_wp.zero_()
        if self._num_objects:
            self._fall_contact_wp.zero_()
        wp.launch(
            _contact_kernel,
            dim=d.naconmax,
            inputs=[
                d.nacon,
                d.contact.geom,
                d.contact.worldid,
                d.contact.dim,
                d.contact.efc_address,
                d.efc.force,
                self._geom_slot,
                self._geom_object,
                int(self.mj_model.opt.cone),
                self._threshold,
            ],
            outputs=[self._contact_wp, self._fall_contact_wp],
        )

    def _step_body(self, substeps: int) -> None:
        for _ in range(substeps):
            mjw.step(self.m, self.d)
        self._refresh_body()
        self._contacts_body()

    def _context(self, width: int, height: int, fovy: float):
        key = (width, height, fovy)
        rc = self._render_ctx.get(key)
        if rc is None:
            mjm = self.mj_model
            old = float(mjm.cam_fovy[self._cam_id])
            mjm.cam_fovy[self._cam_id] = fovy  # rays are precomputed from the host model's fovy
            try:
                with wp.ScopedDevice(self._wp_device):
                    rc = mjw.create_render_context(
                        mjm,
                        nworld=self.num_envs,
                        cam_res=(width, height),
                        render_rgb=True,
                        render_depth=False,
                        cam_active=[self._cam_id],
                    )
            finally:
                mjm.cam_fovy[self._cam_id] = old
            if self._wp_device.is_cuda:
                wp.synchronize_device(self._wp_device)
            self._render_ctx[key] = rc
            self._rgb_adr[key] = int(rc.rgb_adr.numpy()[0])
        return rc

    def _render_body(self, key) -> None:
        rc = self._render_ctx[key]
        mjw.refit_bvh(self.m, self.d, rc)
        mjw.render(self.m, self.d, rc)

    # ------------------------------------------------------------------ SimBackend

    def step(self, pd_target: torch.Tensor, substeps: int = T.CONTROL_SUBSTEPS) -> None:
        """Hold the (N, 28) PD targets for `substeps` physics steps, then refresh the state tensors."""
        self.ctrl.copy_(pd_target)
        n = int(substeps)
        self._launch(("step", n), self._step_body, n)

    def set_state(self, env_ids: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        """Write (n, nq) qpos and (n, nv) qvel into worlds `env_ids`, zero their warm start and contact flags."""
        ids = torch.as_tensor(env_ids, device=self.device)
        if ids.dtype == torch.bool:
            ids = ids.nonzero().squeeze(-1)
        ids = ids.long()
        self.qpos[ids] = qpos.to(device=self.device, dtype=self.qpos.dtype)
        self.qvel[ids] = qvel.to(device=self.device, dtype=self.qvel.dtype)
        self._qacc_warmstart[ids] = 0.0
        self._qacc[ids] = 0.0
        if self._act is not None:
            self._act[ids] = 0.0
        self._launch("refresh", self._refresh_body)
        self.body_contact[ids] = False
        if self._num_objects:
            self.body_fall_contact[ids] = False

    def set_state_where(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        """Like `set_state` for the worlds where the (N,) bool `mask` is set, with (N, nq) / (N, nv) rows for all
        worlds (rows of unmasked worlds are ignored). No host synchronisation (no `nonzero`), for resets inside a
        CUDA-graph-friendly loop."""
        m = mask.to(device=self.device, dtype=torch.bool)[:, None]
        self.qpos.copy_(torch.where(m, qpos.to(device=self.device, dtype=self.qpos.dtype), self.qpos))
        self.qvel.copy_(torch.where(m, qvel.to(device=self.device, dtype=self.qvel.dtype), self.qvel))
        self._qacc_warmstart.masked_fill_(m, 0.0)
        self._qacc.masked_fill_(m, 0.0)
        if self._act is not None:
            self._act.masked_fill_(m, 0.0)
        self._launch("refresh", self._refresh_body)
        self.body_contact.masked_fill_(m, False)
        if self._num_objects:
            self.body_fall_contact.masked_fill_(m, False)

    def render(self, camera: CameraSpec | None = None) -> torch.Tensor:
        """RGB frames of every world from the tracking camera: (N, 3, H, W) float32 in [0, 1] (a new tensor)."""
        camera = camera or CameraSpec()
        key = (int(camera.width), int(camera.height), float(camera.fovy_deg))
        self._context(*key)
        cam_pos, lookat = tracking_camera_pose(self.body_pos[:, 0], camera)
        self._cam_xpos[:, self._cam_id] = cam_pos
        self._cam_xmat[:, self._cam_id] = look_at_matrix(cam_pos, lookat)
        self._launch(("render", key), self._render_body, key)
        # unpack straight into a fresh (N, 3, H, W) tensor (outside the graph: its address changes per call;
        # torch's caching allocator makes it free after the first call)
        rc = self._render_ctx[key]
        w, h = key[0], key[1]
        out = torch.empty((self.num_envs, 3, h, w), dtype=torch.float32, device=self.device)
        self._eager(
            lambda: wp.launch(
                _unpack_rgb_kernel,
                dim=(self.num_envs, w * h),
                inputs=[rc.rgb_data, self._rgb_adr[key], w],
                outputs=[wp.from_torch(out)],
            )
        )
        return out

    def close(self) -> None:
        self._graphs.clear()
        self._render_ctx.clear()

    # ------------------------------------------------------------------ diagnostics

    def contact_count(self) -> torch.Tensor:
        """(1,) int tensor: contacts MuJoCo Warp found in all worlds at the last substep (no host sync)."""
        return self.nacon.clone()

    def memory_bytes(self) -> int:
        """Bytes held by MuJoCo Warp's Model/Data, this backend's buffers and render contexts (host walk)."""
        seen: set[int] = set()

        def walk(obj, depth=0) -> int:
            if depth > 4 or id(obj) in seen:
                return 0
            seen.add(id(obj))
            if isinstance(obj, wp.array):
                return int(obj.capacity) if obj.ptr is not None else 0
            total = 0
            if hasattr(obj, "__dataclass_fields__"):
                for name in obj.__dataclass_fields__:
                    total += walk(getattr(obj, name, None), depth + 1)
            elif isinstance(obj, dict):
                for v in obj.values():
                    total += walk(v, depth + 1)
            return total

        total = walk(self.m) + walk(self.d)
        for rc in self._render_ctx.values():
            total += walk(rc)
        scene = (self._fall_contact_wp, self._obj_pos_wp, self._obj_rot_wp, self._obj_vel_wp, self._obj_angvel_wp)
        for a in (self._pos_wp, self._rot_wp, self._vel_wp, self._angvel_wp, self._contact_wp, *scene):
            total += walk(a)
        return total
