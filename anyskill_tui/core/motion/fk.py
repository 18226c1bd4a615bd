"""Forward kinematics of the 15-body character, in torch, batched over leading dimensions.

Conventions: quaternions xyzw; the root's (body 0) local rotation is its global rotation; every other body's
local rotation is relative to its parent (q_global_child = q_global_parent ⊗ q_local_child), and its origin sits
at `tables.LOCAL_TRANSLATION[b]` in the parent frame. All bodies have identity orientation in the rest pose, so
a joint's local rotation equals q_parent⁻¹ ⊗ q_child. The loop runs over the 15 bodies only (never samples).
"""

from __future__ import annotations

import torch

from anyskill_tui.core.character import tables as T
from anyskill_tui.core.device_cache import const_tensor, index_tensor
from anyskill_tui.core.motion.quat import quat_conjugate, quat_mul, quat_rotate

__all__ = ["forward_kinematics", "local_to_global_rot", "global_to_local_rot", "local_translation"]


def local_translation(device=None, dtype=torch.float32) -> torch.Tensor:
    """(15, 3) body offsets from their parents (tables.LOCAL_TRANSLATION) as a tensor."""
    return const_tensor("local_translation", T.LOCAL_TRANSLATION, device or "cpu", dtype)


def local_to_global_rot(local_rot: torch.Tensor) -> torch.Tensor:
    """Local rotations (..., 15, 4) -> global body rotations (..., 15, 4)."""
    out = [local_rot[..., 0, :]]
    for b in range(1, T.NUM_BODIES):
        out.append(quat_mul(out[T.PARENT_INDICES[b]], local_rot[..., b, :]))
    return torch.stack(out, dim=-2)


def global_to_local_rot(global_rot: torch.Tensor) -> torch.Tensor:
    """Global body rotations (..., 15, 4) -> local rotations (..., 15, 4) (root unchanged)."""
    parents = index_tensor(T.PARENT_INDICES[1:], global_rot.device)
    parent_rot = global_rot[..., parents, :]
    rest = quat_mul(quat_conjugate(parent_rot), global_rot[..., 1:, :])
    return torch.cat((global_rot[..., :1, :], rest), dim=-2)


def forward_kinematics(
    root_pos: torch.Tensor, local_rot: torch.Tensor, offsets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """World body positions and rotations from the root position and local rotations.

    root_pos: (..., 3) world position of the pelvis origin; local_rot: (..., 15, 4) xyzw (root's is global);
    offsets: optional (15, 3) local translations (default tables.LOCAL_TRANSLATION; the root row is ignored).
    Returns body_pos (..., 15, 3) and body_rot (..., 15, 4).
    """
    if offsets is None:
        offsets = local_translation(local_rot.device, local_rot.dtype)
    pos = [root_pos]
    rot = [local_rot[..., 0, :]]
    for b in range(1, T.NUM_BODIES):
        p = T.PARENT_INDICES[b]
        rot.append(quat_mul(rot[p], local_rot[..., b, :]))
        pos.append(pos[p] + quat_rotate(rot[p], offsets[b].expand_as(pos[p])))
    return torch.stack(pos, dim=-2), torch.stack(rot, dim=-2)
