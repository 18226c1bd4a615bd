"""Checkpoint files: atomic writes, loading, and finding the newest complete one.

A checkpoint is written to a temporary file in the same folder (``.NAME.tmp-PID-RAND``), flushed and
fsynced, then renamed over its final name with ``os.replace`` (atomic on POSIX) and the folder fsynced.
So a final name never holds a partial file: a crash or a full disk mid-write leaves at worst a temp
file, which :func:`latest_checkpoint` ignores (and :func:`clean_temp_files` removes). A ``latest``
pointer file (the name of the newest checkpoint) is updated the same atomic way after each save.

Our trainers' checkpoints live in ``RUN_DIR/checkpoints/ckpt_<step:08d>.pt``. ``torch.save`` writes zip
archives, so a file is only taken as complete if its zip end record is there (truncated copies fail).
torch is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import zipfile
from pathlib import Path
from typing import Any

from anyskill_tui.errors import UserError

CHECKPOINT_SUBDIR = "checkpoints"
LATEST_POINTER = "latest"
_NAME_RE = re.compile(r"^ckpt_(\d+)\.pt$")
_TMP_MARK = ".tmp-"


def checkpoint_dir(run_dir: Path | str) -> Path:
    """``RUN_DIR/checkpoints``."""
    return Path(run_dir) / CHECKPOINT_SUBDIR


def checkpoint_name(step: int) -> str:
    """The file name of the checkpoint at ``step``: ``ckpt_<step:08d>.pt``."""
    return f"ckpt_{int(step):08d}.pt"


def step_of(path: Path | str) -> int | None:
    """The step encoded in a checkpoint file name, or None."""
    m = _NAME_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, ``os.replace``)."""
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def save_checkpoint(path: Path | str, state: dict[str, Any], *, update_latest: bool = True) -> Path:
    """``torch.save(state)`` to ``path`` atomically; then point ``latest`` (same folder) at it.

    On any error (disk full, unwritable folder, a kill) the previous file at ``path``, if any, is intact
    and no temp file is left behind (except after a hard kill, see :func:`clean_temp_files`).
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    if update_latest:
        atomic_write_bytes(path.parent / LATEST_POINTER, (path.name + "\n").encode())
    return path


def is_complete(path: Path | str) -> bool:
    """True when ``path`` is a finished checkpoint: a regular, non-temp file with an intact zip end record."""
    p = Path(path)
    if p.name.startswith(".") or _TMP_MARK in p.name or not p.is_file():
        return False
    try:
        return zipfile.is_zipfile(p)
    except OSError:
        return False


def resolve_checkpoint_path(path: Path | str) -> Path:
    """The checkpoint file a user means by ``path``: the file itself, the file a ``latest`` pointer names,
    or the newest complete checkpoint of a run dir or of its ``checkpoints/`` folder.
    Raises UserError when a folder holds no complete checkpoint."""
    p = Path(path)
    if p.is_dir():
        run_dir = p.parent if p.name == "checkpoints" else p
        found = latest_checkpoint(run_dir)
        if found is None:
            raise UserError(f"{p} holds no complete checkpoint")
        return found
    if p.name == LATEST_POINTER and p.is_file() and not is_complete(p):
        name = p.read_text().strip()
        if not name or "/" in name:
            raise UserError(f"checkpoint pointer {p} is empty or malformed; pass a ckpt_*.pt file instead")
        return p.parent / name
    return p


def load_checkpoint(path: Path | str, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (or the one a run dir or `latest` pointer names).
    Raises UserError naming the file."""
    import torch

    p = resolve_checkpoint_path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {p} does not exist")
    try:
        return torch.load(p, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise UserError(f"checkpoint {p} cannot be read ({type(exc).__name__}: {exc}); it may be truncated") from exc


def list_checkpoints(run_dir: Path | str) -> list[Path]:
    """The complete ``ckpt_*.pt`` files of a run, oldest step first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME_RE.match(p.name) and is_complete(p)]
    return sorted(found, key=lambda p: (step_of(p) or 0, p.stat().st_mtime_ns))


def latest_checkpoint(run_dir: Path | str) -> Path | None:
    """The newest complete checkpoint of a run (``RUN_DIR/checkpoints``), or None.

    Uses the ``latest`` pointer when it names a complete file, else the highest-step complete
    ``ckpt_*.pt``. Temp and truncated files are never returned.
    """
    folder = checkpoint_dir(run_dir)
    pointer = folder / LATEST_POINTER
    candidates = list_checkpoints(run_dir)
    try:
        name = pointer.read_text().strip()
    except OSError:
        name = ""
    if name:
        p = folder / name
        # The pointer is written after its file, so it is at most one save behind: trust it unless a
        # complete file with a higher step exists (the process died between the two renames).
        if is_complete(p) and not (candidates and (step_of(candidates[-1]) or 0) > (step_of(p) or 0)):
            return p
    return candidates[-1] if candidates else None


def clean_temp_files(run_dir: Path | str) -> int:
    """Remove temp files left by a killed writer in ``RUN_DIR/checkpoints``; returns how many."""
    folder = checkpoint_dir(run_dir)
    n = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and _TMP_MARK in p.name:
                with contextlib.suppress(OSError):
                    p.unlink()
                    n += 1
    return n
