"""Where the project's shipped files live (configs, the humanoid model), editable or installed."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def configs_dir() -> Path:
    """The `configs/` folder: the repository's in an editable install, the packaged copy otherwise."""
    repo = _PKG.parent / "configs"
    if repo.is_dir():
        return repo
    return _PKG / "_configs"


def shared_reference_dir() -> Path | None:
    """`../shared/reference/calm` beside the repository, for compatibility tests only; None when absent."""
    p = _PKG.parent.parent / "shared" / "reference" / "calm"
    return p if p.is_dir() else None
