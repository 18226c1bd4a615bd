"""Tiny end-to-end checks that the PPO core and the conditional discriminator actually learn (CPU, seconds)."""

import pytest
import torch
from torch import nn

from anyskill_tui.core.learn.buffers import RolloutStorage
from anyskill_tui.core.learn.calm import (
    CalmLossCoeffs,
    cond_disc_loss,
    epsilon_greedy_mask,
    epsilon_greedy_probs,
    mix_actions,
)
from anyskill_tui.core.learn.networks import ConditionalDiscriminator, mlp
from anyskill_tui.core.learn.ppo import (
    MixedPrecision,
    bounds_loss,
    gae,
    gaussian_log_prob,
    normalize_advantages,
    ppo_actor_loss,
    sample_gaussian,
    value_loss,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _target(s: torch.Tensor) -> torch.Tensor:
    return torch.cat([0.5 * s + 0.3, torch.full_like(s, -0.4)], dim=-1)


def test_ppo_learns_a_contextual_bandit():
    """One-step episodes, reward −‖a − target(s)‖²: the policy mean must move onto the target."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    horizon, num_envs = 4, 64
    actor = nn.Sequential(mlp(1, (32, 32)), nn.Linear(32, 2))
    critic = nn.Sequential(mlp(1, (32, 32)), nn.Linear(32, 1))
    log_std = torch.full((2,), -1.5)  # fixed, σ ≈ 0.22
    params = [*actor.parameters(), *critic.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    mp = MixedPrecision("cpu")
    probs = epsilon_greedy_probs(num_envs)
    shapes = {"obs": (1,), "actions": (2,), "logp": (), "values": (), "rewards": (), "mask": ()}
    storage = RolloutStorage(horizon, num_envs, shapes)
    eval_s = torch.linspace(-1, 1, 101)[:, None]

    def error() -> float:
        with torch.no_grad():
            return (actor(eval_s) - _target(eval_s)).square().sum(-1).mean().item()

    start = error()
    for _ in range(25):
        with torch.no_grad():
            for t in range(horizon):
                s = torch.rand(num_envs, 1, generator=g) * 2 - 1
                mu = actor(s)
                stochastic = epsilon_greedy_mask(probs, g)
                a = mix_actions(mu, sample_gaussian(mu, log_std, g), stochastic)
                r = -(a - _target(s)).square().sum(-1)
                storage.insert(
                    t,
                    obs=s,
                    actions=a,
                    logp=gaussian_log_prob(a, mu, log_std),
                    values=critic(s).squeeze(-1),
                    rewards=r,
                    mask=stochastic.float(),
                )
            ends = torch.ones(horizon, num_envs, dtype=torch.bool)  # every step ends its (1-step) episode
            adv, ret = gae(
                storage["rewards"], storage["values"], torch.zeros(horizon, num_envs), ends, ends, 0.99, 0.95
            )
            storage.set("advantages", normalize_advantages(adv, storage["mask"]))
            storage.set("returns", ret)
        for _ in range(4):
            for mb in storage.minibatches(128, generator=g):
                mu = actor(mb["obs"])
                m = mb["mask"]
                loss = (
                    ppo_actor_loss(gaussian_log_prob(mb["actions"], mu, log_std), mb["logp"], mb["advantages"], 0.2, m)
                    + 5.0 * value_loss(critic(mb["obs"]).squeeze(-1), mb["returns"])
                    + 10.0 * bounds_loss(mu, mask=m)
                )
                mp.step(loss, opt, params, max_norm=1.0, clip=False)
    end = error()
    assert start > 0.1
    assert end < 0.2 * start, (start, end)


def test_conditional_discriminator_learns_to_separate_demo_from_agent():
    """Demo windows are f(z) + noise, agent windows f(−z) + noise, both paired with z.

    Windows alone are identically distributed (z is symmetric), so telling them apart needs the latent: the test
    exercises the conditioning, not just a shift in the window distribution.
    """
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    amp_dim, steps, latent = 3, 2, 4
    proj = 2.0 * torch.randn(latent, amp_dim * steps, generator=g)
    disc = ConditionalDiscriminator(amp_dim, steps, latent, hidden=(64, 64), style_hidden=(32,), style_dim=16)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    coeffs = CalmLossCoeffs()

    def batch(n: int):
        z = nn.functional.normalize(torch.randn(n, latent, generator=g), dim=-1)
        noise = 0.05 * torch.randn(2, n, amp_dim * steps, generator=g)
        demo = (z @ proj + noise[0]).reshape(n, steps, amp_dim)
        agent = (-z @ proj + noise[1]).reshape(n, steps, amp_dim)
        return agent, z, demo, z

    for _ in range(250):
        agent, agent_z, demo, demo_z = batch(256)
        half = 128  # half of the negatives come "from the replay buffer"
        loss, parts = cond_disc_loss(
            disc, agent[:half], agent_z[:half], agent[half:], agent_z[half:], demo, demo_z, coeffs
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        agent, agent_z, demo, demo_z = batch(2000)
        acc = 0.5 * ((disc(agent, agent_z) < 0).float().mean() + (disc(demo, demo_z) > 0).float().mean())
    assert acc > 0.9, acc
