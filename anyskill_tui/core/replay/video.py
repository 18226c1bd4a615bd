"""Writing replay frames: `.mp4` (H.264 through imageio-ffmpeg, streamed frame by frame) or `.gif` (Pillow,
through `core.motion.render.write_video`), and contact sheets.

mp4 frames keep their exact size: yuv420p needs even sides, so an odd height or width is padded by one black
row or column (never rescaled). GIF delays are in 10 ms units, so 30 fps plays at about 33 fps in most viewers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from anyskill_tui.errors import UserError

__all__ = ["VIDEO_SUFFIXES", "check_video_path", "write_frames", "contact_sheet", "pick_frames"]

VIDEO_SUFFIXES = (".mp4", ".gif")


def check_video_path(path: str | os.PathLike) -> Path:
    """`path` as a Path when it ends in .mp4 or .gif; a UserError otherwise."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"--out {p}: write a .mp4 or a .gif (got {p.suffix or 'no extension'})")
    if p.exists() and p.is_dir():
        raise UserError(f"--out {p} is a folder: give a file name ending in .mp4 or .gif")
    return p


def _even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))


def write_frames(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float) -> tuple[Path, int]:
    """Write RGB uint8 frames (H, W, 3) to `path` (.mp4 streamed, .gif); returns (path, frame count).

    The file appears complete or not at all: it is written beside under a temporary name, then renamed.
    """
    path = check_video_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    count = 0
    try:
        if path.suffix.lower() == ".mp4":
            import imageio.v2 as imageio

            writer = imageio.get_writer(
                tmp, fps=fps, codec="libx264", quality=7, pixelformat="yuv420p", macro_block_size=1
            )
            try:
                for f in frames:
                    writer.append_data(_even(np.asarray(f, dtype=np.uint8)))
                    count += 1
            finally:
                writer.close()
        else:
            from anyskill_tui.core.motion.render import write_video

            buf = [np.asarray(f, dtype=np.uint8) for f in frames]
            count = len(buf)
            if count:
                write_video(buf, tmp, fps)
        if count == 0:
            raise UserError(f"{path}: no frames to write")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path, count


def pick_frames(num: int, count: int = 8) -> list[int]:
    """`count` frame indices spread evenly over `num` frames (first and last included)."""
    if num <= 0:
        return []
    count = max(1, min(count, num))
    if count == 1:
        return [0]
    return sorted({int(round(i * (num - 1) / (count - 1))) for i in range(count)})


def contact_sheet(frames: list[np.ndarray], labels: list[str], columns: int = 4) -> np.ndarray:
    """Frames tiled with a label strip under each (`core.motion.render.contact_sheet`)."""
    from anyskill_tui.core.motion.render import contact_sheet as sheet

    return sheet(frames, labels, columns=columns)
