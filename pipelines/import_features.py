"""``dakd import-features``: the community's precomputed features into a dakd feature cache.

The imported cache works with train-teacher, distill and evaluate unchanged. It records its provenance
(family, the lists it came from, snippet_frames 16, crop count, dakd's equivalent backbone) in
``<backbone>/backbone.json`` and in every video manifest. No video is decoded, so a video's ``n_frames``
is 16 x its snippet count, the community's own assumption (``n_frames_source`` says so).
Bad files are recorded in ``failures.jsonl`` with one printed line each; the other videos are imported;
a rerun skips videos already imported from the same files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from dakd.annotations import CACHE_ANNOTATIONS, VideoAnnotation, write_annotations
from dakd.cache import FeatureCache
from dakd.community import FAMILIES, SNIPPET_FRAMES, SOURCES, FeatureSource, load_features
from dakd.errors import DakdError
from pipelines.jobs import ImportJob


@dataclass
class ImportSummary:
    cache: Path
    backbone: str
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def source_stamp(source: FeatureSource) -> tuple[int, float]:
    """(total size, newest mtime) of a video's files: a rerun re-imports a video whose files changed."""
    stats = [path.stat() for path in source.files]
    return sum(s.st_size for s in stats), max(s.st_mtime for s in stats)


def run(job: ImportJob, report: Callable[[str], None] = tqdm.write) -> ImportSummary:
    if job.family not in FAMILIES:
        raise DakdError(f"unknown feature family {job.family!r}; expected one of {', '.join(FAMILIES)}")
    if not job.lists:
        raise DakdError("no feature lists given")
    family = FAMILIES[job.family]
    sources = SOURCES[job.family](job.lists)
    if not sources:
        raise DakdError(f"{', '.join(job.lists)}: no feature files listed")
    crop_counts = {len(s.files) for s in sources} if job.family != "rtfm" else set()
    if len(crop_counts) > 1:
        raise DakdError(f"{', '.join(job.lists)}: videos have different crop counts {sorted(crop_counts)}")
    cache = FeatureCache(job.cache)
    summary = ImportSummary(cache.root, family.backbone)
    crops = None
    for source in tqdm(sources, desc=f"import {job.family}", unit="video", disable=not job.progress):
        try:
            size, mtime = source_stamp(source)
        except OSError as error:
            fail(cache, summary, source, "missing", f"{error.filename}: {error.strerror}", report)
            continue
        manifest = cache.manifest(family.backbone, source.video)
        if manifest and (manifest["source_size"], manifest["source_mtime"]) == (size, mtime):
            summary.skipped.append(source.video)
            continue
        try:
            features = load_features(job.family, source)
        except DakdError as error:
            fail(cache, summary, source, "unreadable", str(error), report)
            continue
        if crops is None:  # the first readable video fixes the cache's layout
            crops = features.shape[0]
            claim(cache, job, crops)
        if features.shape[0] != crops:
            fail(cache, summary, source, "crops", f"{features.shape[0]} crops, the cache has {crops}", report)
            continue
        n_snippets = features.shape[1]
        cache.write(
            family.backbone,
            source.video,
            features.astype(job.dtype),
            {
                "source_path": str(source.files[0].resolve()),
                "source_files": [str(p) for p in source.files],
                "source_size": size,
                "source_mtime": mtime,
                "n_frames": SNIPPET_FRAMES * n_snippets,
                "n_frames_source": "16 x snippets (imported features: no video decoded)",
                "fps": None,
                "n_snippets": n_snippets,
                "snippet_frames": SNIPPET_FRAMES,
                "crops": crops,
                "imported_family": job.family,
                "weights_sha256": weights_id(job.family),
                "random_weights": False,
                "truncated": False,
                "warning": None,
            },
        )
        summary.imported.append(source.video)
    record_labels(cache, sources, report)
    return summary


def weights_id(family: str) -> str:
    """Stands in for a weights sha256: checkpoints trained on imported features name their family."""
    return f"imported:{family}"


def claim(cache: FeatureCache, job: ImportJob, crops: int) -> None:
    family = FAMILIES[job.family]
    cache.claim(SNIPPET_FRAMES, crops)
    cache.claim_backbone(
        family.backbone,
        {
            "feature_dim": family.feature_dim,
            "dtype": job.dtype,
            "crops": crops,
            "snippet_frames": SNIPPET_FRAMES,
            "weights": {"sha256": weights_id(job.family), "random": False, "origin": "imported"},
            "preprocessing": {"imported": job.family, "description": family.description},
            "options": {},
            "provenance": {"family": job.family, "lists": [str(Path(p).resolve()) for p in job.lists]},
        },
    )


def fail(
    cache: FeatureCache,
    summary: ImportSummary,
    source: FeatureSource,
    kind: str,
    message: str,
    report: Callable[[str], None],
) -> None:
    cache.record_failure(str(source.files[0]), source.video, kind, message)
    summary.failed.append(source.video)
    report(f"failed: {source.video}: {message}")


def record_labels(cache: FeatureCache, sources: list[FeatureSource], report: Callable[[str], None]) -> None:
    """VadCLIP's CSV states video labels: keep them as the cache's annotations when it has none yet."""
    labelled = [VideoAnnotation(s.video, s.label) for s in sources if s.label is not None]
    target = cache.root / CACHE_ANNOTATIONS
    if labelled and not target.exists():
        write_annotations(labelled, target)
        report(f"video labels from the feature list written to {target} (no frame labels: see dakd annotations)")
