"""The trainer registry and the protocol between the runner and a trainer.

A trainer is a function ``fn(ctx: TrainContext) -> None`` that runs inside the runner process
(``python -m anyskill_tui.core.jobs.runner``). It trains until done or until ``ctx.should_stop()``
turns true (SIGTERM/SIGINT to the run's process group), reports through the context and returns; an
exception fails the run with its message. To be resumable it saves checkpoints with
``ctx.save_checkpoint(step, state, metrics)`` and, when ``ctx.resume_from`` is set, continues from it.

:data:`TRAINERS` maps a Run kind to ``"module:function"``. Which trainer a run uses:

1. ``config["trainer"]``, when given: a key of :data:`TRAINERS` (e.g. ``"toy"``);
2. else the run's kind (``llc``, ``skill``, ``proxy``).

The ``toy`` trainer exists only for tests and demos and is registered only when the environment has
``ANYSKILL_ENABLE_TOY_TRAINER=1`` (in the process that runs it: the runner inherits the environment of
whoever started it). Run kinds stay ``llc|skill|proxy``: a toy run is any kind (tests use ``proxy``)
with ``{"trainer": "toy"}`` in its config.

Progress (``ctx.progress(step, total)``) lands in the Run row (``step``, ``total_steps``, written with
the heartbeat) and in ``RUN_DIR/progress.json`` (written atomically, at most twice a second), which
also carries the rate and ETA of the current session; :func:`read_progress` reads it.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyskill_tui.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.core.jobs.metrics import MetricsWriter
    from anyskill_tui.store.library import Library

TOY_ENV = "ANYSKILL_ENABLE_TOY_TRAINER"
PROGRESS_FILE = "progress.json"

TRAINERS: dict[str, str] = {
    "llc": "anyskill_tui.core.learn.llc_train:train_llc",
    "skill": "anyskill_tui.core.learn.skill_train:train_skill",
    "proxy": "anyskill_tui.core.reward.proxy_train:train_proxy",
}
_TOY = "anyskill_tui.core.jobs.trainers:train_toy"
if os.environ.get(TOY_ENV) == "1":
    TRAINERS["toy"] = _TOY

TrainerFn = Callable[["TrainContext"], None]


def trainer_key(kind: str, config: dict[str, Any]) -> str:
    """The registry key a run uses: ``config["trainer"]`` if given, else its kind."""
    key = config.get("trainer")
    return str(key) if key else kind


def resolve_trainer(kind: str, config: dict[str, Any]) -> TrainerFn:
    """The trainer function of a run. Raises UserError when it is unknown or not in this build."""
    key = trainer_key(kind, config)
    target = TRAINERS.get(key)
    if target is None and key == "toy" and os.environ.get(TOY_ENV) == "1":
        target = _TOY
    if target is None:
        if key == "toy":
            raise UserError(f"the toy trainer is only for tests; set {TOY_ENV}=1 to enable it")
        raise UserError(f"unknown trainer {key!r} (known: {', '.join(sorted(TRAINERS))})")
    module_name, _, fn_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UserError(f"the {key} trainer is not available in this build ({module_name} is missing)") from None
        raise
    fn = getattr(module, fn_name, None)
    if fn is None:
        raise UserError(f"the {key} trainer is not available in this build ({target} is missing)")
    return fn


@dataclass
class TrainContext:
    """What a trainer gets from the runner. Create through the runner; tests may build one directly.

    Attributes:
        run_id: the Run's id.
        run_dir: the run's folder (``runs/<id>/``); checkpoints go to ``run_dir/checkpoints``.
        config: the Run's resolved config.
        resume_from: the newest complete checkpoint when the run is being resumed, else None.
    """

    run_id: int
    run_dir: Path
    config: dict[str, Any]
    resume_from: Path | None = None
    library: Library | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    heartbeat_s: float = 2.0
    progress_s: float = 0.5
    _writer: MetricsWriter | None = field(default=None, repr=False)
    _last_hb: float = field(default=0.0, repr=False)
    _last_progress_write: float = field(default=0.0, repr=False)
    _progress: tuple[int, int | None] | None = field(default=None, repr=False)
    _session_start: tuple[int, float] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- control --------------------------------------------------------------------------------

    def should_stop(self) -> bool:
        """True once a stop was requested (SIGTERM/SIGINT): save if useful, then return."""
        return self.stop_event.is_set()

    def heartbeat(self) -> None:
        """Stamp the Run's heartbeat (rate-limited to one DB write per ``heartbeat_s``)."""
        now = time.monotonic()
        if now - self._last_hb < self.heartbeat_s:
            return
        self._last_hb = now
        self.write_heartbeat()

    def write_heartbeat(self) -> None:
        """Write the heartbeat and the last progress to the Run row now (the runner's thread calls this)."""
        if self.library is None:
            return
        from anyskill_tui.store.models import utcnow

        prog = self.current_progress()
        if prog is None:
            self.library.update_run(self.run_id, heartbeat_at=utcnow())
        else:
            self.library.update_run(self.run_id, heartbeat_at=utcnow(), step=prog[0], total_steps=prog[1])

    # -- metrics --------------------------------------------------------------------------------

    @property
    def metrics_writer(self) -> MetricsWriter:
        if self._writer is None:
            from anyskill_tui.core.jobs.metrics import MetricsWriter

            self._writer = MetricsWriter(self.run_dir)
        return self._writer

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Write scalars at ``step`` to the run's event file (``run_dir/metrics``)."""
        self.metrics_writer.add_scalars(step, metrics)

    # -- checkpoints ----------------------------------------------------------------------------

    def save_checkpoint(self, step: int, state: dict[str, Any], metrics: dict[str, Any] | None = None) -> Path:
        """Save ``state`` atomically as ``checkpoints/ckpt_<step>.pt`` and record a Checkpoint row."""
        from anyskill_tui.core.jobs.checkpoints import checkpoint_dir, checkpoint_name, save_checkpoint

        path = save_checkpoint(checkpoint_dir(self.run_dir) / checkpoint_name(step), state)
        if self._writer is not None:
            self._writer.flush()
        if self.library is not None:
            self.library.add_checkpoint(self.run_id, str(path), step=int(step), metrics=metrics or {})
        return path

    # -- progress -------------------------------------------------------------------------------

    def progress(self, step: int, total: int | None = None) -> None:
        """Record progress (``step`` of ``total``); the CLI and TUI show it with a rate and ETA."""
        now = time.time()
        with self._lock:
            self._progress = (int(step), None if total is None else int(total))
            if self._session_start is None:
                self._session_start = (int(step), now)
        if now - self._last_progress_write >= self.progress_s or (total is not None and step >= total):
            self._last_progress_write = now
            self.write_progress_file()

    def current_progress(self) -> tuple[int, int | None] | None:
        with self._lock:
            return self._progress

    def write_progress_file(self) -> None:
        from anyskill_tui.core.jobs.checkpoints import atomic_write_bytes

        with self._lock:
            if self._progress is None or self._session_start is None:
                return
            step, total = self._progress
            start_step, start_time = self._session_start
        now = time.time()
        elapsed = now - start_time
        rate = (step - start_step) / elapsed if elapsed > 0 and step > start_step else None
        eta = (total - step) / rate if rate and total is not None else None
        data = {
            "step": step,
            "total": total,
            "time": now,
            "session_start_step": start_step,
            "session_start_time": start_time,
            "steps_per_s": rate,
            "eta_s": eta,
        }
        atomic_write_bytes(self.run_dir / PROGRESS_FILE, json.dumps(data).encode())

    def close(self) -> None:
        """Flush progress and metrics (the runner calls this when the trainer returns or raises)."""
        try:
            if self._progress is not None:
                self.write_progress_file()
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def read_progress(run_dir: Path | str) -> dict[str, Any] | None:
    """``RUN_DIR/progress.json`` (step, total, steps_per_s, eta_s, ...) or None when absent/unreadable."""
    try:
        return dict(json.loads((Path(run_dir) / PROGRESS_FILE).read_text()))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------------
# The toy trainer (tests and demos only; see the module doc)
# ---------------------------------------------------------------------------------------------------


def train_toy(ctx: TrainContext) -> None:
    """Fit a small linear regression with SGD: real torch optimisation, exact resume.

    Config (all optional): ``steps`` (200), ``ckpt_every`` (10), ``step_s`` (0.05: sleep per step, so a
    run lasts long enough to be killed), ``lr`` (0.05), ``seed`` (0), ``ignore_sigterm`` (False: ignore
    SIGTERM and never look at ``should_stop``, to test the SIGKILL after the grace), ``fail_at_step``
    (raise RuntimeError there). Every step draws a fresh minibatch from the torch RNG, so resuming is
    exact only if the RNG state is restored: the checkpoint holds model, optimizer, step and RNG state.
    """
    import signal

    import torch

    cfg = ctx.config
    steps = int(cfg.get("steps", 200))
    ckpt_every = max(1, int(cfg.get("ckpt_every", 10)))
    step_s = float(cfg.get("step_s", 0.05))
    fail_at = cfg.get("fail_at_step")
    if cfg.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    torch.manual_seed(int(cfg.get("seed", 0)))
    true_w = torch.linspace(-1.0, 1.0, 8).unsqueeze(1)
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=float(cfg.get("lr", 0.05)), momentum=0.9)
    step = 0
    if ctx.resume_from is not None:
        from anyskill_tui.core.jobs.checkpoints import load_checkpoint

        state = load_checkpoint(ctx.resume_from)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step = int(state["step"])
        print(f"toy: resumed from {ctx.resume_from} at step {step}", flush=True)

    def snapshot() -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "step": step}

    loss_v = float("nan")
    while step < steps:
        if ctx.should_stop() and not cfg.get("ignore_sigterm"):
            ctx.save_checkpoint(step, snapshot(), {"loss": loss_v})
            print(f"toy: stop requested; saved step {step}", flush=True)
            return
        x = torch.randn(64, 8)
        y = x @ true_w + 0.01 * torch.randn(64, 1)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        loss_v = float(loss.detach())
        if fail_at is not None and step >= int(fail_at):
            raise RuntimeError(f"toy trainer failed at step {step} (fail_at_step)")
        ctx.log_metrics(step, {"loss": loss_v, "weight_norm": float(model.weight.detach().norm())})
        ctx.progress(step, steps)
        ctx.heartbeat()
        if step % ckpt_every == 0 or step == steps:
            ctx.save_checkpoint(step, snapshot(), {"loss": loss_v})
        if step_s > 0:
            time.sleep(step_s)
