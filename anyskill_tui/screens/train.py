"""The Train dialog: prompts (one per line), engine, envs, LLC checkpoint, reward, epochs; validated, the resolved
config previewed, then queued through ``core.jobs.queue.enqueue`` and started detached with
``core.jobs.launcher.start_run`` (so it works without a separate ``anyskill worker``)."""

from __future__ import annotations

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
    to_yaml,
    toy_trainer_enabled,
)


class TrainDialog(ModalScreen[list[Any] | None]):
    """Queue skill training for one or more prompts."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="train.cancel"),
        Binding("ctrl+s", "queue", "Queue", id="train.queue"),
    ]

    def __init__(self, prompts: list[str] | None = None) -> None:
        super().__init__()
        self.prompts = prompts or []
        self.request: TrainRequest | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="train-dialog"):
            yield Label("Train skills", classes="title")
            with VerticalScroll(id="train-form"):
                yield Label("Prompts (one per line)")
                yield TextArea("\n".join(self.prompts), id="prompts", soft_wrap=True)
                with Horizontal(classes="row"):
                    yield Label("Engine", classes="field")
                    yield Select([(e, e) for e in ENGINES], value="cpu", allow_blank=False, id="engine")
                    yield Label("Reward", classes="field")
                    yield Select([(r, r) for r in REWARDS], value="proxy", allow_blank=False, id="reward")
                with Horizontal(classes="row"):
                    yield Label("Envs", classes="field")
                    yield Input("16", id="envs", type="integer")
                    yield Label("Epochs", classes="field")
                    yield Input("100", id="epochs", type="integer")
                with Horizontal(classes="row"):
                    yield Label("LLC ckpt", classes="field")
                    yield Input("", placeholder="path (empty: the workspace default)", id="llc")
                if toy_trainer_enabled():
                    yield Checkbox("toy trainer (tests and demos)", value=False, id="toy")
                yield Static("", id="train-error", classes="error")
                yield Label("Resolved config")
                yield Static("", id="train-preview", classes="preview")
            with Horizontal(classes="buttons"):
                yield Button("Queue (ctrl+s)", id="queue", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#prompts", TextArea).focus()
        self._validate()

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
        runs = [req.config(p) for p in req.prompts]
        preview.update(to_yaml(runs[0] if len(runs) == 1 else {"runs": runs}).rstrip())
        return req

    @on(TextArea.Changed)
    @on(Input.Changed)
    @on(Select.Changed)
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
        self.app.call_from_thread(self.app.notify, f"queued and started run {ids}")
        self.app.call_from_thread(self.dismiss, runs)

    def _failed(self, message: str) -> None:
        err = self.query_one("#train-error", Static)
        err.update(message)
        err.add_class("shown")
        self.query_one("#queue", Button).disabled = False
