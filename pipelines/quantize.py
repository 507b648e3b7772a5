"""``dakd quantize``: INT8 OpenVINO models of a checkpoint's backbones (or of named ones), calibrated by NNCF's
post-training quantization on the user's own normal videos. ``--precision int8`` on score, watch, calibrate and
extract then runs them. One model per input shape, as for every OpenVINO model (see :mod:`extractors.runtime`):
calibrate on videos of the size that will be scored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from dakd.checkpoint import load_checkpoint, newest_checkpoint
from dakd.errors import DakdError, VideoError
from dakd.timeline import DEFAULT_SNIPPET_FRAMES
from extractors.backbones import checkpoint_backbones, create_backbone
from extractors.engine import decoded_snippets
from extractors.registry import Backbone
from extractors.runtime import OpenVINOBackbone
from extractors.video_io import VideoReader, discover_videos
from pipelines.jobs import QuantizeJob


@dataclass
class Quantized:
    models: list[Path]  # one INT8 IR per backbone and input shape
    clips: int
    failed: list[str]


def job_backbones(job: QuantizeJob) -> tuple[dict[str, Backbone], object, int, str | None]:
    """The backbones to quantize, their crop mode, the snippet length and the checkpoint they come from."""
    if job.backbones:
        return {name: create_backbone(name) for name in job.backbones}, job.crops, DEFAULT_SNIPPET_FRAMES, None
    path = Path(job.checkpoint) if job.checkpoint else newest_checkpoint()
    _, meta = load_checkpoint(path)
    crops = "full" if meta["crops"] == "full" else 1
    return checkpoint_backbones(meta), crops, meta["snippet_frames"], str(path)


def run(job: QuantizeJob, report: Callable[[str], None] = tqdm.write) -> Quantized:
    backbones, crops, snippet_frames, checkpoint = job_backbones(job)
    networks = {name: OpenVINOBackbone(model, "int8", name) for name, model in backbones.items() if model.is_network}
    if not networks:
        raise DakdError(f"{', '.join(backbones)}: not a neural network, nothing to quantize (it runs as it is)")
    videos, missing = discover_videos(job.videos)
    failed = [f"{item}: {reason}" for item, reason in missing]
    if not videos:
        raise DakdError("no video to calibrate on: give normal videos of the scene (files, folders or .txt lists)")
    per_video = max(1, job.clips // len(videos))
    clips: dict[tuple[str, tuple[int, ...]], list[torch.Tensor]] = {}
    sources: dict[tuple[str, tuple[int, ...]], list[str]] = {}
    for path in tqdm(videos.values(), desc="calibration clips", unit="video"):
        try:
            with VideoReader(path) as reader:
                # Evenly spaced snippets; the container's frame count is an estimate, so stop once enough are in.
                step = max(1, reader.n_reported // snippet_frames // per_video)
                kept = 0
                for index, snippet in enumerate(s for group in decoded_snippets(reader, snippet_frames) for s in group):
                    if index % step:
                        continue
                    for name, network in networks.items():
                        frames = torch.from_numpy(snippet[None][:, network.frame_offsets(snippet_frames)])
                        clip = network.preprocess(frames, crops)[0]  # the first view: [1, ...]
                        key = (name, tuple(clip.shape[1:]))
                        clips.setdefault(key, []).append(clip)
                        sources.setdefault(key, [])
                        if str(path) not in sources[key]:
                            sources[key].append(str(path))
                    kept += 1
                    if kept == per_video:
                        break
        except VideoError as error:
            failed.append(f"{path}: {error.reason}")
    for line in failed:
        report(f"FAILED {line}")
    if not clips:
        raise DakdError("no video could be decoded: nothing to calibrate on")
    models = []
    for (name, shape), calibration in clips.items():
        report(f"quantizing {name} for inputs {'x'.join(map(str, shape))} on {len(calibration)} clips")
        record = {
            "backbone": name,
            "checkpoint": checkpoint,
            "crops": crops,
            "videos": sources[(name, shape)],
            "clips": len(calibration),
        }
        models.append(networks[name].quantize(calibration, record))
    return Quantized(models, sum(len(c) for c in clips.values()), failed)
