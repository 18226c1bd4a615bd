"""The Train dialog: what to train (skill policies for prompts, or the CALM low-level controller on a motion
dataset), engine, envs, epochs, reward and LLC checkpoint (skills), the dataset (LLC) and advanced overrides
(dotted ``key=value`` lines). Every change re-validates and shows the resolved config (``configs/skill.yaml`` or
``configs/llc.yaml`` with the form and the overrides applied); Queue enqueues through ``core.jobs.queue.enqueue``
and starts the runs detached with ``core.jobs.launcher.start_run`` (so it works without ``anyskill worker``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static, TextArea

from anyskill_tui.screens.common import app_of, error_text
from anyskill_tui.tui_services import (
    ENGINES,
    REWARDS,
    FormError,
    TrainRequest,
    parse_train_form,
    queue_training,
    short_paths,
    to_yaml,
    toy_trainer_enabled,
)

MODES = (("skill policies for prompts", "skill"), ("LLC: low-level controller on motions", "llc"))
TITLES = {"skill": "Train skills", "llc": "Train the low-level controller (LLC)"}
#: the dialog's envs and epochs for skills (a CPU-sized start)
SKILL_DEFAULTS = ("16", "100")


def mode_defaults(mode: str) -> tuple[str, str]:
    """Envs and epochs the form starts with: skills a CPU-sized start, the LLC ``configs/llc.yaml``'s values."""
    if mode != "llc":
        return SKILL_DEFAULTS
    try:
        from anyskill_tui.core.learn.config import load_llc_config

        cfg = load_llc_config(None)
        return str(cfg.env.num_envs), str(cfg.ppo.max_epochs)
    except Exception:
        return ("1024", "100000")


class TrainDialog(ModalScreen[list[Any] | None]):
    """Queue skill training for prompts, or LLC training on a motion dataset."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="train.cancel"),
        Binding("ctrl+s", "queue", "Queue", id="train.queue"),
    ]

    def __init__(self, prompts: list[str] | None = None, mode: str = "skill", motions: str | Path = "") -> None:
        super().__init__()
        self.prompts = prompts or []
        self.mode = mode if mode in TITLES else "skill"
        self.motions = str(motions or "")
        self.request: TrainRequest | None = None

    def compose(self) -> ComposeResult:
        envs, epochs = mode_defaults(self.mode)
        with Vertical(classes="dialog", id="train-dialog"):
            yield Label(TITLES[self.mode], classes="title", id="train-title")
            with VerticalScroll(id="train-form"):
                with Horizontal(classes="row"):
                    yield Label("Train", classes="field")
                    yield Select(list(MODES), value=self.mode, allow_blank=False, id="mode", compact=True)
                with Vertical(classes="skill-only"):
                    yield Label("Prompts (one per line)")
                    yield TextArea("\n".join(self.prompts), id="prompts", soft_wrap=True, compact=True)
                with Horizontal(classes="row llc-only"):
                    yield Label("Motions", classes="field")
                    yield Input(
                        self.motions,
                        placeholder="motions.yaml or .npy (empty: the starter set)",
                        id="motions",
                        compact=True,
                    )
                with Horizontal(classes="row"):
                    yield Label("Engine", classes="field")
                    yield Select([(e, e) for e in ENGINES], value="cpu", allow_blank=False, id="engine", compact=True)
                    yield Label("Reward", classes="field skill-only")
                    yield Select(
                        [(r, r) for r in REWARDS],
                        value="render",
                        allow_blank=False,
                        id="reward",
                        compact=True,
                        classes="skill-only",
                    )
                with Horizontal(classes="row"):
                    yield Label("Envs", classes="field")
                    yield Input(envs, id="envs", type="integer", compact=True)
                    yield Label("Epochs", classes="field")
                    yield Input(epochs, id="epochs", type="integer", compact=True)
                with Horizontal(classes="row skill-only"):
                    yield Label("LLC ckpt", classes="field")
                    yield Input("", placeholder="path (empty: the workspace default)", id="llc", compact=True)
                if toy_trainer_enabled():
                    yield Checkbox("toy trainer (tests and demos)", value=False, id="toy", compact=True)
                yield Label("Advanced overrides (key=value per line, e.g. ppo.learning_rate=1e-4)")
                yield TextArea("", id="overrides", compact=True)
                yield Static("", id="train-error", classes="error")
                yield Label("Resolved config")
                yield Static("", id="train-preview", classes="preview")
            with Horizontal(classes="buttons"):
                yield Button("Queue (ctrl+s)", id="queue", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self._apply_mode()
        (self.query_one("#prompts", TextArea) if self.mode == "skill" else self.query_one("#mode", Select)).focus()
        self._validate()

    def _apply_mode(self) -> None:
        for w in self.query(".skill-only"):
            w.display = self.mode == "skill"
        for w in self.query(".llc-only"):
            w.display = self.mode == "llc"
        self.query_one("#train-title", Label).update(TITLES[self.mode])

    def _form(self) -> TrainRequest:
        toy = self.query("#toy")
        return parse_train_form(
            self.query_one("#prompts", TextArea).text,
            str(self.query_one("#engine", Select).value),
            self.query_one("#envs", Input).value,
            self.query_one("#llc", Input).value,
            str(self.query_one("#reward", Select).value),
            self.query_one("#epochs", Input).value,
            base=app_of(self).workspace.root,
            toy=bool(toy and toy.first(Checkbox).value),
            mode=self.mode,
            motions=self.query_one("#motions", Input).value,
            overrides=self.query_one("#overrides", TextArea).text,
        )

    def _validate(self) -> TrainRequest | None:
        err = self.query_one("#train-error", Static)
        preview = self.query_one("#train-preview", Static)
        try:
            req = self._form()
        except FormError as exc:
            err.update(exc.message)
            err.add_class("shown")
            self.request = None
            return None
        err.update("")
        err.remove_class("shown")
        self.request = req
        runs = req.resolved
        text = to_yaml(runs[0] if len(runs) == 1 else {"runs": runs}).rstrip()
        preview.update(short_paths(text, app_of(self).workspace.root))
        return req

    @on(Select.Changed, "#mode")
    def _mode_changed(self, event: Select.Changed) -> None:
        old, self.mode = self.mode, str(event.value)
        if old != self.mode:  # untouched envs/epochs follow the mode
            envs, epochs = self.query_one("#envs", Input), self.query_one("#epochs", Input)
            if (envs.value, epochs.value) == mode_defaults(old):
                envs.value, epochs.value = mode_defaults(self.mode)
        self._apply_mode()
        self._validate()

    @on(TextArea.Changed)
    @on(Input.Changed)
    @on(Select.Changed, "#engine, #reward")
    @on(Checkbox.Changed)
    def _changed(self) -> None:
        self._validate()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#queue")
    def action_queue(self) -> None:
        req = self._validate()
        if req is None:
            self.notify("fix the form first", severity="warning")
            return
        self.query_one("#queue", Button).disabled = True
        self._queue(req)

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def _queue(self, req: TrainRequest) -> None:
        app = app_of(self)
        try:
            runs = queue_training(app.workspace, app.library(), req)
        except Exception as exc:
            self.app.call_from_thread(self._failed, error_text(exc))
            return
        ids = ", ".join(f"#{r.id}" for r in runs)
        what = "LLC run" if req.mode == "llc" else "run"
        self.app.call_from_thread(self.app.notify, f"queued and started {what} {ids}")
        self.app.call_from_thread(self.dismiss, runs)

    def _failed(self, message: str) -> None:
        err = self.query_one("#train-error", Static)
        err.update(message)
        err.add_class("shown")
        self.query_one("#queue", Button).disabled = False
