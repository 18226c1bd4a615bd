"""`anyskill proxy train|report`: the render-free proxy reward (body positions -> CLIP image space, spec §5.6).

``train`` creates a ``proxy`` run (``configs/proxy.yaml`` + options) and runs it in the foreground through the
runner (or ``--detach``). ``report`` prints the agreement report of a proxy run or checkpoint: on held-out
states, the mean cosine between predicted and real CLIP image embeddings and the top-1 retrieval accuracy, each
beside the same numbers for shuffled predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from anyskill_tui.commands._common import open_library, print_json, say, workspace
from anyskill_tui.errors import UserError

app = typer.Typer(help="The render-free proxy reward: train it, report its agreement with CLIP.", no_args_is_help=True)

PROXY_SHOW = (("proxy/loss", "loss"), ("proxy/agreement_cosine", "held-out cos"))


@app.command("train")
def train(
    ctx: typer.Context,
    llc: Annotated[Path | None, typer.Option("--llc", help="LLC for rollout states (default: as `train`).")] = None,
    no_llc: Annotated[bool, typer.Option("--no-llc", help="Motion states only.")] = False,
    engine: Annotated[str | None, typer.Option("--engine", help="auto | cpu | gpu.")] = None,
    envs: Annotated[int | None, typer.Option("--envs", min=1, help="Worlds rendered per batch.")] = None,
    states: Annotated[
        int | None, typer.Option("--states", min=10, help="States in all (half motion, half rollout).")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Fit epochs.")] = None,
    clip_weights: Annotated[Path | None, typer.Option("--clip-weights", help="Local CLIP weights file.")] = None,
    clip_model: Annotated[str | None, typer.Option("--clip-model", help="open_clip model name.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Proxy config YAML (configs/proxy.yaml).")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Queue and start in the background.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
) -> None:
    """Collect rendered states, CLIP-encode them and fit the proxy MLP; report its agreement with CLIP."""
    from anyskill_tui.commands.train import (
        check_clip_weights,
        preflight_clip,
        resolve_engine,
        resolve_llc,
        run_foreground,
    )
    from anyskill_tui.core.learn.skill_config import load_proxy_config

    ws = workspace(ctx)
    if engine is not None and engine not in ("auto", "cpu", "gpu"):
        raise UserError(f"--engine must be auto, cpu or gpu, got {engine!r}")
    overrides: dict[str, Any] = {}
    if engine is not None:
        overrides["engine"] = engine
    if envs is not None:
        overrides["num_envs"] = envs
    if epochs is not None:
        overrides["train.epochs"] = epochs
    if clip_model is not None:
        overrides["clip.model"] = clip_model
    weights = check_clip_weights(clip_weights)
    if weights is not None:
        overrides["clip.weights"] = weights
    cfg = load_proxy_config(config, overrides=overrides)
    preflight_clip(cfg.clip)  # no CLIP weights: one clear error now, not a Run that fails
    with open_library(ctx) as lib:
        llc_path: str | None = None
        if not no_llc and cfg.data.rollout_states > 0:
            llc_path = str(resolve_llc(llc, cfg.llc_path, lib, ws.root))
        conf = cfg.to_dict()
        conf["llc_path"] = llc_path
        if states is not None:
            half = states // 2
            conf["data"]["motion_states"] = states - half if llc_path else states
            conf["data"]["rollout_states"] = half if llc_path else 0
        elif llc_path is None:
            conf["data"]["rollout_states"] = 0
        conf["engine"] = resolve_engine(cfg.engine)
        conf["workspace"] = str(ws.root)
        run = lib.create_run("proxy", conf["engine"], config=conf)
    if detach:
        from anyskill_tui.commands.train import _start_detached

        started = _start_detached(ws.root, [run.id])
        if as_json:
            print_json({"run": run.id, "started": bool(started)})
        else:
            say(
                f"proxy run {run.id} {'started' if started else 'queued'}; follow it with `anyskill runs tail {run.id}`"
            )
        return
    final = run_foreground(ws.root, run.id, show=PROXY_SHOW)
    if final.status == "failed":
        raise UserError(f"proxy run {final.id} failed: {final.error}")
    rep = _load_report(ws.root, str(final.id))
    if as_json:
        print_json({"run": final.id, "status": final.status, "report": rep})
    elif rep:
        from anyskill_tui.core.reward.proxy_train import format_report

        say(format_report(rep))
        say(f"proxy checkpoint: {rep.get('_checkpoint')}; use it with `anyskill train ... --reward proxy --proxy PATH`")
    else:
        say(f"proxy run {final.id} {final.status}")


def _load_report(ws_root: Path, ref: str) -> dict[str, Any]:
    """The report of a proxy run id or a proxy checkpoint file."""
    import json

    from anyskill_tui.core.jobs.checkpoints import latest_checkpoint
    from anyskill_tui.core.jobs.launcher import resolve_run_dir
    from anyskill_tui.store.library import Library
    from anyskill_tui.workspace import DB_NAME

    p = Path(ref)
    if not ref.isdigit() or p.is_file():
        from anyskill_tui.core.jobs.checkpoints import load_checkpoint

        state = load_checkpoint(p)
        rep = dict(state.get("report") or {}) if isinstance(state, dict) else {}
        if not rep:
            raise UserError(f"{p} holds no agreement report (not a finished proxy checkpoint)")
        rep["_checkpoint"] = str(p)
        return rep
    from anyskill_tui.core.reward.proxy_train import REPORT_FILE

    with Library(ws_root / DB_NAME) as lib:
        run = lib.get_run(int(ref))
    if run.kind != "proxy":
        raise UserError(f"run {ref} is a {run.kind} run, not a proxy run")
    run_dir = resolve_run_dir(ws_root, run)
    f = run_dir / REPORT_FILE
    if not f.is_file():
        raise UserError(f"proxy run {ref} has no report yet ({f}); it is {run.status}")
    rep = json.loads(f.read_text())
    ck = latest_checkpoint(run_dir)
    rep["_checkpoint"] = str(ck) if ck else None
    return rep


@app.command("report")
def report(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="RUN|CKPT", help="Proxy run id or proxy checkpoint file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
) -> None:
    """Print a proxy's agreement with real CLIP on its held-out states."""
    from anyskill_tui.core.reward.proxy_train import format_report

    ws = workspace(ctx)
    rep = _load_report(ws.root, ref)
    if as_json:
        print_json(rep)
    else:
        say(format_report(rep))
