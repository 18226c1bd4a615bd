"""The Library screen (home): the skills table with filter-as-you-type, sort, add/edit/delete, import, train
and replay.

The table is paged: 200 rows at a time through :class:`~anyskill_tui.tui_services.SkillQuery` in a thread
worker; moving the cursor near the end loads the next page. Typing in the filter re-queries (an exclusive
worker, so only the latest keystroke's result lands).
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, Static
from textual.worker import get_current_worker

from anyskill_tui.errors import UserError
from anyskill_tui.screens.common import ConfirmModal, FormModal, PathModal, app_of, error_text, selected_key
from anyskill_tui.tui_services import SORT_KEYS, SkillQuery, SkillRow

PAGE = 200
COLUMNS = ("id", "prompt", "status", "best CLIP", "last run", "tags", "created")
#: fixed widths: auto-sized columns re-measure as pages arrive, which made the layout jump
WIDTHS = {"id": 5, "prompt": 30, "status": 8, "best CLIP": 9, "last run": 11, "tags": 14, "created": 16}


class SkillFormModal(FormModal):
    """Add or edit a skill: prompt, weight, tags (comma-separated), notes. The store validates (empty,
    over 300 characters, duplicate, bad weight) and its message shows under the fields."""

    def __init__(self, skill: Any | None = None) -> None:
        super().__init__()
        self.skill = skill
        self.title = f"Edit skill {skill.id}" if skill else "Add a skill"

    def fields(self) -> ComposeResult:
        sk = self.skill
        yield Label("Prompt")
        yield Input(sk.text if sk else "", placeholder="e.g. jump forward", id="prompt", max_length=400)
        with Horizontal(classes="row"):
            with Horizontal(classes="cell"):
                yield Label("Weight ")
                yield Input(str(sk.weight) if sk else "1.0", id="weight")
            with Horizontal(classes="cell"):
                yield Label("Tags ")
                yield Input(", ".join(sk.tag_list) if sk else "", placeholder="locomotion, arms", id="tags")
        yield Label("Notes")
        yield Input(sk.notes if sk else "", id="notes")

    def submit(self, values: dict[str, str]) -> Any:
        try:
            weight = float(values["weight"].strip() or "1")
        except ValueError:
            raise UserError(f"weight must be a number >= 0, got {values['weight'].strip()!r}") from None
        tags = [t for t in values["tags"].split(",") if t.strip()]
        lib = app_of(self).library()
        if self.skill is None:
            return lib.add_skill(values["prompt"], weight=weight, tags=tags, notes=values["notes"])
        old = set(self.skill.tag_list)
        return lib.edit_skill(
            self.skill.id,
            text=values["prompt"],
            weight=weight,
            add_tags=tags,
            remove_tags=[t for t in old if t not in {x.strip().lower() for x in tags}],
            notes=values["notes"],
        )


class LibraryScreen(Screen[None]):
    """The skill library."""

    BINDINGS = [
        Binding("a", "add", "Add", id="library.add", tooltip="Add a skill"),
        Binding("e", "edit", "Edit", id="library.edit"),
        Binding("d,delete", "delete", "Delete", id="library.delete"),
        Binding("i", "import_texts", "Import", id="library.import", tooltip="Import a texts.yaml"),
        Binding("t", "train", "Train", id="library.train"),
        Binding("r", "replay", "Replay", id="library.replay", tooltip="Replay the skill's best checkpoint"),
        Binding("s", "sort", "Sort", id="library.sort", tooltip="Cycle the sort column", show=False),
        Binding("S", "reverse", "Reverse", id="library.reverse", show=False),
        Binding("slash", "focus_filter", "Filter", id="library.filter", show=False),
        Binding("escape", "clear_filter", "Clear filter", id="library.clear_filter", show=False),
        Binding("enter", "open", "Open", id="library.open", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.query_service: SkillQuery | None = None
        self.sort = "created"
        self.descending = False
        self.loaded = 0
        self.has_more = False
        self.loading_more = False
        self.rows: dict[str, SkillRow] = {}
        self.ready = False  # True once the first page is in the table (benchmarks wait for it)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="filter-bar"):
            yield Input(placeholder="/ filter: prompt, notes or tags", id="filter")
            yield Label("", id="sort-label")
        table: DataTable[str] = DataTable(id="skills", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("loading the library…", id="status-line")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#skills", DataTable)
        for c in COLUMNS:
            table.add_column(c, key=c, width=WIDTHS[c])
        table.focus()
        self._update_sort_label()
        self.reload()

    # -- loading -----------------------------------------------------------------------------------

    def reload(self) -> None:
        self._load(self.query_one("#filter", Input).value, self.sort, self.descending, invalidate=True)

    @work(thread=True, exclusive=True, group="skills", exit_on_error=False)
    def _load(self, search: str, sort: str, descending: bool, invalidate: bool = False) -> None:
        worker = get_current_worker()
        try:
            if self.query_service is None:
                self.query_service = SkillQuery(app_of(self).library())
            elif invalidate:
                self.query_service.invalidate()
            rows, more = self.query_service.page(search, sort, descending, 0, PAGE)
        except Exception as exc:
            self.app.call_from_thread(self._show_status, f"[b red]error:[/] {error_text(exc)}")
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show_rows, rows, more, False)

    @work(thread=True, exclusive=True, group="skills-more", exit_on_error=False)
    def _load_more(self, search: str, sort: str, descending: bool, offset: int) -> None:
        assert self.query_service is not None
        try:
            rows, more = self.query_service.page(search, sort, descending, offset, PAGE)
        finally:
            self.loading_more = False
        self.app.call_from_thread(self._show_rows, rows, more, True)

    def _show_rows(self, rows: list[SkillRow], more: bool, append: bool) -> None:
        table = self.query_one("#skills", DataTable)
        if not append:
            keep = selected_key(table)
            table.clear()
            self.rows = {}
            self.loaded = 0
        for r in rows:
            key = str(r.id)
            if key in self.rows:
                continue
            self.rows[key] = r
            table.add_row(*r.cells(), key=key)
        self.loaded = len(self.rows)
        self.has_more = more
        if not append and keep is not None and keep in self.rows:
            table.move_cursor(row=table.get_row_index(keep), animate=False)
        self._show_status()
        if not self.ready:
            self.ready = True
            app_of(self).reconcile_runs()

    def _show_status(self, message: str | None = None) -> None:
        if message is None:
            n = f"{self.loaded}{'+' if self.has_more else ''}"
            filt = self.query_one("#filter", Input).value.strip()
            message = f"{n} skills" + (f" matching {filt!r}" if filt else "") + "  ·  f1 keys  ·  ctrl+p commands"
            if not self.loaded:
                message = "no skills match" if filt else "no skills yet: press a to add one or i to import a texts.yaml"
        self.query_one("#status-line", Static).update(message)

    def _update_sort_label(self) -> None:
        arrow = "↓" if self.descending else "↑"
        self.query_one("#sort-label", Label).update(f"s sort: {self.sort} {arrow}")

    @on(DataTable.RowHighlighted, "#skills")
    def _maybe_more(self, event: DataTable.RowHighlighted) -> None:
        if self.has_more and not self.loading_more and event.cursor_row >= self.loaded - 20:
            self.loading_more = True
            self._load_more(self.query_one("#filter", Input).value, self.sort, self.descending, self.loaded)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._load(event.value, self.sort, self.descending)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#skills", DataTable).focus()

    @on(DataTable.RowSelected, "#skills")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    # -- actions -----------------------------------------------------------------------------------

    def current(self) -> SkillRow | None:
        key = selected_key(self.query_one("#skills", DataTable))
        return self.rows.get(key) if key is not None else None

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        f = self.query_one("#filter", Input)
        if f.value:
            f.value = ""
        self.query_one("#skills", DataTable).focus()

    def action_sort(self) -> None:
        self.sort = SORT_KEYS[(SORT_KEYS.index(self.sort) + 1) % len(SORT_KEYS)]
        self._update_sort_label()
        self._load(self.query_one("#filter", Input).value, self.sort, self.descending)

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self._update_sort_label()
        self._load(self.query_one("#filter", Input).value, self.sort, self.descending)

    def action_open(self) -> None:
        row = self.current()
        if row is not None:
            app_of(self).open_skill(row.id)

    def _after_change(self, result: Any) -> None:
        if result is not None:
            what = f"{len(result)} skills imported" if isinstance(result, list) else f"saved skill {result.id}"
            self.notify(what)
            self.reload()

    def action_add(self) -> None:
        self.app.push_screen(SkillFormModal(), self._after_change)

    def action_edit(self) -> None:
        row = self.current()
        if row is None:
            self.notify("no skill selected", severity="warning")
            return
        self._open_edit(row.id)

    @work(thread=True, exit_on_error=False)
    def _open_edit(self, skill_id: int) -> None:
        try:
            skill = app_of(self).library().get_skill(skill_id)
        except Exception as exc:
            self.app.call_from_thread(self.notify, error_text(exc), severity="error")
            return
        self.app.call_from_thread(self.app.push_screen, SkillFormModal(skill), self._after_change)

    def action_delete(self) -> None:
        row = self.current()
        if row is None:
            self.notify("no skill selected", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                self._delete(row.id)

        self.app.push_screen(ConfirmModal(f"Delete skill {row.id} {row.text!r}? Its runs stay.", "Delete"), done)

    @work(thread=True, exit_on_error=False)
    def _delete(self, skill_id: int) -> None:
        try:
            sk = app_of(self).library().remove_skill(skill_id)
        except Exception as exc:
            self.app.call_from_thread(self.notify, error_text(exc), severity="error", timeout=8)
            return
        self.app.call_from_thread(self.notify, f"deleted skill {sk.id} {sk.text!r}")
        self.app.call_from_thread(self.reload)

    def action_import_texts(self) -> None:
        def do_import(path: str) -> Any:
            from pathlib import Path

            p = Path(path).expanduser()
            if not p.is_absolute():
                p = app_of(self).workspace.root / p
            return app_of(self).library().import_texts_file(p)

        self.app.push_screen(
            PathModal("Import a texts.yaml (all or nothing)", "path/to/texts.yaml", do_import, "Import"),
            self._after_change,
        )

    def action_train(self) -> None:
        row = self.current()
        app_of(self).action_train([row.text] if row else [])

    def action_replay(self) -> None:
        row = self.current()
        if row is None:
            self.notify("no skill selected", severity="warning")
            return
        app_of(self).replay_skill(row.id)

    def on_screen_resume(self) -> None:
        if self.ready:
            self.reload()


__all__ = ["LibraryScreen", "SkillFormModal", "UserError"]
