"""`anyskill motions ...`: inspect, validate, view and import motion clips; regenerate the starter set.

Module level stays light (no torch, mujoco or numpy): every command imports what it needs. Problems a user can
fix (a missing file, a bad clip or dataset, a wrong --out extension) are raised as `UserError`, which the root
group prints as one `error: ...` line with exit code 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from anyskill_tui.errors import UserError

app = typer.Typer(help="Motion clips and datasets: info, validate, view, import BVH.", no_args_is_help=True)

_DATASET_SUFFIXES = (".yaml", ".yml")


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the motion core's file errors (ClipError, DatasetError, BvhError) into one-line UserErrors."""
    from anyskill_tui.core.motion.clip import ClipError
    from anyskill_tui.core.motion.dataset import DatasetError

    try:
        yield
    except (ClipError, DatasetError) as e:
        raise UserError(_one_line(str(e))) from None
    except OSError as e:
        raise UserError(_one_line(f"{e.filename or ''}: {e.strerror or e}")) from None


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def _existing(path: Path) -> Path:
    if not path.exists():
        raise UserError(f"{path}: file not found. Give a .npy clip or a motions .yaml dataset")
    if path.is_dir():
        raise UserError(f"{path}: is a folder. Give a .npy clip or a motions .yaml dataset")
    return path


def _entries(path: Path) -> list[tuple[Path, float, str | None]]:
    """(file, normalised weight, text) of a .npy clip (weight 1) or of every entry of a dataset YAML."""
    from anyskill_tui.core.motion.dataset import read_dataset_entries

    _existing(path)
    if path.suffix.lower() == ".npy":
        return [(path, 1.0, None)]
    if path.suffix.lower() not in _DATASET_SUFFIXES:
        raise UserError(f"{path}: expected a .npy clip or a .yaml dataset, not {path.suffix or 'no extension'}")
    with _user_errors():
        entries = read_dataset_entries(path)
    total = sum(e.weight for e in entries)
    return [(e.file, e.weight / total, e.text) for e in entries]


@app.command("info")
def info(
    target: Annotated[Path, typer.Argument(help="A .npy clip or a motions .yaml dataset.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """Frames, fps, duration and sampling weight of each clip, and totals."""
    from anyskill_tui.commands._common import out_console, print_json
    from anyskill_tui.core.motion.clip import read_clip

    rows = []
    for file, weight, text in _entries(target):
        with _user_errors():
            clip = read_clip(file)
        rows.append(
            {
                "name": clip.name,
                "file": str(file),
                "frames": clip.num_frames,
                "fps": clip.fps,
                "duration_s": round(clip.duration, 4),
                "weight": round(weight, 6),
                "text": text,
            }
        )
    totals = {
        "clips": len(rows),
        "frames": sum(r["frames"] for r in rows),
        "duration_s": round(sum(r["duration_s"] for r in rows), 4),
    }
    if as_json:
        print_json({"source": str(target), "clips": rows, "totals": totals})
        return
    from rich.table import Table

    table = Table(title=str(target), title_justify="left")
    columns = [("clip", "left"), ("frames", "right"), ("fps", "right"), ("duration", "right")]
    columns += [("weight", "right"), ("text", "left")]
    for col, just in columns:
        table.add_column(col, justify=just)
    for r in rows:
        cells = [r["name"], str(r["frames"]), f"{r['fps']:g}", f"{r['duration_s']:.2f} s", f"{r['weight']:.4f}"]
        table.add_row(*cells, r["text"] or "")
    table.add_section()
    table.add_row(f"{totals['clips']} clips", str(totals["frames"]), "", f"{totals['duration_s']:.2f} s", "", "")
    out_console().print(table)


@app.command("validate")
def validate(
    target: Annotated[Path, typer.Argument(help="A .npy clip or a motions .yaml dataset.", show_default=False)],
    physical: Annotated[
        bool,
        typer.Option(
            "--physical",
            help="Also check plausibility: floor penetration <= 1 cm, stance-foot slide < 2 cm, self-penetration "
            "<= 1 cm, joint limits.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """Check every clip loads (format, shapes, quaternions, fps); exit 1 when any fails."""
    from anyskill_tui.commands._common import print_json, say
    from anyskill_tui.core.motion.clip import ClipError, read_clip

    entries = _entries(target)
    model = None
    if physical:
        from anyskill_tui.core.character.model import load_model

        model = load_model()
    results, failed = [], 0
    for file, _w, _t in entries:
        item: dict = {"file": str(file), "name": file.stem, "ok": True, "problems": []}
        try:
            clip = read_clip(file)
        except ClipError as e:
            item["ok"] = False
            item["problems"] = [_one_line(e.message)]
            clip = None
        if clip is not None and physical:
            from anyskill_tui.core.motion.plausibility import check_clip

            rep = check_clip(clip, model=model)
            item.update(rep.as_dict())
            item["file"] = str(file)
        item["ok"] = not item["problems"]
        failed += not item["ok"]
        results.append(item)
        if not as_json:
            if item["ok"]:
                extra = ""
                if physical:
                    extra = (
                        f" (floor {item['max_penetration_m'] * 100:.1f} cm, slide {item['max_slide_m'] * 100:.1f} cm,"
                        f" self {item['max_self_penetration_m'] * 100:.1f} cm)"
                    )
                say(f"[green]ok[/green]   {item['name']}{extra}")
            else:
                say(f"[red]FAIL[/red] {item['name']} ({file}): {'; '.join(item['problems'])}")
    if as_json:
        print_json({"source": str(target), "ok": failed == 0, "clips": results})
    if failed:
        raise UserError(f"{failed} of {len(results)} clip(s) failed validation in {target}")


@app.command("view")
def view(
    clip_file: Annotated[Path, typer.Argument(help="A .npy clip.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Video to write: .mp4 or .gif.", show_default=False)],
    size: Annotated[int, typer.Option("--size", min=16, max=2048, help="Frame width and height (pixels).")] = 320,
    camera_distance: Annotated[float, typer.Option("--camera-distance", min=0.5, help="Camera distance (m).")] = 3.0,
    azimuth: Annotated[float, typer.Option("--azimuth", help="Camera azimuth (deg; 270 = side view).")] = 235.0,
    elevation: Annotated[float, typer.Option("--elevation", help="Camera elevation (deg).")] = -12.0,
) -> None:
    """Render a clip's kinematic playback (headless, CPU) to a video."""
    import os

    from anyskill_tui.commands._common import say

    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise UserError(f"--out {out}: unsupported extension {out.suffix or '(none)'}; use .mp4 or .gif")
    _existing(clip_file)
    if clip_file.suffix.lower() != ".npy":
        raise UserError(f"{clip_file}: view takes one .npy clip")
    from anyskill_tui.core.motion.clip import read_clip
    from anyskill_tui.core.motion.render import CameraSpec, render_clip

    with _user_errors():
        clip = read_clip(clip_file)
        path = render_clip(clip, out, size=size, camera=CameraSpec(camera_distance, azimuth, elevation))
    say(f"wrote {path} ({clip.num_frames} frames, {size}x{size}, {clip.fps:g} fps)")


@app.command("import")
def import_(
    bvh_file: Annotated[Path, typer.Argument(help="A .bvh motion capture file.", show_default=False)],
    skeleton: Annotated[str, typer.Option("--skeleton", help="Joint-name preset of the BVH skeleton.")] = "cmu",
    scale: Annotated[
        float | None, typer.Option("--scale", help="Metres per BVH unit (default: from the leg length).")
    ] = None,
    fps: Annotated[
        float | None, typer.Option("--fps", help="Resample to this frame rate (default: the file's).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Clip to write (.npy). Default: the BVH's name with .npy, beside it."),
    ] = None,
) -> None:
    """Retarget a BVH file onto the character and write a .npy clip."""
    from anyskill_tui.commands._common import say

    if not bvh_file.exists():
        raise UserError(f"{bvh_file}: file not found. Give the path of a .bvh file")
    if bvh_file.suffix.lower() != ".bvh":
        raise UserError(f"{bvh_file}: expected a .bvh file, not {bvh_file.suffix or 'no extension'}")
    dest = out if out is not None else bvh_file.with_suffix(".npy")
    if dest.suffix.lower() != ".npy":
        raise UserError(f"--out {dest}: unsupported extension {dest.suffix or '(none)'}; clips are .npy files")
    from anyskill_tui.core.motion.bvh_import import import_bvh
    from anyskill_tui.core.motion.clip import write_clip

    with _user_errors():
        clip = import_bvh(bvh_file, skeleton=skeleton, scale=scale, fps=fps, name=dest.stem)
        path = write_clip(dest, clip)
    say(f"wrote {path} ({clip.num_frames} frames at {clip.fps:g} fps, {clip.duration:.2f} s)")


@app.command("starter")
def starter(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for the clips and a starter.yaml. Default: the checked-in configs/motions/starter."
        ),
    ] = None,
) -> None:
    """Regenerate the procedural starter motions (deterministic: same bytes every run)."""
    from anyskill_tui.commands._common import say
    from anyskill_tui.core.motion import starter as S

    if out is None and not S.STARTER_DIR.parent.is_dir():
        raise UserError(f"no configs/motions folder at {S.STARTER_DIR.parent}; give --out DIR")
    if out is not None and out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    with _user_errors():
        paths = S.write_starter(out)
    say(f"wrote {len(paths) - 1} clips and {paths[-1]}")
