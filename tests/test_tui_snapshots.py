"""SVG snapshots of every screen, without pytest-textual-snapshot (it pins syrupy 4.8 and so pytest<9; this
project is on pytest 9): ``App.export_screenshot()`` is compared with ``tests/__snapshots__/tui/<name>.svg``.

Regenerate after a deliberate UI change with ``ANYSKILL_SNAPSHOT_UPDATE=1 pytest tests/test_tui_snapshots.py``
and look at the SVGs. Determinism: fixed terminal size, fixed timestamps in the data, a fixed clock for the
app, no Header clock, no cursor blink, notifications cleared, a fixed sub-title instead of the temp path, a screen
that has stopped changing, and the drawing libraries pinned in pyproject's dev extras (textual, rich, textual-plot,
textual-image, pillow: a new release may draw a glyph differently).
"""

from __future__ import annotations

import asyncio
import difflib
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from anyskill_tui.store.library import Library
from anyskill_tui.workspace import init_workspace

SNAP_DIR = Path(__file__).parent / "__snapshots__" / "tui"
UPDATE = os.environ.get("ANYSKILL_SNAPSHOT_UPDATE", "") not in ("", "0")
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SIZE = (100, 30)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYSKILL_HOME", raising=False)
    monkeypatch.delenv("ANYSKILL_ENABLE_TOY_TRAINER", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)


@pytest.fixture
def ws(tmp_path: Path):
    ws, _ = init_workspace(tmp_path / "ws")
    with Library(ws.db_path) as lib:
        for text, tags in (
            ("jump forward", ["locomotion"]),
            ("walk in place", ["locomotion"]),
            ("raise both arms", ["arms"]),
            ("bow at right angle", []),
        ):
            lib.add_skill(text, tags=tags)
        t0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
        r1 = lib.create_run("skill", "cpu", skill=1, config={"prompt": "jump forward", "num_envs": 16, "epochs": 100})
        lib.update_run(r1.id, status="done", started_at=t0, ended_at=datetime(2026, 2, 1, 9, 42, 10, tzinfo=UTC))
        lib.add_checkpoint(r1.id, "runs/1/checkpoints/ckpt_50.pt", 50, {"clip_similarity": 0.241, "loss": 0.5})
        lib.add_checkpoint(r1.id, "runs/1/checkpoints/ckpt_100.pt", 100, {"clip_similarity": 0.287, "loss": 0.25})
        r2 = lib.create_run("skill", "gpu", skill=2, config={"prompt": "walk in place"})
        lib.update_run(r2.id, status="failed", started_at=t0, ended_at=datetime(2026, 2, 1, 9, 3, tzinfo=UTC))
        lib.update_run(r2.id, error="CUDA out of memory")
        run_dir = ws.root / "runs" / "1"
        run_dir.mkdir(parents=True)
        (run_dir / "train.log").write_text(
            "".join(f"epoch {i}: clip 0.{200 + i} loss {1 / (i + 1):.3f}\n" for i in range(30))
        )
        (run_dir / "progress.json").write_text('{"step": 100, "total": 100, "steps_per_s": 2.5}')
        lib.update_run(r1.id, run_dir="runs/1")
    con = sqlite3.connect(ws.db_path)
    with con:
        con.execute("UPDATE skill SET created_at = '2026-01-15 08:30:00.000000', updated_at = created_at")
        con.execute("UPDATE run SET created_at = '2026-02-01 08:59:00.000000'")
    con.close()
    return ws


def _events(run_dir: Path) -> None:
    """Canned metrics for run 1 (an event file written through core.jobs.metrics when present)."""
    metrics = pytest.importorskip("anyskill_tui.core.jobs.metrics")
    with metrics.MetricsWriter(run_dir) as w:
        for step in range(1, 101):
            w.add_scalars(
                step,
                {"clip_similarity": 0.18 + 0.1 * (1 - np.exp(-step / 30)), "episode_length": 40 + step % 7 * 3},
            )


def check(name: str, svg: str) -> None:
    path = SNAP_DIR / f"{name}.svg"
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg)
        if not UPDATE:
            pytest.skip(f"snapshot {path.name} was missing and has been written; run again")
        return
    want = path.read_text()
    if svg != want:
        diff = "".join(list(difflib.unified_diff(want.splitlines(True), svg.splitlines(True), n=0))[:40])
        (SNAP_DIR / f"{name}.actual.svg").write_text(svg)
        raise AssertionError(f"snapshot {name} differs (actual written beside it):\n{diff}")


async def _settle(app, pilot, cond=lambda: True, timeout: float = 15.0) -> None:
    from textual.widgets import Input, TextArea

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("screen did not settle")
        await pilot.pause(0.05)
    await app.workers.wait_for_complete()
    await pilot.pause(0.1)
    for w in app.screen.query(Input):
        w.cursor_blink = False
    for w in app.screen.query(TextArea):
        w.cursor_blink = False
    app.clear_notifications()
    await pilot.pause(0.05)


async def _stable_screenshot(app, pilot, timeout: float = 15.0) -> str:
    """The screen once two exports 0.2 s apart agree: widgets that paint after a layout pass (the plots draw
    into canvases sized on resize) can lag the condition a test waits for on a loaded machine."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    svg = app.export_screenshot()
    while True:
        await pilot.pause(0.2)
        again = app.export_screenshot()
        if again == svg or loop.time() > end:
            return again
        svg = again


def snap(ws, name: str, drive) -> None:
    from textual_image.widget import HalfcellImage

    from anyskill_tui.app import AnySkillApp

    async def go() -> None:
        app = AnySkillApp(ws, image_class=HalfcellImage, now=lambda: NOW, poll_s=3600)
        async with app.run_test(size=SIZE) as pilot:
            app.sub_title = "workspace"
            await _settle(app, pilot, lambda: getattr(app.screen, "ready", False))
            await drive(app, pilot)
            check(name, await _stable_screenshot(app, pilot))

    asyncio.run(go())


def test_snapshot_library(ws) -> None:
    async def drive(app, pilot) -> None:
        await _settle(app, pilot)

    snap(ws, "library", drive)


def test_snapshot_add_dialog_with_error(ws) -> None:
    async def drive(app, pilot) -> None:
        await pilot.press("a")
        await _settle(app, pilot, lambda: type(app.screen).__name__ == "SkillFormModal")
        app.screen.query_one("#prompt").value = "jump forward"
        await pilot.press("ctrl+s")
        await _settle(app, pilot, lambda: "already" in str(app.screen.query_one("#form-error").render()))

    snap(ws, "add_dialog", drive)


def test_snapshot_skill(ws) -> None:
    async def drive(app, pilot) -> None:
        await pilot.press("enter")
        await _settle(app, pilot, lambda: getattr(app.screen, "detail", None) is not None)

    snap(ws, "skill", drive)


def test_snapshot_train_dialog(ws) -> None:
    async def drive(app, pilot) -> None:
        await pilot.press("t")
        await _settle(app, pilot, lambda: type(app.screen).__name__ == "TrainDialog")

    snap(ws, "train_dialog", drive)


def test_snapshot_runs(ws) -> None:
    async def drive(app, pilot) -> None:
        await pilot.press("ctrl+r")
        await _settle(
            app, pilot, lambda: getattr(app.screen, "ready", False) and type(app.screen).__name__ == "RunsScreen"
        )

    snap(ws, "runs", drive)


def test_snapshot_run_charts(ws) -> None:
    _events(ws.root / "runs" / "1")

    async def drive(app, pilot) -> None:
        app.open_run(1)

        def both_plotted() -> bool:
            from anyskill_tui.screens.metric_chart import MetricChart

            charts = {c.tag: c for c in app.screen.query(MetricChart)}
            return all(tag in charts and charts[tag].line_cells() for tag in ("clip_similarity", "episode_length"))

        await _settle(app, pilot, both_plotted)

    snap(ws, "run_charts", drive)


def test_snapshot_run_log(ws) -> None:
    async def drive(app, pilot) -> None:
        app.open_run(1, tab="log")
        await _settle(app, pilot, lambda: getattr(app.screen, "polls", 0) > 0)

    snap(ws, "run_log", drive)


def test_snapshot_motions(ws) -> None:
    async def drive(app, pilot) -> None:
        await pilot.press("ctrl+o")
        await _settle(app, pilot, lambda: len(getattr(app.screen, "clips", {})) >= 10)

    snap(ws, "motions", drive)


def test_snapshot_replay(ws) -> None:
    from anyskill_tui.tui_services import ArrayFrameSource

    frames = []
    for i in range(4):
        a = np.full((40, 40, 3), 30, np.uint8)
        a[10:30, 5 + i * 8 : 13 + i * 8] = (240, 180, 40)
        frames.append(a)

    async def drive(app, pilot) -> None:
        app.open_replay(ArrayFrameSource(frames, fps=10, name="generated"), "generated frames")
        await _settle(app, pilot, lambda: len(getattr(app.screen, "frames", [])) == 4)
        await pilot.press("space")  # pause on a known frame
        app.screen.action_seek(2)
        await pilot.pause(0.05)

    snap(ws, "replay", drive)


def test_snapshot_help(ws) -> None:
    async def drive(app, pilot) -> None:
        await pilot.press("f1")
        await _settle(app, pilot, lambda: type(app.screen).__name__ == "HelpScreen")

    snap(ws, "help", drive)
