"""The Motions screen: datasets (the workspace's ``configs/motions/*.yaml`` and the shipped starter set) and
their clips (frames, fps, duration, weight); validate a dataset, import a BVH, preview a clip in Replay, train the
LLC on the selected clip's dataset (the Train dialog in LLC mode)."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from anyskill_tui.screens.common import PathModal, app_of, error_text, selected_key
from anyskill_tui.tui_services import ClipFrameSource, ClipInfo, dataset_clips, import_bvh_file, motion_datasets

COLUMNS = ("dataset", "clip", "frames", "fps", "duration", "weight", "text")


def load_clips(app: object) -> tuple[list[ClipInfo], list[str]]:
    infos: list[ClipInfo] = []
    problems: list[str] = []
    for ds in motion_datasets(app.workspace):  # type: ignore[attr-defined]
        try:
            infos += dataset_clips(ds)
        except Exception as exc:
            problems.append(error_text(exc))
    return infos, problems


class MotionsScreen(Screen[None]):
    """Motion datasets and clips."""

    SUB_TITLE = "motions"

    BINDINGS = [
        Binding("escape", "app.go_library", "Library", id="motions.back"),
        Binding("p,enter", "preview", "Preview", id="motions.preview"),
        Binding("v", "validate", "Validate", id="motions.validate"),
        Binding("b", "import_bvh", "Import BVH", id="motions.import_bvh"),
        Binding("t", "train_llc", "Train LLC", id="motions.train_llc"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.clips: dict[str, ClipInfo] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        table: DataTable[str] = DataTable(id="clips", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("loading motion datasets…", id="motions-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#clips", DataTable)
        widths = {"clip": 16, "text": 32}
        for c in COLUMNS:
            table.add_column(c, key=c, width=widths.get(c))
        table.focus()
        self.load()

    @work(thread=True, exclusive=True, group="motions", exit_on_error=False)
    def load(self) -> None:
        infos, problems = load_clips(self.app)
        self.app.call_from_thread(self._show, infos, problems)

    def _show(self, infos: list[ClipInfo], problems: list[str]) -> None:
        table = self.query_one("#clips", DataTable)
        table.clear()
        self.clips = {}
        for i, c in enumerate(infos):
            key = f"{i}:{c.file}"
            self.clips[key] = c
            table.add_row(
                c.dataset.stem,
                c.name + (" [red](bad)[/]" if c.error else ""),
                str(c.frames),
                f"{c.fps:g}",
                f"{c.duration:.2f}s",
                f"{c.weight:.3f}",
                c.text or "—",
                key=key,
            )
        datasets = sorted({c.dataset.stem for c in infos})
        total = sum(c.duration for c in infos)
        msg = f"{len(infos)} clips in {len(datasets)} datasets ({', '.join(datasets)}), {total:.1f}s in all"
        if problems:
            msg += "\n[red]" + "\n".join(problems) + "[/]"
        self.query_one("#motions-status", Static).update(msg if infos or problems else "no motion datasets found")

    def current(self) -> ClipInfo | None:
        key = selected_key(self.query_one("#clips", DataTable))
        return self.clips.get(key) if key else None

    @on(DataTable.RowSelected, "#clips")
    def action_preview(self) -> None:
        c = self.current()
        if c is None:
            return
        cache = app_of(self).workspace.root / ".cache" / "replay"
        path = c.file
        app_of(self).open_replay(lambda: ClipFrameSource(path, cache_dir=cache), f"clip {c.name}: {c.text or ''}")

    def action_train_llc(self) -> None:
        c = self.current()
        app_of(self).action_train_llc(c.dataset if c is not None else "")

    def action_validate(self) -> None:
        c = self.current()
        if c is not None:
            self._validate(c.dataset)

    @work(thread=True, exclusive=True, group="motions-validate", exit_on_error=False)
    def _validate(self, dataset: Path) -> None:
        from anyskill_tui.tui_services import validate_dataset

        self.app.call_from_thread(self.notify, f"validating {dataset.name}…")
        problems = validate_dataset(dataset)
        if problems:
            self.app.call_from_thread(self.notify, "\n".join(problems), severity="error", timeout=10)
        else:
            self.app.call_from_thread(self.notify, f"{dataset.name}: every clip loads and checks out")

    def action_import_bvh(self) -> None:
        out_dir = app_of(self).workspace.configs_dir / "motions" / "imported"

        def do_import(path: str) -> Path:
            p = Path(path).expanduser()
            if not p.is_absolute():
                p = app_of(self).workspace.root / p
            return import_bvh_file(p, out_dir)

        def done(result: Path | None) -> None:
            if result is not None:
                self.notify(f"imported {result}")
                self.load()

        self.app.push_screen(PathModal("Import a BVH file", "path/to/clip.bvh", do_import, "Import"), done)
