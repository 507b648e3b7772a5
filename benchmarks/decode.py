"""Decoding speed: FFmpeg's decoding alone, PyAV's per-frame RGB conversion, and dakd's ``VideoReader``.

``frame.to_ndarray(format="rgb24")`` builds a new FFmpeg scaler for every frame; ``VideoReader`` keeps one
per video and returns the same pixels (tests/test_video_io.py). Prints seconds and CPU seconds of each
way of reading the whole video, best of ``--repeats``. Example::

    python benchmarks/decode.py /tmp/dakd-bench/scene_1min.mp4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def decode(path: str, convert: bool) -> int:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # as VideoReader
        count = 0
        for frame in container.decode(stream):
            if convert:
                frame.to_ndarray(format="rgb24")
            count += 1
    return count


def read(path: str) -> int:
    from extractors.video_io import VideoReader

    with VideoReader(path) as reader:
        return sum(len(chunk) for chunk in reader.chunks(64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    ways = {
        "FFmpeg decoding only": lambda: decode(args.video, convert=False),
        'decoding + frame.to_ndarray(format="rgb24") per frame': lambda: decode(args.video, convert=True),
        "VideoReader (decoding + one scaler per video + 64-frame chunks)": lambda: read(args.video),
    }
    print(f"{args.video}, best of {args.repeats}:")
    for name, way in ways.items():
        best = None
        for _ in range(args.repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            frames = way()
            timing = (time.perf_counter() - started, time.process_time() - cpu_started)
            best = timing if best is None or timing[0] < best[0] else best
        print(f"  {name}: {frames} frames, {best[0]:.2f} s ({best[1]:.2f} CPU s)")


if __name__ == "__main__":
    main()
