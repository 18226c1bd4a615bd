"""LLC training on the GPU: throughput, memory, a time-budgeted default training run, export, eval, curves.

Stages (each guarded; a failing stage is recorded in $OUT/llc_summary.json and the next still runs):

a. **throughput**: the full LLC epoch (simulation + rollout + reward + all PPO/CALM updates + buffers) at
   ``--bench-envs`` envs (default 4,096) for ``--bench-epochs`` epochs after ``--warmup`` epochs; samples/s (warm-up
   excluded), ``torch.cuda.max_memory_allocated`` and nvidia-smi's used memory. Targets: >= 150,000 samples/s,
   < 20 GB.
b. **train**: the default LLC config on the starter set (``--train-envs``, default 4,096, the CALM original's env
   count) until ``--budget`` seconds after the script start minus a 60 s margin, through ``train_llc`` with a
   minimal file-only TrainContext (no store): checkpoints + event files in $OUT/llc_run (only the last
   checkpoint is kept). Then the slim policy (fp16 weights) goes to $OUT/llc_default.pt; when it is larger than
   15 MiB (the device tool returns files of at most 16 MiB) it is split into llc_default.pt.part0, .part1, ...
   (``cat llc_default.pt.part* > llc_default.pt`` restores it).
c. **eval**: ``evaluate_llc`` on the exported policy -> $OUT/llc_eval.json.
d. **curves**: disc reward, episode length, fall rate per epoch -> $OUT/llc_curves.json and a PIL line plot
   $OUT/llc_curves.png.

Local smoke test (CPU, seconds): ``python benchmarks/llc_train.py --device cpu --tiny --budget 60 --out /tmp/llc_out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

T0 = time.monotonic()

TINY = {
    "env": {"num_envs": 16},
    "network": {
        "actor_hidden": [32, 32],
        "critic_hidden": [32, 32],
        "encoder_hidden": [32],
        "disc_hidden": [32, 32],
        "style_hidden": [16],
    },
    "ppo": {"horizon_length": 8, "minibatch_size": 64, "mini_epochs": 2},
    "calm": {"demo_buffer_size": 512, "replay_buffer_size": 512, "amp_batch_size": 64, "amp_minibatch_size": 32},
}


def log(msg: str) -> None:
    print(f"[llc_gpu {time.monotonic() - T0:7.1f}s] {msg}", flush=True)


def nvidia_smi_mb() -> float | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return float(out.strip().splitlines()[0])
    except Exception:
        return None


class FileContext:
    """A minimal TrainContext: event files + checkpoints under run_dir, no store."""

    def __init__(self, run_dir: Path, config: dict, resume_from: Path | None = None) -> None:
        from anyskill_tui.core.jobs.trainers import TrainContext

        self.inner = TrainContext(run_id=0, run_dir=run_dir, config=config, resume_from=resume_from)
        self.stop_event = self.inner.stop_event

    def __getattr__(self, name):
        return getattr(self.inner, name)


def llc_config(args, envs: int, epochs: int, extra: dict | None = None):
    from anyskill_tui.core.learn.config import apply_overrides, llc_config_from_dict

    base: dict = {}
    if args.tiny:
        base = apply_overrides(TINY, {})
    over = {"env.num_envs": envs, "ppo.max_epochs": epochs, "seed": args.seed}
    if args.tiny:
        over["env.num_envs"] = min(envs, 16)
    if not args.tiny:
        if envs >= 4096 and not args.anyskill_minibatch:  # the CALM original's 4,096-env setting (spec §4.7)
            over["ppo.minibatch_size"] = 16384
            over["calm.amp_minibatch_size"] = 4096
        elif envs * 32 < 4096:
            over["ppo.minibatch_size"] = envs * 32
            over["calm.amp_minibatch_size"] = min(1024, envs * 32)
    if extra:
        over.update(extra)
    return llc_config_from_dict(base, source="benchmark", overrides=over)


def stage_throughput(args, summary: dict) -> None:
    import torch

    from anyskill_tui.core.learn.llc_train import LlcTrainer, default_motions_path

    cfg = llc_config(args, args.bench_envs, 10**6)
    log(f"throughput: {cfg.env.num_envs} envs, batch {cfg.batch_size}, minibatch {cfg.ppo.minibatch_size}")
    engine = "gpu" if args.device == "cuda" else "cpu"
    t = time.monotonic()
    tr = LlcTrainer(cfg, default_motions_path(), engine=engine)
    summary["throughput_setup_s"] = time.monotonic() - t
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup):
        m = tr.epoch_step()
        log(f"  warm-up epoch {i + 1}: {m.get('performance/total_fps', 0):,.0f} samples/s")
    if args.device == "cuda":
        torch.cuda.synchronize()
    t = time.monotonic()
    rows = []
    for _ in range(args.bench_epochs):
        m = tr.epoch_step()
        rows.append(m)
        log(
            f"  epoch {tr.epoch}: {m['performance/total_fps']:,.0f} samples/s "
            f"(play {m['performance/play_time']:.3f}s update {m['performance/update_time']:.3f}s)"
        )
    if args.device == "cuda":
        torch.cuda.synchronize()
    dt = time.monotonic() - t
    samples = args.bench_epochs * cfg.batch_size
    summary["throughput"] = {
        "envs": cfg.env.num_envs,
        "batch": cfg.batch_size,
        "minibatch": cfg.ppo.minibatch_size,
        "epochs_timed": args.bench_epochs,
        "samples_per_s": samples / dt,
        "play_time_s": sum(r["performance/play_time"] for r in rows) / len(rows),
        "update_time_s": sum(r["performance/update_time"] for r in rows) / len(rows),
        "max_memory_allocated_gb": torch.cuda.max_memory_allocated() / 1e9 if args.device == "cuda" else None,
        "nvidia_smi_used_mb": nvidia_smi_mb(),
        "target_samples_per_s": 150_000,
        "target_memory_gb": 20,
    }
    log(f"throughput: {summary['throughput']}")
    del tr
    if args.device == "cuda":
        torch.cuda.empty_cache()


def stage_train(args, summary: dict, out: Path) -> Path | None:
    from anyskill_tui.core.learn.llc_policy import LlcPolicy, save_llc_policy
    from anyskill_tui.core.learn.llc_train import run_config, train_llc

    remaining = args.budget - (time.monotonic() - T0) - args.margin - args.eval_reserve
    if remaining < 20:
        log(f"train: only {remaining:.0f}s left; skipped")
        summary["train"] = {"skipped": True}
        return None
    cfg = llc_config(args, args.train_envs, 10**6, {"ppo.save_frequency": args.save_every})
    engine = "gpu" if args.device == "cuda" else "cpu"
    rc = run_config(cfg, None, engine=engine, time_budget_s=remaining, keep_checkpoints=1)
    run_dir = out / "llc_run"
    ctx = FileContext(run_dir, rc)
    log(f"train: {cfg.env.num_envs} envs for up to {remaining:.0f}s -> {run_dir}")
    t = time.monotonic()
    try:
        train_llc(ctx)
    finally:
        ctx.close()
    from anyskill_tui.core.jobs.checkpoints import latest_checkpoint, load_checkpoint

    ck = latest_checkpoint(run_dir)
    state = load_checkpoint(ck)
    summary["train"] = {
        "envs": cfg.env.num_envs,
        "epochs": state["epoch"],
        "samples": state["samples"],
        "wall_s": time.monotonic() - t,
        "checkpoint": str(ck),
        "checkpoint_mb": ck.stat().st_size / 2**20,
    }
    (out / "llc_history.json").write_text(json.dumps(state.get("history", [])))
    (run_dir / "progress.json").unlink(missing_ok=True)  # the device tool returns at most 8 files
    policy = LlcPolicy.load(ck)
    slim = save_llc_policy(out / "llc_default.pt", policy, extra={"epochs": state["epoch"]}, half=True)
    size = slim.stat().st_size
    summary["train"]["policy_file_mb"] = size / 2**20
    if size > 15 * 2**20:
        data = slim.read_bytes()
        part = 15 * 2**20
        for i in range(0, len(data), part):
            (out / f"llc_default.pt.part{i // part}").write_bytes(data[i : i + part])
        keep = Path("/tmp") / f"llc_default_{os.getpid()}.pt"  # outside $OUT: kept for the eval stage only
        slim.replace(keep)
        summary["train"]["policy_parts"] = (len(data) + part - 1) // part
        slim = keep
    log(f"train: {summary['train']}")
    return slim


def stage_eval(args, summary: dict, out: Path, policy_path: Path) -> None:
    from anyskill_tui.core.learn.llc_eval import evaluate_llc

    engine = "gpu" if args.device == "cuda" else "cpu"
    t = time.monotonic()
    rep = evaluate_llc(policy_path, None, episodes=args.eval_episodes, seconds=args.eval_seconds, engine=engine)
    rep["wall_s"] = time.monotonic() - t
    (out / "llc_eval.json").write_text(json.dumps(rep, indent=1))
    summary["eval"] = rep["summary"]
    log(f"eval: {rep['summary']}")


def stage_curves(out: Path) -> None:
    hist = json.loads((out / "llc_history.json").read_text())
    keys = {
        "disc_reward": "info/conditional_disc_reward_mean",
        "episode_length": "episode_lengths/iter",
        "fall_rate": "info/fall_rate",
        "demo_acc": "info/conditional_disc_demo_acc",
        "agent_acc": "info/conditional_disc_agent_acc",
        "samples_per_s": "performance/total_fps",
    }
    curves = {"epoch": [h["epoch"] for h in hist]}
    curves.update({k: [h.get(tag) for h in hist] for k, tag in keys.items()})
    (out / "llc_curves.json").write_text(json.dumps(curves))
    (out / "llc_history.json").unlink(missing_ok=True)
    try:
        plot_png(curves, out / "llc_curves.png")
    except Exception as exc:  # PIL missing: the JSON is enough
        log(f"curves: no PNG ({exc})")


def plot_png(curves: dict, path: Path) -> None:
    from PIL import Image, ImageDraw

    panels = [("disc_reward", (200, 60, 60)), ("episode_length", (60, 120, 200)), ("fall_rate", (60, 160, 60))]
    W, H, pad = 900, 220, 40
    img = Image.new("RGB", (W, H * len(panels)), "white")
    d = ImageDraw.Draw(img)
    xs = curves["epoch"]
    for i, (key, color) in enumerate(panels):
        top = i * H
        ys = [y for y in curves[key] if y is not None]
        d.rectangle([pad, top + 20, W - 10, top + H - 20], outline=(180, 180, 180))
        if len(ys) < 2:
            d.text((pad + 5, top + 5), f"{key}: no data", fill="black")
            continue
        lo, hi = min(ys), max(ys)
        hi = hi if hi > lo else lo + 1e-9
        pts = []
        for x, y in zip(xs, curves[key], strict=False):
            if y is None:
                continue
            px = pad + (W - 10 - pad) * (x - xs[0]) / max(xs[-1] - xs[0], 1)
            py = top + H - 20 - (H - 40) * (y - lo) / (hi - lo)
            pts.append((px, py))
        d.line(pts, fill=color, width=2)
        d.text(
            (pad + 5, top + 3),
            f"{key}  (min {lo:.3g}, max {hi:.3g}, last {ys[-1]:.3g}; x: epoch {xs[0]}..{xs[-1]})",
            fill="black",
        )
    img.save(path)


def run_stage(name: str, fn, summary: dict, timeout: float):
    """Run a stage in a thread with a soft timeout (the stage keeps running in the background if it overruns)."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()

    t = threading.Thread(target=target, daemon=True, name=name)
    t.start()
    t.join(max(1.0, timeout))
    if t.is_alive():
        summary.setdefault("errors", {})[name] = f"timed out after {timeout:.0f}s"
        log(f"{name}: timed out")
        return None
    if "error" in box:
        summary.setdefault("errors", {})[name] = box["error"]
        log(f"{name}: failed: {box['error']}")
    return box.get("value")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="tiny networks and envs (a local smoke test)")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/llc_out"))
    ap.add_argument("--budget", type=float, default=560.0, help="seconds for the whole script")
    ap.add_argument("--margin", type=float, default=60.0, help="seconds kept free at the end")
    ap.add_argument("--eval-reserve", type=float, default=45.0, help="seconds reserved for export/eval/curves")
    ap.add_argument("--bench-envs", type=int, default=4096)
    ap.add_argument("--bench-epochs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--train-envs", type=int, default=4096)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--eval-episodes", type=int, default=4)
    ap.add_argument("--eval-seconds", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument(
        "--anyskill-minibatch", action="store_true", help="minibatch 4096 / D rows 1024 (AnySkill) even at 4,096 envs"
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"args": vars(args)}
    try:
        import torch

        summary["torch"] = torch.__version__
        summary["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        if args.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("no CUDA device; use --device cpu")
        if args.device == "cpu":
            torch.set_num_threads(1)

        def left() -> float:
            return args.budget - (time.monotonic() - T0) - args.margin

        if not args.skip_throughput:
            run_stage("throughput", lambda: stage_throughput(args, summary), summary, min(150.0, left() * 0.35))
        policy = run_stage("train", lambda: stage_train(args, summary, out), summary, left() + args.margin * 0.5)
        if policy is not None:
            run_stage("eval", lambda: stage_eval(args, summary, out, policy), summary, max(10.0, left() + 30))
        if (out / "llc_history.json").exists():
            run_stage("curves", lambda: stage_curves(out), summary, 30.0)
    finally:
        summary["wall_s"] = time.monotonic() - T0
        (out / "llc_summary.json").write_text(json.dumps(summary, indent=1, default=str))
        log(f"done in {summary['wall_s']:.0f}s; files: {sorted(p.name for p in out.iterdir())}")
    return 1 if summary.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
