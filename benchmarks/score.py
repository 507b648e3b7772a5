"""`dakd score` end to end on a generated 640x480 30 fps video: the Student (one backbone) against the
Teacher (all its backbones). Targets: the Student faster than real time and >= 3x faster than the Teacher.

Checkpoints for the timing are made on the spot (a few training steps on two short generated videos):
the speed of `score` does not depend on how well a checkpoint was trained. Backbones whose weights are
missing run with random weights (same cost). Example::

    python benchmarks/score.py --minutes 1 --teacher i3d,s3d,clip --student i3d
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def prepare(work: Path, teacher: list[str], student: str) -> tuple[Path, Path]:
    sys.path.insert(0, str(REPO))
    from dakd.config import load_config
    from dakd.errors import DakdError
    from dakd.training import TrainConfig
    from extractors.backbones import find_weights
    from extractors.video_io import write_video
    from pipelines import distill, extract, train_teacher
    from pipelines.jobs import ExtractConfig, TrainJob

    sys.path.insert(0, str(Path(__file__).parent))
    from extract import scene_frames

    videos = work / "train-videos"
    videos.mkdir(parents=True, exist_ok=True)
    for index in range(2):
        write_video(videos / f"v{index}.mp4", scene_frames(48, seed=index), fps=30)
    with open(videos / "annotations.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(
            [["video", "label", "anomalous_frames"], ["v0", "normal", ""], ["v1", "anomalous", "1-48"]]
        )
    random = []
    for name in teacher:
        try:
            find_weights(name, allow_download=False)
        except DakdError:
            random.append(name)
    cache = str(work / "cache")
    extract.run(
        ExtractConfig(
            videos=(str(videos),), backbones=tuple(teacher), cache=cache, random_weights=tuple(random), progress=False
        ),
        report=lambda m: None,
    )
    few = ["optim.steps=3", "optim.batch_per_class=1"]
    teacher_job = TrainJob(
        cache=cache, out=str(work / "teacher"), train=load_config(TrainConfig, None, few), progress=False
    )
    teacher_path = Path(train_teacher.run(teacher_job, report=lambda m: None)["checkpoint"])
    student_job = TrainJob(
        cache=cache,
        out=str(work / "student"),
        teacher=str(teacher_path),
        progress=False,
        train=load_config(TrainConfig, None, [*few, f"backbones=[{student}]"]),
    )
    student_path = Path(distill.run(student_job, report=lambda m: None)["checkpoint"])
    return teacher_path, student_path


def child(checkpoint: str, video: str, out: str, device: str) -> dict:
    sys.path.insert(0, str(REPO))
    from pipelines.jobs import ScoreJob
    from pipelines.score import run

    record = run(ScoreJob(videos=(video,), checkpoint=checkpoint, out=out, device=device), report=lambda m: None)[0]
    return {"seconds": record["seconds"], "realtime_factor": record["realtime_factor"], "frames": record["n_frames"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--teacher", default="i3d,s3d,clip")
    parser.add_argument("--student", default="i3d")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "dakd-bench-score"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (as `dakd score --device`)")
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmark-score.md"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from extract import machine, make_video, peak_rss_mb

    if args.child:
        result = child(*args.child, args.device)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    work = Path(args.workdir)
    teacher_path, student_path = prepare(work, args.teacher.split(","), args.student)
    video = make_video(Path(tempfile.gettempdir()) / "dakd-bench", args.minutes)
    results = {}
    for kind, path in (("student", student_path), ("teacher", teacher_path)):
        command = [
            sys.executable,
            __file__,
            "--device",
            args.device,
            "--child",
            str(path),
            str(video),
            str(work / f"scores-{kind}"),
        ]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "DAKD_OFFLINE": "1"})
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{kind}: {results[kind]}", flush=True)
    speedup = results["teacher"]["seconds"] / results["student"]["seconds"]
    lines = [
        "# Scoring benchmark",
        "",
        f"`python benchmarks/score.py --minutes {args.minutes:g} --teacher {args.teacher} --student {args.student} "
        f"--device {args.device}`: "
        f"`dakd score` end to end (loading, decoding, backbones, model, CSV/JSON/PNG) on a generated "
        f"{args.minutes:g}-minute 640x480 30 fps video, {machine(args.device)}, 1 crop.",
        "",
        "| checkpoint | backbones | seconds | x real time (> 1 = faster) | peak RSS MB |",
        "|---|---|---|---|---|",
        f"| student | {args.student} | {results['student']['seconds']:.1f} | "
        f"{results['student']['realtime_factor']:.2f} | {results['student']['peak_rss_mb']:.0f} |",
        f"| teacher | {args.teacher.replace(',', '+')} | {results['teacher']['seconds']:.1f} | "
        f"{results['teacher']['realtime_factor']:.2f} | {results['teacher']['peak_rss_mb']:.0f} |",
        "",
        f"Student speed-up over the Teacher: {speedup:.2f}x.",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
