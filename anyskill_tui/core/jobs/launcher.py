"""Start, stop, resume and reconcile training runs (docs/tui-ecosystem.md §4).

A run is executed by the runner shim (``python -m anyskill_tui.core.jobs.runner --workspace W --run ID``,
see :mod:`anyskill_tui.core.jobs.runner`), started here detached: its own session (so it is the leader
of a new process group and survives the terminal, the TUI or the worker that started it), stdin from
``/dev/null``, stdout and stderr appended to ``RUN_DIR/train.log``, ``WANDB_MODE=offline`` and
``PYTHONUNBUFFERED=1``. Nobody who starts a run owns it: the runner writes the run's status, pid,
process create time and heartbeats; readers look at the Run row and the run dir.

Processes are identified by ``(pid, create time)`` (psutil), never by pid alone, so a reused pid is never
taken for a live run nor signalled. :func:`reconcile` marks ``failed`` every ``running`` run whose
process is gone, or whose heartbeat is older than the stale threshold (``stale_after_s``, default
``ANYSKILL_STALE_S`` or 60 s; a process that is alive but silent that long is killed).

A run whose config has ``nproc`` N > 1 (``--nproc N``) is started under torchrun instead
(``python -m torch.distributed.run --standalone --nproc-per-node N -m anyskill_tui.core.jobs.runner ...``): the
torchrun agent is the detached process (and the Run's pid, see :mod:`anyskill_tui.core.jobs.runner`), each of its
N ranks runs the runner, rank 0 owns the Run row; ``ANYSKILL_DIST_BACKEND`` (gloo for the cpu engine, else nccl)
tells the ranks which backend to use. Every runner's environment has ``NCCL_NVLS_ENABLE=0`` (no NVLink
multicast).

This module imports no torch; psutil and the store are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyskill_tui.errors import UserError
from anyskill_tui.store.enums import RunStatus

if TYPE_CHECKING:  # pragma: no cover
    import psutil

    from anyskill_tui.store.library import Library
    from anyskill_tui.store.models import Run
    from anyskill_tui.workspace import Workspace

STALE_ENV = "ANYSKILL_STALE_S"
DEFAULT_STALE_S = 60.0
HEARTBEAT_ENV = "ANYSKILL_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 2.0
LOG_NAME = "train.log"
#: tells the ranks of a torchrun launch which torch.distributed backend to use (gloo: cpu engine, nccl: gpu)
DIST_BACKEND_ENV = "ANYSKILL_DIST_BACKEND"
RUNS_SUBDIR = "runs"
_ENDED = {RunStatus.DONE.value, RunStatus.FAILED.value, RunStatus.STOPPED.value}
#: Popen objects of runners started by this process, reaped opportunistically (no zombies left behind).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise UserError(f"{name}={raw!r} must be > 0 seconds")
    return value


def stale_after_s() -> float:
    """Seconds without a heartbeat after which a running run is stale (``ANYSKILL_STALE_S``, default 60)."""
    return _env_float(STALE_ENV, DEFAULT_STALE_S)


def heartbeat_interval_s() -> float:
    """Seconds between the runner's heartbeats (``ANYSKILL_HEARTBEAT_S``, default 2)."""
    return _env_float(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S)


def workspace_root(workspace: Path | str | Workspace) -> Path:
    """The workspace folder of a Path, str or :class:`~anyskill_tui.workspace.Workspace`."""
    from anyskill_tui.workspace import Workspace

    root = workspace.root if isinstance(workspace, Workspace) else workspace  # (Path.root is "/": no getattr)
    return Path(root).expanduser().absolute()


def db_path(workspace: Path | str | Workspace) -> Path:
    from anyskill_tui.workspace import DB_NAME

    return workspace_root(workspace) / DB_NAME


def run_dir_for(workspace: Path | str | Workspace, run_id: int) -> Path:
    """A run's folder: ``WORKSPACE/runs/<id>/`` (absolute)."""
    return workspace_root(workspace) / RUNS_SUBDIR / str(int(run_id))


def resolve_run_dir(workspace: Path | str | Workspace, run: Run) -> Path:
    """The folder of ``run``: its ``run_dir`` (relative to the workspace when relative) or the default."""
    if run.run_dir:
        p = Path(run.run_dir)
        return p if p.is_absolute() else workspace_root(workspace) / p
    assert run.id is not None
    return run_dir_for(workspace, run.id)


def _open_library(workspace: Path | str | Workspace) -> Library:
    from anyskill_tui.store.library import Library

    return Library(db_path(workspace))


def _reap_children() -> None:
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)


# ---------------------------------------------------------------------------------------------------
# Process identity
# ---------------------------------------------------------------------------------------------------


def process_of(pid: int | None, create_time: float | None) -> psutil.Process | None:
    """The live process ``pid`` if it is the one that was recorded (same create time), else None.

    Zombies count as gone. Without a recorded create time only liveness is checked.
    """
    import psutil

    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if create_time is not None and abs(proc.create_time() - create_time) > 0.1:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _clock(dt: datetime | None) -> str:
    if dt is None:
        return "never"
    return _aware(dt).astimezone().strftime("%H:%M:%S")  # type: ignore[union-attr]


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# ---------------------------------------------------------------------------------------------------
# Start
# ---------------------------------------------------------------------------------------------------


def runner_command(workspace: Path | str | Workspace, run_id: int, nproc: int = 1) -> list[str]:
    """The argv of the runner shim for a run; with ``nproc`` > 1 the shim under torchrun (one rank per process)."""
    shim = ["anyskill_tui.core.jobs.runner", "--workspace", str(workspace_root(workspace)), "--run", str(int(run_id))]
    if int(nproc) > 1:
        torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(int(nproc))]
        shim[-2] = "--run-id"  # torchrun's own parser reads "--run" as an ambiguous abbreviation of --run-path
        return [sys.executable, *torchrun, "-m", *shim]
    return [sys.executable, "-m", *shim]


def run_nproc(run: Run) -> int:
    """The number of processes a run trains with (its config's ``nproc``; 1 when absent)."""
    try:
        return max(1, int((run.config or {}).get("nproc") or 1))
    except (TypeError, ValueError):
        raise UserError(f"run {run.id}: config nproc {(run.config or {}).get('nproc')!r} is not a number") from None


def runner_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a runner: ours plus ``WANDB_MODE=offline``, ``PYTHONUNBUFFERED=1`` and
    ``NCCL_NVLS_ENABLE=0``."""
    env = dict(os.environ)
    env["WANDB_MODE"] = "offline"
    env["PYTHONUNBUFFERED"] = "1"
    env["NCCL_NVLS_ENABLE"] = "0"
    env.update(extra or {})
    return env


def start_run(workspace: Path | str | Workspace, run_id: int, *, env: dict[str, str] | None = None) -> int:
    """Start the runner of a ``queued`` run (or of a ``running`` one claimed by a worker with no process
    yet) detached; return its pid.

    A queued run is claimed atomically first (two starters never both start it). The run dir is created
    and ``train.log`` opened for appending; if that fails the run is marked ``failed`` with the reason and
    a UserError is raised. Raises UserError for an ended run (use :func:`resume_run`) or a live one.
    """
    import psutil

    from anyskill_tui.store.models import utcnow

    _reap_children()
    with _open_library(workspace) as lib:
        run = lib.get_run(run_id)
        if run.status in _ENDED:
            raise UserError(f"run {run_id} is {run.status}; use `anyskill runs resume {run_id}` to continue it")
        if run.status == RunStatus.RUNNING.value:
            if process_of(run.pid, run.proc_create_time) is not None:
                raise UserError(f"run {run_id} is already running (pid {run.pid})")
        else:
            claimed = lib.claim_run(run_id)
            if claimed is None:
                raise UserError(f"run {run_id} was just taken by another worker")
            run = claimed
        run_dir = resolve_run_dir(workspace, run)
        nproc = run_nproc(run)
        launch_env = dict(env or {})
        if nproc > 1:
            launch_env.setdefault(DIST_BACKEND_ENV, "gloo" if run.engine == "cpu" else "nccl")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            log = open(run_dir / LOG_NAME, "ab")  # noqa: SIM115 - handed to the child, closed below
        except OSError as exc:
            reason = f"cannot write the run dir {run_dir} ({exc.strerror or exc})"
            lib.update_run(run_id, status=RunStatus.FAILED, error=reason, pid=None)
            raise UserError(f"run {run_id} failed: {reason}") from None
        try:
            proc = subprocess.Popen(
                runner_command(workspace, run_id, nproc),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                cwd=str(run_dir),
                env=runner_env(launch_env),
            )
        except OSError as exc:
            reason = f"cannot start the runner ({exc})"
            lib.update_run(run_id, status=RunStatus.FAILED, error=reason, pid=None)
            raise UserError(f"run {run_id} failed: {reason}") from None
        finally:
            log.close()
        _CHILDREN[proc.pid] = proc
        try:
            ctime: float | None = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            ctime = None
        # The runner writes the same values when it starts; writing them here closes the window in which a
        # reconcile would see a running run with no process.
        lib.update_run(
            run_id,
            pid=proc.pid,
            proc_create_time=ctime,
            heartbeat_at=utcnow(),
            error=None,
            ended_at=None,
            run_dir=str(run_dir.relative_to(workspace_root(workspace)))
            if run_dir.is_relative_to(workspace_root(workspace))
            else str(run_dir),
        )
    return proc.pid


def run_attached(workspace: Path | str | Workspace, run_id: int, *, env: dict[str, str] | None = None) -> int:
    """Start a run's runner as :func:`start_run` does and wait for it (the foreground path of ``--nproc N``).

    Ctrl-C sends SIGTERM to the runner's process group (the trainer saves a checkpoint and stops; the run ends
    ``stopped``); a second Ctrl-C stops it at once (:func:`stop_run` without grace). Returns the exit status.
    """
    pid = start_run(workspace, run_id, env=env)
    proc = _CHILDREN.get(pid)
    interrupts = 0
    while True:
        try:
            if proc is not None:
                return proc.wait()
            while process_of(pid, None) is not None:  # pragma: no cover - start_run always records its child
                time.sleep(0.5)
            return 0
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                _signal_group(pid, signal.SIGTERM)
            else:
                stop_run(workspace, run_id, grace_s=0.0)


# ---------------------------------------------------------------------------------------------------
# Stop / resume
# ---------------------------------------------------------------------------------------------------


def stop_run(workspace: Path | str | Workspace, run_id: int, grace_s: float = 10.0) -> str:
    """Stop a run; return its final status.

    A queued run is cancelled (``stopped``). A running one gets SIGTERM on its process group (the trainer
    sees ``should_stop()``, saves and returns; the runner records ``stopped``); after ``grace_s`` seconds
    the group gets SIGKILL and the run is recorded ``stopped`` here. An ended run is left as it is.
    """
    import psutil

    _reap_children()
    with _open_library(workspace) as lib:
        run = lib.get_run(run_id)
        if run.status in _ENDED:
            return run.status
        if run.status == RunStatus.QUEUED.value:
            lib.update_run(run_id, status=RunStatus.STOPPED, error="cancelled before it started")
            return RunStatus.STOPPED.value
        proc = process_of(run.pid, run.proc_create_time)
        killed = False
        if proc is not None:
            assert run.pid is not None
            _signal_group(run.pid, signal.SIGTERM)
            child = _CHILDREN.get(run.pid)
            deadline = time.monotonic() + max(0.0, grace_s)
            _, alive = psutil.wait_procs([proc], timeout=max(0.0, grace_s))
            if child is not None:  # our own child: reap it
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=max(0.0, deadline - time.monotonic()))
            if alive or (child is not None and child.poll() is None):
                _signal_group(run.pid, signal.SIGKILL)
                psutil.wait_procs([proc], timeout=5.0)
                if child is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.wait(timeout=5.0)
                killed = True
            else:
                _signal_group(run.pid, signal.SIGKILL)  # leftovers of the group (the trainer's children)
            _reap_children()
        run = lib.get_run(run_id)
        if run.status == RunStatus.RUNNING.value:
            reason = f"killed after a {grace_s:g} s grace" if killed else None
            run = lib.update_run(run_id, status=RunStatus.STOPPED, error=reason)
        return run.status


def resume_run(workspace: Path | str | Workspace, run_id: int, *, env: dict[str, str] | None = None) -> int:
    """Continue a failed or stopped run from its latest checkpoint (same run, same run dir): :func:`start_run`.

    The runner always resumes from the newest complete checkpoint in the run dir (none: from scratch).
    Returns the new runner's pid. Raises UserError for a live or finished (``done``) run.
    """
    with _open_library(workspace) as lib:
        reconcile(lib, workspace=workspace)
        run = lib.get_run(run_id)
        if run.status == RunStatus.DONE.value:
            raise UserError(f"run {run_id} is done; there is nothing to resume")
        if run.status == RunStatus.RUNNING.value:
            raise UserError(f"run {run_id} is running (pid {run.pid}); stop it first")
        if run.status != RunStatus.QUEUED.value:
            # Straight to running with no process (not through queued, where a worker could take it); the
            # start below fills in the process.
            from anyskill_tui.store.models import utcnow

            now = utcnow()
            lib.update_run(
                run_id,
                status=RunStatus.RUNNING,
                error=None,
                ended_at=None,
                pid=None,
                proc_create_time=None,
                started_at=now,
                heartbeat_at=now,
            )
    return start_run(workspace, run_id, env=env)


# ---------------------------------------------------------------------------------------------------
# Reconcile
# ---------------------------------------------------------------------------------------------------


def reconcile(
    library: Library,
    *,
    stale_after: float | None = None,
    workspace: Path | str | Workspace | None = None,
) -> list[int]:
    """Mark ``failed`` every ``running`` run whose process is gone or whose heartbeat is stale.

    Gone: no process with the recorded pid and create time (or a zombie). Stale: the last heartbeat (or
    the start, when there was none yet) is older than ``stale_after`` seconds (default
    :func:`stale_after_s`); such a process is killed (its group gets SIGKILL) so it cannot go on writing
    into a run marked failed. Returns the ids changed. ``workspace`` is accepted for symmetry; unused.
    """
    del workspace
    from anyskill_tui.store.models import utcnow

    _reap_children()
    threshold = stale_after_s() if stale_after is None else float(stale_after)
    changed: list[int] = []
    for run in library.list_runs(status=RunStatus.RUNNING):
        assert run.id is not None
        last = _aware(run.heartbeat_at) or _aware(run.started_at) or _aware(run.created_at)
        age = (utcnow() - last).total_seconds() if last is not None else float("inf")
        if run.pid is None:
            if age <= threshold:
                continue  # claimed by a worker that is starting it
            reason = f"the worker that claimed it never started a process (claimed {_clock(last)})"
        else:
            proc = process_of(run.pid, run.proc_create_time)
            if proc is None:
                reason = f"worker process {run.pid} is gone (last heartbeat {_clock(run.heartbeat_at)})"
            elif age > threshold:
                _signal_group(run.pid, signal.SIGKILL)
                reason = (
                    f"worker process {run.pid} sent no heartbeat for {age:.0f} s "
                    f"(last heartbeat {_clock(run.heartbeat_at)}); it was killed"
                )
            else:
                continue
        # Re-read after the liveness check: a runner that finished meanwhile has written its own status.
        fresh = library.get_run(run.id)
        if fresh.status != RunStatus.RUNNING.value or fresh.pid != run.pid:
            continue
        library.update_run(run.id, status=RunStatus.FAILED, error=reason)
        changed.append(run.id)
    return changed


def run_summary(workspace: Path | str | Workspace, run: Run) -> dict[str, Any]:
    """A run's row plus its run dir, progress (``progress.json``) and whether its process is alive."""
    from anyskill_tui.core.jobs.trainers import read_progress

    run_dir = resolve_run_dir(workspace, run)
    d = run.to_dict()
    d["run_dir_abs"] = str(run_dir)
    d["progress"] = read_progress(run_dir)
    d["alive"] = process_of(run.pid, run.proc_create_time) is not None if run.status == "running" else False
    return d
