"""``dakd extract``: videos -> per-snippet features of one or more backbones in a feature cache.

Each video is decoded once for all backbones that still need it. A background thread decodes, cuts
snippets and preprocesses while the models run, so decoding overlaps model compute.
Bad videos are recorded in ``failures.jsonl`` and never stop the batch; finished videos are skipped on
a rerun. ``--shard i/n`` (or torchrun's RANK/WORLD_SIZE) gives each process a deterministic share.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from dakd import paths
from dakd.annotations import CACHE_ANNOTATIONS, read_annotations, write_annotations
from dakd.cache import FeatureCache
from dakd.errors import DakdError, VideoError
from dakd.timeline import DEFAULT_SNIPPET_FRAMES, count_snippets, stream_snippets
from extractors.crops import CROP_COUNTS
from extractors.registry import Backbone, backbone_entry
from extractors.video_io import VideoReader, discover_videos
from extractors.weights import load_backbone, resolve_weights
from pipelines.common import autocast, choose_device

DECODE_FRAMES = 64  # frames decoded per step: bounds raw-frame memory whatever the video length


@dataclass(frozen=True)
class ExtractConfig:
    videos: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ("i3d", "s3d", "clip")
    cache: str = str(paths.DEFAULT_CACHE)
    crops: int = 1
    snippet_frames: int = DEFAULT_SNIPPET_FRAMES
    clip_frames: int = 1  # CLIP: frames per snippet (1 = centre frame; k = mean of k evenly spaced)
    device: str = "auto"
    batch_size: int = 16  # clips (snippets x crops) per forward pass
    dtype: Literal["float16", "float32"] = "float16"
    weights: dict[str, str] = field(default_factory=dict)  # backbone -> explicit weights file
    random_weights: tuple[str, ...] = ()
    shard: str = ""  # "i/n"; empty: torchrun's RANK/WORLD_SIZE, or everything
    progress: bool = True


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
    if config.crops not in CROP_COUNTS:
        raise DakdError(f"--crops {config.crops}: must be one of {', '.join(map(str, CROP_COUNTS))}")
    if config.snippet_frames < 1 or config.batch_size < 1 or config.clip_frames < 1:
        raise DakdError("--snippet-frames, --batch-size and --clip-frames must be at least 1")
    if not config.backbones or len(set(config.backbones)) != len(config.backbones):
        raise DakdError(f"--backbones {','.join(config.backbones)}: give each backbone once")
    for name in (*config.backbones, *config.weights, *config.random_weights):
        backbone_entry(name)  # unknown names fail here with the list of known ones
    for name in (*config.weights, *config.random_weights):
        if name not in config.backbones:
            raise DakdError(f"weights given for {name!r}, which is not in --backbones")


def backbone_options(name: str, config: ExtractConfig) -> dict:
    parameters = inspect.signature(backbone_entry(name).builder).parameters
    return {"frames": config.clip_frames} if "frames" in parameters else {}


def load_models(
    config: ExtractConfig, cache: FeatureCache, device: torch.device
) -> tuple[dict[str, Backbone], dict[str, dict]]:
    models, configs = {}, {}
    for name in config.backbones:
        explicit = Path(config.weights[name]) if name in config.weights else None
        resolved = resolve_weights(name, explicit, random=name in config.random_weights)
        options = backbone_options(name, config)
        model, record = load_backbone(resolved, device, **options)
        configs[name] = {
            "feature_dim": model.feature_dim,
            "dtype": config.dtype,
            "crops": config.crops,
            "snippet_frames": config.snippet_frames,
            "weights": record,
            "preprocessing": model.input_contract,
            "options": options,
        }
        cache.claim_backbone(name, configs[name])
        models[name] = model
    return models, configs


def decoded_snippets(reader: VideoReader, config: ExtractConfig) -> Iterator[np.ndarray]:
    """The video's snippets as uint8 arrays ``[<=group, snippet_frames, H, W, 3]``, a few at a time."""
    group = max(1, DECODE_FRAMES // config.snippet_frames)
    return stream_snippets(reader.chunks(DECODE_FRAMES), config.snippet_frames, group)


def model_inputs(
    snippet_groups: Iterable[np.ndarray], models: dict[str, Backbone], config: ExtractConfig, device: torch.device
) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
    """Preprocess snippets: yields ``({backbone: [crops, n, ...]}, n)`` batches of n snippets.

    With a GPU the uint8 frames go to it before preprocessing (resizing is most of the CPU's work).
    """
    offsets = {name: model.frame_offsets(config.snippet_frames) for name, model in models.items()}
    per_batch = max(1, config.batch_size // config.crops)
    pieces: dict[str, list[torch.Tensor]] = {name: [] for name in models}
    pending = 0
    for snippets in snippet_groups:
        frames = torch.from_numpy(snippets).to(device)
        for name, model in models.items():
            pieces[name].append(model.preprocess(frames[:, offsets[name]], config.crops))
        pending += len(snippets)
        if pending >= per_batch:
            yield {name: torch.cat(p, dim=1) for name, p in pieces.items()}, pending
            pieces, pending = {name: [] for name in models}, 0
    if pending:
        yield {name: torch.cat(p, dim=1) for name, p in pieces.items()}, pending


class Prefetcher(threading.Thread):
    """Runs an iterator in a background thread, ``depth`` items ahead; re-raises its errors in the caller."""

    _END = object()

    def __init__(self, items: Iterator, depth: int = 2):
        super().__init__(daemon=True)
        self.items, self.queue, self.stop = items, queue.Queue(maxsize=depth), threading.Event()

    def run(self) -> None:
        try:
            for item in self.items:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as error:
            self._put(error)

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator:
        self.start()
        try:
            while (item := self.queue.get()) is not self._END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.stop.set()
            self.join()


def extract_video(
    reader: VideoReader,
    models: dict[str, Backbone],
    config: ExtractConfig,
    device: torch.device,
    on_snippets: Callable[[int], None] = lambda n: None,
) -> dict[str, np.ndarray]:
    """Features ``{backbone: [crops, n_snippets, D]}`` (float32) of one opened video.

    A background thread decodes (FFmpeg, about 3 % of a CPU model's time), overlapping the models.
    Preprocessing stays in this thread: on a CPU it then has every core, as the models do, instead of
    competing with them (measured: 1.20x the model-only time with preprocessing in the background thread
    on 2 cores; see docs/design-notes.md); on a GPU it runs on the GPU.
    """
    batches = model_inputs(Prefetcher(decoded_snippets(reader, config)), models, config, device)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in models}
    with torch.inference_mode(), autocast(device):
        for inputs, n in batches:
            for name, model in models.items():
                clips = inputs[name].flatten(0, 1).to(device, non_blocking=True)
                features = model(clips.contiguous(memory_format=model.memory_format))
                outputs[name].append(features.float().view(config.crops, n, -1).cpu().numpy())
            on_snippets(n)
    return {name: np.concatenate(parts, axis=1) for name, parts in outputs.items()}


def video_manifest(path: Path, reader: VideoReader, config: ExtractConfig, backbone_config: dict) -> dict:
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
    loading = time.perf_counter()
    models, configs = load_models(config, cache, device)
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
                    features = extract_video(reader, todo, config, device, bar.update)
                for name, array in features.items():
                    manifest = video_manifest(path, reader, config, configs[name])
                    cache.write(name, video_id, array.astype(storage), manifest)
                summary.snippets += manifest["n_snippets"]
                summary.extracted.append(video_id)
                if reader.truncated:
                    fail(path, video_id, "truncated", f"{reader.warning} ({reader.n_decoded} frames kept)", "WARNING")
        except VideoError as error:
            fail(path, video_id, error.kind, error.reason)
        except Exception as error:  # one broken video must not stop a long batch
            message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
            fail(path, video_id, type(error).__name__, f"{type(error).__name__}: {message}")
        overall.set_postfix(failed=len(summary.failed), refresh=False)
        overall.update(1)
    overall.close()
    summary.seconds = time.perf_counter() - started
    return summary
