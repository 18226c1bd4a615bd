"""Replaying a fixed-shape function of device tensors from a CUDA graph (:class:`GraphedCall`).

A rollout step of the LLC trainer issues a few hundred small kernels; at 4,096 envs the host takes longer to launch
them than the GPU takes to run them. Captured once and replayed, the step costs one launch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


class GraphedCall:
    """``fn(*tensors)`` replayed from a CUDA graph after ``warmup`` eager calls.

    The first ``warmup`` calls run ``fn`` eagerly (lazy initialisation, cuBLAS workspaces and cached constants
    happen there); the next call captures ``fn`` on static copies of its arguments and replays the capture; every
    later call copies its arguments into those static tensors (skipped when an argument *is* the static tensor)
    and replays. The results are the graph's static outputs, overwritten by the next call: copy what must live
    longer.

    ``fn`` must keep its shapes, never synchronise with the host, write persistent state only in place, and draw
    random numbers only from the default CUDA generator or from ``generators``: those are registered with the
    graph, so a replay draws exactly what an eager call would have drawn at that point of the stream (the
    generators' offsets advance per replay as per eager call). ``around_capture`` runs right before and right
    after the capture: dropping caches, so that no tensor computed outside the graph is read from a cache
    inside it, and no graph-pool tensor leaks out through one.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        generators: Sequence[torch.Generator] = (),
        warmup: int = 2,
        around_capture: Callable[[], None] | None = None,
    ) -> None:
        self.fn = fn
        self.generators = [g for g in generators if g.device.type == "cuda"]
        self.warmup = int(warmup)
        self.around_capture = around_capture or (lambda: None)
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_in: tuple[torch.Tensor, ...] = ()
        self.static_out: Any = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, *args: torch.Tensor) -> Any:
        self.calls += 1
        if self.graph is None:
            if self.calls <= self.warmup:
                return self.fn(*args)
            self.static_in = tuple(a.detach().clone() for a in args)
            self.around_capture()
            graph = torch.cuda.CUDAGraph()
            for g in self.generators:
                graph.register_generator_state(g)
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.static_out = self.fn(*self.static_in)
            self.around_capture()
            self.graph = graph
        else:
            for s, a in zip(self.static_in, args, strict=True):
                if s.data_ptr() != a.data_ptr():
                    s.copy_(a)
        self.graph.replay()
        return self.static_out
