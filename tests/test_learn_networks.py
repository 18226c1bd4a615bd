import torch
from torch import nn

from anyskill_tui.core.learn.networks import (
    CalmActor,
    CalmCritic,
    CalmEncoder,
    ConditionalDiscriminator,
    SkillActor,
    SkillCritic,
    StyleMLP,
)


def _all_biases_zero(module: nn.Module) -> bool:
    return all(torch.all(m.bias == 0) for m in module.modules() if isinstance(m, nn.Linear))


def test_default_shapes_follow_the_spec():
    b = 3
    obs, z = torch.randn(b, 223), nn.functional.normalize(torch.randn(b, 64), dim=-1)
    actor, critic = CalmActor(), CalmCritic()
    assert actor(obs, z).shape == (b, 28)
    assert critic(obs, z).shape == (b,)
    assert [m.out_features for m in actor.body if isinstance(m, nn.Linear)] == [1024, 1024, 512]
    assert actor.body[0].in_features == 223 + 64
    assert critic.body[0].in_features == 223 + 64
    enc = CalmEncoder()
    assert enc.body[0].in_features == 7500
    assert enc(torch.randn(b, 60, 125)).shape == (b, 64)
    disc = ConditionalDiscriminator()
    assert disc.body[0].in_features == 1250 + 64
    assert disc(torch.randn(b, 10, 125), z).shape == (b,)
    assert disc(torch.randn(b, 1250), z).shape == (b,)
    hlc, hlc_v = SkillActor(), SkillCritic()
    mu = hlc(obs)
    assert mu.shape == (b, 64) and mu.abs().max() < 1
    assert hlc_v(obs).shape == (b,)
    assert [m.out_features for m in hlc.body if isinstance(m, nn.Linear)] == [1024, 512]


def test_dims_are_constructor_arguments():
    actor = CalmActor(obs_dim=5, latent_dim=3, action_dim=2, hidden=(8,), style_hidden=(4,), style_dim=6)
    assert actor(torch.randn(4, 5), torch.randn(4, 3)).shape == (4, 2)
    enc = CalmEncoder(amp_obs_dim=2, num_steps=3, latent_dim=4, hidden=(7, 7))
    assert enc(torch.randn(5, 6)).shape == (5, 4)
    disc = ConditionalDiscriminator(amp_obs_dim=2, num_steps=2, latent_dim=3, hidden=(), style_hidden=(), style_dim=2)
    assert disc(torch.randn(5, 2, 2), torch.randn(5, 3)).shape == (5,)


def test_encoder_outputs_are_unit_norm():
    e = CalmEncoder(amp_obs_dim=4, num_steps=6, latent_dim=8, hidden=(16,))(torch.randn(10, 24) * 7)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(10))


def test_fixed_log_std_is_a_buffer_not_a_parameter():
    actor = CalmActor(obs_dim=4, latent_dim=3, action_dim=2, hidden=(8,), style_hidden=(4,), style_dim=4)
    assert all(p is not actor.log_std for p in actor.parameters())
    assert "log_std" in actor.state_dict()
    torch.testing.assert_close(actor.log_std, torch.full((2,), -2.9))
    hlc = SkillActor(obs_dim=4, action_dim=3, hidden=(8,))
    assert all(p is not hlc.log_std for p in hlc.parameters())
    torch.testing.assert_close(hlc.log_std, torch.full((3,), -2.3))
    assert not hlc.log_std.requires_grad


def test_special_layer_inits_and_zero_biases():
    torch.manual_seed(0)
    style = StyleMLP()
    w = style.out.weight
    assert w.abs().max() <= 1.0 and w.abs().max() > 0.9  # U(-1, 1), not the default ±1/sqrt(256)
    enc = CalmEncoder(hidden=(64,))
    assert enc.out.weight.abs().max() <= 0.1 and enc.out.weight.abs().max() > 0.09
    disc = ConditionalDiscriminator(hidden=(64, 32))
    assert disc.logit.weight.abs().max() <= 1.0 and disc.logit.weight.abs().max() > 0.5
    # hidden layers keep the PyTorch default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    first = disc.body[0]
    assert first.weight.abs().max() <= 1.0 / first.in_features**0.5
    for net in (style, enc, disc, CalmActor(hidden=(32,)), CalmCritic(hidden=(32,)), SkillActor(), SkillCritic()):
        assert _all_biases_zero(net)


def test_discriminator_weight_accessors():
    disc = ConditionalDiscriminator(
        amp_obs_dim=3, num_steps=2, latent_dim=4, hidden=(5, 6), style_hidden=(7,), style_dim=4
    )
    assert disc.logit_weights() is disc.logit.weight
    ws = disc.linear_weights()
    # style: 2 layers, body: 2 layers, logit: 1 layer
    assert len(ws) == 5
    assert any(w is disc.logit.weight for w in ws)
    assert sum(w.numel() for w in ws) == 7 * 4 + 4 * 7 + 5 * (6 + 4) + 6 * 5 + 1 * 6
