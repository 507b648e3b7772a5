"""Teacher training and distillation speed and memory on a UCF-Crime-sized synthetic feature cache.

Builds a cache in dakd's format with 1,610 videos (810 anomalous, 800 normal, as UCF-Crime's training
set), 32 snippets each, and the widths of i3d (1024), s3d (1024) and clip (512), then times one epoch
of ``train-teacher`` and of ``distill`` (student: i3d) in fresh processes, recording peak RSS. An epoch
is one pass over the anomalous videos: ceil(810 / batch_per_class) steps. Example::

    python benchmarks/train.py --videos 1610 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from extract import machine, peak_rss_mb  # noqa: E402

WIDTHS = {"i3d": 1024, "s3d": 1024, "clip": 512}


def build_cache(folder: Path, videos: int, snippets: int, seed: int = 0) -> Path:
    """A feature cache of random features (normal and anomalous drawn from shifted distributions)."""
    sys.path.insert(0, str(REPO))
    from dakd.annotations import VideoAnnotation, write_annotations
    from dakd.cache import FeatureCache

    cache = FeatureCache(folder / "cache")
    if (folder / "annotations.csv").exists():
        return folder
    cache.claim(16, 1)
    rng = np.random.default_rng(seed)
    anomalous = round(videos * 810 / 1610)
    annotations = []
    for index in range(videos):
        label = int(index < anomalous)
        video = f"video{index:05d}"
        annotations.append(VideoAnnotation(video, label, ((1, 16 * snippets),) if label else (), 16 * snippets, 30.0))
        for name, width in WIDTHS.items():
            features = rng.normal(0.3 * label, 1.0, (1, snippets, width)).astype(np.float16)
            manifest = {
                "source_size": 0,
                "source_mtime": 0,
                "n_frames": 16 * snippets,
                "n_snippets": snippets,
                "snippet_frames": 16,
            }
            cache.write(name, video, features, manifest)
    for name, width in WIDTHS.items():
        cache.claim_backbone(
            name,
            {
                "feature_dim": width,
                "dtype": "float16",
                "crops": 1,
                "snippet_frames": 16,
                "weights": {"sha256": f"synthetic-{name}", "random": True},
                "preprocessing": {},
                "options": {},
            },
        )
    write_annotations(annotations, folder / "annotations.csv")
    return folder


def child(kind: str, folder: str, steps: int, device: str) -> dict:
    sys.path.insert(0, str(REPO))
    from dakd.config import load_config
    from dakd.training import TrainConfig
    from pipelines import distill, train_teacher
    from pipelines.jobs import TrainJob

    root = Path(folder)
    overrides = [f"optim.steps={steps}", f"device={device}"]
    if kind == "distill":
        overrides.append("backbones=[i3d]")
    job = TrainJob(
        cache=str(root / "cache"),
        annotations=str(root / "annotations.csv"),
        out=str(root / kind),
        teacher=str(root / "teacher" / "teacher.pt"),
        train=load_config(TrainConfig, None, overrides),
        progress=False,
    )
    started = time.perf_counter()
    summary = (distill if kind == "distill" else train_teacher).run(job, report=lambda m: None)
    return {"seconds_total": time.perf_counter() - started, "seconds_training": summary["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1610)
    parser.add_argument("--snippets", type=int, default=32)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument(
        "--batch-per-class", type=int, default=16, help="the default of configs (optim.batch_per_class)"
    )
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "dakd-bench-train"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (the training config's `device`)")
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmark-train.md"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, folder, steps = args.child
        result = child(kind, folder, int(steps), args.device)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    folder = Path(args.workdir)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    build_cache(folder, args.videos, args.snippets)
    print(f"synthetic cache ready in {time.perf_counter() - started:.0f} s", flush=True)
    anomalous = round(args.videos * 810 / 1610)
    steps_per_epoch = math.ceil(anomalous / args.batch_per_class)
    steps = max(1, round(args.epochs * steps_per_epoch))
    rows = []
    for kind in ("teacher", "distill"):
        command = [sys.executable, __file__, "--device", args.device, "--child", kind, str(folder), str(steps)]
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "DAKD_OFFLINE": "1"})
        if result.returncode != 0:
            raise SystemExit(result.stderr[-3000:])
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        epoch_seconds = measured["seconds_training"] / steps * steps_per_epoch
        rows.append(
            (kind, measured["seconds_training"], epoch_seconds, measured["seconds_total"], measured["peak_rss_mb"])
        )
        print(f"{kind}: {epoch_seconds:.1f} s/epoch, peak RSS {measured['peak_rss_mb']:.0f} MB", flush=True)
    lines = [
        "# Training benchmark",
        "",
        f"`python benchmarks/train.py --videos {args.videos} --snippets {args.snippets} --epochs {args.epochs:g} "
        f"--device {args.device}`: {machine(args.device)}; "
        f"synthetic cache of {args.videos} videos ({anomalous} anomalous), "
        f"{args.snippets} snippets each, i3d 1024 + s3d 1024 + clip 512 dims; default configs "
        f"({args.batch_per_class}+{args.batch_per_class} bags per step, {steps_per_epoch} steps per epoch).",
        "",
        "| run | steps | training s | s per epoch | total s (loading bags included) | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for kind, seconds, epoch_seconds, total, rss in rows:
        name = "train-teacher (i3d+s3d+clip)" if kind == "teacher" else "distill (student i3d)"
        lines.append(f"| {name} | {steps} | {seconds:.1f} | {epoch_seconds:.1f} | {total:.1f} | {rss:.0f} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
