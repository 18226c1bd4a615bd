"""Vectorised humanoid simulation: backends (`cpu`: C MuJoCo, `gpu`: MuJoCo Warp) behind `SimBackend`, the
shared tracking-camera math, and `HumanoidEnv`.

Importing this package is cheap (no torch, mujoco or warp); the engines load on first use:

    from anyskill_tui.core.sim import make_backend, default_engine
    backend = make_backend(default_engine(), num_envs=64, device="cpu")
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from anyskill_tui.core.sim.backend import CameraSpec, SimBackend

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["CameraSpec", "SimBackend", "ENGINES", "default_engine", "make_backend"]

ENGINES = ("cpu", "gpu")


def default_engine() -> str:
    """`gpu` when CUDA is available and mujoco_warp is importable, else `cpu`."""
    if importlib.util.find_spec("mujoco_warp") is None or importlib.util.find_spec("warp") is None:
        return "cpu"
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def make_backend(
    engine: str,
    num_envs: int,
    device: str | torch.device | None = None,
    *,
    threads: int | None = None,
    dtype: torch.dtype | None = None,
    model_options: Any = None,
    render_size: tuple[int, int] | None = None,
    scene: Any = None,
    **kwargs: Any,
) -> SimBackend:
    """Build a backend of `num_envs` worlds.

    engine: "cpu" or "gpu" ("auto": `default_engine()`); device: torch device of the state tensors (cpu engine:
    default "cpu"; gpu engine: default "cuda"); threads: the cpu engine's thread count (None: all CPUs);
    dtype: float dtype of the cpu engine's tensors (the gpu engine is float32); model_options:
    `character.model.ModelOptions`; render_size: (width, height) the gpu engine prepares a render context for;
    scene: objects beside the character (`scene.SceneConfig`, a shipped scene's name or a scene YAML path; None:
    the character alone), added to `model_options` (`scene.scene_model_options`).
    Extra keyword arguments go to the engine's constructor.
    """
    if engine == "auto":
        engine = default_engine()
    if scene is not None:
        from anyskill_tui.core.sim.scene import resolve_scene, scene_model_options

        model_options = scene_model_options(resolve_scene(scene), model_options)
    if engine == "cpu":
        import torch

        from anyskill_tui.core.sim.cpu import CpuBackend

        return CpuBackend(
            num_envs,
            device=device or "cpu",
            nthread=threads,
            model_options=model_options,
            dtype=dtype or torch.float32,
            **kwargs,
        )
    if engine == "gpu":
        import torch

        from anyskill_tui.core.character.model import load_model
        from anyskill_tui.core.sim.gpu import WarpBackend

        if dtype is not None and dtype != torch.float32:
            raise ValueError("the gpu engine computes in float32 only")
        dev = str(device) if device is not None else "cuda:0"
        if dev == "cuda":
            dev = "cuda:0"
        if render_size is not None:
            kwargs.setdefault("render_size", tuple(render_size))
        if scene is not None:  # an object on the floor adds contacts (a chair's four legs: up to 16) and their rows
            kwargs.setdefault("nconmax", 64)
            kwargs.setdefault("njmax", 256)
        return WarpBackend(load_model(model_options), num_envs, device=dev, **kwargs)
    raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)} or auto")
