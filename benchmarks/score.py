"""`dakd score` end to end on a generated 640x480 30 fps video: the Student (one backbone) against the
Teacher (all its backbones), under each runtime and precision side by side. Targets on a 2-core CPU: the
I3D Student >= 3x faster than real time with peak RSS <= 1.5 GB, the Teacher with its real views >= 1x.

Checkpoints for the timing are made on the spot (a few training steps on two short generated videos):
the speed of `score` does not depend on how well a checkpoint was trained. Backbones whose weights are
missing run with random weights (same cost). Example::

    python benchmarks/score.py --minutes 1 --students flow,i3d,efficientnet_lite0
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


def prepare(work: Path, teacher: list[str], students: list[str], crops: str) -> tuple[Path, dict[str, Path]]:
    sys.path.insert(0, str(REPO))
    from dakd.config import load_config
    from dakd.errors import DakdError
    from dakd.training import TrainConfig
    from extractors.backbones import find_weights
    from extractors.crops import parse_crop_mode
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
    backbones = list(dict.fromkeys([*teacher, *students]))
    for name in backbones:
        try:
            find_weights(name, allow_download=False)
        except DakdError:
            random.append(name)
    cache = str(work / f"cache-{crops}")
    extract.run(
        ExtractConfig(
            videos=(str(videos),),
            backbones=tuple(backbones),
            cache=cache,
            crops=parse_crop_mode(crops),
            random_weights=tuple(random),
            progress=False,
        ),
        report=lambda m: None,
    )
    few = ["optim.steps=3", "optim.batch_per_class=1"]
    every_view = [*few, f"backbones=[{','.join(teacher)}]"]  # random-weight views too: the cost is the same
    teacher_job = TrainJob(
        cache=cache, out=str(work / "teacher"), train=load_config(TrainConfig, None, every_view), progress=False
    )
    teacher_path = Path(train_teacher.run(teacher_job, report=lambda m: None)["checkpoint"])
    student_paths = {}
    for student in students:
        student_job = TrainJob(
            cache=cache,
            out=str(work / f"student-{student}"),
            teacher=str(teacher_path),
            progress=False,
            train=load_config(TrainConfig, None, [*few, f"backbones=[{student}]"]),
        )
        student_paths[student] = Path(distill.run(student_job, report=lambda m: None)["checkpoint"])
    return teacher_path, student_paths


def quantize_all(checkpoints: list[Path], normal_video: Path) -> None:
    """INT8 models of the checkpoints' networks, as a user makes them: `dakd quantize` on a normal video of the
    scene (the speed of INT8 does not depend on what it was calibrated on)."""
    sys.path.insert(0, str(REPO))
    from pipelines import quantize
    from pipelines.jobs import QuantizeJob

    for checkpoint in checkpoints:
        quantize.run(QuantizeJob(videos=(str(normal_video),), checkpoint=str(checkpoint), clips=32), report=print)


def child(checkpoint: str, video: str, out: str, runtime: str, precision: str, device: str) -> dict:
    sys.path.insert(0, str(REPO))
    from pipelines.jobs import ScoreJob
    from pipelines.score import run

    job = ScoreJob(videos=(video,), checkpoint=checkpoint, out=out, device=device, runtime=runtime, precision=precision)
    record = run(job, report=lambda m: None)[0]
    return {"seconds": record["seconds"], "realtime_factor": record["realtime_factor"], "frames": record["n_frames"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--teacher", default="i3d_max,efficientnet_lite0,flow")
    parser.add_argument("--students", default="flow,i3d,efficientnet_lite0", help="one Student per backbone")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "dakd-bench-score"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (as `dakd score --device`)")
    parser.add_argument(
        "--executions",
        default="torch:fp32,torch:bf16,openvino:fp32,openvino:bf16,openvino:int8",
        help="runtime:precision pairs to compare (as `--runtime`, `--precision`)",
    )
    parser.add_argument("--crops", default="full", help="the checkpoints' crop mode (as `dakd extract --crops`)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each checkpoint, alternating; the median")
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmark-score.md"))
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from extract import machine, make_video, peak_rss_mb

    if args.child:
        result = child(*args.child, args.device)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    work = Path(args.workdir)
    teacher_path, student_paths = prepare(work, args.teacher.split(","), args.students.split(","), args.crops)
    checkpoints = [*((f"student ({name})", name, path) for name, path in student_paths.items())]
    checkpoints.append(("teacher", args.teacher.replace(",", "+"), teacher_path))
    video = make_video(Path(tempfile.gettempdir()) / "dakd-bench", args.minutes)
    if any(execution.endswith(":int8") for execution in args.executions.split(",")):
        quantize_all([path for _, backbones, path in checkpoints if backbones != "flow"], work / "train-videos/v0.mp4")
    rows = []
    for execution in args.executions.split(","):
        runtime, precision = execution.split(":")

        def score(path: Path, runtime: str = runtime, precision: str = precision) -> dict:
            out = str(work / f"scores-{path.parent.name}")
            command = [sys.executable, __file__, "--device", args.device, "--child", str(path), str(video), out]
            done = subprocess.run(
                [*command, runtime, precision], capture_output=True, text=True, env={**os.environ, "DAKD_OFFLINE": "1"}
            )
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            return json.loads(done.stdout.strip().splitlines()[-1])

        if runtime == "openvino":  # the first run converts the models (kept on disk), as a user's first run: untimed
            for _, _, path in checkpoints:
                score(path)
        # Then alternating timed runs, whose median is reported: this machine's speed drifts between runs.
        runs: dict[str, list[dict]] = {kind: [] for kind, _, _ in checkpoints}
        for _ in range(max(1, args.repeat)):
            for kind, _, path in checkpoints:
                runs[kind].append(score(path))
        for kind, backbones, _ in checkpoints:
            seconds = [run["seconds"] for run in runs[kind]]
            middle = sorted(runs[kind], key=lambda run: run["seconds"])[len(seconds) // 2]
            result = {**middle, "range": (min(seconds), max(seconds))}
            rows.append((kind, backbones, runtime, precision, result))
            print(f"{kind} {runtime} {precision}: {result}", flush=True)
    lines = [
        "# Scoring benchmark",
        "",
        f"`python benchmarks/score.py {' '.join(sys.argv[1:])}`: `dakd score` end to end (loading, decoding, "
        f"backbones, model, CSV/JSON/PNG) on a generated {args.minutes:g}-minute 640x480 30 fps video, "
        f"{machine(args.device)}, crops {args.crops}. Each row is the median of {max(1, args.repeat)} runs, the "
        "checkpoints alternating (this machine's speed drifts between runs), with the fastest and slowest; "
        "OpenVINO's first run, which converts the models once and keeps them on disk, is not timed.",
        "",
        "| checkpoint | backbones | runtime | precision | seconds | x real time (> 1 = faster) | peak RSS MB "
        "| seconds, each run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, backbones, runtime, precision, result in rows:
        lines.append(
            f"| {kind} | {backbones} | {runtime} | {precision} | {result['seconds']:.1f} | "
            f"{result['realtime_factor']:.2f} | {result['peak_rss_mb']:.0f} | "
            f"{result['range'][0]:.1f}-{result['range'][1]:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
