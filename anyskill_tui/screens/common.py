"""Pieces shared by the screens: confirmation and path modals, a table helper, worker error reporting."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static

from anyskill_tui.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.app import AnySkillApp


def app_of(widget: Any) -> AnySkillApp:
    return widget.app  # type: ignore[no-any-return]


def error_text(exc: BaseException) -> str:
    """One line for an exception: a UserError's message, else ``Type: message``."""
    if isinstance(exc, UserError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


class ConfirmModal(ModalScreen[bool]):
    """Yes/no question; dismisses with True on yes."""

    BINDINGS = [
        Binding("y", "yes", "Yes", id="confirm.yes"),
        Binding("n,escape", "no", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, yes_label: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes_label = yes_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes_label} (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed, "#yes")
    def action_yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_no(self) -> None:
        self.dismiss(False)


class FormModal(ModalScreen[Any]):
    """A dialog whose submit runs ``submit(values)`` in a thread worker: its UserError is shown inline
    (the dialog stays open), its result dismisses the dialog."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="form.cancel"),
        Binding("ctrl+s", "submit", "Save", id="form.submit"),
    ]

    title = "Form"
    submit_label = "Save"

    def fields(self) -> ComposeResult:  # pragma: no cover - overridden
        yield from ()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title, classes="title")
            yield from self.fields()
            yield Static("", id="form-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.submit_label} (ctrl+s)", id="submit", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def values(self) -> dict[str, str]:
        return {w.id or "": w.value for w in self.query(Input)}

    def submit(self, values: dict[str, str]) -> Any:  # pragma: no cover - overridden
        return values

    def show_error(self, message: str) -> None:
        err = self.query_one("#form-error", Static)
        err.update(message)
        err.set_class(bool(message), "shown")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        self.show_error("")
        self._run_submit(self.values())

    @work(thread=True, exclusive=True, group="form", exit_on_error=False)
    def _run_submit(self, values: dict[str, str]) -> None:
        try:
            result = self.submit(values)
        except Exception as exc:  # shown inline, the dialog stays
            self.app.call_from_thread(self.show_error, error_text(exc))
            return
        self.app.call_from_thread(self.dismiss, result)


class PathModal(FormModal):
    """Ask for a path; ``action(path)`` runs in a worker (errors inline), its result dismisses."""

    def __init__(self, title: str, placeholder: str, action: Callable[[str], Any], submit_label: str = "OK") -> None:
        super().__init__()
        self.title = title
        self.placeholder = placeholder
        self.action_fn = action
        self.submit_label = submit_label

    def fields(self) -> ComposeResult:
        yield Input(placeholder=self.placeholder, id="path")

    def submit(self, values: dict[str, str]) -> Any:
        path = values["path"].strip()
        if not path:
            raise UserError("give a path")
        return self.action_fn(path)


def fill_table(table: DataTable, rows: list[tuple[str, tuple[str, ...]]], keep_cursor: bool = True) -> None:
    """Replace a table's rows (key, cells), keeping the cursor on the same key when it is still there."""
    current = None
    if keep_cursor and table.row_count:
        try:
            current = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            current = None
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if current is not None:
        with contextlib.suppress(Exception):
            table.move_cursor(row=table.get_row_index(current), animate=False)


def selected_key(table: DataTable) -> str | None:
    """The row key under the cursor, or None for an empty table."""
    if not table.row_count:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:
        return None
