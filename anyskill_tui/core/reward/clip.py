"""The CLIP reward of the skill policy: rendered frames -> device preprocessing -> open_clip -> cosine with the text.

Spec §5.1, §5.3, §5.5, §9.2, §9.5; DESIGN.md "Rewards for the skill policy".

- :class:`ClipRewardModel` wraps an open_clip model (default ``ViT-B-32`` with the ``laion2b_s34b_b79k`` weights
  the reference used). Weights come from, first match wins: the ``weights=PATH`` argument (the CLI's
  ``--clip-weights PATH``), ``$ANYSKILL_CLIP_WEIGHTS``, then open_clip's own pretrained download for the tag, which
  reuses the Hugging Face hub cache. When none works, one :class:`ClipWeightsError` says why and names both fixes.
- Frames are ``(N, 3, H, W)`` floats in [0, 1] (what our renderers produce; uint8 0-255 is accepted too). They are
  preprocessed on their device, batched, without PIL: resized like open_clip's eval transform (shortest side to the
  model's size then center crop, by default; bicubic with antialias), clamped to [0, 1] (PIL's uint8 saturation)
  and normalised with the model's mean/std. ``raw_255_input=True`` reproduces the reference instead: 0-255 pixels,
  no mean/std (spec §5.5, §9.2; "bug-compatible", the space the reference's MLP surrogate was trained in).
- :meth:`ClipRewardModel.encode_images` / :meth:`ClipRewardModel.encode_texts` return L2-normalised float32
  features; images are encoded in chunks under ``torch.autocast`` (bf16 on CUDA where supported, else fp16; off on
  CPU unless asked).
- :meth:`ClipRewardModel.similarity` is the plain cosine of each frame with ITS OWN env's prompt (a row-wise
  gather, not the reference's mis-indexing of spec §9.5); the reward is ``0.8 * similarity`` (spec §5.1, §10.3),
  applied by the caller.
- :meth:`ClipRewardModel.text_features` caches text features in the workspace (:mod:`.text_cache`).

This module imports torch at module level and open_clip on first use; the CLI never imports it at start-up.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from anyskill_tui.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.core.reward.text_cache import TextFeatureCache

__all__ = [
    "CLIP_WEIGHTS_ENV",
    "DEFAULT_MODEL",
    "DEFAULT_PRETRAINED",
    "OPENAI_MEAN",
    "OPENAI_STD",
    "ClipConfig",
    "ClipModelError",
    "ClipRewardModel",
    "ClipWeightsError",
    "WeightsSource",
    "check_weights_available",
    "cosine_to_prompts",
    "load_open_clip",
    "preprocess_frames",
    "resolve_autocast_dtype",
]

CLIP_WEIGHTS_ENV = "ANYSKILL_CLIP_WEIGHTS"
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
# open_clip.constants.OPENAI_DATASET_MEAN / _STD, used when a model carries no preprocess cfg.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_WEIGHTS_HINT = f"pass --clip-weights PATH / set {CLIP_WEIGHTS_ENV} to a local .bin/.pt/.safetensors file"
_SCHEMAS = ("hf-hub:", "local-dir:")
_AUTOCAST = {"auto", "bf16", "fp16", "off"}


class ClipModelError(UserError):
    """A CLIP model that cannot be built: an unknown model name or pretrained tag, a bad option."""


class ClipWeightsError(ClipModelError):
    """CLIP weights that cannot be found or loaded; the message names the file or tag and the fix."""


# -- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipConfig:
    """The ``clip:`` section of ``configs/skill.yaml``.

    Attributes:
        model: an open_clip model name (``open_clip.list_models()``), or ``hf-hub:org/repo`` / ``local-dir:PATH``.
        pretrained: an open_clip pretrained tag for ``model`` (``open_clip.list_pretrained_tags_by_model``), a
            checkpoint file, or None for random weights (benchmarks only).
        weights: a local checkpoint file; overrides ``$ANYSKILL_CLIP_WEIGHTS`` and ``pretrained``.
        batch_size: frames (and prompts) per encoder call.
        autocast: ``auto`` (bf16 on CUDA when supported, else fp16; off on CPU), ``bf16``, ``fp16`` or ``off``.
        half_image_tower: with autocast on, cast the image tower's weights to the autocast dtype once and encode
            frames in that dtype without autocast (no per-call weight casts, layer norms in half precision: faster,
            embeddings within ~1e-2 cosine of autocast's). No effect when autocast is off (CPU).
        raw_255_input: feed 0-255 pixels without mean/std, like the reference (spec §5.5, §9.2). Off by default.
        cache_dir: open_clip's download cache (None: the Hugging Face hub cache).
    """

    model: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    weights: str | None = None
    batch_size: int = 1024
    autocast: str = "auto"
    half_image_tower: bool = True
    raw_255_input: bool = False
    cache_dir: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, *, where: str = "clip") -> ClipConfig:
        """Build from a parsed YAML mapping; unknown keys and wrong types raise :class:`ClipModelError`."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ClipModelError(f"{where}: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ClipModelError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key == "batch_size":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ClipModelError(f"{where}.batch_size: expected a positive integer, got {value!r}")
            elif key in ("raw_255_input", "half_image_tower"):
                if not isinstance(value, bool):
                    raise ClipModelError(f"{where}.{key}: expected true or false, got {value!r}")
            elif key == "autocast":
                if value not in _AUTOCAST:
                    raise ClipModelError(f"{where}.autocast: expected one of {sorted(_AUTOCAST)}, got {value!r}")
            elif key == "model":
                if not isinstance(value, str) or not value.strip():
                    raise ClipModelError(f"{where}.model: expected an open_clip model name, got {value!r}")
            elif value is not None and not isinstance(value, str):
                raise ClipModelError(f"{where}.{key}: expected a string or null, got {value!r}")
            out[key] = value
        return cls(**out)


# -- weights --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights came from.

    Attributes:
        kind: ``file`` (a local checkpoint), ``tag`` (open_clip's pretrained download/cache), ``schema`` (an
            ``hf-hub:`` / ``local-dir:`` model name) or ``random``.
        origin: what chose it: ``argument``, ``ANYSKILL_CLIP_WEIGHTS`` or ``pretrained`` (a file), ``cache`` or
            ``download`` (a tag found in the hub cache, or fetched by open_clip), ``model``, ``from_model`` or ``none``.
        path: the checkpoint file that was loaded, when there is one.
        tag: the pretrained tag, for ``tag``.
        identity: a string that changes whenever the weights may change (tag, or file path + size + mtime), used to
            key cached text features; None for random weights (never cached).
    """

    kind: str
    origin: str
    path: str | None = None
    tag: str | None = None
    identity: str | None = None


def _hub_cache_dir() -> Path:
    """The Hugging Face hub cache: huggingface_hub's own setting, else ``HF_HUB_CACHE``, ``HF_HOME/hub`` or
    ``~/.cache/huggingface/hub``."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except (ImportError, AttributeError):
        pass
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "huggingface" / "hub"


def _one_line(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _root_cause(exc: BaseException) -> str:
    """``Type: message`` of the innermost exception in the chain (open_clip and huggingface_hub wrap theirs)."""
    seen = [exc]
    while len(seen) < 16:
        nxt = seen[-1].__cause__ or seen[-1].__context__
        if nxt is None or nxt in seen:
            break
        seen.append(nxt)
    root = seen[-1]
    return f"{type(root).__name__}: {_one_line(root, 80)}"


def _cached_tag_file(tag_cfg: Mapping[str, Any], cache_dir: str | None) -> str | None:
    """The tag's checkpoint when it is already in the Hugging Face hub cache, found without any network request.

    Mirrors ``open_clip.pretrained.download_pretrained`` (``hf_hub`` is ``org/repo/`` or ``org/repo/file``; the
    ``.safetensors`` variant is preferred when safetensors is installed). Without this, an offline machine waits
    for huggingface_hub's retries (about 25 s per file) before it falls back to the cache.
    """
    hub = tag_cfg.get("hf_hub") or ""
    if not hub:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    except ImportError:
        return None
    import importlib.util

    repo_id, filename = os.path.split(hub)
    filename = filename or HF_WEIGHTS_NAME
    names = [filename]
    if importlib.util.find_spec("safetensors") is not None:
        if filename == HF_WEIGHTS_NAME:
            names.insert(0, HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
    for name in names:
        try:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir or str(_hub_cache_dir()))
        except Exception:  # a malformed cache entry: let the normal download path deal with it
            return None
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _file_identity(path: Path) -> str:
    st = path.stat()
    return f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _check_weights_file(path: Path, origin: str) -> None:
    if not path.exists():
        raise ClipWeightsError(
            f"CLIP weights file not found: {path} (from {origin}); {_WEIGHTS_HINT}, or unset it to use "
            "open_clip's download cache"
        )
    if not path.is_file():
        raise ClipWeightsError(
            f"CLIP weights path is not a file: {path} (from {origin}); pass the .bin/.pt/.safetensors file itself"
        )


def _load_error(path: Path, origin: str, model_name: str, exc: BaseException) -> ClipWeightsError:
    text = str(exc)
    if "state_dict" in text or "size mismatch" in text or "Missing key" in text or "Unexpected key" in text:
        why = f"its tensors do not match the {model_name} architecture ({_one_line(exc, 200)})"
    else:
        why = f"not a readable open_clip checkpoint ({type(exc).__name__}: {_one_line(exc, 200)})"
    return ClipWeightsError(
        f"could not load CLIP weights from {path} (from {origin}) into {model_name}: {why}; pass weights made for "
        f"{model_name}, or pick the matching model"
    )


def _known_model(open_clip: Any, model_name: str) -> None:
    if model_name.startswith(_SCHEMAS):
        return
    names = open_clip.list_models()
    if model_name.replace("/", "-") not in names:
        close = difflib.get_close_matches(model_name, names, n=5)
        hint = f"did you mean {', '.join(close)}?" if close else f"open_clip knows {len(names)} models"
        raise ClipModelError(f"unknown CLIP model {model_name!r}; {hint} (see open_clip.list_models())")


def load_open_clip(
    model_name: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    *,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[torch.nn.Module, WeightsSource]:
    """Build an open_clip model with weights resolved as the module docstring says; eval mode, no gradients.

    Args:
        model_name: open_clip model name, or ``hf-hub:`` / ``local-dir:`` (then ``pretrained`` is ignored).
        pretrained: tag, checkpoint file or None (random weights when no file is given either).
        weights: a local checkpoint file (``--clip-weights``); first priority.
        device: where the model lives.
        cache_dir: open_clip's download cache (None: the Hugging Face hub cache).
        environ: the environment to read ``ANYSKILL_CLIP_WEIGHTS`` from (default ``os.environ``; ``{}`` ignores it).

    Raises:
        ClipModelError: unknown model name or tag.
        ClipWeightsError: a missing or incompatible file, or a tag that is neither cached nor downloadable.
    """
    import open_clip

    env = os.environ if environ is None else environ
    device = torch.device(device)
    cache = None if cache_dir is None else str(cache_dir)
    _known_model(open_clip, model_name)
    schema = model_name.startswith(_SCHEMAS)
    base_name = model_name.replace("/", "-")
    tag_cfg: dict[str, Any] = {}
    if pretrained and not schema and not os.path.isfile(pretrained):
        tag_cfg = dict(open_clip.get_pretrained_cfg(base_name, pretrained) or {})

    file, origin = _weights_file(weights, env, pretrained, schema)

    if file is not None:
        _check_weights_file(file, origin)
        try:
            if schema:
                model = open_clip.create_model(
                    model_name, load_weights=False, device=device, pretrained_text=False, cache_dir=cache
                )
                open_clip.load_checkpoint(model, str(file), strict=True)
                model.to(device)
            else:
                # A file is usually the tag's weights saved for offline use: keep the tag's preprocessing (and its
                # QuickGELU, which open_clip only warns about when the tag is loaded by name).
                model = open_clip.create_model(
                    model_name,
                    pretrained=str(file),
                    device=device,
                    force_preprocess_cfg=tag_cfg or None,
                    force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
                )
        except ClipModelError:
            raise
        except Exception as exc:
            raise _load_error(file, origin, model_name, exc) from exc
        source = WeightsSource("file", origin, path=str(file), identity=_file_identity(file))
    elif schema:
        try:
            model = open_clip.create_model(model_name, device=device, cache_dir=cache)
        except Exception as exc:
            raise ClipWeightsError(
                f"could not load CLIP model {model_name}: {_root_cause(exc)}; download it once with network access, "
                f"or {_WEIGHTS_HINT}"
            ) from exc
        source = WeightsSource("schema", "model", identity=f"schema:{model_name}")
    elif pretrained:
        if not tag_cfg:
            tags = open_clip.list_pretrained_tags_by_model(base_name)
            raise ClipModelError(
                f"unknown pretrained tag {pretrained!r} for CLIP model {model_name} and no such file; known tags: "
                f"{', '.join(tags) if tags else 'none'}"
            )
        where = cache or (str(_hub_cache_dir()) if tag_cfg.get("hf_hub") else str(Path("~/.cache/clip").expanduser()))
        path = _cached_tag_file(tag_cfg, cache)
        origin = "cache" if path else "download"
        try:
            path = path or open_clip.download_pretrained(tag_cfg, cache_dir=cache)
            if not path:
                raise FileNotFoundError("open_clip has no download location for this tag")
        except Exception as exc:
            raise ClipWeightsError(
                f"could not load CLIP weights for {model_name}/{pretrained}: not in the cache ({where}) and the hub "
                f"is unreachable ({_root_cause(exc)}). Download once with network access, or {_WEIGHTS_HINT}"
            ) from exc
        try:
            model = open_clip.create_model(
                model_name,
                pretrained=str(path),
                device=device,
                force_preprocess_cfg=tag_cfg,
                force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
            )
        except Exception as exc:
            raise ClipWeightsError(
                f"could not load the cached CLIP weights {path} for {model_name}/{pretrained} "
                f"({type(exc).__name__}: {_one_line(exc, 200)}); delete the file to download it again, or "
                f"{_WEIGHTS_HINT}"
            ) from exc
        source = WeightsSource("tag", origin, path=str(path), tag=pretrained, identity=f"tag:{pretrained}")
    else:
        model = open_clip.create_model(model_name, pretrained=None, device=device, pretrained_text=False)
        source = WeightsSource("random", "none")
    model.eval()
    model.requires_grad_(False)
    return model, source


def _hub_offline(env: Mapping[str, str]) -> bool:
    """huggingface_hub's offline switch: ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` now, or as it read them."""
    flags = (env.get("HF_HUB_OFFLINE"), env.get("TRANSFORMERS_OFFLINE"))
    if any((v or "").strip().upper() in ("1", "ON", "YES", "TRUE") for v in flags):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except (ImportError, AttributeError):
        return False


def _weights_file(
    weights: str | os.PathLike[str] | None, env: Mapping[str, str], pretrained: str | None, schema: bool
) -> tuple[Path | None, str]:
    """The local weights file to load and where its name came from, in the documented order: the ``weights``
    argument, ``$ANYSKILL_CLIP_WEIGHTS``, a ``pretrained`` that is a file; (None, "none") when none applies."""
    if weights is not None and str(weights).strip():
        return Path(weights).expanduser(), "argument"
    if env.get(CLIP_WEIGHTS_ENV, "").strip():
        return Path(env[CLIP_WEIGHTS_ENV].strip()).expanduser(), CLIP_WEIGHTS_ENV
    if pretrained and not schema and os.path.isfile(pretrained):
        return Path(pretrained).expanduser(), "pretrained"
    return None, "none"


def check_weights_available(
    model_name: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    *,
    weights: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    hub_timeout_s: float = 5.0,
) -> str:
    """Pre-flight of :func:`load_open_clip`: where its weights would come from, without building the model or
    downloading anything; raises the error the load would raise when they cannot come from anywhere.

    The same order as the load: ``weights``, ``$ANYSKILL_CLIP_WEIGHTS`` or a ``pretrained`` file (it must exist);
    ``hf-hub:`` / ``local-dir:`` models and ``pretrained=None`` (random weights) are not checked; a pretrained tag
    must be known and either in the cache, or downloadable: not when the hub is offline (``HF_HUB_OFFLINE``),
    and otherwise one metadata request (``hub_timeout_s``) tells whether the hub answers. Returns a short
    description of the source (``file PATH``, ``cache PATH``, ``download``, ``random``, ``model``).

    Raises:
        ClipModelError: unknown model name or tag.
        ClipWeightsError: a missing file, or a tag neither cached nor downloadable; the message names
            ``--clip-weights`` and ``$ANYSKILL_CLIP_WEIGHTS``.
    """
    env = os.environ if environ is None else environ
    schema = model_name.startswith(_SCHEMAS)
    file, origin = _weights_file(weights, env, pretrained, schema)
    if file is not None:
        _check_weights_file(file, origin)
        return f"file {file}"
    if schema:
        return "model"
    if not pretrained:
        return "random"
    import open_clip

    _known_model(open_clip, model_name)
    base_name = model_name.replace("/", "-")
    tag_cfg = dict(open_clip.get_pretrained_cfg(base_name, pretrained) or {})
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(base_name)
        raise ClipModelError(
            f"unknown pretrained tag {pretrained!r} for CLIP model {model_name} and no such file; known tags: "
            f"{', '.join(tags) if tags else 'none'}"
        )
    cache = None if cache_dir is None else str(cache_dir)
    hub = tag_cfg.get("hf_hub") or ""
    if hub:
        found = _cached_tag_file(tag_cfg, cache)
        where = cache or str(_hub_cache_dir())
    else:  # open_clip's URL download: CACHE/<file name>
        where = cache or str(Path("~/.cache/clip").expanduser())
        url = tag_cfg.get("url") or ""
        found = os.path.join(where, os.path.basename(url)) if url else None
        found = found if found and os.path.isfile(found) else None
    if found:
        return f"cache {found}"
    if _hub_offline(env):
        why = "HF_HUB_OFFLINE is set"
    elif not hub:
        return "download"
    else:
        try:
            from huggingface_hub import get_hf_file_metadata, hf_hub_url
            from open_clip.constants import HF_WEIGHTS_NAME

            repo_id, filename = os.path.split(hub)
            get_hf_file_metadata(hf_hub_url(repo_id, filename or HF_WEIGHTS_NAME), timeout=hub_timeout_s)
            return "download"
        except Exception as exc:
            why = _root_cause(exc)
    raise ClipWeightsError(
        f"could not load CLIP weights for {model_name}/{pretrained}: not in the cache ({where}) and the hub is "
        f"unreachable ({why}). Download once with network access, or {_WEIGHTS_HINT}"
    )


# -- preprocessing ---------------------------------------------------------------------------------


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def _resize(x: torch.Tensor, hw: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == hw:
        return x
    return F.interpolate(x, size=hw, mode=mode, align_corners=False, antialias=True)


def _center_crop_or_pad(x: torch.Tensor, hw: tuple[int, int], fill: float) -> torch.Tensor:
    """torchvision ``CenterCrop`` / open_clip ``center_crop_or_pad`` on (N, C, H, W)."""
    th, tw = hw
    h, w = x.shape[-2:]
    if th > h or tw > w:
        pad_l = (tw - w) // 2 if tw > w else 0
        pad_t = (th - h) // 2 if th > h else 0
        pad_r = (tw - w + 1) // 2 if tw > w else 0
        pad_b = (th - h + 1) // 2 if th > h else 0
        x = F.pad(x, (pad_l, pad_r, pad_t, pad_b), value=fill)
        h, w = x.shape[-2:]
    top = int(round((h - th) / 2.0))
    left = int(round((w - tw) / 2.0))
    return x[..., top : top + th, left : left + tw]


def preprocess_frames(
    frames: torch.Tensor,
    size: int | Sequence[int],
    mean: Sequence[float] | torch.Tensor = OPENAI_MEAN,
    std: Sequence[float] | torch.Tensor = OPENAI_STD,
    *,
    interpolation: str = "bicubic",
    resize_mode: str = "shortest",
    fill_color: float = 0.0,
    raw_255_input: bool = False,
) -> torch.Tensor:
    """open_clip's eval transform, batched on the frames' device: (N, 3|4, H, W) -> (N, 3, *size) float32.

    Frames are floats in [0, 1] or uint8 0-255; a 4th (alpha) channel is dropped. ``resize_mode`` follows open_clip:
    ``shortest`` (shortest side to the target, then center crop; torchvision's size rounding), ``longest`` (longest
    side, then center crop or pad with ``fill_color``, 0-255) or ``squash``; ``interpolation`` is ``bicubic`` or
    ``bilinear``, with antialias. The resized image is clamped to [0, 1], as PIL's uint8 pipeline saturates. Then
    ``(x - mean) / std``, or, with ``raw_255_input``, ``255 * x`` and no mean/std (the reference, spec §5.5).
    """
    if frames.ndim != 4 or frames.shape[1] not in (3, 4):
        raise ValueError(f"frames must be (N, 3, H, W) (or RGBA (N, 4, H, W)), got {tuple(frames.shape)}")
    x = frames[:, :3]
    x = x.float() / 255.0 if not x.is_floating_point() else x.float()
    th, tw = _hw(size)
    h, w = x.shape[-2:]
    mode = "bilinear" if interpolation == "bilinear" else "bicubic"
    if resize_mode == "squash":
        x = _resize(x, (th, tw), mode)
    elif resize_mode == "longest":
        ratio = max(h / th, w / tw)
        x = _resize(x, (round(h / ratio), round(w / ratio)), mode)
        x = _center_crop_or_pad(x, (th, tw), float(fill_color) / 255.0)  # a PIL 0-255 fill
    elif resize_mode == "shortest":
        if th == tw:  # torchvision Resize(int): shortest side to th, the other truncated
            short, long = min(h, w), max(h, w)
            new_long = int(th * long / short)
            nh, nw = (th, new_long) if h <= w else (new_long, th)
        else:  # open_clip ResizeKeepRatio(longest=0)
            ratio = min(h / th, w / tw)
            nh, nw = round(h / ratio), round(w / ratio)
        x = _resize(x, (nh, nw), mode)
        x = _center_crop_or_pad(x, (th, tw), 0.0)
    else:
        raise ValueError(f"resize_mode must be shortest, longest or squash, got {resize_mode!r}")
    if (h, w) != (th, tw):
        x = x.clamp(0.0, 1.0)
    if raw_255_input:
        return x * 255.0
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def resolve_autocast_dtype(mode: str | None, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``mode`` on ``device``: ``auto`` is bf16 on CUDA when supported, else fp16, and
    None (no autocast) off CUDA; ``bf16`` / ``fp16`` force it; ``off`` / None disable it."""
    device = torch.device(device)
    if mode is None or mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    raise ClipModelError(f"autocast must be one of {sorted(_AUTOCAST)}, got {mode!r}")


def cosine_to_prompts(
    image_features: torch.Tensor, text_features: torch.Tensor, prompt_index: torch.Tensor | None = None
) -> torch.Tensor:
    """Cosine of each row of ``image_features`` (N, D) with ITS OWN prompt: ``text_features[prompt_index[i]]``.

    Both inputs are expected L2-normalised. ``prompt_index`` is (N,) long; it may be None when there is one prompt.
    Not the reference's ``text_latents[latent_text_idx]`` mis-indexing (spec §9.5). Returns (N,) float32.
    """
    if text_features.ndim == 1:
        text_features = text_features.unsqueeze(0)
    n, p = image_features.shape[0], text_features.shape[0]
    if image_features.shape[-1] != text_features.shape[-1]:
        raise ValueError(f"feature sizes differ: images {image_features.shape[-1]}, texts {text_features.shape[-1]}")
    text = text_features.to(device=image_features.device, dtype=image_features.dtype)
    if prompt_index is None:
        if p != 1:
            raise ValueError(f"prompt_index is required with {p} prompts")
        return (image_features * text).sum(-1)
    idx = torch.as_tensor(prompt_index, device=image_features.device).long()
    if idx.shape != (n,):
        raise ValueError(f"prompt_index must be ({n},), got {tuple(idx.shape)}")
    if n and (int(idx.min()) < 0 or int(idx.max()) >= p):
        raise ValueError(f"prompt_index out of range [0, {p})")
    return (image_features * text[idx]).sum(-1)


# -- the reward model --------------------------------------------------------------------------


class ClipRewardModel:
    """An open_clip model with device preprocessing, batched encoders, the per-env cosine and the text cache.

    Build with ``ClipRewardModel(model_name, pretrained, weights=..., device=...)`` (loads weights as the module
    docstring says) or :meth:`from_model` (an already built open_clip model, e.g. in tests).

    Attributes:
        model: the open_clip model (eval mode, no gradients).
        tokenizer: callable ``list[str] -> (P, context_length) long``.
        model_id: the model name (part of the text-cache key).
        weights: where the weights came from; ``weights.identity`` is the other part of the cache key.
        image_size, mean, std, interpolation, resize_mode: the preprocessing.
        device, batch_size, autocast_dtype, raw_255_input: how frames are encoded.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        pretrained: str | None = DEFAULT_PRETRAINED,
        *,
        weights: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        autocast: str | None = "auto",
        half_image_tower: bool = False,
        raw_255_input: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        import open_clip

        model, source = load_open_clip(
            model_name, pretrained, weights=weights, device=device, cache_dir=cache_dir, environ=environ
        )
        try:
            tokenizer = open_clip.get_tokenizer(model_name, cache_dir=None if cache_dir is None else str(cache_dir))
        except Exception as exc:
            raise ClipModelError(f"could not build the tokenizer of CLIP model {model_name}: {_one_line(exc)}") from exc
        pp = dict(open_clip.get_model_preprocess_cfg(model))
        self._setup(
            model,
            tokenizer,
            image_size=pp.get("size", getattr(model.visual, "image_size", 224)),
            mean=pp.get("mean", OPENAI_MEAN),
            std=pp.get("std", OPENAI_STD),
            interpolation=pp.get("interpolation", "bicubic"),
            resize_mode=pp.get("resize_mode", "shortest"),
            fill_color=pp.get("fill_color", 0),
            model_id=model_name,
            source=source,
            device=device,
            batch_size=batch_size,
            autocast=autocast,
            half_image_tower=half_image_tower,
            raw_255_input=raw_255_input,
        )

    @classmethod
    def from_config(
        cls,
        config: ClipConfig,
        *,
        device: str | torch.device = "cpu",
        weights: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ClipRewardModel:
        """Build from the ``clip:`` config section; ``weights`` (``--clip-weights``) overrides ``config.weights``."""
        return cls(
            config.model,
            config.pretrained,
            weights=weights if weights is not None else config.weights,
            device=device,
            batch_size=config.batch_size,
            autocast=config.autocast,
            half_image_tower=config.half_image_tower,
            raw_255_input=config.raw_255_input,
            cache_dir=config.cache_dir,
            environ=environ,
        )

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        tokenizer: Callable[[list[str]], torch.Tensor],
        image_size: int | Sequence[int],
        mean: Sequence[float] = OPENAI_MEAN,
        std: Sequence[float] = OPENAI_STD,
        *,
        interpolation: str = "bicubic",
        resize_mode: str = "shortest",
        model_id: str = "custom",
        weights_id: str | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 256,
        autocast: str | None = "auto",
        half_image_tower: bool = False,
        raw_255_input: bool = False,
    ) -> ClipRewardModel:
        """Wrap an already built open_clip model (anything with ``encode_image`` / ``encode_text``).

        ``weights_id`` names its weights for the text cache; None disables caching. ``device`` defaults to the
        model's own.
        """
        if device is None:
            param = next(iter(model.parameters()), None)
            device = param.device if param is not None else torch.device("cpu")
        self = cls.__new__(cls)
        model.eval()
        model.requires_grad_(False)
        source = WeightsSource("model", "from_model", identity=weights_id)
        self._setup(
            model,
            tokenizer,
            image_size=image_size,
            mean=mean,
            std=std,
            interpolation=interpolation,
            resize_mode=resize_mode,
            fill_color=0,
            model_id=model_id,
            source=source,
            device=device,
            batch_size=batch_size,
            autocast=autocast,
            half_image_tower=half_image_tower,
            raw_255_input=raw_255_input,
        )
        return self

    def _setup(
        self,
        model: torch.nn.Module,
        tokenizer: Callable[[list[str]], torch.Tensor],
        *,
        image_size: int | Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: str,
        resize_mode: str,
        fill_color: float,
        model_id: str,
        source: WeightsSource,
        device: str | torch.device,
        batch_size: int,
        autocast: str | None,
        raw_255_input: bool,
        half_image_tower: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ClipModelError(f"CLIP batch size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.image_size = _hw(image_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.interpolation = interpolation
        self.resize_mode = resize_mode
        self.fill_color = fill_color
        self.model_id = model_id
        self.weights = source
        self.batch_size = int(batch_size)
        self.autocast_dtype = resolve_autocast_dtype(autocast, self.device)
        self.raw_255_input = bool(raw_255_input)
        #: the dtype frames are encoded in without autocast (the image tower cast to it), or None
        self.image_dtype: torch.dtype | None = None
        if half_image_tower and self.autocast_dtype is not None:
            visual = getattr(self.model, "visual", None)
            if visual is None:
                raise ClipModelError(f"half_image_tower: CLIP model {model_id} has no `visual` image tower")
            visual.to(self.autocast_dtype)
            self.image_dtype = self.autocast_dtype

    # -- encoders --

    @property
    def weights_id(self) -> str | None:
        """What identifies the weights in the text-cache key (None: not cached)."""
        return self.weights.identity

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) frames in [0, 1] -> the model's input (N, 3, *image_size), on :attr:`device`."""
        return preprocess_frames(
            frames.to(self.device, non_blocking=True),
            self.image_size,
            self.mean,
            self.std,
            interpolation=self.interpolation,
            resize_mode=self.resize_mode,
            fill_color=self.fill_color,
            raw_255_input=self.raw_255_input,
        )

    def encode_images(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) frames in [0, 1] -> (N, D) L2-normalised float32 image features, in chunks of batch_size."""
        if frames.ndim != 4:
            raise ValueError(f"frames must be (N, 3, H, W), got {tuple(frames.shape)}")
        out = []
        with torch.no_grad():
            for chunk in frames.split(self.batch_size):
                x = self.preprocess(chunk)
                if self.image_dtype is not None:  # a half image tower: no autocast, no per-call weight casts
                    f = self.model.encode_image(x.to(self.image_dtype))
                else:
                    with self._autocast():
                        f = self.model.encode_image(x)
                out.append(F.normalize(f.float(), dim=-1))
        if not out:
            return torch.zeros(0, self.embed_dim, device=self.device)
        return torch.cat(out)

    def encode_texts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompts -> (P, D) L2-normalised float32 text features (no cache; see :meth:`text_features`)."""
        if isinstance(prompts, str):
            raise TypeError("encode_texts takes a list of prompts, not one string")
        prompts = list(prompts)
        if not prompts:
            return torch.zeros(0, self.embed_dim, device=self.device)
        out = []
        with torch.no_grad():
            for i in range(0, len(prompts), self.batch_size):
                tokens = self.tokenizer(prompts[i : i + self.batch_size]).to(self.device)
                with self._autocast():
                    f = self.model.encode_text(tokens)
                out.append(F.normalize(f.float(), dim=-1))
        return torch.cat(out)

    @property
    def embed_dim(self) -> int:
        """D, the size of the joint embedding."""
        proj = getattr(self.model, "text_projection", None)
        if isinstance(proj, torch.Tensor):
            return int(proj.shape[-1])
        visual_dim = getattr(getattr(self.model, "visual", None), "output_dim", None)
        if visual_dim is not None:
            return int(visual_dim)
        return int(self.encode_texts(["a"]).shape[-1])

    def text_features(
        self, prompts: Sequence[str], cache: TextFeatureCache | os.PathLike[str] | str | Any | None = None
    ) -> torch.Tensor:
        """(P, D) L2-normalised text features on :attr:`device`, read from / written to the workspace cache.

        ``cache`` is a :class:`~anyskill_tui.core.reward.text_cache.TextFeatureCache`, a workspace (a
        :class:`~anyskill_tui.workspace.Workspace` or its root folder), or None (always encode). Models with random
        weights (``weights_id`` None) are never cached.
        """
        from anyskill_tui.core.reward.text_cache import TextFeatureCache

        if cache is None or self.weights_id is None:
            return self.encode_texts(prompts)
        if not isinstance(cache, TextFeatureCache):
            cache = TextFeatureCache.for_workspace(cache)
        feats = cache.get_or_compute(self.model_id, self.weights_id, list(prompts), self.encode_texts)
        return feats.to(self.device)

    def similarity(
        self, frames: torch.Tensor, text_features: torch.Tensor, prompt_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(N,) cosine of each frame with its own env's prompt ``text_features[prompt_index[i]]`` (spec §5.1)."""
        return cosine_to_prompts(self.encode_images(frames), text_features, prompt_index)

    def __repr__(self) -> str:
        return (
            f"ClipRewardModel({self.model_id!r}, weights={self.weights.kind}:{self.weights.tag or self.weights.path}, "
            f"device={self.device}, size={self.image_size}, raw_255_input={self.raw_255_input})"
        )
