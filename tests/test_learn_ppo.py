import math

import torch

from anyskill_tui.core.learn.ppo import (
    MixedPrecision,
    bounds_loss,
    clip_fraction,
    clip_grad_norm_if,
    gae,
    gaussian_entropy,
    gaussian_log_prob,
    masked_mean,
    normalize_advantages,
    ppo_actor_loss,
    value_loss,
)


def test_gae_termination_vs_truncation_by_hand():
    # columns: env 0 terminates (falls) at t=1, env 1 is truncated (time-out) at t=1; both restart at t=2.
    rewards = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    values = torch.tensor([[0.5, 1.0], [0.4, 1.0], [0.3, 2.0]])
    next_values = torch.tensor([[0.4, 1.0], [0.6, 0.7], [0.2, 1.5]])
    terminated = torch.tensor([[0, 0], [1, 0], [0, 0]], dtype=torch.bool)
    done = torch.tensor([[0, 0], [1, 1], [0, 0]], dtype=torch.bool)
    adv, ret = gae(rewards, values, next_values, terminated, done, gamma=0.9, lam=0.8)
    # env 0: d2 = 3 + .9*.2 - .3; d1 = 2 - .4 (no bootstrap, cut); d0 = 1 + .9*.4 - .5 + .72*A1
    # env 1: d2 = .9*1.5 - 2;     d1 = 1 + .9*.7 - 1 (bootstrap kept, cut); d0 = .9 - 1 + .72*A1
    expected = torch.tensor([[0.86 + 0.72 * 1.6, -0.1 + 0.72 * 0.63], [1.6, 0.63], [2.88, -0.65]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_gae_without_episode_ends_is_discounted_sum_for_lambda_one():
    torch.manual_seed(0)
    r = torch.randn(5, 3)
    v = torch.randn(5, 3)
    nv = torch.cat([v[1:], torch.randn(1, 3)])
    z = torch.zeros(5, 3, dtype=torch.bool)
    _, ret = gae(r, v, nv, z, z, gamma=0.9, lam=1.0)
    expected = nv[-1] * 0.9**5 + sum(r[k] * 0.9**k for k in range(5))
    torch.testing.assert_close(ret[0], expected)


def test_ppo_clipped_surrogate_by_hand():
    ratio = torch.tensor([0.5, 1.1, 1.5, 0.9, 0.5, 1.5])
    adv = torch.tensor([1.0, -2.0, 2.0, -1.0, -1.0, -1.0])
    # -min(rA, clip(r)A): [-0.5, 2.2, -2.4, 0.9, 0.8, 1.5]
    old = torch.randn(6)
    new = old + ratio.log()
    torch.testing.assert_close(ppo_actor_loss(new, old, adv, clip=0.2), torch.tensor(2.5 / 6))
    mask = torch.tensor([1, 1, 1, 0, 1, 0], dtype=torch.bool)
    torch.testing.assert_close(ppo_actor_loss(new, old, adv, clip=0.2, mask=mask), torch.tensor(0.1 / 4))
    torch.testing.assert_close(clip_fraction(new, old, 0.2), torch.tensor(4 / 6))


def test_ppo_gradient_vanishes_when_clipped():
    new = torch.tensor([math.log(1.5), math.log(1.1)], requires_grad=True)
    ppo_actor_loss(new, torch.zeros(2), torch.tensor([2.0, 2.0])).backward()
    assert new.grad[0] == 0 and new.grad[1] != 0


def test_value_loss_by_hand():
    v, r = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 1.0])
    torch.testing.assert_close(value_loss(v, r), torch.tensor(2.5))
    torch.testing.assert_close(value_loss(v, r, mask=torch.tensor([0.0, 1.0])), torch.tensor(1.0))


def test_bounds_loss_by_hand():
    mu = torch.tensor([[1.5, -0.2], [-3.0, 0.5], [2.0, -2.0]])
    torch.testing.assert_close(bounds_loss(mu), torch.tensor(6.25 / 3))
    torch.testing.assert_close(bounds_loss(mu, mask=torch.tensor([1, 0, 1])), torch.tensor(2.25 / 2))
    assert bounds_loss(torch.rand(4, 3) * 2 - 1) == 0


def test_gaussian_log_prob_and_entropy_match_torch():
    mu, a = torch.randn(4, 3), torch.randn(4, 3)
    log_std = torch.tensor([-2.9, 0.0, 0.5])
    dist = torch.distributions.Normal(mu, log_std.exp())
    torch.testing.assert_close(gaussian_log_prob(a, mu, log_std), dist.log_prob(a).sum(-1))
    torch.testing.assert_close(gaussian_entropy(log_std), dist.entropy()[0].sum())


def test_masked_mean_and_advantage_normalisation():
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    m = torch.tensor([1, 1, 1, 0])
    assert masked_mean(x, m) == 2.0
    assert masked_mean(x, torch.zeros(4)) == 0.0
    n = normalize_advantages(x, m)
    torch.testing.assert_close(n[:3], torch.tensor([-1.0, 0.0, 1.0]) / math.sqrt(2 / 3), atol=1e-6, rtol=1e-6)


def _param_with_grad():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    return p


def test_clip_grad_norm_if_clips_only_when_enabled():
    p = _param_with_grad()
    norm = clip_grad_norm_if([p], max_norm=1.0, enabled=True)
    assert math.isclose(norm.item(), 5.0, rel_tol=1e-6)
    torch.testing.assert_close(p.grad.norm(), torch.tensor(1.0), atol=1e-5, rtol=1e-5)
    q = _param_with_grad()
    norm = clip_grad_norm_if([q], max_norm=1.0, enabled=False)
    assert math.isclose(norm.item(), 5.0, rel_tol=1e-6)
    torch.testing.assert_close(q.grad, torch.tensor([3.0, 4.0]))


def test_mixed_precision_is_a_no_op_on_cpu():
    mp = MixedPrecision("cpu", enabled=True)
    assert not mp.enabled and mp.scaler is None and mp.state_dict() == {}
    w = torch.nn.Parameter(torch.tensor([2.0]))
    opt = torch.optim.SGD([w], lr=0.25)
    with mp.autocast():
        loss = (w**2).sum()
    assert loss.dtype == torch.float32
    norm = mp.step(loss, opt, [w], max_norm=1.0, clip=True)
    assert math.isclose(norm.item(), 4.0, rel_tol=1e-6)
    torch.testing.assert_close(w.detach(), torch.tensor([1.75]))  # grad 4 clipped to 1
