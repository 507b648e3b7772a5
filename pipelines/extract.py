"""``dakd extract``: videos -> per-snippet features of one or more backbones in a feature cache.

Each video is decoded once for all backbones that still need it. A background thread decodes, cuts
snippets and preprocesses while the models run, so decoding overlaps model compute.
Bad videos are recorded in ``failures.jsonl`` and never stop the batch; finished videos are skipped on
a rerun. ``--shard i/n`` (or torchrun's RANK/WORLD_SIZE) gives each process a deterministic share.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dakd import paths
from dakd.annotations import CACHE_ANNOTATIONS, read_annotations, write_annotations
from dakd.cache import FeatureCache
from dakd.devices import choose_device
from dakd.errors import DakdError, VideoError, first_line
from dakd.timeline import count_snippets
from extractors.backbones import backbone_entry, create_backbone
from extractors.crops import CROP_MODES
from extractors.engine import extract_video
from extractors.registry import Backbone
from extractors.runtime import NO_NETWORK, Execution, choose_execution, prepare
from extractors.video_io import VideoReader, discover_videos
from pipelines.jobs import ExtractConfig


@dataclass
class ExtractSummary:
    cache: Path
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    snippets: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0  # of which: building the models and loading their weights
    shard: tuple[int, int] = (0, 1)
    random_backbones: list[str] = field(default_factory=list)
    execution: Execution | None = None


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n); empty -> this process's torchrun rank and world size."""
    if not text:
        env = paths.distributed_env()
        return env.rank, env.world_size
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise DakdError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= index < count:
        raise DakdError(f"--shard {text!r}: need 0 <= i < n")
    return index, count


def validate(config: ExtractConfig) -> None:
    if not config.videos:
        raise DakdError("no videos given: pass video files, folders or .txt lists")
    if config.crops not in CROP_MODES:
        raise DakdError(f"--crops {config.crops}: must be one of {', '.join(map(str, CROP_MODES))}")
    if config.snippet_frames < 1 or config.batch_size < 1 or (config.image_frames or 1) < 1:
        raise DakdError("--snippet-frames, --batch-size and --image-frames must be at least 1")
    if not config.backbones or len(set(config.backbones)) != len(config.backbones):
        raise DakdError(f"--backbones {','.join(config.backbones)}: give each backbone once")
    for name in (*config.backbones, *config.weights, *config.random_weights):
        backbone_entry(name)  # unknown names fail here with the list of known ones
    for name in (*config.weights, *config.random_weights):
        if name not in config.backbones:
            raise DakdError(f"weights given for {name!r}, which is not in --backbones")


def backbone_options(name: str, config: ExtractConfig) -> dict:
    """The builder options of ``name`` in this run: an image backbone's frames per snippet."""
    options = dict(backbone_entry(name).options)
    if "frames" in options and config.image_frames is not None:
        options["frames"] = config.image_frames
    return options


def load_models(
    config: ExtractConfig, cache: FeatureCache, device: torch.device, execution: Execution
) -> tuple[dict[str, Backbone], dict[str, dict]]:
    """The backbones with their weights, ready for ``execution``, and the config each claims in the cache
    (refused if it conflicts)."""
    models, configs = {}, {}
    for name in config.backbones:
        weights = "random" if name in config.random_weights else config.weights.get(name)
        options = backbone_options(name, config)
        model = create_backbone(name, weights=weights, device=device, **options)
        configs[name] = {
            "feature_dim": model.feature_dim,
            "dtype": config.dtype,
            "crops": config.crops,
            "snippet_frames": config.snippet_frames,
            "weights": model.weights_record,
            "preprocessing": model.contract.to_dict(),
            "options": options,
        }
        cache.claim_backbone(name, configs[name])
        models[name] = prepare(model, execution, name)
    return models, configs


def video_manifest(
    path: Path, reader: VideoReader, config: ExtractConfig, backbone_config: dict, execution: Execution
) -> dict:
    stat = path.stat()
    return {
        "source_path": str(path.resolve()),
        "source_size": stat.st_size,
        "source_mtime": stat.st_mtime,
        "n_frames": reader.n_decoded,
        "n_frames_reported": reader.n_reported,
        "fps": reader.fps,
        "width": reader.width,
        "height": reader.height,
        "n_snippets": count_snippets(reader.n_decoded, config.snippet_frames),
        "snippet_frames": config.snippet_frames,
        "crops": config.crops,
        "weights_sha256": backbone_config["weights"]["sha256"],
        "random_weights": backbone_config["weights"]["random"],
        "preprocessing": backbone_config["preprocessing"],
        "truncated": reader.truncated,
        "warning": reader.warning,
        "execution": execution.record(),  # the runtime changes features at the level of rounding only
    }


def record_annotations(inputs: tuple[str, ...], cache: FeatureCache, report: Callable[[str], None]) -> None:
    """Keep a copy of the ``annotations.csv`` found in the video folders, so later commands find the labels."""
    found = [Path(item) / CACHE_ANNOTATIONS for item in inputs if (Path(item) / CACHE_ANNOTATIONS).is_file()]
    if not found:
        return
    merged = {}
    for path in found:
        merged.update(read_annotations(path))
    write_annotations(merged.values(), cache.root / CACHE_ANNOTATIONS)
    report(f"labels: {len(merged)} videos from {', '.join(map(str, found))} (kept in {cache.root / CACHE_ANNOTATIONS})")


def run(config: ExtractConfig, report: Callable[[str], None] = tqdm.write) -> ExtractSummary:
    """Extract features of every video in ``config.videos`` into ``config.cache``."""
    started = time.perf_counter()
    validate(config)
    cache = FeatureCache(config.cache)
    shard_index, shard_count = parse_shard(config.shard)
    summary = ExtractSummary(cache=cache.root, shard=(shard_index, shard_count))
    videos, missing = discover_videos(config.videos)
    cache.claim(config.snippet_frames, config.crops)
    device = choose_device(config.device)
    execution = choose_execution(config.runtime, config.precision, device)
    loading = time.perf_counter()
    models, configs = load_models(config, cache, device, execution)
    if not any(model.is_network for model in models.values()):
        execution = NO_NETWORK  # said in every output rather than a runtime that never ran
    summary.execution = execution
    summary.load_seconds = time.perf_counter() - loading
    summary.random_backbones = [name for name in models if configs[name]["weights"]["random"]]
    for name in summary.random_backbones:
        report(f"warning: {name} uses RANDOM weights (--random-weights): its features are untrained")

    def fail(path: object, video_id: str | None, error_type: str, message: str, level: str = "FAILED") -> None:
        failure = {"path": str(path), "video_id": video_id, "error_type": error_type, "message": message}
        cache.record_failure(**failure)
        summary.failed.append(failure)
        report(f"{level} {path}: {message}")

    if shard_index == 0:  # every shard sees the same inputs; one records their labels and what is missing
        record_annotations(config.videos, cache, report)
        for item, reason in missing:
            fail(item, None, "missing", reason)
    mine = list(videos.items())[shard_index::shard_count]
    storage = np.float16 if config.dtype == "float16" else np.float32
    label = f"shard {shard_index}/{shard_count} " if shard_count > 1 else ""
    overall = tqdm(total=len(mine), desc=f"{label}videos", unit="video", disable=not config.progress, position=0)
    for video_id, path in mine:
        exists = path.exists()
        todo = {name: m for name, m in models.items() if not (exists and cache.is_done(name, video_id, path))}
        if not todo:
            summary.skipped.append(video_id)
            overall.update(1)
            continue
        try:
            with VideoReader(path) as reader:
                expected = count_snippets(max(reader.n_reported, 1), config.snippet_frames)
                bar = tqdm(
                    total=expected,
                    desc=video_id[-30:],
                    unit="snippet",
                    leave=False,
                    position=1,
                    disable=not config.progress,
                )
                with bar:
                    features = extract_video(
                        reader,
                        todo,
                        device,
                        config.snippet_frames,
                        config.crops,
                        config.batch_size,
                        execution,
                        bar.update,
                    )
                for name, array in features.items():
                    manifest = video_manifest(path, reader, config, configs[name], execution)
                    cache.write(name, video_id, array.astype(storage), manifest)
                summary.snippets += manifest["n_snippets"]
                summary.extracted.append(video_id)
                if reader.truncated:
                    fail(path, video_id, "truncated", f"{reader.warning} ({reader.n_decoded} frames kept)", "WARNING")
        except VideoError as error:
            fail(path, video_id, error.kind, error.reason)
        except Exception as error:  # one broken video must not stop a long batch
            fail(path, video_id, type(error).__name__, f"{type(error).__name__}: {first_line(error, 300)}")
        overall.set_postfix(failed=len(summary.failed), refresh=False)
        overall.update(1)
    overall.close()
    summary.seconds = time.perf_counter() - started
    return summary
