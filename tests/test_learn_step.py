"""Smoke test: one CALM PPO minibatch wired from the pieces (spec §4.4), on CPU and, where present, CUDA with
mixed precision. It checks the pieces compose (shapes, masks, gradients reaching the encoder), not learning."""

import pytest
import torch

from anyskill_tui.core.learn.buffers import DemoBuffer, ReplayBuffer
from anyskill_tui.core.learn.calm import (
    CalmLossCoeffs,
    calm_total_loss,
    cond_disc_loss,
    cond_disc_reward,
    encoder_reg_loss,
)
from anyskill_tui.core.learn.networks import CalmActor, CalmCritic, CalmEncoder, ConditionalDiscriminator
from anyskill_tui.core.learn.normalizer import RunningMeanStd
from anyskill_tui.core.learn.ppo import (
    MixedPrecision,
    bounds_loss,
    gaussian_log_prob,
    ppo_actor_loss,
    sample_gaussian,
    value_loss,
)

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")]),
]


@pytest.mark.parametrize("device", DEVICES)
def test_calm_minibatch_step(device):
    torch.manual_seed(0)
    big = device == "cuda"  # spec-sized networks on the GPU, tiny ones on CPU
    obs_dim, amp_dim, act_dim, lat = (223, 125, 28, 64) if big else (7, 5, 3, 4)
    k, k_enc, hidden = (10, 60, (1024, 1024, 512)) if big else (3, 6, (32, 32))
    style = (512, 256) if big else (16,)
    B, b = (4096, 1024) if big else (64, 16)

    actor = CalmActor(obs_dim, lat, act_dim, hidden, style, lat).to(device)
    critic = CalmCritic(obs_dim, lat, hidden).to(device)
    encoder = CalmEncoder(amp_dim, k_enc, lat, hidden).to(device)
    disc = ConditionalDiscriminator(amp_dim, k, lat, hidden, style, lat).to(device)
    obs_rms, amp_rms = RunningMeanStd(obs_dim).to(device), RunningMeanStd(amp_dim).to(device)
    params = [p for m in (actor, critic, encoder, disc) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=2e-5, eps=1e-8)
    mp = MixedPrecision(device, enabled=True)
    assert mp.enabled == (device == "cuda")
    coeffs = CalmLossCoeffs()

    demo = DemoBuffer(4 * B, (k, amp_dim), (k_enc, amp_dim), device=device)
    demo.push(torch.randn(2 * B, k, amp_dim, device=device), torch.randn(2 * B, k_enc, amp_dim, device=device))
    replay = ReplayBuffer(4 * B, (k, amp_dim), (k_enc, amp_dim), keep_prob=0.01, device=device)
    replay.push(torch.randn(B, k, amp_dim, device=device) + 1, torch.randn(B, k_enc, amp_dim, device=device))

    # a "rollout" minibatch
    obs = torch.randn(B, obs_dim, device=device)
    enc_win = torch.randn(B, k_enc, amp_dim, device=device)
    agent_win = torch.randn(B, k, amp_dim, device=device) + 1
    with torch.no_grad():
        z = encoder(amp_rms(enc_win))
        mu = actor(obs_rms(obs), z)
        actions = sample_gaussian(mu, actor.log_std)
        old_logp = gaussian_log_prob(actions, mu, actor.log_std)
        rewards = cond_disc_reward(disc(amp_rms(agent_win), z), coeffs.disc_reward_scale)
    assert rewards.shape == (B,) and torch.all(rewards >= 0)
    adv, returns = torch.randn(B, device=device), torch.randn(B, device=device)
    mask = torch.rand(B, device=device) < 0.9

    enc_before = encoder.out.weight.detach().clone()
    steps = 12 if device == "cuda" else 3  # the GradScaler skips the first steps while its scale settles
    for _ in range(steps):
        obs_rms.update(obs)
        amp_rms.update(agent_win[:b])
        with mp.autocast():
            z = encoder(amp_rms(enc_win))  # recomputed with gradient: the PPO losses train E
            mu = actor(obs_rms(obs), z)
            logp = gaussian_log_prob(actions, mu.float(), actor.log_std)
            parts = {
                "actor": ppo_actor_loss(logp, old_logp, adv, 0.2, mask),
                "critic": value_loss(critic(obs_rms(obs), z).float(), returns),
                "bounds": bounds_loss(mu.float(), mask=mask),
            }
            rep_amp, rep_enc = replay.sample(b)
            demo_amp, demo_enc = demo.sample(b)
            with torch.no_grad():
                z_rep, z_demo = encoder(amp_rms(rep_enc)), encoder(amp_rms(demo_enc))
            parts["disc"], dparts = cond_disc_loss(
                disc, amp_rms(agent_win[:b]), z[:b], amp_rms(rep_amp), z_rep, amp_rms(demo_amp), z_demo, coeffs
            )
            w0, w1 = demo.sample(b)[1], demo.sample(b)[1]
            parts["enc"], eparts = encoder_reg_loss(encoder(amp_rms(w0)), encoder(amp_rms(w1)))
            loss = calm_total_loss({k_: v.float() for k_, v in parts.items()}, coeffs)
        norm = mp.step(loss, opt, params, max_norm=1.0, clip=False)
        assert torch.isfinite(loss)
        assert all(torch.isfinite(v) for v in {**dparts, **eparts}.values())
    assert torch.isfinite(norm), "the last step should have been taken"
    assert mp.skipped_steps < steps
    assert not torch.equal(encoder.out.weight, enc_before)
    assert all(torch.isfinite(p).all() for p in params)
    assert isinstance(mp.state_dict(), dict)
