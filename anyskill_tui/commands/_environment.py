"""What this machine offers, found without importing heavy packages (for `anyskill info`)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

CLIP_HF_REPO_DIR = "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
CLIP_WEIGHTS_ENV = "ANYSKILL_CLIP_WEIGHTS"


def module_available(name: str) -> bool:
    """True when ``name`` can be imported; checked with ``find_spec`` (nothing is imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def engines() -> dict[str, dict[str, Any]]:
    """Per engine: the modules it needs and whether they are importable."""
    out: dict[str, dict[str, Any]] = {}
    for engine, mods in (("cpu", ["mujoco"]), ("gpu", ["mujoco_warp", "warp"])):
        found = {m: module_available(m) for m in mods}
        out[engine] = {"available": all(found.values()), "modules": found}
    out["isaacgym"] = {"available": None, "modules": {}, "note": "runs in its own Python; not checked here"}
    return out


def cuda_gpus() -> list[str]:
    """Names of the NVIDIA GPUs seen by ``nvidia-smi -L`` (or /proc/driver/nvidia); [] when none."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            res = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
            if res.returncode == 0:
                gpus = [ln.strip() for ln in res.stdout.splitlines() if ln.strip().startswith("GPU ")]
                if gpus:
                    return gpus
        except (OSError, subprocess.SubprocessError):
            pass
    names: list[str] = []
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        for info in sorted(proc.glob("*/information")):
            try:
                for ln in info.read_text().splitlines():
                    if ln.startswith("Model:"):
                        names.append(ln.split(":", 1)[1].strip())
            except OSError:
                continue
    return names


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder (``HF_HUB_CACHE``, ``HF_HOME/hub`` or ``~/.cache/huggingface/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "huggingface" / "hub"


def clip_weights() -> dict[str, Any]:
    """Where CLIP ViT-B-32 weights are: ``$ANYSKILL_CLIP_WEIGHTS`` or the open_clip/HF hub cache."""
    env = os.environ.get(CLIP_WEIGHTS_ENV, "").strip()
    if env:
        p = Path(env).expanduser()
        if p.exists():
            return {"found": True, "path": str(p), "source": CLIP_WEIGHTS_ENV}
        return {"found": False, "path": str(p), "source": CLIP_WEIGHTS_ENV, "note": "path does not exist"}
    repo = hf_hub_cache() / CLIP_HF_REPO_DIR
    snaps = repo / "snapshots"
    if snaps.is_dir() and any(snaps.rglob("*")):
        return {"found": True, "path": str(repo), "source": "huggingface-cache"}
    return {
        "found": False,
        "path": None,
        "source": None,
        "note": f"open_clip downloads them on first use, or set {CLIP_WEIGHTS_ENV}",
    }
