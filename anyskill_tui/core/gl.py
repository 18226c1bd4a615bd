"""Headless OpenGL for `mujoco.Renderer` (the `cpu` engine's camera, clip previews, replays).

Two things must happen before the first GL context of a process:
- on a Linux machine without a display, MuJoCo must render through EGL, even when mujoco was imported before
  `MUJOCO_GL` was set (it picks its GL backend at import time; GLFW cannot open a context without a display);
- triton (pulled in by torch's compiler stack, which `torch.optim` imports lazily) must already be loaded: it and
  Mesa's llvmpipe each bring an LLVM, and importing triton *after* llvmpipe is loaded segfaults (seen here when a
  trainer created its Adam optimiser after an env had rendered a frame).
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import sys

__all__ = ["headless_linux", "egl_available", "prefer_egl_env", "ensure_headless_gl"]

_done = False


def headless_linux() -> bool:
    """True on Linux with neither DISPLAY nor WAYLAND_DISPLAY."""
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def egl_available() -> bool:
    return ctypes.util.find_library("EGL") is not None


def prefer_egl_env() -> None:
    """Set MUJOCO_GL=egl for a headless Linux process, before mujoco is imported (no-op otherwise)."""
    if headless_linux() and "MUJOCO_GL" not in os.environ and egl_available():
        os.environ["MUJOCO_GL"] = "egl"


def _preload_triton() -> None:
    # torch builds without the compiler stack simply have nothing to preload
    with contextlib.suppress(Exception):
        import torch._dynamo  # noqa: F401  (imports triton when it is installed)


def ensure_headless_gl() -> None:
    """Call before creating a `mujoco.Renderer`: preloads triton, and switches MuJoCo to EGL when headless."""
    global _done
    if _done:
        return
    _preload_triton()
    if headless_linux() and egl_available() and os.environ.get("MUJOCO_GL", "egl").lower() == "egl":
        try:
            from mujoco.rendering.classic import gl_context
        except ImportError:  # pragma: no cover - older mujoco layouts
            gl_context = None
        current = getattr(gl_context, "GLContext", None) if gl_context is not None else None
        if gl_context is not None and not (current is not None and current.__module__.startswith("mujoco.egl")):
            from mujoco.egl import GLContext

            gl_context.GLContext = GLContext
    _done = True
