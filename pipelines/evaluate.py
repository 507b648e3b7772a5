"""``dakd evaluate``: frame-level ROC AUC, AP (two labelled definitions), false-alarm rate and per-video AUC
of a checkpoint on cached test features, with ROC/PR plots.

Frames of all test videos are concatenated in the order of the split list (the papers' AUC/AP). Two
protocols: ``dakd`` scores the frames actually decoded (padding dropped); ``community`` scores 16 x
snippets frames per video, the ground truth truncated or zero-padded to that length, as the published
numbers were computed (RTFM, UR-DMU, VadCLIP: ``np.repeat(scores, 16)`` against ``gt.npy``). Scores are the
mean over crops, or one crop's (``crop``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dakd.annotations import resolve_labels
from dakd.cache import FeatureCache
from dakd.checkpoint import check_against_cache, load_checkpoint
from dakd.devices import choose_device
from dakd.errors import DakdError
from dakd.files import write_json
from dakd.metrics import curves, frame_metrics
from dakd.plots import plot_curves
from dakd.scoring import frame_scores
from dakd.timeline import DEFAULT_SEGMENTS
from extractors.crops import crop_count
from pipelines.jobs import EvaluateJob


def run(job: EvaluateJob, report: Callable[[str], None] = tqdm.write) -> dict:
    checkpoint = Path(job.checkpoint)
    model, meta = load_checkpoint(checkpoint)
    cache = FeatureCache(job.cache)
    check_against_cache(meta, cache, checkpoint)
    device = choose_device(job.device)
    model.to(device)
    videos = resolve_labels(cache.root, cache.video_ids(model.names[0]), job.annotations, job.split)
    segments = meta["train_config"].get("segments", DEFAULT_SEGMENTS)
    crops = crop_count(cache.config()["crops"])
    if job.crop is not None and not 0 <= job.crop < crops:
        raise DakdError(f"--crop {job.crop}: the cache has crops 0..{crops - 1}")
    scores, truth, video_labels, notes = {}, {}, {}, []
    for video, annotation in tqdm(videos.items(), desc="evaluate", unit="video", disable=not job.progress):
        manifest = cache.manifest(model.names[0], video)
        if manifest is None:
            raise DakdError(f"{cache.root}: no {model.names[0]!r} features for {video!r}")
        n_frames = manifest["n_frames"]
        if job.protocol == "community":
            n_frames = manifest["n_snippets"] * manifest["snippet_frames"]
        if annotation.label == 1 and not annotation.intervals:
            raise DakdError(f"{video}: anomalous but no anomalous_frames in the annotations: cannot score frames")
        if job.protocol == "dakd" and annotation.n_frames is not None and annotation.n_frames != n_frames:
            notes.append(f"{video}: annotations say {annotation.n_frames} frames, {n_frames} decoded")
        features = {name: cache.read(name, video) for name in model.names}
        if job.crop is not None:
            features = {name: array[job.crop : job.crop + 1] for name, array in features.items()}
        scores[video] = frame_scores(
            model, features, n_frames, manifest["snippet_frames"], job.mapping, segments, device
        )
        truth[video] = annotation.frame_labels(n_frames)
        video_labels[video] = annotation.label
    metrics = frame_metrics(scores, truth, video_labels, job.threshold)
    metrics.update(
        checkpoint=str(checkpoint),
        kind=meta["kind"],
        backbones=list(model.names),
        mapping=job.mapping,
        protocol=job.protocol,
        crops="mean of all" if job.crop is None else f"crop {job.crop} only",
        split=job.split,
        notes=notes,
    )
    out = Path(job.out) if job.out else checkpoint.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    np.savez_compressed(out / "frame_scores.npz", **{v.replace("/", "__"): s for v, s in scores.items()})
    if metrics["roc_auc"] is not None and job.plots:
        title = f"{meta['kind']} ({'+'.join(model.names)})"
        metrics["plots"] = [str(p) for p in plot_curves(curves(scores, truth), metrics, out, title)]
    metrics["out"] = str(out)
    for note in notes:
        report(f"note: {note}")
    return metrics
