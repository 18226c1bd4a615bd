"""TensorBoard scalars: an offset-based tailer for the readers (CLI, TUI) and a writer for our trainers.

Reading (:class:`MetricsTail`) follows docs/tui-ecosystem.md §2.4: each ``events.out.tfevents.*`` file is
read from a remembered byte offset; records are TFRecord-framed (``uint64 length``, ``uint32 masked
crc(length)``, data, ``uint32 masked crc(data)``) and decoded with the ``Event`` protobuf class shipped by
tensorboardX (or tensorboard's, when tensorboard is installed). CRCs are not checked. A record that is
not complete yet (the writer is mid-flush) stops the read; the next poll resumes at its start. A file
that shrank below the offset (truncated or rewritten) is read again from 0. New files (a resumed trainer
starts one) are picked up on every poll. A poll when nothing changed costs one ``glob`` + one ``stat`` per
file.

Where the files are looked for, under a run dir:

- ``metrics/`` (what :class:`MetricsWriter` writes: our trainers),
- ``output/*/summaries/`` (rl_games under the Isaac Gym runner: ``--output_path RUN_DIR/output``),
- the run dir itself.

All series share one tag namespace. Importing this module does not import torch: the ``Event`` class is
loaded without running ``tensorboardX/__init__`` (which imports torch when it is installed).

Writing (:class:`MetricsWriter`) wraps tensorboardX's ``SummaryWriter`` (imported when first used).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import struct
import sys
import threading
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Glob patterns (relative to a run dir) of the event files a run's readers follow.
EVENT_GLOBS: tuple[str, ...] = (
    "metrics/events.out.tfevents.*",
    "output/*/summaries/events.out.tfevents.*",
    "events.out.tfevents.*",
)
#: Where :class:`MetricsWriter` writes, relative to the run dir.
METRICS_SUBDIR = "metrics"

_HDR = struct.Struct("<QI")  # uint64 length, uint32 masked crc32c(length)
_HDR_LEN = 12
_FOOTER_LEN = 4  # uint32 masked crc32c(data)
_CHUNK = 8 << 20

Point = tuple[int, float, float]  # (step, wall_time, value)

_event_cls: Any = None
_event_lock = threading.Lock()


def _load_event_class() -> Any:
    """The ``Event`` protobuf message class, without importing torch."""
    global _event_cls
    if _event_cls is not None:
        return _event_cls
    with _event_lock:
        if _event_cls is not None:
            return _event_cls
        if "tensorboardX" in sys.modules:  # already paid for (a trainer process)
            from tensorboardX.proto import event_pb2

            _event_cls = event_pb2.Event
            return _event_cls
        if importlib.util.find_spec("tensorboard") is not None:
            try:
                from tensorboard.compat.proto import event_pb2 as tb_event_pb2

                _event_cls = tb_event_pb2.Event
                return _event_cls
            except Exception:  # pragma: no cover - a broken tensorboard install: fall back to tensorboardX
                pass
        spec = importlib.util.find_spec("tensorboardX")
        if spec is None or spec.origin is None:
            from anyskill_tui.errors import UserError

            raise UserError("reading metrics needs tensorboardX; install it with `pip install tensorboardX`")
        # tensorboardX/__init__ imports its writer, which imports torch. The generated *_pb2 modules only
        # need the package objects to exist: put bare package modules in place while importing them,
        # then take them away so a later `import tensorboardX` runs the real __init__.
        pkg_dir = Path(spec.origin).parent
        stubs: dict[str, types.ModuleType] = {}
        for name, path in (("tensorboardX", pkg_dir), ("tensorboardX.proto", pkg_dir / "proto")):
            if name not in sys.modules:
                mod = types.ModuleType(name)
                mod.__path__ = [str(path)]  # type: ignore[attr-defined]
                mod.__package__ = name
                sys.modules[name] = stubs[name] = mod
        try:
            event_pb2 = importlib.import_module("tensorboardX.proto.event_pb2")
        finally:
            for name, mod in stubs.items():
                if sys.modules.get(name) is mod:
                    del sys.modules[name]
        _event_cls = event_pb2.Event
        return _event_cls


def _collect(ev: Any, out: dict[str, list[Point]]) -> int:
    step, wall = int(ev.step), float(ev.wall_time)
    added = 0
    for v in ev.summary.value:
        if v.HasField("simple_value"):
            val = float(v.simple_value)
        elif v.HasField("tensor") and v.tensor.float_val:  # new-style scalar summaries
            val = float(v.tensor.float_val[0])
        elif v.HasField("tensor") and v.tensor.double_val:
            val = float(v.tensor.double_val[0])
        else:
            continue
        out.setdefault(v.tag, []).append((step, wall, val))
        added += 1
    return added


class EventTail:
    """Follows one event file from a byte offset; :meth:`poll` returns the complete records appended since."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.offset = 0
        self._size = -1
        self._mtime_ns = -1

    def changed(self) -> bool:
        """Cheap check: has the file's size or mtime moved since the last read? Resets on truncation."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        if st.st_size < self.offset:  # truncated or rewritten: start again
            self.offset = 0
        if st.st_size == self._size and st.st_mtime_ns == self._mtime_ns:
            return False
        self._size, self._mtime_ns = st.st_size, st.st_mtime_ns
        return st.st_size > self.offset

    def poll(self, out: dict[str, list[Point]], max_bytes: int = _CHUNK) -> int:
        """Append the new scalars to ``out`` (tag -> points); return how many were added."""
        event_cls = _load_event_class()
        added = 0
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below; loop reads chunks
        except FileNotFoundError:
            return 0
        with f:
            while True:
                f.seek(self.offset)
                buf = f.read(max_bytes)
                n = len(buf)
                pos = 0
                need = 0
                ev = event_cls()
                while pos + _HDR_LEN <= n:
                    (length, _crc) = _HDR.unpack_from(buf, pos)
                    end = pos + _HDR_LEN + length + _FOOTER_LEN
                    if end > n:
                        need = end - pos
                        break  # partial record: the writer is mid-flush; resume here next time
                    ev.ParseFromString(buf[pos + _HDR_LEN : pos + _HDR_LEN + length])
                    pos = end
                    if ev.HasField("summary"):
                        added += _collect(ev, out)
                self.offset += pos
                if pos == 0:
                    if n == max_bytes and need > n:  # one record bigger than the chunk: read it whole
                        max_bytes = need
                        continue
                    break
                if n < max_bytes:  # reached the end of the file
                    break
        return added


class MetricsTail:
    """Incremental reader of every event file of one run dir (see the module doc for where it looks).

    ``poll()`` returns ``{tag: [(step, wall_time, value), ...]}`` with only the points that appeared since
    the previous poll (the first poll returns everything), in file order (files by name, which embeds the
    creation time). :attr:`latest` holds the last point seen per tag. Not thread-safe: one poller per tail.
    """

    def __init__(self, run_dir: Path | str, globs: Sequence[str] = EVENT_GLOBS) -> None:
        self.run_dir = Path(run_dir)
        self.globs = tuple(globs)
        self.tails: dict[Path, EventTail] = {}
        self.latest: dict[str, Point] = {}

    def files(self) -> list[Path]:
        """The event files present now, sorted by name."""
        found: set[Path] = set()
        for pattern in self.globs:
            found.update(p for p in self.run_dir.glob(pattern) if p.is_file())
        return sorted(found, key=lambda p: (p.name, str(p)))

    def poll(self) -> dict[str, list[Point]]:
        out: dict[str, list[Point]] = {}
        for path in self.files():
            tail = self.tails.get(path)
            if tail is None:
                tail = self.tails[path] = EventTail(path)
            if tail.changed():
                tail.poll(out)
        for tag, pts in out.items():
            if pts:
                self.latest[tag] = pts[-1]
        return out


def downsample(xs: Sequence[float], ys: Sequence[float], max_points: int) -> tuple[list[float], list[float]]:
    """Min/max-bucket downsampling to at most ``max_points`` points, keeping spikes visible.

    The series is cut into ``max_points // 2`` buckets of consecutive points; each bucket contributes its
    minimum and its maximum (in x order). Series already short enough come back unchanged (as lists).
    """
    n = len(xs)
    if n != len(ys):
        raise ValueError(f"xs and ys differ in length ({n} != {len(ys)})")
    if max_points < 2:
        raise ValueError("max_points must be >= 2")
    if n <= max_points:
        return [float(x) for x in xs], [float(y) for y in ys]
    import numpy as np

    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    out_x: list[float] = []
    out_y: list[float] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if hi <= lo:
            continue
        seg = y[lo:hi]
        i_min = lo + int(np.argmin(seg))
        i_max = lo + int(np.argmax(seg))
        for i in sorted({i_min, i_max}):
            out_x.append(float(x[i]))
            out_y.append(float(y[i]))
    return out_x, out_y


class MetricsWriter:
    """Scalar writer for trainers: tensorboardX ``SummaryWriter`` into ``run_dir/metrics/``.

    Each instance (each trainer start) writes a new event file (unique name); :class:`MetricsTail` reads them
    all.
    """

    def __init__(self, run_dir: Path | str, *, flush_secs: int = 2) -> None:
        from tensorboardX import SummaryWriter

        self.logdir = Path(run_dir) / METRICS_SUBDIR
        self.logdir.mkdir(parents=True, exist_ok=True)
        # tensorboardX names files by the second: a suffix keeps two sessions in one second apart.
        suffix = f".{os.getpid()}.{time.monotonic_ns() % 10**9}"
        self._writer = SummaryWriter(logdir=str(self.logdir), flush_secs=flush_secs, filename_suffix=suffix)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self._writer.add_scalar(tag, float(value), int(step))

    def add_scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.add_scalar(tag, value, step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
