"""The community's precomputed features and ground truth, read into dakd's cache and annotations CSV.

Feature families (all 16-frame snippets):

* ``rtfm``: RTFM / MGFN / UR-DMU's I3D-ResNet50 features, one ``<video>_i3d.npy`` per video shaped
  ``(T, crops, 2048)`` (10 crops), listed in ``.list`` files of paths (``ucf-i3d.list``,
  ``shanghai-i3d-train-10crop.list``, ...). dakd equivalent: ``i3d_r50``.
* ``wu``: Wu et al.'s Inception-I3D features, one ``<video>__<k>.npy`` per crop k shaped ``(T, 1024)``
  (10 crops for UCF-Crime, 5 for XD-Violence), listed one file per line. dakd equivalent: ``i3d``.
* ``vadclip``: VadCLIP's CLIP ViT-B/16 features, one ``<video>__<k>.npy`` per crop shaped ``(T, 512)``,
  listed in a CSV ``path,label``. dakd equivalent: ``clip``.

Video labels never come from a video's position in a list (RTFM's loaders assume "the first 810 are
anomalous"): they come from the ground-truth converters below, from names (UCF-Crime ``Normal_``,
XD-Violence ``label_A``) or from VadCLIP's label column.

Ground-truth conventions (docs/formats.md says more): the community's scripts build a video's frame
labels as ``gt = zeros(16 * T); gt[s:e] = 1`` for each annotated pair ``s e``: 0-based start, exclusive
end, and a length of 16 x the snippet count (truncated or zero-padded to it). ``convention="community"``
reads pairs that way; ``"inclusive"`` reads them as 1-based inclusive frames, as the UCF-Crime authors'
Matlab evaluation does. Either way dakd stores 1-based inclusive intervals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from dakd.annotations import VideoAnnotation, read_csv_rows, video_name
from dakd.errors import DakdError, first_line
from dakd.files import read_list
from dakd.timeline import true_intervals

Convention = Literal["community", "inclusive"]
SNIPPET_FRAMES = 16
PER_CROP_NAME = re.compile(r"^(?P<video>.+)__(?P<crop>\d+)$")


@dataclass(frozen=True)
class Family:
    backbone: str  # dakd's equivalent backbone: the cache folder the features go to
    feature_dim: int
    description: str


FAMILIES = {
    "rtfm": Family("i3d_r50", 2048, "RTFM-style I3D-ResNet50, one (T, crops, 2048) .npy per video in .list files"),
    "wu": Family("i3d", 1024, "Wu et al. Inception-I3D, one (T, 1024) <video>__<k>.npy per crop in .list files"),
    "vadclip": Family("clip", 512, "VadCLIP CLIP ViT-B/16, one (T, 512) <video>__<k>.npy per crop in a path,label CSV"),
}


@dataclass(frozen=True)
class FeatureSource:
    """One video's feature files: one file (rtfm) or one per crop in crop order (wu, vadclip)."""

    video: str
    files: tuple[Path, ...]
    label: int | None = None  # only where the format states it (VadCLIP's label column)


def _relative_to(entry: str, list_file: Path) -> Path:
    path = Path(entry)
    return path if path.is_absolute() else list_file.parent / path


def rtfm_video_id(path: Path) -> str:
    """``Abuse028_x264_i3d.npy`` -> ``Abuse028_x264``; ``01_0014_i3d.npy`` -> ``01_0014``."""
    stem = path.stem
    return stem[: -len("_i3d")] if stem.endswith("_i3d") else stem


def rtfm_sources(lists: Iterable[str | Path]) -> list[FeatureSource]:
    sources = {}
    for list_file in map(Path, lists):
        for entry in read_list(list_file, "the feature list"):
            path = _relative_to(entry, list_file)
            sources.setdefault(rtfm_video_id(path), FeatureSource(rtfm_video_id(path), (path,)))
    return list(sources.values())


def group_crops(paths: Iterable[tuple[Path, int | None]], where: str) -> list[FeatureSource]:
    """Group ``<video>__<k>.npy`` files by video; every video must have crops 0..n-1."""
    crops: dict[str, dict[int, Path]] = {}
    labels: dict[str, int | None] = {}
    for path, label in paths:
        match = PER_CROP_NAME.match(path.stem)
        if not match:
            raise DakdError(f"{where}: {path.name} is not named <video>__<crop>.npy")
        video = match["video"]
        crops.setdefault(video, {})[int(match["crop"])] = path
        labels[video] = label
    sources = []
    for video, by_crop in crops.items():
        if sorted(by_crop) != list(range(len(by_crop))):
            raise DakdError(f"{where}: video {video} has crops {sorted(by_crop)}, expected 0..{len(by_crop) - 1}")
        sources.append(FeatureSource(video, tuple(by_crop[k] for k in range(len(by_crop))), labels[video]))
    return sources


def wu_sources(lists: Iterable[str | Path]) -> list[FeatureSource]:
    sources = []
    for list_file in map(Path, lists):
        sources += group_crops(
            ((_relative_to(e, list_file), None) for e in read_list(list_file, "the feature list")), str(list_file)
        )
    return sources


def vadclip_sources(lists: Iterable[str | Path]) -> list[FeatureSource]:
    sources = []
    for list_file in map(Path, lists):
        rows = read_csv_rows(list_file, {"path", "label"}, "the feature list", "path,label (VadCLIP)")
        entries = [(_relative_to(r["path"], list_file), vadclip_label(r["label"])) for r in rows]
        sources += group_crops(entries, str(list_file))
    return sources


def vadclip_label(text: str) -> int:
    """VadCLIP's label column holds a class name: ``Normal`` (UCF-Crime) or ``A`` (XD-Violence) is normal."""
    return 0 if text.strip() in ("Normal", "A") else 1


SOURCES = {"rtfm": rtfm_sources, "wu": wu_sources, "vadclip": vadclip_sources}


def load_features(family: str, source: FeatureSource) -> np.ndarray:
    """Features ``[crops, T, D]`` (float32) of one video, checked against the family's layout."""
    expected = FAMILIES[family].feature_dim
    arrays = []
    for path in source.files:
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except FileNotFoundError:
            raise DakdError(f"{path}: no such feature file") from None
        except (OSError, ValueError) as error:
            raise DakdError(f"{path}: not a readable .npy array ({first_line(error, 120)})") from None
    if family == "rtfm":
        (array,) = arrays
        if array.ndim != 3 or array.shape[2] != expected:
            raise DakdError(f"{source.files[0]}: shape {array.shape}, expected (T, crops, {expected})")
        features = array.transpose(1, 0, 2)
    else:
        for path, array in zip(source.files, arrays):
            if array.ndim != 2 or array.shape[1] != expected:
                raise DakdError(f"{path}: shape {array.shape}, expected (T, {expected})")
        lengths = {array.shape[0] for array in arrays}
        if len(lengths) > 1:
            raise DakdError(f"{source.video}: its crop files have different lengths {sorted(lengths)}")
        features = np.stack(arrays)
    if features.shape[1] == 0:
        raise DakdError(f"{source.files[0]}: no snippets")
    if not np.isfinite(features).all():
        raise DakdError(f"{source.files[0]}: features hold NaN or infinite values")
    return features.astype(np.float32, copy=False)


# -- ground truth ---------------------------------------------------------------------------------------


def to_intervals(pairs: Iterable[tuple[int, int]], convention: Convention) -> tuple[tuple[int, int], ...]:
    """Annotated (start, end) pairs -> 1-based inclusive intervals; ``-1`` pairs (no event) are skipped."""
    intervals = []
    for start, end in pairs:
        if start < 0 or end < 0:
            continue
        first, last = (start + 1, end) if convention == "community" else (max(start, 1), end)
        if last >= first:
            intervals.append((first, last))
    return tuple(intervals)


def _pairs(numbers: list[str], where: str) -> list[tuple[int, int]]:
    try:
        values = [int(float(n)) for n in numbers]
    except ValueError:
        raise DakdError(f"{where}: expected frame numbers, got {' '.join(numbers)!r}") from None
    if len(values) % 2:
        raise DakdError(f"{where}: an odd count of frame numbers (start/end pairs expected)")
    return list(zip(values[::2], values[1::2]))


def _table(video_frames: dict[str, int], known: dict[str, VideoAnnotation], label_of_name) -> list[VideoAnnotation]:
    """Every video of the cache (annotated or labelled by name) plus annotated videos not in the cache."""
    rows = []
    for video, n_frames in video_frames.items():
        name = video_name(video)
        if name in known:
            a = known[name]
            rows.append(VideoAnnotation(video, a.label, a.intervals, n_frames))
        else:
            rows.append(VideoAnnotation(video, label_of_name(name), (), n_frames))
    names = {video_name(video) for video in video_frames}
    rows += [a for name, a in known.items() if name not in names]
    return rows


def ucf_crime_annotations(
    path: str | Path, video_frames: dict[str, int], convention: Convention = "community"
) -> list[VideoAnnotation]:
    """``Temporal_Anomaly_Annotation*.txt``: ``video class start1 end1 start2 end2`` (-1: no event).

    Test videos take their class (``Normal``: normal) and intervals; other cache videos (training) are
    labelled by name: ``Normal_Videos...`` normal, every other UCF-Crime video anomalous.
    """
    path = Path(path)
    known = {}
    for number, line in enumerate(read_list(path, "ground truth"), start=1):
        fields = line.split()
        if len(fields) < 2:
            raise DakdError(f"{path}:{number}: expected 'video class start end ...'")
        name = video_name(fields[0])
        label = 0 if fields[1].lower() == "normal" else 1
        intervals = to_intervals(_pairs(fields[2:], f"{path}:{number}"), convention)
        if label and not intervals:
            raise DakdError(f"{path}:{number}: anomalous video {name} without an event")
        known[name] = VideoAnnotation(name, label, intervals if label else ())
    return _table(video_frames, known, lambda name: 0 if "normal" in name.lower() else 1)


def xd_violence_annotations(
    path: str | Path, video_frames: dict[str, int], convention: Convention = "community"
) -> list[VideoAnnotation]:
    """``annotations.txt``: a video name followed by start/end frame pairs; ``label_A`` in a name: normal."""
    path = Path(path)
    known = {}
    for number, line in enumerate(read_list(path, "ground truth"), start=1):
        fields = line.split()
        name = video_name(fields[0])
        intervals = to_intervals(_pairs(fields[1:], f"{path}:{number}"), convention)
        label = 0 if "label_A" in name else 1
        if label and not intervals:
            raise DakdError(f"{path}:{number}: violent video {name} without a frame pair")
        known[name] = VideoAnnotation(name, label, intervals if label else ())
    return _table(video_frames, known, lambda name: 0 if "label_A" in name else 1)


def shanghaitech_annotations(
    mask_folder: str | Path, video_frames: dict[str, int], convention: Convention = "community"
) -> list[VideoAnnotation]:
    """``test_frame_mask/<video>.npy``: one 0/1 value per frame (frame i of the mask is frame i + 1 here).

    Masks need no ``convention``. A video with a mask is anomalous when any frame is; a cache video without
    a mask is normal (the weakly supervised split takes its normal training videos from the original
    training set, which has no masks).
    """
    folder = Path(mask_folder)
    masks = sorted(folder.glob("*.npy"))
    if not masks:
        raise DakdError(f"{folder}: no frame masks (<video>.npy) found")
    known = {}
    for path in masks:
        try:
            mask = np.load(path, allow_pickle=False).reshape(-1)
        except (OSError, ValueError) as error:
            raise DakdError(f"{path}: not a readable frame mask ({first_line(error, 120)})") from None
        intervals = tuple((start + 1, end + 1) for start, end in true_intervals(mask > 0))
        known[path.stem] = VideoAnnotation(path.stem, int(bool(intervals)), intervals, len(mask))
    rows = _table(video_frames, known, lambda name: 0)
    # A mask knows the true frame count better than a cache built from 16 x snippets.
    return [
        VideoAnnotation(a.video, a.label, a.intervals, known[video_name(a.video)].n_frames)
        if video_name(a.video) in known
        else a
        for a in rows
    ]


GROUND_TRUTH = {
    "ucf-crime": ucf_crime_annotations,
    "xd-violence": xd_violence_annotations,
    "shanghaitech": shanghaitech_annotations,
}
