"""Train the render-free proxy reward: ``train_proxy(ctx)`` (the ``proxy`` run kind; spec §5.6).

1. **Collect** (``collect_proxy_data``): states from motion data (MotionLib clips at random times, set
   kinematically) and from LLC rollouts (random unit latents, redrawn every randint(10, 150) LLC steps, hybrid
   starts, one state captured every ``capture_every`` LLC steps), rendered with the skill's tracking camera and
   encoded by the CLIP image encoder (:class:`~anyskill_tui.core.reward.clip.ClipRewardModel`). The pairs
   (body positions (N, 15, 3), image features (N, D)) are saved to ``RUN_DIR/proxy_data.pt`` so a resumed run
   does not render again.
2. **Fit** (``fit_proxy``): a random ``holdout`` share is held out; the :class:`~anyskill_tui.core.reward.proxy.
   ProxyModel` is fitted to the rest with the cosine loss ``1 − cos(pred, target)`` (Adam).
3. **Report** (:func:`~anyskill_tui.core.reward.proxy.agreement`) on the held-out states: mean cosine between
   predicted and real embeddings, top-1 retrieval accuracy, and the same for shuffled predictions. It goes to
   ``RUN_DIR/proxy_report.json``, the metrics (``proxy/*``) and the final checkpoint's metrics; the final
   checkpoint is the proxy file ``--proxy`` takes.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from anyskill_tui.core.learn.skill_config import ProxyConfig, default_motion_file, proxy_config_from_dict
from anyskill_tui.core.reward.proxy import ProxyModel, agreement
from anyskill_tui.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.core.jobs.trainers import TrainContext
    from anyskill_tui.core.learn.llc_policy import LlcPolicy
    from anyskill_tui.core.reward.clip import ClipRewardModel
    from anyskill_tui.core.sim.env import HumanoidEnv

__all__ = ["collect_proxy_data", "fit_proxy", "train_proxy", "DATA_FILE", "REPORT_FILE"]

DATA_FILE = "proxy_data.pt"
REPORT_FILE = "proxy_report.json"


def build_proxy_env(cfg: ProxyConfig, motion_lib) -> HumanoidEnv:
    from anyskill_tui.core.sim.backend import CameraSpec
    from anyskill_tui.core.sim.env import HumanoidEnv, load_env_config

    ecfg = load_env_config(
        num_envs=cfg.num_envs,
        engine=cfg.engine,
        device="auto",
        threads=cfg.threads,
        seed=cfg.seed,
        state_init="hybrid",
        hybrid_init_prob=0.5,
        fall_init_prob=0.0,
        recovery_episode_prob=0.0,
        termination_height=0.15,
        episode_length=300,
        camera=CameraSpec(**cfg.camera.model_dump()),
    )
    return HumanoidEnv(ecfg, motion_lib=motion_lib)


@torch.no_grad()
def collect_proxy_data(
    env: HumanoidEnv,
    clip: ClipRewardModel,
    *,
    motion_states: int,
    rollout_states: int,
    llc: LlcPolicy | None = None,
    capture_every: int = 5,
    latent_steps: tuple[int, int] = (10, 150),
    seed: int = 0,
    should_stop=lambda: False,
    log=print,
) -> dict[str, torch.Tensor]:
    """Render and CLIP-encode states; returns ``{"body_pos": (M, 15, 3), "features": (M, D), "source": (M,)}``
    with source 0 for motion states and 1 for rollout states (CPU tensors)."""
    n = env.num_envs
    dev = env.device
    pos, feats, src = [], [], []
    t0 = time.perf_counter()

    def capture(k: int, tag: int) -> None:
        frames = env.render()[:k]
        feats.append(clip.encode_images(frames).cpu())
        pos.append(env.body_pos[:k].float().cpu())
        src.append(torch.full((k,), tag, dtype=torch.long))

    done = 0
    while done < motion_states and not should_stop():
        env.reset(mode="random")
        k = min(n, motion_states - done)
        capture(k, 0)
        done += k
    if motion_states:
        log(f"proxy: {done} motion states in {time.perf_counter() - t0:.1f} s")
    if rollout_states and llc is None:
        log("proxy: no LLC given; rollout states skipped (motion states only)")
        rollout_states = 0
    got = 0
    if rollout_states:
        g = torch.Generator(device=dev)
        g.manual_seed(int(seed) + 5)
        env.reset()
        z = F.normalize(torch.randn(n, llc.latent_dim, generator=g, device=dev), dim=-1)
        timer = torch.randint(latent_steps[0], latent_steps[1], (n,), generator=g, device=dev)
        step = 0
        while got < rollout_states and not should_stop():
            obs = env.reset_done()
            due = timer <= 0
            if bool(due.any()):
                k = int(due.sum())
                z[due] = F.normalize(torch.randn(k, llc.latent_dim, generator=g, device=dev), dim=-1)
                timer[due] = torch.randint(latent_steps[0], latent_steps[1], (k,), generator=g, device=dev)
            env.step(llc.act(obs, z).to(dev))
            timer -= 1
            step += 1
            if step % capture_every == 0:
                k = min(n, rollout_states - got)
                capture(k, 1)
                got += k
        log(f"proxy: {got} rollout states ({step} LLC steps) in {time.perf_counter() - t0:.1f} s total")
    if not pos:
        raise UserError("proxy: no states were collected")
    return {"body_pos": torch.cat(pos), "features": torch.cat(feats), "source": torch.cat(src)}


def split_holdout(m: int, holdout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, held-out indices) of m states; at least 2 held out and 1 for training."""
    g = torch.Generator().manual_seed(int(seed) + 7)
    perm = torch.randperm(m, generator=g)
    k = min(max(2, int(round(m * holdout))), m - 1)
    return perm[k:], perm[:k]


def fit_proxy(
    model: ProxyModel,
    body_pos: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    start_epoch: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    on_epoch=None,
) -> torch.optim.Optimizer:
    """Fit ``model`` with the cosine loss; ``on_epoch(epoch, loss) -> bool`` (True: stop early)."""
    from anyskill_tui.core.reward.proxy import proxy_input

    dev = model.device
    x = body_pos.to(dev, torch.float32)
    y = F.normalize(targets.to(dev, torch.float32), dim=-1)
    if start_epoch == 0:
        model.set_input_stats(proxy_input(x))
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(int(seed) + 9)
    m = x.shape[0]
    for epoch in range(start_epoch, epochs):
        model.train()
        perm = torch.randperm(m, generator=g).to(dev)
        total, count = 0.0, 0
        for i in range(0, m, batch_size):
            idx = perm[i : i + batch_size]
            loss = (1.0 - (model(x[idx]) * y[idx]).sum(-1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
            count += idx.numel()
        model.eval()
        if on_epoch is not None and on_epoch(epoch + 1, total / max(count, 1)):
            break
    return opt


def train_proxy(ctx: TrainContext) -> None:
    """The ``proxy`` trainer (see the module docstring)."""
    from anyskill_tui.core.jobs.checkpoints import load_checkpoint
    from anyskill_tui.core.reward.clip import ClipConfig, ClipRewardModel

    cfg = proxy_config_from_dict(ctx.config, source=f"run {ctx.run_id} config")
    torch.manual_seed(cfg.seed)
    data_path = ctx.run_dir / DATA_FILE
    clip_cfg = ClipConfig.from_mapping(cfg.clip.model_dump())
    weights_arg = ctx.config.get("clip_weights_arg")
    clip: ClipRewardModel | None = None
    resume = load_checkpoint(ctx.resume_from) if ctx.resume_from is not None else None

    if data_path.is_file():
        data = torch.load(data_path, map_location="cpu", weights_only=True)
        meta = data.get("meta", {})
        print(f"proxy: reusing {data['features'].shape[0]} collected states from {data_path}", flush=True)
    else:
        from anyskill_tui.core.motion.dataset import load_dataset
        from anyskill_tui.core.motion.motion_lib import MotionLib

        ml_path = Path(cfg.motion_file) if cfg.motion_file else default_motion_file()
        ml = MotionLib(load_dataset(ml_path))
        env = build_proxy_env(cfg, ml)
        dev = env.device
        clip = ClipRewardModel.from_config(clip_cfg, device=dev, weights=weights_arg)
        llc = None
        if cfg.llc_path:
            from anyskill_tui.core.learn.llc_policy import LlcPolicy

            llc = LlcPolicy.load(cfg.llc_path, device=dev)
        data = collect_proxy_data(
            env,
            clip,
            motion_states=cfg.data.motion_states,
            rollout_states=cfg.data.rollout_states,
            llc=llc,
            capture_every=cfg.data.capture_every,
            latent_steps=(cfg.data.latent_steps_min, cfg.data.latent_steps_max),
            seed=cfg.seed,
            should_stop=ctx.should_stop,
            log=lambda s: print(s, flush=True),
        )
        env.close()
        if ctx.should_stop():
            print("proxy: stop requested during collection; nothing saved", flush=True)
            return
        meta = {
            "clip_model": clip.model_id,
            "clip_weights_id": clip.weights_id,
            "raw_255_input": clip.raw_255_input,
            "camera": cfg.camera.model_dump(),
        }
        data["meta"] = meta
        from anyskill_tui.core.jobs.checkpoints import atomic_write_bytes

        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        import io

        buf = io.BytesIO()
        torch.save(data, buf)
        atomic_write_bytes(data_path, buf.getvalue())

    dev = torch.device("cuda" if torch.cuda.is_available() and cfg.engine != "cpu" else "cpu")
    pos, feats = data["body_pos"], data["features"]
    tr, ho = split_holdout(feats.shape[0], cfg.data.holdout, cfg.seed)
    model = ProxyModel(feats.shape[1], cfg.hidden, meta={**meta, "seed": cfg.seed}).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay)
    start = 0
    if resume is not None and "train" in resume:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["train"]["optimizer"])
        start = int(resume["train"]["epoch"])
        print(f"proxy: resumed at epoch {start}", flush=True)
    total = cfg.train.epochs
    ctx.progress(start, total)
    last = {"loss": math.nan}

    def held_out_cosine() -> float:
        with torch.no_grad():
            return float((model(pos[ho].to(dev)) * F.normalize(feats[ho].to(dev), dim=-1)).sum(-1).mean())

    def on_epoch(epoch: int, loss: float) -> bool:
        last["loss"] = loss
        metrics = {"proxy/loss": loss}
        if epoch % 10 == 0 or epoch == total:
            metrics["proxy/agreement_cosine"] = held_out_cosine()
        ctx.log_metrics(epoch, metrics)
        ctx.progress(epoch, total)
        ctx.heartbeat()
        if ctx.should_stop() or (epoch % cfg.train.save_frequency == 0 and epoch < total):
            st = model.state(extra={"train": {"optimizer": opt.state_dict(), "epoch": epoch}})
            ctx.save_checkpoint(epoch, st, {"loss": loss})
        return ctx.should_stop()

    fit_proxy(
        model,
        pos[tr],
        feats[tr],
        epochs=total,
        batch_size=cfg.train.batch_size,
        seed=cfg.seed,
        start_epoch=start,
        optimizer=opt,
        on_epoch=on_epoch,
    )
    if ctx.should_stop():
        print("proxy: stop requested; checkpoint saved", flush=True)
        return
    with torch.no_grad():
        pred = model(pos[ho].to(dev)).cpu()
    rep = agreement(pred, feats[ho], generator=torch.Generator().manual_seed(cfg.seed))
    rep.update({"train_states": int(tr.numel()), "held_out_states": int(ho.numel()), "loss": last["loss"]})
    rep["motion_states"] = int((data["source"] == 0).sum())
    rep["rollout_states"] = int((data["source"] == 1).sum())
    (ctx.run_dir / REPORT_FILE).write_text(json.dumps(rep, indent=2))
    ctx.log_metrics(total, {f"proxy/agreement_{k}": float(v) for k, v in rep.items() if k in _REPORT_KEYS})
    ctx.save_checkpoint(total, model.state(report=rep), {f"agreement_{k}": rep[k] for k in _REPORT_KEYS})
    print(format_report(rep), flush=True)


_REPORT_KEYS = ("cosine", "top1", "baseline_cosine", "baseline_top1")


def format_report(rep: dict[str, Any]) -> str:
    return (
        f"proxy agreement on {rep.get('n', '?')} held-out states: mean cosine {rep['cosine']:.4f} "
        f"(shuffled {rep['baseline_cosine']:.4f}), top-1 retrieval {rep['top1']:.3f} "
        f"(shuffled {rep['baseline_top1']:.3f}, chance {rep.get('chance_top1', float('nan')):.3f})"
    )
