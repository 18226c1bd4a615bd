"""`anyskill queue` (queued and running runs, in order) and `anyskill worker` (starts queued runs)."""

from __future__ import annotations

from typing import Annotated

import typer

from anyskill_tui.commands._common import open_library, print_json, say, short_time


def queue(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
) -> None:
    """Show running runs, then queued runs in the order a worker takes them (priority, then oldest)."""
    from anyskill_tui.commands.runs import progress_text
    from anyskill_tui.core.jobs.launcher import reconcile
    from anyskill_tui.core.jobs.queue import queued_and_running

    with open_library(ctx) as lib:
        reconcile(lib)
        runs = queued_and_running(lib)
        texts = {s.id: s.text for s in lib.list_skills()} if runs and not as_json else {}
    if as_json:
        print_json([r.to_dict() for r in runs])
        return
    if not runs:
        say("nothing queued or running")
        return
    from rich.table import Table

    from anyskill_tui.commands._common import out_console

    t = Table(show_edge=False, pad_edge=False)
    for c in ("#", "id", "status", "prio", "kind", "engine", "skill", "progress", "pid", "since"):
        t.add_column(c)
    for i, r in enumerate(runs, 1):
        d = r.to_dict()
        t.add_row(
            str(i),
            str(r.id),
            r.status,
            str(r.priority),
            r.kind,
            r.engine,
            texts.get(r.skill_id, "") if r.skill_id is not None else "",
            progress_text(r.step, r.total_steps),
            str(r.pid or ""),
            short_time(d["started_at"] if r.status == "running" else d["created_at"]),
        )
    out_console().print(t)


def worker(
    ctx: typer.Context,
    slots: Annotated[
        int | None,
        typer.Option(
            "--slots", min=1, help="Most runs running at once (default: one per GPU, or 1).", show_default=False
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Start what fits now, then exit.")] = False,
    poll: Annotated[float, typer.Option("--poll", min=0.1, help="Seconds between queue checks.")] = 2.0,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus",
            help="Place runs on these GPUs, e.g. 0,1: each run gets CUDA_VISIBLE_DEVICES of free ones (one run per "
            "GPU; nproc GPUs for a --nproc run). Default slots: one per listed GPU.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start queued runs as slots free up (priority, then oldest). Runs outlive the worker; Ctrl-C stops it."""
    from anyskill_tui.commands._common import workspace
    from anyskill_tui.core.jobs.queue import Worker

    ws = workspace(ctx)
    w = Worker(ws.root, slots=slots, gpus=None if gpus is None else gpus.split(","))
    if once:
        started = w.run_once()
        say(f"started {len(started)} run(s)" + (f": {', '.join(map(str, started))}" if started else ""))
        return
    on_gpus = f" on GPUs {','.join(w.gpus)}" if w.gpus else ""
    say(f"worker on {ws.root}: {w.slots} slot(s){on_gpus}, polling every {poll:g} s (Ctrl-C to stop)")
    try:
        w.run_forever(poll_s=poll, on_start=lambda rid: say(f"started run {rid}"))
    except KeyboardInterrupt:
        say("worker stopped (its runs keep going)")
