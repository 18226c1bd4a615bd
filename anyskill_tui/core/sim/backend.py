"""The interface every physics engine implements for N humanoid worlds: `cpu` (C MuJoCo) and `gpu` (MuJoCo Warp).

A backend owns N copies of one MuJoCo model and exposes the state the learners need as torch tensors of shape
`(num_envs, ...)` on `self.device`, refreshed after `step()` and `set_state()` so that they describe the *current*
state (positions and velocities after the last substep, not one substep behind as `mj_step` leaves them).

Frames and orders (the conventions of the whole project):
- quaternions are **xyzw** in every tensor here (MuJoCo's wxyz is converted inside the backend);
- `body_*` tensors cover the 15 character bodies in `tables.BODY_NAMES` order (MuJoCo body ids 1..15);
- `body_vel` is the world-frame linear velocity of each body's origin, `body_angvel` its world-frame angular
  velocity;
- `qpos` is MuJoCo's (N, nq) layout: root position, root quaternion **wxyz**, then 28 hinge angles; `qvel` is
  (N, nv): root linear velocity (world), root angular velocity (**body frame**, as MuJoCo's free joint), then
  28 hinge rates. Scene objects, if any, follow the character in both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class CameraSpec:
    """A camera that tracks the character: placed relative to the root's xy, looking at it.

    position = (root_x, root_y, 0) + (distance * cos(azimuth), distance * sin(azimuth), height), azimuth in
    degrees in the world frame (0: on the +x axis, in front of a character at rest); it looks at
    (root_x, root_y, lookat_height). The camera follows only the root's horizontal motion, so a jump or a crouch
    shows as motion in the image.
    """

    width: int = 224
    height: int = 224
    distance: float = 3.0
    elevation_height: float = 1.2
    lookat_height: float = 0.9
    azimuth_deg: float = 20.0
    fovy_deg: float = 45.0


class SimBackend(ABC):
    """N worlds of the humanoid; see the module docstring for the tensor conventions."""

    num_envs: int
    device: torch.device
    #: (N, 15, 3) world body origin positions
    body_pos: torch.Tensor
    #: (N, 15, 4) world body orientations, xyzw
    body_rot: torch.Tensor
    #: (N, 15, 3) world linear velocity of each body origin
    body_vel: torch.Tensor
    #: (N, 15, 3) world angular velocity of each body
    body_angvel: torch.Tensor
    #: (N, 15) bool: the body touches something (floor, another body, an object) with a normal force > 0.1 N
    body_contact: torch.Tensor
    #: (N, nq) and (N, nv): MuJoCo generalized coordinates and velocities (see module docstring)
    qpos: torch.Tensor
    qvel: torch.Tensor

    @abstractmethod
    def step(self, pd_target: torch.Tensor, substeps: int) -> None:
        """Hold the (N, 28) PD targets (radians, DoF order) for `substeps` physics steps, then refresh state."""

    @abstractmethod
    def set_state(self, env_ids: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        """Write (n, nq) qpos and (n, nv) qvel into the worlds `env_ids` (n,), then refresh their derived state."""

    @abstractmethod
    def render(self, camera: CameraSpec) -> torch.Tensor:
        """RGB frames of every world from a camera tracking its character: (N, 3, H, W) float32 in [0, 1]."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release threads, GPU buffers or GL contexts."""
