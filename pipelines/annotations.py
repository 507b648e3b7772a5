"""``dakd annotations``: a benchmark's ground truth (UCF-Crime, XD-Violence, ShanghaiTech) -> dakd's
annotations CSV, labelling every video of a feature cache (the conventions are in :mod:`dakd.community`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dakd.annotations import CACHE_ANNOTATIONS, video_name, write_annotations
from dakd.cache import FeatureCache
from dakd.community import GROUND_TRUTH
from extractors.video_io import VideoReader, discover_videos
from pipelines.jobs import AnnotationsJob


@dataclass
class AnnotationsSummary:
    out: Path
    videos: int
    anomalous: int
    with_frame_labels: int


def count_frames(folder: Path, frames: dict[str, int]) -> dict[str, int]:
    """``frames`` with the decoded frame count of every cache video found (by name) under ``folder``."""
    found, _ = discover_videos([folder])
    by_name = {path.stem: path for path in found.values()}
    counted = dict(frames)
    for video in frames:
        path = by_name.get(video_name(video))
        if path is not None:
            with VideoReader(path) as reader:
                for _ in reader.chunks():
                    pass
                counted[video] = reader.n_decoded
    return counted


def run(job: AnnotationsJob) -> AnnotationsSummary:
    cache = FeatureCache(job.cache)
    cache.config()
    backbone = cache.backbones()[0]
    frames = {video: cache.manifest(backbone, video)["n_frames"] for video in cache.video_ids(backbone)}
    if job.videos is not None:
        frames = count_frames(Path(job.videos), frames)
    rows = GROUND_TRUTH[job.dataset](job.source, frames, job.convention)
    out = Path(job.out) if job.out else cache.root / CACHE_ANNOTATIONS
    write_annotations(rows, out)
    anomalous = sum(row.label for row in rows)
    return AnnotationsSummary(out, len(rows), anomalous, sum(1 for row in rows if row.intervals))
