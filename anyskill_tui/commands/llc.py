"""`anyskill llc ...`: train and evaluate the CALM low-level controller.

``llc train`` registers a Run (kind ``llc``) with the resolved config (also written to ``RUN_DIR/config.yaml``)
and, by default, runs it in the foreground through the same runner code as a detached job
(:func:`anyskill_tui.core.jobs.runner.execute`: the Run row, heartbeats, checkpoint rows and the final status are
handled identically), with a Rich progress bar on stderr. ``--detach`` starts the runner in the background and
prints the run id. ``--resume RUN`` continues a stopped or failed run from its newest checkpoint.

``--nproc N`` trains data-parallel in N processes (one per GPU on the gpu engine, gloo processes on the cpu engine)
under torchrun; ``--envs`` stays the total. The run's config records ``nproc``, so resumes, ``runs resume`` and
workers start it the same way; ``--resume RUN --nproc M`` continues it on M (core.learn.distributed).

Module import stays light: no torch, mujoco or the store at import time.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from anyskill_tui.commands._common import print_json, say, workspace
from anyskill_tui.errors import UserError

app = typer.Typer(help="The CALM low-level controller (LLC): train, evaluate.", no_args_is_help=True)

_ENGINES = ("cpu", "gpu", "auto")


def _parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` overrides; values are read as YAML scalars/lists (``1e-4``, ``true``, ``[64, 64]``)."""
    import yaml

    from anyskill_tui.core.learn.config import ConfigError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set ppo.learning_rate=1e-4")
        try:
            out[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key] = raw
    return out


def _resolve_engine(engine: str) -> str:
    engine = engine.strip().lower()
    if engine not in _ENGINES:
        raise UserError(f"unknown engine {engine!r}: choose cpu, gpu or auto")
    if engine == "auto":
        from anyskill_tui.core.sim import default_engine

        return default_engine()
    if engine == "gpu":
        import importlib.util

        if importlib.util.find_spec("mujoco_warp") is None:
            raise UserError("engine gpu needs mujoco_warp, which is not installed; use --engine cpu")
        import torch

        if not torch.cuda.is_available():
            raise UserError("engine gpu needs CUDA, and no CUDA device is available; use --engine cpu")
    return engine


def _check_motions(motions: Path | None) -> Path:
    from anyskill_tui.core.learn.llc_train import default_motions_path

    path = (motions or default_motions_path()).expanduser()
    if not path.exists():
        raise UserError(f"motion dataset {path} does not exist; give a motions.yaml or a .npy clip")
    from anyskill_tui.core.motion.dataset import read_dataset_entries

    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            read_dataset_entries(path)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return path.absolute()


def _progress_loop(run_dir: Path, total: int, done: Any) -> None:
    """Rich progress on stderr from ``progress.json`` and the event files, until ``done`` is set."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from anyskill_tui.commands._common import err_console
    from anyskill_tui.core.jobs.metrics import MetricsTail
    from anyskill_tui.core.jobs.trainers import read_progress

    tail = MetricsTail(run_dir)
    cols = (
        TextColumn("[bold]llc[/bold] epoch"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )
    with Progress(*cols, console=err_console(), transient=False) as bar:
        task = bar.add_task("train", total=total, info="starting")
        while True:
            stop = done.wait(0.5)
            prog = read_progress(run_dir) or {}
            with contextlib.suppress(Exception):  # a half-written event file: next time
                tail.poll()
            latest = {k: v[2] for k, v in tail.latest.items()}
            info = []
            if "performance/total_fps" in latest:
                info.append(f"{latest['performance/total_fps']:,.0f} samples/s")
            if "info/conditional_disc_reward_mean" in latest:
                info.append(f"disc r {latest['info/conditional_disc_reward_mean']:.3f}")
            if "episode_lengths/iter" in latest:
                info.append(f"ep len {latest['episode_lengths/iter']:.1f}")
            bar.update(
                task, completed=int(prog.get("step") or 0), total=prog.get("total") or total, info="  ".join(info)
            )
            if stop:
                return


def _run_foreground(ws_root: Path, run_id: int, run_dir: Path, total: int, nproc: int = 1) -> int:
    import threading

    from anyskill_tui.core.jobs import launcher, runner

    done = threading.Event()
    t = threading.Thread(target=_progress_loop, args=(run_dir, total, done), daemon=True)
    t.start()
    import signal

    prev = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if nproc > 1:  # torchrun as a child (rank 0 runs the runner); Ctrl-C stops it through its process group
            rc = launcher.run_attached(ws_root, run_id)
        else:
            rc = runner.execute(ws_root, run_id, install_signals=True)
    finally:
        for sig, handler in prev.items():
            signal.signal(sig, handler)
        done.set()
        t.join(timeout=5)
    return rc


@app.command("train")
def train(
    ctx: typer.Context,
    motions: Annotated[
        Path | None, typer.Option("--motions", help="Motion dataset (motions.yaml or .npy). Default: the starter set.")
    ] = None,
    engine: Annotated[str, typer.Option("--engine", help="cpu, gpu or auto.")] = "auto",
    envs: Annotated[int | None, typer.Option("--envs", help="Number of parallel envs (env.num_envs).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs to train (ppo.max_epochs).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="An llc.yaml. Default: the shipped one.")] = None,
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key, e.g. --set ppo.learning_rate=1e-4.")
    ] = None,
    resume: Annotated[
        int | None, typer.Option("--resume", help="Continue this run from its newest checkpoint.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background; print the run id.")] = False,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            min=1,
            help="Processes (one per GPU on the gpu engine) training data-parallel under torchrun; --envs is the "
            "total. With --resume: continue on this many.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train the CALM LLC on a motion dataset (a Run of kind llc in the workspace library)."""
    from anyskill_tui.core.jobs import launcher

    ws = workspace(ctx)
    if resume is not None:
        _resume(ws, resume, detach, nproc)
        return
    if envs is not None and envs < 1:
        raise UserError(f"--envs must be at least 1, got {envs}")
    if epochs is not None and epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    overrides = _parse_sets(sets)
    if envs is not None:
        overrides["env.num_envs"] = envs
    if epochs is not None:
        overrides["ppo.max_epochs"] = epochs
    if seed is not None:
        overrides["seed"] = seed
    from anyskill_tui.core.learn.config import load_llc_config

    cfg = load_llc_config(config, overrides=overrides)
    eng = _resolve_engine(engine)
    world = nproc or 1
    if world > 1:
        check_world(eng, world)
        from anyskill_tui.core.learn.distributed import local_llc_config

        local_llc_config(cfg, world)  # envs and minibatches must split evenly: say so before the run exists
    motions_path = _check_motions(motions)
    from anyskill_tui.core.learn.llc_train import run_config

    rc = run_config(cfg, motions_path, engine=eng)
    if world > 1:
        rc["nproc"] = world  # the run's world size: the launcher starts it under torchrun
    from anyskill_tui.store.library import Library

    with Library(ws.db_path) as lib:
        run = lib.create_run("llc", eng, config=rc)
        run_id = int(run.id)
        run_dir = launcher.resolve_run_dir(ws, run)
    run_dir.mkdir(parents=True, exist_ok=True)
    import yaml

    (run_dir / "config.yaml").write_text(yaml.safe_dump(rc, sort_keys=False))
    if detach:
        pid = launcher.start_run(ws, run_id)
        say(f"run {run_id} started in the background (pid {pid}); follow it with `anyskill runs tail {run_id}`")
        typer.echo(str(run_id))
        return
    procs = f" in {world} processes" if world > 1 else ""
    say(
        f"run {run_id}: LLC training, {cfg.env.num_envs} envs on {eng}{procs}, {cfg.ppo.max_epochs} epochs, "
        f"dir {run_dir}"
    )
    rc_ = _run_foreground(ws.root, run_id, run_dir, cfg.ppo.max_epochs, world)
    _report_end(ws, run_id, rc_)


def check_world(engine: str, nproc: int) -> None:
    """``--nproc`` against the engine: one CUDA device per process on the gpu engine; any number on cpu."""
    if engine == "isaacgym":
        raise UserError("--nproc: the isaacgym engine runs in one process")
    from anyskill_tui.core.learn.distributed import check_nproc

    check_nproc(nproc, engine)


def _report_end(ws: Any, run_id: int, rc: int) -> None:
    from anyskill_tui.store.library import Library

    with Library(ws.db_path) as lib:
        run = lib.get_run(run_id)
    if run.status == "failed":
        raise UserError(f"run {run_id} failed: {run.error or 'see train.log'}")
    say(f"run {run_id} {run.status}")
    if rc not in (0,):
        raise typer.Exit(rc)


def _resume(ws: Any, run_id: int, detach: bool, nproc: int | None = None) -> None:
    from anyskill_tui.core.jobs import launcher

    if nproc is not None:
        set_run_nproc(ws, run_id, nproc, kind="llc")
    if detach:
        pid = launcher.resume_run(ws, run_id)
        say(f"run {run_id} resumed in the background (pid {pid})")
        typer.echo(str(run_id))
        return
    from anyskill_tui.store.library import Library
    from anyskill_tui.store.models import utcnow

    with Library(ws.db_path) as lib:
        launcher.reconcile(lib, workspace=ws)
        run = lib.get_run(run_id)
        if run.kind != "llc":
            raise UserError(f"run {run_id} is a {run.kind} run, not an llc run")
        if run.status == "done":
            raise UserError(f"run {run_id} is done; there is nothing to resume")
        if run.status == "running":
            raise UserError(f"run {run_id} is running (pid {run.pid}); stop it first")
        if run.status != "queued":
            now = utcnow()
            lib.update_run(
                run_id,
                status="running",
                error=None,
                ended_at=None,
                pid=None,
                proc_create_time=None,
                started_at=now,
                heartbeat_at=now,
            )
        run_dir = launcher.resolve_run_dir(ws, run)
        total = int(((run.config or {}).get("llc") or {}).get("ppo", {}).get("max_epochs", 0)) or None
        world = launcher.run_nproc(run)
    say(f"run {run_id}: resuming in the foreground" + (f" in {world} processes" if world > 1 else ""))
    rc = _run_foreground(ws.root, run_id, run_dir, total or 0, world)
    _report_end(ws, run_id, rc)


def set_run_nproc(ws: Any, run_id: int, nproc: int, kind: str) -> None:
    """Record a new world size in a stopped/failed run's config before it resumes (``--resume RUN --nproc N``);
    the trainers resume any checkpoint on any number of processes (see core.learn.distributed)."""
    from anyskill_tui.store.library import Library

    with Library(ws.db_path) as lib:
        run = lib.get_run(run_id)
        if run.kind != kind:
            raise UserError(f"run {run_id} is a {run.kind} run, not a {kind} run")
        if run.status == "running":
            raise UserError(f"run {run_id} is running (pid {run.pid}); stop it first")
        if run.status == "done":
            raise UserError(f"run {run_id} is done; there is nothing to resume")
        if nproc > 1:
            check_world(run.engine, nproc)
            if kind == "llc":
                from anyskill_tui.core.learn.config import llc_config_from_dict
                from anyskill_tui.core.learn.distributed import local_llc_config

                llc = llc_config_from_dict((run.config or {}).get("llc") or {}, "the run's llc config")
                local_llc_config(llc, nproc)
        conf = {k: v for k, v in (run.config or {}).items() if k != "nproc"}
        if nproc > 1:
            conf["nproc"] = nproc
        lib.update_run(run_id, config=conf)


@app.command("eval")
def eval_(
    checkpoint: Annotated[
        Path, typer.Argument(help="An LLC training checkpoint or slim policy file; `default`: the shipped LLC.")
    ],
    motions: Annotated[Path | None, typer.Option("--motions", help="Motion dataset. Default: the starter set.")] = None,
    episodes: Annotated[int, typer.Option("--episodes", help="Episodes (latents) per clip.")] = 4,
    seconds: Annotated[float, typer.Option("--seconds", help="Seconds per episode.")] = 5.0,
    engine: Annotated[str, typer.Option("--engine", help="cpu, gpu or auto.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
) -> None:
    """Per-clip fall rate and key-body error of an LLC, and how well its latents separate the clips."""
    if str(checkpoint) == "default" and not checkpoint.exists():
        from anyskill_tui.commands.train import default_llc_file

        checkpoint = default_llc_file()
    if not checkpoint.exists():
        raise UserError(f"checkpoint {checkpoint} does not exist")
    eng = _resolve_engine(engine)
    motions_path = _check_motions(motions)
    from anyskill_tui.core.learn.llc_eval import evaluate_llc

    report = evaluate_llc(checkpoint, motions_path, episodes=episodes, seconds=seconds, engine=eng)
    if as_json:
        print_json(report)
        return
    from rich.table import Table

    from anyskill_tui.commands._common import out_console

    t = Table(show_edge=False, pad_edge=False, title=f"LLC {checkpoint.name}: {episodes} x {seconds:g} s per clip")
    for c in ("clip", "fall rate", "key-body err (m)", "intra cos", "inter cos"):
        t.add_column(c)
    for c in report["clips"]:
        err = c["key_body_error_m"]
        t.add_row(
            c["clip"],
            f"{c['fall_rate']:.2f}",
            "-" if err is None else f"{err:.3f}",
            f"{c['intra_clip_cos']:.3f}",
            "-" if c["inter_clip_cos"] is None else f"{c['inter_clip_cos']:.3f}",
        )
    s = report["summary"]
    out = out_console()
    out.print(t)
    err = s["key_body_error_m"]
    out.print(
        f"all clips: fall rate {s['fall_rate']:.2f}, key-body error "
        + ("-" if err is None else f"{err:.3f} m")
        + f" ({report['error_frame']}); latents: intra cos {s['intra_clip_cos']:.3f} vs inter "
        f"{s['inter_clip_cos']:.3f}, silhouette {s['silhouette']:.3f}"
    )
