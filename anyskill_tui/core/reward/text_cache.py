"""Cached CLIP text features in the workspace: ``<workspace>/cache/clip_text/<key>.pt``.

A prompt's text feature is computed once per (model name, weights identity, prompt) and stored as one small file
holding ``{"version", "model", "weights", "prompt", "feature"}`` (the L2-normalised feature, float32, CPU). The key
is the SHA-256 of all three, so a different model or different weights never reuse another's features; the stored
fields are checked on load as well. The weights identity is the pretrained tag, or a local file's path, size and
mtime (see :class:`~anyskill_tui.core.reward.clip.WeightsSource`). Writes are atomic (a temp file in the same
folder, then ``os.replace``); an unreadable or mismatching file counts as a miss and is rewritten.

Imports nothing heavy at module level (torch is imported when a file is read or written).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["CACHE_SUBDIR", "FORMAT_VERSION", "TextFeatureCache", "cache_key", "text_cache_dir"]

log = logging.getLogger(__name__)

CACHE_SUBDIR = Path("cache") / "clip_text"
FORMAT_VERSION = 1


def text_cache_dir(workspace: Any) -> Path:
    """``<workspace>/cache/clip_text`` for a :class:`~anyskill_tui.workspace.Workspace` or a workspace folder."""
    root = workspace if isinstance(workspace, str | os.PathLike) else workspace.root  # (Path.root is "/")
    return Path(root) / CACHE_SUBDIR


def cache_key(model_id: str, weights_id: str, prompt: str) -> str:
    """The file stem for one (model, weights, prompt): a SHA-256 hex digest."""
    blob = json.dumps([FORMAT_VERSION, model_id, weights_id, prompt], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class TextFeatureCache:
    """Text features stored one file per (model, weights, prompt) under ``directory``.

    Args:
        directory: the cache folder (created on the first write).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @classmethod
    def for_workspace(cls, workspace: Any) -> TextFeatureCache:
        """The cache of a workspace (a ``Workspace`` or its root folder)."""
        return cls(text_cache_dir(workspace))

    def path_for(self, model_id: str, weights_id: str, prompt: str) -> Path:
        return self.directory / f"{cache_key(model_id, weights_id, prompt)}.pt"

    def load(self, model_id: str, weights_id: str, prompt: str) -> torch.Tensor | None:
        """The stored (D,) feature, or None when absent, unreadable or stored for something else."""
        path = self.path_for(model_id, weights_id, prompt)
        if not path.is_file():
            return None
        import torch

        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a torn or foreign file: recompute and overwrite
            log.warning("ignoring unreadable CLIP text cache file %s: %s", path, exc)
            return None
        expected = {"version": FORMAT_VERSION, "model": model_id, "weights": weights_id, "prompt": prompt}
        if not isinstance(data, dict) or any(data.get(k) != v for k, v in expected.items()):
            log.warning("ignoring CLIP text cache file %s: stored for something else", path)
            return None
        feature = data.get("feature")
        if not isinstance(feature, torch.Tensor) or feature.ndim != 1:
            return None
        return feature.float()

    def save(self, model_id: str, weights_id: str, prompt: str, feature: torch.Tensor) -> Path:
        """Store one (D,) feature atomically; returns the file."""
        import torch

        path = self.path_for(model_id, weights_id, prompt)
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": FORMAT_VERSION,
            "model": model_id,
            "weights": weights_id,
            "prompt": prompt,
            "feature": feature.detach().to("cpu", torch.float32).reshape(-1).clone(),
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:16]}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    def get_or_compute(
        self,
        model_id: str,
        weights_id: str,
        prompts: Sequence[str],
        compute: Callable[[list[str]], torch.Tensor],
    ) -> torch.Tensor:
        """(P, D) float32 CPU features in the order of ``prompts``; ``compute`` encodes only the missing ones
        (each distinct prompt once) and they are stored."""
        import torch

        prompts = list(prompts)
        found: dict[str, torch.Tensor] = {}
        for p in dict.fromkeys(prompts):
            f = self.load(model_id, weights_id, p)
            if f is not None:
                found[p] = f
        missing = [p for p in dict.fromkeys(prompts) if p not in found]
        if missing:
            feats = compute(missing)
            if feats.ndim != 2 or feats.shape[0] != len(missing):
                raise ValueError(f"compute returned {tuple(feats.shape)} for {len(missing)} prompts")
            for p, f in zip(missing, feats, strict=True):
                found[p] = f.detach().to("cpu", torch.float32)
                self.save(model_id, weights_id, p, f)
        if not prompts:
            return torch.zeros(0, 0)
        return torch.stack([found[p] for p in prompts])
