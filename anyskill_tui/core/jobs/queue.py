"""The run queue: enqueue runs; a worker starts them, at most N at a time, highest priority then oldest.

A worker never trains anything itself: each loop it reconciles (stale runs become ``failed``), counts the
workspace's ``running`` runs, and while fewer than ``slots`` run it claims the next queued run with
:meth:`~anyskill_tui.store.library.Library.claim_next_queued_run` (a conditional UPDATE under
``BEGIN IMMEDIATE``: two workers never take the same run) and starts its runner with
:func:`~anyskill_tui.core.jobs.launcher.start_run`. The runs outlive the worker.

``slots`` defaults to the number of GPUs ``nvidia-smi -L`` lists, or 1 without one. It bounds the
running runs of the whole workspace, whoever started them.
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


Launcher = Callable[[Path, int], int]


@dataclass
class Worker:
    """Starts queued runs of a workspace, at most ``slots`` running at a time.

    Args:
        workspace: the workspace folder (or a :class:`~anyskill_tui.workspace.Workspace`).
        slots: the most runs running at once (default :func:`default_slots`).
        launch: how to start a claimed run (default :func:`~anyskill_tui.core.jobs.launcher.start_run`).
        stale_after: seconds without a heartbeat before a run is stale (default: the launcher's).
    """

    workspace: Path | str | Workspace
    slots: int | None = None
    launch: Launcher | None = None
    stale_after: float | None = None
    started: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        from anyskill_tui.core.jobs.launcher import workspace_root

        self.root = workspace_root(self.workspace)
        if self.slots is None:
            self.slots = default_slots()
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
                run = lib.claim_next_queued_run()
                if run is None:
                    break
                assert run.id is not None
                try:
                    launch(self.root, run.id)
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

    def run_forever(self, poll_s: float = 2.0, on_start: Callable[[int], None] | None = None) -> None:
        """Loop :meth:`run_once` every ``poll_s`` seconds until :meth:`stop` (or Ctrl-C in the caller)."""
        while not self._stop.is_set():
            for run_id in self.run_once():
                if on_start is not None:
                    on_start(run_id)
            self._stop.wait(poll_s)
