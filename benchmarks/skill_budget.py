"""The reference's whole per-prompt budget through the product's own path: `anyskill train "PROMPT" --epochs 500`.

Two sub-commands, driven by ``benchmarks/skill_budget.sh`` (which runs ``anyskill train`` between them, across
as many device calls as it takes: a call ends with SIGTERM, the run stops with a checkpoint, the next call
resumes it):

    python benchmarks/skill_budget.py prepare --dir DIR
        # DIR/ws (a workspace), DIR/llc.pt (a random spec-sized LLC, or a link to --llc) and DIR/clip.pt
        # (ViT-B-32 with random weights: no CLIP weights on the GPU machine; the cost per frame is the same)
    python benchmarks/skill_budget.py report --ws WS --out FILE.json

``report`` reads the run's TensorBoard scalars and its library rows: epochs and LLC steps done, the training time
(the sum of the epochs' rollout + update times, so the minutes between device calls and the start-up of each call
do not count; the wall time of each call is in the shell log), LLC steps/s (total and per epoch: median, min,
max), CLIP similarity and style reward at the start and the end, the evaluation score stored on the final
checkpoint, and the checkpoints written.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def prepare(args: argparse.Namespace) -> int:
    import open_clip
    import torch

    from anyskill_tui.core.learn.config import llc_config_from_dict
    from anyskill_tui.core.learn.llc_policy import LlcPolicy, save_llc_policy
    from anyskill_tui.workspace import init_workspace

    d = Path(args.dir)
    init_workspace(d / "ws")
    if not (d / "llc.pt").exists():
        if args.llc:
            (d / "llc.pt").symlink_to(Path(args.llc).resolve())
        else:
            torch.manual_seed(0)
            save_llc_policy(d / "llc.pt", LlcPolicy(llc_config_from_dict({})).eval(), extra={"note": "random"})
    if not (d / "clip.pt").exists():
        torch.manual_seed(0)
        model = open_clip.create_model(args.clip_model, pretrained=None)
        torch.save(model.state_dict(), d / "clip.pt")
    print(json.dumps({"llc": str(d / "llc.pt"), "clip": str(d / "clip.pt")}))
    return 0


def _series(points) -> list[tuple[int, float]]:
    by_step: dict[int, float] = {}
    for p in points:  # a resumed run may log an epoch twice: the later point wins
        by_step[int(p[0])] = float(p[2])
    return sorted(by_step.items())


def report(args: argparse.Namespace) -> int:
    from anyskill_tui.core.jobs.metrics import MetricsTail
    from anyskill_tui.store.library import Library
    from anyskill_tui.workspace import find_workspace

    ws = find_workspace(args.ws)
    lib = Library(ws.db_path)
    runs = lib.list_runs()
    if not runs:
        print("no run in the workspace", file=sys.stderr)
        return 1
    run = max(runs, key=lambda r: r.id)
    run_dir = ws.root / run.run_dir if run.run_dir else ws.runs_dir / str(run.id)
    scalars = {tag: _series(pts) for tag, pts in MetricsTail(run_dir).poll().items()}
    rollout = dict(scalars.get("perf/rollout_s", []))
    update = dict(scalars.get("perf/update_s", []))
    llc_steps = dict(scalars.get("info/llc_steps", []))
    rate = [v for _, v in scalars.get("perf/samples_per_s", [])]
    epochs = sorted(set(rollout) & set(update))
    train_s = sum(rollout[e] + update[e] for e in epochs)
    total_steps = max(llc_steps.values()) if llc_steps else 0.0

    def ends(tag: str) -> dict[str, float] | None:
        s = scalars.get(tag)
        if not s:
            return None
        k = max(1, len(s) // 20)  # mean of the first and last 5 %
        return {"first": statistics.fmean(v for _, v in s[:k]), "last": statistics.fmean(v for _, v in s[-k:])}

    cks = lib.list_checkpoints(run.id)
    fig = {
        "run": run.id,
        "status": run.status,
        "run_dir": str(run_dir),
        "epochs_logged": len(epochs),
        "last_epoch": max(epochs) if epochs else 0,
        "llc_steps": total_steps,
        "train_s": train_s,
        "train_min": train_s / 60,
        "llc_steps_per_s": total_steps / train_s if train_s else None,
        "epoch_llc_steps_per_s": (
            {"median": statistics.median(rate), "min": min(rate), "max": max(rate)} if rate else None
        ),
        "epoch_s_median": statistics.median(rollout[e] + update[e] for e in epochs) if epochs else None,
        "rollout_s_median": statistics.median(rollout[e] for e in epochs) if epochs else None,
        "update_s_median": statistics.median(update[e] for e in epochs) if epochs else None,
        "clip_similarity": ends("clip/similarity"),
        "style_reward": ends("reward/style"),
        "episode_length": ends("info/episode_length"),
        "checkpoints": [{"epoch": c.step, "path": c.path, "metrics": c.metrics} for c in cks],
        "tags": sorted(scalars),
    }
    Path(args.out).write_text(json.dumps(fig, indent=1, default=str))
    print(json.dumps({k: v for k, v in fig.items() if k not in ("checkpoints", "tags")}, indent=1, default=str))
    if cks:
        print("final checkpoint metrics:", json.dumps(fig["checkpoints"][-1]["metrics"], default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--dir", required=True)
    p.add_argument("--llc", default="", help="an LLC checkpoint to use instead of a random spec-sized one")
    p.add_argument("--clip-model", default="ViT-B-32")
    r = sub.add_parser("report")
    r.add_argument("--ws", required=True)
    r.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    return prepare(args) if args.cmd == "prepare" else report(args)


if __name__ == "__main__":
    sys.exit(main())
