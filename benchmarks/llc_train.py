"""LLC training on the GPU: throughput, memory, a time-budgeted default training run, export, eval, curves.

Stages (each guarded; a failing stage is recorded in $OUT/llc_summary.json and the next still runs):

a. **throughput**: the full LLC epoch (simulation + rollout + reward + all PPO/CALM updates + buffers) at
   ``--bench-envs`` envs (default 4,096) for ``--bench-epochs`` epochs after ``--warmup`` epochs; samples/s (warm-up
   excluded), ``torch.cuda.max_memory_allocated`` and nvidia-smi's used memory. Targets: >= 150,000 samples/s,
   < 20 GB.
b. **train**: the default LLC config on the starter set (``--train-envs``, default 4,096, the CALM original's env
   count) until ``--budget`` seconds after the script start minus a 60 s margin, through ``train_llc`` with a
   minimal file-only TrainContext (no store): checkpoints + event files in ``--run-dir`` (default $OUT/llc_run;
   only the last checkpoint is kept; ``--resume`` continues from it). At every checkpoint the slim policy (fp16
   weights) goes to $OUT/llc_default.pt; when it is larger than 15 MiB (the device tool returns files of at most
   16 MiB) it is split into llc_default.pt.part0, .part1, ... (``cat llc_default.pt.part* > llc_default.pt``
   restores it).
c. **eval**: ``evaluate_llc`` on the exported policy -> $OUT/llc_eval.json.
d. **curves**: disc reward, episode length, fall rate per epoch -> $OUT/llc_curves.json and a PIL line plot
   $OUT/llc_curves.png.

``--throughput-only`` runs only stage (a), at ``--bench-envs`` (4,096) and then at ``--bench-envs2`` (8,192) when
enough of ``--budget`` is left, each with ``--warmup`` + ``--bench-epochs`` epochs, plus a one-epoch host-sync
audit (``torch.cuda.set_sync_debug_mode``; warnings counted per source line, rollout and update apart) and the
simulator alone (env step + masked resets, 32 steps) for comparison with the rollout.

Every stage runs in the main thread under a ``signal.alarm`` deadline (and the throughput loop also checks the
clock between epochs): a stage that overruns is interrupted and recorded as timed out, so it can never keep
running in the background while the next stage captures CUDA graphs (the earlier watchdog-thread version did,
and the train stage's capture failed with "operation would make the legacy stream depend on a capturing
blocking stream").

Local smoke test (CPU, seconds): ``python benchmarks/llc_train.py --device cpu --tiny --budget 60 --out /tmp/llc_out``;
``python benchmarks/llc_train.py --device cpu --tiny --throughput-only --bench-epochs 20 --warmup 3``.

Several GPUs (``benchmarks/llc_multi_gpu.sh``): ``python -m torch.distributed.run --standalone --nproc-per-node 2
benchmarks/llc_train.py --throughput-only ...`` trains data-parallel (core.learn.distributed): ``--bench-envs`` is
then per GPU and every rank runs exactly the one-GPU config (envs, minibatches, buffers times the world size
globally); samples/s counts all ranks; rank 0 alone prints and writes; the sim-alone, sync-audit and profile extras
run on one GPU only. CPU smoke test: the same with ``--device cpu --tiny``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
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


#: under torchrun (WORLD_SIZE > 1): this process's rank and the number of ranks; only rank 0 prints and writes
RANK = int(os.environ.get("RANK") or 0)
WORLD = int(os.environ.get("WORLD_SIZE") or 1)


def log(msg: str) -> None:
    if RANK == 0:
        print(f"[llc_gpu {time.monotonic() - T0:7.1f}s] {msg}", flush=True)


def dist_context():
    """The data-parallel context (one process: core.learn.distributed.SINGLE, whose hooks do nothing)."""
    from anyskill_tui.core.learn import distributed

    return distributed.current()


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
    """A minimal TrainContext: event files + checkpoints under run_dir, no store. ``on_save(state)`` runs after
    every checkpoint (the train stage exports the slim policy and the history there, so a stage cut short by its
    deadline still leaves the last saved policy in $OUT)."""

    def __init__(
        self, run_dir: Path, config: dict, resume_from: Path | None = None, on_save=None, stop_at: float | None = None
    ) -> None:
        from anyskill_tui.core.jobs.trainers import TrainContext

        self.inner = TrainContext(run_id=0, run_dir=run_dir, config=config, resume_from=resume_from)
        self.stop_event = self.inner.stop_event
        self.on_save = on_save
        self.stop_at = stop_at  # time.monotonic() after which training stops (a final checkpoint follows)

    def should_stop(self) -> bool:
        return self.inner.should_stop() or (self.stop_at is not None and time.monotonic() > self.stop_at)

    def save_checkpoint(self, step: int, state: dict, metrics: dict | None = None) -> Path:
        path = self.inner.save_checkpoint(step, state, metrics)
        if self.on_save is not None:
            self.on_save(state)
        return path

    def __getattr__(self, name):
        return getattr(self.inner, name)


#: the device tool returns files of at most 16 MiB: larger policy files travel as parts
PART_BYTES = 15 * 2**20


def export_policy(state: dict, out: Path, summary: dict) -> Path:
    """The slim fp16 policy of a training state: ``$OUT/llc_default.pt``, or ``.part0``, ``.part1``, ... when it is
    larger than 15 MiB (``cat llc_default.pt.part* > llc_default.pt`` restores it; the whole file is kept in /tmp
    for the eval stage). Also writes the training history to ``$OUT/llc_history.json``. Returns the whole file."""
    from anyskill_tui.core.learn.llc_policy import LlcPolicy, save_llc_policy

    policy = LlcPolicy.from_state(state)
    keep = Path("/tmp") / f"llc_default_{os.getpid()}.pt"
    info = {
        "epochs": state["epoch"],
        "samples": state["samples"],
        "motions": "starter",
        "run": "benchmarks/llc_train.py",
    }
    save_llc_policy(keep, policy, extra=info, half=True)
    data = keep.read_bytes()
    for old in out.glob("llc_default.pt*"):
        old.unlink()
    if len(data) <= PART_BYTES:
        (out / "llc_default.pt").write_bytes(data)
    else:
        for i in range(0, len(data), PART_BYTES):
            (out / f"llc_default.pt.part{i // PART_BYTES}").write_bytes(data[i : i + PART_BYTES])
    (out / "llc_history.json").write_text(json.dumps(state.get("history", [])))
    summary["policy"] = {
        "epochs": state["epoch"],
        "samples": state["samples"],
        "policy_file_mb": len(data) / 2**20,
        "policy_parts": (len(data) + PART_BYTES - 1) // PART_BYTES,
    }
    return keep


def llc_config(args, envs: int, epochs: int, extra: dict | None = None):
    from anyskill_tui.core.learn.config import apply_overrides, llc_config_from_dict

    base: dict = {}
    if args.tiny:
        base = apply_overrides(TINY, {})
    over = {
        "env.num_envs": envs,
        "ppo.max_epochs": epochs,
        "seed": args.seed,
        "ppo.cuda_graph": args.cuda_graph,
        "ppo.cuda_graph_rollout": args.rollout_graph,
    }
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
    if WORLD > 1:  # under torchrun `envs` is per GPU: the global config is W times the one-GPU one, so every
        one = llc_config_from_dict(base, source="benchmark", overrides=over)  # rank runs exactly that one
        for key in ("env.num_envs", "ppo.minibatch_size", "calm.amp_minibatch_size", "calm.amp_batch_size"):
            section, name = key.split(".")
            over[key] = getattr(getattr(one, section), name) * WORLD
        over["calm.demo_buffer_size"] = one.calm.demo_buffer_size * WORLD
        over["calm.replay_buffer_size"] = one.calm.replay_buffer_size * WORLD
    return llc_config_from_dict(base, source="benchmark", overrides=over)


def _sim_alone(tr, steps: int = 32) -> float:
    """Seconds per env step (step + masked resets, zero actions) of the trainer's env: the simulator's share."""
    import torch

    env = tr.env
    act = torch.zeros((env.num_envs, 28), device=env.device)
    for _ in range(3):
        env.step(act)
        env.reset_done_masked()
    tr._sync()
    t = time.perf_counter()
    for _ in range(steps):
        env.step(act)
        env.reset_done_masked()
    tr._sync()
    return (time.perf_counter() - t) / steps


def _sync_audit(tr) -> dict:
    """One epoch with ``torch.cuda.set_sync_debug_mode('warn')``: synchronising calls per phase and source line."""
    import torch

    out: dict = {}
    buf = None
    for phase in ("rollout", "update"):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                if phase == "rollout":
                    buf = tr.rollout()
                else:
                    buf["rewards"] = tr.rewards(buf)
                    tr.push_demo(tr.cfg.calm.amp_batch_size)
                    tr.update(buf)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        lines: dict[str, int] = {}
        for w in rec:
            if "synchroniz" in str(w.message):
                key = f"{Path(w.filename).name}:{w.lineno}"
                lines[key] = lines.get(key, 0) + 1
        out[phase] = {"syncs": sum(lines.values()), "by_line": dict(sorted(lines.items(), key=lambda kv: -kv[1])[:12])}
    return out


def _profile(tr, top: int = 25) -> dict:
    """One epoch under ``torch.profiler``: per phase (rollout, update) the device time, the number of kernels
    launched, and the ops with the most device time (self time, with their call counts)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if tr.device.type == "cuda" else [])
    out: dict = {}
    for phase in ("rollout", "update"):
        buf = tr.rollout() if phase == "update" else None
        if buf is not None:
            buf["rewards"] = tr.rewards(buf)
        tr._sync()
        t = time.monotonic()
        with profile(activities=acts) as prof:
            if phase == "rollout":
                tr.rollout()
            else:
                tr.update(buf)
            tr._sync()
        wall = time.monotonic() - t
        events = prof.key_averages()
        dev_attr = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
        kernels = [e for e in prof.events() if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
        rows = sorted(events, key=lambda e: -getattr(e, dev_attr, 0.0))[:top]
        out[phase] = {
            "wall_s": wall,
            # the kernels' own durations: summing every event's self device time counts each kernel twice (as
            # itself and as the aten op that launched it), which the figures before 2026-12-04 did
            "device_time_s": sum(e.time_range.elapsed_us() for e in kernels) / 1e6,
            "kernels": len(kernels),
            "aten_ops": sum(1 for e in prof.events() if e.name.startswith("aten::")),
            "top_ops": [
                {"op": e.key[:80], "calls": e.count, "device_ms": getattr(e, dev_attr, 0.0) / 1e3}
                for e in rows
                if getattr(e, dev_attr, 0.0) > 0
            ],
        }
        ph = out[phase]
        log(f"  profile {phase}: wall {wall:.3f}s, device {ph['device_time_s']:.3f}s, {ph['kernels']} kernels")
        log(f"  profile {phase}: {ph['aten_ops']} aten ops")
    return out


def throughput_at(args, envs: int, deadline: float, extra: dict | None = None, per_row_latents: bool = False) -> dict:
    """Warm-up + timed epochs of the full LLC epoch at ``envs`` envs; stops early (recorded) at ``deadline``.
    ``extra``: config overrides (e.g. ``{"ppo.cuda_graph": False}``). ``per_row_latents``: the update encodes one
    latent window per minibatch row (the path before 2026-12-04's distinct-recipe pass), for an A/B."""
    import torch

    from anyskill_tui.core.learn.llc_train import LlcTrainer, default_motions_path

    cfg = llc_config(args, envs, 10**6, extra)
    log(
        f"throughput: {cfg.env.num_envs} envs, batch {cfg.batch_size}, minibatch {cfg.ppo.minibatch_size}, "
        f"cuda_graph {cfg.ppo.cuda_graph}, cuda_graph_rollout {cfg.ppo.cuda_graph_rollout}"
    )
    engine = "gpu" if args.device == "cuda" else "cpu"
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t = time.monotonic()
    dist = dist_context()
    tr = LlcTrainer(cfg, default_motions_path(), engine=engine, dist=dist)
    if per_row_latents:
        tr._distinct_latent_recipes = lambda recipe, minibatch: {}
    res: dict = {
        "world_size": dist.world_size,
        "envs_per_gpu": cfg.env.num_envs // dist.world_size,
        "envs": cfg.env.num_envs,
        "batch": cfg.batch_size,
        "minibatch": cfg.ppo.minibatch_size,
        "disc_rows": cfg.calm.amp_minibatch_size,
        "cuda_graph": cfg.ppo.cuda_graph,
        "cuda_graph_rollout": cfg.ppo.cuda_graph_rollout,
        "latent_rows": "per-row" if per_row_latents else "distinct",
        "setup_s": time.monotonic() - t,
    }
    try:
        for i in range(args.warmup):
            t = time.monotonic()
            m = tr.epoch_step()
            log(
                f"  warm-up epoch {i + 1}: {time.monotonic() - t:.2f}s "
                f"({m.get('performance/total_fps', 0):,.0f} samples/s)"
            )
        tr._sync()
        rows = []
        t = time.monotonic()
        for _ in range(args.bench_epochs):
            late = bool(rows) and time.monotonic() + 1.5 * max(r["performance/epoch_time"] for r in rows) > deadline
            if dist.any_true(late):  # several ranks: all stop after the same epoch
                res["stopped_early"] = True
                break
            m = tr.epoch_step()
            rows.append(m)
            log(
                f"  epoch {tr.epoch}: {m['performance/total_fps']:,.0f} samples/s "
                f"(rollout {m['performance/play_time']:.3f}s, "
                f"update+reward+buffers {m['performance/update_time']:.3f}s)"
            )
        tr._sync()
        dt = time.monotonic() - t
        n = len(rows)
        if n:
            res.update(
                {
                    "epochs_timed": n,
                    "samples_per_s": n * cfg.batch_size / dt,
                    "epoch_s": dt / n,
                    "rollout_s": sum(r["performance/play_time"] for r in rows) / n,
                    "update_s": sum(r["performance/update_time"] for r in rows) / n,
                    "rollout_s_per_step": sum(r["performance/play_time"] for r in rows) / n / cfg.ppo.horizon_length,
                }
            )
        res["enc_rows_cap"] = tr.enc_rows_cap  # rows of the update's latent encoder pass (0: per-row path)
        res["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated() / 1e9 if cuda else None
        res["nvidia_smi_used_mb"] = nvidia_smi_mb()
        # the extras run on one GPU only (the audits' epochs would need every rank, the simulator is per GPU)
        if time.monotonic() + 10 < deadline and not dist.enabled:
            res["sim_alone_s_per_step"] = _sim_alone(tr)
        one_gpu = not dist.enabled
        if cuda and one_gpu and args.sync_audit and time.monotonic() + 3 * res.get("epoch_s", 5.0) < deadline:
            res["sync_audit"] = _sync_audit(tr)
        if one_gpu and args.profile and time.monotonic() + 4 * res.get("epoch_s", 5.0) < deadline:
            res["profile"] = _profile(tr)
    finally:
        del tr
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
    log(f"throughput at {envs} envs: {json.dumps(res, default=str)}")
    return res


def stage_throughput(args, summary: dict, deadline: float) -> None:
    summary["throughput"] = throughput_at(args, args.bench_envs, deadline)
    summary["throughput"]["target_samples_per_s"] = 150_000
    summary["throughput"]["target_memory_gb"] = 20


def stage_train(args, summary: dict, out: Path) -> Path | None:
    """Train (or with ``--resume`` continue) the default LLC in ``--run-dir`` until the budget; every checkpoint
    also exports the slim policy and the history to $OUT (:func:`export_policy`). Returns the whole policy file."""
    from anyskill_tui.core.jobs.checkpoints import latest_checkpoint
    from anyskill_tui.core.learn.llc_train import run_config, train_llc

    remaining = args.budget - (time.monotonic() - T0) - args.margin - (args.eval_reserve if args.eval else 0.0)
    if remaining < 20:
        log(f"train: only {remaining:.0f}s left; skipped")
        summary["train"] = {"skipped": True}
        return None
    cfg = llc_config(args, args.train_envs, 10**6, {"ppo.save_frequency": args.save_every})
    engine = "gpu" if args.device == "cuda" else "cpu"
    rc = run_config(cfg, None, engine=engine, keep_checkpoints=1)
    run_dir = Path(args.run_dir) if args.run_dir else out / "llc_run"
    resume = latest_checkpoint(run_dir) if args.resume else None
    if args.resume and resume is None:
        log(f"train: no checkpoint in {run_dir}; starting afresh")
    exported: list[Path] = []

    def on_save(state: dict) -> None:
        exported.append(export_policy(state, out, summary))

    # an absolute deadline (the trainer's own time budget would start after its set-up, kernel compilation on a
    # fresh machine); the 20 s left after it hold the last epoch and the final save of the 4,096-env state
    ctx = FileContext(run_dir, rc, resume_from=resume, on_save=on_save, stop_at=time.monotonic() + remaining - 20)
    log(f"train: {cfg.env.num_envs} envs for up to {remaining:.0f}s -> {run_dir} (resume from {resume})")
    t = time.monotonic()
    try:
        train_llc(ctx)
    finally:
        ctx.close()
    ck = latest_checkpoint(run_dir)
    (run_dir / "progress.json").unlink(missing_ok=True)  # the device tool returns at most 8 files
    summary["train"] = {
        "envs": cfg.env.num_envs,
        "resumed_from": str(resume) if resume else None,
        "wall_s": time.monotonic() - t,
        "checkpoint": str(ck),
        "checkpoint_mb": ck.stat().st_size / 2**20 if ck else None,
        **summary.get("policy", {}),
    }
    log(f"train: {summary['train']}")
    return exported[-1] if exported else None


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


class StageTimeout(Exception):
    """Raised in the main thread by SIGALRM when a stage passes its deadline."""


def run_stage(name: str, fn, summary: dict, timeout: float):
    """Run a stage in the main thread with a ``signal.alarm`` deadline; a stage that overruns is interrupted.

    (No watchdog thread: an abandoned stage must not keep using the GPU while the next one runs.)
    """

    def on_alarm(signum, frame):
        raise StageTimeout(f"{name} timed out after {timeout:.0f}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(timeout)))
    try:
        return fn()
    except StageTimeout as exc:
        summary.setdefault("errors", {})[name] = str(exc)
        log(f"{name}: {exc}")
    except Exception as exc:  # noqa: BLE001 - recorded; the next stage still runs
        summary.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        log(f"{name}: failed: {type(exc).__name__}: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return None


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
        "--throughput-only",
        action="store_true",
        help="only the throughput stage: --bench-envs, then --bench-envs2 if the budget allows (no train/eval)",
    )
    ap.add_argument("--bench-envs2", type=int, default=8192, help="second env count of --throughput-only (0: none)")
    ap.add_argument("--no-sync-audit", dest="sync_audit", action="store_false", help="skip the host-sync audit epoch")
    ap.add_argument("--profile", action="store_true", help="profile one rollout and one update (torch.profiler)")
    ap.add_argument(
        "--no-cuda-graph", dest="cuda_graph", action="store_false", help="ppo.cuda_graph off (eager gradient steps)"
    )
    ap.add_argument(
        "--graph-ab", action="store_true", help="--throughput-only: then the same envs with the other ppo.cuda_graph"
    )
    ap.add_argument("--rollout-graph", action="store_true", help="ppo.cuda_graph_rollout on (graphed acting)")
    ap.add_argument(
        "--latents-ab",
        action="store_true",
        help="--throughput-only: then the same envs with one latent window encoded per minibatch row",
    )
    ap.add_argument(
        "--rollout-ab",
        action="store_true",
        help="--throughput-only: then the same envs with the other ppo.cuda_graph_rollout",
    )
    ap.add_argument("--run-dir", default=None, help="train: the run directory (default $OUT/llc_run)")
    ap.add_argument("--resume", action="store_true", help="train: resume from the latest checkpoint in --run-dir")
    ap.add_argument("--no-eval", dest="eval", action="store_false", help="train: skip the eval stage")
    ap.add_argument(
        "--anyskill-minibatch", action="store_true", help="minibatch 4096 / D rows 1024 (AnySkill) even at 4,096 envs"
    )
    args = ap.parse_args()
    if WORLD > 1:  # under torchrun: one rank per GPU, data-parallel (core.learn.distributed); rank 0 reports
        if not args.throughput_only:
            raise SystemExit("under torchrun only --throughput-only runs (--bench-envs is then per GPU)")
        os.environ.setdefault("ANYSKILL_DIST_BACKEND", "gloo" if args.device == "cpu" else "nccl")
        dist_context()  # joins the group; under nccl this rank's GPU becomes the current device
    out = Path(args.out)
    if RANK == 0:
        out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"args": vars(args), "world_size": WORLD}
    try:
        import torch

        summary["torch"] = torch.__version__
        summary["cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
        if args.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("no CUDA device; use --device cpu")
        if args.device == "cpu":
            torch.set_num_threads(1)

        def left() -> float:
            return args.budget - (time.monotonic() - T0) - args.margin

        if args.throughput_only:
            # the first trainer compiles the kernels (over 2 minutes on a fresh machine): it gets most of the budget
            ab = args.graph_ab or args.rollout_ab or args.latents_ab
            dl = time.monotonic() + left() * (0.7 if args.bench_envs2 or ab else 1.0)
            run_stage("throughput", lambda: stage_throughput(args, summary, dl), summary, dl - time.monotonic() + 15)
            if (args.bench_envs2 or ab) and left() > 60:
                dl2 = time.monotonic() + left()

                def second():
                    if ab:  # the same envs with the other update or rollout path
                        flip = {"ppo.cuda_graph": not args.cuda_graph} if args.graph_ab else {}
                        if args.rollout_ab:
                            flip["ppo.cuda_graph_rollout"] = not args.rollout_graph
                        summary["throughput2"] = throughput_at(
                            args, args.bench_envs, dl2, flip, per_row_latents=args.latents_ab
                        )
                    else:
                        summary["throughput2"] = throughput_at(args, args.bench_envs2, dl2)

                run_stage("throughput2", second, summary, left() + 15)
            return 1 if summary.get("errors") else 0
        if not args.skip_throughput:
            dl = time.monotonic() + min(150.0, left() * 0.35)
            run_stage("throughput", lambda: stage_throughput(args, summary, dl), summary, dl - time.monotonic() + 15)
        policy = run_stage("train", lambda: stage_train(args, summary, out), summary, left() + args.margin * 0.5)
        if policy is not None and args.eval:
            run_stage("eval", lambda: stage_eval(args, summary, out, policy), summary, max(10.0, left() + 30))
        if (out / "llc_history.json").exists():
            run_stage("curves", lambda: stage_curves(out), summary, 30.0)
    finally:
        summary["wall_s"] = time.monotonic() - T0
        if RANK == 0:
            (out / "llc_summary.json").write_text(json.dumps(summary, indent=1, default=str))
            log(f"done in {summary['wall_s']:.0f}s; files: {sorted(p.name for p in out.iterdir())}")
        if WORLD > 1:
            from anyskill_tui.core.learn import distributed

            distributed.shutdown()
    return 1 if summary.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
