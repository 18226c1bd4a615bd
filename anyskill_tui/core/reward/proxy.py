"""The render-free proxy reward: an MLP from the 15 body positions to CLIP image space (spec §5.6, DESIGN.md).

**Input frame.** The reference fed raw env-frame positions. Our tracking camera (``CameraSpec``) follows the
root's *horizontal* position only, from a *fixed world azimuth*, at fixed heights. What it sees is therefore
invariant to the root's x-y translation and to nothing else: heading (which side of the body faces the camera)
and height (a jump, a crouch) both show in the image. So the input is exactly that invariance::

    x = flatten(p_b − (root_x, root_y, 0))  for the 15 bodies, world axes   (45 numbers)

It keeps the root height (the root's own row is (0, 0, z_root)) and the heading, and drops only what the camera
cancels. Root-relative *heading-aligned* positions would map a character seen from the front and from the back to
the same input although CLIP sees different images; raw positions would make the MLP learn a translation
invariance from data (and extrapolate badly once a skill walks away from where the data was).

**Network.** Flatten (45) -> a fixed input standardisation (mean/std of the training inputs, stored as buffers)
-> ``hidden`` Linear+ReLU layers (default 512, 512) -> Linear(D) -> L2 normalisation. D is the CLIP embedding
size (512 for ViT-B-32). Trained with the cosine loss ``1 − cos(pred, clip_image_feature)`` by
:mod:`anyskill_tui.core.reward.proxy_train`.

**File.** ``{"format": "anyskill.proxy/1", "config": {in_dim, hidden, out_dim, clip_model, clip_weights_id,
camera, raw_255_input}, "model": state_dict, "report": {...}}``. A proxy is only meaningful against the CLIP
model (and weights, camera and preprocessing) its targets came from: :meth:`ProxyModel.check_compatible`
refuses another CLIP model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from anyskill_tui.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.core.reward.clip import ClipRewardModel

__all__ = ["PROXY_FORMAT", "NUM_BODIES", "ProxyModel", "proxy_input", "agreement", "save_proxy"]

PROXY_FORMAT = "anyskill.proxy/1"
NUM_BODIES = 15


def proxy_input(body_pos: torch.Tensor) -> torch.Tensor:
    """(N, 15, 3) world body positions (or (N, 45)) -> (N, 45): positions minus the root's (x, y, 0), world axes."""
    p = body_pos.reshape(body_pos.shape[0], NUM_BODIES, 3)
    shift = torch.zeros_like(p[:, :1])
    shift[..., :2] = p[:, :1, :2]
    return (p - shift).reshape(p.shape[0], NUM_BODIES * 3)


class ProxyModel(nn.Module):
    """Body positions -> L2-normalised CLIP image feature (see the module docstring)."""

    def __init__(self, out_dim: int = 512, hidden: Sequence[int] = (512, 512), meta: Mapping[str, Any] | None = None):
        super().__init__()
        self.in_dim = NUM_BODIES * 3
        self.out_dim = int(out_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.meta: dict[str, Any] = dict(meta or {})
        self.register_buffer("in_mean", torch.zeros(self.in_dim))
        self.register_buffer("in_std", torch.ones(self.in_dim))
        layers: list[nn.Module] = []
        d = self.in_dim
        for h in self.hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, self.out_dim))
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def device(self) -> torch.device:
        return self.in_mean.device

    def set_input_stats(self, x: torch.Tensor) -> None:
        """Fix the input standardisation from training inputs (N, 45)."""
        self.in_mean.copy_(x.mean(0))
        self.in_std.copy_(x.std(0).clamp_min(1e-3))

    def forward(self, body_pos: torch.Tensor) -> torch.Tensor:
        """(N, 15, 3) world body positions -> (N, D) unit features."""
        x = proxy_input(body_pos.to(self.device, torch.float32))
        return F.normalize(self.net((x - self.in_mean) / self.in_std), dim=-1)

    # -------------------------------------------------------------------------------------------- files

    def config(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "hidden": list(self.hidden), "out_dim": self.out_dim, **self.meta}

    def check_compatible(self, clip: ClipRewardModel) -> None:
        """Refuse a CLIP model other than the one the proxy's targets came from (model name, embedding size)."""
        want = self.meta.get("clip_model")
        if clip.embed_dim != self.out_dim:
            raise UserError(
                f"the proxy predicts {self.out_dim}-d features but CLIP model {clip.model_id} has {clip.embed_dim}; "
                f"train a proxy for this model (`anyskill proxy train`)"
            )
        if want and want != clip.model_id:
            raise UserError(
                f"the proxy was trained against CLIP model {want}, not {clip.model_id}; use that model (--clip-model "
                f"{want}) or train a proxy for this one"
            )

    @classmethod
    def from_state(cls, state: Mapping[str, Any], source: str = "<state>", device: str | torch.device = "cpu"):
        if not isinstance(state, Mapping) or state.get("format") != PROXY_FORMAT:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise UserError(
                f"{source} is not a proxy checkpoint (format {found!r}, expected {PROXY_FORMAT!r}); train one with "
                "`anyskill proxy train`"
            )
        cfg = dict(state.get("config") or {})
        meta = {k: v for k, v in cfg.items() if k not in ("in_dim", "hidden", "out_dim")}
        try:
            model = cls(int(cfg["out_dim"]), cfg.get("hidden", (512, 512)), meta=meta)
            model.load_state_dict(state["model"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise UserError(f"{source}: a proxy checkpoint with missing or mismatched parts ({exc})") from None
        model.eval()
        return model.to(device)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> ProxyModel:
        from anyskill_tui.core.jobs.checkpoints import load_checkpoint

        state = load_checkpoint(Path(path), map_location="cpu")
        return cls.from_state(state, source=str(path), device=device)

    def state(self, report: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        out = {
            "format": PROXY_FORMAT,
            "config": self.config(),
            "model": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()},
            "report": dict(report or {}),
        }
        out.update(extra or {})
        return out


def save_proxy(path: str | Path, model: ProxyModel, report: Mapping[str, Any] | None = None) -> Path:
    """Write a proxy file atomically (no ``latest`` pointer)."""
    from anyskill_tui.core.jobs.checkpoints import save_checkpoint

    return save_checkpoint(Path(path), model.state(report), update_latest=False)


@torch.no_grad()
def agreement(pred: torch.Tensor, real: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, float]:
    """How well predicted features (N, D) agree with real CLIP image features (N, D) of the same states.

    - ``cosine``: mean cos(pred_i, real_i);
    - ``top1``: the fraction of states whose nearest real embedding (by cosine) to pred_i is real_i;
    - ``baseline_*``: the same with the predictions shuffled across states (a random derangement-like
      permutation): what an input-blind predictor of the right feature distribution would score;
    - ``chance_top1``: 1/N.
    """
    p = F.normalize(pred.float(), dim=-1)
    r = F.normalize(real.float(), dim=-1)
    n = p.shape[0]
    sim = p @ r.T
    top1 = (sim.argmax(dim=1) == torch.arange(n, device=p.device)).float().mean()
    perm = torch.randperm(n, generator=generator).to(p.device)
    if n > 1:
        perm = torch.where(perm == torch.arange(n, device=p.device), (perm + 1) % n, perm)
    ps = p[perm]
    base_sim = ps @ r.T
    base_top1 = (base_sim.argmax(dim=1) == torch.arange(n, device=p.device)).float().mean()
    return {
        "cosine": float((p * r).sum(-1).mean()),
        "top1": float(top1),
        "baseline_cosine": float((ps * r).sum(-1).mean()),
        "baseline_top1": float(base_top1),
        "chance_top1": 1.0 / max(n, 1),
        "n": int(n),
    }
