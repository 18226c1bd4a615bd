"""Skill (HLC) training throughput: LLC steps/s end to end, rendered CLIP reward every LLC step and the proxy reward.

    python benchmarks/skill_train.py --llc LLC.pt --out $OUT            # GPU: 1,024 and 4,096 envs, then the budget
    python benchmarks/skill_train.py --engine cpu --envs 4 --size 32 --epochs 1 --budget-s 0 --out /tmp/x  # smoke

Stages (each writes $OUT/skill_figures.json again, so a timeout keeps what was measured):
1. parts    at each env count: one LLC decision's pieces alone (env.step, render, CLIP encode, LLC act);
2. render   `SkillTrainer.train_epoch` with the rendered CLIP reward scored every LLC step (spec), after one
            warm-up epoch: LLC steps/s = epochs x horizon x envs x llc_steps / seconds (rollout + PPO update);
3. proxy    the same with the proxy reward (a random ProxyModel: throughput only);
4. budget   while time is left (--budget-s), render-reward epochs at the first env count, then the time for
            the spec budget (500 epochs = 10.24 M LLC steps at 1,024 envs) extrapolated from the epochs run.
CLIP is open_clip ViT-B-32 with random weights (pretrained=None): same compute as the real weights. Without
--llc, a randomly initialised spec-sized LLC (actor 1024-1024-512, encoder 1024-1024-512).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llc", default="")
    ap.add_argument("--engine", default="gpu")
    ap.add_argument("--envs", default="1024,4096")
    ap.add_argument("--size", type=int, default=224, help="render size (px)")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per setting (after 1 warm-up)")
    ap.add_argument("--budget-s", type=float, default=240.0, help="seconds for the budget stage")
    ap.add_argument("--clip-model", default="ViT-B-32")
    ap.add_argument("--clip-batch", type=int, default=256, help="clip.batch_size (frames per encoder forward)")
    ap.add_argument("--half-image-tower", action="store_true", help="clip.half_image_tower")
    ap.add_argument("--out", default="skill_bench_out")
    ap.add_argument("--modes", default="parts,render,proxy", help="stages to run, of parts,render,proxy")
    args = ap.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig: dict = {"args": vars(args), "started": time.time()}
    out_file = out_dir / "skill_figures.json"

    def save() -> None:
        out_file.write_text(json.dumps(fig, indent=2, default=str))

    from anyskill_tui.core.learn import skill_train as st
    from anyskill_tui.core.learn.config import llc_config_from_dict
    from anyskill_tui.core.learn.llc_policy import LlcPolicy
    from anyskill_tui.core.learn.skill_config import skill_config_from_dict
    from anyskill_tui.core.reward.clip import ClipRewardModel
    from anyskill_tui.core.reward.proxy import ProxyModel

    envs = [int(x) for x in args.envs.split(",") if x]
    dev = torch.device("cuda" if args.engine == "gpu" else "cpu")
    if args.llc:
        llc = LlcPolicy.load(args.llc, device=dev)
        fig["llc"] = args.llc
    else:
        llc = LlcPolicy(llc_config_from_dict({})).eval().to(dev)
        fig["llc"] = "random spec-sized"
    clip = ClipRewardModel(
        args.clip_model,
        None,
        device=dev,
        batch_size=args.clip_batch,
        half_image_tower=args.half_image_tower,
        environ={},
    )
    text = clip.encode_texts(["a person jumps"])
    fig["device"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    fig["clip"] = {
        "model": args.clip_model,
        "weights": "random",
        "autocast": str(clip.autocast_dtype),
        "batch_size": clip.batch_size,
        "half_image_tower": clip.image_dtype is not None,
    }

    def make_cfg(n: int, mode: str):
        return skill_config_from_dict(
            {
                "prompts": [{"text": "a person jumps"}],
                "env": {"num_envs": n, "engine": args.engine, "camera": {"width": args.size, "height": args.size}},
                "reward": {"mode": mode, "render_every": "llc_step"},
            }
        )

    def measure(n: int, mode: str) -> dict:
        cfg = make_cfg(n, mode)
        t0 = time.perf_counter()
        env = st.build_env(cfg)
        build_s = time.perf_counter() - t0
        if mode == "render":
            scorer = st.ClipScorer(clip)
            tf = text
        else:
            proxy = ProxyModel(clip.embed_dim).to(dev)
            scorer = st.ProxyScorer(proxy)
            tf = text
        tr = st.SkillTrainer(cfg, llc, env, scorer, tf)
        tr.train_epoch()  # warm-up (kernels, graphs, allocator)
        sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t = time.perf_counter()
        roll = upd = 0.0
        for _ in range(args.epochs):
            s = tr.train_epoch()
            roll += s["perf/rollout_s"]
            upd += s["perf/update_s"]
        sync(dev)
        dt = time.perf_counter() - t
        steps = args.epochs * cfg.llc_steps_per_epoch
        res = {
            "envs": n,
            "mode": mode,
            "epochs": args.epochs,
            "llc_steps": steps,
            "seconds": dt,
            "llc_steps_per_s": steps / dt,
            "rollout_s_per_epoch": roll / args.epochs,
            "update_s_per_epoch": upd / args.epochs,
            "env_build_s": build_s,
            "clip_similarity": s["clip/similarity"],
            "budget_500_epochs_min_extrapolated": 500 * cfg.llc_steps_per_epoch / (steps / dt) / 60,
        }
        if dev.type == "cuda":
            res["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30
        env.close()
        del tr, env
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        return res

    def parts(n: int) -> dict:
        cfg = make_cfg(n, "render")
        env = st.build_env(cfg)
        obs = env.reset()
        z = torch.nn.functional.normalize(torch.randn(n, 64, device=dev), dim=-1)
        res = {"envs": n}
        reps = 10

        def timed(name, fn):
            fn()
            sync(dev)
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            sync(dev)
            res[name + "_ms"] = (time.perf_counter() - t) / reps * 1000

        a = llc.act(obs, z)
        timed("llc_act", lambda: llc.act(obs, z))
        timed("env_step", lambda: env.step(a))
        frames = env.render()
        timed("render", lambda: env.render())
        timed("clip_encode", lambda: clip.encode_images(frames))
        timed("env_reset_done", lambda: env.reset_done())
        per_step = res["llc_act_ms"] + res["env_step_ms"] + res["render_ms"] + res["clip_encode_ms"]
        res["llc_steps_per_s_sum_of_parts"] = n / (per_step / 1000)
        env.close()
        return res

    for name, fn in (
        ("parts", lambda n: parts(n)),
        ("render", lambda n: measure(n, "render")),
        ("proxy", lambda n: measure(n, "proxy")),
    ):
        if name not in args.modes.split(","):
            continue
        fig[name] = []
        for n in envs:
            try:
                r = fn(n)
                fig[name].append(r)
                print(name, json.dumps(r), flush=True)
            except Exception as exc:  # e.g. out of memory at 4,096: record it, go on
                traceback.print_exc()
                fig[name].append({"envs": n, "error": f"{type(exc).__name__}: {exc}"})
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
            save()

    if args.budget_s > 0:
        n = envs[0]
        cfg = make_cfg(n, "render")
        env = st.build_env(cfg)
        tr = st.SkillTrainer(cfg, llc, env, st.ClipScorer(clip), text)
        t0 = time.perf_counter()
        hist = []
        while time.perf_counter() - t0 < args.budget_s and tr.epoch < cfg.ppo.max_epochs:
            s = tr.train_epoch()
            hist.append({k: s[k] for k in ("clip/similarity", "reward/style", "perf/samples_per_s") if k in s})
        dt = time.perf_counter() - t0
        fig["budget"] = {
            "envs": n,
            "epochs_run": tr.epoch,
            "llc_steps": tr.llc_steps_total,
            "seconds": dt,
            "llc_steps_per_s": tr.llc_steps_total / dt,
            "full_500_epochs_min_extrapolated": dt / max(tr.epoch, 1) * cfg.ppo.max_epochs / 60,
            "last": hist[-1] if hist else None,
            "first": hist[0] if hist else None,
        }
        print("budget", json.dumps(fig["budget"]), flush=True)
    fig["finished"] = time.time()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
