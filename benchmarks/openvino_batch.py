"""OpenVINO's time per clip and peak memory against the number of clips per inference request, for one
backbone, input size and precision (each batch size in a fresh process, after one warm-up request).
It chose ``OpenVINOBackbone.INFER_CLIPS``. Example::

    python benchmarks/openvino_batch.py --backbone i3d --frame-size 640x480 --precisions bf16,int8

``int8`` needs the INT8 model of that input size (`dakd quantize`; here, on a generated normal video).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(backbone: str, width: int, height: int, precision: str, batch: int, repeats: int) -> dict:
    sys.path.insert(0, str(REPO))
    import torch

    from extractors.backbones import create_backbone
    from extractors.runtime import Execution, prepare

    model = prepare(create_backbone(backbone), Execution("openvino", precision), backbone)
    frames = torch.randint(0, 256, (batch, len(model.frame_offsets(16)), height, width, 3), dtype=torch.uint8)
    clips = model.preprocess(frames, "full")[0]
    model.INFER_CLIPS = batch  # one request of `batch` clips
    model(clips)  # warm-up: conversion (once, kept on disk) and compilation
    started = time.perf_counter()
    for _ in range(repeats):
        model(clips)
    per_clip = (time.perf_counter() - started) / repeats / batch
    return {"ms_per_clip": 1000 * per_clip}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="i3d")
    parser.add_argument("--frame-size", default="640x480", help="WIDTHxHEIGHT of the video; clips are whole frames")
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--batches", default="1,2,4,16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from extract import peak_rss_mb

    if args.child:
        backbone, width, height, precision, batch, repeats = args.child
        result = child(backbone, int(width), int(height), precision, int(batch), int(repeats))
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
        return
    width, height = (int(v) for v in args.frame_size.split("x"))
    print("| backbone | input | precision | clips per request | ms per clip | x real time at 30 fps | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for precision in args.precisions.split(","):
        for batch in args.batches.split(","):
            command = [sys.executable, __file__, "--child", args.backbone, str(width), str(height), precision, batch,
                       str(args.repeats)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, cwd=tempfile.gettempdir())
            if done.returncode != 0:
                raise SystemExit(done.stderr[-2000:])
            result = json.loads(done.stdout.strip().splitlines()[-1])
            realtime = (16 / 30) / (result["ms_per_clip"] / 1000)
            print(
                f"| {args.backbone} | {args.frame_size} whole frames | {precision} | {batch} | "
                f"{result['ms_per_clip']:.0f} | {realtime:.2f} | {result['peak_rss_mb']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
