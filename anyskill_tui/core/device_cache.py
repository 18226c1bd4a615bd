"""Small constant tensors cached per device, so hot paths never index a CUDA tensor with a Python list.

Indexing a CUDA tensor with a list (or building a tensor from numpy on every call) copies the index from
pageable host memory, which synchronises the stream: in the LLC rollout such copies were ~450 host syncs per
epoch. These helpers build each constant once per (values, device, dtype) and reuse it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import torch


@functools.lru_cache(maxsize=512)
def _index(values: tuple[int, ...], device: str) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long, device=device)


def index_tensor(values: Iterable[int], device: torch.device | str) -> torch.Tensor:
    """A cached (len(values),) long tensor of `values` on `device`."""
    return _index(tuple(int(v) for v in values), str(torch.device(device)))


@functools.lru_cache(maxsize=128)
def _const(key: str, values: tuple, device: str, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def const_tensor(key: str, values, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """A cached float tensor of nested `values` (lists/tuples or a numpy array), named `key`, on `device`."""
    nested = values.tolist() if hasattr(values, "tolist") else values
    frozen = _freeze(nested)
    return _const(key, frozen, str(torch.device(device)), dtype)


def _freeze(v):
    return tuple(_freeze(x) for x in v) if isinstance(v, (list, tuple)) else float(v)
