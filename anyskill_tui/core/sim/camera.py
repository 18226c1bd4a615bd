"""Pose of the per-env tracking camera, shared by both engines (see `backend.CameraSpec`).

- `tracking_camera_pose(root_pos, spec)`: camera position and look-at point per env;
- `look_at_matrix(cam_pos, lookat)`: the camera orientation in MuJoCo's `cam_xmat` convention (columns: camera x
  = right, y = up, z = backward; the camera looks along -z), what a backend writes per world into
  `cam_xpos` / `cam_xmat` of the model's `track` camera;
- `free_camera_params(cam_pos, lookat)` / `set_free_camera(...)`: the same pose as a `mujoco.MjvCamera` free camera
  (lookat, distance, azimuth, elevation), for `mujoco.Renderer` and the viewer window.

All functions are batched torch (any leading shape, any device/dtype); no Python loop over envs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from anyskill_tui.core.sim.backend import CameraSpec

if TYPE_CHECKING:  # pragma: no cover
    import mujoco

__all__ = [
    "tracking_camera_pose",
    "look_at_matrix",
    "free_camera_params",
    "set_free_camera",
]

_EPS = 1e-9


def tracking_camera_pose(root_pos: torch.Tensor, spec: CameraSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera position and look-at point (..., 3) each, for root positions (..., 3) (world frame).

    position = (root_x + d cos(az), root_y + d sin(az), elevation_height); look-at = (root_x, root_y,
    lookat_height). Only the root's horizontal motion is followed.
    """
    az = math.radians(spec.azimuth_deg)
    offset = torch.tensor(
        [spec.distance * math.cos(az), spec.distance * math.sin(az)], dtype=root_pos.dtype, device=root_pos.device
    )
    xy = root_pos[..., :2]
    cam_z = torch.full_like(root_pos[..., 2:3], spec.elevation_height)
    look_z = torch.full_like(root_pos[..., 2:3], spec.lookat_height)
    cam_pos = torch.cat((xy + offset, cam_z), dim=-1)
    lookat = torch.cat((xy, look_z), dim=-1)
    return cam_pos, lookat


def look_at_matrix(cam_pos: torch.Tensor, lookat: torch.Tensor) -> torch.Tensor:
    """Orientation (..., 3, 3) of a camera at `cam_pos` looking at `lookat`, world z up, no roll.

    Columns are the camera axes in world coordinates, as MuJoCo's `cam_xmat` (row-major 3x3 reshaped to 9):
    x = right, y = up, z = backward (pointing from the look-at point to the camera). A camera looking straight
    down or up (degenerate) takes world +x as its up reference instead of z.
    """
    back = cam_pos - lookat
    back = back / back.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    world_up = torch.zeros_like(back)
    world_up[..., 2] = 1.0
    right = torch.linalg.cross(world_up, back, dim=-1)
    n = right.norm(dim=-1, keepdim=True)
    alt_up = torch.zeros_like(back)
    alt_up[..., 0] = 1.0
    right_alt = torch.linalg.cross(alt_up, back, dim=-1)
    right = torch.where(n > 1e-6, right, right_alt)
    right = right / right.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    up = torch.linalg.cross(back, right, dim=-1)
    return torch.stack((right, up, back), dim=-1)


def free_camera_params(
    cam_pos: torch.Tensor, lookat: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pose as MuJoCo free-camera parameters: lookat (..., 3), distance, azimuth (deg), elevation (deg) (...).

    MuJoCo places a free camera at lookat - distance * f with f = (cos el cos az, cos el sin az, sin el); here
    f = (lookat - cam_pos) / distance.
    """
    fwd = lookat - cam_pos
    dist = fwd.norm(dim=-1)
    f = fwd / dist.clamp_min(_EPS).unsqueeze(-1)
    azimuth = torch.rad2deg(torch.atan2(f[..., 1], f[..., 0]))
    elevation = torch.rad2deg(torch.asin(f[..., 2].clamp(-1.0, 1.0)))
    return lookat, dist, azimuth, elevation


def set_free_camera(cam: mujoco.MjvCamera, cam_pos, lookat) -> mujoco.MjvCamera:
    """Make `cam` a free camera at `cam_pos` (3,) looking at `lookat` (3,) (tensors or arrays); returns it."""
    import mujoco

    p = torch.as_tensor(cam_pos, dtype=torch.float64)
    la = torch.as_tensor(lookat, dtype=torch.float64)
    la, dist, az, el = free_camera_params(p, la)
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.fixedcamid = -1
    cam.trackbodyid = -1
    cam.lookat[:] = la.numpy()
    cam.distance = float(dist)
    cam.azimuth = float(az)
    cam.elevation = float(el)
    return cam
