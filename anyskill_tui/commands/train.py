"""`anyskill train "PROMPT"`: train a skill policy (AnySkill HLC) on a frozen LLC.

What it does:

1. resolves the prompt(s) (the argument and/or ``--prompts texts.yaml``), the LLC (``--llc``, the config's
   ``llc.path``, the newest checkpoint of the newest finished ``llc`` run in the library, else the shipped
   ``configs/llc/default.pt``, trained on the starter motions) and the config (``configs/skill.yaml`` or
   ``--config``, plus the options), all before touching the library: bad input leaves the library as it was;
2. finds or creates the skill(s) in the library and creates a ``skill`` Run with the resolved config;
3. without ``--detach``: runs it in the foreground **through the runner** (``core.jobs.runner.execute``, the same
   code path a detached run takes: status, heartbeats, checkpoints, stop on Ctrl-C) with a Rich progress line
   (CLIP similarity, style reward, LLC steps/s); the trainer's output goes to ``RUN_DIR/train.log``.
   With ``--detach``: the run is queued and started detached (``anyskill runs tail ID`` follows it).

Several prompts: without ``--detach`` they make ONE multi-prompt run (each env draws a prompt by weight and is
scored against its own prompt; the HLC does not see the prompt, spec §9.6, so it learns one compromise policy);
with ``--detach`` each prompt becomes its own queued run on the same LLC, the reference's per-prompt design
(up to one running per GPU; ``anyskill worker`` starts the rest).

``--nproc N`` trains each run data-parallel in N processes under torchrun (``--envs`` is the total; see
``core.learn.distributed``); the run's config records ``nproc``, so every later start uses it.

``--scene door`` (or ``chair``, ``ball``, a scene YAML) puts objects beside the character (spec §6); the resolved
scene goes into the run's config, so replays rebuild it. The proxy reward does not see objects: refused.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from anyskill_tui.commands._common import open_library, print_json, say, workspace
from anyskill_tui.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.store.library import Library

LLC_HINT = "train one with `anyskill llc train`, or pass --llc PATH"


def default_llc_file() -> Path:
    from anyskill_tui.paths import configs_dir

    return configs_dir() / "llc" / "default.pt"


def resolve_llc(explicit: Path | str | None, configured: str | None, lib: Library | None, ws_root: Path) -> Path:
    """The LLC checkpoint to use (see the module docstring); a UserError naming the fix when there is none."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise UserError(f"LLC checkpoint {p} does not exist; {LLC_HINT}")
        return p.resolve()
    if configured:
        p = Path(configured).expanduser()
        if not p.is_file():
            raise UserError(f"LLC checkpoint {p} (from the config's llc.path) does not exist; {LLC_HINT}")
        return p.resolve()
    if lib is not None:  # the user's own trained LLC before the shipped one
        from anyskill_tui.core.jobs.checkpoints import latest_checkpoint
        from anyskill_tui.core.jobs.launcher import resolve_run_dir

        for run in lib.list_runs(kind="llc", status="done"):
            found = latest_checkpoint(resolve_run_dir(ws_root, run))
            if found is not None:
                return found.resolve()
    shipped = default_llc_file()
    if shipped.is_file():
        return shipped.resolve()
    raise UserError(f"no LLC checkpoint found (no --llc, no {shipped}, no finished llc run); {LLC_HINT}")


def check_clip_weights(path: Path | None) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        from anyskill_tui.core.reward.clip import CLIP_WEIGHTS_ENV

        raise UserError(
            f"CLIP weights file not found: {p} (from --clip-weights); pass a local .bin/.pt/.safetensors file "
            f"(or set {CLIP_WEIGHTS_ENV})"
        )
    return str(p.resolve())


def preflight_clip(clip_section: Any) -> str:
    """Fail before any skill or run exists when the run could not load its CLIP weights.

    A skill run loads CLIP in both reward modes (``render``: the reward and the evaluation; ``proxy``: the prompts'
    text features and the proxy's compatibility check), from ``clip.weights`` (``--clip-weights``),
    ``$ANYSKILL_CLIP_WEIGHTS``, or the pretrained tag in the hub cache or a reachable hub
    (:func:`~anyskill_tui.core.reward.clip.check_weights_available`: no model is built, nothing downloaded).
    Returns where the weights will come from; raises a ClipWeightsError (a UserError) naming both options.
    """
    from anyskill_tui.core.reward.clip import ClipConfig, check_weights_available

    c = ClipConfig.from_mapping(clip_section.model_dump())
    return check_weights_available(c.model, c.pretrained, weights=c.weights, cache_dir=c.cache_dir)


def resolve_engine(engine: str) -> str:
    if engine in ("cpu", "gpu"):
        return engine
    from anyskill_tui.core.sim import default_engine

    return default_engine()


def _latest_metrics(tail: Any) -> dict[str, float]:
    data = tail.poll()
    return {tag: pts[-1][2] for tag, pts in data.items() if pts}


def run_foreground(ws_root: Path, run_id: int, *, show: tuple[tuple[str, str], ...] = ()) -> Any:
    """Run a queued run in this process through the runner, with a Rich progress line; returns the final Run.

    The runner's and trainer's output goes to ``RUN_DIR/train.log``; ``show`` lists (metric tag, label) pairs
    for the progress line. Ctrl-C asks the trainer to stop (it saves a checkpoint; the run ends ``stopped``).
    """
    import contextlib
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from anyskill_tui.core.jobs import runner
    from anyskill_tui.core.jobs.launcher import LOG_NAME, resolve_run_dir, run_attached, run_nproc
    from anyskill_tui.core.jobs.metrics import MetricsTail
    from anyskill_tui.core.jobs.trainers import read_progress
    from anyskill_tui.store.library import Library
    from anyskill_tui.workspace import DB_NAME

    with Library(ws_root / DB_NAME) as lib:
        run_row = lib.get_run(run_id)
        run_dir = resolve_run_dir(ws_root, run_row)
    run_dir.mkdir(parents=True, exist_ok=True)
    console = Console(file=sys.stderr, highlight=False)
    done = threading.Event()
    tail = MetricsTail(run_dir)
    latest: dict[str, float] = {}

    def describe() -> str:
        parts = [f"{label} {latest[tag]:.4g}" for tag, label in show if tag in latest and "/s" not in label]
        parts += [f"{label} {latest[tag]:,.0f}" for tag, label in show if tag in latest and "/s" in label]
        return "  ".join(parts)

    progress = Progress(
        TextColumn(f"run {run_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=False,
    )
    task = progress.add_task("starting", total=None)

    def watch() -> None:
        while not done.wait(0.5):
            try:
                prog = read_progress(run_dir)
                latest.update(_latest_metrics(tail))
                if prog:
                    progress.update(task, completed=prog["step"], total=prog.get("total"), description=describe())
            except Exception:  # the display must never break the run
                pass

    watcher = threading.Thread(target=watch, name="anyskill-progress", daemon=True)
    say(f"run {run_id}: log in {run_dir / LOG_NAME}")
    import signal

    main = threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    with progress, open(run_dir / LOG_NAME, "a", encoding="utf-8") as log:
        watcher.start()
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                if run_nproc(run_row) > 1:  # --nproc: torchrun as a child, its rank 0 runs the runner
                    run_attached(ws_root, run_id)
                else:
                    runner.execute(ws_root, run_id, install_signals=main)
        finally:
            for sig, handler in saved.items():  # the runner's handlers only set its stop flag: put ours back
                signal.signal(sig, handler)
            done.set()
            watcher.join(timeout=2)
            time.sleep(0)
            with contextlib.suppress(Exception):
                latest.update(_latest_metrics(tail))
                prog = read_progress(run_dir)
                if prog:
                    progress.update(task, completed=prog["step"], total=prog.get("total"), description=describe())
    with Library(ws_root / DB_NAME) as lib:
        return lib.get_run(run_id)


SKILL_SHOW = (
    ("clip/similarity", "clip"),
    ("reward/style", "style"),
    ("perf/samples_per_s", "llc steps/s"),
)


def _start_detached(ws_root: Path, run_ids: list[int]) -> list[int]:
    """Start as many of the queued runs as there are free slots; returns the started ids."""
    from anyskill_tui.core.jobs.launcher import start_run
    from anyskill_tui.core.jobs.queue import default_slots
    from anyskill_tui.store.library import Library
    from anyskill_tui.workspace import DB_NAME

    with Library(ws_root / DB_NAME) as lib:
        running = len(lib.list_runs(status="running"))
    free = max(0, default_slots() - running)
    started = []
    for rid in run_ids[:free]:
        start_run(ws_root, rid)
        started.append(rid)
    return started


def finish_message(run: Any, lib: Library, ws_root: Path) -> dict[str, Any]:
    """The outcome of a foreground run; raises UserError when it failed."""
    from anyskill_tui.core.jobs.launcher import LOG_NAME, resolve_run_dir

    if run.status == "failed":
        log = resolve_run_dir(ws_root, run) / LOG_NAME
        raise UserError(f"run {run.id} failed: {run.error} (log: {log})")
    ckpts = lib.list_checkpoints(run.id)
    last = ckpts[-1] if ckpts else None
    return {
        "run": run.id,
        "status": run.status,
        "checkpoint": last.path if last else None,
        "metrics": last.metrics if last else {},
    }


def train(
    ctx: typer.Context,
    prompt: Annotated[str | None, typer.Argument(metavar="[PROMPT]", help="What the skill should do.")] = None,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help="A texts.yaml (`texts:` list of {text, weight}).")
    ] = None,
    llc: Annotated[Path | None, typer.Option("--llc", help="LLC checkpoint (default: see the docs).")] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="auto | cpu | gpu (default: the config's).")] = None,
    envs: Annotated[int | None, typer.Option("--envs", min=1, help="Parallel envs.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="PPO epochs (spec: 500).")] = None,
    reward: Annotated[str | None, typer.Option("--reward", help="render | proxy.")] = None,
    scene: Annotated[
        str | None,
        typer.Option(
            "--scene", help="Objects beside the character: chair | ball | door (configs/scenes/) or a scene YAML."
        ),
    ] = None,
    proxy: Annotated[Path | None, typer.Option("--proxy", help="Proxy checkpoint for --reward proxy.")] = None,
    clip_weights: Annotated[Path | None, typer.Option("--clip-weights", help="Local CLIP weights file.")] = None,
    clip_model: Annotated[str | None, typer.Option("--clip-model", help="open_clip model name.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Skill config YAML (configs/skill.yaml).")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Queue and start in the background.")] = False,
    resume: Annotated[int | None, typer.Option("--resume", metavar="RUN", help="Continue a stopped run.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            min=1,
            help="Processes (one per GPU on the gpu engine) training each run data-parallel under torchrun; "
            "--envs is the total. With --resume: continue on this many.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a skill policy for PROMPT (or every prompt of --prompts) on a frozen LLC."""
    ws = workspace(ctx)
    if resume is not None:
        if nproc is not None:
            from anyskill_tui.commands.llc import set_run_nproc

            set_run_nproc(workspace(ctx), resume, nproc, kind="skill")
        _resume(ctx, ws.root, resume, detach, as_json)
        return
    from anyskill_tui.core.learn.skill_config import load_skill_config
    from anyskill_tui.store.prompts import check_text, check_weight, read_texts_file

    entries: list[tuple[str, float]] = []
    if prompt is not None:
        entries.append((check_text(prompt), 1.0))
    if prompts is not None:
        entries += [(e.text, check_weight(e.weight)) for e in read_texts_file(prompts)]
    if not entries:
        raise UserError('no prompt: give one (`anyskill train "jump forward"`) or --prompts texts.yaml')
    seen: set[str] = set()
    entries = [e for e in entries if not (e[0].lower() in seen or seen.add(e[0].lower()))]
    if reward is not None and reward not in ("render", "proxy"):
        raise UserError(f"--reward must be render or proxy, got {reward!r}")
    if engine is not None and engine not in ("auto", "cpu", "gpu"):
        raise UserError(f"--engine must be auto, cpu or gpu, got {engine!r}")
    overrides: dict[str, Any] = {}
    if envs is not None:
        overrides["env.num_envs"] = envs
    if engine is not None:
        overrides["env.engine"] = engine
    if epochs is not None:
        overrides["ppo.max_epochs"] = epochs
    if reward is not None:
        overrides["reward.mode"] = reward
    if proxy is not None:
        if not proxy.is_file():
            raise UserError(f"proxy checkpoint {proxy} does not exist; train one with `anyskill proxy train`")
        overrides["reward.proxy"] = str(proxy.resolve())
    if clip_model is not None:
        overrides["clip.model"] = clip_model
    weights = check_clip_weights(clip_weights)
    if weights is not None:
        overrides["clip.weights"] = weights
    if scene is not None:
        from anyskill_tui.core.sim.scene import load_scene

        overrides["scene"] = load_scene(scene).to_dict()  # the run's config carries the resolved scene
    cfg = load_skill_config(config, overrides=overrides)
    if cfg.scene is not None:
        from anyskill_tui.core.learn.skill_config import check_scene_reward

        check_scene_reward(cfg, "--reward proxy" if reward == "proxy" else "reward.mode proxy")
    if cfg.reward.mode == "proxy" and not cfg.reward.proxy:
        raise UserError("--reward proxy needs --proxy CKPT (train one with `anyskill proxy train`)")
    preflight_clip(cfg.clip)  # no CLIP weights: one clear error now, not a Run that fails
    if nproc is not None and nproc > 1:  # before the library changes: devices, and envs/minibatch splitting evenly
        from anyskill_tui.commands.llc import check_world

        check_world(resolve_engine(cfg.env.engine), nproc)
        for what, n in (("env.num_envs", cfg.env.num_envs), ("ppo.minibatch_size", cfg.minibatch_size)):
            if n % nproc:
                raise UserError(f"{what} {n} is not divisible by --nproc {nproc}: choose a multiple of {nproc}")

    with open_library(ctx) as lib:
        llc_path = resolve_llc(llc, cfg.llc.path, lib, ws.root)
        run_engine = resolve_engine(cfg.env.engine)
        skill_ids = []
        for text, weight in entries:
            sk = lib.find_skill(text) or lib.add_skill(text, weight=weight)
            skill_ids.append(sk.id)
        base = cfg.to_dict()
        base["llc"]["path"] = str(llc_path)
        base["env"]["engine"] = run_engine
        base["workspace"] = str(ws.root)
        if nproc is not None and nproc > 1:
            base["nproc"] = nproc  # the world size: the launcher starts the run under torchrun
        groups = [[i] for i in range(len(entries))] if detach else [list(range(len(entries)))]
        run_ids = []
        for group in groups:
            conf = dict(base)
            conf["prompts"] = [{"text": entries[i][0], "weight": entries[i][1]} for i in group]
            conf["skill_ids"] = [skill_ids[i] for i in group]
            from anyskill_tui.core.learn.skill_config import skill_config_from_dict

            skill_config_from_dict(conf, source="the resolved config")  # one last check before the run exists
            run = lib.create_run("skill", run_engine, skill=skill_ids[group[0]], config=conf)
            run_ids.append(run.id)

    if detach:
        started = _start_detached(ws.root, run_ids)
        data = {"runs": run_ids, "started": started, "llc": str(llc_path)}
        if as_json:
            print_json(data)
            return
        for rid, (text, _) in zip(run_ids, entries, strict=True):
            state = "started" if rid in started else "queued"
            say(f"run {rid} ({text!r}) {state}; follow it with `anyskill runs tail {rid}`")
        if len(started) < len(run_ids):
            say("`anyskill worker` starts the queued runs as slots free up")
        return

    if not as_json:
        where = f" in scene {cfg.scene.name!r}" if cfg.scene is not None else ""
        say(f"training {', '.join(repr(t) for t, _ in entries)}{where} on {run_engine} with LLC {llc_path}")
    final = run_foreground(ws.root, run_ids[0], show=SKILL_SHOW)
    _report(ctx, final, ws.root, as_json)


def _report(ctx: typer.Context, run: Any, ws_root: Path, as_json: bool) -> None:
    with open_library(ctx) as lib:
        data = finish_message(run, lib, ws_root)
    if as_json:
        print_json(data)
        return
    score = data["metrics"].get("clip_score")
    if run.status == "done":
        extra = f"; clip_score {score:.4f}" if isinstance(score, float) else ""
        say(f"run {run.id} done{extra}; checkpoint {data['checkpoint']}")
    else:
        say(f"run {run.id} {run.status}; continue with `anyskill train --resume {run.id}`")


def _resume(ctx: typer.Context, ws_root: Path, run_id: int, detach: bool, as_json: bool) -> None:
    from anyskill_tui.core.jobs.launcher import reconcile, resume_run

    with open_library(ctx) as lib:
        reconcile(lib)
        run = lib.get_run(run_id)
        if run.kind != "skill":
            raise UserError(f"run {run_id} is a {run.kind} run, not a skill run")
        if run.status in ("done", "running"):
            raise UserError(f"run {run_id} is {run.status}; only a stopped or failed run can be resumed")
        if not detach:
            lib.update_run(run_id, status="queued", error=None, ended_at=None, pid=None)
    if detach:
        pid = resume_run(ws_root, run_id)
        if as_json:
            print_json({"run": run_id, "pid": pid})
        else:
            say(f"run {run_id} resumed (pid {pid}); follow it with `anyskill runs tail {run_id}`")
        return
    final = run_foreground(ws_root, run_id, show=SKILL_SHOW)
    _report(ctx, final, ws_root, as_json)
