"""Data-parallel training (core.learn.distributed) on the CPU: gloo, 2 processes (spawned, or under torchrun).

What is compared with what, and why that is honest:

- collectives: each rank holds its share of fixed data; the results must equal one process on all of it (float64
  normaliser statistics to 1e-12, the rest to float32 rounding);
- one update: both trainers (LLC and skill) are fed the SAME global batch, split over the ranks (and the same demo
  and alignment windows): the parameters after the update must equal one process's on the whole batch to 1e-5,
  while one rank updating alone on its half must not (so the comparison can fail);
- several epochs of real training cannot be compared number for number (each rank's envs draw their own random
  numbers), so 2 ranks x 8 envs is compared with 1 process x 16 envs by the mean of the discriminator and encoder
  loss curves over 4 epochs, within 20 % + 0.05 of the mean of two one-process seeds (about twice the spread
  between seeds measured on this config: seeds 0..3 give disc-loss means 0.99 to 1.20);
- ranks stay identical (parameters equal bit for bit after several epochs), rank 1 writes nothing, and a 2-rank
  checkpoint resumes exactly on 2 ranks, in 1 process, and a 1-process checkpoint on 2 ranks.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import yaml  # noqa: E402

from anyskill_tui.core.jobs.checkpoints import latest_checkpoint, list_checkpoints, load_checkpoint  # noqa: E402
from anyskill_tui.core.jobs.trainers import TrainContext  # noqa: E402
from anyskill_tui.errors import UserError  # noqa: E402

WORLD = 2
from _skill_helpers import TINY_LLC as TINY  # noqa: E402

NETS = ("actor", "critic", "encoder", "disc")


# ------------------------------------------------------------------------------------------ spawning


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, world: int, port: int, fn, args: tuple) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        ANYSKILL_DIST_BACKEND="gloo",
    )
    torch.set_num_threads(1)
    from anyskill_tui.core.learn import distributed

    dist = distributed.current()  # joins the group from the variables above, as under torchrun
    assert dist.rank == rank and dist.world_size == world and dist.backend == "gloo"
    try:
        fn(dist, *args)
    finally:
        distributed.shutdown()


def spawn(fn, *args, timeout: float = 240.0) -> None:
    """Run ``fn(dist, *args)`` in WORLD spawned processes joined by gloo on a free port; re-raise a rank's error."""
    ctx = mp.start_processes(
        _entry, args=(WORLD, _free_port(), fn, args), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"{fn.__name__} did not finish in {timeout:.0f} s")


def _read(out: Path, rank: int) -> dict:
    return torch.load(out / f"rank{rank}.pt", weights_only=False)


def _params(*modules_by_name) -> dict[str, torch.Tensor]:
    out = {}
    for name, module in modules_by_name:
        for k, v in module.state_dict().items():
            out[f"{name}.{k}"] = v.detach().cpu().clone()
    return out


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # module scope: set before the module's training fixtures run (MuJoCo needs the cores)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def motions(tmp_path_factory) -> Path:
    from anyskill_tui.paths import configs_dir

    star = configs_dir() / "motions" / "starter"
    p = tmp_path_factory.mktemp("motions") / "three.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "motions": [
                    {"file": str(star / f"{n}.npy"), "weight": 1} for n in ("stand_idle", "walk_forward", "squat")
                ]
            }
        )
    )
    return p


def _llc_rc(motions: Path, epochs: int, **over):
    from anyskill_tui.core.learn.config import llc_config_from_dict
    from anyskill_tui.core.learn.llc_train import run_config

    cfg = llc_config_from_dict(TINY, overrides={"ppo.max_epochs": epochs, **over})
    return run_config(cfg, motions, engine="cpu", threads=1)


# ------------------------------------------------------------------------------------------ one process


def test_one_process_context_adds_nothing(tmp_path):
    """Without torchrun the trainers get SINGLE, whose every hook returns its input or does nothing: the
    one-process numbers are those of the code without distributed.py (and no process group exists)."""
    from anyskill_tui.core.learn.config import llc_config_from_dict
    from anyskill_tui.core.learn.distributed import SINGLE, current, local_llc_config
    from anyskill_tui.core.learn.normalizer import RunningMeanStd
    from anyskill_tui.core.learn.ppo import MixedPrecision, normalize_advantages

    assert "WORLD_SIZE" not in os.environ and current() is SINGLE and not torch.distributed.is_initialized()
    mixed, rms = MixedPrecision("cpu"), RunningMeanStd(3)
    SINGLE.install(mixed, [rms])
    SINGLE.make_global(rms)
    assert mixed.grad_hook is None and "merge_moments" not in vars(rms)  # the class's own merge
    x, m = torch.randn(4, 5), torch.rand(4, 5) < 0.5
    assert torch.equal(SINGLE.normalize_advantages(x, m), normalize_advantages(x, m))
    assert SINGLE.all_reduce_mean(x) is x and SINGLE.shard(x) is x and SINGLE.rank_seed(9) == 9
    stats = {"a": 1.0}
    assert SINGLE.all_reduce_mean(stats) is stats and SINGLE.any_true(True) is True
    cfg = llc_config_from_dict(TINY)
    assert local_llc_config(cfg, 1) is cfg and SINGLE.local_count(7, "x") == 7
    state = {"model": 1, "rng": 2}
    assert SINGLE.gather_checkpoint(state, [("rng",)]) is state
    assert SINGLE.resume_state(state, [("rng",)], fresh=dict) is state
    ctx = TrainContext(run_id=1, run_dir=tmp_path, config={})
    assert SINGLE.rank_context(ctx) is ctx


# ------------------------------------------------------------------------------------------ collectives


def _w_collectives(dist, out: Path) -> None:
    from anyskill_tui.core.learn.normalizer import RunningMeanStd
    from anyskill_tui.core.learn.ppo import normalize_advantages

    r, w = dist.rank, dist.world_size
    g = torch.Generator().manual_seed(7)  # every rank draws all ranks' data and keeps its own share
    sizes = [(7, 3), (5, 0), (1, 9)]  # rows per rank per update: unequal, one empty
    # float64 data (100 +- 0.01): batch moments are taken at the input's precision, so float64 is where "the same
    # statistics" can be asked to rounding (float32 inputs differ by float32 rounding, in one process as well)
    steps = [[torch.randn(n, 4, 3, generator=g, dtype=torch.float64) * 0.01 + 100.0 for n in step] for step in sizes]
    live, ref = RunningMeanStd((3,)), RunningMeanStd((3,))
    dist.make_global(live)  # every update merges all ranks' batches
    for step in steps:
        live.update(step[r])
        ref.update(torch.cat(step))
    rows = torch.randn(6, 3, generator=g, dtype=torch.float64) + 100.0  # row counts: each rank its own
    counts = torch.randint(1, 4, (w, 6), generator=g).double()
    live_counts, ref_counts = RunningMeanStd((3,)), RunningMeanStd((3,))
    dist.make_global(live_counts)  # update_counts merges all ranks' multisets too
    live_counts.update(steps[0][r])  # prior statistics
    ref_counts.update(torch.cat(steps[0]))
    live_counts.update_counts(rows, counts[r])
    ref_counts.update_counts(rows, counts.sum(0))
    own, everything = RunningMeanStd((3,)), RunningMeanStd((3,))
    for step in steps:
        own.update(step[r])  # this rank's data only ...
    own_count = float(own.count)
    dist.sync_normalizer(own)  # ... then combined with the parallel-variance formula
    everything.update(torch.cat([b for step in steps for b in step]))

    adv = torch.randn(6, 2 * w, generator=g)
    mask = torch.rand(6, 2 * w, generator=g) < 0.6
    mine = slice(2 * r, 2 * r + 2)
    adv_d = dist.normalize_advantages(adv[:, mine], mask[:, mine])
    adv_ref = normalize_advantages(adv, mask)[:, mine]

    lin = torch.nn.Linear(3, 2)
    dist.broadcast_modules(lin)
    x, y = torch.randn(8 * w, 3, generator=g), torch.randn(8 * w, 2, generator=g)
    ref_lin = torch.nn.Linear(3, 2)
    ref_lin.load_state_dict(lin.state_dict())
    torch.nn.functional.mse_loss(lin(x[8 * r : 8 * r + 8]), y[8 * r : 8 * r + 8]).backward()
    dist.all_reduce_grads(list(lin.parameters()))
    torch.nn.functional.mse_loss(ref_lin(x), y).backward()

    means = dist.all_reduce_mean({"a": float(r), **({"only0": 3.0} if r == 0 else {})})
    torch.save(
        {
            "live": live.state_dict(),
            "ref": ref.state_dict(),
            "live_counts": live_counts.state_dict(),
            "ref_counts": ref_counts.state_dict(),
            "own": own.state_dict(),
            "everything": everything.state_dict(),
            "adv": (adv_d, adv_ref),
            "grads": ([p.grad for p in lin.parameters()], [p.grad for p in ref_lin.parameters()]),
            "means": means,
            "any": (dist.any_true(r == 1), dist.any_true(False)),
            "seed": dist.rank_seed(5),
            "own_count": own_count,
            "shard": dist.shard(torch.arange(6)).tolist(),
        },
        out / f"rank{r}.pt",
    )


def test_normalizer_sync_and_collectives_equal_one_process_on_all_data(tmp_path):
    spawn(_w_collectives, tmp_path)
    for r in range(WORLD):
        res = _read(tmp_path, r)
        for a, b in (("live", "ref"), ("own", "everything"), ("live", "everything"), ("live_counts", "ref_counts")):
            for k in ("count", "mean", "var"):
                x, y = res[a][k], res[b][k]  # the variance is 1e-4: compared relative to each value
                rel = float(((x - y).abs() / y.abs().clamp_min(1e-300)).max())
                assert rel < 1e-10, f"{a} vs {b}: {k} differs by {rel:.3g} (relative)"
        assert float(res["live"]["count"]) == 4 * (7 + 3 + 5 + 0 + 1 + 9)  # rows x 4 (leading dims pooled)
        assert float(res["live_counts"]["count"]) > 4 * 7 + 6 * WORLD  # every rank's counts went in
        torch.testing.assert_close(res["adv"][0], res["adv"][1])
        for g_d, g_ref in zip(*res["grads"], strict=True):
            torch.testing.assert_close(g_d, g_ref)
        assert res["means"] == {"a": 0.5, "only0": 3.0}
        assert res["any"] == (True, False)
        assert res["seed"] == 5 + 1_000_003 * r and res["shard"] == list(range(r, 6, WORLD))
    # the sync was not a no-op: before it, each rank had counted only its own rows
    assert [_read(tmp_path, r)["own_count"] for r in range(WORLD)] == [4 * (7 + 5 + 1), 4 * (3 + 0 + 9)]


# ------------------------------------------------------------------------------------------ one update


def _w_split_update(dist, motions: Path, out: Path) -> None:
    """Both trainers: one update of W ranks on a split global batch vs one process on all of it."""
    from anyskill_tui.core.learn import llc_train
    from anyskill_tui.core.learn.config import llc_config_from_dict

    r = dist.rank
    result: dict = {}
    # --- LLC: a full-batch minibatch (so the minibatch is the same set of rows however it is permuted), mask all
    # stochastic, encoder uniformity weight 0 (a log-mean-exp over pairs is not a sum over rows)
    cfg = llc_config_from_dict(
        TINY,
        overrides={
            "env.num_envs": 8,
            "ppo.minibatch_size": 64,
            "calm.amp_minibatch_size": 64,
            "calm.enc_uniformity_weight": 0.0,
            # Adam turns a gradient of ~0 into a step of about lr whatever its sign, so rounding noise in a weight
            # that gets no gradient would move it by lr in either run: an eps above that noise keeps such steps ~0
            "ppo.adam_eps": 1e-4,
        },
    )
    ref = llc_train.LlcTrainer(cfg, motions, engine="cpu", threads=1)  # one process (no dist)
    buf = ref.rollout()
    buf["rewards"] = ref.rewards(buf)
    buf["mask"][:] = True
    gd = torch.Generator().manual_seed(3)
    demo_idx = ref.demo.sample_index(64, generator=gd)
    demo = (ref.demo.amp[demo_idx], ref.demo_recipe[demo_idx, :2])
    pair = ref.bank.alignment_recipes(64, cfg.calm.enc_pair_max_offset)
    nets = (("policy", ref.policy), ("critic", ref.critic), ("disc", ref.disc), ("value_norm", ref.value_norm))
    init = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in nets}
    buf, demo, pair, init = dist.broadcast_object((buf, demo, pair, init))  # rank 0's batch and start everywhere

    def feed(tr, rows, name):
        """Give the trainer this share of the fixed demo and alignment windows (asserting it asks for it)."""
        n_rows = len(range(64)[rows])

        def demo_sample(n):
            assert n == n_rows, (name, n)
            return demo[0][rows], demo[1][rows]

        def alignment(n, max_shift):
            assert n == n_rows, (name, n)
            return pair[rows]

        tr.sample_demo = demo_sample
        tr.bank.alignment_recipes = alignment
        for mname, m in (
            ("policy", tr.policy),
            ("critic", tr.critic),
            ("disc", tr.disc),
            ("value_norm", tr.value_norm),
        ):
            m.load_state_dict(init[mname])

    def split(b, rows):
        return {k: v[:, rows] if isinstance(v, torch.Tensor) and v.dim() >= 2 else v for k, v in b.items()}

    def llc_params(tr):
        return _params(
            ("actor", tr.actor), ("critic", tr.critic), ("encoder", tr.encoder), ("disc", tr.disc),
            ("obs_norm", tr.obs_norm), ("amp_norm", tr.amp_norm), ("value_norm", tr.value_norm),
        )  # fmt: skip

    local = llc_train.LlcTrainer(cfg, motions, engine="cpu", threads=1, dist=dist)
    assert local.num_envs == 4 and local.cfg.ppo.minibatch_size == 32 and local.global_cfg is cfg
    feed(local, slice(r * 32, r * 32 + 32), "local")
    local.update(split(buf, slice(r * 4, r * 4 + 4)))
    result["llc_local"] = llc_params(local)
    if r == 0:
        result["llc_init"] = llc_params(ref)
        feed(ref, slice(0, 64), "ref")
        ref.update(buf)
        result["llc_ref"] = llc_params(ref)
        alone = llc_train.LlcTrainer(local.cfg, motions, engine="cpu", threads=1)  # 4 envs, no other rank
        feed(alone, slice(0, 32), "alone")  # rank 0's half with no other rank: must differ
        alone.update(split(buf, slice(0, 4)))
        result["llc_alone"] = llc_params(alone)

    # --- skill: the same for SkillTrainer.update on a RolloutStorage (plain means: exact with its own settings)
    from _skill_helpers import small_cfg

    from anyskill_tui.core.learn import skill_train as st
    from anyskill_tui.core.learn.buffers import RolloutStorage
    from anyskill_tui.core.learn.llc_policy import random_llc_policy
    from anyskill_tui.core.reward.proxy import ProxyModel

    # full-batch minibatches (4 x 8 = 32 rows): the same rows in every step, whatever the permutation
    scfg = small_cfg(
        env={"num_envs": 8}, ppo={"horizon_length": 4, "minibatch_size": 32, "mini_epochs": 3}, reward={"mode": "proxy"}
    )
    g = torch.Generator().manual_seed(11)
    text, refs = torch.randn(1, 8, generator=g), torch.randn(5, 64, generator=g)
    T = scfg.ppo.horizon_length
    data = {
        "obs": torch.randn(T, 8, 223, generator=g) * 2 + 1,
        "actions": torch.randn(T, 8, 64, generator=g),
        "logp": torch.randn(T, 8, generator=g),
        "advantages": torch.randn(T, 8, generator=g),
        "returns": torch.randn(T, 8, generator=g) * 3,
    }

    def skill_trainer(n_envs, d):
        env = st.build_env(scfg, num_envs=n_envs)
        return st.SkillTrainer(
            scfg, random_llc_policy(0), env, st.ProxyScorer(ProxyModel(8, (8,))), text, style_refs=refs, dist=d
        )

    def store_of(rows):
        n = len(range(8)[rows])
        s = RolloutStorage(T, n, {k: v.shape[2:] for k, v in data.items()})
        for k, v in data.items():
            s.set(k, v[:, rows])
        return s

    def skill_params(tr):
        return _params(
            ("actor", tr.policy.actor), ("critic", tr.critic), ("obs", tr.policy.obs_norm), ("v", tr.value_norm)
        )

    sl = skill_trainer(4, dist)
    assert sl.minibatch_size == 16
    sl.update(store_of(slice(r * 4, r * 4 + 4)))
    result["skill_local"] = skill_params(sl)
    if r == 0:
        sref = skill_trainer(8, None)
        result["skill_init"] = skill_params(sref)
        sref.update(store_of(slice(0, 8)))
        result["skill_ref"] = skill_params(sref)
    torch.save(result, out / f"rank{r}.pt")


def test_one_update_on_a_split_batch_equals_one_process_on_the_whole_batch(tmp_path, motions):
    sys.path.insert(0, str(Path(__file__).parent))  # _skill_helpers, in the spawned ranks too (sys.path travels)
    spawn(_w_split_update, motions, tmp_path)
    r0, r1 = _read(tmp_path, 0), _read(tmp_path, 1)
    for kind in ("llc", "skill"):
        assert _max_diff(r0[f"{kind}_local"], r1[f"{kind}_local"]) == 0.0, f"{kind}: the ranks differ"
        nets = [k for k in r0[f"{kind}_ref"] if k.split(".")[0] in NETS]  # weights, not normaliser counts
        moved = _max_diff({k: r0[f"{kind}_init"][k] for k in nets}, {k: r0[f"{kind}_ref"][k] for k in nets})
        diff = _max_diff(r0[f"{kind}_local"], r0[f"{kind}_ref"])
        print(f"{kind}: max change {moved:.3g}, max difference to one process {diff:.3g}")
        assert moved > 1e-3  # the update did something
        assert diff < 1e-5
    assert _max_diff(r0["llc_alone"], r0["llc_ref"]) > 1e-4  # one rank alone on its half: not the same update


# ------------------------------------------------------------------------------------------ training


def _w_train_llc(dist, jobs: list[dict], out: Path) -> None:
    """Run ``train_llc`` for each job (rank 0 in job["dirs"][0], rank 1 in job["dirs"][1]); record each rank's
    trainer (parameters, history, buffer sizes)."""
    from anyskill_tui.core.learn import llc_train

    made = []

    class Recording(llc_train.LlcTrainer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    llc_train.LlcTrainer = Recording
    results = []
    for job in jobs:
        ctx = TrainContext(
            run_id=1, run_dir=Path(job["dirs"][dist.rank]), config=job["rc"], resume_from=job.get("resume")
        )
        llc_train.train_llc(ctx)
        ctx.close()
        tr = made[-1]
        results.append(
            {
                "params": _params(*((n, getattr(tr, n)) for n in NETS), ("amp_norm", tr.amp_norm)),
                "history": tr.history,
                "epoch": tr.epoch,
                "samples": tr.samples,
                "num_envs": tr.num_envs,
                "demo": tr.demo.size,
                "replay": tr.replay.size,
            }
        )
    torch.save(results, out / f"rank{dist.rank}.pt")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, motions):
    """2 ranks x 8 envs (16 in all) for 4 epochs, checkpoints every 2; rank 1 is given its own empty run dir."""
    root = tmp_path_factory.mktemp("two_ranks")
    dirs = [root / "run", root / "rank1"]
    spawn(_w_train_llc, [{"dirs": dirs, "rc": _llc_rc(motions, 4)}], root)
    return root, dirs, [_read(root, r)[0] for r in range(WORLD)]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, motions):
    """1 process x 16 envs for 4 epochs, seeds 0 and 1 (the reference curves; seed 0's run dir is kept)."""
    from anyskill_tui.core.learn.llc_train import train_llc

    root = tmp_path_factory.mktemp("one_process")
    hist = []
    for seed in (0, 1):
        ctx = TrainContext(run_id=1, run_dir=root / f"seed{seed}", config=_llc_rc(motions, 4, seed=seed))
        train_llc(ctx)
        ctx.close()
        hist.append(load_checkpoint(latest_checkpoint(ctx.run_dir))["history"])
    return root / "seed0", hist


def test_ranks_stay_identical_and_only_rank0_writes(two_ranks):
    root, (run0, run1), (a, b) = two_ranks
    assert _max_diff(a["params"], b["params"]) == 0.0  # bit for bit after 4 epochs (16 optimiser steps)
    assert not run1.exists(), "rank 1 wrote into its run dir"
    assert [p.name for p in list_checkpoints(run0)] == ["ckpt_00000002.pt", "ckpt_00000004.pt"]
    assert (run0 / "metrics").is_dir() and (run0 / "progress.json").is_file()
    state = load_checkpoint(latest_checkpoint(run0))
    assert state["epoch"] == 4 and state["samples"] == 4 * 16 * 8 == a["samples"] == b["samples"]
    assert state["config"]["env"]["num_envs"] == 16 and a["num_envs"] == b["num_envs"] == 8  # global vs per rank
    assert state["dist"]["world_size"] == 2 and state["dist"]["ranks"][0] is None
    rank1 = state["dist"]["ranks"][1]
    assert rank1["latents"]["z"].shape[0] == 8 and not torch.equal(rank1["env"]["_obs"], state["env"]["_obs"])
    for k, v in a["params"].items():  # the checkpoint holds the ranks' common parameters
        net, _, key = k.partition(".")
        saved = state["model"][net][key] if net in NETS else state["normalizers"]["amp"][key]
        assert torch.equal(saved, v), k
    assert state["history"][-1]["info/episodes"] == a["history"][-1]["info/episodes"]  # global counts, both ranks


def test_two_ranks_follow_the_one_process_loss_curve(two_ranks, one_process):
    _, _, (a, _) = two_ranks
    _, hist = one_process
    for tag in ("losses/conditional_disc_loss", "losses/enc_reg_loss"):
        dist_mean = sum(h[tag] for h in a["history"]) / 4
        ref = [sum(h[tag] for h in seed) / 4 for seed in hist]
        ref_mean = sum(ref) / len(ref)
        print(
            f"{tag}: 2 ranks {dist_mean:.3f}, one process {ref_mean:.3f} (seeds {', '.join(f'{x:.3f}' for x in ref)})"
        )
        assert abs(dist_mean - ref_mean) <= 0.2 * abs(ref_mean) + 0.05
    d = [h["losses/conditional_disc_loss"] for h in a["history"]]
    assert d[-1] < 0.6 * d[0]  # the discriminator learns in the 2-rank run as it does in one process


def test_checkpoints_resume_across_world_sizes(two_ranks, one_process, motions, tmp_path):
    """2 ranks -> 2 ranks (exact), 2 ranks -> 1 process, 1 process -> 2 ranks."""
    from anyskill_tui.core.learn.llc_train import train_llc

    root, (run0, _), (a, _) = two_ranks
    single_dir, _ = one_process

    def copy(ckpt: Path, dest: Path) -> Path:
        (dest / "checkpoints").mkdir(parents=True)
        return Path(shutil.copy(ckpt, dest / "checkpoints" / ckpt.name))

    # the 2-rank epoch-2 checkpoint resumed on 2 ranks, and the 1-process epoch-4 one on 2 ranks (one spawn)
    same = copy(run0 / "checkpoints" / "ckpt_00000002.pt", tmp_path / "same")
    grow = copy(latest_checkpoint(single_dir), tmp_path / "grow")
    jobs = [
        {"dirs": [tmp_path / "same", tmp_path / "same1"], "rc": _llc_rc(motions, 4), "resume": same},
        {"dirs": [tmp_path / "grow", tmp_path / "grow1"], "rc": _llc_rc(motions, 5), "resume": grow},
    ]
    spawn(_w_train_llc, jobs, tmp_path)
    (same0, grow0), (_, grow1) = _read(tmp_path, 0), _read(tmp_path, 1)
    assert _max_diff(same0["params"], a["params"]) == 0.0, "2 ranks: resumed at epoch 2 != uninterrupted"
    assert [h["epoch"] for h in same0["history"]] == [1, 2, 3, 4]
    assert grow0["epoch"] == grow1["epoch"] == 5 and _max_diff(grow0["params"], grow1["params"]) == 0.0
    # the one-process buffers (256 demo, 96 replay rows) were dealt out: half to each rank
    assert grow0["demo"] == grow1["demo"] == 128 and grow0["replay"] == grow1["replay"] == 48
    assert not (tmp_path / "same1").exists() and not (tmp_path / "grow1").exists()
    assert load_checkpoint(latest_checkpoint(tmp_path / "grow"))["dist"]["world_size"] == 2

    # the 2-rank epoch-4 checkpoint in one process: both ranks' buffer rows, fresh envs, one more epoch
    shrink = copy(latest_checkpoint(run0), tmp_path / "shrink")
    ctx = TrainContext(run_id=1, run_dir=tmp_path / "shrink", config=_llc_rc(motions, 5), resume_from=shrink)
    train_llc(ctx)
    ctx.close()
    state = load_checkpoint(latest_checkpoint(tmp_path / "shrink"))
    assert state["epoch"] == 5 and "dist" not in state
    assert state["buffers"]["demo"]["size"] == 256 and state["buffers"]["replay"]["size"] == 96
    assert state["latents"]["z"].shape[0] == 16


# ------------------------------------------------------------------------------------------ skill training


def _w_train_skill(dist, conf: dict, dirs: list[Path], out: Path) -> None:
    from _skill_helpers import TINY as TINY_CLIP
    from _skill_helpers import TINY_CFG
    from open_clip import factory

    from anyskill_tui.core.learn import skill_train as st

    factory._MODEL_CONFIGS[TINY_CLIP] = TINY_CFG
    made = []

    class Recording(st.SkillTrainer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    st.SkillTrainer = Recording
    if dist.is_main:
        Path(dirs[0]).mkdir()  # as the runner does
    ctx = TrainContext(run_id=1, run_dir=Path(dirs[dist.rank]), config=conf)
    st.train_skill(ctx)
    ctx.close()
    tr = made[-1]
    params = _params(
        ("actor", tr.policy.actor), ("critic", tr.critic), ("obs", tr.policy.obs_norm), ("v", tr.value_norm)
    )
    torch.save({"params": params, "steps": tr.llc_steps_total, "envs": tr.num_envs}, out / f"rank{dist.rank}.pt")


def test_skill_training_on_two_ranks_then_one(tmp_path, monkeypatch):
    pytest.importorskip("open_clip")
    sys.path.insert(0, str(Path(__file__).parent))
    from _skill_helpers import TINY as TINY_CLIP
    from _skill_helpers import register_tiny, small_cfg, tiny_open_clip

    from anyskill_tui.core.learn.llc_policy import random_llc_policy, save_llc_policy
    from anyskill_tui.core.learn.skill_train import train_skill

    register_tiny(monkeypatch)
    weights = tmp_path / "tiny.pt"
    torch.save(tiny_open_clip(0).state_dict(), weights)
    llc = save_llc_policy(tmp_path / "llc.pt", random_llc_policy(0))
    cfg = small_cfg(
        env={"num_envs": 4},
        llc={"path": str(llc)},
        reward={"render_every": "decision"},
        clip={"model": TINY_CLIP, "weights": str(weights), "pretrained": None},
        ppo={"minibatch_size": 8},
    )
    conf = cfg.to_dict()
    dirs = [tmp_path / "run", tmp_path / "rank1"]
    spawn(_w_train_skill, conf, dirs, tmp_path)
    a, b = _read(tmp_path, 0), _read(tmp_path, 1)
    assert _max_diff(a["params"], b["params"]) == 0.0 and a["envs"] == b["envs"] == 2
    assert a["steps"] == 2 * cfg.ppo.horizon_length * 4 * cfg.llc.steps  # all ranks' LLC steps
    assert not dirs[1].exists()
    assert [p.name for p in list_checkpoints(dirs[0])] == ["ckpt_00000001.pt", "ckpt_00000002.pt"]
    final = load_checkpoint(latest_checkpoint(dirs[0]))
    assert "llc" in final and final["dist"]["world_size"] == 2 and final["config"]["env"]["num_envs"] == 4
    for k, v in final["policy"]["actor"].items():  # the checkpoint holds the ranks' common actor
        assert torch.equal(v, a["params"][f"actor.{k}"]), k
    # ... and it resumes in one process (the learner as saved; generators and prompt timers start afresh)
    conf3 = {**conf, "ppo": {**conf["ppo"], "max_epochs": 3}}
    ctx = TrainContext(run_id=1, run_dir=dirs[0], config=conf3, resume_from=latest_checkpoint(dirs[0]))
    train_skill(ctx)
    ctx.close()
    assert load_checkpoint(latest_checkpoint(dirs[0]))["epoch"] == 3


# ------------------------------------------------------------------------------------------ launching


def test_runner_command_env_and_nproc_checks(tmp_path, monkeypatch):
    from anyskill_tui.core.jobs import launcher
    from anyskill_tui.core.learn.config import llc_config_from_dict
    from anyskill_tui.core.learn.distributed import DistContext, check_nproc, local_llc_config

    one = launcher.runner_command(tmp_path, 3)
    assert one[1:3] == ["-m", "anyskill_tui.core.jobs.runner"]
    two = launcher.runner_command(tmp_path, 3, nproc=2)
    assert two[:7] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    assert two[7:] == [*one[2:-2], "--run-id", "3"]  # (torchrun takes "--run" for its --run-path)
    assert launcher.runner_env()["NCCL_NVLS_ENABLE"] == "0"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match=r"--nproc 2 needs 2 CUDA devices, but 1 is visible"):
        check_nproc(2, "gpu")
    check_nproc(4, "cpu")  # gloo: any number of processes
    cfg = llc_config_from_dict(TINY)
    with pytest.raises(UserError, match=r"env.num_envs 16 is not divisible by the 3 processes"):
        local_llc_config(cfg, 3)
    with pytest.raises(UserError, match=r"ppo.minibatch_size 32 is not divisible by the 5 processes"):
        local_llc_config(llc_config_from_dict(TINY, overrides={"env.num_envs": 20, "ppo.minibatch_size": 32}), 5)
    assert DistContext().local_count(16, "x") == 16


def test_worker_places_runs_on_free_gpus(tmp_path):
    from anyskill_tui.core.jobs.queue import Worker
    from anyskill_tui.store.library import Library
    from anyskill_tui.workspace import init_workspace

    ws = init_workspace(tmp_path / "ws")[0].root
    launched: list[tuple[int, dict]] = []

    def launch(root, run_id, env=None):
        launched.append((run_id, dict(env or {})))
        return 0

    w = Worker(ws, gpus=["0", "1"], launch=launch, stale_after=3600)
    assert w.slots == 2
    with Library(ws / "skills.db") as lib:
        ids = [lib.create_run("proxy", "gpu", config=c).id for c in ({}, {}, {"nproc": 2}, {}, {"nproc": 3})]

        def done(rid):
            lib.update_run(rid, status="done")

        assert w.run_once() == ids[:2]
        assert launched == [(ids[0], {"CUDA_VISIBLE_DEVICES": "0"}), (ids[1], {"CUDA_VISIBLE_DEVICES": "1"})]
        done(ids[0])
        assert w.run_once() == []  # the next run needs 2 GPUs, 1 is free: it waits, and nothing jumps the queue
        done(ids[1])
        assert w.run_once() == [ids[2]] and launched[-1] == (ids[2], {"CUDA_VISIBLE_DEVICES": "0,1"})
        done(ids[2])
        assert w.run_once() == [ids[3]] and launched[-1] == (ids[3], {"CUDA_VISIBLE_DEVICES": "0"})
        failed = lib.get_run(ids[4])
        assert failed.status == "failed" and "needs 3 GPUs" in failed.error
    with pytest.raises(UserError, match="distinct GPU ids"):
        Worker(ws, gpus=["0", "0"])


def test_llc_train_nproc_2_through_torchrun(tmp_path, motions, monkeypatch):
    """`anyskill llc train --nproc 2` in the foreground: torchrun as the run's process, rank 0 the runner."""
    from typer.testing import CliRunner

    from anyskill_tui.cli import app
    from anyskill_tui.store.library import Library
    from anyskill_tui.workspace import init_workspace

    monkeypatch.setenv("ANYSKILL_HEARTBEAT_S", "0.3")
    monkeypatch.delenv("ANYSKILL_HOME", raising=False)
    ws = init_workspace(tmp_path / "ws")[0].root
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "env": {"num_envs": 8}, "ppo": {**TINY["ppo"], "save_frequency": 1}}))
    args = ["--workspace", str(ws), "llc", "train", "--motions", str(motions), "--engine", "cpu", "--config", str(cfg)]
    r = CliRunner().invoke(app, [*args, "--epochs", "2", "--nproc", "2"])
    assert r.exit_code == 0, (r.output, r.exception)
    with Library(ws / "skills.db") as lib:
        (run,) = lib.list_runs()
        assert run.status == "done", run.error
        assert run.config["nproc"] == 2 and run.config["llc"]["env"]["num_envs"] == 8
        assert [c.step for c in lib.list_checkpoints(run.id)] == [1, 2]
    run_dir = ws / "runs" / str(run.id)
    log = (run_dir / "train.log").read_text()
    assert f"started, pid {run.pid}" in log  # rank 0's runner, standing for the run as the torchrun agent's pid
    state = load_checkpoint(latest_checkpoint(run_dir))
    assert state["dist"]["world_size"] == 2 and state["samples"] == 2 * 8 * 8
    # an --nproc that does not split the envs is refused before the run exists
    r = CliRunner().invoke(app, [*args, "--epochs", "1", "--nproc", "3"])
    assert r.exit_code == 1 and "not divisible" in r.output
    with Library(ws / "skills.db") as lib:
        assert len(lib.list_runs()) == 1


def test_stop_reaches_every_rank_under_torchrun(tmp_path, monkeypatch):
    """A run under torchrun: its process is the torchrun agent; `runs stop` (SIGTERM to its group) reaches every
    rank through torchrun, rank 0 saves and records `stopped`, and no rank is left behind (toy trainer)."""
    import psutil

    from anyskill_tui.core.jobs import launcher
    from anyskill_tui.core.jobs.trainers import read_progress
    from anyskill_tui.store.library import Library
    from anyskill_tui.workspace import init_workspace

    monkeypatch.setenv("ANYSKILL_ENABLE_TOY_TRAINER", "1")
    monkeypatch.setenv("ANYSKILL_HEARTBEAT_S", "0.3")
    ws = init_workspace(tmp_path / "ws")[0].root
    with Library(ws / "skills.db") as lib:
        run = lib.create_run("proxy", "cpu", config={"trainer": "toy", "steps": 100_000, "step_s": 0.02, "nproc": 2})
    pid = launcher.start_run(ws, run.id)
    run_dir = ws / "runs" / str(run.id)
    deadline = time.monotonic() + 120
    while ((read_progress(run_dir) or {}).get("step") or 0) < 3:
        assert time.monotonic() < deadline, (run_dir / "train.log").read_text()
        time.sleep(0.2)
    ranks = [p for p in psutil.Process(pid).children() if "anyskill_tui.core.jobs.runner" in " ".join(p.cmdline())]
    assert len(ranks) == 2
    with Library(ws / "skills.db") as lib:
        row = lib.get_run(run.id)
        assert row.status == "running" and row.pid == pid  # rank 0 recorded the agent, not itself
    assert launcher.stop_run(ws, run.id, grace_s=60) == "stopped"
    _, alive = psutil.wait_procs(ranks, timeout=30)
    assert not alive
    with Library(ws / "skills.db") as lib:
        row = lib.get_run(run.id)
        assert row.status == "stopped" and row.error is None  # stopped within the grace, not killed
    assert latest_checkpoint(run_dir) is not None  # rank 0 saved on the stop request
