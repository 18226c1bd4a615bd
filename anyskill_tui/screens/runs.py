"""The Runs screen: every run, live (id, kind, prompt, status, progress, samples/s, elapsed, ETA).

``set_interval`` pokes an exclusive thread worker that reads the runs (newest 500) and each active run's
``progress.json``; the table is updated in place. Keys: stop (confirm), resume, logs, open run, replay (the run's
latest checkpoint, rolled out through ``core.replay.frame_source``).
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from anyskill_tui.screens.common import ConfirmModal, app_of, error_text, selected_key
from anyskill_tui.tui_services import RunRow, resume_run, run_row, stop_run

COLUMNS = ("id", "kind", "prompt", "status", "progress", "samples/s", "elapsed", "ETA")
LIMIT = 500
WIDTHS = {"id": 4, "kind": 5, "prompt": 24, "status": 8, "progress": 8, "samples/s": 9, "elapsed": 7, "ETA": 7}


def load_run_rows(app: Any, texts: dict[int, str], limit: int = LIMIT) -> list[RunRow]:
    """The newest runs as table rows; ``texts`` caches skill prompts by id across refreshes."""
    lib = app.library()
    runs = lib.list_runs(limit=limit)
    for sid in {r.skill_id for r in runs if r.skill_id is not None} - texts.keys():
        sk = lib.find_skill(sid)
        texts[sid] = sk.text if sk is not None else ""
    now = app.now()
    return [run_row(r, app.workspace, texts, now) for r in runs]


class RunsScreen(Screen[None]):
    """All runs, refreshed every ``app.poll_s`` seconds."""

    SUB_TITLE = "runs"

    BINDINGS = [
        Binding("escape", "app.go_library", "Library", id="runs.back"),
        Binding("x", "stop", "Stop", id="runs.stop"),
        Binding("u", "resume", "Resume", id="runs.resume"),
        Binding("l", "logs", "Logs", id="runs.logs"),
        Binding("enter", "open", "Open", id="runs.open"),
        Binding("r", "replay", "Replay", id="runs.replay"),
        Binding("t", "app.train", "Train", id="runs.train"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, RunRow] = {}
        self.texts: dict[int, str] = {}
        self.ready = False

    def compose(self) -> ComposeResult:
        yield Header()
        table: DataTable[str] = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("loading runs…", id="runs-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        for c in COLUMNS:
            table.add_column(c, key=c, width=WIDTHS[c])
        table.focus()
        self.refresh_runs()
        self.set_interval(app_of(self).poll_s, self.refresh_runs)

    def refresh_runs(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def _load(self) -> None:
        try:
            rows = load_run_rows(self.app, self.texts)
        except Exception as exc:
            self.app.call_from_thread(self.query_one("#runs-status", Static).update, f"[red]{error_text(exc)}[/]")
            return
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[RunRow]) -> None:
        table = self.query_one("#runs", DataTable)
        new_keys = [str(r.id) for r in rows]
        if list(self.rows) != new_keys:  # runs added or removed: rebuild (keeps the cursor's run)
            keep = selected_key(table)
            table.clear()
            for r in rows:
                table.add_row(*r.cells(), key=str(r.id))
            if keep in new_keys:
                table.move_cursor(row=new_keys.index(keep), animate=False)
        else:
            for r in rows:
                old = self.rows.get(str(r.id))
                if old != r:
                    for col, value in zip(COLUMNS, r.cells(), strict=True):
                        table.update_cell(str(r.id), col, value)
        self.rows = {str(r.id): r for r in rows}
        active = sum(1 for r in rows if r.status in ("queued", "running"))
        self.query_one("#runs-status", Static).update(
            f"{len(rows)} runs, {active} active" if rows else "no runs yet: press t to train a skill"
        )
        self.ready = True

    def current(self) -> RunRow | None:
        key = selected_key(self.query_one("#runs", DataTable))
        return self.rows.get(key) if key else None

    @on(DataTable.RowSelected, "#runs")
    def action_open(self) -> None:
        r = self.current()
        if r is not None:
            app_of(self).open_run(r.id)

    def action_replay(self) -> None:
        r = self.current()
        if r is not None:
            app_of(self).replay_run(r.id)

    def action_logs(self) -> None:
        r = self.current()
        if r is not None:
            app_of(self).open_run(r.id, tab="log")

    def action_stop(self) -> None:
        r = self.current()
        if r is None:
            return
        if r.status not in ("queued", "running"):
            self.notify(f"run {r.id} is {r.status}: nothing to stop", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                self._stop(r.id)

        self.app.push_screen(ConfirmModal(f"Stop run {r.id} ({r.prompt or r.kind})?", "Stop"), done)

    @work(thread=True, exit_on_error=False, group="runs-control")
    def _stop(self, run_id: int) -> None:
        do_stop(self.app, run_id)

    def action_resume(self) -> None:
        r = self.current()
        if r is None:
            return
        if r.status in ("queued", "running", "done"):
            self.notify(f"run {r.id} is {r.status}: only a stopped or failed run resumes", severity="warning")
            return
        self._resume(r.id)

    @work(thread=True, exit_on_error=False, group="runs-control")
    def _resume(self, run_id: int) -> None:
        do_resume(self.app, run_id)


def do_stop(app: Any, run_id: int) -> None:
    """Stop a run (thread worker): SIGTERM, grace, SIGKILL in the launcher; notifies the outcome."""
    app.call_from_thread(app.notify, f"stopping run {run_id}…")
    try:
        stop_run(app.workspace, run_id)
    except Exception as exc:
        app.call_from_thread(app.notify, error_text(exc), severity="error")
        return
    app.call_from_thread(app.notify, f"run {run_id} stopped")


def do_resume(app: Any, run_id: int) -> None:
    try:
        resume_run(app.workspace, run_id)
    except Exception as exc:
        app.call_from_thread(app.notify, error_text(exc), severity="error")
        return
    app.call_from_thread(app.notify, f"run {run_id} resumed")
