"""The Skill screen: prompt, tags, notes; its runs and checkpoints with scores; a preview frame of the best
checkpoint (when a frame file exists); train again, replay, export video, export motion."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static

from anyskill_tui.screens.common import app_of, error_text, fill_table, selected_key
from anyskill_tui.tui_services import (
    best_checkpoint,
    clip_score,
    fmt_score,
    fmt_time,
    not_available,
    run_dir_of,
)


@dataclass
class SkillDetail:
    skill: Any
    runs: list[Any]
    ckpts: list[tuple[Any, Any]]  # (run, checkpoint)
    best: Any | None
    best_score: float | None
    preview: Path | None


def preview_frame_for(ckpt_path: Path, run_dir: Path | None) -> Path | None:
    """A still frame of a checkpoint, if one was written: ``<ckpt>.png``, ``<ckpt dir>/<stem>.png``,
    ``run_dir/preview.png`` or the last ``run_dir/frames/*.png``."""
    cands = [ckpt_path.with_suffix(".png"), ckpt_path.parent / f"{ckpt_path.stem}.png"]
    if run_dir is not None:
        cands.append(run_dir / "preview.png")
        frames = sorted((run_dir / "frames").glob("*.png")) if (run_dir / "frames").is_dir() else []
        cands += frames[-1:]
    return next((p for p in cands if p.is_file()), None)


def load_skill_detail(app: Any, skill_id: int) -> SkillDetail:
    lib = app.library()
    skill = lib.get_skill(skill_id)
    runs = lib.list_runs(skill=skill_id)
    ckpts = [(r, c) for r in runs for c in lib.list_checkpoints(r.id)]
    best, best_s = best_checkpoint([c for _, c in ckpts])
    preview = None
    if best is not None:
        run = next(r for r, c in ckpts if c is best)
        preview = preview_frame_for(Path(best.path), run_dir_of(app.workspace, run))
    return SkillDetail(skill, runs, ckpts, best, best_s, preview)


class SkillScreen(Screen[None]):
    """One skill in detail."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back", id="skill.back"),
        Binding("t", "train", "Train again", id="skill.train"),
        Binding("r", "replay", "Replay", id="skill.replay"),
        Binding("v", "export_video", "Export video", id="skill.export_video"),
        Binding("m", "export_motion", "Export motion", id="skill.export_motion"),
        Binding("enter", "open_run", "Open run", id="skill.open_run", show=False),
    ]

    def __init__(self, skill_id: int) -> None:
        super().__init__()
        self.skill_id = skill_id
        self.sub_title = f"skill {skill_id}"
        self.detail: SkillDetail | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="skill-top"):
            yield Static("loading…", id="skill-info")
            yield Vertical(id="skill-preview")
        yield Label("Runs", classes="section")
        runs: DataTable[str] = DataTable(id="skill-runs", cursor_type="row")
        yield runs
        yield Label("Checkpoints", classes="section")
        ck: DataTable[str] = DataTable(id="skill-ckpts", cursor_type="row")
        yield ck
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#skill-runs", DataTable).add_columns("run", "kind", "engine", "status", "started", "ended")
        self.query_one("#skill-ckpts", DataTable).add_columns("run", "step", "CLIP", "metrics", "path")
        self.query_one("#skill-runs", DataTable).focus()
        self.load()

    def on_screen_resume(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="skill", exit_on_error=False)
    def load(self) -> None:
        try:
            detail = load_skill_detail(app_of(self), self.skill_id)
        except Exception as exc:
            self.app.call_from_thread(self.query_one("#skill-info", Static).update, f"[red]{error_text(exc)}[/]")
            return
        self.app.call_from_thread(self._show, detail)

    def _show(self, d: SkillDetail) -> None:
        self.detail = d
        sk = d.skill
        info = (
            f"[b]{sk.text}[/b]\n"
            f"id {sk.id}  ·  status [b]{sk.status}[/b]  ·  weight {sk.weight:g}  ·  created {fmt_time(sk.created_at)}\n"
            f"tags: {', '.join(sk.tag_list) or '—'}\n"
            f"notes: {sk.notes or '—'}\n"
            f"best CLIP: {fmt_score(d.best_score)}"
            + (f" (run {d.best.run_id}, step {d.best.step})" if d.best is not None else "  (no checkpoints yet)")
        )
        self.query_one("#skill-info", Static).update(info)
        fill_table(
            self.query_one("#skill-runs", DataTable),
            [
                (str(r.id), (f"#{r.id}", r.kind, r.engine, r.status, fmt_time(r.started_at), fmt_time(r.ended_at)))
                for r in d.runs
            ],
        )
        fill_table(
            self.query_one("#skill-ckpts", DataTable),
            [
                (
                    str(c.id),
                    (
                        f"#{r.id}",
                        str(c.step),
                        fmt_score(clip_score(c.metrics)),
                        ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.metrics.items()),
                        Path(c.path).name,
                    ),
                )
                for r, c in d.ckpts
            ],
        )
        box = self.query_one("#skill-preview", Vertical)
        box.remove_children()
        if d.preview is not None:
            from anyskill_tui.screens.replay import image_widget

            try:
                from PIL import Image

                box.mount(image_widget(self.app, Image.open(d.preview).convert("RGB"), id="preview-image"))
            except Exception as exc:
                box.mount(Static(f"preview: {error_text(exc)}"))
        else:
            box.mount(Static("no preview frame", classes="dim"))

    def action_train(self) -> None:
        if self.detail is not None:
            app_of(self).action_train([self.detail.skill.text])

    def action_replay(self) -> None:
        app_of(self).replay_skill(self.skill_id)

    @on(DataTable.RowSelected, "#skill-runs")
    def action_open_run(self) -> None:
        key = selected_key(self.query_one("#skill-runs", DataTable))
        if key is not None:
            app_of(self).open_run(int(key))

    def _core_replay(self, name: str) -> Any:
        try:
            from anyskill_tui.core import replay
        except ImportError:
            replay = None
        fn = getattr(replay, name, None) if replay is not None else None
        if fn is None:
            raise not_available(name.replace("_", " "))
        return fn

    def action_export_video(self) -> None:
        self._export("export_video")

    def action_export_motion(self) -> None:
        self._export("export_motion")

    @work(thread=True, exit_on_error=False)
    def _export(self, name: str) -> None:
        try:
            fn = self._core_replay(name)
            d = self.detail
            if d is None or d.best is None:
                raise not_available(f"{name.replace('_', ' ')} (this skill has no checkpoint)")
            out = fn(Path(d.best.path))
        except Exception as exc:
            self.app.call_from_thread(self.notify, error_text(exc), severity="warning")
            return
        self.app.call_from_thread(self.notify, f"wrote {out}")
