"""The one source of truth for time: frames <-> snippets <-> training segments, and scores back to frames.

Frames are 0-based decoded frame indices. A snippet is ``snippet_frames`` consecutive frames at the native
frame rate; snippets do not overlap and every frame belongs to exactly one snippet. The last partial
snippet is padded by repeating its last frame, and a video shorter than one snippet gives one snippet.
Segments are the fixed-size bags of Sultani et al. (32 by default): ``linspace(0, T, S + 1)`` boundaries
over T snippets, mean pooling inside a segment, and a copy of the snippet at the boundary when a segment
is empty (T < S), as in the PRIDE/RTFM feature pooling.
"""

from __future__ import annotations

import numpy as np

DEFAULT_SNIPPET_FRAMES = 16
DEFAULT_SEGMENTS = 32


def count_snippets(n_frames: int, snippet_frames: int = DEFAULT_SNIPPET_FRAMES) -> int:
    """Number of snippets covering ``n_frames`` frames: ``max(1, ceil(n_frames / snippet_frames))``."""
    if n_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {n_frames}")
    return max(1, -(-n_frames // snippet_frames))


def snippet_frame_indices(n_frames: int, snippet_frames: int = DEFAULT_SNIPPET_FRAMES) -> np.ndarray:
    """Frame index of every position of every snippet, padded by repeating the last frame.

    Returns an int array ``[n_snippets, snippet_frames]``.
    """
    n = count_snippets(n_frames, snippet_frames)
    positions = np.arange(n * snippet_frames).reshape(n, snippet_frames)
    return np.minimum(positions, n_frames - 1)


def segment_boundaries(n_snippets: int, n_segments: int = DEFAULT_SEGMENTS) -> np.ndarray:
    """Snippet boundaries of the segments: ``floor(linspace(0, T, S + 1))``, an int array ``[S + 1]``."""
    return np.linspace(0, n_snippets, n_segments + 1).astype(np.int64)


def segment_snippet_ranges(n_snippets: int, n_segments: int = DEFAULT_SEGMENTS) -> np.ndarray:
    """Half-open snippet range ``[start, end)`` that each segment pools, ``[S, 2]``.

    An empty segment (possible when T < S) takes a copy of the snippet at its start boundary.
    """
    bounds = segment_boundaries(n_snippets, n_segments)
    starts = np.minimum(bounds[:-1], n_snippets - 1)
    ends = np.maximum(bounds[1:], starts + 1)
    return np.stack([starts, ends], axis=1)


def pool_segments(features: np.ndarray, n_segments: int = DEFAULT_SEGMENTS) -> np.ndarray:
    """Mean-pool snippet features ``[..., T, D]`` into segment features ``[..., S, D]`` (float32)."""
    features = np.asarray(features, dtype=np.float32)
    n_snippets = features.shape[-2]
    ranges = segment_snippet_ranges(n_snippets, n_segments)
    # Cumulative sums make every segment mean O(1), whatever T.
    zero = np.zeros(features.shape[:-2] + (1, features.shape[-1]), dtype=np.float64)
    cumulative = np.concatenate([zero, np.cumsum(features, axis=-2, dtype=np.float64)], axis=-2)
    sums = cumulative[..., ranges[:, 1], :] - cumulative[..., ranges[:, 0], :]
    return (sums / (ranges[:, 1] - ranges[:, 0])[:, None]).astype(np.float32)


def segment_scores_to_snippets(scores: np.ndarray, n_snippets: int) -> np.ndarray:
    """Map segment scores ``[S]`` back to snippet scores ``[T]``.

    A snippet takes the mean score of the segments that pooled it (one segment when T >= S; when T < S
    every segment that copied it).
    """
    scores = np.asarray(scores, dtype=np.float64)
    ranges = segment_snippet_ranges(n_snippets, len(scores))
    totals = np.zeros(n_snippets)
    counts = np.zeros(n_snippets)
    for score, (start, end) in zip(scores, ranges):
        totals[start:end] += score
        counts[start:end] += 1
    return totals / counts


def snippet_scores_to_frames(
    scores: np.ndarray, n_frames: int, snippet_frames: int = DEFAULT_SNIPPET_FRAMES
) -> np.ndarray:
    """Give every frame the score of its snippet, ``[T] -> [n_frames]``; padded frames are dropped."""
    scores = np.asarray(scores)
    expected = count_snippets(n_frames, snippet_frames)
    if len(scores) != expected:
        raise ValueError(f"{len(scores)} snippet scores for {n_frames} frames; expected {expected}")
    return np.repeat(scores, snippet_frames)[:n_frames]


def true_intervals(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in a boolean mask ``[n]``, as 0-based inclusive ``(start, end)`` index pairs."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(start), int(end) - 1) for start, end in zip(edges[::2], edges[1::2])]


def frame_times(n_frames: int, fps: float) -> np.ndarray:
    """Presentation time in seconds of each frame, ``[n_frames]``."""
    return np.arange(n_frames) / fps


def stream_snippets(chunks, snippet_frames: int = DEFAULT_SNIPPET_FRAMES, group: int = 1):
    """Regroup a stream of frame chunks ``[F, H, W, C]`` into snippets ``[<=group, snippet_frames, H, W, C]``.

    Memory stays bounded by one chunk plus one group. The last partial snippet is padded as
    :func:`snippet_frame_indices` says (its last frame repeated).
    """
    pending = None
    size = snippet_frames * group
    for chunk in chunks:
        pending = chunk if pending is None or len(pending) == 0 else np.concatenate([pending, chunk])
        while len(pending) >= size:
            yield pending[:size].reshape(group, snippet_frames, *pending.shape[1:])
            pending = pending[size:]
    if pending is not None and len(pending):
        full = len(pending) // snippet_frames
        if full:
            yield pending[: full * snippet_frames].reshape(full, snippet_frames, *pending.shape[1:])
        tail = pending[full * snippet_frames :]
        if len(tail):
            yield tail[snippet_frame_indices(len(tail), snippet_frames)]
