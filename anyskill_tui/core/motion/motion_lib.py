"""MotionLib: batched sampling of reference states and AMP demo windows from a motion dataset (spec §2.3, §2.4).

All per-frame data of all clips is precomputed at construction and concatenated along one frame axis (with
per-clip start offsets); every query is a handful of batched tensor ops on `device` with no Python loop over
samples (loops run over clips only at construction, and over the 12 joints' *kinds* never).

Per frame: root position/rotation, 15 local rotations, FK body positions/rotations, root world linear and
angular velocity (the file's stored global velocities at the root, or recomputed as poselib does when absent),
world body velocities (same source), and per-body local angular velocity ω_local = axis·angle/dt of
q_f⁻¹ ⊗ q_{f+1} on local rotations (the child's angular velocity relative to its parent, in the child frame;
the last frame copies the previous one).

Interpolation at time t of a clip with T frames, length L = (T−1)/fps and dt_m = 1/fps: phase = clip(t/L, 0, 1),
f0 = ⌊phase·(T−1)⌋ (with a 1e-5-frame tolerance so exact frame times land on their frame), f1 = min(f0+1, T−1),
blend = (t − f0·dt_m)/dt_m clipped to [0, 1]. Root position is lerped, root and local rotations slerped;
velocities and joint local angular velocities are taken at f0 (not interpolated).

Design choice: body positions/rotations (and so the key-body positions) are the forward kinematics of the
interpolated local rotations, not a lerp of per-frame FK positions (the reference lerps). FK of the slerped
rotations is exactly what the simulator shows when set to `mujoco_state`, so demo and sim features agree.

Conventions: torch, quaternions xyzw (MuJoCo wxyz only in `mujoco_state`'s qpos), world frame z up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.device_cache import index_tensor
from anyskill_tui.core.motion import features as F
from anyskill_tui.core.motion.clip import compute_velocities
from anyskill_tui.core.motion.dataset import MotionDataset
from anyskill_tui.core.motion.fk import forward_kinematics
from anyskill_tui.core.motion.quat import (
    local_angvel_to_euler_xyz_rates,
    quat_conjugate,
    quat_mul,
    quat_normalize,
    quat_rotate_inverse,
    quat_to_axis_angle,
    quat_to_euler_xyz,
    slerp,
    wrap_angle,
    xyzw_to_wxyz,
)

__all__ = ["MotionLib", "MotionState", "DEFAULT_RATE_DAMPING"]

#: hinge-rate damping near gimbal lock of 3-DoF joints in `MotionLib.mujoco_state` (see there)
DEFAULT_RATE_DAMPING = 0.1

_J3 = [i for i, j in enumerate(T.JOINTS) if j.num_dofs == 3]
_J1 = [i for i, j in enumerate(T.JOINTS) if j.num_dofs == 1]
_J3_DOFS = [j.dof_start + k for j in T.JOINTS if j.num_dofs == 3 for k in range(3)]  # 24, joint-major
_J1_DOFS = [j.dof_start for j in T.JOINTS if j.num_dofs == 1]


@dataclass
class MotionState:
    """Reference state of n samples (all world frame, xyzw).

    root_pos (n,3), root_rot (n,4), root_vel (n,3), root_angvel (n,3); local_rot (n,15,4) (root: global);
    body_pos (n,15,3), body_rot (n,15,4) (FK of local_rot); body_vel, body_angvel (n,15,3) (stored world body
    velocities at f0); joint_local_rot (n,12,4), joint_local_angvel (n,12,3) (child frame, at f0);
    key_pos (n,4,3) (right_hand, left_hand, right_foot, left_foot).
    """

    root_pos: torch.Tensor
    root_rot: torch.Tensor
    root_vel: torch.Tensor
    root_angvel: torch.Tensor
    local_rot: torch.Tensor
    body_pos: torch.Tensor
    body_rot: torch.Tensor
    body_vel: torch.Tensor
    body_angvel: torch.Tensor
    joint_local_rot: torch.Tensor
    joint_local_angvel: torch.Tensor
    key_pos: torch.Tensor

    def to(self, *args, **kwargs) -> MotionState:
        return MotionState(**{f.name: getattr(self, f.name).to(*args, **kwargs) for f in fields(self)})


def _amp_obs_of(s: MotionState) -> torch.Tensor:
    """(n, 125) AMP observations of reference states."""
    return F.amp_obs(
        s.root_pos, s.root_rot, s.root_vel, s.root_angvel, s.joint_local_rot, s.joint_local_angvel, s.key_pos
    )


def _local_angvel(local_rot: torch.Tensor, fps: float) -> torch.Tensor:
    """(T, 15, 4) local rotations -> (T, 15, 3) child-frame angular velocity, last frame copies previous."""
    num = local_rot.shape[0]
    out = torch.zeros(local_rot.shape[:-1] + (3,), dtype=local_rot.dtype)
    if num < 2:
        return out
    d = quat_mul(quat_conjugate(local_rot[:-1]), local_rot[1:])
    axis, angle = quat_to_axis_angle(d)
    out[:-1] = axis * angle.unsqueeze(-1) * fps
    out[-1] = out[-2]
    return out


class MotionLib:
    """Batched access to a `MotionDataset` on a device.

    Attributes: num_clips; clip_lengths (C,) seconds = (T−1)/fps; clip_weights (C,) normalised;
    clip_num_frames (C,) long; clip_fps (C,); clip_start (C,) long offsets into the frame arrays; clip_names.
    """

    def __init__(self, dataset: MotionDataset, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        if len(dataset.clips) == 0:
            raise ValueError("MotionLib needs a dataset with at least one clip")
        self.device = torch.device(device)
        self.dtype = dtype
        self.clip_names = [c.name for c in dataset.clips]
        f64 = torch.float64
        per: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("root_pos", "local_rot", "body_pos", "body_rot", "body_vel", "body_angvel", "local_angvel")
        }
        nframes, fps = [], []
        for clip in dataset.clips:  # loop over clips only
            lr = quat_normalize(torch.as_tensor(clip.local_rot, dtype=f64))
            rp = torch.as_tensor(clip.root_pos, dtype=f64)
            bp, br = forward_kinematics(rp, lr)
            if clip.global_vel is not None and clip.global_angvel is not None:
                gv, gav = clip.global_vel, clip.global_angvel
            else:
                gv, gav = compute_velocities(clip)
            per["root_pos"].append(rp)
            per["local_rot"].append(lr)
            per["body_pos"].append(bp)
            per["body_rot"].append(br)
            per["body_vel"].append(torch.as_tensor(np.asarray(gv), dtype=f64))
            per["body_angvel"].append(torch.as_tensor(np.asarray(gav), dtype=f64))
            per["local_angvel"].append(_local_angvel(lr, clip.fps))
            nframes.append(clip.num_frames)
            fps.append(clip.fps)

        def cat(key: str) -> torch.Tensor:
            return torch.cat(per[key], dim=0).to(device=self.device, dtype=dtype)

        self._root_pos = cat("root_pos")  # (F, 3)
        self._local_rot = cat("local_rot")  # (F, 15, 4)
        self._body_pos = cat("body_pos")  # (F, 15, 3)
        self._body_rot = cat("body_rot")  # (F, 15, 4)
        self._body_vel = cat("body_vel")  # (F, 15, 3)
        self._body_angvel = cat("body_angvel")  # (F, 15, 3)
        self._local_angvel = cat("local_angvel")  # (F, 15, 3)

        nf = torch.tensor(nframes, dtype=torch.long)
        self.clip_num_frames = nf.to(self.device)
        self.clip_start = (torch.cumsum(nf, 0) - nf).to(self.device)
        self.clip_fps = torch.tensor(fps, dtype=f64).to(device=self.device, dtype=dtype)
        self._clip_fps64 = torch.tensor(fps, dtype=f64, device=self.device)
        self.clip_lengths = ((nf.to(f64) - 1.0) / torch.tensor(fps, dtype=f64)).to(device=self.device, dtype=dtype)
        w = torch.as_tensor(np.asarray(dataset.weights, dtype=np.float64))
        self.clip_weights = (w / w.sum()).to(device=self.device, dtype=dtype)

        lo, hi = T.dof_limits()
        self._j3_lower = torch.as_tensor(lo[_J3_DOFS].reshape(-1, 3), device=self.device, dtype=dtype)
        self._j3_upper = torch.as_tensor(hi[_J3_DOFS].reshape(-1, 3), device=self.device, dtype=dtype)
        self._j3_dofs = torch.tensor(_J3_DOFS, device=self.device)
        self._j1_dofs = torch.tensor(_J1_DOFS, device=self.device)

    # ------------------------------------------------------------------------------------------ sampling

    @property
    def num_clips(self) -> int:
        return int(self.clip_num_frames.shape[0])

    @property
    def num_frames(self) -> int:
        """Total frames over all clips."""
        return int(self._root_pos.shape[0])

    def sample_clips(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n,) long clip ids drawn by weight with replacement."""
        return torch.multinomial(self.clip_weights.float(), n, replacement=True, generator=generator).to(self.device)

    def draw_clips(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n,) long clip ids drawn by weight with replacement, by inverse CDF of one uniform per draw.

        The same distribution as :meth:`sample_clips` (a different random stream); a searchsorted, never a host
        synchronisation, so batched samplers on CUDA (LLC latents, sync-free env resets) use it.
        """
        cdf = getattr(self, "_clip_cdf", None)
        if cdf is None:
            cdf = self._clip_cdf = torch.cumsum(self.clip_weights.double(), 0).to(self.device)
        u = self._rand(n, generator).to(torch.float64) * cdf[-1]
        return torch.searchsorted(cdf, u, right=True).clamp_(max=self.num_clips - 1)

    def _rand(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        dev = generator.device if generator is not None else self.device
        return torch.rand(n, generator=generator, device=dev, dtype=self.dtype).to(self.device)

    def sample_times(
        self, clip_ids: torch.Tensor, truncate: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(n,) times U(0,1) · max(L − truncate, 0) for clip ids (n,)."""
        length = self.clip_lengths[clip_ids]
        return self._rand(clip_ids.shape[0], generator) * (length - truncate).clamp_min(0.0)

    # ------------------------------------------------------------------------------------------ states

    def _frames(self, clip_ids: torch.Tensor, times: torch.Tensor):
        clip_ids = clip_ids.to(self.device).long()
        times = torch.as_tensor(times, device=self.device).to(torch.float64)
        nf = self.clip_num_frames[clip_ids]
        fps = self._clip_fps64[clip_ids]
        length = (nf - 1).to(torch.float64) / fps
        safe_len = torch.where(length > 0, length, torch.ones_like(length))
        phase = torch.where(length > 0, (times / safe_len).clamp(0.0, 1.0), torch.zeros_like(times))
        f0 = torch.floor(phase * (nf - 1) + 1e-5).long()
        f0 = torch.minimum(f0, nf - 1)
        f1 = torch.minimum(f0 + 1, nf - 1)
        blend = ((times - f0.to(torch.float64) / fps) * fps).clamp(0.0, 1.0)
        start = self.clip_start[clip_ids]
        return start + f0, start + f1, blend.to(self.dtype)

    def state(self, clip_ids: torch.Tensor, times: torch.Tensor) -> MotionState:
        """Reference state at (clip_ids (n,), times (n,) seconds) -> `MotionState` of n samples."""
        g0, g1, blend = self._frames(clip_ids, times)
        b = blend.unsqueeze(-1)
        root_pos = (1.0 - b) * self._root_pos[g0] + b * self._root_pos[g1]
        local_rot = slerp(self._local_rot[g0], self._local_rot[g1], b)
        body_pos, body_rot = forward_kinematics(root_pos, local_rot)
        jb = index_tensor(F.JOINT_BODY_IDS, local_rot.device)
        return MotionState(
            root_pos=root_pos,
            root_rot=local_rot[:, 0],
            root_vel=self._body_vel[g0, 0],
            root_angvel=self._body_angvel[g0, 0],
            local_rot=local_rot,
            body_pos=body_pos,
            body_rot=body_rot,
            body_vel=self._body_vel[g0],
            body_angvel=self._body_angvel[g0],
            joint_local_rot=local_rot[:, jb],
            joint_local_angvel=self._local_angvel[g0][:, jb],
            key_pos=body_pos[:, index_tensor(T.KEY_BODY_IDS, body_pos.device)],
        )

    def mujoco_state(
        self,
        clip_ids: torch.Tensor,
        times: torch.Tensor,
        height_offset: float = 0.0,
        rate_damping: float = DEFAULT_RATE_DAMPING,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MuJoCo qpos (n, 35) and qvel (n, 34) reproducing the reference state (dtype of the lib).

        qpos: root position (+ height_offset on z), root quaternion **wxyz**, 28 hinge angles: 3-DoF joints by
        `quat_to_euler_xyz` within the joint limits, 1-DoF joints by the twist angle about y, 2·atan2(q_y, q_w)
        wrapped to [−π, π] (exact for pure y rotations). qvel: root world linear velocity, root angular velocity
        in the root body frame (free-joint convention), hinge rates: `local_angvel_to_euler_xyz_rates` for 3-DoF
        joints, the y component of the relative angular velocity for 1-DoF joints.

        rate_damping: near gimbal lock of a 3-DoF joint (its y hinge near ±90°, |cos b| < 0.1: e.g. an arm
        raised forward, a thigh raised to horizontal) exact hinge rates grow like |ω| / |cos b| (hundreds of rad/s),
        which would inject energy through the joints' armature and damping on a reset. There the rates are the
        damped least-squares solution (`local_angvel_to_euler_xyz_rates(damping=rate_damping, singular_cos=0.1)`),
        about |ω| / 0.1 at most with the default 0.1; everywhere else they are exact. 0 gives the exact inverse.
        """
        s = self.state(clip_ids, times)
        return self.state_to_mujoco(s, height_offset, rate_damping)

    def state_to_mujoco(
        self, s: MotionState, height_offset: float = 0.0, rate_damping: float = DEFAULT_RATE_DAMPING
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """qpos (n, 35), qvel (n, 34) of a `MotionState` (see `mujoco_state`)."""
        n = s.root_pos.shape[0]
        dev, dt = s.root_pos.device, s.root_pos.dtype
        qpos = torch.zeros((n, 7 + T.NUM_DOFS), device=dev, dtype=dt)
        qvel = torch.zeros((n, 6 + T.NUM_DOFS), device=dev, dtype=dt)
        qpos[:, :3] = s.root_pos
        qpos[:, 2] += height_offset
        qpos[:, 3:7] = xyzw_to_wxyz(s.root_rot)
        j3, j1 = index_tensor(_J3, dev), index_tensor(_J1, dev)
        q3 = s.joint_local_rot[:, j3]  # (n, 8, 4)
        e3 = quat_to_euler_xyz(q3, self._j3_lower.to(dt), self._j3_upper.to(dt))  # (n, 8, 3)
        q1 = s.joint_local_rot[:, j1]  # (n, 4, 4)
        a1 = wrap_angle(2.0 * torch.atan2(q1[..., 1], q1[..., 3]))
        qpos[:, 7 + self._j3_dofs] = e3.reshape(n, -1)
        qpos[:, 7 + self._j1_dofs] = a1
        qvel[:, :3] = s.root_vel
        qvel[:, 3:6] = quat_rotate_inverse(s.root_rot, s.root_angvel)
        r3 = local_angvel_to_euler_xyz_rates(e3, s.joint_local_angvel[:, j3], damping=rate_damping, singular_cos=0.1)
        qvel[:, 6 + self._j3_dofs] = r3.reshape(n, -1)
        qvel[:, 6 + self._j1_dofs] = s.joint_local_angvel[:, j1, 1]
        return qpos, qvel

    # ------------------------------------------------------------------------------------------ AMP demos

    def amp_obs(self, clip_ids: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """(n, 125) AMP observations of the reference at (clip_ids (n,), times (n,))."""
        return _amp_obs_of(self.state(clip_ids, times))

    def demo_windows(
        self, clip_ids: torch.Tensor, end_times: torch.Tensor, num_steps: int, dt: float = T.CONTROL_DT
    ) -> torch.Tensor:
        """(n, num_steps, 125) AMP windows, newest first: step k is at end_times − k·dt (clipped at 0)."""
        ids, t = self._window_grid(clip_ids, end_times, num_steps, dt)
        return self.amp_obs(ids.reshape(-1), t.reshape(-1)).reshape(*ids.shape, -1)

    def start_states(
        self,
        clip_ids: torch.Tensor,
        times: torch.Tensor,
        num_steps: int,
        dt: float = T.CONTROL_DT,
        height_offset: float = 0.0,
        rate_damping: float = DEFAULT_RATE_DAMPING,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Episode starts at (clip_ids (n,), times (n,)): ``mujoco_state`` qpos (n, 35), qvel (n, 34) and the AMP
        history ``demo_windows`` (n, num_steps, 125), from one reference-state pass (a window's step 0 *is* the
        start state, so it is not computed twice)."""
        ids, t = self._window_grid(clip_ids, times, num_steps, dt)
        n = ids.shape[0]
        s = self.state(ids.reshape(-1), t.reshape(-1))
        first = MotionState(**{f.name: getattr(s, f.name).unflatten(0, (n, num_steps))[:, 0] for f in fields(s)})
        qpos, qvel = self.state_to_mujoco(first, height_offset, rate_damping)
        return qpos, qvel, _amp_obs_of(s).reshape(n, num_steps, -1)

    def _window_grid(
        self, clip_ids: torch.Tensor, end_times: torch.Tensor, num_steps: int, dt: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, num_steps) clip ids and float64 times end_times − k·dt (clipped at 0) of windows, newest first."""
        clip_ids = clip_ids.to(self.device).long()
        n = clip_ids.shape[0]
        end_times = torch.as_tensor(end_times, device=self.device, dtype=torch.float64)
        steps = torch.arange(num_steps, device=self.device, dtype=torch.float64)
        t = (end_times.unsqueeze(-1) - dt * steps.unsqueeze(0)).clamp_min(0.0)
        return clip_ids.unsqueeze(-1).expand(n, num_steps), t

    def _window_end_times(self, clip_ids: torch.Tensor, steps: int, dt: float, generator) -> torch.Tensor:
        """t = U(0, max(L − W, 0)) + min(L, W) with W = (steps − 1)·dt: a full window inside the clip if it fits."""
        length = self.clip_lengths[clip_ids]
        w = (steps - 1) * dt
        return self._rand(clip_ids.shape[0], generator) * (length - w).clamp_min(0.0) + length.clamp(max=w)

    def fetch_enc_amp_pair(
        self,
        n: int,
        enc_steps: int = 60,
        amp_steps: int = 10,
        dt: float = T.CONTROL_DT,
        generator: torch.Generator | None = None,
        return_ids: bool = False,
    ):
        """Encoder window (n, enc_steps, 125) and an AMP window (n, amp_steps, 125) inside it (spec §2.4).

        t_e = U(0, max(L − W, 0)) + min(L, W), W = (enc_steps − 1)·dt; t_a = t_e − U(0,1)·max(min(L, W) −
        amp_steps·dt, 0). With return_ids, also returns the clip ids (n,).
        """
        ids = self.sample_clips(n, generator)
        length = self.clip_lengths[ids]
        w = (enc_steps - 1) * dt
        t_e = self._window_end_times(ids, enc_steps, dt, generator)
        t_a = t_e - self._rand(n, generator) * (length.clamp(max=w) - amp_steps * dt).clamp_min(0.0)
        enc = self.demo_windows(ids, t_e, enc_steps, dt)
        amp = self.demo_windows(ids, t_a, amp_steps, dt)
        return (enc, amp, ids) if return_ids else (enc, amp)

    def fetch_alignment_pair(
        self,
        n: int,
        enc_steps: int = 60,
        max_shift: float = 0.5,
        dt: float = T.CONTROL_DT,
        generator: torch.Generator | None = None,
        return_ids: bool = False,
    ):
        """Two (n, enc_steps, 125) windows of the same clips, ending at t0 and min(t0 + U(0, max_shift), L)."""
        ids = self.sample_clips(n, generator)
        length = self.clip_lengths[ids]
        t0 = self._window_end_times(ids, enc_steps, dt, generator)
        t1 = torch.minimum(t0 + self._rand(n, generator) * max_shift, length)
        w0 = self.demo_windows(ids, t0, enc_steps, dt)
        w1 = self.demo_windows(ids, t1, enc_steps, dt)
        return (w0, w1, ids) if return_ids else (w0, w1)

    def windows_per_clip(
        self, k: int, clip_id: int, steps: int = 60, dt: float = T.CONTROL_DT, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """k windows (k, steps, 125) of one clip, end times drawn as for encoder windows."""
        ids = torch.full((k,), int(clip_id), dtype=torch.long, device=self.device)
        t = self._window_end_times(ids, steps, dt, generator)
        return self.demo_windows(ids, t, steps, dt)
