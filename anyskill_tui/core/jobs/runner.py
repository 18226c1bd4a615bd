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


def execute(workspace: Path | str, run_id: int, *, install_signals: bool = True) -> int:
    """Run one run to its end in this process (the body of the shim; tests call it directly)."""
    import psutil

    from anyskill_tui.core.jobs import checkpoints, launcher
    from anyskill_tui.core.jobs.trainers import TrainContext, resolve_trainer
    from anyskill_tui.store.enums import RunStatus
    from anyskill_tui.store.library import Library
    from anyskill_tui.store.models import utcnow

    me = os.getpid()
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
            if run.engine == "isaacgym":
                from anyskill_tui.core.jobs.isaacgym import IsaacGymJob

                IsaacGymJob.from_run(ctx, run).run()
            else:
                ctx.resume_from = checkpoints.latest_checkpoint(run_dir)
                if ctx.resume_from is not None:
                    _log(f"resuming from {ctx.resume_from}")
                trainer = resolve_trainer(run.kind, config)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anyskill-runner", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--run", required=True, type=int)
    args = parser.parse_args(argv)
    try:
        return execute(args.workspace, args.run)
    except UserError as exc:  # could not even mark the run (no library, unknown run)
        _log(f"error: {exc.message}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
