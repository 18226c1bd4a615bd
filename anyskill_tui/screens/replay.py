"""The Replay screen: a :class:`~anyskill_tui.tui_services.FrameSource` played inside the terminal.

Frames are drawn with textual-image, which picks Sixel, Kitty TGP or half-cell blocks for the terminal (it
is imported before the app runs, see :func:`anyskill_tui.app.run_app`). Sixel/TGP flicker when replaced
(textual-image #155, #43), so frames animate only in half-cell (or unicode) mode; with the pixel protocols
the screen shows still frames and steps on keys. "Open window" starts the MuJoCo viewer when there is a
display (a clip's kinematic playback, or for a checkpoint ``core.replay.viewer.run_viewer`` through
``anyskill replay CKPT --window``; without a display the viewer's own message is shown); "export video" writes an
mp4/gif through imageio in a worker.

Checkpoint replays (a skill's best, a run's latest) are ``core.replay.frame_source`` rollouts of
``app.replay_seconds`` at ``app.replay_px`` pixels, rendered in a worker as the screen opens.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Center
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer, Header, Static

from anyskill_tui.screens.common import app_of, error_text
from anyskill_tui.tui_services import (
    ClipFrameSource,
    DirectoryFrameSource,
    FrameSource,
    export_video,
    has_display,
    open_checkpoint_viewer,
    open_viewer,
)

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0)
#: pixel size frames are decoded at (the widget scales them to its cells)
FRAME_PX = (160, 160)


def image_class(app: App) -> type:
    cls = getattr(app, "image_class", None)
    if cls is None:
        from textual_image.widget import Image as cls  # auto-picked at import
    return cls


def can_animate(cls: type) -> bool:
    """Animate only with half-cell/unicode renderables (Sixel and TGP flicker when replaced)."""
    from textual_image.renderable.halfcell import Image as Halfcell
    from textual_image.renderable.unicode import Image as Unicode

    return getattr(cls, "_Renderable", None) in (Halfcell, Unicode)


def image_widget(app: App, image: Any = None, id: str | None = None) -> Widget:
    return image_class(app)(image, id=id)


def replay_px(app: Any) -> tuple[int, int]:
    px = int(getattr(app, "replay_px", FRAME_PX[0]) or FRAME_PX[0])
    return (px, px)


def replay_run(app: Any, run_id: int) -> None:
    """Open Replay on a run's latest checkpoint (``core.replay.resolve_target("run:N")``), or notify why not."""

    def work_fn() -> None:
        try:
            from anyskill_tui.core.replay import frame_source, resolve_target

            tgt = resolve_target(f"run:{run_id}", app.workspace.root)
            source = frame_source(
                tgt.checkpoint, size=replay_px(app), seconds=float(getattr(app, "replay_seconds", 4.0))
            )
        except Exception as exc:
            app.call_from_thread(app.notify, error_text(exc), severity="warning")
            return
        app.call_from_thread(app.open_replay, source, f"run {run_id}: {tgt.label} ({tgt.checkpoint.name})")

    app.run_worker(work_fn, thread=True, exit_on_error=False, group="replay-open")


def replay_skill(app: Any, skill_id: int) -> None:
    """Open Replay on a skill's best checkpoint's frames, or notify that there is none / it cannot be replayed."""

    def work_fn() -> None:
        from anyskill_tui.screens.skill import load_skill_detail

        try:
            d = load_skill_detail(app, skill_id)
            if d.best is None:
                app.call_from_thread(
                    app.notify, f"skill {skill_id} has no checkpoint to replay yet", severity="warning"
                )
                return
            source = checkpoint_frame_source(app, d)
        except Exception as exc:
            app.call_from_thread(app.notify, error_text(exc), severity="warning")
            return
        app.call_from_thread(app.open_replay, source, f"skill {skill_id}: {d.skill.text}")

    app.run_worker(work_fn, thread=True, exit_on_error=False, group="replay-open")


def checkpoint_frame_source(app: Any, detail: Any) -> FrameSource:
    """Frames of a checkpoint: ``core.replay.frame_source(checkpoint)`` when this build has it, else a frames
    folder or GIF written beside the checkpoint; else FeatureUnavailable."""
    from anyskill_tui.tui_services import not_available, run_dir_of

    ckpt = Path(detail.best.path)
    try:
        from anyskill_tui.core import replay as core_replay

        fn = getattr(core_replay, "frame_source", None)
    except ImportError:
        fn = None
    if fn is not None:
        return fn(ckpt, size=replay_px(app), seconds=float(getattr(app, "replay_seconds", 4.0)))
    run = next(r for r, c in detail.ckpts if c is detail.best)
    run_dir = run_dir_of(app.workspace, run)
    for cand in (ckpt.with_suffix(".gif"), run_dir / "frames", run_dir / "replay.gif"):
        if cand.exists():
            return DirectoryFrameSource(cand, name=f"{detail.skill.text} step {detail.best.step}")
    raise not_available("replay of a trained checkpoint (rollout rendering)")


class ReplayScreen(Screen[None]):
    """Play frames: space play/pause, left/right step, +/- speed, w window, x export."""

    SUB_TITLE = "replay"

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back", id="replay.back"),
        Binding("space", "toggle_play", "Play/Pause", id="replay.play"),
        Binding("right,l,period", "step(1)", "Step ▶", id="replay.step_forward"),
        Binding("left,h,comma", "step(-1)", "◀ Step", id="replay.step_back"),
        Binding("plus,equals_sign", "speed(1)", "Faster", id="replay.faster"),
        Binding("minus", "speed(-1)", "Slower", id="replay.slower"),
        Binding("home", "seek(0)", "First", id="replay.first", show=False),
        Binding("w", "open_window", "Window", id="replay.window"),
        Binding("x", "export_video", "Export video", id="replay.export"),
    ]

    def __init__(self, source: FrameSource | Callable[[], FrameSource], title: str = "") -> None:
        super().__init__()
        self._factory = source if callable(source) and not isinstance(source, FrameSource) else None
        self.source: FrameSource | None = None if self._factory else source  # type: ignore[assignment]
        self.title_text = title
        self.frames: list[Any] = []
        self.index = 0
        self.playing = False
        self.speed_i = SPEEDS.index(1.0)
        self.timer: Timer | None = None
        self.animate_ok = True

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.title_text or "replay", id="replay-title")
        with Center(id="replay-box"):
            yield image_widget(self.app, None, id="replay-image")
        yield Static("loading frames…", id="replay-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.animate_ok = can_animate(image_class(self.app))
        self._load()

    @work(thread=True, exclusive=True, group="replay-load", exit_on_error=False)
    def _load(self) -> None:
        from PIL import Image

        try:
            if self.source is None:
                assert self._factory is not None
                self.source = self._factory()
            frames = []
            total = len(self.source)
            for a in self.source.frames(replay_px(self.app)):
                frames.append(Image.fromarray(a))
                if len(frames) % 10 == 0:
                    self.app.call_from_thread(self._status, f"rendering frames… {len(frames)}/{total}")
        except Exception as exc:
            self.app.call_from_thread(self._status, f"[red]cannot load frames: {error_text(exc)}[/]")
            return
        self.app.call_from_thread(self._loaded, frames)

    def _loaded(self, frames: list[Any]) -> None:
        self.frames = frames
        if not self.title_text and self.source is not None:
            self.query_one("#replay-title", Static).update(self.source.name)
        self.index = 0
        self._show()
        if self.animate_ok and len(frames) > 1:
            self.action_toggle_play()

    def _status(self, text: str) -> None:
        self.query_one("#replay-status", Static).update(text)

    @property
    def fps(self) -> float:
        return float(getattr(self.source, "fps", 15.0) or 15.0)

    def _show(self) -> None:
        if not self.frames:
            return
        self.query_one("#replay-image").image = self.frames[self.index]  # type: ignore[attr-defined]
        state = "playing" if self.playing else "paused"
        if not self.animate_ok:
            state = "still frames (this terminal's image protocol flickers when animated)"
        speed = SPEEDS[self.speed_i]
        used = getattr(self.source, "used", "")
        self._status(
            f"frame {self.index + 1}/{len(self.frames)}  ·  {self.fps:g} fps × {speed:g}  ·  {state}"
            + (f"  ·  {used}" if used else "")
        )

    def _tick(self) -> None:
        if self.frames:
            self.index = (self.index + 1) % len(self.frames)
            self._show()

    def _restart_timer(self) -> None:
        if self.timer is not None:
            self.timer.stop()
            self.timer = None
        if self.playing:
            self.timer = self.set_interval(1.0 / (self.fps * SPEEDS[self.speed_i]), self._tick)

    def action_toggle_play(self) -> None:
        if not self.animate_ok:
            self.notify("animation is off with this terminal's image protocol; step with ← →")
            return
        self.playing = not self.playing
        self._restart_timer()
        self._show()

    def action_step(self, delta: int) -> None:
        if not self.frames:
            return
        if self.playing:
            self.playing = False
            self._restart_timer()
        self.index = (self.index + delta) % len(self.frames)
        self._show()

    def action_seek(self, index: int) -> None:
        if self.frames:
            self.index = max(0, min(index, len(self.frames) - 1))
            self._show()

    def action_speed(self, delta: int) -> None:
        self.speed_i = max(0, min(len(SPEEDS) - 1, self.speed_i + delta))
        self._restart_timer()
        self._show()

    def action_open_window(self) -> None:
        ckpt = getattr(self.source, "checkpoint", None)
        if ckpt is not None:
            self._open_checkpoint_viewer(Path(ckpt))
            return
        if not has_display():
            self.notify("no display here (DISPLAY is not set): use export video (x) instead", severity="warning")
            return
        if not isinstance(self.source, ClipFrameSource):
            self.notify("the viewer window plays motion clips and checkpoints; for this replay use export video (x)")
            return
        try:
            pid = open_viewer(self.source.path)
        except Exception as exc:
            self.notify(error_text(exc), severity="error")
            return
        self.notify(f"viewer window started (pid {pid})")

    def _open_checkpoint_viewer(self, ckpt: Path) -> None:
        """``core.replay.viewer``: its no-display message, else ``run_viewer`` in a detached ``anyskill replay``."""
        from anyskill_tui.core.replay import viewer

        try:
            viewer.require_display()
            seconds = float(getattr(self.app, "replay_seconds", 4.0))
            pid = open_checkpoint_viewer(app_of(self).workspace.root, ckpt, seconds)
        except Exception as exc:
            self.notify(error_text(exc), severity="warning")
            return
        self.notify(f"viewer window started (pid {pid}): close it to stop")

    def action_export_video(self) -> None:
        if self.source is None:
            return
        self._export()

    @work(thread=True, exclusive=True, group="replay-export", exit_on_error=False)
    def _export(self) -> None:
        assert self.source is not None
        ws = app_of(self).workspace
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in self.source.name)[:60] or "replay"
        out = ws.root / "exports" / f"{safe}.mp4"
        self.app.call_from_thread(self.notify, f"exporting {out.name}…")
        try:
            path = export_video(self.source, out)
        except Exception as exc:
            try:  # no ffmpeg: fall back to a GIF
                path = export_video(self.source, out.with_suffix(".gif"))
            except Exception:
                self.app.call_from_thread(self.notify, f"export failed: {error_text(exc)}", severity="error")
                return
        self.app.call_from_thread(self.notify, f"wrote {path}")

    def on_unmount(self) -> None:
        if self.timer is not None:
            self.timer.stop()
