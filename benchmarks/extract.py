"""Extraction speed and memory: model-only time vs end-to-end `dakd extract`, and peak RSS, per backbone.

Generates 640x480 30 fps test videos (a textured scene with moving objects), then for each backbone runs
in a fresh process (so peak RSS is that run's own):

* model-only: the backbone's forward passes on the video's own clips, decoded and preprocessed beforehand,
  in the same batches as extraction;
* end-to-end: ``pipelines.extract.run`` on the video (decode, snippets, preprocessing, model, cache write);
* input: decoding and preprocessing alone (the engine's own functions), for their CPU seconds. With the
  model's CPU seconds they give the floor of the ratio on this machine's cores: end-to-end cannot take
  less than ``max(model-only, (model CPU + input CPU) / cores)`` however well the two overlap.

Targets: end-to-end <= 1.15x model-only; peak RSS of the 10-minute video <= 1.3x that of the 1-minute one.
Writes a markdown table (``--out``) and prints it. Example::

    python benchmarks/extract.py --minutes 1 --backbones i3d,s3d,clip --rss-minutes 1,10 --rss-backbones clip
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FPS = 640, 480, 30
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def scene_frames(n_frames: int, seed: int = 0):
    """A static textured background with three squares moving across it."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 200, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    for index in range(n_frames):
        frame = background.copy()
        for k, speed in enumerate((3, 5, 9)):
            x = (index * speed + 150 * k) % (WIDTH - 60)
            y = 80 + 120 * k
            frame[y : y + 60, x : x + 60] = (255 - 60 * k, 60 * k, 128)
        yield frame


def make_video(folder: Path, minutes: float) -> Path:
    from extractors.video_io import write_video

    path = folder / f"scene_{minutes:g}min.mp4"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.mp4")
        write_video(tmp, scene_frames(int(minutes * 60 * FPS)), fps=FPS, options={"preset": "veryfast", "crf": "23"})
        tmp.rename(path)
    return path


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec; ``ru_maxrss`` would also
    count the parent's memory at fork, which inflated the figures of children of a busy parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine(device: str) -> str:
    """The hardware a benchmark ran on, for its table's header."""
    import torch

    cores = f"{os.cpu_count()} CPU cores"
    if device != "cpu" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, {cores}"
    return f"{cores}, no GPU"


@dataclass(frozen=True)
class ChildSettings:
    """What both timings of one backbone share."""

    backbone: str
    random_weights: bool
    batch_size: int
    device: str
    runtime: str
    precision: str
    crops: str


def child_end_to_end(settings: ChildSettings, video: str, cache: str) -> dict:
    from extractors.crops import parse_crop_mode
    from pipelines.extract import run
    from pipelines.jobs import ExtractConfig

    config = ExtractConfig(
        videos=(video,),
        backbones=(settings.backbone,),
        cache=cache,
        random_weights=(settings.backbone,) if settings.random_weights else (),
        batch_size=settings.batch_size,
        progress=False,
        device=settings.device,
        runtime=settings.runtime,
        precision=settings.precision,
        crops=parse_crop_mode(settings.crops),
    )
    started = time.perf_counter()
    summary = run(config, report=lambda message: None)
    seconds = time.perf_counter() - started
    if summary.failed or not summary.extracted:
        raise SystemExit(f"extraction failed: {summary.failed}")
    return {"seconds": seconds, "load_seconds": summary.load_seconds, "snippets": summary.snippets}


def child_model_only(settings: ChildSettings, video: str) -> dict:
    """The model alone on the video's own clips, decoded and preprocessed first (untimed), in extraction's
    batches: flow's time depends on what moves in the frames, a network's on their size only."""
    import torch

    from dakd.devices import choose_device
    from extractors.backbones import create_backbone
    from extractors.crops import parse_crop_mode
    from extractors.engine import decoded_snippets, model_inputs, pixels_for
    from extractors.runtime import autocast, choose_execution, prepare
    from extractors.video_io import VideoReader

    target = choose_device(settings.device)
    execution = choose_execution(settings.runtime, settings.precision, target)
    weights = "random" if settings.random_weights else None
    model = prepare(create_backbone(settings.backbone, weights=weights, device=target), execution, settings.backbone)
    with VideoReader(video) as reader:
        snippets = decoded_snippets(reader, 16, pixels_for([model]))
        batches = [
            inputs["model"].flatten(0, 1).contiguous(memory_format=model.memory_format).to(target)
            for inputs, _ in model_inputs(
                snippets, {"model": model}, target, 16, parse_crop_mode(settings.crops), settings.batch_size
            )
        ]
    with torch.inference_mode(), autocast(target, execution):
        model(batches[0][:1])  # warm-up (and OpenVINO's conversion), as extraction's first batch pays once per run
        synchronize(target)
        started, cpu_started = time.perf_counter(), time.process_time()
        for clips in batches:
            model(clips).float().cpu()  # extraction copies every batch's features back too
        synchronize(target)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "snippets": sum(len(clips) for clips in batches)}


def child_input(settings: ChildSettings, video: str) -> dict:
    """Decoding and preprocessing of the whole video as extraction does them, without the model."""
    from dakd.devices import choose_device
    from extractors.backbones import create_backbone
    from extractors.crops import parse_crop_mode
    from extractors.engine import decoded_snippets, model_inputs, pixels_for
    from extractors.runtime import choose_execution, prepare
    from extractors.video_io import VideoReader

    target = choose_device(settings.device)
    execution = choose_execution(settings.runtime, settings.precision, target)
    weights = "random" if settings.random_weights else None
    model = prepare(create_backbone(settings.backbone, weights, target), execution, settings.backbone)
    models = {settings.backbone: model}
    started, cpu_started = time.perf_counter(), time.process_time()
    with VideoReader(video) as reader:
        snippets = decoded_snippets(reader, 16, pixels_for(models.values()))
        for _ in model_inputs(snippets, models, target, 16, parse_crop_mode(settings.crops), settings.batch_size):
            pass
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started}


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_child(*args: str, options: tuple[str, ...] = ()) -> dict:
    command = [sys.executable, __file__, *options, "--child", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="1", help="video lengths for the time comparison, e.g. 1")
    parser.add_argument("--backbones", default="i3d,s3d,clip")
    parser.add_argument("--rss-minutes", default="1,10", help="video lengths for the peak-memory comparison")
    parser.add_argument("--rss-backbones", default="clip", help="backbones for the peak-memory comparison")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each timing, alternating model-only and end-to-end; medians"
    )
    parser.add_argument("--crops", default="full", help="as `dakd extract --crops`, for both timings")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (as `dakd extract --device`)")
    parser.add_argument("--runtimes", default="torch,openvino", help="runtimes to compare (as `--runtime`)")
    parser.add_argument("--precisions", default="fp32,bf16", help="precisions to compare (as `--precision`)")
    parser.add_argument("--real-weights", default="i3d", help="backbones that use their real weights when found")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "dakd-bench"))
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmark-extract.md"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))

    if args.child:
        kind, backbone, target, random_weights, runtime, precision = args.child[:6]
        settings = ChildSettings(
            backbone, random_weights == "random", args.batch_size, args.device, runtime, precision, args.crops
        )
        if kind == "e2e":
            with tempfile.TemporaryDirectory() as cache:
                result = child_end_to_end(settings, target, cache)
        elif kind == "input":
            result = child_input(settings, target)
        else:
            result = child_model_only(settings, target)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    from dakd.errors import DakdError
    from extractors.backbones import find_weights

    def weights_mode(backbone: str) -> str:
        if backbone in args.real_weights.split(","):
            try:
                find_weights(backbone, allow_download=False)
                return "real"
            except DakdError:
                pass
        return "random"

    options = ("--batch-size", str(args.batch_size), "--device", args.device, "--crops", args.crops)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows, rss_rows = [], []
    executions = [(r, p) for r in args.runtimes.split(",") for p in args.precisions.split(",")]
    for minutes in [float(m) for m in args.minutes.split(",")]:
        video = make_video(workdir, minutes)
        for backbone in args.backbones.split(","):
            mode = weights_mode(backbone)
            for runtime, precision in executions:
                # Model-only first: it converts the model for OpenVINO once (kept on disk), as a user's first run.
                # Then alternating runs, whose medians are reported: this shared machine's speed drifts by
                # 10-25 % between runs, more than the differences measured here.
                runs = []
                for _ in range(max(1, args.repeat)):
                    model = run_child("model", backbone, str(video), mode, runtime, precision, options=options)
                    e2e = run_child("e2e", backbone, str(video), mode, runtime, precision, options=options)
                    inputs = run_child("input", backbone, str(video), mode, runtime, precision, options=options)
                    runs.append((model, e2e, inputs))
                model, e2e, inputs = ({key: median(run[part][key] for run in runs) for key in runs[0][part]}
                                      for part in range(3))  # fmt: skip
                ratios = [(run[1]["seconds"] - run[1]["load_seconds"]) / run[0]["seconds"] for run in runs]
                cpu = model["cpu_seconds"] + inputs["cpu_seconds"]
                floor = max(model["seconds"], cpu / CORES) / model["seconds"]
                rows.append(
                    (backbone, runtime, precision, minutes, e2e["snippets"], model["seconds"], e2e["seconds"],
                     e2e["load_seconds"], model["cpu_seconds"], inputs["cpu_seconds"], floor, e2e["peak_rss_mb"],
                     len(runs), min(ratios), max(ratios))
                )  # fmt: skip
                print(
                    f"{backbone} {runtime} {precision} {minutes:g} min: model {model['seconds']:.1f} s, end-to-end "
                    f"{e2e['seconds']:.1f} s (loading the model {e2e['load_seconds']:.1f} s)",
                    flush=True,
                )
    runtime, precision = executions[-1]
    for backbone in args.rss_backbones.split(",") if args.rss_backbones else []:
        for minutes in [float(m) for m in args.rss_minutes.split(",")]:
            video = make_video(workdir, minutes)
            e2e = run_child("e2e", backbone, str(video), weights_mode(backbone), runtime, precision, options=options)
            rss_rows.append((backbone, minutes, e2e["snippets"], e2e["seconds"], e2e["peak_rss_mb"]))
            print(f"{backbone} {minutes:g} min: peak RSS {e2e['peak_rss_mb']:.0f} MB", flush=True)

    lines = [
        "# Extraction benchmark",
        "",
        f"`python benchmarks/extract.py {' '.join(sys.argv[1:])}`: "
        f"{machine(args.device)}; generated {WIDTH}x{HEIGHT} {FPS} fps H.264 videos; crops {args.crops}; "
        f"batch {args.batch_size}; peak-memory runs with {runtime} {precision}.",
        "",
        f"Each timing is the median of {max(1, args.repeat)} runs, model-only and end-to-end alternating (this "
        "machine's speed drifts between runs); the last column has each run's ratio. "
        "End-to-end is `pipelines.extract.run` from call to return; it includes building the model and loading "
        "its weights once (a fixed cost, paid once per run of many videos), shown apart; the ratio is computed "
        "both ways.",
        "",
        f"The floor is the least ratio {CORES} cores allow: (model CPU s + decoding and preprocessing CPU s) / "
        f"{CORES}, over model-only s (at least 1).",
        "",
        "| backbone | runtime | precision | video | snippets | model-only s | end-to-end s | of which model loading s "
        "| ratio | ratio without loading (<= 1.15) | model CPU s | decoding + preprocessing CPU s "
        f"| floor on {CORES} cores | snippets/s | peak RSS MB | runs | ratio without loading, each run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        backbone, runtime_, precision_, minutes, snippets, model_s, e2e_s, load_s, model_cpu, input_cpu, floor, rss = (
            row[:12]
        )
        runs, low, high = row[12:]
        lines.append(
            f"| {backbone} | {runtime_} | {precision_} | {minutes:g} min | {snippets} | {model_s:.1f} | {e2e_s:.1f} | "
            f"{load_s:.1f} | {e2e_s / model_s:.2f} | {(e2e_s - load_s) / model_s:.2f} | {model_cpu:.1f} | "
            f"{input_cpu:.1f} | {floor:.2f} | {snippets / e2e_s:.2f} | {rss:.0f} | {runs} | {low:.2f}-{high:.2f} |"
        )
    if rss_rows:
        lines += [
            "",
            "| backbone | video | snippets | end-to-end s | peak RSS MB | vs shortest |",
            "|---|---|---|---|---|---|",
        ]
        for backbone, minutes, snippets, e2e_s, rss in rss_rows:
            base = min(
                r[4] for r in rss_rows if r[0] == backbone and r[1] == min(x[1] for x in rss_rows if x[0] == backbone)
            )
            lines.append(f"| {backbone} | {minutes:g} min | {snippets} | {e2e_s:.1f} | {rss:.0f} | {rss / base:.2f}x |")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
