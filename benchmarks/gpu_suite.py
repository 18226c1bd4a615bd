"""Measurements of the `gpu` engine (`core.sim.gpu.WarpBackend`), one part per invocation.

    python benchmarks/gpu_suite.py PART [--device cuda:0] [--small] [--out DIR]

PART: smoke | physics | render | sheet | merge. Each part prints its figures and writes DIR/parts/PART.json
(figures + its start/end time, so `merge` can attribute the nvidia-smi memory samples to it); `merge` writes
DIR/gpu_figures.json. `benchmarks/gpu_suite.sh` runs them all, each in its own process under `timeout`.
`--device cpu --small` runs every part on warp's CPU device with tiny sizes (a local check that nothing crashes).

Imports only torch, numpy, mujoco, warp, mujoco_warp, PIL and `anyskill_tui.core.{character,sim}` (no store,
CLI or Textual: the GPU machine lacks their dependencies).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

T0 = time.time()

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _log(msg: str) -> None:
    print(f"[gpu_suite {time.time() - T0:7.1f}s] {msg}", flush=True)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _imports():
    import warp as wp

    wp.config.quiet = True
    from anyskill_tui.core.character import tables as T
    from anyskill_tui.core.character.model import load_model
    from anyskill_tui.core.sim.backend import CameraSpec
    from anyskill_tui.core.sim.gpu import WarpBackend

    return wp, T, load_model, CameraSpec, WarpBackend


def _standing(model, n: int, T, device, noise: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.tensor(np.tile(model.qpos0, (n, 1)), dtype=torch.float32)
    q[:, 2] = T.DEFAULT_ROOT_HEIGHT
    v = torch.zeros(n, model.nv)
    if noise > 0:
        lo, hi = (torch.tensor(x, dtype=torch.float32) for x in T.dof_limits())
        q[:, 7:] = torch.clamp(q[:, 7:] + noise * torch.randn(n, 28, generator=g), lo, hi)
        v[:, 6:] = noise * torch.randn(n, 28, generator=g)
    return q.to(device), v.to(device)


class _Targets:
    """PD targets offset + scale * clip(N(0, amp)), drawn on the device (no host work per step)."""

    def __init__(self, T, n: int, device, amp: float, seed: int = 0) -> None:
        off, sc = T.pd_offset_scale()
        self.off = torch.tensor(off, dtype=torch.float32, device=device)
        self.sc = torch.tensor(sc, dtype=torch.float32, device=device)
        self.amp = amp
        self.buf = torch.empty(n, 28, device=device)
        self.g = torch.Generator(device=device).manual_seed(seed)

    def __call__(self) -> torch.Tensor:
        self.buf.normal_(0.0, self.amp, generator=self.g)
        return self.off + self.sc * self.buf.clamp_(-1.0, 1.0)


def _gpu_mem(dev: torch.device, wp) -> dict:
    out: dict = {}
    if dev.type != "cuda":
        return out
    out["torch_max_allocated_gb"] = torch.cuda.max_memory_allocated(dev) / 1e9
    try:
        out["warp_mempool_high_gb"] = wp.get_mempool_used_mem_high(f"cuda:{dev.index or 0}") / 1e9
    except Exception as e:  # noqa: BLE001 - diagnostics only
        out["warp_mempool_high_gb"] = f"n/a ({type(e).__name__})"
    try:
        free, total = torch.cuda.mem_get_info(dev)
        out["device_used_now_gb"] = (total - free) / 1e9
    except Exception:  # noqa: BLE001
        pass
    return out


# ---------------------------------------------------------------------------------------------------- parts


def part_smoke(args) -> dict:
    wp, T, load_model, CameraSpec, WarpBackend = _imports()
    import mujoco

    model = load_model()
    n = 16 if args.small else 1024
    steps = 10 if args.small else 100
    t = time.time()
    b = WarpBackend(model, n, device=args.device, render_size=None)
    dev = b.device
    q, v = _standing(model, n, T, dev, noise=0.05)
    b.set_state(torch.arange(n, device=dev), q, v)
    _sync(dev)
    fig: dict = {"N": n, "construct_s": time.time() - t}

    # 1. one control step from 4 perturbed states vs C MuJoCo (float64)
    zero = torch.zeros(n, 28, device=dev)
    t = time.time()
    b.step(zero, T.CONTROL_SUBSTEPS)
    _sync(dev)
    fig["first_step_s_incl_compile_and_capture"] = time.time() - t
    _log(f"smoke: first control step (compile + graph capture) {fig['first_step_s_incl_compile_and_capture']:.1f}s")
    errs = []
    for i in range(4):
        d = mujoco.MjData(model)
        d.qpos[:] = q[i].double().cpu().numpy()
        d.qvel[:] = v[i].double().cpu().numpy()
        for _ in range(T.CONTROL_SUBSTEPS):
            mujoco.mj_step(model, d)
        errs.append(float(np.abs(b.qpos[i].double().cpu().numpy() - d.qpos).max()))
    fig["one_step_max_abs_qpos_err_vs_c_mujoco"] = max(errs)

    # 2. graph replay == eager (same start state)
    if b.device.type == "cuda":
        e = WarpBackend(model, 8, device=args.device, render_size=None, use_graph=False)
        g = WarpBackend(model, 8, device=args.device, render_size=None, use_graph=True)
        for x in (e, g):
            x.set_state(torch.arange(8, device=dev), q[:8], v[:8])
            for _ in range(5):
                x.step(zero[:8], T.CONTROL_SUBSTEPS)
        _sync(dev)
        fig["graph_vs_eager_max_abs_qpos"] = float((e.qpos - g.qpos).abs().max())
        e.close()
        g.close()

    # 3. standing still: both feet and nothing else in contact; then 100 control steps of moderate random
    #    targets from the perturbed states: no NaN, plausible contacts
    q_stand, v_stand = _standing(model, n, T, dev)
    b.set_state(torch.arange(n, device=dev), q_stand, v_stand)
    for _ in range(10):  # the default state starts a few mm above the floor
        b.step(zero, T.CONTROL_SUBSTEPS)
    feet = list(T.CONTACT_BODY_IDS)
    fig["standing_10_steps_feet_contact_frac"] = float(b.body_contact[:, feet].float().mean())
    fig["standing_10_steps_nonfoot_contact_frac"] = float(
        b.body_contact[:, [i for i in range(15) if i not in feet]].float().mean()
    )
    fig["standing_10_steps_contacts_per_world"] = float(b.nacon[0]) / n
    # 4. 100 control steps from the perturbed states with zero targets (must stay finite: the backend's check)
    b.set_state(torch.arange(n, device=dev), q, v)
    for _ in range(steps):
        b.step(zero, T.CONTROL_SUBSTEPS)
    _sync(dev)
    fig["steps"] = steps
    fig["zero_targets_nan_worlds"] = int((~torch.isfinite(b.qpos).all(dim=1)).sum())

    # 5. 100 control steps of random targets (N(0, 0.2) in action units): NaN / launched worlds are the model's
    #    stability (compare C MuJoCo on 64 worlds, same distribution), contacts per world, constraint rows
    amp = 0.2
    b.set_state(torch.arange(n, device=dev), q, v)
    targets = _Targets(T, n, dev, amp=amp)
    nacon_max = 0
    for k in range(steps):
        b.step(targets(), T.CONTROL_SUBSTEPS)
        if k % 10 == 9:
            nacon_max = max(nacon_max, int(b.nacon[0]))
    _sync(dev)
    finite = torch.isfinite(b.qpos).all(dim=1) & torch.isfinite(b.qvel).all(dim=1)
    fig["random_target_amp"] = amp
    fig["random_nan_worlds_frac"] = float((~finite).float().mean())
    fig["random_root_z_median"] = float(b.qpos[finite, 2].median()) if finite.any() else float("nan")
    fig["random_root_z_max"] = float(b.qpos[finite, 2].max()) if finite.any() else float("nan")
    fig["random_worlds_above_3m_frac"] = float((b.qpos[finite, 2] > 3.0).sum()) / n
    fig["random_end_contacts_per_world"] = float(b.nacon[0]) / n
    fig["random_max_contacts_per_world_sampled"] = nacon_max / n
    fig["random_end_any_contact_frac"] = float(b.body_contact.any(dim=1).float().mean())
    fig["random_end_nonfoot_contact_frac"] = float(
        b.body_contact[:, [i for i in range(15) if i not in feet]].any(dim=1).float().mean()
    )
    fig["naconmax"] = int(b.d.naconmax)
    fig["njmax"] = int(b.njmax)
    fig["random_max_nefc_world_end"] = int(wp.to_torch(b.d.nefc).max())
    fig.update(_c_mujoco_stability(model, T, 16 if args.small else 64, steps, amp))
    fig["ok"] = bool(
        fig["zero_targets_nan_worlds"] == 0
        and fig["standing_10_steps_feet_contact_frac"] > 0.9
        and fig["standing_10_steps_nonfoot_contact_frac"] < 0.01
        and fig["one_step_max_abs_qpos_err_vs_c_mujoco"] < 1e-3
    )
    fig.update(_gpu_mem(dev, wp))
    return fig


def _c_mujoco_stability(model, T, n: int, steps: int, amp: float) -> dict:
    """The same random-target experiment in C MuJoCo (float64): fraction of worlds that go unstable / fly away."""
    import mujoco

    rng = np.random.default_rng(0)
    off, sc = T.pd_offset_scale()
    lo, hi = T.dof_limits()
    bad = high = 0
    for _ in range(n):
        d = mujoco.MjData(model)
        d.qpos[2] = T.DEFAULT_ROOT_HEIGHT
        d.qpos[7:] = np.clip(rng.normal(0, 0.05, 28), lo, hi)
        d.qvel[6:] = rng.normal(0, 0.05, 28)
        for _ in range(steps):
            d.ctrl[:] = off + sc * np.clip(rng.normal(0, amp, 28), -1, 1)
            for _ in range(T.CONTROL_SUBSTEPS):
                mujoco.mj_step(model, d)
            if d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number:
                break
        bad += int(d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number > 0)
        high += int(d.qpos[2] > 3.0)
    return {"c_mujoco_worlds": n, "c_mujoco_unstable_frac": bad / n, "c_mujoco_above_3m_frac": high / n}


def _time_steps(b, pd, substeps: int, warm: int, iters: int, extra=None) -> float:
    for _ in range(warm):
        b.step(pd() if callable(pd) else pd, substeps)
        if extra:
            extra()
    _sync(b.device)
    t = time.perf_counter()
    for _ in range(iters):
        b.step(pd() if callable(pd) else pd, substeps)
        if extra:
            extra()
    _sync(b.device)
    return time.perf_counter() - t


def _observations(b, T) -> torch.Tensor:
    """A stand-in for the env's observation cost: root-relative, heading-free body features, flattened."""
    root = b.body_pos[:, :1]
    rel = (b.body_pos - root).flatten(1)
    return torch.cat(
        (rel, b.body_rot.flatten(1), b.body_vel.flatten(1), b.body_angvel.flatten(1), b.qpos[:, 7:], b.qvel[:, 6:]),
        dim=1,
    )


def part_physics(args) -> dict:
    wp, T, load_model, CameraSpec, WarpBackend = _imports()
    model = load_model()
    sizes = [16, 32] if args.small else [4096, 16384]
    iters = 5 if args.small else 200
    warm = 2 if args.small else 20
    sub = T.CONTROL_SUBSTEPS
    out: dict = {"substeps": sub, "iters": iters, "warmup_excluded": warm, "configs": []}
    variants = [("default", {})]
    if not args.small:
        variants += [("njmax64_nconmax16", {"njmax": 64, "nconmax": 16}), ("dense_jacobian", {"jacobian": "dense"})]
    for n in sizes:
        for name, kw in variants if n == sizes[-1] else variants[:1]:
            if time.time() - T0 > args.budget_s:
                _log(f"physics: budget reached, skipping N={n} {name}")
                continue
            t = time.time()
            b = WarpBackend(model, n, device=args.device, render_size=None, **kw)
            dev = b.device
            q, v = _standing(model, n, T, dev, noise=0.05)
            b.set_state(torch.arange(n, device=dev), q, v)
            construct = time.time() - t
            fig: dict = {"N": n, "variant": name, "kwargs": kw, "construct_s": construct}
            targets = _Targets(T, n, dev, amp=0.1)

            # a) physics + state refresh only (fixed targets)
            pd = targets()
            dt = _time_steps(b, pd, sub, warm, iters)
            fig["control_steps_per_s"] = n * iters / dt
            fig["physics_steps_per_s"] = n * iters * sub / dt
            fig["ms_per_control_step"] = 1e3 * dt / iters

            # b) + fresh random targets + observations + resets (~1/60 of worlds per step, masked, no host sync)
            reset_mask = torch.zeros(n, dtype=torch.bool, device=dev)
            period = 60
            counter = [0]

            def obs_and_resets(b=b, reset_mask=reset_mask, q=q, v=v, counter=counter, period=period, n=n):
                _observations(b, T)
                fallen = b.body_pos[:, 0, 2] < 0.3
                reset_mask.zero_()
                reset_mask[counter[0] % period :: period] = True
                counter[0] += 1
                b.set_state_where(reset_mask | fallen, q, v)

            dt = _time_steps(b, targets, sub, warm, iters, extra=obs_and_resets)
            fig["with_obs_resets_control_steps_per_s"] = n * iters / dt
            fig["with_obs_resets_ms_per_control_step"] = 1e3 * dt / iters
            fig["contacts_per_world_end"] = float(b.nacon[0]) / n
            fig["nan_worlds_end"] = int((~torch.isfinite(b.qpos).all(dim=1)).sum())
            fig["memory_bytes_walk_gb"] = b.memory_bytes() / 1e9
            fig.update(_gpu_mem(dev, wp))
            fig["end_time"] = time.time()
            _log(
                f"physics N={n} {name}: {fig['control_steps_per_s']:,.0f} control steps/s "
                f"({fig['physics_steps_per_s']:,.0f} physics steps/s); with obs+resets "
                f"{fig['with_obs_resets_control_steps_per_s']:,.0f}/s; "
                f"warp buffers {fig['memory_bytes_walk_gb']:.2f} GB"
            )
            out["configs"].append(fig)
            b.close()
            del b
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                _sync(dev)
    return out


def part_render(args) -> dict:
    wp, T, load_model, CameraSpec, WarpBackend = _imports()
    model = load_model()
    n = 2 if args.small else 1024
    iters = 2 if args.small else 20
    warm = 1 if args.small else 3
    out: dict = {"N": n, "iters": iters, "warmup_excluded": warm, "configs": []}
    sizes = [(64, 64)] if args.small else [(224, 224), (128, 128)]
    t = time.time()
    b = WarpBackend(model, n, device=args.device, render_size=sizes[0])
    out["construct_s_incl_render_context"] = time.time() - t
    dev = b.device
    q, v = _standing(model, n, T, dev, noise=0.1)
    b.set_state(torch.arange(n, device=dev), q, v)
    targets = _Targets(T, n, dev, amp=0.2)
    for _ in range(10):
        b.step(targets(), T.CONTROL_SUBSTEPS)
    for w, h in sizes:
        cam = CameraSpec(width=w, height=h)
        t = time.time()
        frames = b.render(cam)
        _sync(dev)
        first = time.time() - t
        for _ in range(warm):
            b.render(cam)
        _sync(dev)
        t = time.perf_counter()
        for _ in range(iters):
            frames = b.render(cam)
        _sync(dev)
        dt = time.perf_counter() - t
        fig = {
            "width": w,
            "height": h,
            "first_render_s_incl_compile": first,
            "frames_per_s": n * iters / dt,
            "ms_per_batch": 1e3 * dt / iters,
            "frame_mean": float(frames.mean()),
            "frame_std": float(frames.std()),
        }
        # render + the physics step it follows (the rendered-reward loop's simulator share)
        t = time.perf_counter()
        for _ in range(iters):
            b.step(targets(), T.CONTROL_SUBSTEPS)
            frames = b.render(cam)
        _sync(dev)
        fig["step_plus_render_frames_per_s"] = n * iters / (time.perf_counter() - t)
        fig.update(_gpu_mem(dev, wp))
        _log(
            f"render N={n} {w}x{h}: {fig['frames_per_s']:,.0f} frames/s "
            f"(first call {first:.1f}s); with a control step each {fig['step_plus_render_frames_per_s']:,.0f}/s"
        )
        out["configs"].append(fig)
    out["memory_bytes_walk_gb"] = b.memory_bytes() / 1e9
    return out


def part_sheet(args) -> dict:
    wp, T, load_model, CameraSpec, WarpBackend = _imports()
    from PIL import Image

    model = load_model()
    n = 16
    size = 64 if args.small else 224
    b = WarpBackend(model, n, device=args.device, render_size=(size, size))
    dev = b.device
    q, v = _standing(model, n, T, dev, noise=0.15, seed=3)
    # a few worlds lying down, a few displaced (the camera follows the root)
    q[12:, 2] = 0.15
    q[12:, 3:7] = torch.tensor([math.cos(math.pi / 4), 0.0, -math.sin(math.pi / 4), 0.0], device=dev)
    q[4:8, 0] += torch.linspace(-2, 2, 4, device=dev)
    b.set_state(torch.arange(n, device=dev), q, v)
    targets = _Targets(T, n, dev, amp=0.3, seed=5)
    frames = []  # world k is shown after k + 1 control steps of random targets
    for k in range(n):
        b.step(targets(), T.CONTROL_SUBSTEPS)
        frames.append(b.render(CameraSpec(width=size, height=size))[k].cpu())
    grid = torch.stack(frames).permute(0, 2, 3, 1).reshape(4, 4, size, size, 3)
    grid = grid.permute(0, 2, 1, 3, 4).reshape(4 * size, 4 * size, 3)
    path = Path(args.out) / "contact_sheet_gpu.png"
    Image.fromarray((grid.clamp(0, 1).numpy() * 255).astype(np.uint8)).save(path)
    _log(f"sheet: wrote {path} (16 worlds, {size}x{size}; world k after k+1 control steps)")
    return {"path": str(path), "N": n, "size": size}


def part_merge(args) -> dict:
    out = Path(args.out)
    parts = {}
    for p in sorted((out / "parts").glob("*.json")):
        try:
            parts[p.stem] = json.loads(p.read_text())
        except Exception as e:  # noqa: BLE001
            parts[p.stem] = {"error": f"unreadable: {e}"}
    # nvidia-smi samples: "epoch_s, MiB used"
    samples = []
    smi = out / "nvidia_smi_mem.csv"
    if smi.exists():
        for line in smi.read_text().splitlines():
            try:
                ts, mib = line.split(",")[:2]
                samples.append((float(ts), float(mib)))
            except ValueError:
                continue
    mem = {"samples": len(samples)}
    if samples:
        mem["peak_used_gb_whole_run"] = max(s[1] for s in samples) / 1024
        mem["idle_used_gb_first_sample"] = samples[0][1] / 1024
        for name, p in parts.items():
            if isinstance(p, dict) and "start_time" in p and "end_time" in p:
                win = [s[1] for s in samples if p["start_time"] - 0.5 <= s[0] <= p["end_time"] + 0.5]
                if win:
                    mem[f"peak_used_gb_{name}"] = max(win) / 1024
            if name == "physics" and isinstance(p, dict):
                # per-config windows: from the previous config's end (or part start) to this config's end
                prev = p.get("start_time", 0)
                for c in p.get("configs", []):
                    win = [s[1] for s in samples if prev <= s[0] <= c.get("end_time", prev)]
                    if win:
                        c["peak_nvidia_smi_used_gb"] = max(win) / 1024
                    prev = c.get("end_time", prev)
    figures = {"parts": parts, "gpu_memory": mem, "targets": TARGETS}
    figures["summary"] = _summary(parts, mem)
    (out / "gpu_figures.json").write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps(figures["summary"], indent=2, default=str))
    return figures["summary"]


TARGETS = {
    "control_steps_per_s_with_obs_resets_16384": 500_000,
    "render_frames_per_s_224_1024": 40_000,
    "gpu_memory_gb_16384": 20,
}


def _summary(parts: dict, mem: dict) -> dict:
    s: dict = {}
    phys = parts.get("physics", {})
    for c in phys.get("configs", []) if isinstance(phys, dict) else []:
        key = f"N{c['N']}_{c['variant']}"
        s[f"{key}_control_steps_per_s"] = round(c.get("control_steps_per_s", 0))
        s[f"{key}_physics_steps_per_s"] = round(c.get("physics_steps_per_s", 0))
        s[f"{key}_with_obs_resets_control_steps_per_s"] = round(c.get("with_obs_resets_control_steps_per_s", 0))
        if "peak_nvidia_smi_used_gb" in c:
            s[f"{key}_peak_gpu_mem_gb_nvidia_smi"] = round(c["peak_nvidia_smi_used_gb"], 2)
    rend = parts.get("render", {})
    for c in rend.get("configs", []) if isinstance(rend, dict) else []:
        s[f"render_N{rend.get('N')}_{c['width']}x{c['height']}_frames_per_s"] = round(c["frames_per_s"])
    smoke = parts.get("smoke", {})
    if isinstance(smoke, dict):
        s["smoke_ok"] = smoke.get("ok")
        for k in (
            "zero_targets_nan_worlds",
            "random_nan_worlds_frac",
            "random_worlds_above_3m_frac",
            "c_mujoco_unstable_frac",
            "c_mujoco_above_3m_frac",
            "graph_vs_eager_max_abs_qpos",
            "one_step_max_abs_qpos_err_vs_c_mujoco",
        ):
            s[f"smoke_{k}"] = smoke.get(k)
        s["first_step_s_incl_compile"] = smoke.get("first_step_s_incl_compile_and_capture")
    sim = parts.get("sim_figures", {})
    if isinstance(sim, dict):  # benchmarks/sim.py's own figures (env step with observations and resets)
        s.update({f"sim_py_{k}": v for k, v in sim.items() if isinstance(v, (int, float, str))})
    s.update({k: v for k, v in mem.items() if k.startswith("peak")})
    return s


PARTS = {"smoke": part_smoke, "physics": part_physics, "render": part_render, "sheet": part_sheet, "merge": part_merge}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=sorted(PARTS))
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--small", action="store_true", help="tiny sizes (for warp's CPU device)")
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_suite_out"))
    ap.add_argument("--budget-s", type=float, default=1e9, help="skip remaining configs after this many seconds")
    args = ap.parse_args(argv)
    out = Path(args.out)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    if args.part == "merge":
        part_merge(args)
        return 0
    _log(
        f"{args.part} on {args.device} (small={args.small}); python {sys.version.split()[0]}, torch {torch.__version__}"
    )
    start = time.time()
    status = "ok"
    try:
        fig = PARTS[args.part](args)
    except Exception as e:  # record the failure, then fail the process
        import traceback

        traceback.print_exc()
        fig, status = {"error": f"{type(e).__name__}: {e}"}, "error"
    fig = {"part": args.part, "device": args.device, "status": status, "start_time": start, **fig}
    fig["end_time"] = time.time()
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        fig["gpu_name"] = torch.cuda.get_device_name(torch.device(args.device))
    (out / "parts" / f"{args.part}.json").write_text(json.dumps(fig, indent=2, default=str))
    print(json.dumps({k: v for k, v in fig.items() if k not in ("start_time",)}, indent=2, default=str), flush=True)
    return 0 if status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
