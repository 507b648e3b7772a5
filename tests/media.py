"""Synthetic test videos whose frames carry their own index, so decoding can be checked exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from extractors.video_io import write_video

BITS = 10  # frame indices up to 1023


def indexed_frame(index: int, height: int = 48, width: int = 80) -> np.ndarray:
    """A frame whose lower part shows ``index`` in binary as wide black/white stripes; the top rows are
    pure red so that a channel-order mistake is visible."""
    frame = np.zeros((height, width, 3), np.uint8)
    stripe = width // BITS
    for bit in range(BITS):
        if index >> bit & 1:
            frame[height // 4 :, bit * stripe : (bit + 1) * stripe] = 255
    frame[: height // 4, :, 0] = 255
    return frame


def read_index(frame: np.ndarray) -> int:
    """Inverse of :func:`indexed_frame`, robust to lossy compression."""
    height, width = frame.shape[:2]
    stripe = width // BITS
    body = frame[height // 4 + 2 :, :, 1].astype(float)
    return sum(1 << bit for bit in range(BITS) if body[:, bit * stripe + 2 : (bit + 1) * stripe - 2].mean() > 128)


def write_indexed_video(
    path: Path, n_frames: int, fps: float = 30, height: int = 48, width: int = 80, **options
) -> Path:
    write_video(path, (indexed_frame(i, height, width) for i in range(n_frames)), fps=fps, **options)
    return path


def write_audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 44100
        for i in range(10):
            frame.pts = i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_truncated(path: Path, n_frames: int = 96, keep: float = 0.5) -> Path:
    """An mp4 (moov atom first) cut to ``keep`` of its bytes: its beginning still decodes."""
    rng = np.random.default_rng(0)
    noisy = (
        np.clip(indexed_frame(i).astype(int) + rng.integers(-40, 40, (48, 80, 3)), 0, 255).astype(np.uint8)
        for i in range(n_frames)
    )
    full = path.with_name("full_" + path.name)
    write_video(full, noisy, fps=30)
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    full.unlink()
    return path
