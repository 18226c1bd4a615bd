"""Instructions per physics step of the `cpu` engine's model and its variants, counted by callgrind.

    python benchmarks/cpu_callgrind.py                        # every variant, 48 worlds x 8 control steps
    python benchmarks/cpu_callgrind.py --variants ours,calm_raw --top 25
    python benchmarks/cpu_callgrind.py --no-valgrind          # only the contact / solver statistics

Wall-clock timings on a shared 2-core machine are noisy; instruction counts are repeatable whatever the load, so
variants are compared by the instructions MuJoCo executes per physics step (`mj_step`, 1/120 s) on one fixed
workload:
- 48 worlds: 16 tracking a starter clip (state from `MotionLib.mujoco_state` at a clip time, PD targets the clip's
  next poses: feet on the floor, standing contacts), 32 under the benchmark's random policy (`benchmarks/sim.py`:
  a per-world mean U(-0.5, 0.5) plus N(0, 0.1) per control step) taken 0-70 control steps after a clip start
  (standing, falling and lying: realistic contact counts);
- from each world's state, 8 control steps of 4 substeps (1,536 physics steps in all), single-threaded `mj_step`
  on one MjData (`mode=step`), or the same worlds in one `mujoco.batch.Batch(nthread=1)` stepped as `CpuBackend.step`
  does (`mode=batch`: state rows, `stage=mjSTAGE_VEL` after each control step).

The parent process builds each variant's `MjModel` (from `ModelOptions`, `cpu.build_model` and runtime `mjOption`
changes), saves it as an `.mjb`, and runs a worker under `valgrind --tool=callgrind` that imports only mujoco and
numpy. In `step` mode only `mj_step` and its callees are counted (`--toggle-collect=mj_step`); in `batch` mode the
instructions executed in libmujoco and the batch module. The same workload runs natively for the statistics
(contacts, constraint rows, solver iterations per physics step).

`calm_raw` is CALM's `amp_humanoid.xml` as the reference ships it (floor material removed so it loads: Euler,
0.00555 s, torque motors driven by the policy action, passive joint springs, 32 sensors); `calm_raw_120` the
same at 1/120 s. They show what MuJoCo costs for the same bodies and geoms, not the same physics.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKERS = 48
CLIP_WORLDS = 16
CONTROL_STEPS = 8
SUBSTEPS = 4


# ------------------------------------------------------------------------------------------------ worker


def _worker(model_path: str, data_path: str, mode: str, setup_only: bool) -> None:
    """Run the workload on one model (imports only mujoco and numpy: cheap under valgrind).

    mode: step (mj_step on one MjData), batch (`Batch.step(nstep=4, stage=mjSTAGE_VEL)` per control step),
    batch_persistent (the same on a persistent batch), batch_split (persistent, contact sensors only on the last
    substep: `step(nstep=3)` on a copy of the model with mjDSBL_SENSOR, `step(nstep=1)` on the model, then
    `forward(stage=mjSTAGE_VEL)` on the copy).
    """
    import mujoco
    import numpy as np

    m = mujoco.MjModel.from_binary_path(model_path)
    w = np.load(data_path)
    qpos, qvel, ctrl = w["qpos"], w["qvel"], w["ctrl"]  # (W, nq), (W, nv), (W, C, nu)
    nworld, nctrl = ctrl.shape[0], 0 if setup_only else ctrl.shape[1]
    if mode == "step":
        d = mujoco.MjData(m)
        for i in range(nworld):
            mujoco.mj_resetData(m, d)
            d.qpos[:] = qpos[i]
            d.qvel[:] = qvel[i]
            mujoco.mj_forward(m, d)
            for c in range(nctrl):
                d.ctrl[:] = ctrl[i, c]
                for _ in range(SUBSTEPS):
                    mujoco.mj_step(m, d)
    else:
        import mujoco.batch

        b = mujoco.batch.Batch(m, nsim=nworld, nthread=1, persistent=mode != "batch")
        quiet = mujoco.MjModel.from_binary_path(model_path)
        quiet.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_SENSOR)
        b.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        bq, bv, bc = b.bind("qpos"), b.bind("qvel"), b.bind("ctrl")
        bq[:] = qpos
        bv[:] = qvel
        b.forward(stage=mujoco.mjtStage.mjSTAGE_ACC)
        for c in range(nctrl):
            bc[:] = ctrl[:, c]
            if mode == "batch_split":
                # sensors only on the last substep; the state refresh runs on the quiet model too, so that the
                # next control step's first substep can reuse it (a model switch before it would recompute it)
                if c == 0:
                    b.set_models(quiet)
                b.step(nstep=SUBSTEPS - 1, stage=mujoco.mjtStage.mjSTAGE_NONE)
                b.set_models(None)
                b.step(nstep=1, stage=mujoco.mjtStage.mjSTAGE_NONE)
                b.set_models(quiet)
                b.forward(stage=mujoco.mjtStage.mjSTAGE_VEL)
            else:
                b.step(nstep=SUBSTEPS, stage=mujoco.mjtStage.mjSTAGE_VEL)


# ------------------------------------------------------------------------------------------------ workload


def _run_policy(qpos, qvel, targets_at, warm_steps) -> tuple:
    """Step each world's MjData (the MJCF model, `load_model()`) for warm_steps[i] control steps under
    targets_at(i, k) and return the reached (qpos, qvel)."""
    import mujoco
    import numpy as np

    from anyskill_tui.core.character.model import load_model

    m = load_model()
    d = mujoco.MjData(m)
    out_q, out_v = np.array(qpos), np.array(qvel)
    for i in range(qpos.shape[0]):
        mujoco.mj_resetData(m, d)
        d.qpos[:], d.qvel[:] = qpos[i], qvel[i]
        mujoco.mj_forward(m, d)
        for k in range(int(warm_steps[i])):
            d.ctrl[:] = targets_at(i, k)  # actuators are in DoF order (test_character checks it)
            for _ in range(SUBSTEPS):
                mujoco.mj_step(m, d)
        out_q[i], out_v[i] = d.qpos, d.qvel
    return out_q, out_v


def make_workload(kind: str = "policy", seed: int = 0) -> dict:
    """States (W, 35) / (W, 34) and PD targets (W, C, 28) in DoF order.

    policy: the module docstring's mix (clip tracking; random policy, targets changing every control step);
    fixed: the regime of `sim.py`'s physics-only figure: each world from the default standing state under one fixed
    random target (same distribution), states 20..200 control steps later (falling, then lying still), and that
    target held.
    """
    import numpy as np
    import torch

    from anyskill_tui.core.character import tables as T
    from anyskill_tui.core.motion.dataset import load_dataset
    from anyskill_tui.core.motion.motion_lib import MotionLib

    gen = torch.Generator().manual_seed(seed)
    off, scale = (torch.as_tensor(x) for x in T.pd_offset_scale())
    if kind == "fixed":
        from anyskill_tui.core.character.model import load_model

        q0 = np.array(load_model().qpos0)
        q0[2] = T.DEFAULT_ROOT_HEIGHT
        qpos = torch.as_tensor(np.tile(q0, (WORKERS, 1)))
        qvel = torch.zeros(WORKERS, 6 + T.NUM_DOFS, dtype=torch.float64)
        a = torch.rand((WORKERS, T.NUM_DOFS), generator=gen, dtype=torch.float64) - 0.5
        a = a + 0.1 * torch.randn((WORKERS, T.NUM_DOFS), generator=gen, dtype=torch.float64)
        fixed = (off + scale * a.clamp(-1, 1)).numpy()
        warm = torch.linspace(20, 200, WORKERS).round().long()
        q, v = _run_policy(qpos.numpy(), qvel.numpy(), lambda i, k: fixed[i], warm)
        targets = np.repeat(fixed[:, None], CONTROL_STEPS, axis=1)
        return {"qpos": q, "qvel": v, "targets": targets, "off": off.numpy(), "scale": scale.numpy()}
    lib = MotionLib(load_dataset(REPO / "configs/motions/starter.yaml"), dtype=torch.float64)
    nrand = WORKERS - CLIP_WORLDS
    ids = torch.arange(WORKERS) % lib.num_clips
    times = lib.sample_times(ids, truncate=(CONTROL_STEPS + 1) * T.CONTROL_DT, generator=gen)
    qpos, qvel = lib.mujoco_state(ids, times)
    targets = torch.zeros(WORKERS, CONTROL_STEPS, T.NUM_DOFS, dtype=torch.float64)
    for c in range(CONTROL_STEPS):  # clip worlds: track the clip
        q, _ = lib.mujoco_state(ids[:CLIP_WORLDS], times[:CLIP_WORLDS] + (c + 1) * T.CONTROL_DT)
        targets[:CLIP_WORLDS, c] = q[:, 7:]
    # random-policy worlds: run the policy from the clip state for 0..70 control steps, keep that state
    mean = torch.rand((nrand, T.NUM_DOFS), generator=gen, dtype=torch.float64) - 0.5
    warm = torch.linspace(0, 70, nrand).round().long()
    noise = 0.1 * torch.randn((nrand, int(warm.max()) + CONTROL_STEPS, T.NUM_DOFS), generator=gen, dtype=torch.float64)
    policy = (off + scale * (mean[:, None] + noise).clamp(-1, 1)).numpy()  # (nrand, steps, 28)
    rq, rv = _run_policy(
        qpos[CLIP_WORLDS:].numpy(), qvel[CLIP_WORLDS:].numpy(), lambda i, k: policy[i, k], warm.numpy()
    )
    qpos[CLIP_WORLDS:], qvel[CLIP_WORLDS:] = torch.as_tensor(rq), torch.as_tensor(rv)
    for c in range(CONTROL_STEPS):
        targets[CLIP_WORLDS:, c] = torch.as_tensor(policy[np.arange(nrand), warm.numpy() + c])
    return {
        "qpos": qpos.numpy(),
        "qvel": qvel.numpy(),
        "targets": targets.numpy(),
        "off": off.numpy(),
        "scale": scale.numpy(),
    }


# ------------------------------------------------------------------------------------------------ variants


def _calm_raw(timestep: float | None = None):
    import mujoco

    from anyskill_tui.paths import shared_reference_dir

    ref = shared_reference_dir()
    path = None if ref is None else Path(ref) / "amp_humanoid.xml"
    if path is None or not path.is_file():
        return None
    xml = re.sub(r'\s*material="grid"', "", path.read_text())
    m = mujoco.MjModel.from_xml_string(xml)
    if timestep is not None:
        m.opt.timestep = timestep
    return m


#: the variants `--variants all` measures (tokens joined by "+", applied in order to the base model)
DEFAULT_VARIANTS = (
    "before",
    "before+euler",
    "before+sparse",
    "before+no_island",
    "before+no_midphase",
    "before+no_warmstart",
    "before+no_sensors",
    "before+implicit",
    "before+cg",
    "before+pgs",
    "before+elliptic",
    "before+iter=10+ls=10",
    "before+tol=1e-6",
    "before+no_self_collision",
    "ours",
    "ours+warmstart",
    "ours+sparse",
    "ours+no_sensors",
    "calm_raw",
    "calm_raw_120",
)

TOKENS = """tokens (applied in order after the base):
  before            the 2026-11-24 model: implicitfast, jacobian auto (dense at nv=34), islands, midphase and
                    warm start on (cpu.CPU_DISABLE_FLAGS cleared)
  ours              the current defaults (cpu.build_model(ModelOptions())), the base when no base is named
  no_sensors        no per-body contact sensors (character.model.load_model)
  euler|implicitfast|implicit   integrator;  sparse|dense   jacobian;  cg|pgs|newton   solver;  elliptic   cone
  no_island|no_midphase|no_warmstart        set that mjDSBL_* flag;  island|midphase   clear it
  tol=X  iter=N  ls=N                       solver tolerance / iterations / line-search iterations
  no_self_collision character geoms collide with the floor only
  calm_raw, calm_raw_120                    CALM's file as shipped / at 1/120 s (whole name only)"""


def build_variant(name: str):
    """(MjModel | None, ctrl kind "pd" | "action") of a variant name (see TOKENS)."""
    import mujoco

    from anyskill_tui.core.character.model import load_model
    from anyskill_tui.core.sim.cpu import CPU_DISABLE_FLAGS, build_model

    if name in ("calm_raw", "calm_raw_120"):
        return _calm_raw(1 / 120 if name.endswith("120") else None), "action"
    tokens = name.split("+")
    if "no_sensors" in tokens:
        m = load_model()
        m.opt.disableflags |= CPU_DISABLE_FLAGS  # as build_model
    else:
        m = build_model()
    o = m.opt
    dsbl = mujoco.mjtDisableBit
    for tok in tokens:
        key, _, val = tok.partition("=")
        if key in ("ours", "no_sensors"):
            continue
        if key == "before":
            o.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
            o.jacobian = mujoco.mjtJacobian.mjJAC_AUTO
            o.disableflags &= ~CPU_DISABLE_FLAGS
        elif key in ("euler", "implicitfast", "implicit"):
            o.integrator = getattr(mujoco.mjtIntegrator, f"mjINT_{key.upper()}")
        elif key in ("sparse", "dense"):
            o.jacobian = getattr(mujoco.mjtJacobian, f"mjJAC_{key.upper()}")
        elif key in ("cg", "pgs", "newton"):
            o.solver = getattr(mujoco.mjtSolver, f"mjSOL_{key.upper()}")
        elif key == "elliptic":
            o.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
        elif key.startswith("no_") and hasattr(dsbl, f"mjDSBL_{key[3:].upper()}"):
            o.disableflags |= int(getattr(dsbl, f"mjDSBL_{key[3:].upper()}"))
        elif hasattr(dsbl, f"mjDSBL_{key.upper()}"):
            o.disableflags &= ~int(getattr(dsbl, f"mjDSBL_{key.upper()}"))
        elif key == "tol":
            o.tolerance = float(val)
        elif key == "iter":
            o.iterations = int(val)
        elif key == "ls":
            o.ls_iterations = int(val)
        elif key == "no_self_collision":
            char = m.geom_bodyid > 0
            m.geom_contype[char] = 2  # character: type 2, affinity 1 (floor: type 1, affinity 1)
            m.geom_conaffinity[char] = 1
        else:
            raise SystemExit(f"unknown variant token {tok!r} in {name!r}\n{TOKENS}")
    return m, "pd"


def _ctrl(m, kind: str, w: dict):
    """(W, C, nu) ctrl for model m: PD targets, or the clipped policy action, in the model's actuator order."""
    import numpy as np

    act_dof = m.jnt_dofadr[m.actuator_trnid[:, 0]] - 6
    x = w["targets"] if kind == "pd" else np.clip((w["targets"] - w["off"]) / w["scale"], -1.0, 1.0)
    return np.ascontiguousarray(x[..., act_dof])


def native_stats(m, data_path: str) -> dict:
    """Contacts, constraint rows and solver iterations per physics step of the step-mode workload."""
    import mujoco
    import numpy as np

    w = np.load(data_path)
    d = mujoco.MjData(m)
    ncon, nefc, niter, final = [], [], [], []
    t = 0.0
    for i in range(w["ctrl"].shape[0]):
        mujoco.mj_resetData(m, d)
        d.qpos[:] = w["qpos"][i]
        d.qvel[:] = w["qvel"][i]
        mujoco.mj_forward(m, d)
        for c in range(w["ctrl"].shape[1]):
            d.ctrl[:] = w["ctrl"][i, c]
            for _ in range(SUBSTEPS):
                t0 = time.perf_counter()
                mujoco.mj_step(m, d)
                t += time.perf_counter() - t0
                ncon.append(d.ncon)
                nefc.append(d.nefc)
                niter.append(int(d.solver_niter[0]))
        final.append(d.qpos.copy())
    n = len(ncon)
    return {
        "contacts": float(np.mean(ncon)),
        "constraint_rows": float(np.mean(nefc)),
        "solver_iterations": float(np.mean(niter)),
        "max_solver_iterations": int(np.max(niter)),
        "native_us_per_step": 1e6 * t / n,
        "final_qpos": np.stack(final),
    }


# ------------------------------------------------------------------------------------------------ callgrind


def parse_callgrind(path: Path) -> tuple[int, dict[str, int], dict[str, int]]:
    """(total Ir, self Ir per function, self Ir per object) of a callgrind output file."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}
    per_fn: dict[str, int] = defaultdict(int)
    per_ob: dict[str, int] = defaultdict(int)
    ob = fn = ""
    skip = False
    total = 0
    key_re = re.compile(r"^(c?ob|c?fn|c?fi|c?fl|fe)=(\((\d+)\))?\s*(.*)$")
    for line in path.read_text(errors="replace").splitlines():
        if not line:
            continue
        c = line[0]
        if c.isdigit() or c in "+-*":
            if skip:
                skip = False
                continue
            parts = line.split()
            if len(parts) > 1:
                ir = int(parts[1])
                per_fn[fn] += ir
                per_ob[ob] += ir
            continue
        if line.startswith("calls="):
            skip = True
            continue
        if line.startswith(("summary:", "totals:")):
            total = max(total, int(line.split()[1]))
            continue
        mt = key_re.match(line)
        if not mt:
            continue
        key, _, num, name = mt.groups()
        kind = key.lstrip("c")
        if kind not in ("ob", "fn"):
            continue
        table = names[kind]
        if num is not None:
            if name:
                table[num] = name
            name = table.get(num, name)
        if key == "ob":
            ob = name
        elif key == "fn":
            fn = name
    return total, dict(per_fn), dict(per_ob)


def run_callgrind(model_path: Path, data_path: Path, mode: str, out: Path) -> tuple[int, dict[str, int]]:
    """(instructions of the workload's physics, self instructions per function) under callgrind.

    step: only `mj_step` and its callees are collected. batch: everything, minus a run of the same worker that
    stops before the first control step (imports, model loading, batch set-up and the initial forward).
    """

    def one(setup_only: bool, path: Path) -> tuple[int, dict[str, int]]:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={path}"]
        if mode == "step":
            cmd += ["--collect-atstart=no", "--toggle-collect=mj_step"]
        cmd += [sys.executable, __file__, "--worker", str(model_path), str(data_path), mode]
        if setup_only:
            cmd.append("--setup-only")
        env = dict(os.environ, PYTHONHASHSEED="0")  # the same Python work in both runs: exact subtraction
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        total, per_fn, _ = parse_callgrind(path)
        return total, per_fn

    total, per_fn = one(False, out)
    if mode != "step":
        setup, setup_fn = one(True, out.with_suffix(".setup"))
        total -= setup
        per_fn = {k: v - setup_fn.get(k, 0) for k, v in per_fn.items()}
    return total, per_fn


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=TOKENS, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--variants", default="all", help="comma-separated variant names (see below), or 'all'")
    ap.add_argument(
        "--modes", default="step", help="comma-separated: step, batch, batch_persistent, batch_split (see _worker)"
    )
    ap.add_argument("--workload", default="policy", choices=["policy", "fixed"], help="see make_workload")
    ap.add_argument("--top", type=int, default=0, help="print the N costliest MuJoCo functions per variant")
    ap.add_argument("--no-valgrind", action="store_true", help="only the native statistics")
    ap.add_argument("--keep", type=Path, default=None, help="keep models, workload and callgrind files here")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "DATA", "MODE"), help=argparse.SUPPRESS)
    ap.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(*args.worker, args.setup_only)
        return {}

    sys.path.insert(0, str(REPO))
    import mujoco
    import numpy as np

    if not args.no_valgrind and shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: install it (apt-get install valgrind) or pass --no-valgrind")
    work = args.keep or Path(tempfile.mkdtemp(prefix="cpu_callgrind_"))
    work.mkdir(parents=True, exist_ok=True)
    wl = make_workload(args.workload)
    names = list(DEFAULT_VARIANTS) if args.variants == "all" else args.variants.split(",")
    modes = args.modes.split(",")
    steps = wl["targets"].shape[0] * wl["targets"].shape[1] * SUBSTEPS
    results: dict = {"workload": args.workload, "physics_steps": steps, "mujoco": mujoco.__version__, "variants": {}}
    print(
        f"workload {args.workload}: {wl['targets'].shape[0]} worlds x {wl['targets'].shape[1]} control steps x "
        f"{SUBSTEPS} substeps = {steps} physics steps; MuJoCo {mujoco.__version__}"
    )
    base: dict[str, float] = {}
    first_qpos = None
    for name in names:
        m, kind = build_variant(name)
        if m is None:
            print(f"{name:>28}: skipped (reference file not available)")
            continue
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        mpath = work / f"{stem}.mjb"
        dpath = work / f"{stem}.npz"
        mujoco.mj_saveModel(m, str(mpath), None)
        np.savez(dpath, qpos=wl["qpos"], qvel=wl["qvel"], ctrl=_ctrl(m, kind, wl))
        r = native_stats(m, str(dpath))
        line = (
            f"{name:>28}: contacts {r['contacts']:5.2f}  rows {r['constraint_rows']:6.1f}  "
            f"solver it {r['solver_iterations']:5.2f} (max {r['max_solver_iterations']:3d})  "
            f"{r['native_us_per_step']:5.1f} us/step"
        )
        final = r.pop("final_qpos")
        if first_qpos is None:
            first_qpos = final
        if final.shape == first_qpos.shape:
            r["max_abs_dqpos"] = float(np.abs(final - first_qpos).max())
            line += f"  |dqpos| {r['max_abs_dqpos']:.1e}"
        if not args.no_valgrind:
            for mode in modes:
                total, per_fn = run_callgrind(mpath, dpath, mode, work / f"{stem}.{mode}.callgrind")
                r[f"ir_per_step_{mode}"] = total / steps
                base.setdefault(mode, total / steps)  # the first variant is the reference
                line += f"  {mode}: {total / steps:,.0f} Ir/step ({total / steps / base[mode]:.3f}x)"
                if args.top and mode == modes[0]:
                    r["top"] = sorted(per_fn.items(), key=lambda kv: -kv[1])[: args.top]
        print(line, flush=True)
        if args.top and "top" in r:
            for fn, ir in r["top"]:
                print(f"{'':>24}{ir / steps:>10,.0f}  {fn}")
        results["variants"][name] = r
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
