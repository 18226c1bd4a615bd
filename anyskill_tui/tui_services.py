"""Services behind the TUI screens: data loading, metric/log tailing, train requests, frame sources.

Nothing here imports Textual, so every piece is testable on its own, and nothing here imports torch, mujoco or
warp at module level (they are imported inside the functions that need them, which the screens call from
thread workers). The screens (``anyskill_tui.screens.*``) call these functions from ``@work(thread=True)``
workers and hand the results to widgets.

Pieces:

- :func:`jobs` -- the run-lifecycle API of ``anyskill_tui.core.jobs`` (launcher, queue, metrics), or a
  :class:`FeatureUnavailable` error when this build does not have it.
- :class:`SkillQuery` / :class:`RunIndex` -- pages of the skills table with derived columns (best CLIP score
  from checkpoint metrics, last run), for a library of any size.
- :class:`RunMetrics` -- per-tag series of a run, grown from ``MetricsTail.poll()``, downsampled for charts.
- :class:`LogTail` -- offset-based tail of ``train.log``.
- :class:`TrainRequest` -- the Train dialog's validated form, its resolved config and the queueing.
- :class:`FrameSource` and its implementations -- what the Replay screen plays.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from anyskill_tui.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from anyskill_tui.store.library import Library
    from anyskill_tui.store.models import Checkpoint, Run, Skill
    from anyskill_tui.workspace import Workspace


class FeatureUnavailable(UserError):
    """A core API the TUI calls is not in this build yet (the message says which)."""


def not_available(what: str) -> FeatureUnavailable:
    return FeatureUnavailable(f"{what}: not available in this build yet")


# -- core.jobs ---------------------------------------------------------------------------------------


def jobs() -> SimpleNamespace:
    """``launcher``, ``queue`` and ``metrics`` of ``anyskill_tui.core.jobs``; FeatureUnavailable if absent."""
    import importlib

    mods = {}
    for name in ("launcher", "queue", "metrics"):
        try:
            mods[name] = importlib.import_module(f"anyskill_tui.core.jobs.{name}")
        except ImportError as exc:
            raise not_available(f"run management (anyskill_tui.core.jobs.{name}: {exc})") from None
    return SimpleNamespace(**mods)


# -- formatting --------------------------------------------------------------------------------------


def fmt_time(dt: datetime | None) -> str:
    """``YYYY-MM-DD HH:MM`` in UTC, or ``—``."""
    if dt is None:
        return "—"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def fmt_duration(seconds: float | None) -> str:
    """``1h02m`` / ``3m05s`` / ``12s``, or ``—``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def fmt_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


#: checkpoint metric keys that hold the CLIP similarity, best first
CLIP_KEYS = ("clip_similarity", "clip_score", "best_clip", "similarity", "clip")


def clip_score(metrics: dict[str, Any]) -> float | None:
    """The CLIP similarity in a checkpoint's metrics (first of :data:`CLIP_KEYS`, then any key with 'clip')."""
    for key in CLIP_KEYS:
        v = metrics.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    for key, v in sorted(metrics.items()):
        if ("clip" in key or "similarity" in key) and isinstance(v, int | float) and math.isfinite(v):
            return float(v)
    return None


def best_checkpoint(ckpts: Sequence[Checkpoint]) -> tuple[Checkpoint | None, float | None]:
    """The checkpoint with the highest CLIP score (else the last one) and that score."""
    best, best_s = None, None
    for c in ckpts:
        s = clip_score(c.metrics)
        if s is not None and (best_s is None or s > best_s):
            best, best_s = c, s
    if best is None and ckpts:
        best = ckpts[-1]
    return best, best_s


# -- skills table ------------------------------------------------------------------------------------

SORT_KEYS = ("created", "prompt", "status", "score", "last run")


@dataclass(frozen=True)
class SkillRow:
    """One row of the skills table."""

    id: int
    text: str
    status: str
    score: float | None
    last_run: str
    tags: str
    created: str
    last_run_id: int | None = None

    def cells(self) -> tuple[str, ...]:
        return (str(self.id), self.text, self.status, fmt_score(self.score), self.last_run, self.tags, self.created)


class RunIndex:
    """All runs of a library grouped by skill, and the best CLIP score per run (cached for ended runs)."""

    def __init__(self, lib: Library) -> None:
        self.lib = lib
        self.by_skill: dict[int, list[Run]] = {}
        self._scores: dict[int, tuple[Checkpoint | None, float | None]] = {}
        self.refresh()

    def refresh(self) -> None:
        by: dict[int, list[Run]] = {}
        for r in self.lib.list_runs():  # newest first
            if r.skill_id is not None:
                by.setdefault(r.skill_id, []).append(r)
        self.by_skill = by

    def last_run(self, skill_id: int) -> Run | None:
        runs = self.by_skill.get(skill_id)
        return runs[0] if runs else None

    def run_best(self, run: Run) -> tuple[Checkpoint | None, float | None]:
        assert run.id is not None
        if run.id in self._scores:
            return self._scores[run.id]
        res = best_checkpoint(self.lib.list_checkpoints(run.id))
        if run.status in ("done", "failed", "stopped"):
            self._scores[run.id] = res
        return res

    def skill_best(self, skill_id: int) -> tuple[Checkpoint | None, float | None]:
        """The skill's best checkpoint over all its runs (by CLIP score; else the newest) and its score."""
        best, best_s, fallback = None, None, None
        for r in self.by_skill.get(skill_id, []):
            c, s = self.run_best(r)
            if c is not None and fallback is None:
                fallback = c
            if s is not None and (best_s is None or s > best_s):
                best, best_s = c, s
        return (best or fallback), best_s


def skill_row(sk: Skill, index: RunIndex) -> SkillRow:
    assert sk.id is not None
    last = index.last_run(sk.id)
    _, score = index.skill_best(sk.id)
    return SkillRow(
        id=sk.id,
        text=sk.text,
        status=sk.status,
        score=score,
        last_run=f"#{last.id} {last.status}" if last else "—",
        tags=", ".join(sk.tag_list),
        created=fmt_time(sk.created_at),
        last_run_id=last.id if last else None,
    )


class SkillQuery:
    """Pages of the skills table for a search and a sort order.

    The default order (created, i.e. by id) pages through the database (``limit``/``offset``), so the first
    page of a 10,000-skill library costs one small query. Any other order needs every matching skill: they are
    loaded once per (search) and sorted in memory (a thread worker does it; the table shows a page at a time).
    """

    def __init__(self, lib: Library) -> None:
        self.lib = lib
        self.index = RunIndex(lib)
        self._sorted: tuple[tuple[str, str, bool], list[SkillRow]] | None = None

    def invalidate(self) -> None:
        self._sorted = None
        self.index.refresh()

    def page(
        self, search: str = "", sort: str = "created", descending: bool = False, offset: int = 0, limit: int = 200
    ) -> tuple[list[SkillRow], bool]:
        """Rows ``offset .. offset+limit`` and whether more follow."""
        search = search.strip()
        if sort == "created" and not descending:
            skills = self.lib.list_skills(search=search or None, limit=limit + 1, offset=offset)
            rows = [skill_row(s, self.index) for s in skills[:limit]]
            return rows, len(skills) > limit
        key = (search, sort, descending)
        if self._sorted is None or self._sorted[0] != key:
            rows = [skill_row(s, self.index) for s in self.lib.list_skills(search=search or None)]
            rows.sort(key=_sort_key(sort), reverse=descending)
            if sort in ("score", "last run") and not descending:
                rows.sort(key=lambda r: (r.score if sort == "score" else r.last_run_id) is None)
            self._sorted = (key, rows)
        rows = self._sorted[1]
        return rows[offset : offset + limit], offset + limit < len(rows)


def _sort_key(sort: str):
    if sort == "prompt":
        return lambda r: r.text.lower()
    if sort == "status":
        return lambda r: (r.status, r.id)
    if sort == "score":
        return lambda r: (r.score is None, -(r.score or 0.0), r.id)
    if sort == "last run":
        return lambda r: (r.last_run_id is None, -(r.last_run_id or 0))
    return lambda r: r.id


# -- runs ----------------------------------------------------------------------------------------------


def run_dir_of(workspace: Workspace, run: Run) -> Path:
    """The run's folder: its ``run_dir`` column (relative to the workspace unless absolute), else the launcher's
    choice, else ``runs/<id>``."""
    if run.run_dir:
        p = Path(run.run_dir)
        return p if p.is_absolute() else workspace.root / p
    try:
        return Path(jobs().launcher.run_dir_for(workspace, run.id))
    except (UserError, Exception):
        return workspace.runs_dir / str(run.id)


def read_progress(run_dir: Path) -> dict[str, Any]:
    """``run_dir/progress.json`` as a dict ({} when absent or unreadable: it may be mid-write)."""
    try:
        data = json.loads((run_dir / "progress.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _num(d: dict[str, Any], *keys: str) -> float | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


@dataclass(frozen=True)
class RunRow:
    """One row of the runs table."""

    id: int
    kind: str
    prompt: str
    status: str
    progress: float | None
    samples_per_s: float | None
    elapsed_s: float | None
    eta_s: float | None
    engine: str = ""

    def cells(self) -> tuple[str, ...]:
        prog = "—" if self.progress is None else f"{100 * self.progress:5.1f}%"
        sps = "—" if self.samples_per_s is None else f"{self.samples_per_s:,.0f}"
        return (
            str(self.id),
            self.kind,
            self.prompt or "—",
            self.status,
            prog,
            sps,
            fmt_duration(self.elapsed_s),
            fmt_duration(self.eta_s),
        )


def progress_fields(prog: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """(fraction done, samples/s, eta seconds) from a progress dict with whatever keys it has."""
    frac = _num(prog, "fraction", "progress", "frac")
    if frac is not None and frac > 1.0:
        frac = frac / 100.0
    if frac is None:
        done = _num(prog, "step", "epoch", "iteration", "steps", "samples")
        total = _num(prog, "total", "total_steps", "epochs", "total_epochs", "max_epochs", "iterations")
        if done is not None and total:
            frac = min(1.0, done / total)
    sps = _num(prog, "samples_per_s", "samples_per_sec", "sps", "fps", "steps_per_s")
    eta = _num(prog, "eta_s", "eta", "eta_seconds")
    return frac, sps, eta


def run_row(run: Run, workspace: Workspace, texts: dict[int, str], now: datetime | None = None) -> RunRow:
    assert run.id is not None
    now = now or datetime.now(UTC)
    started, ended = _aware(run.started_at), _aware(run.ended_at)
    elapsed = ((ended or now) - started).total_seconds() if started else None
    prog: dict[str, Any] = {}
    if run.run_dir or started:
        prog = read_progress(run_dir_of(workspace, run))
    if not prog and getattr(run, "step", None) is not None:
        prog = {"step": run.step, "total": getattr(run, "total_steps", None)}
    frac, sps, eta = progress_fields(prog)
    if run.status == "done":
        frac, eta = 1.0, 0.0
    elif eta is None and frac and elapsed and 0 < frac < 1 and run.status == "running":
        eta = elapsed * (1 - frac) / frac
    if run.status != "running":
        eta = None if run.status != "done" else eta
    prompt = texts.get(run.skill_id, "") if run.skill_id is not None else ""
    if not prompt:
        cfg = run.config
        prompt = str(cfg.get("prompt") or cfg.get("text") or "")
    return RunRow(run.id, run.kind, prompt, run.status, frac, sps, elapsed, eta, run.engine)


# -- metrics -------------------------------------------------------------------------------------------

#: metric tags to show first for a run kind, matched as lowercase substrings of the tag names
PREFERRED_TAGS: dict[str, tuple[str, ...]] = {
    "skill": ("clip", "similarity", "style", "episode_len", "ep_len", "episode_length", "samples_per_s", "sps"),
    "llc": ("disc_reward", "disc", "fall"),
    "proxy": ("loss", "agreement"),
}


def default_tags(kind: str, tags: Iterable[str], n: int = 4) -> list[str]:
    """The tags to chart first for a run of ``kind``: the preferred ones that exist, else the first ``n``."""
    tags = sorted(tags)
    chosen: list[str] = []
    for pat in PREFERRED_TAGS.get(kind, ()):
        for t in tags:
            if pat in t.lower() and t not in chosen:
                chosen.append(t)
    if not chosen:
        chosen = tags[:n]
    return chosen[:n]


def downsample(xs: Any, ys: Any, max_points: int) -> tuple[Any, Any]:
    """Min/max-bucket downsampling (``core.jobs.metrics.downsample`` when present)."""
    try:
        from anyskill_tui.core.jobs.metrics import downsample as core_downsample
    except ImportError:
        core_downsample = None
    if core_downsample is not None:
        return core_downsample(xs, ys, max_points)
    import numpy as np

    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    n = len(xs)
    if n <= max_points or max_points < 4:
        return xs, ys
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(int)
    ox, oy = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b <= a:
            continue
        seg = ys[a:b]
        i, j = a + int(np.argmin(seg)), a + int(np.argmax(seg))
        for k in sorted({i, j}):
            ox.append(xs[k])
            oy.append(ys[k])
    return np.asarray(ox), np.asarray(oy)


class RunMetrics:
    """The scalar series of one run, grown from ``MetricsTail(run_dir).poll()`` (new points only)."""

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        self._tail: Any = None
        self.series: dict[str, tuple[list[float], list[float]]] = {}

    def poll(self) -> bool:
        """Read what is new; True when any point arrived. Raises FeatureUnavailable without core.jobs."""
        if self._tail is None:
            self._tail = jobs().metrics.MetricsTail(self.run_dir)
        new = self._tail.poll() or {}
        got = False
        for tag, points in new.items():
            xs, ys = self.series.setdefault(tag, ([], []))
            for step, _wall, value in points:
                xs.append(float(step))
                ys.append(float(value))
                got = True
        return got

    def tags(self) -> list[str]:
        return sorted(self.series)

    def xy(self, tag: str, max_points: int) -> tuple[Any, Any]:
        xs, ys = self.series.get(tag, ([], []))
        return downsample(xs, ys, max(8, max_points))

    def last(self, tag: str) -> float | None:
        ys = self.series.get(tag, ([], []))[1]
        return ys[-1] if ys else None


class LogTail:
    """New complete lines of a growing text file (offset-based; restarts when the file shrinks)."""

    def __init__(self, path: Path | str, max_bytes: int = 1 << 20) -> None:
        self.path = Path(path)
        self.offset = 0
        self.max_bytes = max_bytes
        self._partial = b""

    def poll(self) -> list[str]:
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.offset:
            self.offset, self._partial = 0, b""
        if size == self.offset:
            return []
        if self.offset == 0 and size > self.max_bytes:  # first read of a big log: only its end
            self.offset = size - self.max_bytes
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            buf = f.read(self.max_bytes)
        self.offset += len(buf)
        data = self._partial + buf
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return [ln.decode("utf-8", "replace").rstrip("\r") for ln in lines]


# -- train requests ---------------------------------------------------------------------------------

ENGINES = ("cpu", "gpu", "isaacgym")
REWARDS = ("render", "proxy")
#: what the Train dialog queues: skill policies for prompts, or the CALM low-level controller on motions
TRAIN_MODES = ("skill", "llc")
#: LLC run-config keys an override may set besides the llc config's own (``threads=1``, ``time_budget_s=600``)
LLC_RUN_KEYS = ("device", "threads", "time_budget_s", "keep_checkpoints")


@dataclass
class TrainRequest:
    """The Train dialog's form, validated.

    ``mode`` "skill": one run of kind ``skill`` per prompt, its config resolved from ``configs/skill.yaml`` (as
    ``anyskill train`` does); "llc": one run of kind ``llc`` on the ``motions`` dataset, its config resolved from
    ``configs/llc.yaml`` (as ``anyskill llc train`` does). ``overrides``: dotted ``key=value`` settings applied
    after the form's fields (they win).
    """

    prompts: list[str]
    engine: str = "cpu"
    envs: int = 16
    llc_checkpoint: str = ""
    reward: str = "render"
    epochs: int = 100
    toy: bool = False
    mode: str = "skill"
    motions: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    #: the resolved config (``config()``) of every run, filled by :func:`parse_train_form`
    resolved: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "llc" if self.mode == "llc" else "skill"

    def config(self, prompt: str | None = None) -> dict[str, Any]:
        """The resolved config of one run (``prompt``: the skill run's prompt; ignored for an LLC run).

        Raises :class:`FormError` when the config does not validate."""
        if self.toy:  # the test-only toy trainer (core.jobs.trainers.train_toy): epochs -> steps
            return {
                "prompt": prompt,
                "engine": self.engine,
                "num_envs": self.envs,
                "epochs": self.epochs,
                "trainer": "toy",
                "steps": self.epochs,
                "step_s": 0.05,
                "ckpt_every": 10,
                **self.overrides,
            }
        if self.mode == "llc":
            return self._llc_config()
        if self.engine == "isaacgym":
            return self._isaacgym_config(prompt)
        return self._skill_config(prompt)

    def _llc_config(self) -> dict[str, Any]:
        from anyskill_tui.core.learn.config import load_llc_config

        run_keys = {k: v for k, v in self.overrides.items() if k in LLC_RUN_KEYS}
        sets = {"env.num_envs": self.envs, "ppo.max_epochs": self.epochs}
        sets.update({k: v for k, v in self.overrides.items() if k not in LLC_RUN_KEYS})
        try:
            cfg = load_llc_config(None, overrides=sets)
        except UserError as exc:
            raise FormError("overrides", f"LLC config: {exc.message}") from None
        return llc_run_config(cfg.to_dict(), self.motions, self.engine, **run_keys)

    def _skill_config(self, prompt: str | None) -> dict[str, Any]:
        from anyskill_tui.core.learn.skill_config import load_skill_config, skill_config_from_dict

        sets: dict[str, Any] = {
            "env.num_envs": self.envs,
            "env.engine": self.engine,
            "ppo.max_epochs": self.epochs,
            "reward.mode": self.reward,
        }
        if self.llc_checkpoint:
            sets["llc.path"] = self.llc_checkpoint
        sets.update(self.overrides)
        try:
            cfg = load_skill_config(None, overrides=sets)
            data = cfg.to_dict()
            if prompt is not None:
                data["prompts"] = [{"text": prompt, "weight": 1.0}]
                skill_config_from_dict(data, source="the resolved config")
        except UserError as exc:
            raise FormError("overrides", f"skill config: {exc.message}") from None
        if cfg.reward.mode == "proxy" and not cfg.reward.proxy:
            raise FormError(
                "reward", "reward proxy needs a proxy checkpoint: add reward.proxy=PATH to the overrides, or use render"
            )
        return data

    def _isaacgym_config(self, prompt: str | None) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "num_envs": self.envs,
            "max_iterations": self.epochs,
            "llc_checkpoint": self.llc_checkpoint or None,
            "reward": self.reward,
            "texts": [{"text": prompt, "weight": 1.0}] if prompt else [],
        }
        cfg.update(self.overrides)
        missing = [k for k in ("anyskill_repo", "motion_file") if not cfg.get(k)]
        if missing:
            raise FormError(
                "overrides", f"isaacgym runs need {' and '.join(f'{k}=PATH' for k in missing)} in the overrides"
            )
        return cfg


def llc_run_config(llc: dict[str, Any], motions: str | Path, engine: str, **run_keys: Any) -> dict[str, Any]:
    """An LLC run's config, the shape ``core.learn.llc_train.run_config`` builds (without importing torch:
    the dialog validates on every key press; ``tests/test_tui_app.py`` checks the two agree)."""
    rc: dict[str, Any] = {
        "llc": llc,
        "motions": str(Path(motions).expanduser().absolute()),
        "engine": engine,
        "device": "auto",
        "threads": None,
        "time_budget_s": None,
        "keep_checkpoints": None,
    }
    rc.update(run_keys)
    return rc


class FormError(UserError):
    """A bad field of a form: ``field`` names the input to focus."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def parse_overrides(text: str) -> dict[str, Any]:
    """``key=value`` lines (dotted keys; values read as YAML: ``1e-4``, ``true``, ``[16, 16]``); blank lines and
    ``#`` comments are skipped. Raises :class:`FormError` (field ``overrides``) naming the bad line."""
    import yaml

    out: dict[str, Any] = {}
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        key = key.strip()
        if not sep or not key or any(not part or " " in part for part in key.split(".")):
            raise FormError("overrides", f"overrides line {i}: expected key=value, e.g. ppo.learning_rate=1e-4")
        try:
            out[key] = yaml.safe_load(raw.strip()) if raw.strip() else None
        except yaml.YAMLError:
            out[key] = raw.strip()
    return out


def _whole(name: str, text: str) -> int:
    try:
        n = int(text.strip())
    except ValueError:
        raise FormError(name, f"{name} must be a whole number > 0, got {text.strip()!r}") from None
    if n <= 0:
        raise FormError(name, f"{name} must be > 0, got {n}")
    return n


def _motions_path(text: str, base: Path | None) -> Path:
    from anyskill_tui.core.motion.dataset import read_dataset_entries

    raw = text.strip()
    if not raw:
        starter = shipped_starter()
        if starter is None:
            raise FormError("motions", "give a motion dataset (motions.yaml or a .npy clip)")
        return starter
    p = Path(raw).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    if not p.exists():
        raise FormError("motions", f"motion dataset {raw}: no such file (give a motions.yaml or a .npy clip)")
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            read_dataset_entries(p)
        except (ValueError, OSError) as exc:
            raise FormError("motions", " ".join(str(exc).split())) from None
    elif p.suffix.lower() != ".npy":
        raise FormError("motions", f"motion dataset {raw}: give a motions.yaml or a .npy clip")
    return p


def parse_train_form(
    prompts_text: str,
    engine: str,
    envs: str,
    llc_checkpoint: str,
    reward: str,
    epochs: str,
    *,
    base: Path | None = None,
    toy: bool = False,
    mode: str = "skill",
    motions: str = "",
    overrides: str = "",
) -> TrainRequest:
    """Validate the Train dialog's fields and resolve every run's config (raises :class:`FormError` naming the
    field)."""
    from anyskill_tui.store.prompts import check_text

    if mode not in TRAIN_MODES:
        raise FormError("mode", f"train must be one of {', '.join(TRAIN_MODES)}")
    prompts: list[str] = []
    if mode == "skill":
        for i, line in enumerate(prompts_text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                p = check_text(line)
            except UserError as exc:
                raise FormError("prompts", f"prompt line {i}: {exc.message}") from None
            if p.lower() not in (q.lower() for q in prompts):
                prompts.append(p)
        if not prompts:
            raise FormError("prompts", "give at least one prompt (one per line), e.g. 'jump forward'")
    if engine not in ENGINES:
        raise FormError("engine", f"engine must be one of {', '.join(ENGINES)}")
    if mode == "llc" and engine == "isaacgym" and not toy:
        raise FormError("engine", "LLC runs from here train on cpu or gpu (isaacgym: `anyskill queue`)")
    n_envs = _whole("envs", envs)
    n_epochs = _whole("epochs", epochs)
    if reward not in REWARDS:
        raise FormError("reward", f"reward must be one of {', '.join(REWARDS)}")
    llc = llc_checkpoint.strip()
    if llc and mode == "skill":
        p = Path(llc).expanduser()
        if not p.is_absolute() and base is not None:
            p = base / p
        if not p.exists():
            raise FormError("llc", f"LLC checkpoint {llc}: no such file (give the path of an LLC .pt, or leave empty)")
        llc = str(p)
    else:
        llc = ""  # the skill trainer takes the workspace's default LLC (it reports a missing one itself)
    motions_path = str(_motions_path(motions, base)) if mode == "llc" else ""
    req = TrainRequest(
        prompts,
        engine,
        n_envs,
        llc,
        reward,
        n_epochs,
        toy=toy,
        mode=mode,
        motions=motions_path,
        overrides=parse_overrides(overrides),
    )
    req.resolved = [req.config(p) for p in prompts] if mode == "skill" else [req.config()]
    return req


def to_yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)


def short_paths(text: str, workspace_root: Path | None = None) -> str:
    """``text`` with the package's configs folder shown as ``<configs>`` and the workspace as ``<workspace>``
    (the dialog's preview: shorter, and the same on every machine)."""
    from anyskill_tui.paths import configs_dir

    for path, name in ((configs_dir(), "<configs>"), (workspace_root, "<workspace>")):
        if path is not None:
            text = text.replace(str(Path(path).absolute()), name)
    return text


def toy_trainer_enabled() -> bool:
    return os.environ.get("ANYSKILL_ENABLE_TOY_TRAINER", "") not in ("", "0", "false", "no")


def queue_training(workspace: Workspace, lib: Library, req: TrainRequest, *, start: bool = True) -> list[Run]:
    """Enqueue the request's runs (``core.jobs.queue.enqueue``) and (``start``) launch them detached.

    skill: finds or adds each prompt's skill and queues one ``skill`` run per prompt, its LLC resolved as
    ``anyskill train`` does (``llc.path``, the shipped default, else the newest finished LLC run); llc: one
    ``llc`` run on the dataset. The run dir gets the resolved ``config.yaml``.
    """
    j = jobs()
    runs: list[Run] = []
    if req.mode == "llc":
        runs.append(j.queue.enqueue(lib, "llc", req.engine, config=req.config()))
    else:
        if not req.toy and req.engine != "isaacgym" and req.prompts:
            # no CLIP weights: one clear error in the dialog now, before any skill or Run exists (as the CLI does)
            from anyskill_tui.commands.train import preflight_clip
            from anyskill_tui.core.learn.skill_config import skill_config_from_dict

            preflight_clip(skill_config_from_dict(req.config(req.prompts[0])).clip)
        for prompt in req.prompts:
            skill = lib.find_skill(prompt) or lib.add_skill(prompt)
            cfg = req.config(skill.text)
            if not req.toy and req.engine != "isaacgym":
                cfg = _finish_skill_config(cfg, skill, lib, workspace)
            runs.append(j.queue.enqueue(lib, "skill", req.engine, skill=skill.id, config=cfg))
    for run in runs:
        if not req.toy:
            try:
                d = j.launcher.resolve_run_dir(workspace, run)
                d.mkdir(parents=True, exist_ok=True)
                (d / "config.yaml").write_text(to_yaml(run.config))
            except OSError:
                pass  # the runner reports an unwritable run dir itself
    if start:
        for run in runs:
            j.launcher.start_run(workspace, run.id)
    return runs


def _finish_skill_config(cfg: dict[str, Any], skill: Skill, lib: Library, workspace: Workspace) -> dict[str, Any]:
    """What ``anyskill train`` adds to a skill run's config: the LLC path, the engine, the skill's weight and id."""
    from anyskill_tui.commands.train import resolve_engine, resolve_llc

    cfg = dict(cfg)
    llc = dict(cfg.get("llc") or {})
    llc["path"] = str(resolve_llc(None, llc.get("path"), lib, workspace.root))
    cfg["llc"] = llc
    cfg["env"] = {**(cfg.get("env") or {}), "engine": resolve_engine((cfg.get("env") or {}).get("engine") or "auto")}
    cfg["prompts"] = [{"text": skill.text, "weight": float(skill.weight)}]
    cfg["skill_ids"] = [skill.id]
    cfg["workspace"] = str(workspace.root)
    return cfg


def stop_run(workspace: Workspace, run_id: int, grace_s: float = 5.0) -> None:
    jobs().launcher.stop_run(workspace, run_id, grace_s)


def resume_run(workspace: Workspace, run_id: int) -> Any:
    return jobs().launcher.resume_run(workspace, run_id)


# -- frame sources ------------------------------------------------------------------------------------


@runtime_checkable
class FrameSource(Protocol):
    """Frames to play in the Replay screen: a motion clip, a folder of images, later a trained skill.

    ``frames(size)`` yields RGB uint8 arrays (H, W, 3) fitting in ``size`` = (width, height) pixels;
    ``len()`` is the number of frames; ``fps`` the playback rate; ``name`` a label.
    """

    name: str
    fps: float

    def __len__(self) -> int: ...

    def frames(self, size: tuple[int, int]) -> Iterator[np.ndarray]: ...


IMAGE_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".webp")


def _fit(img: Any, size: tuple[int, int]) -> Any:
    """A PIL image scaled to fit ``size`` keeping its aspect, as an RGB uint8 array."""
    import numpy as np
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    scale = min(size[0] / w, size[1] / h)
    if abs(scale - 1.0) > 1e-6:
        img = img.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _image_frames(path: Path) -> Iterator[Any]:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        for frame in ImageSequence.Iterator(im):
            yield frame.copy()


def _count_frames(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return int(getattr(im, "n_frames", 1))


@dataclass
class DirectoryFrameSource:
    """The PNG/JPEG/GIF files of a folder in name order (every frame of an animated GIF), or one image file."""

    path: Path
    fps: float = 15.0
    name: str = ""
    files: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif self.path.is_file() and self.path.suffix.lower() in IMAGE_SUFFIXES:
            self.files = [self.path]
        else:
            raise UserError(f"{self.path}: not a folder of frames or an image (.png, .gif, .jpg)")
        if not self.files:
            raise UserError(f"{self.path}: no frames in it (.png, .gif, .jpg files)")
        self.name = self.name or self.path.name
        self._len = sum(_count_frames(p) if p.suffix.lower() == ".gif" else 1 for p in self.files)

    def __len__(self) -> int:
        return self._len

    def frames(self, size: tuple[int, int]) -> Iterator[Any]:
        for p in self.files:
            for im in _image_frames(p):
                yield _fit(im, size)


@dataclass
class ArrayFrameSource:
    """Frames already in memory (tests, generated previews)."""

    images: list[Any]
    fps: float = 15.0
    name: str = "frames"

    def __len__(self) -> int:
        return len(self.images)

    def frames(self, size: tuple[int, int]) -> Iterator[Any]:
        from PIL import Image

        for a in self.images:
            yield _fit(Image.fromarray(a), size)


@dataclass
class ClipFrameSource:
    """Kinematic playback of a motion clip.

    Frames come from, first match: a cached GIF (``cache_dir/<name>-<px>.gif``); MuJoCo's offscreen renderer
    (``core.motion.render.render_frames``, which imports torch and mujoco: call from a worker), whose result is
    cached; a stick-figure drawing of the clip's bodies (PIL) when rendering is impossible (no GL).
    ``renderer``: "auto" (the above), "mujoco" or "skeleton".
    """

    path: Path
    cache_dir: Path | None = None
    renderer: str = "auto"
    name: str = ""
    fps: float = 30.0
    used: str = ""

    def __post_init__(self) -> None:
        from anyskill_tui.core.motion.clip import ClipError, read_clip

        self.path = Path(self.path)
        try:
            self.clip = read_clip(self.path)
        except (ClipError, OSError) as exc:
            raise UserError(" ".join(str(exc).split())) from None
        self.name = self.name or self.clip.name
        self.fps = float(self.clip.fps)

    def __len__(self) -> int:
        return self.clip.num_frames

    def _cache(self, px: int) -> Path | None:
        if self.cache_dir is None:
            return None
        return Path(self.cache_dir) / f"{self.name}-{px}.gif"

    def frames(self, size: tuple[int, int]) -> Iterator[Any]:
        px = max(16, min(512, max(size)))
        cache = self._cache(px)
        if cache is not None and cache.is_file() and cache.stat().st_mtime >= self.path.stat().st_mtime:
            self.used = "cache"
            for im in _image_frames(cache):
                yield _fit(im, size)
            return
        images: list[Any] | None = None
        if self.renderer in ("auto", "mujoco"):
            try:
                from anyskill_tui.core.motion.render import render_frames

                images = render_frames(self.clip, size=px)
                self.used = "mujoco"
            except Exception:
                if self.renderer == "mujoco":
                    raise
                images = None
        if images is None:
            images = skeleton_frames(self.clip, px)
            self.used = "skeleton"
        if cache is not None and self.used == "mujoco":
            try:
                from PIL import Image

                cache.parent.mkdir(parents=True, exist_ok=True)
                pil = [Image.fromarray(a) for a in images]
                pil[0].save(cache, save_all=True, append_images=pil[1:], duration=int(1000 / self.fps), loop=0)
            except OSError:
                pass
        from PIL import Image

        for a in images:
            yield _fit(Image.fromarray(a), size)


def skeleton_frames(clip: Any, px: int) -> list[Any]:
    """Stick-figure frames (side view, x right, z up) of a clip's body positions: no GL needed."""
    import numpy as np
    from PIL import Image, ImageDraw

    from anyskill_tui.core.character import tables as T

    pos = np.asarray(clip.body_pos())  # (T, B, 3)
    parents = list(T.PARENT_INDICES)
    xz = pos[..., [0, 2]]
    centre_x = xz[..., 0].mean(axis=1, keepdims=True)
    xz[..., 0] -= centre_x
    out = []
    ground = px - 1 - px // 12
    for t in range(pos.shape[0]):
        im = Image.new("RGB", (px, px), (24, 26, 33))
        d = ImageDraw.Draw(im)
        d.line([(0, ground), (px, ground)], fill=(90, 90, 110), width=1)

        def pt(b: int, t: int = t) -> tuple[float, float]:
            x, z = xz[t, b]
            return (px / 2 + x * px / 2.6, ground - z * px / 2.6)

        for b, p in enumerate(parents):
            if p is not None and p >= 0:
                d.line([pt(p), pt(b)], fill=(120, 200, 255), width=max(1, px // 60))
        for b in range(pos.shape[1]):
            x, y = pt(b)
            r = max(1, px // 80)
            d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 210, 120))
        out.append(np.asarray(im))
    return out


def export_video(source: FrameSource, out: Path, size: int = 320) -> Path:
    """Write every frame of ``source`` to ``out`` (.mp4 or .gif) through imageio."""
    from anyskill_tui.core.motion.render import write_video

    frames = list(source.frames((size, size)))
    if not frames:
        raise UserError(f"{source.name}: no frames to export")
    return write_video(frames, out, source.fps)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_viewer(clip_path: Path) -> int:
    """Start the MuJoCo viewer window on a clip, detached (needs a display); returns its pid."""
    if not has_display():
        raise UserError("no display (DISPLAY is not set): use export video instead")
    proc = subprocess.Popen(
        [sys.executable, "-m", "anyskill_tui.tui_services", "view", str(clip_path)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    return proc.pid


def open_checkpoint_viewer(workspace_root: Path, checkpoint: Path, seconds: float = 4.0) -> int:
    """Start ``anyskill replay CKPT --window`` detached (``core.replay.viewer.run_viewer``); returns its pid.
    Call ``core.replay.viewer.require_display()`` first: without a display the child would only print that."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "anyskill_tui",
            "--workspace",
            str(workspace_root),
            "replay",
            str(checkpoint),
            "--window",
            "--seconds",
            f"{seconds:g}",
        ],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    return proc.pid


def _view_clip(path: str) -> None:  # pragma: no cover - needs a display
    import time

    import mujoco
    import mujoco.viewer

    from anyskill_tui.core.character.model import load_model
    from anyskill_tui.core.motion.clip import read_clip
    from anyskill_tui.core.motion.plausibility import clip_qpos

    clip = read_clip(path)
    qpos = clip_qpos(clip)
    m = load_model()
    d = mujoco.MjData(m)
    with mujoco.viewer.launch_passive(m, d) as v:
        t = 0
        while v.is_running():
            d.qpos[:] = qpos[t % len(qpos)]
            mujoco.mj_kinematics(m, d)
            v.sync()
            t += 1
            time.sleep(1.0 / clip.fps)


def motion_datasets(workspace: Workspace) -> list[Path]:
    """Dataset YAMLs: the workspace's ``configs/motions/*.yaml`` and the shipped starter set."""
    found: list[Path] = []
    wdir = workspace.configs_dir / "motions"
    if wdir.is_dir():
        found += sorted(p for p in wdir.iterdir() if p.suffix.lower() in (".yaml", ".yml"))
    shipped = shipped_starter()
    if shipped is not None and shipped.resolve() not in {p.resolve() for p in found}:
        found.append(shipped)
    return found


def shipped_starter() -> Path | None:
    """The starter motions.yaml shipped with the package (repo checkout or wheel)."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "configs" / "motions" / "starter.yaml", here / "_configs" / "motions" / "starter.yaml"):
        if cand.is_file():
            return cand
    return None


@dataclass(frozen=True)
class ClipInfo:
    dataset: Path
    file: Path
    name: str
    frames: int
    fps: float
    duration: float
    weight: float
    text: str
    error: str = ""


def dataset_clips(path: Path) -> list[ClipInfo]:
    """Every clip of a dataset with frames, fps, duration and normalised weight (errors kept per clip)."""
    from anyskill_tui.core.motion.clip import ClipError, read_clip
    from anyskill_tui.core.motion.dataset import DatasetError, read_dataset_entries

    try:
        entries = read_dataset_entries(path)
    except DatasetError as exc:
        raise UserError(" ".join(str(exc).split())) from None
    total = sum(e.weight for e in entries) or 1.0
    out = []
    for e in entries:
        try:
            c = read_clip(e.file)
            out.append(ClipInfo(path, e.file, c.name, c.num_frames, c.fps, c.duration, e.weight / total, e.text or ""))
        except (ClipError, OSError) as exc:
            out.append(ClipInfo(path, e.file, e.file.stem, 0, 0.0, 0.0, e.weight / total, e.text or "", str(exc)))
    return out


def validate_dataset(path: Path) -> list[str]:
    """Problems of a dataset (loads every clip; plausibility is the CLI's `motions validate`)."""
    from anyskill_tui.core.motion.clip import ClipError
    from anyskill_tui.core.motion.dataset import DatasetError, load_dataset

    try:
        ds = load_dataset(path)
    except (DatasetError, ClipError, OSError) as exc:
        return [" ".join(str(exc).split())]
    problems = []
    for clip, f in zip(ds.clips, ds.files, strict=True):
        try:
            clip.validate(f)
        except ClipError as exc:
            problems.append(" ".join(str(exc).split()))
    return problems


def import_bvh_file(bvh: Path, out_dir: Path) -> Path:
    """Import a BVH into ``out_dir/<stem>.npy`` through ``core.motion.bvh_import`` (when this build has it)."""
    try:
        from anyskill_tui.core.motion import bvh_import
    except ImportError:
        raise not_available("BVH import") from None
    from anyskill_tui.core.motion.clip import ClipError, write_clip

    if not bvh.is_file():
        raise UserError(f"{bvh}: no such file (give a .bvh motion capture file)")
    try:
        clip = bvh_import.import_bvh(bvh)
    except (ClipError, OSError, ValueError) as exc:
        raise UserError(" ".join(str(exc).split())) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_clip(out_dir / f"{bvh.stem}.npy", clip)


if __name__ == "__main__":  # pragma: no cover - `python -m anyskill_tui.tui_services view CLIP`
    if len(sys.argv) == 3 and sys.argv[1] == "view":
        _view_clip(sys.argv[2])
