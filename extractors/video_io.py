"""Reading videos as bounded chunks of frames (RGB, luma or both), and writing videos (both with PyAV, i.e. FFmpeg).

Memory never grows with video length: frames are decoded on demand, ``chunk_frames`` at a time, in the
calling thread. (decord 0.6 decodes ahead in a thread of its own without any bound: +5.4 GB in 12 s
while the caller was busy with a model; see docs/design-notes.md.) The number of frames is counted while
decoding, so ``n_decoded`` is exact even when container metadata is not.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dakd.errors import VideoError, first_line
from dakd.files import read_list

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp", ".ogv"}
)


# Pixel layouts of decoded frames (the last axis): "rgb" [..., 3]; "luma" [..., 1], the Y plane; "rgb+luma"
# [..., 4], R, G, B and Y, for runs whose backbones read both (a Teacher with RGB views and flow).
PIXELS = {"rgb": 3, "luma": 1, "rgb+luma": 4}
# 8-bit formats whose first plane is the luma (or grey) plane, and those of them that are full range.
LUMA_PLANE_FORMATS = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p", "yuv411p",
     "yuvj411p", "yuv410p", "yuva420p", "nv12", "nv21", "nv16", "gray"}
)  # fmt: skip
FULL_RANGE_FORMATS = frozenset({"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p", "gray"})
JPEG_RANGE = 2  # FFmpeg's AVCOL_RANGE_JPEG: a frame that says its luma spans 0-255
# Limited-range luma (16-235) stretched to 0-255, as FFmpeg's RGB conversion stretches it.
LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)


def _rows(plane, height: int, row_bytes: int) -> np.ndarray:
    # FFmpeg pads each row to line_size bytes: read the rows as PyAV's to_ndarray does.
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :row_bytes]


def frame_converter(pixels: str = "rgb") -> Callable[..., np.ndarray]:
    """Decoded frame -> uint8 ``[H, W, C]`` in the layout ``pixels`` (:data:`PIXELS`); with ``out``, written
    into that array (a slot of a chunk) instead of a new one.

    RGB comes through one FFmpeg scaler kept for the whole video: ``frame.to_ndarray(format="rgb24")``
    builds a new scaler for every frame, for the same pixels, 2.3x slower on an idle machine and 12x on a busy
    one (PyAV 18, 640x480; docs/design-notes.md). Luma is the decoded Y plane itself, with no conversion
    (limited range stretched to 0-255); formats without an 8-bit luma plane go through the scaler to grey.
    """
    import cv2
    from av.video.reformatter import VideoReformatter

    if pixels not in PIXELS:
        raise ValueError(f"pixels must be one of {', '.join(PIXELS)}; got {pixels!r}")
    reformatter, grey_reformatter = VideoReformatter(), VideoReformatter()  # one scaler per output format

    def rgb(frame: av.VideoFrame, out: np.ndarray) -> None:
        # With luma, RGBA (the same R, G, B) fills all 4 channels in one contiguous copy, and luma then takes
        # the fourth: copying RGB into 3 of 4 channels is 15x slower in numpy (1.3 ms a 640x480 frame).
        fmt, channels = ("rgb24", 3) if pixels == "rgb" else ("rgba", 4)
        rows = _rows(reformatter.reformat(frame, format=fmt).planes[0], frame.height, frame.width * channels)
        out[...] = rows.reshape(frame.height, frame.width, channels)

    def luma(frame: av.VideoFrame, out: np.ndarray) -> None:
        name = frame.format.name
        if name not in LUMA_PLANE_FORMATS:
            grey = grey_reformatter.reformat(frame, format="gray")  # FFmpeg's scaler gives full-range grey
            out[...] = _rows(grey.planes[0], frame.height, frame.width)
        elif name in FULL_RANGE_FORMATS or getattr(frame, "color_range", None) == JPEG_RANGE:  # newer PyAV only
            out[...] = _rows(frame.planes[0], frame.height, frame.width)
        elif out.flags.c_contiguous:
            cv2.LUT(_rows(frame.planes[0], frame.height, frame.width), LIMITED_TO_FULL, dst=out)
        else:
            out[...] = cv2.LUT(_rows(frame.planes[0], frame.height, frame.width), LIMITED_TO_FULL)

    def convert(frame: av.VideoFrame, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty((frame.height, frame.width, PIXELS[pixels]), np.uint8)
        if pixels != "luma":
            rgb(frame, out)
        if pixels != "rgb":
            luma(frame, out[..., -1])
        return out

    return convert


class ChunkBuffers:
    """Arrays for chunks of decoded frames whose memory is reused once nothing refers to a chunk any more.

    A fresh 59 MB array per 64 frames of 640x480 video costs the kernel's page faults and zeroing on first
    write: 0.15-0.3 CPU s per minute of video (docs/design-notes.md). A chunk handed out is a view on a kept
    block; every view or tensor made from it refers to one base array, so a weak reference to that base
    says when the block is free. Past ``keep`` blocks in use (a caller that holds every chunk), chunks
    are plain new arrays.
    """

    def __init__(self, shape: tuple[int, ...], keep: int = 3):
        self.shape, self.keep = shape, keep
        self.blocks: list[tuple[np.ndarray, weakref.ref]] = []

    def take(self) -> np.ndarray:
        free = [index for index, (_, handed) in enumerate(self.blocks) if handed() is None]
        if free:
            return self._hand_out(free[0])
        if len(self.blocks) == self.keep:
            return np.empty(self.shape, np.uint8)
        self.blocks.append((np.empty(self.shape, np.uint8), None))
        return self._hand_out(len(self.blocks) - 1)

    def _hand_out(self, index: int) -> np.ndarray:
        # An array over the block's memory that is not a view of the block: views made from it refer to it.
        block = self.blocks[index][0]
        base = np.frombuffer(memoryview(block.reshape(-1)), np.uint8)
        self.blocks[index] = (block, weakref.ref(base))
        return base.reshape(self.shape)


class VideoReader:
    """Sequential reader for one video file.

    Attributes: ``fps`` (average frames per second), ``width``, ``height``, ``n_reported`` (frame count
    from the container, 0 when it has none), ``n_decoded`` (frames yielded so far), ``truncated``
    (decoding stopped early; ``warning`` says why). Raises :class:`VideoError` for files that are not
    readable videos.
    """

    def __init__(self, path: str | os.PathLike):
        import av

        self.path = Path(path)
        self.n_decoded = 0
        self.truncated = False
        self.warning = ""
        self._check_file()
        try:
            self._container = av.open(str(self.path))
        except av.FFmpegError:
            raise VideoError(str(self.path), "not_a_video", "not a readable video file") from None
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(str(self.path), "no_video_stream", "no video stream (audio-only?)")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # FFmpeg's frame and slice threads: bounded, unlike a read-ahead queue
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 25.0
        self.width, self.height = self._stream.codec_context.width, self._stream.codec_context.height
        self.n_reported = int(self._stream.frames or 0)

    def _check_file(self) -> None:
        if not self.path.exists():
            raise VideoError(str(self.path), "missing", "no such file")
        if not self.path.is_file():
            raise VideoError(str(self.path), "not_a_file", "not a regular file")
        if not os.access(self.path, os.R_OK):
            raise VideoError(str(self.path), "unreadable", "permission denied")
        if self.path.stat().st_size == 0:
            raise VideoError(str(self.path), "empty_file", "the file is empty (0 bytes)")

    def chunks(self, chunk_frames: int = 64, pixels: str = "rgb") -> Iterator[np.ndarray]:
        """Yield the video's frames in order as uint8 arrays ``[<=chunk_frames, H, W, C]`` (``pixels``: the layout,
        :data:`PIXELS`).

        A file that stops decoding part-way keeps the frames before that point (``truncated``).
        """
        import av

        chunk, filled = None, 0
        convert = frame_converter(pixels)
        buffers = ChunkBuffers((chunk_frames, self.height, self.width, PIXELS[pixels]))
        try:
            for frame in self._container.decode(self._stream):
                if (frame.width, frame.height) != (self.width, self.height):
                    raise VideoError(
                        str(self.path),
                        "resolution_change",
                        f"the frame size changes mid-video ({self.width}x{self.height} to {frame.width}x{frame.height} "
                        f"at frame {self.n_decoded + filled})",
                    )
                if chunk is None:  # frames go straight into the chunk: no per-frame array to stack
                    chunk = buffers.take()
                convert(frame, chunk[filled])
                filled += 1
                if filled == chunk_frames:
                    self.n_decoded += filled
                    yield chunk
                    chunk, filled = None, 0
        except av.FFmpegError as error:
            self.truncated = True
            self.warning = f"decoding stopped at frame {self.n_decoded + filled}: {first_line(error, 300)}"
        if filled:
            self.n_decoded += filled
            yield chunk[:filled]
        if self.n_decoded == 0:
            raise VideoError(str(self.path), "undecodable", self.warning or "no frame could be decoded")
        if not self.truncated and self.n_reported and self.n_decoded < 0.99 * self.n_reported - 1:
            self.truncated = True
            self.warning = f"the container lists {self.n_reported} frames but only {self.n_decoded} decode"

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float = 30,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> int:
    """Write RGB uint8 frames ``[H, W, 3]`` to a video file; returns the number of frames written.

    The container is chosen by the file extension. mp4 files are written with ``faststart`` so that a
    partial download still decodes from the beginning.
    """
    from fractions import Fraction

    import av

    path = Path(path)
    container_options = {"movflags": "faststart"} if path.suffix.lower() in (".mp4", ".mov", ".m4v") else {}
    count = 0
    with av.open(str(path), "w", options=container_options) as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = pix_fmt
                stream.options = dict(options or {})
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            container.mux(stream.encode(video_frame))
            count += 1
        if stream is not None:
            container.mux(stream.encode())
    return count


def _list_entries(list_file: Path) -> list[Path]:
    """The videos of a ``.txt`` list, paths relative to the list's folder."""
    entries = [Path(line).expanduser() for line in read_list(list_file, "video list")]
    return [entry if entry.is_absolute() else list_file.parent / entry for entry in entries]


def discover_videos(inputs: Iterable[str | os.PathLike]) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """Expand files, folders (recursively, by video extension) and ``.txt`` lists into ``{video_id: path}``.

    A video's id is its path relative to the folder it was found in, without extension (``normal/a``),
    or its file name without extension when given directly or in a list. When two different files would
    get the same id, parent folder names are prepended until the ids differ, so nothing is overwritten.
    Returns the videos and the inputs that do not exist, as ``(input, reason)``.
    """
    found: list[tuple[str, Path]] = []
    missing: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                # a broken link is kept, so that it is reported rather than silently skipped
                if file.suffix.lower() in VIDEO_EXTENSIONS and (file.is_file() or file.is_symlink()):
                    found.append((file.relative_to(path).with_suffix("").as_posix(), file))
        elif path.suffix.lower() == ".txt" and path.is_file():
            found.extend((entry.stem, entry) for entry in _list_entries(path))
        elif path.exists() or path.is_symlink():
            found.append((path.stem, path))
        else:
            missing.append((str(item), "no such file or folder"))
    unique: dict[Path, str] = {}
    for video_id, path in found:
        unique.setdefault(path.absolute(), video_id)
    return _disambiguate(unique), missing


def _disambiguate(ids_by_path: dict[Path, str]) -> dict[str, Path]:
    groups: dict[str, list[Path]] = {}
    for path, video_id in ids_by_path.items():
        groups.setdefault(video_id, []).append(path)
    result: dict[str, Path] = {}
    for video_id, group in groups.items():
        if len(group) == 1:
            result[video_id] = group[0]
            continue
        longest = max(len(p.parts) for p in group)
        for depth in range(2, longest + 1):
            candidates = ["/".join(p.with_suffix("").parts[-depth:]) for p in group]
            if len(set(candidates)) == len(group):
                break
        else:  # the same path but for the extension (a.mp4, a.avi): keep the extension
            candidates = ["/".join(p.parts[1:]) for p in group]
        result.update(zip(candidates, group))
    return dict(sorted(result.items()))
