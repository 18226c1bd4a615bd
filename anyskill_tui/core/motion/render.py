"""Kinematic playback of a clip, rendered headless on the CPU with `mujoco.Renderer`.

Every frame sets the character's qpos from the clip (MotionLib's `mujoco_state`, the state the simulator would
be reset to), runs `mj_kinematics`, and renders from a free camera that follows the pelvis horizontally at a
fixed height. Without a display, `MUJOCO_GL` defaults to `egl` (set before mujoco is first imported).

Videos are written with imageio: `.mp4` through imageio-ffmpeg (libx264, yuv420p), `.gif` through Pillow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anyskill_tui.core.gl import ensure_headless_gl, prefer_egl_env
from anyskill_tui.core.motion.clip import Clip

prefer_egl_env()

__all__ = ["CameraSpec", "VIDEO_SUFFIXES", "render_frames", "write_video", "render_clip", "contact_sheet"]

VIDEO_SUFFIXES = (".mp4", ".gif")


@dataclass(frozen=True)
class CameraSpec:
    """A free camera tracking the pelvis: distance (m), azimuth and elevation (deg, MuJoCo convention:
    azimuth 0 looks along +x), and the look-at height (m)."""

    distance: float = 3.0
    azimuth: float = 235.0
    elevation: float = -12.0
    lookat_height: float = 0.8


def _renderer(size: int):
    import mujoco

    ensure_headless_gl()

    from anyskill_tui.core.character.model import load_model

    m = load_model()
    m.vis.global_.offwidth = max(int(m.vis.global_.offwidth), size)
    m.vis.global_.offheight = max(int(m.vis.global_.offheight), size)
    return m, mujoco.MjData(m), mujoco.Renderer(m, size, size)


def render_frames(
    clip: Clip,
    size: int = 320,
    camera: CameraSpec | None = None,
    frames: list[int] | None = None,
    track: bool = True,
    progress_bar: bool = False,
) -> list[np.ndarray]:
    """RGB uint8 images (size, size, 3) of the given frame indices (default: every frame).

    With `track` the camera follows the pelvis (x, y); otherwise it looks at the clip's mean pelvis position.
    With `progress_bar` a 2-pixel bar along the bottom shows the playback position (it also keeps GIF writers
    from merging identical consecutive frames, so a video has exactly one image per clip frame).
    """
    import mujoco

    from anyskill_tui.core.motion.plausibility import clip_qpos

    cam_spec = camera or CameraSpec()
    qpos = clip_qpos(clip)
    idx = list(range(clip.num_frames)) if frames is None else list(frames)
    m, d, renderer = _renderer(size)
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.distance = cam_spec.distance
    cam.azimuth = cam_spec.azimuth
    cam.elevation = cam_spec.elevation
    centre = qpos[:, :2].mean(0)
    out = []
    try:
        for t in idx:
            d.qpos[:] = qpos[t]
            mujoco.mj_kinematics(m, d)
            xy = qpos[t, :2] if track else centre
            cam.lookat[:] = (float(xy[0]), float(xy[1]), cam_spec.lookat_height)
            renderer.update_scene(d, camera=cam)
            img = renderer.render().copy()
            if progress_bar:
                w = int(round(size * (t + 1) / clip.num_frames))
                img[-2:, :w] = (255, 200, 40)
                img[-2:, w:] = (30, 30, 30)
            out.append(img)
    finally:
        renderer.close()
    return out


def write_video(frames: list[np.ndarray], path: str | os.PathLike, fps: float) -> Path:
    """Write RGB frames as .mp4 (H.264) or .gif; returns the path."""
    import imageio.v2 as imageio

    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".mp4":
        writer = imageio.get_writer(
            path, fps=fps, codec="libx264", quality=7, pixelformat="yuv420p", macro_block_size=16
        )
        try:
            for f in frames:
                writer.append_data(f)
        finally:
            writer.close()
    elif suffix == ".gif":
        imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)
    else:
        raise ValueError(f"unsupported video suffix {suffix!r}; use one of {', '.join(VIDEO_SUFFIXES)}")
    return path


def render_clip(
    clip: Clip, out: str | os.PathLike, size: int = 320, camera: CameraSpec | None = None, fps: float | None = None
) -> Path:
    """Render every frame of a clip (with a playback progress bar) to `out` (.mp4 or .gif) at the clip's fps."""
    frames = render_frames(clip, size=size, camera=camera, progress_bar=True)
    return write_video(frames, out, fps or clip.fps)


def contact_sheet(images: list[np.ndarray], labels: list[str], columns: int = 4) -> np.ndarray:
    """Tile equally sized RGB images into one image with a label strip under each; returns uint8 (H, W, 3)."""
    from PIL import Image, ImageDraw

    h, w = images[0].shape[:2]
    strip = 18
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * w, rows * (h + strip)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        r, c = divmod(i, columns)
        sheet.paste(Image.fromarray(img), (c * w, r * (h + strip)))
        draw.text((c * w + 4, r * (h + strip) + h + 3), label, fill=(0, 0, 0))
    return np.asarray(sheet)
