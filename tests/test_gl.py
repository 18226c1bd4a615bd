"""Rendering on the CPU, then building an optimiser, in one process must not crash (LLVM clash, core/gl.py)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
from anyskill_tui.core.sim.backend import CameraSpec
from anyskill_tui.core.sim.cpu import CpuBackend
frames = CpuBackend(2).render(CameraSpec(width=48, height=48))
import torch
torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # imports torch._dynamo and with it triton
print("ok", tuple(frames.shape), round(float(frames.mean()), 3))
"""


def test_render_then_optimiser_in_one_process() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok (2, 3, 48, 48)")
    assert float(out.stdout.split()[-1]) > 0.05  # a real frame, not a black one
