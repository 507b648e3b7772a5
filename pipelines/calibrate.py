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
from dakd.errors import DakdError, VideoError
from dakd.scoring import causal_snippet_scores, frame_scores
from dakd.timeline import snippet_scores_to_frames
from extractors.engine import extract_video, load_for_scoring
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
    loaded = load_for_scoring(job.checkpoint, job.device, job.runtime, job.precision)
    model, snippet_frames = loaded.model, loaded.meta["snippet_frames"]
    videos, missing = discover_videos(job.videos)
    failed = [f"{item}: {reason}" for item, reason in missing]
    offline, live, scored = [], [], []
    for video_id, path in tqdm(videos.items(), desc="calibrate", unit="video"):
        try:
            with VideoReader(path) as reader:
                features = extract_video(
                    reader, loaded.backbones, loaded.device, snippet_frames, loaded.crops, job.batch_size,
                    loaded.execution,
                )  # fmt: skip
                n_frames = reader.n_decoded
        except VideoError as error:
            failed.append(f"{path}: {error.reason}")
            continue
        offline.append(
            frame_scores(model, features, n_frames, snippet_frames, "snippets", loaded.segments, loaded.device)
        )
        causal = causal_snippet_scores(model, {name: array[0] for name, array in features.items()}, job.window)
        live.append(snippet_scores_to_frames(causal, n_frames, snippet_frames))
        scored.append(video_id)
    for line in failed:
        report(f"FAILED {line}")
    if not offline:
        raise DakdError("no video could be scored: nothing to calibrate on")
    offline_scores, live_scores = np.concatenate(offline), np.concatenate(live)
    threshold = threshold_for_false_alarm_rate(offline_scores, job.false_alarm_rate)
    live_threshold = threshold_for_false_alarm_rate(live_scores, job.false_alarm_rate)
    path = write_calibration(loaded.path, threshold, live_threshold, job.false_alarm_rate, scored, len(offline_scores))
    return Calibration(path, threshold, live_threshold, len(offline), len(offline_scores), failed)
