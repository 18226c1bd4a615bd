"""CALM and AnySkill networks (spec §4.1 and §5.2).

Conventions: ReLU after every hidden layer; hidden Linear layers keep PyTorch's default weight init; every bias
starts at zero; the few special output layers are re-initialised as the spec says. Inputs are expected already
normalised (the normalisers live beside the networks, see ``normalizer.py``). Fixed log-stds are buffers: saved in
``state_dict`` but not in ``parameters()``, so no optimiser ever touches them.

Shapes: batch first. Windows may be given as ``(B, K, F)`` or flattened ``(B, K*F)``; step 0 is the newest step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _linear(in_dim: int, out_dim: int, uniform: float | None = None) -> nn.Linear:
    """A Linear layer with zero bias; weights PyTorch-default, or ``U(-uniform, uniform)`` when given."""
    layer = nn.Linear(in_dim, out_dim)
    if uniform is not None:
        nn.init.uniform_(layer.weight, -uniform, uniform)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(in_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    """``Linear -> ReLU`` for each width in ``hidden`` (an empty ``hidden`` gives the identity)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [_linear(in_dim, int(width)), nn.ReLU()]
        in_dim = int(width)
    return nn.Sequential(*layers)


def _out_dim(in_dim: int, hidden: Sequence[int]) -> int:
    return int(hidden[-1]) if len(hidden) else in_dim


class StyleMLP(nn.Module):
    """Embeds the latent z before it is concatenated with the observation: MLP, a U(-1,1) linear layer, tanh."""

    def __init__(self, latent_dim: int = 64, hidden: Sequence[int] = (512, 256), out_dim: int = 64) -> None:
        super().__init__()
        self.body = mlp(latent_dim, hidden)
        self.out = _linear(_out_dim(latent_dim, hidden), out_dim, uniform=1.0)
        self.out_dim = out_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(self.body(z)))


class CalmActor(nn.Module):
    """π(a | s, z): ``mu = head(mlp(cat(obs, style(z))))``; a constant, unlearned log-std (default −2.9)."""

    def __init__(
        self,
        obs_dim: int = 223,
        latent_dim: int = 64,
        action_dim: int = 28,
        hidden: Sequence[int] = (1024, 1024, 512),
        style_hidden: Sequence[int] = (512, 256),
        style_dim: int = 64,
        log_std: float = -2.9,
    ) -> None:
        super().__init__()
        self.style = StyleMLP(latent_dim, style_hidden, style_dim)
        self.body = mlp(obs_dim + style_dim, hidden)
        self.mu = _linear(_out_dim(obs_dim + style_dim, hidden), action_dim)
        self.register_buffer("log_std", torch.full((action_dim,), float(log_std)))

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The action mean ``mu``, shape ``(B, action_dim)``, no output activation."""
        return self.mu(self.body(torch.cat([obs, self.style(z)], dim=-1)))


class CalmCritic(nn.Module):
    """V(s, z) on ``cat(obs, z)``; returns shape ``(B,)`` (in normalised-value units when values are normalised)."""

    def __init__(self, obs_dim: int = 223, latent_dim: int = 64, hidden: Sequence[int] = (1024, 1024, 512)) -> None:
        super().__init__()
        self.body = mlp(obs_dim + latent_dim, hidden)
        self.value = _linear(_out_dim(obs_dim + latent_dim, hidden), 1)

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.value(self.body(torch.cat([obs, z], dim=-1))).squeeze(-1)


class CalmEncoder(nn.Module):
    """E(window): a normalised ``num_steps``-step AMP window to a unit latent on S^(latent_dim−1)."""

    def __init__(
        self,
        amp_obs_dim: int = 125,
        num_steps: int = 60,
        latent_dim: int = 64,
        hidden: Sequence[int] = (1024, 1024, 512),
    ) -> None:
        super().__init__()
        in_dim = amp_obs_dim * num_steps
        self.in_dim = in_dim
        self.body = mlp(in_dim, hidden)
        self.out = _linear(_out_dim(in_dim, hidden), latent_dim, uniform=0.1)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        e = self.out(self.body(window.reshape(window.shape[0], self.in_dim)))
        return nn.functional.normalize(e, dim=-1)


class ConditionalDiscriminator(nn.Module):
    """D(o, z): a logit that the ``num_steps``-step AMP window ``o`` is a demo transition of the motion behind z.

    Same "style-cat" layout as the actor: ``logit(mlp(cat(window, style(z))))``, the logit layer U(−1,1), zero bias.
    """

    def __init__(
        self,
        amp_obs_dim: int = 125,
        num_steps: int = 10,
        latent_dim: int = 64,
        hidden: Sequence[int] = (1024, 1024, 512),
        style_hidden: Sequence[int] = (512, 256),
        style_dim: int = 64,
    ) -> None:
        super().__init__()
        self.in_dim = amp_obs_dim * num_steps
        self.style = StyleMLP(latent_dim, style_hidden, style_dim)
        self.body = mlp(self.in_dim + style_dim, hidden)
        self.logit = _linear(_out_dim(self.in_dim + style_dim, hidden), 1, uniform=1.0)

    def forward(self, window: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(B,)``."""
        x = torch.cat([window.reshape(window.shape[0], self.in_dim), self.style(z)], dim=-1)
        return self.logit(self.body(x)).squeeze(-1)

    def logit_weights(self) -> torch.Tensor:
        """The logit layer's weight matrix (for the logit regulariser)."""
        return self.logit.weight

    def linear_weights(self) -> list[torch.Tensor]:
        """Every Linear weight of D, the style MLP and the logit layer included (for the weight decay term)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Linear)]


class SkillActor(nn.Module):
    """The AnySkill high-level policy: ``mu = tanh(Linear(mlp(obs)))`` in R^action_dim; constant log-std −2.3."""

    def __init__(
        self,
        obs_dim: int = 223,
        action_dim: int = 64,
        hidden: Sequence[int] = (1024, 512),
        log_std: float = -2.3,
    ) -> None:
        super().__init__()
        self.body = mlp(obs_dim, hidden)
        self.mu = _linear(_out_dim(obs_dim, hidden), action_dim)
        self.register_buffer("log_std", torch.full((action_dim,), float(log_std)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mu(self.body(obs)))


class SkillCritic(nn.Module):
    """The AnySkill value network, a separate MLP on the observation; returns ``(B,)``."""

    def __init__(self, obs_dim: int = 223, hidden: Sequence[int] = (1024, 512)) -> None:
        super().__init__()
        self.body = mlp(obs_dim, hidden)
        self.value = _linear(_out_dim(obs_dim, hidden), 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value(self.body(obs)).squeeze(-1)
