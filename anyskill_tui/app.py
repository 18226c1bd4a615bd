"""The Textual workbench: :class:`AnySkillApp`, its command palette and :func:`run_app`.

Start-up stays fast on a large library: the app imports Textual and the screens, never torch, mujoco or warp
(``tests/test_tui_import_hygiene.py``); the library (SQLModel) is opened and every page loaded in thread
workers, so the first frame paints before any I/O finishes.

Screens (``anyskill_tui.screens``): Library (home), Skill, Train (modal), Runs, Run, Motions, Replay, Help.
Every binding has an ``id`` (``<screen>.<action>``) so :meth:`App.set_keymap` can remap it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from anyskill_tui.workspace import Workspace, find_workspace

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.store.library import Library
    from anyskill_tui.tui_services import FrameSource


class AnySkillCommands(Provider):
    """Command palette: every action, skills by prompt ("skill: ..." / "train: ..."), recent runs, clips."""

    def _static(self) -> list[tuple[str, Callable[[], Any], str]]:
        app: AnySkillApp = self.app  # type: ignore[assignment]
        return [
            ("open library", app.action_go_library, "The skills table (home)"),
            ("open runs", app.action_go_runs, "Every run, live"),
            ("open motions", app.action_go_motions, "Motion datasets and clips"),
            ("add skill", partial(app.run_screen_action, "add"), "Add a prompt to the library"),
            ("import texts.yaml", partial(app.run_screen_action, "import_texts"), "Import a prompt file"),
            ("train: new prompts", app.action_train, "Open the Train dialog"),
            ("train: LLC (low-level controller)", app.action_train_llc, "Train the CALM LLC on a motion dataset"),
            ("help: key bindings", app.action_help, "Every key of every screen"),
            ("quit", app.action_quit, "Leave anyskill"),
        ]

    async def discover(self) -> Hits:
        for name, cb, help_text in self._static():
            yield DiscoveryHit(name, cb, help=help_text)

    async def search(self, query: str) -> Hits:
        app: AnySkillApp = self.app  # type: ignore[assignment]
        matcher = self.matcher(query)
        for name, cb, help_text in self._static():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), cb, help=help_text)
        words = query.split(":", 1)[-1].strip()
        if len(words) < 2:
            return
        try:
            skills = await asyncio.to_thread(lambda: app.library().list_skills(search=words, limit=15))
        except Exception:  # the palette never crashes the app
            skills = []
        for sk in skills:
            for verb, cb in (
                ("skill", partial(app.open_skill, sk.id)),
                ("train", partial(app.action_train, [sk.text])),
                ("replay", partial(app.replay_skill, sk.id)),
            ):
                label = f"{verb}: {sk.text}"
                score = matcher.match(label) or 0.5
                yield Hit(score, matcher.highlight(label), cb, help=f"skill {sk.id} ({sk.status})")
        if words.lstrip("#").isdigit():
            rid = int(words.lstrip("#"))
            yield Hit(1.0, f"open run #{rid}", partial(app.open_run, rid), help="The run's charts, log and config")
            yield Hit(0.9, f"replay run #{rid}", partial(app.replay_run, rid), help="Its latest checkpoint, rolled out")


class AnySkillApp(App[None]):
    """The anyskill workbench on one workspace.

    Args:
        workspace: the workspace (folder or :class:`Workspace`); default: the resolved one (``ANYSKILL_HOME``).
        image_class: the textual-image widget class for frames (default: auto-picked at import).
        now: the clock used for elapsed times (tests pass a fixed one).
        poll_s: refresh period of the live screens.
        replay_seconds: length of a checkpoint's replay rollout (Replay screen).
        replay_px: pixel size (square) replay frames are rendered at.
    """

    TITLE = "anyskill"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {AnySkillCommands}
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("f1,question_mark", "help", "Help", id="app.help", tooltip="Every key of every screen", show=False),
        Binding("ctrl+l", "go_library", "Library", id="app.library", show=False),
        Binding("ctrl+r", "go_runs", "Runs", id="app.runs"),
        Binding("ctrl+o", "go_motions", "Motions", id="app.motions"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, show=False),
    ]

    def __init__(
        self,
        workspace: Workspace | Path | str | None = None,
        *,
        image_class: type | None = None,
        now: Callable[[], datetime] | None = None,
        poll_s: float = 1.0,
        replay_seconds: float = 4.0,
        replay_px: int = 160,
    ) -> None:
        super().__init__()
        if isinstance(workspace, Workspace):
            self.workspace = workspace
        else:
            self.workspace = find_workspace(workspace)
        self.image_class = image_class
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))
        self.poll_s = poll_s
        self.replay_seconds = replay_seconds
        self.replay_px = replay_px
        self._lib: Library | None = None
        self._lib_lock = threading.Lock()
        self.sub_title = str(self.workspace.root)

    # -- services ----------------------------------------------------------------------------------

    def library(self) -> Library:
        """The workspace's library, opened on first use (call from a thread worker: it may migrate)."""
        with self._lib_lock:
            if self._lib is None:
                from anyskill_tui.store.library import Library

                self._lib = Library(self.workspace.db_path)
            return self._lib

    def on_mount(self) -> None:
        from anyskill_tui.screens.library import LibraryScreen

        self.push_screen(LibraryScreen())

    def reconcile_runs(self) -> None:
        """Start :meth:`_reconcile` in a worker (the Library screen calls it once its first page is shown)."""
        self.run_worker(self._reconcile, thread=True, exit_on_error=False, group="reconcile")

    def _reconcile(self) -> None:
        """Mark runs whose process died while nobody watched (core.jobs.launcher.reconcile)."""
        from anyskill_tui.tui_services import jobs

        try:
            changed = jobs().launcher.reconcile(self.library())
        except Exception:  # absent in this build, or the library is busy: the Runs screen still works
            return
        if changed:
            self.call_from_thread(self.notify, f"runs whose process is gone were marked failed: {changed}")

    def on_unmount(self) -> None:
        if self._lib is not None:
            self._lib.close()

    def get_system_commands(self, screen: Screen) -> Any:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "Every key binding of every screen", self.action_help)

    # -- navigation --------------------------------------------------------------------------------

    def _goto(self, screen_type: type[Screen], make: Callable[[], Screen]) -> None:
        """Show the one instance of a top-level screen, keeping the Library at the bottom of the stack."""
        if isinstance(self.screen, screen_type):
            return
        while len(self.screen_stack) > 2:
            self.pop_screen()
        from anyskill_tui.screens.library import LibraryScreen

        if screen_type is not LibraryScreen:
            self.push_screen(make())

    def action_go_library(self) -> None:
        from anyskill_tui.screens.library import LibraryScreen

        self._goto(LibraryScreen, LibraryScreen)

    def action_go_runs(self) -> None:
        from anyskill_tui.screens.runs import RunsScreen

        self._goto(RunsScreen, RunsScreen)

    def action_go_motions(self) -> None:
        from anyskill_tui.screens.motions import MotionsScreen

        self._goto(MotionsScreen, MotionsScreen)

    def action_help(self) -> None:
        from anyskill_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_train(self, prompts: list[str] | None = None) -> None:
        from anyskill_tui.screens.train import TrainDialog

        self.push_screen(TrainDialog(prompts or []))

    def action_train_llc(self, motions: str | Path = "") -> None:
        """The Train dialog in LLC mode (on ``motions``: a dataset; empty: the starter set)."""
        from anyskill_tui.screens.train import TrainDialog

        self.push_screen(TrainDialog(mode="llc", motions=motions))

    def run_screen_action(self, action: str) -> None:
        """Run a Library-screen action (palette), going to the Library first."""
        from anyskill_tui.screens.library import LibraryScreen

        self.action_go_library()
        screen = self.screen
        if isinstance(screen, LibraryScreen):
            getattr(screen, f"action_{action}")()

    def open_skill(self, skill_id: int) -> None:
        from anyskill_tui.screens.skill import SkillScreen

        self.push_screen(SkillScreen(skill_id))

    def open_run(self, run_id: int, tab: str = "charts") -> None:
        from anyskill_tui.screens.run import RunScreen

        self.push_screen(RunScreen(run_id, tab=tab))

    def open_replay(self, source: FrameSource | Callable[[], FrameSource], title: str = "") -> None:
        """Open the Replay screen on a frame source (or a factory called in a worker)."""
        from anyskill_tui.screens.replay import ReplayScreen

        self.push_screen(ReplayScreen(source, title=title))

    def replay_run(self, run_id: int) -> None:
        """Replay a run's latest checkpoint (a rollout rendered in a worker), or say there is none."""
        from anyskill_tui.screens.replay import replay_run

        replay_run(self, run_id)

    def replay_skill(self, skill_id: int) -> None:
        """Replay a skill's best checkpoint, or say there is none."""
        from anyskill_tui.screens.replay import replay_skill

        replay_skill(self, skill_id)

    def compose(self) -> ComposeResult:
        yield from ()


def run_app() -> None:
    """Open the workbench on the resolved workspace (``ANYSKILL_HOME``, set by the CLI)."""
    # textual-image queries the terminal (Sixel/Kitty/half-cell) at import: it must happen before App.run.
    import textual_image.widget  # noqa: F401

    AnySkillApp().run()
