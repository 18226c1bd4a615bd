"""The LLC trainer's CUDA-graph paths (``ppo.cuda_graph``): a captured and replayed gradient step and (gpu engine)
rollout step train as the eager ones do, and resuming into a graphed trainer continues the same run; a
``GraphedCall`` draws from its registered generators what eager calls draw. CUDA only (skipped elsewhere)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from _skill_helpers import TINY_LLC as TINY

from anyskill_tui.core.learn.config import llc_config_from_dict
from anyskill_tui.core.learn.llc_train import LlcTrainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")]

#: the simulator of the real runs where it is installed; the learner is on CUDA either way
ENGINE = "gpu" if importlib.util.find_spec("mujoco_warp") and importlib.util.find_spec("warp") else "cpu"

#: the trainers of a test run one after the other, never interleaved: with the cpu engine they share the process's
#: global torch RNG (the learner is on CUDA, the env on the CPU), so interleaving two runs changes both (the first
#: version of this test did, and saw runs differ that were equal when run in turn; measured on one H200)


@pytest.fixture(scope="module")
def three_clips(tmp_path_factory):
    from anyskill_tui.paths import configs_dir

    star = configs_dir() / "motions" / "starter"
    lines = ["motions:"]
    for name in ("stand_idle", "walk_forward", "squat"):
        lines += [f"  - file: {star / (name + '.npy')}", "    weight: 1"]
    p = tmp_path_factory.mktemp("motions") / "three.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def _trainer(motions, graph: bool) -> LlcTrainer:
    # float32 and Adam eps 1e-4: the configuration whose graph/eager equality was measured on the H200 (0.0 apart
    # after 5 epochs, 2026-12-04)
    over = {
        "ppo.cuda_graph": graph,
        "ppo.cuda_graph_rollout": graph,
        "ppo.mixed_precision": False,
        "ppo.adam_eps": 1e-4,
    }
    cfg = llc_config_from_dict(TINY, overrides=over)
    tr = LlcTrainer(cfg, motions, engine=ENGINE, device="cuda", threads=1)
    for group in tr.opt.param_groups:  # the same Adam kernel on both paths (capturable keeps its step on device)
        group["capturable"] = True
    return tr


def _run(tr: LlcTrainer, epochs: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    for _ in range(epochs):
        metrics = tr.epoch_step()
    return _params(tr), metrics


def _params(tr: LlcTrainer) -> dict[str, torch.Tensor]:
    out = {}
    for name, m in (("actor", tr.actor), ("critic", tr.critic), ("encoder", tr.encoder), ("disc", tr.disc)):
        out.update({f"{name}.{k}": v.detach().float().clone() for k, v in m.state_dict().items()})
    for name, m in (("obs_norm", tr.obs_norm), ("amp_norm", tr.amp_norm)):
        out.update({f"{name}.{k}": v.detach().double().clone() for k, v in m.state_dict().items()})
    return out


def _assert_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    bad = [k for k in a if not torch.equal(a[k], b[k])]
    gap = max((float((a[k] - b[k]).abs().max()) for k in bad), default=0.0)
    assert not bad, f"{what}: {len(bad)} tensors differ (largest gap {gap:.3g}), e.g. {bad[:3]}"


def test_graphed_update_trains_as_the_eager_one(three_clips):
    """Epoch 1: the replay buffer is empty (eager steps); epoch 2: warm-up steps, capture, replays; epochs 3-5:
    replays only. The weights, the normalisers and the logged losses equal the eager run's bit for bit."""
    eager = _trainer(three_clips, False)
    assert not eager._graph_update
    init = _params(eager)
    pe, me = _run(eager, 5)
    assert eager._graph is None
    graphed = _trainer(three_clips, True)
    assert graphed._graph_update
    _assert_equal(_params(graphed), init, "the start")
    pg, mg = _run(graphed, 5)
    assert graphed._graph is not None and graphed._graph["graph"] is not None
    if ENGINE == "gpu":  # env and learner on one device: the rollout's acting and next values are replayed too
        assert graphed._rollout_graphs is not None and all(g.captured for g in graphed._rollout_graphs)
    assert max(float((pe[k] - init[k]).abs().max()) for k in pe if "norm" not in k) > 1e-3  # training moved them
    _assert_equal(pg, pe, "graph vs eager after 5 epochs")
    for key in ("losses/c_loss", "losses/conditional_disc_loss", "info/conditional_disc_reward_mean"):
        assert mg[key] == me[key], key


def test_resume_into_a_graphed_trainer_continues_the_run(three_clips):
    first = _trainer(three_clips, True)
    _run(first, 3)
    state = first.state_dict()
    p_first, _ = _run(first, 2)
    second = _trainer(three_clips, True)
    second.load_state_dict(state)
    assert second._graph is None
    assert all(g["capturable"] and g["fused"] for g in second.opt.param_groups)
    p_second, _ = _run(second, 2)
    assert second._graph is not None and second._graph["graph"] is not None
    _assert_equal(p_second, p_first, "resumed vs uninterrupted")


def test_graphed_call_draws_what_eager_calls_draw():
    """Replays of a captured function that draws from a custom CUDA generator and updates state in place give the
    eager calls' results, call for call (the warm-up calls, the capture and the replays)."""
    from anyskill_tui.core.learn.cuda_graph import GraphedCall

    def make():
        gen = torch.Generator(device="cuda")
        gen.manual_seed(5)
        state = torch.zeros(64, device="cuda")

        def fn(x: torch.Tensor) -> torch.Tensor:
            state.add_(torch.randn(64, generator=gen, device="cuda") * x)
            return state * 2.0 + torch.rand(64, generator=gen, device="cuda")

        return fn, gen, state

    fn_e, _, state_e = make()
    eager = [fn_e(torch.full((64,), float(i), device="cuda")).clone() for i in range(6)]
    fn_g, gen_g, state_g = make()
    call = GraphedCall(fn_g, [gen_g], warmup=2)
    graphed = [call(torch.full((64,), float(i), device="cuda")).clone() for i in range(6)]
    assert call.captured and call.calls == 6
    for i, (a, b) in enumerate(zip(eager, graphed, strict=True)):
        assert torch.equal(a, b), f"call {i} differs"
    assert torch.equal(state_e, state_g)
