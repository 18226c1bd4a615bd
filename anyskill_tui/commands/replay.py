"""`anyskill replay TARGET`: roll out a skill or LLC checkpoint and write a video, a motion clip, or open a window.

Module level stays light (no torch, mujoco, numpy or SQLModel): the work happens in `anyskill_tui.core.replay`,
imported inside the command. Problems a user can fix raise `UserError` (one `error: ...` line, exit 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from anyskill_tui.errors import UserError

_TARGET_HELP = (
    "What to replay: a skill id or text (its best checkpoint by CLIP score, else its latest), run:N or #N "
    "(that run's latest checkpoint), or a checkpoint file (.pt: a skill or an LLC checkpoint)."
)


def replay(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="SKILL|RUN|CHECKPOINT", help=_TARGET_HELP, show_default=False)],
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="Skill checkpoints: the caption (one of its prompts).")
    ] = None,
    seconds: Annotated[float, typer.Option("--seconds", help="Length of the replay (30 frames per second).")] = 4.0,
    envs: Annotated[int, typer.Option("--envs", help="Envs side by side in a near-square grid.")] = 1,
    camera_distance: Annotated[
        float | None, typer.Option("--camera-distance", help="Camera distance from the root (m). [default: 3]")
    ] = None,
    camera_azimuth: Annotated[
        float | None,
        typer.Option("--camera-azimuth", help="Camera azimuth (deg; 0: in front, on +x). [default: 20]"),
    ] = None,
    camera_height: Annotated[
        float | None, typer.Option("--camera-height", help="Camera height above the ground (m). [default: 1.2]")
    ] = None,
    size: Annotated[int, typer.Option("--size", help="Pixels per env (square tiles).")] = 320,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write a video: .mp4 (H.264) or .gif. Default, when nothing else is asked: "
            "RUN_DIR/exports/<checkpoint>.mp4 (or exports/ beside the checkpoint).",
            show_default=False,
        ),
    ] = None,
    window: Annotated[
        bool, typer.Option("--window", help="Open MuJoCo's viewer window on env 0 (needs a display).")
    ] = False,
    export_motion: Annotated[
        Path | None,
        typer.Option(
            "--export-motion",
            help="Write env 0's motion as a poselib .npy clip (global rotations, 30 fps, + position), "
            "usable as motion data.",
            show_default=False,
        ),
    ] = None,
    sheet: Annotated[
        Path | None,
        typer.Option("--contact-sheet", help="Write a PNG of 8 evenly spaced frames.", show_default=False),
    ] = None,
    clip: Annotated[
        str | None,
        typer.Option(
            "--clip",
            help="LLC checkpoints: encode this clip (name in the LLC's motion set or the starter set, or a .npy) "
            "as every env's latent. Default: env k takes clip k of the set.",
        ),
    ] = None,
    random_latent: Annotated[
        bool,
        typer.Option("--random-latent", help="LLC checkpoints: random unit latents, resampled every 2 s."),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seeds every random choice: same seed, same frames.")] = 0,
    engine: Annotated[str, typer.Option("--engine", help="Physics engine: cpu or gpu.")] = "cpu",
) -> None:
    """Replay a skill or an LLC: video (.mp4/.gif), viewer window, or exported motion."""
    from anyskill_tui.commands._common import say, state

    if engine not in ("cpu", "gpu"):
        raise UserError(f"--engine must be cpu or gpu, got {engine!r}")
    if window:
        from anyskill_tui.core.replay.viewer import require_display

        require_display()
    from anyskill_tui.core.replay import resolve_target

    tgt = resolve_target(target, state(ctx).workspace_opt)
    from anyskill_tui.core.replay.export import check_motion_path, default_output
    from anyskill_tui.core.replay.video import check_video_path

    if out is not None:
        check_video_path(out)
    if export_motion is not None:
        check_motion_path(export_motion)
    if sheet is not None and sheet.suffix.lower() != ".png":
        raise UserError(f"--contact-sheet {sheet}: write a .png")
    if out is None and not window and export_motion is None and sheet is None:
        out = default_output(tgt.checkpoint, ".mp4")

    from anyskill_tui.core.replay.rollout import ReplayOptions, check_engine, load_policy, replay_camera

    device = check_engine(engine)

    cam = replay_camera(size, camera_distance, camera_azimuth, camera_height)
    opts = ReplayOptions(
        seconds=seconds,
        envs=envs,
        seed=seed,
        engine=engine,
        clip=clip,
        random_latent=random_latent,
        prompt=prompt,
        camera=cam,
    )
    opts.validate()
    say(f"replaying {tgt.how}")
    policy = load_policy(tgt.checkpoint, device=device)
    if policy.scene is not None:
        say(f"scene {policy.scene.get('name', '?')!r} (from the skill's run config)")
    if policy.kind == "skill" and prompt is None and tgt.label and not policy.prompts:
        opts.prompt = tgt.label
    if out is not None or export_motion is not None or sheet is not None:
        _write(policy, opts, out, export_motion, sheet)
    if window:
        from anyskill_tui.core.replay.viewer import run_viewer

        say("viewer window: env 0, looping; close the window to stop")
        run_viewer(policy, opts)


def _write(policy, opts, out: Path | None, motion: Path | None, sheet: Path | None) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from anyskill_tui.commands._common import err_console, say
    from anyskill_tui.core.replay.export import run_replay

    with Progress(
        TextColumn("[bold]replay[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeRemainingColumn(),
        console=err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=opts.num_frames)
        res = run_replay(
            policy,
            opts,
            video=out,
            motion=motion,
            sheet=sheet,
            progress=lambda done, total: bar.update(task, completed=done),
        )
    if res.video is not None:
        w, h = res.frame_size or (0, 0)
        pad = ""
        if res.video.suffix.lower() == ".mp4" and (w % 2 or h % 2):
            pad = f", padded to {w + w % 2}x{h + h % 2} for H.264"
        say(f"wrote {res.video} ({res.num_frames} frames, {w}x{h}{pad}, 30 fps)")
    if res.motion is not None:
        say(f"wrote {res.motion} (env 0: {res.num_frames} frames at 30 fps, global rotations + position)")
    if res.sheet is not None:
        say(f"wrote {res.sheet}")
