import math

import numpy as np
import pytest
import torch

from anyskill_tui.core.learn.calm import (
    CalmLossCoeffs,
    calm_total_loss,
    cond_disc_loss,
    cond_disc_reward,
    encoder_alignment,
    encoder_reg_loss,
    encoder_uniformity,
    epsilon_greedy_mask,
    epsilon_greedy_probs,
    latent_resample_deadlines,
    mix_actions,
)
from anyskill_tui.core.learn.networks import ConditionalDiscriminator


def test_cond_disc_reward_by_hand():
    r = cond_disc_reward(torch.tensor([0.0, -3.0, 20.0]), scale=2.0)
    expected = torch.tensor([2 * math.log(2.0), 2 * math.log(1 + math.exp(-3.0)), -2 * math.log(1e-4)])
    torch.testing.assert_close(r, expected)


def _linear_disc():
    """D(x, z) = w_x·x + w_s·tanh(W z) + b: no hidden layers, so ∂D/∂x = w_x exactly."""
    torch.manual_seed(1)
    disc = ConditionalDiscriminator(amp_obs_dim=2, num_steps=2, latent_dim=3, hidden=(), style_hidden=(), style_dim=2)
    with torch.no_grad():
        disc.logit.bias.fill_(0.3)
    return disc


def _np_logits(disc, win, z):
    w = disc.logit.weight.detach().numpy()[0]
    ws = disc.style.out.weight.detach().numpy()
    x = win.reshape(len(win), -1).numpy()
    return x @ w[:4] + np.tanh(z.numpy() @ ws.T) @ w[4:] + 0.3


def test_cond_disc_loss_parts_by_hand_for_a_linear_discriminator():
    disc = _linear_disc()
    g = torch.Generator().manual_seed(0)
    agent_w, agent_z = torch.randn(3, 2, 2, generator=g), torch.randn(3, 3, generator=g)
    replay_w, replay_z = torch.randn(2, 2, 2, generator=g), torch.randn(2, 3, generator=g)
    demo_w, demo_z = torch.randn(4, 2, 2, generator=g), torch.randn(4, 3, generator=g)
    coeffs = CalmLossCoeffs()
    total, parts = cond_disc_loss(disc, agent_w, agent_z, replay_w, replay_z, demo_w, demo_z, coeffs)

    neg = np.concatenate([_np_logits(disc, agent_w, agent_z), _np_logits(disc, replay_w, replay_z)])
    pos = _np_logits(disc, demo_w, demo_z)
    bce_neg = np.mean(np.log1p(np.exp(neg)))  # BCE(l, 0) = log(1 + e^l)
    bce_pos = np.mean(np.log1p(np.exp(-pos)))  # BCE(l, 1) = log(1 + e^-l)
    w = disc.logit.weight.detach().numpy()[0]
    ws = disc.style.out.weight.detach().numpy()
    logit_reg = np.sum(w**2)
    grad_penalty = np.sum(w[:4] ** 2)  # ‖∂D/∂x‖² = ‖w_x‖² for every sample
    weight_decay = np.sum(w**2) + np.sum(ws**2)

    assert parts["bce_agent"].item() == pytest.approx(bce_neg, rel=1e-5)
    assert parts["bce_demo"].item() == pytest.approx(bce_pos, rel=1e-5)
    assert parts["bce"].item() == pytest.approx(0.5 * (bce_neg + bce_pos), rel=1e-5)
    assert parts["logit_reg"].item() == pytest.approx(logit_reg, rel=1e-5)
    assert parts["grad_penalty"].item() == pytest.approx(grad_penalty, rel=1e-5)
    assert parts["weight_decay"].item() == pytest.approx(weight_decay, rel=1e-5)
    expected_total = 0.5 * (bce_neg + bce_pos) + 0.01 * logit_reg + 5 * grad_penalty + 1e-4 * weight_decay
    assert total.item() == pytest.approx(expected_total, rel=1e-5)
    assert parts["agent_acc"].item() == pytest.approx(np.mean(neg < 0))
    assert parts["demo_acc"].item() == pytest.approx(np.mean(pos > 0))
    assert parts["demo_logit"].item() == pytest.approx(pos.mean(), rel=1e-5)


def test_cond_disc_loss_trains_only_the_discriminator_and_accepts_no_replay():
    disc = ConditionalDiscriminator(amp_obs_dim=2, num_steps=2, latent_dim=3, hidden=(8,), style_hidden=(4,))
    z = torch.randn(5, 3, requires_grad=True)
    demo = torch.randn(5, 4, requires_grad=True)
    total, parts = cond_disc_loss(disc, torch.randn(5, 4), z, None, None, demo, z, CalmLossCoeffs())
    total.backward()
    assert z.grad is None and demo.grad is None
    assert all(p.grad is not None for p in disc.parameters())
    assert parts["grad_penalty"] > 0


def test_grad_penalty_gradient_reaches_the_weights():
    # the penalty must be differentiable (create_graph): its gradient w.r.t. w_x is 2·5·w_x
    disc = _linear_disc()
    args = (torch.randn(3, 4), torch.randn(3, 3), None, None, torch.randn(2, 4), torch.randn(2, 3))
    grads = []
    for gp in (5.0, 0.0):
        disc.zero_grad()
        cond_disc_loss(disc, *args, CalmLossCoeffs(disc_grad_penalty=gp))[0].backward()
        grads.append(disc.logit.weight.grad[0].clone())
    w = disc.logit.weight.detach()[0]
    torch.testing.assert_close(grads[0] - grads[1], torch.cat([2 * 5.0 * w[:4], torch.zeros(2)]))


def _np_uniformity(e, t=2.0):
    vals = [np.exp(-t * np.sum((e[i] - e[j]) ** 2)) for i in range(len(e)) for j in range(i + 1, len(e))]
    return np.log(np.mean(vals))


def test_encoder_uniformity_alignment_and_reg_loss():
    rng = np.random.default_rng(0)
    e0 = rng.normal(size=(6, 4))
    e0 /= np.linalg.norm(e0, axis=1, keepdims=True)
    e1 = e0 + 0.1 * rng.normal(size=e0.shape)
    t0, t1 = torch.tensor(e0, dtype=torch.float64), torch.tensor(e1, dtype=torch.float64)
    assert encoder_uniformity(t0).item() == pytest.approx(_np_uniformity(e0), rel=1e-9)
    align = np.mean(np.sum((e0 - e1) ** 2, axis=1))
    assert encoder_alignment(t0, t1).item() == pytest.approx(align, rel=1e-9)
    loss, parts = encoder_reg_loss(t0, t1)
    assert loss.item() == pytest.approx(align + 0.5 * _np_uniformity(e0), rel=1e-9)
    assert parts["enc_uniform"].item() == pytest.approx(_np_uniformity(e0), rel=1e-9)
    # identical encodings: uniformity = log 1 = 0, and its gradient is finite
    same = torch.ones(3, 4, requires_grad=True)
    u = encoder_uniformity(same)
    u.backward()
    assert u.item() == pytest.approx(0.0) and torch.isfinite(same.grad).all()


def test_epsilon_greedy_probabilities_and_sampler():
    p = epsilon_greedy_probs(5)
    assert p[0].item() == pytest.approx(1.0, abs=1e-4)
    assert p[-1].item() == 0.0
    assert torch.all(p[1:] <= p[:-1])
    torch.testing.assert_close(p[2], torch.tensor(1 - math.exp(-5.0)))
    assert epsilon_greedy_probs(4096).mean().item() == pytest.approx(0.9, abs=0.01)  # "about 90%"
    g = torch.Generator().manual_seed(0)
    freq = torch.stack([epsilon_greedy_mask(p, g) for _ in range(4000)]).float().mean(0)
    torch.testing.assert_close(freq, p, atol=0.03, rtol=0)
    assert not epsilon_greedy_mask(p, g)[-1]
    assert epsilon_greedy_probs(1).tolist() == [1.0]


def test_mix_actions():
    mu, sampled = torch.zeros(3, 2), torch.ones(3, 2)
    out = mix_actions(mu, sampled, torch.tensor([True, False, True]))
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]))


def test_latent_resample_deadlines():
    progress = torch.tensor([0, 5, 10, 3, 149])
    deadline = torch.tensor([0, 7, 10, 100, 149])
    reset = torch.tensor([False, False, False, True, False])
    g = torch.Generator().manual_seed(0)
    need, new = latent_resample_deadlines(progress, deadline, 10, 150, reset=reset, generator=g)
    assert need.tolist() == [True, False, True, True, True]
    assert new[1] == 7
    steps = (new - progress)[need]
    assert torch.all((steps >= 10) & (steps < 150))
    # over many draws every step count in [10, 149] is possible and nothing else
    _, many = latent_resample_deadlines(torch.zeros(20000, dtype=torch.long), torch.zeros(20000, dtype=torch.long))
    assert many.min() == 10 and many.max() == 149


def test_calm_total_loss_coefficients():
    parts = {
        k: torch.tensor(v)
        for k, v in {"actor": 1.0, "critic": 2.0, "entropy": 3.0, "bounds": 4.0, "disc": 5.0, "enc": 6.0}.items()
    }
    # 1 + 5·2 − 0·3 + 10·4 + 5·5 + 0.1·6
    assert calm_total_loss(parts, CalmLossCoeffs()).item() == pytest.approx(76.6)
    assert calm_total_loss(parts, CalmLossCoeffs(entropy=0.5)).item() == pytest.approx(76.6 - 1.5)
    hlc = {k: parts[k] for k in ("actor", "critic", "bounds")}
    assert calm_total_loss(hlc, CalmLossCoeffs()).item() == pytest.approx(51.0)
