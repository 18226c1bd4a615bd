"""Observation features from body-level state (spec §3), shared by demos (MotionLib) and the simulator.

Everything is computed from world body positions, rotations and velocities, never from hinge coordinates, so
demo features and simulated features agree by construction whatever the joint parameterisation (spec §1.6.4).

Conventions: torch, batched over leading dims `...`, quaternions xyzw, world frame z up. Bodies in table order
(15), joints in `tables.JOINTS` order (12), DoFs in model order (28). "H" is the heading rotation of the root
(yaw about z of R(q_root) x̂); all heading-relative quantities are rotated by H⁻¹.

    joint_local_state(body_rot, body_angvel) -> (local_rot (...,12,4), local_angvel (...,12,3))
    dof_obs(local_rot) -> (..., 72)
    dof_vel_obs(local_angvel) -> (..., 28)
    amp_obs(root_pos, root_rot, root_vel, root_angvel, local_rot, local_angvel, key_pos) -> (..., 125)
    policy_obs(body_pos, body_rot, body_vel, body_angvel) -> (..., 223)
"""

from __future__ import annotations

import torch

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.device_cache import index_tensor
from anyskill_tui.core.motion.quat import (
    heading_quat_inv,
    quat_conjugate,
    quat_mul,
    quat_rotate,
    quat_rotate_inverse,
    tan_norm,
)

__all__ = [
    "POLICY_OBS_DIM",
    "AMP_OBS_DIM",
    "DOF_OBS_DIM",
    "JOINT_BODY_IDS",
    "JOINT_PARENT_IDS",
    "joint_local_state",
    "dof_obs",
    "dof_vel_obs",
    "amp_obs",
    "policy_obs",
]

POLICY_OBS_DIM = 1 + (T.NUM_BODIES - 1) * 3 + T.NUM_BODIES * (6 + 3 + 3)  # 223
DOF_OBS_DIM = T.NUM_JOINTS * 6  # 72
AMP_OBS_DIM = 13 + DOF_OBS_DIM + T.NUM_DOFS + 3 * len(T.KEY_BODY_IDS)  # 125

#: child body of each joint, and its parent body
JOINT_BODY_IDS: tuple[int, ...] = tuple(j.body for j in T.JOINTS)
JOINT_PARENT_IDS: tuple[int, ...] = tuple(T.PARENT_INDICES[j.body] for j in T.JOINTS)
#: for each of the 28 DoFs: (joint index, component of the joint's 3-vector): full vector for 3-DoF, y for 1-DoF
_DOF_JOINT = [ji for ji, j in enumerate(T.JOINTS) for _ in range(j.num_dofs)]
_DOF_COMP = [c for j in T.JOINTS for c in ((0, 1, 2) if j.num_dofs == 3 else (1,))]
_DOF_FLAT = [ji * 3 + c for ji, c in zip(_DOF_JOINT, _DOF_COMP, strict=True)]


def joint_local_state(body_rot: torch.Tensor, body_angvel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-joint local rotation and relative angular velocity from world body state.

    body_rot: (..., 15, 4) world rotations; body_angvel: (..., 15, 3) world angular velocities.
    Returns local_rot (..., 12, 4) = q_parent⁻¹ ⊗ q_child and local_angvel (..., 12, 3) = R_childᵀ(ω_child −
    ω_parent) (the child's angular velocity relative to its parent, in the child frame), joints in tables order.
    """
    child = index_tensor(JOINT_BODY_IDS, body_rot.device)
    parent = index_tensor(JOINT_PARENT_IDS, body_rot.device)
    q_c = body_rot[..., child, :]
    q_p = body_rot[..., parent, :]
    local_rot = quat_mul(quat_conjugate(q_p), q_c)
    rel = body_angvel[..., child, :] - body_angvel[..., parent, :]
    local_angvel = quat_rotate_inverse(q_c, rel)
    return local_rot, local_angvel


def dof_obs(local_rot: torch.Tensor) -> torch.Tensor:
    """(..., 12, 4) joint local rotations -> (..., 72): tan-norm of each, joints in tables order."""
    tn = tan_norm(local_rot)
    return tn.reshape(tn.shape[:-2] + (DOF_OBS_DIM,))


def dof_vel_obs(local_angvel: torch.Tensor) -> torch.Tensor:
    """(..., 12, 3) joint relative angular velocities -> (..., 28) in DoF order.

    3-DoF joints contribute their full child-frame 3-vector, 1-DoF (y-hinge) joints its y component.
    """
    flat = local_angvel.reshape(local_angvel.shape[:-2] + (T.NUM_JOINTS * 3,))
    return flat[..., index_tensor(_DOF_FLAT, flat.device)]


def amp_obs(
    root_pos: torch.Tensor,
    root_rot: torch.Tensor,
    root_vel: torch.Tensor,
    root_angvel: torch.Tensor,
    local_rot: torch.Tensor,
    local_angvel: torch.Tensor,
    key_pos: torch.Tensor,
) -> torch.Tensor:
    """One AMP observation step (spec §3.2), (..., 125).

    root_pos (..., 3), root_rot (..., 4), root_vel (..., 3) and root_angvel (..., 3) in world;
    local_rot (..., 12, 4) and local_angvel (..., 12, 3) from `joint_local_state`; key_pos (..., 4, 3) world
    positions of right_hand, left_hand, right_foot, left_foot. Layout: [0] root height; [1:7]
    tan-norm(H⁻¹ ⊗ q_root); [7:10] H⁻¹ v_root; [10:13] H⁻¹ ω_root; [13:85] joint tan-norms; [85:113] DoF
    velocities; [113:125] H⁻¹ (p_key − p_root) for the 4 key bodies.
    """
    h_inv = heading_quat_inv(root_rot)
    root_h = root_pos[..., 2:3]
    root_tn = tan_norm(quat_mul(h_inv, root_rot))
    v = quat_rotate(h_inv, root_vel)
    w = quat_rotate(h_inv, root_angvel)
    rel_key = key_pos - root_pos.unsqueeze(-2)
    key = quat_rotate(h_inv.unsqueeze(-2), rel_key)
    key = key.reshape(key.shape[:-2] + (key.shape[-2] * 3,))
    return torch.cat((root_h, root_tn, v, w, dof_obs(local_rot), dof_vel_obs(local_angvel), key), dim=-1)


def policy_obs(
    body_pos: torch.Tensor, body_rot: torch.Tensor, body_vel: torch.Tensor, body_angvel: torch.Tensor
) -> torch.Tensor:
    """The 223-d humanoid observation (spec §3.1) from world body state, (..., 223).

    body_pos (..., 15, 3), body_rot (..., 15, 4), body_vel (..., 15, 3) (body-origin linear velocity),
    body_angvel (..., 15, 3). Layout: [0] root height; [1:43] H⁻¹(p_b − p_root) for bodies 1..14;
    [43:133] tan-norm(H⁻¹ ⊗ q_b) for 15 bodies; [133:178] H⁻¹ v_b; [178:223] H⁻¹ ω_b.
    """
    root_pos = body_pos[..., 0, :]
    h_inv = heading_quat_inv(body_rot[..., 0, :]).unsqueeze(-2)  # (..., 1, 4)
    lead = body_pos.shape[:-2]
    rel = quat_rotate(h_inv, body_pos[..., 1:, :] - root_pos.unsqueeze(-2)).reshape(lead + (-1,))
    rot = tan_norm(quat_mul(h_inv, body_rot)).reshape(lead + (-1,))
    vel = quat_rotate(h_inv, body_vel).reshape(lead + (-1,))
    ang = quat_rotate(h_inv, body_angvel).reshape(lead + (-1,))
    return torch.cat((root_pos[..., 2:3], rel, rot, vel, ang), dim=-1)
