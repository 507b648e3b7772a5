"""Training bags: per video and backbone, cached snippet features pooled to segments, held in memory.

``BagSet`` aligns backbones by video id (their snippets are aligned by construction: one timeline),
pools ``[crops, T, D]`` to ``[crops, S, D]`` with :func:`dakd.timeline.pool_segments`, and draws
balanced batches: as many anomalous as normal bags, one random crop per bag per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from dakd.annotations import resolve_labels
from dakd.cache import FeatureCache
from dakd.errors import DakdError
from dakd.timeline import DEFAULT_SEGMENTS, pool_segments


@dataclass
class Batch:
    features: dict[str, torch.Tensor]  # backbone -> [B, S, D]
    labels: torch.Tensor  # [B] 1 anomalous, 0 normal
    videos: list[str]
    crops: list[int]  # the crop each bag was drawn from


class BagSet:
    def __init__(
        self, cache: FeatureCache, backbones: tuple[str, ...], labels: dict[str, int], segments: int = DEFAULT_SEGMENTS
    ):
        """``labels`` maps cache video ids to 0/1; every backbone must hold every video."""
        self.videos = sorted(labels)
        self.labels = np.array([labels[v] for v in self.videos], dtype=np.int64)
        self.backbones = backbones
        self.features: dict[str, np.ndarray] = {}
        for backbone in backbones:
            have = set(cache.video_ids(backbone))
            missing = [v for v in self.videos if v not in have]
            if missing:
                raise DakdError(
                    f"{cache.root}: no {backbone!r} features for {len(missing)} video(s), "
                    f"e.g. {', '.join(missing[:3])}; "
                    "run dakd extract on them"
                )
            self.features[backbone] = np.stack([pool_segments(cache.read(backbone, v), segments) for v in self.videos])
        self.crops = next(iter(self.features.values())).shape[1]

    def __len__(self) -> int:
        return len(self.videos)

    def subset(self, indices: np.ndarray) -> BagSet:
        other = object.__new__(BagSet)
        other.videos = [self.videos[i] for i in indices]
        other.labels = self.labels[indices]
        other.backbones = self.backbones
        other.features = {k: v[indices] for k, v in self.features.items()}
        other.crops = self.crops
        return other

    def gather(self, indices: np.ndarray, crops: np.ndarray) -> Batch:
        features = {k: torch.from_numpy(v[indices, crops]) for k, v in self.features.items()}
        videos = [self.videos[i] for i in indices]
        return Batch(features, torch.from_numpy(self.labels[indices]), videos, [int(c) for c in crops])

    def batches(self, per_class: int, generator: np.random.Generator) -> Iterator[Batch]:
        """Endless balanced batches: ``per_class`` anomalous and ``per_class`` normal bags each.

        Each class is reshuffled whenever it is used up, so every bag is seen once per pass over the
        larger class; the smaller class cycles. Bags are drawn without replacement within a batch when
        the class has enough of them.
        """
        pools = [np.flatnonzero(self.labels == 1), np.flatnonzero(self.labels == 0)]
        if any(len(pool) == 0 for pool in pools):
            raise DakdError("training needs both anomalous and normal videos; check the labels and the split")
        orders = [generator.permutation(pool) for pool in pools]
        positions = [0, 0]
        while True:
            chosen = []
            for c, pool in enumerate(pools):
                take = []
                while len(take) < per_class:
                    if positions[c] == len(orders[c]):
                        orders[c], positions[c] = generator.permutation(pool), 0
                    count = min(per_class - len(take), len(orders[c]) - positions[c])
                    take.extend(orders[c][positions[c] : positions[c] + count])
                    positions[c] += count
                chosen.extend(take)
            indices = np.array(chosen)
            crops = generator.integers(0, self.crops, size=len(indices))
            yield self.gather(indices, crops)


def load_bags(
    cache: FeatureCache,
    backbones: tuple[str, ...],
    annotations: str | None,
    split: str | None,
    segments: int = DEFAULT_SEGMENTS,
) -> BagSet:
    """The training bags of ``backbones`` for the labelled videos of ``split`` (default: every labelled one)."""
    cache.config()  # a clear error when the folder is not a feature cache
    for name in backbones:
        cache.backbone_config(name)  # a clear error when a backbone was not extracted
    labels = resolve_labels(cache.root, cache.video_ids(backbones[0]), annotations, split)
    return BagSet(cache, backbones, {video: a.label for video, a in labels.items()}, segments)
