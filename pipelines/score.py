"""``dakd score``: decode a video, run only the checkpoint's backbone(s) and model, and write per-frame
scores (CSV, JSON with anomalous intervals, PNG plot; optionally an overlay mp4)."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dakd.alerts import resolve_threshold
from dakd.annotations import read_annotations, video_name
from dakd.errors import VideoError
from dakd.files import atomic_write, write_json
from dakd.plots import plot_scores
from dakd.timeline import frame_times, true_intervals
from extractors.engine import load_for_scoring, score_video
from extractors.video_io import VideoReader, discover_videos, write_video
from pipelines.jobs import ScoreJob


def write_scores_csv(path: Path, times: np.ndarray, scores: np.ndarray) -> None:
    """``frame,time_s,score`` per frame (1-based frame numbers, as the annotations)."""

    def write(handle) -> None:
        writer = csv.writer(handle)
        writer.writerow(["frame", "time_s", "score"])
        writer.writerows((i + 1, f"{t:.4f}", f"{s:.6f}") for i, (t, s) in enumerate(zip(times, scores)))

    atomic_write(path, write)


def overlay_frames(reader: VideoReader, scores: np.ndarray, threshold: float) -> Iterator[np.ndarray]:
    """The video's frames with a score bar and value drawn on them; a red border above the threshold."""
    from PIL import Image, ImageDraw

    index = 0
    for chunk in reader.chunks():
        for frame in chunk:
            score = float(scores[min(index, len(scores) - 1)])
            image = Image.fromarray(frame)
            draw = ImageDraw.Draw(image)
            height, width = frame.shape[:2]
            bar = max(4, height // 24)
            colour = (int(255 * score), int(255 * (1 - score)), 0)
            draw.rectangle([0, height - bar, width, height], fill=(0, 0, 0))
            draw.rectangle([0, height - bar, int(width * score), height], fill=colour)
            draw.text((4, height - bar - 12), f"anomaly {score:.2f}", fill=(255, 255, 255))
            if score >= threshold:
                draw.rectangle([0, 0, width - 1, height - 1], outline=(255, 0, 0), width=max(2, height // 80))
            index += 1
            yield np.asarray(image)


def run(job: ScoreJob, report: Callable[[str], None] = tqdm.write) -> list[dict]:
    loaded = load_for_scoring(job.checkpoint, job.device, job.runtime, job.precision, job.weights)
    checkpoint, meta = loaded.path, loaded.meta
    if not job.checkpoint:
        report(f"using the newest checkpoint: {checkpoint}")
    annotations = read_annotations(job.annotations) if job.annotations else {}
    videos, missing = discover_videos(job.videos)
    for item, reason in missing:
        report(f"FAILED {item}: {reason}")
    out = Path(job.out)
    results = []
    threshold, origin = resolve_threshold(job.threshold, checkpoint)
    report(f"threshold {threshold:.4f}: {origin}")
    crops = loaded.crops if job.crops is None else job.crops
    for video_id, path in videos.items():
        started = time.perf_counter()
        try:
            with VideoReader(path) as reader:
                scores = score_video(reader, loaded, job.batch_size, crops, job.mapping)
                n_frames, fps = reader.n_decoded, reader.fps
        except VideoError as error:
            report(f"FAILED {path}: {error.reason}")
            results.append({"video": video_id, "error": error.reason})
            continue
        seconds = time.perf_counter() - started
        times = frame_times(n_frames, fps)
        intervals = true_intervals(scores >= threshold)
        annotation = annotations.get(video_id) or annotations.get(video_name(video_id))
        truth = annotation.frame_labels(n_frames) if annotation else None
        base = out / video_id
        base.parent.mkdir(parents=True, exist_ok=True)
        write_scores_csv(base.with_suffix(".csv"), times, scores)
        record = {
            "video": video_id,
            "source": str(path.resolve()),
            "n_frames": n_frames,
            "fps": fps,
            "checkpoint": str(checkpoint.resolve()),
            "checkpoint_kind": meta["kind"],
            "backbones": list(meta["backbones"]),
            "crops": crops,
            **loaded.execution.record(),
            "threshold": threshold,
            "intervals": [
                {
                    "start_frame": start + 1,  # 1-based, inclusive, as the annotations
                    "end_frame": end + 1,
                    "start_s": round(float(times[start]), 4),
                    "end_s": round(float(times[end] + 1 / fps), 4),
                    "peak": round(float(scores[start : end + 1].max()), 6),
                }
                for start, end in intervals
            ],
            "scores": [round(float(s), 6) for s in scores],
            "seconds": round(seconds, 3),
            "realtime_factor": round((n_frames / fps) / seconds, 3) if seconds > 0 else None,
        }
        write_json(base.with_suffix(".json"), record)
        title = f"{video_id} ({meta['kind']}: {'+'.join(meta['backbones'])})"
        plot_scores(base.with_suffix(".png"), times, scores, threshold, intervals, truth, title)
        outputs = [base.with_suffix(s) for s in (".csv", ".json", ".png")]
        if job.overlay:
            overlay = base.with_name(base.name + "_overlay.mp4")
            with VideoReader(path) as reader:
                write_video(overlay, overlay_frames(reader, scores, threshold), fps=fps)
            outputs.append(overlay)
        record["outputs"] = [str(p) for p in outputs]
        results.append(record)
    return results
