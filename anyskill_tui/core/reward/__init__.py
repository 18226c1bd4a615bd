"""Rewards of the skill policy (spec §5, DESIGN.md "Rewards for the skill policy").

- :mod:`.clip`: :class:`ClipRewardModel`, CLIP image/text features and the per-env cosine (the ``render`` reward);
- :mod:`.text_cache`: text features cached in ``<workspace>/cache/clip_text/``.

Importing this package is cheap: names are loaded on first access, so torch and open_clip load only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.core.reward.clip import (
        CLIP_WEIGHTS_ENV,
        ClipConfig,
        ClipModelError,
        ClipRewardModel,
        ClipWeightsError,
        WeightsSource,
        cosine_to_prompts,
        load_open_clip,
        preprocess_frames,
    )
    from anyskill_tui.core.reward.text_cache import TextFeatureCache, text_cache_dir

_LAZY = {
    "CLIP_WEIGHTS_ENV": "clip",
    "ClipConfig": "clip",
    "ClipModelError": "clip",
    "ClipRewardModel": "clip",
    "ClipWeightsError": "clip",
    "WeightsSource": "clip",
    "cosine_to_prompts": "clip",
    "load_open_clip": "clip",
    "preprocess_frames": "clip",
    "TextFeatureCache": "text_cache",
    "text_cache_dir": "text_cache",
}

__all__ = [
    "CLIP_WEIGHTS_ENV",
    "ClipConfig",
    "ClipModelError",
    "ClipRewardModel",
    "ClipWeightsError",
    "TextFeatureCache",
    "WeightsSource",
    "cosine_to_prompts",
    "load_open_clip",
    "preprocess_frames",
    "text_cache_dir",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
