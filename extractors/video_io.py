"""Reading videos as bounded chunks of RGB frames (decord), and writing test and demo videos (PyAV).

Memory never grows with video length: frames are read sequentially, ``chunk_frames`` at a time. The
number of frames is counted while decoding, so ``n_decoded`` is exact even when container metadata is not.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from dakd.errors import VideoError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp", ".ogv"}
)


def _decord_errors() -> tuple[type[BaseException], ...]:
    import decord

    # DECORDError is not a RuntimeError subclass; decord raises both.
    return (RuntimeError, decord.DECORDError)


def _one_line(message: str) -> str:
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    text = lines[-1] if lines else "unknown error"
    # decord prefixes its messages with a timestamp and a source location.
    return text.split("] ", 1)[-1][:300]


class VideoReader:
    """Sequential RGB reader for one video file.

    Attributes: ``fps`` (average frames per second), ``width``, ``height``, ``n_reported`` (frame count
    from the container), ``n_decoded`` (frames yielded so far), ``truncated`` (decoding stopped early;
    ``warning`` says why). Decoding uses decord; a file decord cannot index because it ends early (a
    truncated mp4) is decoded from its beginning with PyAV instead, and marked truncated.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.n_decoded = 0
        self.truncated = False
        self.warning = ""
        self._check_file()
        self._probe()
        self._decord = None
        self._pyav = None
        import decord

        decord.logging.set_level(decord.logging.QUIET)
        try:
            self._decord = decord.VideoReader(str(self.path), num_threads=1)
        except _decord_errors() as error:
            if "av_read_frame failed" not in _one_line(str(error)):
                raise VideoError(
                    str(self.path), "not_a_video", f"decord cannot read it ({_one_line(str(error))})"
                ) from None
            # decord indexes every packet up front and gives up on a file that ends early;
            # PyAV decodes such a file from its beginning.
            self._open_pyav()
            self.truncated = True
            self.warning = "the file ends early (truncated?); features cover the frames that decode"
        if self._decord is not None:
            self.n_reported = len(self._decord)
            self.fps = float(self._decord.get_avg_fps())
            if self.n_reported < 1:
                raise VideoError(str(self.path), "no_frames", "the video has no frames")
            try:
                self.height, self.width = self._decord[0].shape[:2]
                self._decord.seek(0)
            except _decord_errors() as error:
                raise VideoError(
                    str(self.path),
                    "undecodable",
                    f"the first frame does not decode ({_one_line(str(error))})",
                ) from None

    def _probe(self) -> None:
        """Classify files that are not videos with PyAV's container probe (quiet, and cheap)."""
        import av

        try:
            with av.open(str(self.path)) as container:
                has_video = bool(container.streams.video)
        except av.FFmpegError:
            raise VideoError(str(self.path), "not_a_video", "not a readable video file") from None
        if not has_video:
            raise VideoError(str(self.path), "no_video_stream", "no video stream (audio-only?)")

    def _check_file(self) -> None:
        if not self.path.exists():
            raise VideoError(str(self.path), "missing", "no such file")
        if not self.path.is_file():
            raise VideoError(str(self.path), "not_a_file", "not a regular file")
        if not os.access(self.path, os.R_OK):
            raise VideoError(str(self.path), "unreadable", "permission denied")
        if self.path.stat().st_size == 0:
            raise VideoError(str(self.path), "empty_file", "the file is empty (0 bytes)")

    def _open_pyav(self) -> None:
        import av

        try:
            self._pyav = av.open(str(self.path))
            stream = self._pyav.streams.video[0]
        except (av.FFmpegError, IndexError) as error:
            raise VideoError(str(self.path), "not_a_video", f"not a readable video file ({error})") from None
        self.fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        self.width, self.height = stream.codec_context.width, stream.codec_context.height
        self.n_reported = stream.frames

    def chunks(self, chunk_frames: int = 64) -> Iterator[np.ndarray]:
        """Yield the video's frames in order as uint8 arrays ``[<=chunk_frames, H, W, 3]``."""
        source = self._decord_chunks(chunk_frames) if self._decord is not None else self._pyav_chunks(chunk_frames)
        for chunk in source:
            self.n_decoded += len(chunk)
            yield chunk
        if self.n_decoded == 0:
            raise VideoError(str(self.path), "undecodable", "no frame could be decoded")

    def _decord_chunks(self, chunk_frames: int) -> Iterator[np.ndarray]:
        # Sequential next() keeps memory flat; get_batch() grows with the position in the video
        # (decord 0.6: +1.4 GB over 18,000 frames of 640x480).
        errors = _decord_errors()
        frames: list[np.ndarray] = []
        while True:
            try:
                frames.append(self._decord.next().asnumpy())
            except StopIteration:
                break
            except errors as error:  # keep everything before the first frame that fails
                self.truncated = True
                position = self.n_decoded + len(frames)
                self.warning = f"decoding stopped at frame {position}: {_one_line(str(error))}"
                break
            if len(frames) == chunk_frames:
                yield np.stack(frames)
                frames = []
        if frames:
            yield np.stack(frames)

    def _pyav_chunks(self, chunk_frames: int) -> Iterator[np.ndarray]:
        import av

        frames: list[np.ndarray] = []
        try:
            for frame in self._pyav.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == chunk_frames:
                    yield np.stack(frames)
                    frames = []
        except av.FFmpegError:
            pass  # the truncation point: what decoded before it is kept
        if frames:
            yield np.stack(frames)

    def close(self) -> None:
        self._decord = None
        if self._pyav is not None:
            self._pyav.close()
            self._pyav = None

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
    entries = []
    for line in list_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entry = Path(line).expanduser()
            entries.append(entry if entry.is_absolute() else list_file.parent / entry)
    return entries


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
