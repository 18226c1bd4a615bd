"""The run queue: enqueue runs; a worker starts them, at most N at a time, highest priority then oldest.

A worker never trains anything itself: each loop it reconciles (stale runs become ``failed``), counts the
workspace's ``running`` runs, and while fewer than ``slots`` run it claims the next queued run with
:meth:`~anyskill_tui.store.library.Library.claim_next_queued_run` (a conditional UPDATE under
``BEGIN IMMEDIATE``: two workers never take the same run) and starts its runner with
:func:`~anyskill_tui.core.jobs.launcher.start_run`. The runs outlive the worker.

``slots`` defaults to the number of GPUs ``nvidia-smi -L`` lists, or 1 without one. It bounds the
running runs of the whole workspace, whoever started them.

With ``gpus`` (``anyskill worker --gpus 0,1``) the worker also places runs on GPUs: each run it starts gets
``CUDA_VISIBLE_DEVICES`` naming free GPUs of that list (one for an ordinary run, ``nproc`` for a run that trains
in several processes), and a GPU stays taken until that run is no longer ``running``. Runs are taken in queue
order: when the next one needs more GPUs than are free, the worker waits rather than skipping it. It knows only
the GPUs of the runs it started itself (``slots`` still counts everyone's). ``slots`` defaults to the list's length.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyskill_tui.errors import UserError
from anyskill_tui.store.enums import RunStatus

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.store.library import Library
    from anyskill_tui.store.models import Run
    from anyskill_tui.workspace import Workspace


def enqueue(
    library: Library,
    kind: str,
    engine: str,
    skill: int | str | None = None,
    config: dict[str, Any] | None = None,
    priority: int = 0,
) -> Run:
    """Create a ``queued`` run (a worker will start it). ``skill``: id or prompt text."""
    return library.create_run(kind, engine, skill=skill, config=config or {}, priority=priority)


def queued_and_running(library: Library) -> list[Run]:
    """Running runs (oldest start first), then queued runs in the order a worker takes them."""
    running = sorted(library.list_runs(status=RunStatus.RUNNING), key=lambda r: (r.started_at is None, r.id))
    queued = sorted(library.list_runs(status=RunStatus.QUEUED), key=lambda r: (-r.priority, r.id))
    return running + queued


def gpu_count() -> int:
    """GPUs listed by ``nvidia-smi -L`` (0 when there is no nvidia-smi or it fails)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    if out.returncode != 0:
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.strip().startswith("GPU "))


def default_slots() -> int:
    """Concurrent runs a worker allows by default: one per GPU, or 1."""
    return max(1, gpu_count())


#: ``launch(workspace, run_id)`` -> pid; with ``gpus`` also given ``env=`` (the child's extra environment)
Launcher = Callable[..., int]


@dataclass
class Worker:
    """Starts queued runs of a workspace, at most ``slots`` running at a time.

    Args:
        workspace: the workspace folder (or a :class:`~anyskill_tui.workspace.Workspace`).
        slots: the most runs running at once (default :func:`default_slots`).
        launch: how to start a claimed run (default :func:`~anyskill_tui.core.jobs.launcher.start_run`); with
            ``gpus`` it is called with ``env={"CUDA_VISIBLE_DEVICES": ...}`` as well.
        stale_after: seconds without a heartbeat before a run is stale (default: the launcher's).
        gpus: GPU ids (as ``CUDA_VISIBLE_DEVICES`` names them) to place runs on, one run per GPU at a time.
    """

    workspace: Path | str | Workspace
    slots: int | None = None
    launch: Launcher | None = None
    stale_after: float | None = None
    gpus: list[str] | None = None
    started: list[int] = field(default_factory=list)
    #: run id -> the GPUs this worker gave it (freed once the run is no longer running)
    placed: dict[int, list[str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        from anyskill_tui.core.jobs.launcher import workspace_root

        self.root = workspace_root(self.workspace)
        if self.gpus is not None:
            self.gpus = [str(g).strip() for g in self.gpus]
            if not self.gpus or any(not g for g in self.gpus) or len(set(self.gpus)) != len(self.gpus):
                raise UserError(f"--gpus: expected distinct GPU ids like 0,1, got {','.join(self.gpus)!r}")
        if self.slots is None:
            self.slots = len(self.gpus) if self.gpus else default_slots()
        if self.slots < 1:
            raise UserError(f"--slots must be at least 1 (got {self.slots})")

    def stop(self) -> None:
        """Ask :meth:`run_forever` to return after its current loop."""
        self._stop.set()

    def run_once(self) -> list[int]:
        """One loop: reconcile, then claim and start queued runs into the free slots. Returns started ids."""
        from anyskill_tui.core.jobs import launcher
        from anyskill_tui.store.library import Library

        launch = self.launch or launcher.start_run
        started: list[int] = []
        with Library(launcher.db_path(self.root)) as lib:
            launcher.reconcile(lib, stale_after=self.stale_after)
            assert self.slots is not None
            free = self.slots - len(lib.list_runs(status=RunStatus.RUNNING))
            while free > 0 and not self._stop.is_set():
                env: dict[str, str] | None = None
                if self.gpus is None:
                    run = lib.claim_next_queued_run()
                else:
                    run, env = self._claim_with_gpus(lib)
                if run is None:
                    break
                assert run.id is not None
                try:
                    if env is None:
                        launch(self.root, run.id)
                    else:
                        self.placed[run.id] = env["CUDA_VISIBLE_DEVICES"].split(",")
                        launch(self.root, run.id, env=env)
                except UserError as exc:
                    # start_run has already marked the run failed when the failure was its own.
                    fresh = lib.get_run(run.id)
                    if fresh.status == RunStatus.RUNNING.value and fresh.pid is None:
                        lib.update_run(run.id, status=RunStatus.FAILED, error=exc.message)
                    continue
                except Exception as exc:
                    lib.update_run(run.id, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
                    continue
                started.append(run.id)
                free -= 1
        self.started.extend(started)
        return started

    def _claim_with_gpus(self, lib: Library) -> tuple[Run | None, dict[str, str] | None]:
        """The next queued run and its ``CUDA_VISIBLE_DEVICES``, claimed, if enough of ``gpus`` are free."""
        from anyskill_tui.core.jobs.launcher import run_nproc

        assert self.gpus is not None
        for rid in list(self.placed):  # free the GPUs of runs that ended
            if lib.get_run(rid).status != RunStatus.RUNNING.value:
                del self.placed[rid]
        taken = {g for gs in self.placed.values() for g in gs}
        free = [g for g in self.gpus if g not in taken]
        while True:
            queued = [r for r in queued_and_running(lib) if r.status == RunStatus.QUEUED.value]
            if not queued:
                return None, None
            nxt = queued[0]
            assert nxt.id is not None
            need = run_nproc(nxt)
            if need > len(self.gpus):
                lib.update_run(
                    nxt.id,
                    status=RunStatus.FAILED,
                    error=f"needs {need} GPUs (nproc), the worker has {len(self.gpus)} (--gpus {','.join(self.gpus)})",
                )
                continue
            if need > len(free):
                return None, None  # wait for GPUs: the queue's order is kept
            run = lib.claim_run(nxt.id)
            if run is None:  # another worker took it: look again
                continue
            return run, {"CUDA_VISIBLE_DEVICES": ",".join(free[:need])}

    def run_forever(self, poll_s: float = 2.0, on_start: Callable[[int], None] | None = None) -> None:
        """Loop :meth:`run_once` every ``poll_s`` seconds until :meth:`stop` (or Ctrl-C in the caller)."""
        while not self._stop.is_set():
            for run_id in self.run_once():
                if on_start is not None:
                    on_start(run_id)
            self._stop.wait(poll_s)
