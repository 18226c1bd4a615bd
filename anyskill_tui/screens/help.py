"""The Help screen: every key binding of every screen (with its id, for ``App.set_keymap``)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label


def all_bindings() -> list[tuple[str, list[Binding]]]:
    """(section, bindings) for the app and each screen, in the order a user meets them."""
    from anyskill_tui.app import AnySkillApp
    from anyskill_tui.screens.common import ConfirmModal, FormModal
    from anyskill_tui.screens.library import LibraryScreen
    from anyskill_tui.screens.motions import MotionsScreen
    from anyskill_tui.screens.replay import ReplayScreen
    from anyskill_tui.screens.run import RunScreen
    from anyskill_tui.screens.runs import RunsScreen
    from anyskill_tui.screens.skill import SkillScreen
    from anyskill_tui.screens.train import TrainDialog

    sections = [
        ("everywhere", AnySkillApp),
        ("library", LibraryScreen),
        ("skill", SkillScreen),
        ("train dialog", TrainDialog),
        ("runs", RunsScreen),
        ("run", RunScreen),
        ("motions", MotionsScreen),
        ("replay", ReplayScreen),
        ("dialogs", FormModal),
        ("confirm", ConfirmModal),
    ]
    return [(name, [b for b in cls.BINDINGS if isinstance(b, Binding)]) for name, cls in sections]


class HelpScreen(ModalScreen[None]):
    """All bindings; escape closes."""

    BINDINGS = [Binding("escape,q,f1,question_mark", "app.pop_screen", "Close", id="help.close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="help-dialog"):
            yield Label("Keys (ctrl+p: command palette with every action)", classes="title")
            yield DataTable(id="help-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        t = self.query_one("#help-table", DataTable)
        t.add_columns("screen", "key", "action", "id")
        for section, bindings in all_bindings():
            for b in bindings:
                keys = ", ".join(k.strip() for k in b.key.split(","))
                t.add_row(section, keys, b.description, b.id or "")
        t.focus()
