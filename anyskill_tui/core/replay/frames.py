"""Replay frames: captions and the grid of envs (PIL), and the frame source the TUI's Replay screen polls.

A replay frame is the envs' camera images tiled in a near-square grid (cols = ceil(sqrt(K)), rows =
ceil(K / cols); empty cells black), each tile captioned with PIL's default font: the prompt or clip name at the
top, `t 1.23 s · step 37` at the bottom, on dark bands; light 2-pixel lines between cells, and a 2-pixel
playback bar along the bottom edge of the frame. Frames are HxWx3 uint8 arrays: H = rows * tile height,
W = cols * tile width.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

#: colour of the lines between grid cells
SEPARATOR = (200, 200, 200)

__all__ = ["grid_shape", "caption_tile", "compose_frame", "ReplayFrameSource", "frame_source", "render_rollout"]


def grid_shape(k: int) -> tuple[int, int]:
    """(rows, cols) of a near-square grid of k tiles (cols >= rows)."""
    k = max(1, int(k))
    cols = math.ceil(math.sqrt(k))
    return math.ceil(k / cols), cols


@lru_cache(maxsize=16)
def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # pragma: no cover - Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _fit_text(draw, text: str, font, width: int) -> str:
    """`text` shortened with an ellipsis to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def caption_tile(img: np.ndarray, title: str, subtitle: str) -> np.ndarray:
    """A copy of `img` (H, W, 3) uint8 with `title` on a dark band at the top and `subtitle` at the bottom."""
    from PIL import Image, ImageDraw

    h, w = img.shape[:2]
    px = max(8, min(18, round(min(h, w) / 18)))
    font = _font(px)
    band = px + max(2, px // 3)
    im = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).convert("RGB")
    overlay = Image.new("RGBA", im.size, (0, 0, 0, 0))
    od = ImageDraw.Draw(overlay)
    pad = max(2, px // 4)
    if title:
        od.rectangle((0, 0, w, band), fill=(12, 14, 20, 170))
    if subtitle:
        od.rectangle((0, h - band, w, h), fill=(12, 14, 20, 150))
    im = Image.alpha_composite(im.convert("RGBA"), overlay).convert("RGB")
    d = ImageDraw.Draw(im)
    if title:
        d.text((pad, (band - px) // 2), _fit_text(d, title, font, w - 2 * pad), font=font, fill=(255, 255, 255))
    if subtitle:
        y = h - band + (band - px) // 2
        d.text((pad, y), _fit_text(d, subtitle, font, w - 2 * pad), font=font, fill=(225, 225, 160))
    return np.asarray(im, dtype=np.uint8)


def compose_frame(
    images: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[str],
    index: int,
    fps: float,
    total: int | None = None,
    caption: bool = True,
) -> np.ndarray:
    """The grid frame (rows*H, cols*W, 3) uint8 of the envs' images (K, H, W, 3), captioned per tile."""
    imgs = [np.asarray(a, dtype=np.uint8) for a in images]
    k = len(imgs)
    h, w = imgs[0].shape[:2]
    rows, cols = grid_shape(k)
    out = np.zeros((rows * h, cols * w, 3), np.uint8)
    sub = f"t {index / fps:.2f} s · step {index}"
    for i, img in enumerate(imgs):
        r, c = divmod(i, cols)
        tile = caption_tile(img, labels[i] if i < len(labels) else "", sub) if caption else img
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    if k > 1:  # light 2-px separators between the cells
        for c in range(1, cols):
            out[:, c * w - 1 : c * w + 1] = SEPARATOR
        for r in range(1, rows):
            out[r * h - 1 : r * h + 1, :] = SEPARATOR
    if total is not None and total > 0:  # playback bar: also keeps GIF writers from merging equal frames
        bar = max(1, int(round(out.shape[1] * (index + 1) / total)))
        out[-2:, :bar] = (255, 200, 40)
        out[-2:, bar:] = (40, 40, 40)
    return out


def render_rollout(rollout: Any, caption: bool = True) -> Iterator[np.ndarray]:
    """The composed frames of a `Rollout`, lazily (one per LLC step)."""
    for fr in rollout.frames(render=True):
        yield compose_frame(fr.images, rollout.labels, fr.index, rollout.fps, rollout.num_frames, caption)


@dataclass
class ReplayFrameSource:
    """A checkpoint's replay as the TUI's `FrameSource` (`tui_services.FrameSource`): `name`, `fps`, `len()`,
    `frames(size)`.

    `frames((W, H))` loads the checkpoint and rolls out lazily on the first call (import torch and mujoco: call
    it from a worker thread), yielding HxWx3 uint8 frames as they are simulated; the frames are kept, so later
    calls at the same size replay from memory. Iterating the source itself yields `frames(self.size)`.
    """

    checkpoint: Path
    size: tuple[int, int] = (160, 160)
    seconds: float = 4.0
    seed: int = 0
    envs: int = 1
    caption: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    fps: float = 30.0
    _cache: dict[tuple[int, int], list[np.ndarray]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        from anyskill_tui.core.replay.rollout import FPS

        self.checkpoint = Path(self.checkpoint)
        self.fps = FPS
        self.name = self.name or f"replay {self.checkpoint.stem}"

    def __len__(self) -> int:
        return max(1, int(round(float(self.seconds) * self.fps)))

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames(self.size)

    def frames(self, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        from anyskill_tui.core.replay.rollout import ReplayOptions, Rollout, load_policy, replay_camera

        w, h = (int(size[0]), int(size[1])) if size is not None else self.size
        rows, cols = grid_shape(self.envs)
        tile = (max(8, w // cols), max(8, h // rows))
        key = (w, h)
        if key in self._cache:
            yield from self._cache[key]
            return
        policy = load_policy(self.checkpoint)
        opts = ReplayOptions(
            seconds=self.seconds, envs=self.envs, seed=self.seed, camera=replay_camera(tile), **self.options
        )
        got: list[np.ndarray] = []
        with Rollout(policy, opts) as ro:
            if self.name == f"replay {self.checkpoint.stem}":
                self.name = ro.labels[0] if ro.labels else self.name
            for frame in render_rollout(ro, self.caption):
                got.append(frame)
                yield frame
        self._cache[key] = got


def frame_source(
    checkpoint: str | os.PathLike,
    size: tuple[int, int] = (160, 160),
    seconds: float = 4.0,
    seed: int = 0,
    envs: int = 1,
    **options: Any,
) -> ReplayFrameSource:
    """The TUI's frame source of a checkpoint's replay (lazy: nothing is loaded until `frames()` runs).

    options: more `ReplayOptions` fields (clip, random_latent, prompt, engine, latent_hold_s).
    """
    return ReplayFrameSource(Path(checkpoint), (int(size[0]), int(size[1])), seconds, seed, envs, options=options)
