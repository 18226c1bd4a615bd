"""Motion datasets: a `motions.yaml` list of clips with sampling weights, or a single `.npy` clip (spec §2.2).

    motions:
      - file: walk.npy        # relative to the YAML file's folder (absolute paths are kept)
        weight: 1.0           # float >= 0; weights are normalised to sum to 1
        text: "a person walks" # optional, ignored by training

A single `.npy` path is a dataset of one clip with weight 1. Every problem raises `DatasetError` (a
`ValueError`) naming the YAML file and the entry index; problems inside a clip file raise `ClipError`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anyskill_tui.core.motion.clip import Clip, ClipError, read_clip

__all__ = ["MotionDataset", "DatasetError", "DatasetEntry", "load_dataset", "read_dataset_entries"]


class DatasetError(ValueError):
    """A motion dataset file could not be used; the message names the file (and entry), the problem and the fix."""

    def __init__(self, path: str | os.PathLike | None, message: str):
        self.path = Path(path) if path is not None else None
        super().__init__((f"{self.path}: " if self.path is not None else "") + message)


@dataclass(frozen=True)
class DatasetEntry:
    """One `motions:` entry, resolved: absolute file path, raw weight, optional text."""

    file: Path
    weight: float
    text: str | None = None


@dataclass
class MotionDataset:
    """Loaded clips with normalised sampling weights.

    clips: list of `Clip`; weights: (num_clips,) float64 summing to 1; files: each clip's path;
    texts: each entry's optional text; source: the YAML or .npy the dataset came from.
    """

    clips: list[Clip]
    weights: np.ndarray
    files: list[Path]
    texts: list[str | None] = field(default_factory=list)
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.clips)

    @classmethod
    def from_clips(cls, clips: list[Clip], weights=None, texts=None) -> MotionDataset:
        """A dataset of in-memory clips (weights default to equal)."""
        if not clips:
            raise DatasetError(None, "a motion dataset needs at least one clip.")
        w = np.ones(len(clips)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(clips),) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise DatasetError(None, f"weights {w.tolist()} must be {len(clips)} finite values >= 0, not all zero.")
        files = [c.source if c.source is not None else Path(f"{c.name}.npy") for c in clips]
        return cls(list(clips), w / w.sum(), files, list(texts) if texts else [None] * len(clips))


def read_dataset_entries(path: str | os.PathLike) -> list[DatasetEntry]:
    """Parse and check a `motions.yaml` without loading the clips (files must exist)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise DatasetError(path, "file not found. Give a motions.yaml or a .npy clip.")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DatasetError(
            path, f"is not valid YAML ({e}). Fix the syntax; see docs for the motions.yaml format."
        ) from None
    except UnicodeDecodeError:
        raise DatasetError(path, "is not a text file. Give a motions.yaml or a .npy clip.") from None
    if not isinstance(doc, dict) or "motions" not in doc:
        raise DatasetError(
            path, "has no top-level `motions:` list. Write `motions:` followed by entries `- file: x.npy`."
        )
    motions = doc["motions"]
    if not isinstance(motions, list) or not motions:
        raise DatasetError(path, "`motions:` must be a non-empty list of entries `{file: ..., weight: ...}`.")
    entries = []
    for i, item in enumerate(motions):
        where = f"entry {i}"
        if isinstance(item, str):
            item = {"file": item}
        if not isinstance(item, dict) or "file" not in item:
            raise DatasetError(path, f"{where} has no `file:`. Write `- file: clip.npy` (relative to this folder).")
        file = item["file"]
        if not isinstance(file, str) or not file.strip():
            raise DatasetError(path, f"{where}: `file` must be a path string, got {file!r}.")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise DatasetError(path, f"{where} ({file}): weight {weight!r} is not a number. Use a float >= 0.")
        if not math.isfinite(float(weight)) or weight < 0:
            raise DatasetError(path, f"{where} ({file}): weight {weight!r} must be a finite number >= 0.")
        text = item.get("text")
        resolved = Path(file).expanduser()
        if not resolved.is_absolute():
            resolved = path.parent / resolved
        if not resolved.is_file():
            raise DatasetError(
                path,
                f"{where}: the clip file {file} was not found (looked at {resolved}). Paths are relative to "
                "the YAML file's folder.",
            )
        entries.append(DatasetEntry(resolved, float(weight), None if text is None else str(text)))
    total = sum(e.weight for e in entries)
    if total <= 0:
        raise DatasetError(path, "all weights are 0. Give at least one entry a positive weight.")
    return entries


def load_dataset(path: str | os.PathLike) -> MotionDataset:
    """Load a `motions.yaml` (or a single `.npy` clip, weight 1) into a `MotionDataset`.

    Raises `DatasetError` for YAML problems (naming the file and entry) and `ClipError` for bad clips.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        clip = read_clip(path)
        return MotionDataset([clip], np.ones(1), [path], [None], source=path)
    if path.is_dir():
        raise DatasetError(path, "is a folder. Give a motions.yaml or a .npy clip.")
    entries = read_dataset_entries(path)
    clips = []
    for i, e in enumerate(entries):
        try:
            clips.append(read_clip(e.file))
        except ClipError as err:
            raise ClipError(e.file, f"(entry {i} of {path}) {err.message}") from None
    w = np.array([e.weight for e in entries], dtype=np.float64)
    return MotionDataset(clips, w / w.sum(), [e.file for e in entries], [e.text for e in entries], source=path)
