"""Replays written to files: videos of the env grid and env 0's motion as a poselib clip.

`run_replay` does one rollout and writes whichever outputs are asked (a video, a motion, a contact sheet);
`export_video` / `export_motion` are the one-call forms the TUI's Skill screen uses (`export_video(ckpt)`,
`export_motion(ckpt)`), writing beside the run by default.

The motion export is AnySkill's (spec §2.1, `enableMotionSave`): env 0's 15 bodies once per LLC step (30 fps),
global rotations (`is_local` False) and the extra `position` (T, 15, 3) key, written by
`core.motion.clip.write_clip(..., is_local=False)`. Body rotations come from the simulator (global, xyzw), are
turned into the clip's local rotations, and `write_clip` stores their FK; the character's body origins are
exactly the FK of those rotations (the MJCF offsets are `tables.LOCAL_TRANSLATION`), so `position` and
`read_clip(...).body_pos()` equal the simulated body positions (float32 rounding, ~1e-7 m). Velocities are
recomputed as poselib does. The file loads back through `read_clip`, `load_dataset` and `MotionLib`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anyskill_tui.errors import UserError

__all__ = ["ReplayResult", "run_replay", "rollout_clip", "export_video", "export_motion", "default_output"]


def rollout_clip(body_pos: np.ndarray, body_rot: np.ndarray, fps: float = 30.0, name: str = "replay"):
    """A `Clip` of world body positions (T, 15, 3) and global rotations (T, 15, 4) xyzw."""
    import torch

    from anyskill_tui.core.motion.clip import Clip
    from anyskill_tui.core.motion.fk import global_to_local_rot
    from anyskill_tui.core.motion.quat import quat_normalize

    rot = quat_normalize(torch.as_tensor(np.asarray(body_rot), dtype=torch.float64))
    local = global_to_local_rot(rot)
    return Clip(local.numpy(), np.asarray(body_pos)[:, 0], fps, name=name)


def check_motion_path(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if p.suffix.lower() != ".npy":
        raise UserError(f"--export-motion {p}: write a .npy clip (got {p.suffix or 'no extension'})")
    if p.is_dir():
        raise UserError(f"--export-motion {p} is a folder: give a file name ending in .npy")
    return p


@dataclass
class ReplayResult:
    """What `run_replay` wrote and saw."""

    num_frames: int
    frame_size: tuple[int, int] | None = None  # (width, height) of the video frames
    video: Path | None = None
    motion: Path | None = None
    sheet: Path | None = None
    labels: list[str] = field(default_factory=list)
    #: env 0's simulated body positions (T, 15, 3) and global rotations (T, 15, 4) xyzw, float64
    body_pos: np.ndarray | None = None
    body_rot: np.ndarray | None = None


def run_replay(
    policy: Any,
    opts: Any,
    *,
    video: str | os.PathLike | None = None,
    motion: str | os.PathLike | None = None,
    sheet: str | os.PathLike | None = None,
    sheet_frames: int = 8,
    sheet_width: int = 400,
    caption: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Roll `policy` (a `ReplayPolicy`) out under `opts` (`ReplayOptions`) once and write the outputs asked.

    video: .mp4/.gif of the captioned env grid; motion: env 0 as a poselib .npy (global rotations, 30 fps);
    sheet: a PNG contact sheet of `sheet_frames` evenly spaced frames (each scaled down to `sheet_width` px wide
    at most), 4 per row. `progress(done, total)` is called per frame.
    """
    from anyskill_tui.core.replay.frames import compose_frame
    from anyskill_tui.core.replay.rollout import Rollout
    from anyskill_tui.core.replay.video import check_video_path, contact_sheet, pick_frames, write_frames

    video_p = check_video_path(video) if video is not None else None
    motion_p = check_motion_path(motion) if motion is not None else None
    sheet_p = Path(sheet).expanduser() if sheet is not None else None
    render = video_p is not None or sheet_p is not None
    pos: list[np.ndarray] = []
    rot: list[np.ndarray] = []
    picks: dict[int, np.ndarray] = {}
    size: list[tuple[int, int]] = []
    with Rollout(policy, opts) as ro:
        total = ro.num_frames
        wanted = set(pick_frames(total, sheet_frames)) if sheet_p is not None else set()

        def frames():
            for fr in ro.frames(render=render):
                pos.append(fr.body_pos[0].numpy())
                rot.append(fr.body_rot[0].numpy())
                if render:
                    img = compose_frame(fr.images, ro.labels, fr.index, ro.fps, total, caption)
                    if not size:
                        size.append((img.shape[1], img.shape[0]))
                    if fr.index in wanted:
                        picks[fr.index] = img
                    yield img
                else:
                    yield None
                if progress is not None:
                    progress(fr.index + 1, total)

        if video_p is not None:
            write_frames(frames(), video_p, ro.fps)
        else:
            for _ in frames():
                pass
        labels = list(ro.labels)
        fps = ro.fps
    result = ReplayResult(
        num_frames=len(pos),
        frame_size=size[0] if size else None,
        video=video_p,
        labels=labels,
        body_pos=np.stack(pos),
        body_rot=np.stack(rot),
    )
    if motion_p is not None:
        from anyskill_tui.core.motion.clip import ClipError, write_clip

        clip = rollout_clip(result.body_pos, result.body_rot, fps, name=motion_p.stem)
        try:
            result.motion = write_clip(motion_p, clip, is_local=False)
        except ClipError as exc:
            raise UserError(" ".join(str(exc).split())) from None
    if sheet_p is not None and picks:
        from PIL import Image

        idx = sorted(picks)
        # a white margin around each frame keeps frames apart from the cells inside them
        tiles = [np.pad(_shrink(picks[i], sheet_width), ((4, 0), (4, 4), (0, 0)), constant_values=255) for i in idx]
        img = contact_sheet(tiles, [f"t {i / fps:.2f} s" for i in idx], columns=4)
        sheet_p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(sheet_p)
        result.sheet = sheet_p
    return result


def _shrink(img: np.ndarray, width: int) -> np.ndarray:
    if img.shape[1] <= width:
        return img
    from PIL import Image

    h = max(1, round(img.shape[0] * width / img.shape[1]))
    return np.asarray(Image.fromarray(img).resize((width, h), Image.Resampling.LANCZOS))


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return s[:60] or "replay"


def default_output(checkpoint: str | os.PathLike, suffix: str) -> Path:
    """Where a checkpoint's export goes by default: `RUN_DIR/exports/<ckpt stem><suffix>` for a checkpoint in
    `RUN_DIR/checkpoints/`, else `exports/` beside the file."""
    ckpt = Path(checkpoint)
    base = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return base / "exports" / f"{_slug(ckpt.stem)}{suffix}"


def _options(seconds: float, envs: int, seed: int, size: int | tuple[int, int], **kw: Any):
    from anyskill_tui.core.replay.frames import grid_shape
    from anyskill_tui.core.replay.rollout import ReplayOptions, replay_camera

    cam_kw = {k: kw.pop(k) for k in ("distance", "azimuth", "height") if k in kw}
    if isinstance(size, int):
        tile: int | tuple[int, int] = size
    else:
        rows, cols = grid_shape(envs)
        tile = (max(8, int(size[0]) // cols), max(8, int(size[1]) // rows))
    return ReplayOptions(seconds=seconds, envs=envs, seed=seed, camera=replay_camera(tile, **cam_kw), **kw)


def export_video(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    seconds: float = 4.0,
    envs: int = 1,
    size: int | tuple[int, int] = 320,
    seed: int = 0,
    **options: Any,
) -> Path:
    """Replay a checkpoint and write the video (default `default_output(checkpoint, ".mp4")`); returns the path.

    size: the tile side in pixels (or the (width, height) the whole grid fits in); options: more
    `ReplayOptions` fields (clip, random_latent, prompt, engine) and camera distance/azimuth/height.
    """
    from anyskill_tui.core.replay.rollout import load_policy

    out_p = Path(out) if out is not None else default_output(checkpoint, ".mp4")
    opts = _options(seconds, envs, seed, size, **options)
    res = run_replay(load_policy(checkpoint), opts, video=out_p)
    assert res.video is not None
    return res.video


def export_motion(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    seconds: float = 4.0,
    seed: int = 0,
    **options: Any,
) -> Path:
    """Replay a checkpoint (env 0, no rendering) and write its motion as a poselib .npy with global rotations
    (default `default_output(checkpoint, ".npy")`); returns the path."""
    from anyskill_tui.core.replay.rollout import load_policy

    out_p = Path(out) if out is not None else default_output(checkpoint, ".npy")
    opts = _options(seconds, 1, seed, 64, **options)
    res = run_replay(load_policy(checkpoint), opts, motion=out_p)
    assert res.motion is not None
    return res.motion
