import math

import numpy as np
import pytest
import torch

from anyskill_tui.core.learn.normalizer import RunningMeanStd


def test_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) * [1, 2, 3, 4] for n in (7, 50, 1, 300)]
    rms = RunningMeanStd(4)
    for b in batches:
        rms.update(torch.as_tensor(b, dtype=torch.float32))
    allx = np.concatenate(batches).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(rms.mean.numpy(), allx.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rms.var.numpy(), allx.var(0), rtol=1e-6)
    assert rms.count.item() == len(allx)


def test_pools_leading_dims_of_windows():
    x = torch.randn(5, 10, 3)
    rms = RunningMeanStd((3,))
    rms.update(x)
    flat = x.reshape(-1, 3).double()
    torch.testing.assert_close(rms.mean, flat.mean(0))
    torch.testing.assert_close(rms.var, flat.var(0, unbiased=False))
    with pytest.raises(ValueError):
        rms.update(torch.randn(4, 5))


def test_normalize_clamps_and_keeps_dtype():
    rms = RunningMeanStd(2, clip=5.0)
    rms.update(torch.tensor([[0.0, 0.0], [2.0, 2.0]]))  # mean 1, var 1
    y = rms.normalize(torch.tensor([[1.0, 3.0], [100.0, -100.0]]))
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, torch.tensor([[0.0, 2.0 / math.sqrt(1 + 1e-5)], [5.0, -5.0]]))
    torch.testing.assert_close(
        rms.denormalize(torch.tensor([[0.0, 1.0]])), torch.tensor([[1.0, 1.0 + math.sqrt(1 + 1e-5)]])
    )


def test_normalize_does_not_update_and_state_dict_round_trip():
    rms = RunningMeanStd(3)
    rms.update(torch.randn(20, 3) * 4 + 1)
    before = {k: v.clone() for k, v in rms.state_dict().items()}
    rms.normalize(torch.randn(100, 3) + 50)
    for k, v in rms.state_dict().items():
        torch.testing.assert_close(v, before[k])
    other = RunningMeanStd(3)
    other.load_state_dict(rms.state_dict())
    x = torch.randn(6, 3)
    torch.testing.assert_close(other.normalize(x), rms.normalize(x))
    assert other.count.item() == 20


def test_clear_cache_drops_casts_that_an_unversioned_write_left_stale():
    """A write that bumps no version counter (here through ``.data``; in training, a CUDA graph replaying
    ``update``) leaves the cached mean/std stale until ``clear_cache``."""
    rms = RunningMeanStd(3, clip=None)
    x = torch.ones(2, 3)
    assert torch.allclose(rms.normalize(x), x, atol=1e-4)  # count 0: identity up to eps
    rms.mean.data.fill_(1.0)
    assert torch.allclose(rms.normalize(x), x, atol=1e-4)  # the stale cache
    rms.clear_cache()
    assert torch.allclose(rms.normalize(x), torch.zeros(2, 3))


def test_update_counts_equals_updating_with_the_repeated_rows() -> None:
    g = torch.Generator().manual_seed(3)
    rows = torch.randn(50, 4, generator=g, dtype=torch.float64) * 3 + 1
    counts = torch.randint(0, 6, (50,), generator=g)
    prior = torch.randn(30, 4, generator=g, dtype=torch.float64)
    a, b = RunningMeanStd(4), RunningMeanStd(4)
    a.update(prior)
    b.update(prior)
    a.update(rows.repeat_interleave(counts, dim=0))
    b.update_counts(rows, counts.float())
    assert a.count == b.count == 30 + counts.sum()
    torch.testing.assert_close(b.mean, a.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b.var, a.var, rtol=1e-12, atol=1e-12)
