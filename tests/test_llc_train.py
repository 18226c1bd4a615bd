"""CALM LLC training (core.learn.llc_train): exact resume, stop, NaN stop, checkpoints, policy files, learning."""

from __future__ import annotations

import pytest
import torch
from _skill_helpers import TINY_LLC as TINY  # noqa: E402

from anyskill_tui.core.jobs.checkpoints import latest_checkpoint, list_checkpoints, load_checkpoint
from anyskill_tui.core.jobs.trainers import TrainContext
from anyskill_tui.core.learn import llc_train
from anyskill_tui.core.learn.config import llc_config_from_dict
from anyskill_tui.core.learn.llc_policy import LLC_FORMAT, LlcPolicy, random_llc_policy, save_llc_policy
from anyskill_tui.core.learn.llc_train import EPOCH_TAGS, LlcTrainer, run_config, train_llc
from anyskill_tui.errors import UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory):
    """A dataset of 3 starter clips (stand, walk forward, squat)."""
    from anyskill_tui.paths import configs_dir

    d = tmp_path_factory.mktemp("motions")
    star = configs_dir() / "motions" / "starter"
    lines = ["motions:"]
    for name in ("stand_idle", "walk_forward", "squat"):
        lines += [f"  - file: {star / (name + '.npy')}", "    weight: 1"]
    p = d / "three.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def _rc(motions, epochs, **over):
    cfg = dict(TINY)
    cfg = llc_config_from_dict(cfg, overrides={"ppo.max_epochs": epochs, **over})
    return run_config(cfg, motions, engine="cpu", threads=1)


def _ctx(tmp_path, rc, resume=None):
    return TrainContext(run_id=1, run_dir=tmp_path, config=rc, resume_from=resume)


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("motion_pool", [False, True], ids=["cpu-resets", "motion-pool"])
def test_exact_resume_equals_uninterrupted(tmp_path, two_clips, motion_pool, monkeypatch):
    """Also with the gpu path's motion-start pool (redrawn every 3 steps, so a resume lands inside a pool)."""
    if motion_pool:
        from anyskill_tui.core.sim.env import HumanoidEnv

        monkeypatch.setattr(HumanoidEnv, "_reset_subset", False, raising=False)
    over = {"env.motion_pool_refresh": 3, "env.motion_pool_size": 8}
    a, b = tmp_path / "a", tmp_path / "b"
    ctx = _ctx(a, _rc(two_clips, 4, **over))
    train_llc(ctx)
    ctx.close()
    # the same run, stopped after 2 epochs and resumed
    ctx = _ctx(b, _rc(two_clips, 2, **over))
    train_llc(ctx)
    ctx.close()
    ckpt2 = latest_checkpoint(b)
    if motion_pool:
        assert load_checkpoint(ckpt2)["env"]["motion_pool_calls"] not in (0, 3)  # mid-pool
    ctx = _ctx(b, _rc(two_clips, 4, **over), resume=ckpt2)
    train_llc(ctx)
    ctx.close()
    wa, wb = _weights(latest_checkpoint(a)), _weights(latest_checkpoint(b))
    for net in ("actor", "critic", "encoder", "disc"):
        for k in wa[net]:
            assert torch.equal(wa[net][k], wb[net][k]), f"{net}.{k} differs after resume"
    sa, sb = load_checkpoint(latest_checkpoint(a)), load_checkpoint(latest_checkpoint(b))
    assert sa["epoch"] == sb["epoch"] == 4 and sa["samples"] == sb["samples"] == 4 * 16 * 8
    assert torch.equal(sa["env"]["_obs"], sb["env"]["_obs"])
    assert torch.equal(sa["normalizers"]["amp"]["mean"], sb["normalizers"]["amp"]["mean"])
    # same next actions: the loaded policies act identically
    pa, pb = LlcPolicy.load(latest_checkpoint(a)), LlcPolicy.load(latest_checkpoint(b))
    obs, z = sa["env"]["_obs"].float(), sa["latents"]["z"]
    assert torch.equal(pa.act(obs, z), pb.act(obs, z))
    assert [p.name for p in list_checkpoints(a)] == ["ckpt_00000002.pt", "ckpt_00000004.pt"]
    assert sa["format"] == LLC_FORMAT and sa["kind"] == "train"
    assert len(sa["buffers"]["replay"]["recipe"]) == 96  # the replay buffer filled up (keep prob from then on)


def test_stop_request_writes_a_final_checkpoint(tmp_path, two_clips):
    ctx = _ctx(tmp_path, _rc(two_clips, 50, **{"ppo.save_frequency": 100}))
    calls = {"n": 0}
    orig = ctx.progress

    def progress(step, total=None):
        orig(step, total)
        calls["n"] += 1
        if step >= 1:
            ctx.stop_event.set()  # as the runner's SIGTERM handler does

    ctx.progress = progress
    train_llc(ctx)
    ctx.close()
    ck = latest_checkpoint(tmp_path)
    assert ck is not None and load_checkpoint(ck)["epoch"] == 1


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, two_clips, monkeypatch):
    ctx = _ctx(tmp_path, _rc(two_clips, 10))
    real = llc_train._inject
    n = {"mb": 0}
    per_epoch = 2 * (16 * 8 // 64)  # mini_epochs x minibatches

    def inject(parts):
        n["mb"] += 1
        if n["mb"] > 2 * per_epoch:  # epoch 3
            parts = dict(parts)
            parts["disc"] = parts["disc"] * float("nan")
        return real(parts)

    monkeypatch.setattr(llc_train, "_inject", inject)
    with pytest.raises(
        UserError, match=r"non-finite loss 'disc' at epoch 3; the last good checkpoint is .*ckpt_00000002"
    ):
        train_llc(ctx)
    ctx.close()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_00000002.pt"]
    good = load_checkpoint(latest_checkpoint(tmp_path))
    assert all(torch.isfinite(v).all() for v in good["model"]["disc"].values())


def test_metrics_tags_and_policy_files(tmp_path, two_clips):
    ctx = _ctx(tmp_path, _rc(two_clips, 2))
    train_llc(ctx)
    ctx.close()
    from anyskill_tui.core.jobs.metrics import MetricsTail

    tail = MetricsTail(tmp_path)
    tail.poll()
    assert set(EPOCH_TAGS) <= set(tail.latest)
    ck = latest_checkpoint(tmp_path)
    full = LlcPolicy.load(ck)
    slim_path = save_llc_policy(tmp_path / "slim.pt", full, extra={"run": 1})
    half_path = save_llc_policy(tmp_path / "half.pt", full, half=True)
    slim, half = LlcPolicy.load(slim_path), LlcPolicy.load(half_path)
    obs = torch.randn(5, 223)
    w = torch.randn(5, full.num_enc_steps, 125)
    z = full.encode(w)
    assert torch.equal(slim.encode(w), z)
    assert torch.equal(slim.act(obs, z), full.act(obs, z))
    assert torch.allclose(half.act(obs, z), full.act(obs, z), atol=2e-2)
    assert slim.latent_dim == 8 and slim.num_enc_steps == 60 and slim.action_dim == 28


def test_random_policy_and_bad_files(tmp_path):
    p = random_llc_policy(seed=3)
    obs, w = torch.randn(4, 223), torch.randn(4, 60, 125)
    z = p.encode(w)
    assert z.shape == (4, 64) and torch.allclose(z.norm(dim=-1), torch.ones(4), atol=1e-5)
    a = p.act(obs, z)
    assert a.shape == (4, 28) and a.abs().max() <= 1.0
    assert torch.equal(random_llc_policy(seed=3).act(obs, z), a)
    bad = tmp_path / "bad.pt"
    torch.save({"hello": 1}, bad)
    with pytest.raises(UserError, match=r"bad\.pt is not an LLC checkpoint"):
        LlcPolicy.load(bad)
    with pytest.raises(UserError, match="does not exist"):
        LlcPolicy.load(tmp_path / "missing.pt")


def test_tiny_llc_learns(two_clips, monkeypatch):
    """The discriminator learns, and then the policy learns against it (about 25 s on one core).

    Phase 1, 20 epochs of full CALM training (16 envs x 16 steps): the conditional discriminator's loss falls and
    it separates demo from agent windows (asserted as before).

    Phase 2, 60 more epochs through the same trainer code path with the judge frozen (a test-only switch: the
    discriminator and the encoder stop receiving gradients and the AMP normaliser stops updating), so the reward
    is stationary and PPO (actor, critic, observation normaliser) is all that learns. The policy is scored as the
    mean conditional-disc reward under that fixed judge over 4 rollouts from the same env state, latents, and
    RNG states (common random numbers), before and after phase 2. Seeds 0/1/2 (this config, 2026-12-04):
    0.129 -> 0.708, 0.078 -> 0.883, 0.172 -> 0.772, i.e. 4.5-11x; the assertion asks for 2x and +0.3. Episode
    length stays flat at this scale (36.2 -> 38.0, 37.6 -> 38.2, 33.4 -> 34.8 steps): balance needs far more
    samples than a CPU test.
    """
    import copy

    from anyskill_tui.core.learn.llc_train import _env_state, _load_env_state

    cfg = llc_config_from_dict(
        TINY,
        overrides={
            "network.actor_hidden": [64, 64],
            "network.critic_hidden": [64, 64],
            "network.encoder_hidden": [64],
            "network.disc_hidden": [64, 64],
            "ppo.horizon_length": 16,
            "ppo.minibatch_size": 128,
            "calm.demo_buffer_size": 1024,
            "calm.replay_buffer_size": 1024,
            "calm.amp_batch_size": 128,
            "calm.amp_minibatch_size": 64,
        },
    )
    tr = LlcTrainer(cfg, two_clips, engine="cpu", threads=1)
    hist = [tr.epoch_step() for _ in range(20)]
    last = hist[-5:]
    demo_acc = sum(h["info/conditional_disc_demo_acc"] for h in last) / 5
    agent_acc = sum(h["info/conditional_disc_agent_acc"] for h in last) / 5
    first_d = sum(h["losses/conditional_disc_loss"] for h in hist[:5]) / 5
    last_d = sum(h["losses/conditional_disc_loss"] for h in last) / 5
    print(f"D loss {first_d:.3f} -> {last_d:.3f}; D accuracy demo {demo_acc:.3f} agent {agent_acc:.3f}")
    assert (demo_acc + agent_acc) / 2 > 0.6
    assert last_d < 0.8 * first_d

    # freeze the judge: D and the encoder (which makes the latents D is conditioned on) and the AMP normaliser
    for module in (tr.disc, tr.encoder):
        for prm in module.parameters():
            prm.requires_grad_(False)
    monkeypatch.setattr(tr.amp_norm, "update", lambda x: None)
    monkeypatch.setattr(tr.amp_norm, "update_counts", lambda rows, counts: None)
    judge = {k: v.clone() for k, v in tr.disc.state_dict().items()}
    judge_norm = {k: v.clone() for k, v in tr.amp_norm.state_dict().items()}

    env_state, gen_state, ml_state = _env_state(tr.env), tr.gen.get_state(), tr.ml_gen.get_state()
    lat = (tr.z.clone(), tr.env_recipe.clone(), tr.deadline.clone(), tr.need_reset.clone())

    def policy():
        return copy.deepcopy(tr.actor.state_dict()), copy.deepcopy(tr.obs_norm.state_dict())

    def restore():
        _load_env_state(tr.env, env_state)
        tr.gen.set_state(gen_state)
        tr.ml_gen.set_state(ml_state)
        for live, saved in zip((tr.z, tr.env_recipe, tr.deadline, tr.need_reset), lat, strict=True):
            live.copy_(saved)  # in place, as the trainer keeps them

    def score(weights) -> tuple[float, float]:  # the same start states, latents and noise for every policy
        live = policy()
        tr.actor.load_state_dict(weights[0])
        tr.obs_norm.load_state_dict(weights[1])
        restore()
        rewards, lengths = [], []
        for _ in range(4):
            buf = tr.rollout()
            rewards.append(float(tr.rewards(buf).mean()))
            lengths.append(float(buf["ep_len_sum"] / buf["ep_count"].clamp_min(1)))
        tr.actor.load_state_dict(live[0])
        tr.obs_norm.load_state_dict(live[1])
        restore()
        return sum(rewards) / 4, sum(lengths) / 4

    r_before, len_before = score(policy())
    for _ in range(60):
        tr.epoch_step()
    r_after, len_after = score(policy())
    assert all(torch.equal(v, judge[k]) for k, v in tr.disc.state_dict().items()), "the judge changed"
    assert all(torch.equal(v, judge_norm[k]) for k, v in tr.amp_norm.state_dict().items()), "its normaliser changed"
    print(f"fixed-D reward {r_before:.3f} -> {r_after:.3f}; episode length {len_before:.1f} -> {len_after:.1f}")
    assert r_after > 2.0 * r_before
    assert r_after - r_before > 0.3


def test_normalized_bank_table_equals_normalizing_the_windows(two_clips):
    """Encoder windows gathered from the bank's normalised table equal normalise-then-cast of the raw windows
    (bit for bit, float32 and bfloat16), and the cached table follows the normaliser's statistics."""
    tr = LlcTrainer(llc_config_from_dict(dict(TINY)), two_clips, engine="cpu", threads=1)
    norm, bank = tr.amp_norm, tr.bank
    norm.update(bank.windows(*tr.sample_recipes(64)[:, :2].T, tr.K) * 3.0 + 1.0)  # a non-trivial mean and std
    rec = tr.sample_recipes(32)
    raw = bank.windows(rec[:, 0], rec[:, 1], tr.K)
    for dtype in (torch.float32, torch.bfloat16):
        got = bank.windows(rec[:, 0], rec[:, 1], tr.K, table=bank.normalized_table(norm, dtype))
        assert got.dtype == dtype and torch.equal(got, norm.normalize(raw).to(dtype))
    before = bank.normalized_table(norm)
    assert bank.normalized_table(norm) is before  # cached while the statistics stand
    norm.update(raw * 10.0)
    after = bank.normalized_table(norm)
    assert after is not before and not torch.equal(after, before)
    assert torch.equal(after, norm.normalize(bank.table))


def test_alignment_row_counts_give_the_windows_statistics(two_clips):
    """The alignment windows' normaliser update from table-row counts equals updating with the gathered windows."""
    from anyskill_tui.core.learn.normalizer import RunningMeanStd

    tr = LlcTrainer(llc_config_from_dict(dict(TINY)), two_clips, engine="cpu", threads=1)
    bank = tr.bank
    al = bank.alignment_recipes(40, 0.5)
    clips, ends = torch.cat([al[:, 0], al[:, 0]]), torch.cat([al[:, 1], al[:, 2]])
    counts = bank.window_row_counts(clips, ends, tr.K)
    assert counts.shape == (bank.table.shape[0],) and counts.sum() == 80 * tr.K
    assert torch.equal(
        counts.long(), torch.bincount(bank.window_rows(clips, ends, tr.K).reshape(-1), minlength=len(counts))
    )
    a, b = RunningMeanStd(tr.F), RunningMeanStd(tr.F)
    prior = bank.windows(*tr.sample_recipes(16)[:, :2].T, tr.K) * 2.0 - 1.0
    for n in (a, b):
        n.update(prior)  # some prior statistics
    a.update(bank.windows(clips, ends, tr.K))
    b.update_counts(bank.table, counts)
    assert a.count == b.count
    torch.testing.assert_close(b.mean, a.mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(b.var, a.var, rtol=1e-5, atol=1e-7)


def test_distinct_latent_recipes_step_equals_the_per_row_step(two_clips, monkeypatch):
    """Encoding each of the epoch's distinct latent windows once per gradient step (and indexing the latents from
    that pass) gives the gradients of encoding one window per minibatch row: two trainers from one seed, one on
    each path, have the same gradients in the first update's steps, to float rounding."""

    def first_epoch_grads(per_row: bool) -> tuple[list[list[torch.Tensor]], list[bool]]:
        if per_row:
            monkeypatch.setattr(LlcTrainer, "_distinct_latent_recipes", lambda self, recipe, minibatch: {})
        tr = LlcTrainer(llc_config_from_dict(dict(TINY)), two_clips, engine="cpu", threads=1)
        grads, paths = [], []
        orig = tr._grad_step

        def spy(src, mb, acc):
            paths.append("enc_recipe" in src and src["enc_recipe"].shape[0] < mb["idx"].shape[0])
            return orig(src, mb, acc)

        tr._grad_step = spy
        tr.mp.grad_hook = lambda params: grads.append([p.grad.clone() for p in params if p.grad is not None])
        tr.epoch_step()
        monkeypatch.undo()
        return grads, paths

    fast, fast_paths = first_epoch_grads(per_row=False)
    slow, slow_paths = first_epoch_grads(per_row=True)
    assert len(fast) == len(slow) > 0
    assert all(fast_paths) and not any(slow_paths)  # each run took its own path in every step
    for s, (gf, gs) in enumerate(zip(fast, slow, strict=True)):
        for i, (a, b) in enumerate(zip(gf, gs, strict=True)):
            err = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
            assert err < 1e-4, f"step {s}, parameter {i}: relative gradient difference {err:.2e}"  # seen: 7.5e-6


def test_rollout_state_stays_in_place(two_clips):
    """The rollout's per-env latent state is updated in place (a CUDA graph of the acting reads and writes these
    very tensors): rollouts and a checkpoint load keep their storage, and the acting function draws only from the
    trainer's generators (same generator states, same actions, whatever the global RNG)."""
    tr = LlcTrainer(llc_config_from_dict(dict(TINY)), two_clips, engine="cpu", threads=1)
    names = ("z", "env_recipe", "deadline", "need_reset")
    ptrs = {n: getattr(tr, n).data_ptr() for n in names}
    tr.epoch_step()
    state = tr.state_dict()
    tr.rollout()
    tr.load_state_dict(state)
    assert {n: getattr(tr, n).data_ptr() for n in names} == ptrs
    assert torch.equal(tr.z, state["latents"]["z"]) and torch.equal(tr.deadline, state["latents"]["deadline"])

    obs, progress = tr.env.obs.clone(), tr.env.progress.clone()
    saved = {n: getattr(tr, n).clone() for n in names}
    gens = (tr.gen.get_state(), tr.ml_gen.get_state())
    torch.manual_seed(1)  # the global RNG must not matter
    first = [t.clone() for t in tr._act(obs, progress, tr.need_reset)]
    for n in names:
        getattr(tr, n).copy_(saved[n])
    tr.gen.set_state(gens[0])
    tr.ml_gen.set_state(gens[1])
    torch.manual_seed(2)
    second = tr._act(obs, progress, tr.need_reset)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
