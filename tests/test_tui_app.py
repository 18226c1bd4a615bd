"""Pilot tests of the TUI flows (headless ``App.run_test``): skills add/filter/edit/delete, import with a bad
entry, a real tiny CPU LLC run queued from the Train dialog, charted and stopped, a checkpoint's replay (a real
rollout) stepped frame by frame, the viewer's no-display message."""

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


async def open_motions_with_starter_clips(pilot, app) -> None:
    """From the ready library, open the Motions screen and wait for the shipped starter clips."""
    await until(pilot, lambda: getattr(app.screen, "ready", False))
    await pilot.press("ctrl+o")
    await until(pilot, lambda: type(app.screen).__name__ == "MotionsScreen")
    await until(pilot, lambda: len(app.screen.clips) >= 10, what="starter clips")


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


#: a tiny CPU LLC (as in tests/test_llc_cli.py), typed into the Train dialog's advanced overrides
TINY_LLC = """\
# tiny nets and buffers: a few seconds of startup, epochs of a fraction of a second
network.actor_hidden=[16]
network.critic_hidden=[16]
network.encoder_hidden=[16]
network.disc_hidden=[16]
network.style_hidden=[8]
network.style_dim=8
network.latent_dim=8
ppo.horizon_length=8
ppo.minibatch_size=32
ppo.mini_epochs=1
ppo.save_frequency=1000
calm.demo_buffer_size=128
calm.replay_buffer_size=128
calm.amp_batch_size=32
calm.amp_minibatch_size=16
threads=1
"""

DISC_TAG = "info/conditional_disc_reward_mean"


def two_clip_dataset(path: Path) -> Path:
    import yaml

    from anyskill_tui.paths import configs_dir

    star = configs_dir() / "motions" / "starter"
    clips = [{"file": str(star / f"{n}.npy"), "weight": 1} for n in ("stand_idle", "squat")]
    path.write_text(yaml.safe_dump({"motions": clips}))
    return path


def test_llc_run_queued_charted_and_stopped(ws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Train dialog queues a REAL tiny CPU LLC run (detached, through the launcher); the Runs screen shows it
    running with progress, the Run screen charts the discriminator reward as it grows; stopped from the Runs
    screen it ends ``stopped`` with a final checkpoint on disk."""
    from anyskill_tui.core.learn.llc_train import EPOCH_TAGS

    assert DISC_TAG in EPOCH_TAGS
    monkeypatch.setenv("ANYSKILL_HEARTBEAT_S", "0.3")
    motions = two_clip_dataset(tmp_path / "two.yaml")

    async def go() -> None:
        app = make_app(ws)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: getattr(app.screen, "ready", False))
            await pilot.press("t")  # the Train dialog on the selected skill (skill mode)
            await until(pilot, lambda: type(app.screen).__name__ == "TrainDialog")
            dlg = app.screen
            err, preview = dlg.query_one("#train-error"), dlg.query_one("#train-preview")
            assert dlg.query_one("#prompts").text == "jump forward"
            assert "text: jump forward" in str(preview.render())  # the resolved skill config
            dlg.query_one("#envs").value = "0"
            await until(pilot, lambda: "envs must be > 0" in str(err.render()), what="envs error")

            dlg.query_one("#mode").value = "llc"  # switch to the LLC
            await until(pilot, lambda: "low-level controller" in str(dlg.query_one("#train-title").render()))
            assert not dlg.query_one("#prompts").parent.display and dlg.query_one("#motions").parent.display
            dlg.query_one("#envs").value = "4"
            dlg.query_one("#epochs").value = "1000"  # runs until it is stopped
            dlg.query_one("#motions").value = "nope.yaml"
            await until(pilot, lambda: "nope.yaml: no such file" in str(err.render()), what="motions error")
            dlg.query_one("#motions").value = str(motions)
            dlg.query_one("#overrides").text = "ppo.minibatch_size=4096"
            await until(pilot, lambda: "exceeds horizon_length x num_envs" in str(err.render()), what="cfg error")
            dlg.query_one("#overrides").text = "network.actor_hidden [16]"
            await until(pilot, lambda: "overrides line 1: expected key=value" in str(err.render()))
            dlg.query_one("#overrides").text = TINY_LLC
            await until(pilot, lambda: not err.has_class("shown"), what="a valid form")
            shown = str(preview.render())
            assert "num_envs: 4" in shown and "max_epochs: 1000" in shown and "threads: 1" in shown
            await pilot.press("ctrl+s")
            await until(pilot, lambda: type(app.screen).__name__ == "LibraryScreen", timeout=20, what="dialog closed")
            with Library(ws.db_path) as lib:
                (r,) = lib.list_runs()
            assert r.kind == "llc" and r.engine == "cpu" and r.skill_id is None
            llc = r.config["llc"]
            assert llc["env"]["num_envs"] == 4 and llc["ppo"]["max_epochs"] == 1000
            assert llc["network"]["actor_hidden"] == [16] and r.config["threads"] == 1
            from anyskill_tui.core.learn.llc_train import run_config

            want = run_config(llc, motions, engine="cpu", threads=1)  # the dialog's config = the CLI's
            assert r.config == want

            await pilot.press("ctrl+r")
            await until(pilot, lambda: type(app.screen).__name__ == "RunsScreen")
            runs = app.screen
            await until(pilot, lambda: runs.rows.get(str(r.id)) is not None, what="run row")
            assert runs.rows[str(r.id)].kind == "llc"
            await until(pilot, lambda: runs.rows[str(r.id)].status == "running", timeout=20, what="running")

            await pilot.press("enter")
            await until(pilot, lambda: type(app.screen).__name__ == "RunScreen")
            scr = app.screen
            await until(pilot, lambda: scr.chart_points.get(DISC_TAG, 0) > 0, timeout=40, what="disc-reward chart")
            first = scr.chart_points[DISC_TAG]
            await until(pilot, lambda: scr.chart_points[DISC_TAG] > first, timeout=20, what="chart to grow")
            assert DISC_TAG in scr.selected
            await until(pilot, lambda: (scr.row.progress or 0) > 0, timeout=10, what="progress")

            await pilot.press("escape")  # back to Runs: stop it there
            await until(pilot, lambda: app.screen is runs)
            await pilot.press("x")
            await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
            await pilot.press("y")
            await until(pilot, lambda: runs.rows[str(r.id)].status == "stopped", timeout=30, what="stopped")
        with Library(ws.db_path) as lib:
            assert lib.get_run(r.id).status == "stopped"
            ckpts = lib.list_checkpoints(r.id)
        assert ckpts and ckpts[-1].step >= 2
        assert (ws.root / ckpts[-1].path).is_file()

    run(go)


def test_tui_skill_runs_check_clip_weights_first(ws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A skill run queued from the Train dialog without CLIP weights (none given, none in an empty hub cache, the
    hub offline) fails at once with the CLI's message naming both options; no skill or Run is added."""
    import huggingface_hub

    from anyskill_tui.core.learn.llc_policy import random_llc_policy, save_llc_policy
    from anyskill_tui.errors import UserError
    from anyskill_tui.tui_services import TrainRequest, queue_training

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ANYSKILL_CLIP_WEIGHTS", raising=False)

    def no_network(*args, **kwargs):
        raise OSError("no network in tests")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", no_network)
    llc = save_llc_policy(tmp_path / "llc.pt", random_llc_policy(0))
    req = TrainRequest(
        prompts=["a brand new prompt"], llc_checkpoint=str(llc), overrides={"clip.cache_dir": str(tmp_path / "hub")}
    )
    with Library(ws.db_path) as lib:
        before = (len(lib.list_skills()), len(lib.list_runs()))
        with pytest.raises(UserError) as err:
            queue_training(ws, lib, req, start=False)
        msg = " ".join(str(err.value).split())
        assert "--clip-weights PATH" in msg and "ANYSKILL_CLIP_WEIGHTS" in msg
        assert (len(lib.list_skills()), len(lib.list_runs())) == before


def test_motions_screen_opens_the_llc_dialog_on_its_dataset(ws) -> None:
    async def go() -> None:
        app = make_app(ws)
        async with app.run_test(size=(100, 30)) as pilot:
            await open_motions_with_starter_clips(pilot, app)
            await pilot.press("t")
            await until(pilot, lambda: type(app.screen).__name__ == "TrainDialog")
            dlg = app.screen
            assert dlg.mode == "llc" and dlg.query_one("#motions").value.endswith("starter.yaml")
            preview = dlg.query_one("#train-preview")
            await until(pilot, lambda: "motions: <configs>/motions/starter.yaml" in str(preview.render()))
            assert dlg.query_one("#envs").value == "1024"  # configs/llc.yaml's

    run(go)


def test_replay_of_an_llc_checkpoint_from_runs(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs -> r replays a run's checkpoint (a tiny random LLC) through core.replay.frame_source: real rollout
    frames, small; stepping changes the frame and the image; w shows the viewer's no-display message, and with a
    display starts the viewer."""
    from anyskill_tui.core.learn.llc_policy import random_llc_policy, save_llc_policy
    from anyskill_tui.core.replay.viewer import NO_DISPLAY_MESSAGE

    with Library(ws.db_path) as lib:
        r = lib.create_run("llc", "cpu", config={})
        lib.update_run(r.id, status="stopped", run_dir=f"runs/{r.id}")
        ck = ws.root / "runs" / str(r.id) / "checkpoints" / "ckpt_00000003.pt"
        ck.parent.mkdir(parents=True)
        save_llc_policy(ck, random_llc_policy(seed=0, hidden=(32, 32)))
        lib.add_checkpoint(r.id, str(ck.relative_to(ws.root)), 3, {})

    async def go() -> None:
        app = make_app(ws, replay_seconds=0.5, replay_px=64)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: getattr(app.screen, "ready", False))
            await pilot.press("ctrl+r")
            await until(pilot, lambda: type(app.screen).__name__ == "RunsScreen" and app.screen.ready)
            await pilot.press("r")
            await until(pilot, lambda: type(app.screen).__name__ == "ReplayScreen", timeout=20)
            scr = app.screen
            await until(pilot, lambda: len(scr.frames) == 15, timeout=40, what="rollout frames")
            assert scr.frames[0].size == (64, 64)
            assert "ckpt_00000003.pt" in str(scr.query_one("#replay-title").render())
            if scr.playing:
                await pilot.press("space")
            assert not scr.playing
            img = scr.query_one("#replay-image")
            i0, a0 = scr.index, np.asarray(img.image).copy()
            await pilot.press("right")
            assert scr.index == (i0 + 1) % 15
            assert not np.array_equal(np.asarray(img.image), a0)  # a new frame
            await pilot.press("right", "right", "left")
            assert scr.index == (i0 + 2) % 15
            assert f"frame {scr.index + 1}/15" in str(scr.query_one("#replay-status").render())

            await pilot.press("w")  # no display: the viewer's own message
            await until(pilot, lambda: any(NO_DISPLAY_MESSAGE in n.message for n in app._notifications))
            started = []
            monkeypatch.setenv("DISPLAY", ":99")
            monkeypatch.setattr(
                "anyskill_tui.screens.replay.open_checkpoint_viewer", lambda *a: started.append(a) or 4242
            )
            await pilot.press("w")
            await until(pilot, lambda: any("pid 4242" in n.message for n in app._notifications))
            assert started == [(ws.root, ck, 0.5)]

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
            await open_motions_with_starter_clips(pilot, app)
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


@pytest.mark.parametrize("before_mount", [True, False])
def test_metric_chart_keeps_its_line_through_mount_and_resize(before_mount: bool) -> None:
    """A series handed over before the chart is mounted, or drawn before a resize, is on the canvas afterwards
    (textual-plot's own PlotWidget clears its data on mount: a finished run's chart stayed blank on CI)."""
    from textual.app import App
    from textual_hires_canvas import Canvas

    from anyskill_tui.screens.metric_chart import MetricChart

    xs = np.arange(50, dtype=float)
    ys = np.sin(xs / 8)

    class ChartApp(App):
        CSS = "MetricChart { height: 1fr; }"

    async def go() -> None:
        app = ChartApp()
        async with app.run_test(size=(60, 16)) as pilot:
            chart = MetricChart("reward", id="c")
            app.mount(chart)
            if before_mount:
                chart.show(xs, ys)
            await until(pilot, lambda: chart.is_mounted, what="mount")
            if not before_mount:
                chart.show(xs, ys)
            await until(pilot, lambda: len(chart.line_cells()) > 20, what="the line drawn")
            assert chart.points == 50 and "50 pts" in str(chart.border_subtitle)
            canvas = chart.query_one("#plot", Canvas)
            width = canvas.size.width
            await pilot.resize_terminal(90, 20)
            await until(
                pilot,
                lambda: canvas.size.width > width and len(chart.line_cells()) > 20,
                what="the line redrawn at the new size",
            )
            xmax = max(x for x, _ in chart.line_cells())
            assert xmax > width, "the line spans the widened canvas"

    run(go)
