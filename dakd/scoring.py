"""From snippet features to snippet and frame scores with a trained model (evaluation and ``score``)."""

from __future__ import annotations

from collections import deque
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


class CausalScorer:
    """Online scores: each new snippet is scored by the model over the most recent ``window`` snippets
    (itself the last: no future snippet is seen) and its own score, the window's last, is returned.

    Offline scoring (:func:`snippet_scores`) lets every snippet attend to the whole video, past and future;
    this is what a live stream allows. :func:`causal_snippet_scores` is the same computation on a finished
    video (for measuring the difference, and for tests).
    """

    def __init__(self, model: AnomalyModel, window: int = DEFAULT_SEGMENTS, device: torch.device | str = "cpu"):
        if window < 1:
            raise ValueError(f"the window must hold at least one snippet, got {window}")
        self.model, self.window, self.device = model.eval(), window, device
        self.history: deque[dict[str, np.ndarray]] = deque(maxlen=window)

    @torch.no_grad()
    def push(self, features: dict[str, np.ndarray]) -> float:
        """``{backbone: [D]}`` of the newest snippet -> its score."""
        self.history.append(features)
        inputs = {
            name: torch.from_numpy(np.stack([snippet[name] for snippet in self.history]).astype(np.float32))[None]
            for name in self.model.names
        }
        return float(self.model({k: v.to(self.device) for k, v in inputs.items()}).scores[0, -1])


def causal_snippet_scores(
    model: AnomalyModel, features: dict[str, np.ndarray], window: int = DEFAULT_SEGMENTS
) -> np.ndarray:
    """The scores ``[T]`` :class:`CausalScorer` gives a video's snippets ``{backbone: [T, D]}`` one by one."""
    scorer = CausalScorer(model, window)
    length = len(next(iter(features.values())))
    return np.array([scorer.push({name: array[t] for name, array in features.items()}) for t in range(length)])
