"""Video-level labels and frame-level ground truth: our annotations CSV and split lists.

Annotations CSV (header required; column order free)::

    video,label,anomalous_frames[,n_frames,fps]
    Train001,normal,,120,10
    Test001,anomalous,61-180,180,10
    Test009,anomalous,1-20;95-140

``label`` is ``normal`` or ``anomalous`` (also 0/1); ``anomalous_frames`` holds 1-based inclusive
intervals ``a-b`` joined by ``;`` and is empty for normal videos. A split list holds one video id
per line; a line starting with ``#``, or the rest of a line after whitespace and ``#``, is a comment
(XD-Violence ids contain ``#`` themselves).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dakd.errors import DakdError
from dakd.files import atomic_write, read_list

LABELS = {"normal": 0, "0": 0, "anomalous": 1, "abnormal": 1, "anomaly": 1, "1": 1}


@dataclass(frozen=True)
class VideoAnnotation:
    video: str
    label: int  # 0 normal, 1 anomalous
    intervals: tuple[tuple[int, int], ...] = ()  # 1-based inclusive frame intervals
    n_frames: int | None = None
    fps: float | None = None

    def frame_labels(self, n_frames: int) -> np.ndarray:
        """Per-frame ground truth ``[n_frames]`` (uint8); intervals past the end are clipped."""
        labels = np.zeros(n_frames, np.uint8)
        for start, end in self.intervals:
            labels[max(start - 1, 0) : min(end, n_frames)] = 1
        return labels


def parse_intervals(text: str, where: str) -> tuple[tuple[int, int], ...]:
    intervals = []
    for part in filter(None, (p.strip() for p in (text or "").split(";"))):
        try:
            start, end = (int(x) for x in part.split("-"))
        except ValueError:
            raise DakdError(f"{where}: anomalous_frames {part!r} is not an interval a-b") from None
        if start < 1 or end < start:
            raise DakdError(f"{where}: interval {part!r} must satisfy 1 <= a <= b (1-based, inclusive)")
        intervals.append((start, end))
    return tuple(intervals)


def read_csv_rows(path: Path, required: set[str], what: str, header: str) -> list[dict[str, str]]:
    """The rows of a CSV whose header must hold ``required``; one-line errors name the file."""
    try:
        rows = list(csv.DictReader(path.read_text().splitlines()))
    except OSError as error:
        raise DakdError(f"{path}: cannot read {what} ({error.strerror})") from None
    if not rows or not required <= set(rows[0]):
        raise DakdError(f"{path}: expected a CSV with the header {header}")
    return rows


def read_annotations(path: str | Path) -> dict[str, VideoAnnotation]:
    path = Path(path)
    rows = read_csv_rows(path, {"video", "label"}, "annotations", "video,label[,anomalous_frames,n_frames,fps]")
    annotations = {}
    for line, row in enumerate(rows, start=2):
        where = f"{path}:{line}"
        label = LABELS.get((row.get("label") or "").strip().lower())
        if label is None:
            raise DakdError(f"{where}: label {row.get('label')!r} is not normal or anomalous")
        intervals = parse_intervals(row.get("anomalous_frames", ""), where)
        if label == 0 and intervals:
            raise DakdError(f"{where}: a normal video cannot have anomalous frames")
        n_frames = int(row["n_frames"]) if (row.get("n_frames") or "").strip() else None
        fps = float(row["fps"]) if (row.get("fps") or "").strip() else None
        video = row["video"].strip()
        annotations[video] = VideoAnnotation(video, label, intervals, n_frames, fps)
    return annotations


def write_annotations(annotations: Iterable[VideoAnnotation], path: str | Path) -> None:
    def write(handle) -> None:
        writer = csv.writer(handle)
        writer.writerow(["video", "label", "anomalous_frames", "n_frames", "fps"])
        for a in annotations:
            frames = ";".join(f"{s}-{e}" for s, e in a.intervals)
            writer.writerow([a.video, "anomalous" if a.label else "normal", frames, a.n_frames or "", a.fps or ""])

    atomic_write(path, write)


def video_name(text: str) -> str:
    """A video's name: its id or path without folders and without a video file extension."""
    name = text.strip().rsplit("/", 1)[-1]
    return re.sub(r"\.(mp4|avi|mkv|mov|webm)$", "", name, flags=re.IGNORECASE)


def read_split(path: str | Path) -> list[str]:
    ids = read_list(path, "split list")
    if not ids:
        raise DakdError(f"{path}: the split list is empty")
    return ids


def labels_from_folders(video_ids: Iterable[str]) -> dict[str, VideoAnnotation]:
    """Video-level labels from ``normal/`` and ``anomalous/`` folders in the video ids (no frame labels)."""
    found = {}
    for video in video_ids:
        parts = video.split("/")
        for part in parts[:-1]:
            if part.lower() in ("normal", "anomalous"):
                found[video] = VideoAnnotation(video, LABELS[part.lower()])
    return found


def match_ids(wanted: Iterable[str], available: Iterable[str], what: str) -> dict[str, str]:
    """Map ids of a split or annotations file onto cache video ids: exact, else by file name when unique."""
    available = list(available)
    by_name: dict[str, list[str]] = {}
    for video in available:
        by_name.setdefault(video_name(video), []).append(video)
    exact = set(available)
    mapping, missing = {}, []
    for video in wanted:
        if video in exact:
            mapping[video] = video
        elif len(by_name.get(video_name(video), [])) == 1:
            mapping[video] = by_name[video_name(video)][0]
        else:
            missing.append(video)
    if missing:
        raise DakdError(f"{what}: {len(missing)} video(s) not in the feature cache, e.g. {', '.join(missing[:3])}")
    return mapping


CACHE_ANNOTATIONS = "annotations.csv"


def resolve_labels(
    cache_root: Path, cache_ids: list[str], annotations: str | Path | None, split: str | Path | None
) -> dict[str, VideoAnnotation]:
    """Labels of the videos to use, keyed by cache video id.

    Annotations come from ``annotations`` or else the copy ``dakd extract`` kept in the cache (from an
    ``annotations.csv`` or ``normal/`` + ``anomalous/`` folders next to the videos). Videos are those of
    the ``split`` list, or else every annotated video in the cache.
    """
    if annotations is not None:
        source, table = str(annotations), read_annotations(annotations)
    elif (Path(cache_root) / CACHE_ANNOTATIONS).exists():
        source, table = (
            str(Path(cache_root) / CACHE_ANNOTATIONS),
            read_annotations(Path(cache_root) / CACHE_ANNOTATIONS),
        )
    else:
        table = labels_from_folders(cache_ids)
        source = "normal/ and anomalous/ folders"
        if not table:
            raise DakdError(
                f"no labels for the videos of {cache_root}: pass --annotations A.csv, or extract from a folder "
                "holding annotations.csv or normal/ and anomalous/ subfolders"
            )
    if split is not None:
        wanted = read_split(split)
        unlabelled = [v for v in wanted if v not in table]
        if unlabelled:
            raise DakdError(
                f"{split}: {len(unlabelled)} video(s) have no label in {source}, e.g. {', '.join(unlabelled[:3])}"
            )
        mapping = match_ids(wanted, cache_ids, str(split))
    else:
        names = {video_name(v) for v in cache_ids} | set(cache_ids)
        wanted = [v for v in table if v in names or video_name(v) in names]
        if not wanted:
            raise DakdError(f"none of the videos in {source} is in the cache {cache_root}")
        mapping = match_ids(wanted, cache_ids, source)
    return {cache_id: table[video] for video, cache_id in mapping.items()}
