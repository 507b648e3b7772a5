import numpy as np
import pytest

from dakd import timeline


@pytest.mark.parametrize(("n_frames", "expected"), [(1, 1), (15, 1), (16, 1), (17, 2), (32, 2), (33, 3), (180, 12)])
def test_count_snippets(n_frames, expected):
    assert timeline.count_snippets(n_frames, 16) == expected


def test_every_frame_in_exactly_one_snippet_and_padding_repeats_last_frame():
    indices = timeline.snippet_frame_indices(37, 16)
    assert indices.shape == (3, 16)
    assert np.array_equal(np.unique(indices), np.arange(37))
    assert list(indices[2]) == [32, 33, 34, 35, 36] + [36] * 11
    # Outside the padded tail, each frame appears once.
    assert np.array_equal(indices[:2].ravel(), np.arange(32))


def test_short_video_gives_one_snippet():
    assert list(timeline.snippet_frame_indices(3, 16)[0]) == [0, 1, 2] + [2] * 13


def test_zero_frames_is_an_error():
    with pytest.raises(ValueError):
        timeline.count_snippets(0)


def test_segment_pooling_mean_and_copy_when_empty():
    features = np.arange(5, dtype=np.float32)[:, None]  # T=5 snippets, D=1
    pooled = timeline.pool_segments(features, 8)
    # boundaries floor(linspace(0, 5, 9)) = [0,0,1,1,2,3,3,4,5]: empty segments copy their start snippet
    assert list(pooled[:, 0]) == [0, 0, 1, 1, 2, 3, 3, 4]
    long = np.arange(64, dtype=np.float32)[:, None]
    assert list(timeline.pool_segments(long, 32)[:3, 0]) == [0.5, 2.5, 4.5]


def test_segment_pooling_keeps_leading_axes():
    features = np.random.default_rng(0).normal(size=(10, 70, 4)).astype(np.float16)
    pooled = timeline.pool_segments(features, 32)
    assert pooled.shape == (10, 32, 4) and pooled.dtype == np.float32
    ranges = timeline.segment_snippet_ranges(70, 32)
    start, end = ranges[5]
    np.testing.assert_allclose(pooled[3, 5], features[3, start:end].astype(np.float32).mean(0), rtol=1e-6)


def test_segment_scores_back_to_snippets():
    scores = np.arange(32, dtype=float)
    back = timeline.segment_scores_to_snippets(scores, 64)
    assert back.shape == (64,) and back[0] == 0 and back[63] == 31
    # Fewer snippets than segments: a snippet averages the segments that copied it.
    few = timeline.segment_scores_to_snippets(np.array([1.0, 3.0, 5.0, 7.0]), 2)
    assert list(few) == [2.0, 6.0]


def test_snippet_scores_to_frames_drops_padding():
    frames = timeline.snippet_scores_to_frames(np.array([0.1, 0.9]), 20, 16)
    assert frames.shape == (20,)
    assert np.all(frames[:16] == 0.1) and np.all(frames[16:] == 0.9)
    with pytest.raises(ValueError):
        timeline.snippet_scores_to_frames(np.array([0.1]), 20, 16)


@pytest.mark.parametrize("n_frames", [1, 15, 16, 17, 50, 64, 100])
@pytest.mark.parametrize(("chunk", "group"), [(7, 1), (64, 4), (16, 2)])
def test_stream_snippets_follows_the_indexing_rule(n_frames, chunk, group):
    frames = np.arange(n_frames).reshape(n_frames, 1, 1, 1)
    chunks = (frames[i : i + chunk] for i in range(0, n_frames, chunk))
    streamed = np.concatenate(list(timeline.stream_snippets(chunks, 16, group)))
    assert np.array_equal(streamed[..., 0, 0, 0], timeline.snippet_frame_indices(n_frames, 16))
