"""Replay: roll out a checkpoint, render it, write a video or a motion, open a viewer, feed the TUI.

Modules (each imports torch/mujoco only when used):

- `rollout`: load a skill or LLC checkpoint (`load_policy`), `ReplayOptions`, `Rollout` (the control loop);
- `frames`: captions and the env grid (PIL), `ReplayFrameSource` / `frame_source` for the TUI;
- `video`: mp4 / gif writing, contact sheets;
- `export`: `run_replay` (one rollout -> video, motion, sheet), `export_video`, `export_motion`;
- `viewer`: the MuJoCo viewer window.

This package's own import is light (no torch, mujoco or SQLModel): the functions below import on call. The TUI
calls `frame_source(checkpoint)`, `export_video(checkpoint)` and `export_motion(checkpoint)`.
`resolve_target` maps what a user typed (a skill id or text, a run, a checkpoint path) to a checkpoint file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyskill_tui.errors import UserError

__all__ = ["ReplayTarget", "resolve_target", "frame_source", "export_video", "export_motion"]


def frame_source(
    checkpoint: str | os.PathLike,
    size: tuple[int, int] = (160, 160),
    seconds: float = 4.0,
    seed: int = 0,
    envs: int = 1,
    **options: Any,
):
    """A lazy `FrameSource` of a checkpoint's replay (`frames.ReplayFrameSource`); see `frames.frame_source`."""
    from anyskill_tui.core.replay.frames import frame_source as _fs

    return _fs(checkpoint, size=size, seconds=seconds, seed=seed, envs=envs, **options)


def export_video(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, **kwargs: Any) -> Path:
    """Replay a checkpoint into a video (default `RUN_DIR/exports/<ckpt>.mp4`); see `export.export_video`."""
    from anyskill_tui.core.replay.export import export_video as _ev

    return _ev(checkpoint, out, **kwargs)


def export_motion(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, **kwargs: Any) -> Path:
    """Replay a checkpoint into a poselib .npy motion (default `RUN_DIR/exports/<ckpt>.npy`); see
    `export.export_motion`."""
    from anyskill_tui.core.replay.export import export_motion as _em

    return _em(checkpoint, out, **kwargs)


# -- resolving what to replay ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayTarget:
    """The checkpoint a user's TARGET names, and how it was found."""

    checkpoint: Path
    #: caption default: the skill's text, else "run N", else the file stem
    label: str
    #: one line for people: "skill 3 'jump': best checkpoint (run 5, step 200, CLIP 0.271)"
    how: str
    skill_id: int | None = None
    run_id: int | None = None


_PATH_SUFFIXES = (".pt", ".pth", ".ckpt")


def _looks_like_path(target: str) -> bool:
    return target.lower().endswith(_PATH_SUFFIXES) or os.sep in target or target.startswith((".", "~"))


def _run_ref(target: str) -> int | None:
    """N of `run:N`, `run/N`, `run N` or `#N`; None when `target` names no run."""
    t = target.strip().lower()
    for prefix in ("run:", "run/", "run ", "#"):
        if t.startswith(prefix):
            rest = t[len(prefix) :].strip()
            if not rest.isdigit():
                raise UserError(f"{target!r}: a run is named run:N or #N with N its id (see `anyskill runs list`)")
            return int(rest)
    return None


def _skill_ref(target: str) -> int | str:
    t = target.strip()
    if t.lower().startswith("skill:"):
        t = t[len("skill:") :].strip()
    return int(t) if t.isdigit() else t


def _clip_value(metrics: dict[str, Any]) -> float | None:
    v = metrics.get("clip_score")
    if isinstance(v, int | float) and not isinstance(v, bool) and v == v:
        return float(v)
    for key in ("clip_similarity", "best_clip", "similarity", "clip"):
        v = metrics.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and v == v:
            return float(v)
    return None


def _abs(ws_root: Path, p: str) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else ws_root / path


def resolve_target(target: str, workspace: str | os.PathLike | None = None) -> ReplayTarget:
    """Find the checkpoint `target` names. UserError for an unknown skill or run, one without a checkpoint, or a
    missing file.

    - an existing file, or anything that looks like a path (ends in .pt, has a `/`): that checkpoint file; a run
      folder (with `checkpoints/`): its latest checkpoint;
    - `run:N` or `#N`: run N's latest checkpoint (the library's rows, else the newest complete file on disk);
    - otherwise a skill id or text (`skill:` prefix optional): its best checkpoint over all its runs, the one with
      the highest `clip_score` in its metrics, else the latest (newest run, highest step).
    """
    target = str(target).strip()
    if not target:
        raise UserError("give what to replay: a skill id or text, run:N, or a checkpoint file")
    p = Path(target).expanduser()
    if p.is_file():
        return ReplayTarget(p, p.stem, f"checkpoint file {p}")
    if p.is_dir() and (p / "checkpoints").is_dir():
        from anyskill_tui.core.jobs.checkpoints import latest_checkpoint

        ck = latest_checkpoint(p)
        if ck is None:
            raise UserError(f"run folder {p} has no complete checkpoint yet")
        return ReplayTarget(ck, p.name, f"latest checkpoint of run folder {p}")
    if p.is_dir():
        raise UserError(f"{p} is a folder: give a checkpoint file (.pt), a run folder, a skill or run:N")
    if _looks_like_path(target):
        raise UserError(f"checkpoint {p} does not exist: give a checkpoint file, a skill (id or text) or run:N")

    from anyskill_tui.store.library import Library
    from anyskill_tui.workspace import find_workspace

    ws = find_workspace(workspace)
    run_id = _run_ref(target)
    with Library(ws.db_path) as lib:
        if run_id is not None:
            return _resolve_run(lib, ws, run_id)
        return _resolve_skill(lib, ws, _skill_ref(target))


def _resolve_run(lib: Any, ws: Any, run_id: int) -> ReplayTarget:
    from anyskill_tui.core.jobs.checkpoints import latest_checkpoint
    from anyskill_tui.core.jobs.launcher import resolve_run_dir

    run = lib.get_run(run_id)  # NotFoundError: "no run with id N (see `anyskill runs list`)"
    label = f"run {run_id}"
    if run.skill_id is not None:
        sk = lib.find_skill(run.skill_id)
        if sk is not None:
            label = sk.text
    rows = [c for c in lib.list_checkpoints(run_id) if _abs(ws.root, c.path).is_file()]
    if rows:
        c = rows[-1]
        return ReplayTarget(
            _abs(ws.root, c.path), label, f"run {run_id}: latest checkpoint (step {c.step})", run.skill_id, run_id
        )
    ck = latest_checkpoint(resolve_run_dir(ws, run))
    if ck is not None:
        return ReplayTarget(ck, label, f"run {run_id}: latest checkpoint file {ck.name}", run.skill_id, run_id)
    raise UserError(
        f"run {run_id} has no checkpoint yet (status {run.status}): wait for its first checkpoint "
        f"(`anyskill runs tail {run_id}`)"
    )


def _resolve_skill(lib: Any, ws: Any, ref: int | str) -> ReplayTarget:
    sk = lib.get_skill(ref)  # NotFoundError: "no skill with id N (see `anyskill skills list`)"
    runs = lib.list_runs(skill=sk.id)  # newest first
    cands = []  # (run, checkpoint), oldest run first, by step
    missing = []
    for r in reversed(runs):
        for c in lib.list_checkpoints(r.id):
            (cands if _abs(ws.root, c.path).is_file() else missing).append((r, c))
    if not cands:
        extra = f" (its {len(missing)} recorded checkpoint file(s) are missing)" if missing else ""
        raise UserError(f'skill {sk.id} has no checkpoint{extra}: train it with `anyskill train "{sk.text}"`')
    best, best_s = None, None
    for r, c in cands:
        s = _clip_value(c.metrics)
        if s is not None and (best_s is None or s > best_s):
            best, best_s = (r, c), s
    if best is None:
        r, c = cands[-1]
        how = f"skill {sk.id} {sk.text!r}: latest checkpoint (run {r.id}, step {c.step}; no CLIP score recorded)"
    else:
        r, c = best
        how = f"skill {sk.id} {sk.text!r}: best checkpoint (run {r.id}, step {c.step}, CLIP {best_s:.3f})"
    return ReplayTarget(_abs(ws.root, c.path), sk.text, how, sk.id, r.id)
