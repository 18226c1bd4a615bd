"""Tracking-camera pose math (core/sim/camera.py): conventions and agreement with MuJoCo's own cameras."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from anyskill_tui.core.sim.backend import CameraSpec
from anyskill_tui.core.sim.camera import free_camera_params, look_at_matrix, set_free_camera, tracking_camera_pose

ROOTS = torch.tensor([[0.0, 0.0, 0.89], [1.5, -2.0, 0.3], [-3.0, 4.0, 1.2]], dtype=torch.float64)


def test_tracking_pose_follows_root_xy_only():
    spec = CameraSpec(distance=3.0, elevation_height=1.2, lookat_height=0.9, azimuth_deg=20.0)
    cam, look = tracking_camera_pose(ROOTS, spec)
    az = math.radians(20.0)
    expect = ROOTS.clone()
    expect[:, 0] += 3.0 * math.cos(az)
    expect[:, 1] += 3.0 * math.sin(az)
    expect[:, 2] = 1.2
    torch.testing.assert_close(cam, expect)
    torch.testing.assert_close(look[:, :2], ROOTS[:, :2])
    assert torch.all(look[:, 2] == 0.9)


def test_look_at_matrix_is_mujoco_cam_xmat():
    spec = CameraSpec()
    cam, look = tracking_camera_pose(ROOTS, spec)
    R = look_at_matrix(cam, look)
    assert R.shape == (3, 3, 3)
    eye = torch.eye(3, dtype=R.dtype).expand(3, 3, 3)
    torch.testing.assert_close(R.transpose(-1, -2) @ R, eye)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(3, dtype=R.dtype))
    fwd = (look - cam) / (look - cam).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(-R[..., 2], fwd)  # looks along -z
    assert torch.all(R[..., 2, 0].abs() < 1e-12)  # x (right) is horizontal: no roll
    assert torch.all(R[..., 2, 1] > 0)  # y points up
    # the model's default `track` camera (pos 3 0 1, xyaxes 0 1 0 -0.2 0 1) is a look-at pose of this kind
    R0 = look_at_matrix(torch.tensor([[3.0, 0.0, 1.0]]), torch.tensor([[0.0, 0.0, 0.4]]))
    torch.testing.assert_close(R0[0, :, 0], torch.tensor([0.0, 1.0, 0.0]))


def test_degenerate_straight_down():
    R = look_at_matrix(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[0.0, 0.0, 0.0]]))
    assert torch.isfinite(R).all()
    torch.testing.assert_close(R[0].T @ R[0], torch.eye(3))


def test_free_camera_matches_mujoco_scene_camera():
    mujoco = pytest.importorskip("mujoco")
    from anyskill_tui.core.character.model import load_model

    m = load_model()
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    opt, scn, pert = mujoco.MjvOption(), mujoco.MjvScene(m, maxgeom=100), mujoco.MjvPerturb()
    spec = CameraSpec(azimuth_deg=-70.0, distance=2.5)
    cam, look = tracking_camera_pose(ROOTS, spec)
    R = look_at_matrix(cam, look)
    for i in range(ROOTS.shape[0]):
        mcam = set_free_camera(mujoco.MjvCamera(), cam[i], look[i])
        mujoco.mjv_updateScene(m, d, opt, pert, mcam, mujoco.mjtCatBit.mjCAT_ALL, scn)
        gl = mujoco.mjv_averageCamera(scn.camera[0], scn.camera[1])
        np.testing.assert_allclose(gl.pos, cam[i].numpy(), atol=1e-5)
        np.testing.assert_allclose(gl.forward, -R[i, :, 2].numpy(), atol=1e-5)
        np.testing.assert_allclose(gl.up, R[i, :, 1].numpy(), atol=1e-5)
    la, dist, az, el = free_camera_params(cam, look)
    torch.testing.assert_close(dist, torch.full((3,), spec.distance, dtype=dist.dtype).hypot(torch.tensor(0.3)))
    assert torch.all(el < 0)  # the camera is above the look-at point
