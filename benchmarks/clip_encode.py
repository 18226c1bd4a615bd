"""CLIP image-encoding throughput of the render reward: `ClipRewardModel.encode_images`, preprocessing included.

    python benchmarks/clip_encode.py --model ViT-B-32 --batch 1024 --device cuda
    python benchmarks/clip_encode.py --batch 16 --device cpu --iters 2          # a smoke run

Random weights (`pretrained=None`, nothing is downloaded; throughput does not depend on the weights). Frames are
random (N, 3, S, S) floats in [0, 1] already on the device, as the renderer hands them over; S is `--frame-size`
(224 by default: normalisation only; another size adds the resize). Prints, warm-up excluded:
- encode: images/s of `encode_images` (device preprocessing + encode_image under autocast + L2 normalisation),
  in chunks of `--chunk` (default: the whole batch);
- preprocess: images/s of the preprocessing alone;
- peak CUDA memory of one encode call.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from anyskill_tui.core.reward.clip import ClipRewardModel  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn, n_images: int, iters: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return n_images * iters / (time.perf_counter() - t0)


def _fmt(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32", help="open_clip model name")
    ap.add_argument("--batch", type=int, default=1024, help="frames per encode_images call")
    ap.add_argument("--chunk", type=int, default=None, help="frames per encoder forward (default: --batch)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frame-size", type=int, default=224, help="rendered frame side in pixels")
    ap.add_argument("--autocast", default="auto", choices=["auto", "bf16", "fp16", "off"])
    ap.add_argument("--raw-255", action="store_true", help="the reference's 0-255 input (bug-compatible)")
    ap.add_argument("--half-image-tower", action="store_true", help="clip.half_image_tower: half weights, no autocast")
    ap.add_argument("--compile", action="store_true", help="torch.compile the image tower (benchmark only)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    reward = ClipRewardModel(
        args.model,
        pretrained=None,
        environ={},
        device=device,
        batch_size=args.chunk or args.batch,
        autocast=args.autocast,
        half_image_tower=args.half_image_tower,
        raw_255_input=args.raw_255,
    )
    if args.compile:
        reward.model.visual = torch.compile(reward.model.visual)
    frames = torch.rand(args.batch, 3, args.frame_size, args.frame_size, device=device)

    encode = _rate(lambda: reward.encode_images(frames), args.batch, args.iters, args.warmup, device)
    with torch.no_grad():
        pre = _rate(lambda: reward.preprocess(frames), args.batch, args.iters, args.warmup, device)
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        reward.encode_images(frames)
        _sync(device)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20

    out = {
        "model": args.model,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch": args.batch,
        "chunk": reward.batch_size,
        "frame_size": args.frame_size,
        "model_size": list(reward.image_size),
        "autocast": str(reward.autocast_dtype).replace("torch.", "") if reward.autocast_dtype else "off",
        "raw_255_input": reward.raw_255_input,
        "half_image_tower": reward.image_dtype is not None,
        "compile": bool(args.compile),
        "torch": torch.__version__,
        "encode_images_per_s": encode,
        "preprocess_images_per_s": pre,
        "peak_encode_mib": peak,
    }
    print(
        f"{args.model} on {out['device_name']}: batch {args.batch} (chunk {reward.batch_size}), "
        f"{args.frame_size}px -> {reward.image_size[0]}x{reward.image_size[1]}, autocast {out['autocast']}"
        f"{', half image tower' if out['half_image_tower'] else ''}{', compiled' if args.compile else ''}"
    )
    print(f"encode_images (incl. preprocessing): {_fmt(encode)} images/s")
    print(f"preprocessing alone:                 {_fmt(pre)} images/s")
    if peak is not None:
        print(f"peak CUDA memory of one call:        {peak:,.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
