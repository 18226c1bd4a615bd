"""Evaluate a CALM LLC: does each clip's latent make the character do that clip, and are clips separated in z?

For every clip of the dataset:

* **Tracking.** ``episodes`` encoder windows of the clip (end times drawn as for training, spec §2.4) are encoded
  to latents. Each latent drives one env started in the clip's *start state* (time 0, with the true demo AMP
  history), deterministically (μ), for ``seconds`` seconds with the latent held fixed and no resets. Reported:
  the **fall rate** (share of episodes with a fall, spec §1.4: non-foot contact and a non-foot body below the
  termination height, after the first step), and the **key-body position error**: the mean over steps (while the
  clip lasts, up to ``seconds``, and before a fall) of the mean distance between simulated and reference hands
  and feet, each expressed **root-relative and heading-aligned** (p_key − p_root rotated by the inverse root
  heading, as the AMP features are), in metres. Root drift and heading drift therefore do not count.
* **Latent structure.** ``latent_samples`` windows per clip are encoded; reported per clip: the mean cosine
  between latents of the clip (intra) and between them and other clips' latents (inter), the clip's mean latent,
  and overall the mean intra vs mean inter cosine and the silhouette score with cosine distance (1 − cos).
  Well separated clips give intra ≫ inter and a silhouette near 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from anyskill_tui.errors import UserError

__all__ = ["evaluate_llc", "latent_structure"]


def _heading_rel(pos: torch.Tensor, root_pos: torch.Tensor, root_rot: torch.Tensor) -> torch.Tensor:
    """(n, k, 3) world positions -> root-relative, rotated by the inverse root heading. root_rot xyzw (n, 4)."""
    from anyskill_tui.core.motion.quat import quat_to_matrix

    R = quat_to_matrix(root_rot)
    hx, hy = R[:, 0, 0], R[:, 1, 0]
    hn = torch.sqrt(hx * hx + hy * hy).clamp_min(1e-9)
    c, s = (hx / hn).unsqueeze(-1), (hy / hn).unsqueeze(-1)
    d = pos - root_pos.unsqueeze(1)
    return torch.stack((c * d[..., 0] + s * d[..., 1], c * d[..., 1] - s * d[..., 0], d[..., 2]), dim=-1)


@torch.no_grad()
def latent_structure(latents: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Intra/inter-clip cosine and the cosine-distance silhouette of unit latents (n, d) with clip labels (n,)."""
    z = torch.nn.functional.normalize(latents.double(), dim=-1)
    cos = z @ z.T
    n = z.shape[0]
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    intra_mask, inter_mask = same & ~eye, ~same
    out: dict[str, Any] = {
        "intra_clip_cos": float(cos[intra_mask].mean()) if intra_mask.any() else float("nan"),
        "inter_clip_cos": float(cos[inter_mask].mean()) if inter_mask.any() else float("nan"),
    }
    dist = 1.0 - cos
    clips = labels.unique()
    if clips.numel() < 2:
        out["silhouette"] = float("nan")
        return out
    a = torch.stack([(dist[i][intra_mask[i]].mean() if intra_mask[i].any() else dist.new_zeros(())) for i in range(n)])
    b = torch.stack(
        [torch.stack([dist[i][labels == c].mean() for c in clips if c != labels[i]]).min() for i in range(n)]
    )
    sil = (b - a) / torch.maximum(a, b).clamp_min(1e-12)
    out["silhouette"] = float(sil.mean())
    return out


def _place(env, clip_ids: torch.Tensor, ml) -> None:
    """Start every env in its clip's start state (time 0), with the clip's true AMP history."""
    from anyskill_tui.core.sim.env import _NQ_CHAR, _NV_CHAR

    n = env.num_envs
    ids = torch.arange(n, device=env.device)
    times = torch.zeros(n, device=ml.device, dtype=ml.dtype)
    mq, mv = ml.mujoco_state(clip_ids.to(ml.device), times)
    qpos = env.backend.qpos.to(env.dtype).clone()
    qvel = torch.zeros_like(env.backend.qvel, dtype=env.dtype)
    qpos[:, :_NQ_CHAR] = mq.to(env.device, env.dtype)
    qvel[:, :_NV_CHAR] = mv.to(env.device, env.dtype)
    env.backend.set_state(ids, qpos, qvel)
    obs, amp = env._features()
    env._obs, env._amp = obs, amp
    hist = ml.demo_windows(clip_ids.to(ml.device), times, env.history_length).to(env.device, env.dtype)
    hist[:, 0] = amp
    env._hist[:, env._slots(env.history_length)] = hist
    env.progress.zero_()
    env.recovery_counter.zero_()
    env.terminated = torch.zeros(n, dtype=torch.bool, device=env.device)
    env.truncated = torch.zeros(n, dtype=torch.bool, device=env.device)


def evaluate_llc(
    checkpoint: str | Path,
    motions: str | Path | None = None,
    episodes: int = 4,
    seconds: float = 5.0,
    engine: str = "auto",
    latent_samples: int = 32,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate an LLC checkpoint (training checkpoint or slim policy) on a motion dataset; a JSON-able dict."""
    from anyskill_tui.core.character import tables as T
    from anyskill_tui.core.learn.llc_policy import LlcPolicy
    from anyskill_tui.core.learn.llc_train import default_motions_path
    from anyskill_tui.core.motion.dataset import load_dataset
    from anyskill_tui.core.motion.motion_lib import MotionLib
    from anyskill_tui.core.sim import default_engine
    from anyskill_tui.core.sim.env import EnvConfig, HumanoidEnv

    if episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {episodes}")
    if seconds <= 0:
        raise UserError(f"--seconds must be > 0, got {seconds}")
    engine = default_engine() if engine == "auto" else engine
    if engine not in ("cpu", "gpu"):
        raise UserError(f"unknown engine {engine!r}: choose cpu, gpu or auto")
    if engine == "gpu" and not torch.cuda.is_available():
        raise UserError("engine gpu needs CUDA, and no CUDA device is available; use --engine cpu")
    dev = "cuda" if engine == "gpu" else "cpu"
    policy = LlcPolicy.load(checkpoint, device=dev)
    motions = Path(motions) if motions else default_motions_path()
    try:
        dataset = load_dataset(motions)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None
    ml = MotionLib(dataset, device=dev)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    C = ml.num_clips
    K = policy.num_enc_steps
    cfg = policy.cfg

    # latent structure
    lat, lab = [], []
    for c in range(C):
        w = ml.windows_per_clip(latent_samples, c, steps=K, generator=gen)
        lat.append(policy.encode(w))
        lab.append(torch.full((latent_samples,), c, dtype=torch.long, device=policy.device))
    latents, labels = torch.cat(lat), torch.cat(lab)
    structure = latent_structure(latents, labels)
    zc = torch.nn.functional.normalize(latents, dim=-1)

    # tracking rollouts: env i = clip i // episodes
    n_env = C * episodes
    steps = max(1, round(seconds / T.CONTROL_DT))
    env_cfg = EnvConfig(
        num_envs=n_env,
        engine=engine,
        threads=threads,
        seed=seed,
        state_init="default",
        fall_init_prob=0.0,
        recovery_episode_prob=0.0,
        episode_length=steps + 10,
        termination_height=cfg.env.termination_height,
        num_amp_obs_steps=cfg.env.num_amp_obs_steps,
        num_enc_obs_steps=cfg.env.num_amp_enc_obs_steps,
    )
    env = HumanoidEnv(env_cfg, motion_lib=ml)
    try:
        clip_ids = torch.arange(C, device=env.device).repeat_interleave(episodes)
        z = torch.cat([policy.encode(ml.windows_per_clip(episodes, c, steps=K, generator=gen)) for c in range(C)])
        _place(env, clip_ids, ml)
        fell = torch.zeros(n_env, dtype=torch.bool, device=env.device)
        err_sum = torch.zeros(n_env, dtype=torch.float64, device=env.device)
        err_n = torch.zeros(n_env, dtype=torch.float64, device=env.device)
        lengths = ml.clip_lengths.to(env.device)[clip_ids].double()
        key_ids = list(T.KEY_BODY_IDS)
        for t in range(1, steps + 1):
            res = env.step(policy.act(env.obs, z).to(env.device))
            fell |= res.terminated
            time_t = torch.full((n_env,), t * T.CONTROL_DT, dtype=torch.float64, device=env.device)
            ref = ml.state(clip_ids.to(ml.device), time_t.to(ml.device))
            sim_k = _heading_rel(env.body_pos[:, key_ids].double(), env.root_pos.double(), env.root_rot.double())
            ref_k = _heading_rel(
                ref.key_pos.double().to(env.device),
                ref.root_pos.double().to(env.device),
                ref.root_rot.double().to(env.device),
            )
            e = (sim_k - ref_k).norm(dim=-1).mean(-1)
            count = (~fell) & (time_t <= lengths + 1e-9)
            err_sum += torch.where(count, e, torch.zeros_like(e))
            err_n += count.double()
    finally:
        env.close()

    clips = []
    for c in range(C):
        sl = slice(c * episodes, (c + 1) * episodes)
        n_ok = err_n[sl].sum()
        in_c = labels == c
        cos = zc[in_c] @ zc.T
        clips.append(
            {
                "clip": ml.clip_names[c],
                "fall_rate": float(fell[sl].double().mean()),
                "key_body_error_m": float(err_sum[sl].sum() / n_ok) if n_ok > 0 else None,
                "intra_clip_cos": float(cos[:, in_c].mean()),
                "inter_clip_cos": float(cos[:, ~in_c].mean()) if (~in_c).any() else None,
                "mean_latent": [
                    round(v, 5) for v in torch.nn.functional.normalize(latents[in_c].mean(0), dim=0).tolist()
                ],
            }
        )
    errs = [c["key_body_error_m"] for c in clips if c["key_body_error_m"] is not None]
    return {
        "checkpoint": str(checkpoint),
        "motions": str(motions),
        "engine": engine,
        "episodes": episodes,
        "seconds": seconds,
        "error_frame": "root-relative, heading-aligned key bodies (hands, feet), metres",
        "clips": clips,
        "summary": {
            "fall_rate": float(fell.double().mean()),
            "key_body_error_m": sum(errs) / len(errs) if errs else None,
            **structure,
        },
    }
