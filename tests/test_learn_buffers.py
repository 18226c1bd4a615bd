import pytest
import torch

from anyskill_tui.core.learn.buffers import DemoBuffer, ReplayBuffer, RolloutStorage


def _pairs(start, n):
    ids = torch.arange(start, start + n, dtype=torch.float32)
    return ids[:, None, None].expand(n, 2, 3).clone(), ids[:, None].expand(n, 5).clone()


def test_demo_buffer_is_a_fifo_ring():
    buf = DemoBuffer(5, amp_shape=(2, 3), enc_shape=5)
    with pytest.raises(RuntimeError):
        buf.sample(1)
    buf.push(*_pairs(0, 3))
    assert len(buf) == 3 and not buf.full
    buf.push(*_pairs(3, 4))  # 0..6 pushed, 5 slots: 0 and 1 are gone
    assert buf.full
    assert sorted(buf.amp[:, 0, 0].tolist()) == [2, 3, 4, 5, 6]
    amp, enc = buf.sample(50, generator=torch.Generator().manual_seed(0))
    assert amp.shape == (50, 2, 3) and enc.shape == (50, 5)
    assert torch.equal(amp[:, 0, 0], enc[:, 0])  # pairs stay together
    assert set(amp[:, 0, 0].tolist()) <= {2, 3, 4, 5, 6}
    buf.push(*_pairs(100, 12))  # larger than capacity: the newest 5 survive
    assert sorted(buf.enc[:, 0].tolist()) == [107, 108, 109, 110, 111]
    with pytest.raises(ValueError):
        buf.push(torch.zeros(2, 2, 3), torch.zeros(3, 5))


def test_replay_buffer_keeps_few_once_full():
    g = torch.Generator().manual_seed(0)
    buf = ReplayBuffer(100, amp_shape=(2, 3), enc_shape=5, keep_prob=0.01)
    buf.push(*_pairs(0, 60), generator=g)
    assert len(buf) == 60
    buf.push(*_pairs(60, 60), generator=g)  # 40 fill the buffer; of the other 20 about 1% are kept
    assert buf.full
    before = buf.enc[:, 0].clone()
    buf.push(*_pairs(1000, 10000), generator=g)
    replaced = (buf.enc[:, 0] != before).sum().item()
    assert 50 < replaced < 100  # ~100 kept rows hit ~63 distinct random slots
    assert torch.equal(buf.amp[:, 0, 0], buf.enc[:, 0])
    none = ReplayBuffer(10, 1, 1, keep_prob=0.0)
    none.push(torch.zeros(10, 1), torch.zeros(10, 1))
    none.push(torch.ones(50, 1), torch.ones(50, 1))
    assert none.amp.sum() == 0


def test_buffers_state_dict_round_trip():
    for cls in (DemoBuffer, ReplayBuffer):
        buf = cls(8, amp_shape=(2, 3), enc_shape=5)
        buf.push(*_pairs(0, 6))
        other = cls(8, amp_shape=(2, 3), enc_shape=5)
        other.load_state_dict(buf.state_dict())
        assert len(other) == 6 and other.head == buf.head
        assert torch.equal(other.amp[:6], buf.amp[:6]) and torch.equal(other.enc[:6], buf.enc[:6])
        small = cls(4, amp_shape=(2, 3), enc_shape=5)
        with pytest.raises(ValueError):
            small.load_state_dict(buf.state_dict())


def test_amp_only_buffers_store_no_encoder_windows():
    """enc_shape=None (the LLC trainer's buffers): AMP windows alone, and a push with enc windows is refused."""
    g = torch.Generator().manual_seed(0)
    for cls in (DemoBuffer, ReplayBuffer):
        buf = cls(5, amp_shape=(2, 3), enc_shape=None)
        assert buf.enc is None
        amp, enc = _pairs(0, 7)
        buf.push(amp)
        assert len(buf) == 5
        idx = buf.sample_index(40, generator=g)
        assert idx.shape == (40,) and int(idx.max()) < 5
        got, none = buf.sample(4, generator=g)
        assert none is None and got.shape == (4, 2, 3)
        with pytest.raises(ValueError, match="enc windows"):
            buf.push(amp, enc)
        other = cls(5, amp_shape=(2, 3), enc_shape=None)
        other.load_state_dict(buf.state_dict())
        assert torch.equal(other.amp, buf.amp)
    fifo = DemoBuffer(5, amp_shape=(2, 3), enc_shape=None)
    fifo.push(_pairs(0, 7)[0])
    assert sorted(fifo.amp[:, 0, 0].tolist()) == [2, 3, 4, 5, 6]


def test_rollout_storage_minibatches_cover_every_sample_once():
    shapes = {"obs": (3,), "actions": (2,), "logp": (), "values": (), "rewards": (), "dones": (), "latents": (4,)}
    st = RolloutStorage(horizon=4, num_envs=5, shapes=shapes, dtypes={"dones": torch.bool})
    assert st["dones"].dtype == torch.bool and st["obs"].shape == (4, 5, 3)
    for t in range(4):
        ids = torch.arange(5) + 10 * t
        st.insert(t, obs=ids[:, None].float().expand(5, 3), values=ids.float(), dones=ids % 2 == 0)
    st.set("advantages", torch.arange(20, dtype=torch.float32).reshape(4, 5))
    with pytest.raises(ValueError):
        st.set("bad", torch.zeros(5, 4))
    seen = []
    mbs = list(st.minibatches(6, generator=torch.Generator().manual_seed(0)))
    assert [len(mb["obs"]) for mb in mbs] == [6, 6, 6, 2]
    for mb in mbs:
        assert torch.equal(mb["obs"][:, 0], mb["values"])  # fields stay aligned
        assert torch.equal(mb["dones"], mb["values"].long() % 2 == 0)
        seen += mb["values"].tolist()
    assert sorted(seen) == sorted(st.flat(["values"])["values"].tolist())
    assert len(list(st.minibatches(6, drop_last=True))) == 3
    first = next(st.minibatches(20, names=["advantages"], generator=torch.Generator().manual_seed(1)))
    assert set(first) == {"advantages"} and sorted(first["advantages"].tolist()) == list(range(20))
