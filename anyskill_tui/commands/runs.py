"""`anyskill runs ...`: training runs in the library (list, show, stop, resume, logs, tail).

``list`` and ``show`` reconcile first (``core.jobs.launcher.reconcile``): a run whose process is gone or
silent shows as ``failed`` on the next look.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from anyskill_tui.commands._common import open_library, print_json, say, short_time
from anyskill_tui.store.enums import Engine, RunKind, RunStatus

app = typer.Typer(help="Training runs: list, inspect, stop, resume, follow logs and metrics.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")]


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[RunStatus | None, typer.Option("--status", case_sensitive=False)] = None,
    kind: Annotated[RunKind | None, typer.Option("--kind", case_sensitive=False)] = None,
    engine: Annotated[Engine | None, typer.Option("--engine", case_sensitive=False)] = None,
    skill: Annotated[str | None, typer.Option("--skill", help="Skill id or prompt text.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    from anyskill_tui.commands.skills import skill_ref
    from anyskill_tui.core.jobs.launcher import reconcile

    with open_library(ctx) as lib:
        reconcile(lib)
        runs = lib.list_runs(
            status=status, kind=kind, engine=engine, skill=skill_ref(skill) if skill else None, limit=limit
        )
        texts = {s.id: s.text for s in lib.list_skills()} if runs and not as_json else {}
    if as_json:
        print_json([r.to_dict() for r in runs])
        return
    if not runs:
        say("no runs match" if (status or kind or engine or skill) else "no runs yet")
        return
    from rich.table import Table

    from anyskill_tui.commands._common import out_console

    t = Table(show_edge=False, pad_edge=False)
    for c in ("id", "kind", "engine", "status", "prio", "skill", "progress", "created", "heartbeat"):
        t.add_column(c)
    for r in runs:
        sk = f"{r.skill_id}: {texts.get(r.skill_id, '')}" if r.skill_id is not None else ""
        d = r.to_dict()
        t.add_row(
            str(r.id),
            r.kind,
            r.engine,
            r.status,
            str(r.priority),
            sk,
            progress_text(r.step, r.total_steps),
            short_time(d["created_at"]),
            short_time(d["heartbeat_at"]),
        )
    out_console().print(t)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="ID", help="Run id.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one run and its checkpoints."""
    from anyskill_tui.core.jobs.launcher import reconcile

    with open_library(ctx) as lib:
        reconcile(lib)
        run = lib.get_run(run_id)
        ckpts = lib.list_checkpoints(run_id)
        skill = lib.find_skill(run.skill_id) if run.skill_id is not None else None
    d = run.to_dict()
    d["skill_text"] = skill.text if skill else None
    d["checkpoints"] = [c.to_dict() for c in ckpts]
    if as_json:
        print_json(d)
        return
    import json

    from rich.table import Table

    from anyskill_tui.commands._common import print_fields

    keys = (
        "id",
        "kind",
        "engine",
        "status",
        "priority",
        "skill_id",
        "skill_text",
        "pid",
        "step",
        "total_steps",
        "run_dir",
        "created_at",
        "started_at",
        "ended_at",
        "heartbeat_at",
        "error",
    )
    config = json.dumps(d["config"], sort_keys=True) if d["config"] else "{}"
    con = print_fields(d, keys, extra=(("config", config),))
    if ckpts:
        t = Table(title="checkpoints", show_edge=False)
        for c in ("id", "step", "path", "metrics", "created"):
            t.add_column(c)
        for c in d["checkpoints"]:
            metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in c["metrics"].items())
            t.add_row(str(c["id"]), str(c["step"]), c["path"], metrics, short_time(c["created_at"]))
        con.print(t)
    else:
        con.print("no checkpoints yet")


# -- lifecycle: stop / resume / logs / tail -----------------------------------------------------------


def progress_text(step: int | None, total: int | None) -> str:
    """``step/total (pct%)`` for tables."""
    if step is None:
        return ""
    if not total:
        return str(step)
    return f"{step}/{total} ({100.0 * step / total:.0f}%)"


def _eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


@app.command("stop")
def stop(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="ID", help="Run id.")],
    grace: Annotated[
        float, typer.Option("--grace", min=0.0, help="Seconds between SIGTERM and SIGKILL.", show_default=True)
    ] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Stop a run: SIGTERM to its process group, then SIGKILL after the grace. A queued run is cancelled."""
    from anyskill_tui.commands._common import workspace
    from anyskill_tui.core.jobs.launcher import stop_run

    ws = workspace(ctx)
    with open_library(ctx) as lib:
        before = lib.get_run(run_id).status
    status = stop_run(ws.root, run_id, grace_s=grace)
    if as_json:
        print_json({"id": run_id, "before": before, "status": status})
        return
    if before in ("done", "failed", "stopped"):
        say(f"run {run_id} was already {before}; nothing to stop")
    else:
        say(f"run {run_id} {status}")


@app.command("resume")
def resume(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="ID", help="Run id.")],
    as_json: JsonOpt = False,
) -> None:
    """Continue a failed or stopped run from its latest checkpoint, in the same run dir."""
    from anyskill_tui.commands._common import workspace
    from anyskill_tui.core.jobs.checkpoints import latest_checkpoint
    from anyskill_tui.core.jobs.launcher import resolve_run_dir, resume_run

    ws = workspace(ctx)
    with open_library(ctx) as lib:
        run = lib.get_run(run_id)
    if run.engine == "isaacgym":
        from anyskill_tui.core.jobs.isaacgym import latest_pth

        ckpt = latest_pth(resolve_run_dir(ws.root, run))
    else:
        ckpt = latest_checkpoint(resolve_run_dir(ws.root, run))
    pid = resume_run(ws.root, run_id)
    if as_json:
        print_json({"id": run_id, "pid": pid, "checkpoint": str(ckpt) if ckpt else None})
        return
    say(f"run {run_id} resumed (pid {pid})" + (f" from {ckpt}" if ckpt else " (no checkpoint: from the start)"))


@app.command("logs")
def logs(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="ID", help="Run id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the run ends.")] = False,
) -> None:
    """Print a run's train.log (runner and trainer output); -f follows it (Ctrl-C exits)."""
    import sys
    import time

    from anyskill_tui.commands._common import workspace
    from anyskill_tui.core.jobs.launcher import LOG_NAME, resolve_run_dir
    from anyskill_tui.errors import UserError

    ws = workspace(ctx)
    with open_library(ctx) as lib:
        run = lib.get_run(run_id)
        path = resolve_run_dir(ws.root, run) / LOG_NAME
        if not path.exists() and not follow:
            raise UserError(f"run {run_id} has no log yet ({path})")
        offset = 0
        out = sys.stdout.buffer
        last_check = 0.0
        try:
            while True:
                if path.exists():
                    with open(path, "rb") as f:
                        f.seek(offset)
                        chunk = f.read()
                    if chunk:
                        offset += len(chunk)
                        out.write(chunk)
                        out.flush()
                if not follow:
                    return
                now = time.monotonic()
                if now - last_check >= 1.0:
                    last_check = now
                    if lib.get_run(run_id).status not in ("queued", "running"):
                        follow = False  # one last read, then stop
                        continue
                time.sleep(0.25)
        except KeyboardInterrupt:
            return


def _tail_snapshot(run: Any, progress: dict | None, latest: dict) -> dict:
    return {
        "id": run.id,
        "status": run.status,
        "step": run.step,
        "total_steps": run.total_steps,
        "progress": progress,
        "metrics": {tag: {"step": p[0], "wall_time": p[1], "value": p[2]} for tag, p in sorted(latest.items())},
    }


@app.command("tail")
def tail(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="ID", help="Run id.")],
    once: Annotated[bool, typer.Option("--once", help="Print the latest values once and exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Refresh period in seconds.")] = 1.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON on stdout: one object (with --once) or one line per refresh.")
    ] = False,
) -> None:
    """Follow a run's metrics: the latest value of every TensorBoard tag, refreshed every second."""
    import json
    import sys
    import time

    from anyskill_tui.commands._common import workspace
    from anyskill_tui.core.jobs.launcher import reconcile, resolve_run_dir
    from anyskill_tui.core.jobs.metrics import MetricsTail
    from anyskill_tui.core.jobs.trainers import read_progress

    ws = workspace(ctx)
    with open_library(ctx) as lib:
        reconcile(lib)
        run = lib.get_run(run_id)
        run_dir = resolve_run_dir(ws.root, run)
        mt = MetricsTail(run_dir)
        counts: dict[str, int] = {}

        def refresh() -> tuple[Any, dict | None, bool]:
            nonlocal run
            for tag, pts in mt.poll().items():
                counts[tag] = counts.get(tag, 0) + len(pts)
            run = lib.get_run(run_id)
            return run, read_progress(run_dir), run.status not in ("queued", "running")

        def table() -> Any:
            from rich.console import Group
            from rich.table import Table
            from rich.text import Text

            r, prog, _ = current
            head = f"run {r.id} ({r.kind} on {r.engine}) [bold]{r.status}[/bold]"
            if r.step is not None:
                head += f"  step {progress_text(r.step, r.total_steps)}"
            if prog and prog.get("steps_per_s"):
                head += f"  {prog['steps_per_s']:.3g} steps/s"
                if prog.get("eta_s") is not None and r.status == "running":
                    head += f"  ETA {_eta_text(prog['eta_s'])}"
            if r.error:
                head += f"\n[red]{r.error}[/red]"
            t = Table(show_edge=False, pad_edge=False)
            for c, j in (("tag", "left"), ("step", "right"), ("value", "right"), ("points", "right")):
                t.add_column(c, justify=j)  # type: ignore[arg-type]
            for tag, (step, _wall, value) in sorted(mt.latest.items()):
                t.add_row(tag, str(step), f"{value:.6g}", str(counts.get(tag, 0)))
            if not mt.latest:
                return Group(Text.from_markup(head), Text("no metrics yet", style="dim"))
            return Group(Text.from_markup(head), t)

        current = refresh()
        if once or (as_json and current[2]):
            if as_json:
                print_json(_tail_snapshot(current[0], current[1], mt.latest))
            else:
                from anyskill_tui.commands._common import out_console

                out_console().print(table())
            return
        try:
            if as_json:
                while True:
                    sys.stdout.write(json.dumps(_tail_snapshot(current[0], current[1], mt.latest)) + "\n")
                    sys.stdout.flush()
                    if current[2]:
                        return
                    time.sleep(interval)
                    current = refresh()
            from rich.live import Live

            from anyskill_tui.commands._common import out_console

            with Live(table(), console=out_console(), refresh_per_second=4, transient=False) as live:
                while not current[2]:
                    time.sleep(interval)
                    current = refresh()
                    live.update(table())
        except KeyboardInterrupt:
            return
