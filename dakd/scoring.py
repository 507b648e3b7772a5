"""From snippet features to snippet and frame scores with a trained model (evaluation and ``score``)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from dakd.models import AnomalyModel
from dakd.timeline import DEFAULT_SEGMENTS, pool_segments, segment_scores_to_snippets, snippet_scores_to_frames

Mapping = Literal["snippets", "segments"]


@torch.no_grad()
def snippet_scores(
    model: AnomalyModel,
    features: dict[str, np.ndarray],
    mapping: Mapping = "snippets",
    segments: int = DEFAULT_SEGMENTS,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Scores ``[T]`` of one video from its features ``{backbone: [crops, T, D]}``, averaged over crops.

    ``snippets`` scores the whole snippet sequence (the default); ``segments`` pools it to the training
    segments first and maps the segment scores back to snippets.
    """
    model.eval()
    n_snippets = next(iter(features.values())).shape[1]
    crop_scores = []
    crops = next(iter(features.values())).shape[0]
    for crop in range(crops):  # one crop at a time bounds memory on long videos
        if mapping == "segments":
            inputs = {k: torch.from_numpy(pool_segments(v[crop], segments))[None] for k, v in features.items()}
        else:
            inputs = {k: torch.from_numpy(np.array(v[crop], dtype=np.float32))[None] for k, v in features.items()}
        scores = model({k: v.to(device) for k, v in inputs.items()}).scores[0].float().cpu().numpy()
        if mapping == "segments":
            scores = segment_scores_to_snippets(scores, n_snippets)
        crop_scores.append(scores)
    return np.mean(crop_scores, axis=0)


def frame_scores(
    model: AnomalyModel,
    features: dict[str, np.ndarray],
    n_frames: int,
    snippet_frames: int,
    mapping: Mapping = "snippets",
    segments: int = DEFAULT_SEGMENTS,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Per-frame scores ``[n_frames]``: every frame takes its snippet's score (padding dropped)."""
    scores = snippet_scores(model, features, mapping, segments, device)
    return snippet_scores_to_frames(scores, n_frames, snippet_frames)
