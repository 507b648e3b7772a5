"""The extraction engine: one opened video -> per-snippet features of one or more backbones.

``dakd extract`` (into the feature cache) and ``dakd score`` (straight into a model) both call
:func:`extract_video`. A background thread decodes and preprocesses while the models run (on a GPU,
preprocessing runs on the GPU).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dakd.checkpoint import load_checkpoint, newest_checkpoint
from dakd.devices import choose_device
from dakd.models import AnomalyModel
from dakd.scoring import Mapping, frame_scores
from dakd.timeline import DEFAULT_SEGMENTS, DEFAULT_SNIPPET_FRAMES, stream_snippets
from extractors.backbones import checkpoint_backbones
from extractors.crops import CropMode, crop_count
from extractors.registry import Backbone
from extractors.runtime import NO_NETWORK, Execution, autocast, choose_execution, prepare
from extractors.video_io import VideoReader

DECODE_FRAMES = 64  # frames decoded per step: bounds raw-frame memory whatever the video length


def _malloc_trim() -> Callable[[], object]:
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to release
        return lambda: None
    return lambda: trim(0)


class FreedMemoryRelease:
    """Frames are allocated in the decoding thread and freed in the consuming one; glibc keeps what is freed
    in the decoder's arena instead of returning it, and memory grew about 0.8 MB per snippet over long
    videos (flow: 1.29 GB after 1 minute, 2.25 GB after 10). Trimming (glibc's ``malloc_trim``) every
    ``every`` snippets keeps it flat; trimming after every batch of 16 cost EfficientNet 7-13 % of its
    time (docs/design-notes.md)."""

    trim = staticmethod(_malloc_trim())

    def __init__(self, every: int = 128):
        self.every, self.count = every, 0

    def __call__(self, snippets: int) -> None:
        self.count += snippets
        if self.count >= self.every:
            self.count = 0
            self.trim()


def pixels_for(models: Iterable[Backbone]) -> str:
    """The pixel layout (:data:`extractors.video_io.PIXELS`) that gives every one of ``models`` what it reads."""
    luma = {model.contract.pixels == "luma" for model in models}
    return "rgb+luma" if luma == {True, False} else "luma" if luma == {True} else "rgb"


def decoded_snippets(reader: VideoReader, snippet_frames: int, pixels: str = "rgb") -> Iterator[np.ndarray]:
    """The video's snippets as uint8 arrays ``[<=group, snippet_frames, H, W, C]``, a few at a time (``pixels``:
    the layout of the last axis)."""
    group = max(1, DECODE_FRAMES // snippet_frames)
    return stream_snippets(reader.chunks(DECODE_FRAMES, pixels), snippet_frames, group)


def model_inputs(
    snippet_groups: Iterable[np.ndarray],
    models: dict[str, Backbone],
    device: torch.device,
    snippet_frames: int,
    crops: CropMode,
    batch_size: int,
) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
    """Preprocess snippets: yields ``({backbone: [crops, n, ...]}, n)`` batches of n snippets.

    With a GPU the uint8 frames go to it before preprocessing (resizing is most of the CPU's work).
    """
    # The frames each backbone takes; None for all of them (a view: indexing would copy every frame).
    offsets = {name: model.frame_offsets(snippet_frames) for name, model in models.items()}
    offsets = {name: None if taken == list(range(snippet_frames)) else taken for name, taken in offsets.items()}
    per_batch = max(1, batch_size // crop_count(crops))
    pieces: dict[str, list[torch.Tensor]] = {name: [] for name in models}
    pending = 0
    # The first batches grow to per_batch, so the model starts on the first decoded snippets instead of
    # waiting for a whole batch (0.3-0.5 s per video on 2 cores), and decoding keeps ahead while they grow.
    target = 1
    for snippets in snippet_groups:
        frames = torch.from_numpy(snippets).to(device)
        for name, model in models.items():
            taken = frames if offsets[name] is None else frames[:, offsets[name]]
            pieces[name].append(model.preprocess(taken, crops))
        pending += len(snippets)
        if pending >= target:
            yield {name: torch.cat(p, dim=1) for name, p in pieces.items()}, pending
            pieces, pending, target = {name: [] for name in models}, 0, min(per_batch, 2 * pending)
    if pending:
        yield {name: torch.cat(p, dim=1) for name, p in pieces.items()}, pending


class Prefetcher(threading.Thread):
    """Runs an iterator in a background thread, ``depth`` items ahead; re-raises its errors in the caller."""

    _END = object()

    def __init__(self, items: Iterator, depth: int = 1):
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
    device: torch.device,
    snippet_frames: int = DEFAULT_SNIPPET_FRAMES,
    crops: CropMode = 1,
    batch_size: int = 16,
    execution: Execution = Execution("torch", "fp32"),
    on_snippets: Callable[[int], None] = lambda n: None,
) -> dict[str, np.ndarray]:
    """Features ``{backbone: [views, n_snippets, D]}`` (float32) of one opened video (views: the crop mode's).

    ``batch_size`` counts clips (snippets x crops) per forward pass; ``execution`` sets the PyTorch
    autocast (models prepared for OpenVINO carry their own precision). One background thread decodes and
    preprocesses the next batch while the models run this one (on a GPU, preprocessing runs on the GPU);
    see docs/design-notes.md for the measurements that put preprocessing there.
    """
    snippets = decoded_snippets(reader, snippet_frames, pixels_for(models.values()))
    batches = Prefetcher(model_inputs(snippets, models, device, snippet_frames, crops, batch_size))
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in models}
    release_freed_memory = FreedMemoryRelease()
    with torch.inference_mode(), autocast(device, execution):
        for inputs, n in batches:
            for name, array in forward(models, inputs, n, crop_count(crops), device).items():
                outputs[name].append(array)
            release_freed_memory(n)
            on_snippets(n)
    return {name: np.concatenate(parts, axis=1) for name, parts in outputs.items()}


def forward(
    models: dict[str, Backbone], inputs: dict[str, torch.Tensor], n: int, views: int, device: torch.device
) -> dict[str, np.ndarray]:
    """One forward pass per backbone on preprocessed clips ``{backbone: [views, n, ...]}`` -> ``[views, n, D]``."""
    outputs = {}
    for name, model in models.items():
        clips = inputs[name].flatten(0, 1).to(device, non_blocking=True)
        features = model(clips.contiguous(memory_format=model.memory_format))
        outputs[name] = features.float().view(views, n, -1).cpu().numpy()
    return outputs


def snippet_features(
    models: dict[str, Backbone],
    snippets: np.ndarray,
    device: torch.device,
    crops: CropMode = 1,
    execution: Execution = Execution("torch", "fp32"),
) -> dict[str, np.ndarray]:
    """Features ``{backbone: [views, N, D]}`` of N decoded snippets, uint8 ``[N, F, H, W, C]`` in the layout of
    :func:`pixels_for` (one batch; for live streams, whose snippets arrive one at a time)."""
    batch = len(snippets) * crop_count(crops)
    ((inputs, n),) = model_inputs([snippets], models, device, snippets.shape[1], crops, batch)
    with torch.inference_mode(), autocast(device, execution):
        return forward(models, inputs, n, crop_count(crops), device)


def score_video(
    reader: VideoReader,
    loaded: LoadedCheckpoint,
    batch_size: int = 16,
    crops: CropMode | None = None,
    mapping: Mapping = "snippets",
) -> np.ndarray:
    """Per-frame scores ``[n_frames]`` of one opened video: the checkpoint's backbones, then its model
    (``crops``: the checkpoint's own mode unless given)."""
    snippet_frames = loaded.meta["snippet_frames"]
    crops = loaded.crops if crops is None else crops
    features = extract_video(
        reader, loaded.backbones, loaded.device, snippet_frames, crops, batch_size, loaded.execution
    )
    return frame_scores(
        loaded.model, features, reader.n_decoded, snippet_frames, mapping, loaded.segments, loaded.device
    )


@dataclass
class LoadedCheckpoint:
    """A checkpoint ready to score video: its model, its backbones (same weights and preprocessing) under a
    runtime, and how it saw its training features (crop mode, segments)."""

    path: Path
    model: AnomalyModel
    meta: dict
    backbones: dict[str, Backbone]
    device: torch.device
    execution: Execution
    crops: CropMode  # the whole frame if it was trained on whole frames, else the centre crop
    segments: int


def load_for_scoring(
    path: str | Path | None,
    device: str = "auto",
    runtime: str = "auto",
    precision: str = "auto",
    weights: dict[str, str] | None = None,
) -> LoadedCheckpoint:
    """Load ``path`` (default: the newest student under ./runs) with its backbones for ``score``, ``watch``
    and ``calibrate``."""
    path = Path(path) if path else newest_checkpoint()
    model, meta = load_checkpoint(path)
    target = choose_device(device)
    execution = choose_execution(runtime, precision, target)
    backbones = {
        name: prepare(backbone, execution, name)
        for name, backbone in checkpoint_backbones(meta, target, weights).items()
    }
    if not any(backbone.is_network for backbone in backbones.values()):
        execution = NO_NETWORK  # said in every output rather than a runtime that never ran
    crops = "full" if meta["crops"] == "full" else 1
    segments = meta["train_config"].get("segments", DEFAULT_SEGMENTS)
    return LoadedCheckpoint(path, model.to(target), meta, backbones, target, execution, crops, segments)
