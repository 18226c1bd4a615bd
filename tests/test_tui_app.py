"""Pilot tests of the TUI flows (headless ``App.run_test``): skills add/filter/edit/delete, import with a bad
entry, a toy training run queued, charted and stopped, a replay stepped frame by frame."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from anyskill_tui.store.library import Library
from anyskill_tui.workspace import init_workspace

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANYSKILL_HOME", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


@pytest.fixture
def ws(tmp_path: Path):
    ws, _ = init_workspace(tmp_path / "ws")
    with Library(ws.db_path) as lib:
        for text, tags in (("jump forward", ["locomotion"]), ("walk in place", ["locomotion"]), ("wave", ["arms"])):
            lib.add_skill(text, tags=tags)
    return ws


def make_app(ws, **kw):
    from textual_image.widget import HalfcellImage

    from anyskill_tui.app import AnySkillApp

    return AnySkillApp(ws, image_class=HalfcellImage, poll_s=kw.pop("poll_s", 0.2), **kw)


async def until(pilot, cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Pause the pilot until ``cond()`` holds (bounded)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro_fn())


def table_texts(app) -> list[str]:
    t = app.screen.query_one("#skills")
    return [str(t.get_row_at(i)[1]) for i in range(t.row_count)]


def test_add_filter_edit_delete(ws) -> None:
    async def go() -> None:
        app = make_app(ws)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: getattr(app.screen, "ready", False), what="library table")
            assert table_texts(app) == ["jump forward", "walk in place", "wave"]

            # add: an empty prompt is refused inline, then a valid one is saved
            await pilot.press("a")
            await until(pilot, lambda: type(app.screen).__name__ == "SkillFormModal")
            await pilot.press("ctrl+s")
            err = app.screen.query_one("#form-error")
            await until(pilot, lambda: "empty prompt" in str(err.render()), what="empty-prompt error")
            app.screen.query_one("#prompt").value = "x" * 301
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "over the limit of 300" in str(err.render()), what="too-long error")
            app.screen.query_one("#prompt").value = "Jump   FORWARD"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "already in the library" in str(err.render()), what="duplicate error")
            app.screen.query_one("#prompt").value = "kick high"
            app.screen.query_one("#tags").value = "legs, martial"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "kick high" in table_texts(app), what="new row")

            # filter as you type
            await pilot.press("slash", *"loco")
            await until(pilot, lambda: table_texts(app) == ["jump forward", "walk in place"], what="filtered rows")
            await pilot.press("escape")
            await until(pilot, lambda: len(table_texts(app)) == 4, what="unfiltered rows")

            # edit the last row (kick high)
            table = app.screen.query_one("#skills")
            table.move_cursor(row=3)
            await pilot.press("e")
            await until(pilot, lambda: type(app.screen).__name__ == "SkillFormModal")
            assert app.screen.query_one("#prompt").value == "kick high"
            app.screen.query_one("#prompt").value = "kick very high"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "kick very high" in table_texts(app), what="edited row")

            # delete it (confirmation: n keeps it, y deletes)
            table.move_cursor(row=3)
            await pilot.press("d")
            await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
            await pilot.press("n")
            await pilot.pause(0.1)
            assert "kick very high" in table_texts(app)
            await pilot.press("d")
            await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
            await pilot.press("y")
            await until(pilot, lambda: "kick very high" not in table_texts(app), what="deleted row")
        with Library(ws.db_path) as lib:
            assert [s.text for s in lib.list_skills()] == ["jump forward", "walk in place", "wave"]

    run(go)


def test_sort_cycles_and_pages(ws) -> None:
    with Library(ws.db_path) as lib:
        lib.import_texts_file(
            _write(ws.root / "many.yaml", "texts:\n" + "".join(f"  - text: p{i:04d}\n" for i in range(450)))
        )

    async def go() -> None:
        app = make_app(ws)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: getattr(app.screen, "ready", False))
            scr = app.screen
            assert scr.loaded == 200 and scr.has_more  # paged: 200 of 453
            scr.query_one("#skills").move_cursor(row=199)
            await until(pilot, lambda: scr.loaded == 400, what="second page")
            await pilot.press("s")  # sort by prompt
            await until(pilot, lambda: table_texts(app)[:2] == ["jump forward", "p0000"], what="sorted by prompt")
            await pilot.press("S")  # reversed
            await until(pilot, lambda: table_texts(app)[0] == "wave", what="reversed")

    run(go)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_import_with_bad_entry_imports_nothing(ws) -> None:
    _write(ws.root / "texts.yaml", "texts:\n  - text: run fast\n    weight: 1\n  - text: ''\n  - text: sit down\n")
    good = _write(ws.root / "good.yaml", "texts:\n  - text: run fast\n  - text: sit down\n    tags: [rest]\n")

    async def go() -> None:
        app = make_app(ws)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: getattr(app.screen, "ready", False))
            await pilot.press("i")
            await until(pilot, lambda: type(app.screen).__name__ == "PathModal")
            await pilot.press(*"texts.yaml", "enter")
            err = app.screen.query_one("#form-error")
            await until(pilot, lambda: "texts[1]" in str(err.render()), what="import error")
            assert "empty prompt" in str(err.render())
            with Library(ws.db_path) as lib:
                assert len(lib.list_skills()) == 3  # nothing imported
            app.screen.query_one("#path").value = str(good)
            await pilot.press("enter")
            await until(pilot, lambda: "sit down" in table_texts(app), what="imported rows")

    run(go)


def test_toy_run_queued_charted_and_stopped(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("anyskill_tui.core.jobs.launcher")
    monkeypatch.setenv("ANYSKILL_ENABLE_TOY_TRAINER", "1")

    async def go() -> None:
        app = make_app(ws)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: getattr(app.screen, "ready", False))
            await pilot.press("t")  # train the selected skill (jump forward)
            await until(pilot, lambda: type(app.screen).__name__ == "TrainDialog")
            dlg = app.screen
            assert dlg.query_one("#prompts").text == "jump forward"
            dlg.query_one("#envs").value = "0"
            await until(pilot, lambda: "envs must be > 0" in str(dlg.query_one("#train-error").render()))
            dlg.query_one("#envs").value = "4"
            dlg.query_one("#epochs").value = "2000"
            dlg.query_one("#toy").value = True
            await until(pilot, lambda: "trainer: toy" in str(dlg.query_one("#train-preview").render()))
            await pilot.press("ctrl+s")
            await until(pilot, lambda: type(app.screen).__name__ == "LibraryScreen", what="dialog closed")
            with Library(ws.db_path) as lib:
                (r,) = lib.list_runs()
            assert r.config["trainer"] == "toy" and r.config["num_envs"] == 4

            await pilot.press("ctrl+r")
            await until(pilot, lambda: type(app.screen).__name__ == "RunsScreen")
            runs = app.screen
            await until(pilot, lambda: runs.rows.get(str(r.id)) is not None, what="run row")
            await until(pilot, lambda: runs.rows[str(r.id)].status == "running", timeout=30, what="running")
            await until(pilot, lambda: (runs.rows[str(r.id)].progress or 0) > 0, timeout=30, what="progress")

            await pilot.press("enter")
            await until(pilot, lambda: type(app.screen).__name__ == "RunScreen")
            scr = app.screen
            await until(pilot, lambda: scr.chart_points.get("loss", 0) > 0, timeout=30, what="loss chart")
            first = scr.chart_points["loss"]
            await until(pilot, lambda: scr.chart_points["loss"] > first, timeout=30, what="chart to grow")
            assert "loss" in scr.selected

            await pilot.press("x")
            await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
            await pilot.press("y")
            await until(pilot, lambda: scr.row is not None and scr.row.status == "stopped", timeout=30, what="stop")
        with Library(ws.db_path) as lib:
            assert lib.get_run(r.id).status == "stopped"
            assert lib.list_checkpoints(r.id)

    run(go)


def test_replay_steps_frames(ws, tmp_path: Path) -> None:
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        a = np.zeros((24, 32, 3), np.uint8)
        a[:, i * 5 : i * 5 + 5] = (255, 200, 0)
        Image.fromarray(a).save(frames / f"{i:03d}.png")

    async def go() -> None:
        from anyskill_tui.tui_services import DirectoryFrameSource

        app = make_app(ws)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: getattr(app.screen, "ready", False))
            app.open_replay(DirectoryFrameSource(frames, fps=10), "generated frames")
            await until(pilot, lambda: type(app.screen).__name__ == "ReplayScreen")
            scr = app.screen
            await until(pilot, lambda: len(scr.frames) == 6, what="frames")
            assert scr.playing  # half-cell: animates
            await pilot.press("space")
            assert not scr.playing
            i0 = scr.index
            await pilot.press("right")
            assert scr.index == (i0 + 1) % 6
            await pilot.press("left", "left")
            assert scr.index == (i0 - 1) % 6
            assert f"frame {scr.index + 1}/6" in str(scr.query_one("#replay-status").render())
            await pilot.press("plus")
            assert "× 2" in str(scr.query_one("#replay-status").render())
            await pilot.press("w")  # no DISPLAY: a notification, no crash
            await pilot.pause(0.05)
            assert any("no display" in n.message for n in app._notifications)

    run(go)


def test_replay_of_a_starter_clip_from_motions(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    """Motions -> preview opens Replay on a starter clip (skeleton frames: no GL in CI)."""
    from anyskill_tui import tui_services

    real = tui_services.ClipFrameSource

    def skeleton_source(path, cache_dir=None):
        return real(path, cache_dir=None, renderer="skeleton")

    monkeypatch.setattr("anyskill_tui.screens.motions.ClipFrameSource", skeleton_source)

    async def go() -> None:
        app = make_app(ws)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: getattr(app.screen, "ready", False))
            await pilot.press("ctrl+o")
            await until(pilot, lambda: type(app.screen).__name__ == "MotionsScreen")
            await until(pilot, lambda: len(app.screen.clips) >= 10, what="starter clips")
            await pilot.press("p")
            await until(pilot, lambda: type(app.screen).__name__ == "ReplayScreen")
            scr = app.screen
            await until(pilot, lambda: len(scr.frames) > 10, timeout=60, what="clip frames")
            await pilot.press("space")
            i0 = scr.index
            await pilot.press("period")
            assert scr.index == (i0 + 1) % len(scr.frames)

    run(go)


def test_skill_screen_replay_without_checkpoint_and_exports(ws) -> None:
    async def go() -> None:
        app = make_app(ws)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: getattr(app.screen, "ready", False))
            await pilot.press("r")
            await until(
                pilot, lambda: any("no checkpoint" in n.message for n in app._notifications), what="no-ckpt notice"
            )
            await pilot.press("enter")
            await until(pilot, lambda: type(app.screen).__name__ == "SkillScreen")
            await until(pilot, lambda: app.screen.detail is not None)
            await pilot.press("v", "m")
            await until(
                pilot,
                lambda: sum("not available in this build yet" in n.message for n in app._notifications) >= 2,
                what="not-available notices",
            )

    run(go)


def test_help_and_palette_and_binding_ids(ws) -> None:
    from anyskill_tui.screens.help import all_bindings

    ids = [b.id for _, bs in all_bindings() for b in bs]
    assert all(ids) and all(b.description for _, bs in all_bindings() for b in bs)
    assert len(ids) == len(set(ids))

    async def go() -> None:
        from anyskill_tui.app import AnySkillCommands

        app = make_app(ws)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: getattr(app.screen, "ready", False))
            await pilot.press("f1")
            await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
            assert app.screen.query_one("#help-table").row_count == len(ids)
            await pilot.press("escape")
            provider = AnySkillCommands(app.screen)
            hits = [h async for h in provider.search("train: jump")]
            assert any("train: jump forward" in str(h.match_display) for h in hits)
            hits = [h async for h in provider.search("open runs")]
            hits[0].command()
            await until(pilot, lambda: type(app.screen).__name__ == "RunsScreen")
            await until(pilot, lambda: app.screen.ready, what="runs table")

    run(go)


def test_import_hygiene_no_torch_mujoco_warp(tmp_path: Path) -> None:
    """Importing the TUI and constructing the app imports none of torch, mujoco, warp (a fresh interpreter)."""
    ws, _ = init_workspace(tmp_path / "ws")
    code = (
        "import sys\n"
        "import anyskill_tui.app as a\n"
        f"app = a.AnySkillApp({str(ws.root)!r})\n"
        "import anyskill_tui.screens.library, anyskill_tui.screens.runs, anyskill_tui.screens.run\n"
        "import anyskill_tui.screens.replay, anyskill_tui.screens.motions, anyskill_tui.screens.skill\n"
        "import anyskill_tui.screens.train, anyskill_tui.screens.help, anyskill_tui.tui_services\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'mujoco', 'warp', 'mujoco_warp'))\n"
        "print(','.join(bad))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"heavy modules imported at start-up: {out.stdout}"
