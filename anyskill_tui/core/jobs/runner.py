"""The runner shim: ``python -m anyskill_tui.core.jobs.runner --workspace W --run ID``.

Started detached by :func:`anyskill_tui.core.jobs.launcher.start_run` (session and process-group leader,
output in ``RUN_DIR/train.log``). It owns the DB writes of its run:

1. marks the run ``running`` with its pid and process create time (claims it first if it is queued);
2. installs SIGTERM/SIGINT handlers that only set the stop flag (``ctx.should_stop()``);
3. heartbeats from a background thread every ``ANYSKILL_HEARTBEAT_S`` (default 2 s), writing the
   trainer's last progress with it; if the row shows that another process took the run over (or it was
   marked ended), the runner stops its trainer and exits without writing anything more (fencing);
4. runs the trainer in-process (:mod:`~anyskill_tui.core.jobs.trainers`), or for ``engine=isaacgym``
   supervises the reference ``calm/run.py`` as a child (:mod:`~anyskill_tui.core.jobs.isaacgym`); the
   newest complete checkpoint in the run dir, if any, is passed as ``resume_from``;
5. at the end records ``done``, ``stopped`` (a stop was requested) or ``failed`` with a one-line reason
   in ``Run.error`` (the traceback goes to ``train.log``). A skill run also moves its skill to
   ``training``, then ``trained`` / ``failed`` / ``new`` (stopped); a ``trained`` skill stays trained.

Exit status: 0 done or stopped, 1 failed, 2 nothing to do (the run was not runnable).

Under torchrun (``WORLD_SIZE`` > 1: a run with ``nproc`` > 1, see :mod:`anyskill_tui.core.jobs.launcher`) every
rank runs this module. Rank 0 is the runner described above, except that the process standing for the run (its
pid, create time and fencing) is the torchrun agent, its parent, which the launcher started and ``runs stop``
signals; just before the trainer starts it announces the job (config, run dir, resume point) to the other ranks,
or "nothing" when it will not run. The other ranks run the same trainer with a context that writes nothing, their
stdout discarded (stderr, with tracebacks, goes to ``train.log`` through torchrun); they never touch the library.
Every rank kills itself when the torchrun agent disappears (:func:`~anyskill_tui.core.learn.distributed.watch_parent`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from anyskill_tui.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.core.jobs.trainers import TrainContext
    from anyskill_tui.core.learn.distributed import DistContext
    from anyskill_tui.store.library import Library

_MAX_REASON = 600


def _log(msg: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[anyskill runner {stamp}] {msg}", file=sys.stderr, flush=True)


def reason_of(exc: BaseException) -> str:
    """A one-line reason for a failed run."""
    if isinstance(exc, UserError):
        text = exc.message
    elif isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        text = f"{exc.strerror}{where}"
        if exc.errno == errno.ENOSPC:
            text = f"disk full: {text}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _set_skill_status(lib: Library, skill_id: int | None, status: str) -> None:
    if skill_id is None:
        return
    try:
        skill = lib.find_skill(skill_id)
        if skill is None:
            return
        if skill.status == "trained" and status != "trained":
            return
        lib.edit_skill(skill_id, status=status)
    except Exception as exc:  # never fail a run over the skill's status
        _log(f"could not set skill {skill_id} to {status}: {exc}")


def execute(
    workspace: Path | str, run_id: int, *, install_signals: bool = True, dist: DistContext | None = None
) -> int:
    """Run one run to its end in this process (the body of the shim; tests call it directly).

    ``dist``: rank 0 of a torchrun world (see the module docstring); None for one process."""
    import psutil

    from anyskill_tui.core.jobs import checkpoints, launcher
    from anyskill_tui.core.jobs.trainers import TrainContext, resolve_trainer
    from anyskill_tui.store.enums import RunStatus
    from anyskill_tui.store.library import Library
    from anyskill_tui.store.models import utcnow

    me = os.getpid() if dist is None else _owner_pid()
    my_ctime = psutil.Process(me).create_time()
    lib = Library(launcher.db_path(workspace))
    try:
        run = lib.get_run(run_id)
        if run.status == RunStatus.QUEUED.value:
            claimed = lib.claim_run(run_id, pid=me)
            if claimed is None:
                _log(f"run {run_id} was taken by another worker; nothing to do")
                return 2
            run = claimed
        elif run.status != RunStatus.RUNNING.value:
            _log(f"run {run_id} is {run.status}; nothing to do")
            return 2
        elif run.pid not in (None, me) and launcher.process_of(run.pid, run.proc_create_time) is not None:
            _log(f"run {run_id} is already run by process {run.pid}; nothing to do")
            return 2
        run = lib.update_run(
            run_id,
            status=RunStatus.RUNNING,
            pid=me,
            proc_create_time=my_ctime,
            heartbeat_at=utcnow(),
            error=None,
            ended_at=None,
        )
        run_dir = launcher.resolve_run_dir(workspace, run)
        config = run.config
        _log(f"run {run_id} ({run.kind} on {run.engine}) started, pid {me}, run dir {run_dir}")
        if run.kind == "skill":
            _set_skill_status(lib, run.skill_id, "training")

        stop = threading.Event()
        superseded = threading.Event()
        if install_signals:

            def _on_signal(signum: int, _frame: object) -> None:
                if not stop.is_set():
                    _log(f"received {signal.Signals(signum).name}: stopping")
                stop.set()

            signal.signal(signal.SIGTERM, _on_signal)
            signal.signal(signal.SIGINT, _on_signal)

        hb_s = launcher.heartbeat_interval_s()
        ctx = TrainContext(
            run_id=run_id,
            run_dir=run_dir,
            config=config,
            library=lib,
            stop_event=stop,
            heartbeat_s=hb_s,
        )
        hb_done = threading.Event()

        def _heartbeats() -> None:
            while not hb_done.wait(hb_s):
                try:
                    ctx.write_heartbeat()
                    row = lib.get_run(run_id)
                    if row.status != RunStatus.RUNNING.value or row.pid != me:
                        _log(f"run {run_id} is now {row.status} (pid {row.pid}): this runner was superseded")
                        superseded.set()
                        stop.set()
                        return
                except Exception as exc:  # a locked DB for a while must not kill the run
                    _log(f"heartbeat failed: {exc}")

        hb_thread = threading.Thread(target=_heartbeats, name="anyskill-heartbeat", daemon=True)

        status = RunStatus.DONE
        reason: str | None = None
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            checkpoints.clean_temp_files(run_dir)
            hb_thread.start()
            if run.engine == "isaacgym" and dist is not None:
                raise UserError("the isaacgym engine runs in one process; start it without --nproc")
            if run.engine == "isaacgym":
                from anyskill_tui.core.jobs.isaacgym import IsaacGymJob

                IsaacGymJob.from_run(ctx, run).run()
            else:
                ctx.resume_from = checkpoints.latest_checkpoint(run_dir)
                if ctx.resume_from is not None:
                    _log(f"resuming from {ctx.resume_from}")
                trainer = resolve_trainer(run.kind, config)
                if dist is not None:  # the other ranks run the same job
                    dist.announce_job(_job_of(run.kind, ctx))
                trainer(ctx)
            if stop.is_set():
                status = RunStatus.STOPPED
        except BaseException as exc:  # noqa: BLE001 - everything ends the run as failed with a reason
            if isinstance(exc, KeyboardInterrupt) or (stop.is_set() and isinstance(exc, SystemExit)):
                status = RunStatus.STOPPED
            else:
                status = RunStatus.FAILED
                reason = reason_of(exc)
                if not isinstance(exc, UserError):
                    traceback.print_exc()
        finally:
            try:
                ctx.close()
            except Exception as exc:
                _log(f"closing the trainer's files failed: {exc}")
                if status is RunStatus.DONE:
                    status, reason = RunStatus.FAILED, reason_of(exc)
            hb_done.set()
            if hb_thread.is_alive():
                hb_thread.join(timeout=hb_s + 5)

        if superseded.is_set():
            _log(f"run {run_id}: superseded; leaving the row as it is")
            return 0
        row = lib.get_run(run_id)
        if row.status != RunStatus.RUNNING.value or row.pid != me:
            _log(f"run {run_id} is {row.status} (pid {row.pid}); not recording {status.value}")
            return 0
        prog = ctx.current_progress()
        extra = {"step": prog[0], "total_steps": prog[1]} if prog else {}
        lib.update_run(run_id, status=status, error=reason, heartbeat_at=utcnow(), **extra)
        if run.kind == "skill":
            _set_skill_status(lib, run.skill_id, {"done": "trained", "failed": "failed"}.get(status.value, "new"))
        _log(f"run {run_id} {status.value}" + (f": {reason}" if reason else ""))
        return 1 if status is RunStatus.FAILED else 0
    finally:
        with contextlib.suppress(Exception):
            lib.close()


# ---------------------------------------------------------------------------------------------------
# Several processes (torchrun): rank 0 runs `execute`, the others `_follow`
# ---------------------------------------------------------------------------------------------------


def _owner_pid() -> int:
    from anyskill_tui.core.learn.distributed import owner_pid

    return owner_pid()


def _job_of(kind: str, ctx: TrainContext) -> dict[str, object]:
    """What rank 0 tells the other ranks to run."""
    return {
        "kind": kind,
        "config": ctx.config,
        "run_dir": str(ctx.run_dir),
        "resume_from": None if ctx.resume_from is None else str(ctx.resume_from),
    }


def _follow(dist: DistContext, run_id: int) -> int:
    """A rank > 0: wait for rank 0's job, run its trainer silently (stdout discarded), write nothing."""
    from anyskill_tui.core.jobs.trainers import TrainContext, resolve_trainer

    job = dist.receive_job()
    if job is None:
        return 0
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    ctx = TrainContext(
        run_id=run_id,
        run_dir=Path(job["run_dir"]),
        config=job["config"],
        resume_from=None if job["resume_from"] is None else Path(job["resume_from"]),
        library=None,
        stop_event=stop,
    )
    ctx = dist.rank_context(ctx)  # writes nothing, whatever the trainer calls
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            resolve_trainer(job["kind"], job["config"])(ctx)
    except BaseException as exc:  # noqa: BLE001 - rank 0 records the run's status; here only the log
        if isinstance(exc, KeyboardInterrupt) or (stop.is_set() and isinstance(exc, SystemExit)):
            return 0
        _log(f"rank {dist.rank}: {reason_of(exc)}")
        if not isinstance(exc, UserError):
            traceback.print_exc()
        return 1
    return 0


def _main_distributed(workspace: Path, run_id: int) -> int:
    from anyskill_tui.core.learn import distributed

    distributed.watch_parent()
    dist = distributed.init_from_env()
    try:
        if dist.is_main:
            return execute(workspace, run_id, dist=dist)
        return _follow(dist, run_id)
    finally:
        if dist.is_main:
            with contextlib.suppress(Exception):
                dist.announce_job(None)  # the other ranks are still waiting when no trainer was started
        distributed.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anyskill-runner", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True, type=Path)
    # --run-id: the spelling under torchrun, whose own parser takes "--run" for an ambiguous --run-path
    parser.add_argument("--run", "--run-id", dest="run", required=True, type=int)
    args = parser.parse_args(argv)
    try:
        if int(os.environ.get("WORLD_SIZE") or 1) > 1:
            return _main_distributed(args.workspace, args.run)
        return execute(args.workspace, args.run)
    except UserError as exc:  # could not even mark the run (no library, unknown run)
        _log(f"error: {exc.message}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
