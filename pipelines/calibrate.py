"""``dakd calibrate``: score normal footage with a checkpoint and store the thresholds that give a chosen
false-alarm rate on it, next to the checkpoint (``<checkpoint>.calibration.json``); ``dakd score`` and
``dakd watch`` use them by default. Two thresholds: one for offline scores (``score``: every snippet sees
the whole video) and one for live, causal scores (``watch``: a snippet sees only the past)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dakd.alerts import threshold_for_false_alarm_rate, write_calibration
from dakd.checkpoint import load_checkpoint, newest_checkpoint
from dakd.devices import choose_device
from dakd.errors import DakdError, VideoError
from dakd.scoring import causal_snippet_scores, frame_scores
from dakd.timeline import DEFAULT_SEGMENTS, snippet_scores_to_frames
from extractors.backbones import checkpoint_backbones
from extractors.engine import extract_video
from extractors.runtime import choose_execution, prepare
from extractors.video_io import VideoReader, discover_videos
from pipelines.jobs import CalibrateJob


@dataclass
class Calibration:
    path: Path
    threshold: float
    live_threshold: float
    videos: int
    frames: int
    failed: list[str]


def run(job: CalibrateJob, report: Callable[[str], None] = tqdm.write) -> Calibration:
    checkpoint = Path(job.checkpoint) if job.checkpoint else newest_checkpoint()
    model, meta = load_checkpoint(checkpoint)
    device = choose_device(job.device)
    execution = choose_execution(job.runtime, job.precision, device)
    backbones = {name: prepare(m, execution, name) for name, m in checkpoint_backbones(meta, device).items()}
    crops = "full" if meta["crops"] == "full" else 1
    segments = meta["train_config"].get("segments", DEFAULT_SEGMENTS)
    videos, missing = discover_videos(job.videos)
    failed = [f"{item}: {reason}" for item, reason in missing]
    offline, live, scored = [], [], []
    for video_id, path in tqdm(videos.items(), desc="calibrate", unit="video"):
        try:
            with VideoReader(path) as reader:
                features = extract_video(
                    reader, backbones, device, meta["snippet_frames"], crops, job.batch_size, execution
                )
                n_frames = reader.n_decoded
        except VideoError as error:
            failed.append(f"{path}: {error.reason}")
            continue
        offline.append(frame_scores(model, features, n_frames, meta["snippet_frames"], "snippets", segments, device))
        causal = causal_snippet_scores(model, {name: array[0] for name, array in features.items()}, job.window)
        live.append(snippet_scores_to_frames(causal, n_frames, meta["snippet_frames"]))
        scored.append(video_id)
    for line in failed:
        report(f"FAILED {line}")
    if not offline:
        raise DakdError("no video could be scored: nothing to calibrate on")
    offline_scores, live_scores = np.concatenate(offline), np.concatenate(live)
    threshold = threshold_for_false_alarm_rate(offline_scores, job.false_alarm_rate)
    live_threshold = threshold_for_false_alarm_rate(live_scores, job.false_alarm_rate)
    path = write_calibration(checkpoint, threshold, live_threshold, job.false_alarm_rate, scored, len(offline_scores))
    return Calibration(path, threshold, live_threshold, len(offline), len(offline_scores), failed)
