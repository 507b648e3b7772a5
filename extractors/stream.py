"""Live sources: network streams, cameras and files played as streams, decoded in a background thread
into snippets, with bounded memory whatever happens downstream.

A source is anything FFmpeg opens: ``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``,
``srt://`` URLs, a V4L2 camera (``/dev/video0``) or a file. A file is read as fast as the scorer takes
its snippets (every snippet is scored) or, with ``realtime``, at its native frame rate like a camera.
Live sources never wait for the scorer: at most ``queue_size`` snippets wait, and when the scorer falls
behind, the oldest waiting snippet is dropped whole and counted (``skipped``). A stream that stops or
breaks is reopened with exponential backoff, and says so through ``events``; packets that do not
decode are counted (``corrupt_packets``) and skipped.

Stream time: a file's frames are at ``index / fps``; a live source's at the seconds since it was
started (wall clock at decoding), which keeps counting across reconnections.

Recording: the source keeps its last ``record_seconds`` of compressed packets; :meth:`request_clip`
asks it to write the packets of a time range (from the keyframe before it) to an mp4 without
re-encoding, as soon as the stream has passed the range's end.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dakd.errors import first_line
from dakd.timeline import DEFAULT_SNIPPET_FRAMES, snippet_frame_indices
from extractors.video_io import frame_converter

log = logging.getLogger(__name__)

LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://", "/dev/video")
END = object()
MAX_CLIP_SECONDS = 60.0  # of an alert's own duration in its clip (bounds the packets a recording source keeps)


def is_live(url: str) -> bool:
    return url.startswith(LIVE_PREFIXES)


@dataclass
class Snippet:
    source: str
    index: int  # the snippet's number in the stream (skipped ones count)
    frames: np.ndarray  # uint8 [snippet_frames, H, W, C], C as the source's pixels say
    start_s: float  # stream time of its first frame
    end_s: float  # stream time just after its last frame
    arrived: float  # time.monotonic() when its last frame was decoded


@dataclass
class ClipRequest:
    start_s: float
    end_s: float
    path: Path


class LiveSource(threading.Thread):
    """Decodes one source into :class:`Snippet` s on ``snippets`` (a bounded queue; ``END`` when it is over)."""

    def __init__(
        self,
        url: str,
        snippet_frames: int = DEFAULT_SNIPPET_FRAMES,
        realtime: bool = False,
        queue_size: int = 2,
        reconnect: bool | None = None,
        backoff: tuple[float, float] = (1.0, 30.0),
        record_seconds: float = 0.0,
        post_roll_s: float = 3.0,
        pixels: str = "rgb",
    ):
        super().__init__(daemon=True, name=f"source {url}")
        self.pixels = pixels  # the layout of decoded frames (extractors.video_io.PIXELS)
        self.url, self.snippet_frames, self.live = url, snippet_frames, is_live(url)
        self.realtime = realtime or self.live
        self.reconnect = self.live if reconnect is None else reconnect
        self.backoff = backoff
        self.snippets: queue.Queue = queue.Queue(maxsize=queue_size)
        self.events: queue.Queue = queue.Queue()  # {"status": ..., "message": ...} for the scorer to report
        self.stopping = threading.Event()
        self.ended = False  # END was queued
        self.skipped = self.corrupt_packets = self.reconnects = self.produced = 0
        self.started_at = time.monotonic()
        self.record_seconds, self.post_roll_s = record_seconds, post_roll_s
        self.packets: collections.deque = collections.deque()  # (stream time, packet) of the last seconds
        self.clip_requests: list[ClipRequest] = []
        self.clips_written: queue.Queue = queue.Queue()  # (request, path or error message)
        self.lock = threading.Lock()

    # -- the scorer's side -----------------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()

    def request_clip(self, start_s: float, end_s: float, path: Path) -> None:
        with self.lock:
            self.clip_requests.append(ClipRequest(start_s, end_s, path))

    # -- the thread ---------------------------------------------------------------------------------------------

    def report(self, status: str, message: str = "") -> None:
        self.events.put({"status": status, "message": message})

    def run(self) -> None:
        delay, connected_before = self.backoff[0], False
        try:
            while not self.stopping.is_set():
                try:
                    container = self.open()
                except Exception as error:  # FFmpeg and OS errors: the source is not there (yet)
                    if not self.reconnect:
                        self.report("failed", first_line(error))
                        return
                    self.report("unreachable", f"{first_line(error)}; retrying in {delay:g} s")
                    self.stopping.wait(delay)
                    delay = min(2 * delay, self.backoff[1])
                    continue
                if connected_before:
                    self.reconnects += 1
                    self.report("reconnected")
                else:
                    self.report("connected")
                connected_before, delay = True, self.backoff[0]
                try:
                    self.read(container)
                    message = "the stream ended"
                except Exception as error:  # a broken stream: reconnect (below) or stop
                    message = f"the stream broke: {first_line(error)}"
                finally:
                    if self.record_seconds and not self.live:  # the scorer may still ask for clips of this file
                        self.put(END, block=True)
                        self.ended = True
                        self.stopping.wait()
                    self.write_due_clips(container, final=True)
                    container.close()
                if not self.reconnect or self.stopping.is_set():
                    self.report("ended", message if self.live else "")
                    return
                self.report("lost", f"{message}; reconnecting in {delay:g} s")
                self.stopping.wait(delay)
                delay = min(2 * delay, self.backoff[1])
        finally:
            if not self.ended:
                self.put(END, block=not self.live)

    def open(self):
        import av

        if self.url.startswith("/dev/video"):
            return av.open(self.url, format="v4l2")
        options = {"rw_timeout": "5000000"} if self.live else {}  # 5 s without data: the stream is broken
        if not self.live and not Path(self.url).is_file():
            raise FileNotFoundError(f"{self.url}: no such file")
        return av.open(self.url, options=options, timeout=10.0 if self.live else None)

    def read(self, container) -> None:
        import av

        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 25.0
        convert = frame_converter(self.pixels)
        frames: list[np.ndarray] = []
        count, first, began = 0, None, time.monotonic()
        self.clock = None  # a live connection's (stream time, pts) at its first frame
        for packet in container.demux(stream):
            if self.stopping.is_set():
                return
            now = self.stream_time(count, fps)
            if self.record_seconds and packet.size:
                self.keep_packet(now, packet)
                self.write_due_clips(container)
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                self.corrupt_packets += 1
                continue
            for frame in decoded:
                if self.realtime and not self.live:  # a file played at its native rate
                    self.stopping.wait(max(0.0, began + count / fps - time.monotonic()))
                if first is None:
                    first = self.stream_time(count, fps, frame.time)
                frames.append(convert(frame))
                count += 1
                if len(frames) == self.snippet_frames:
                    self.emit(frames, first, self.stream_time(count, fps, frame.time, 1 / fps))
                    frames, first = [], None
        if frames and not self.live:  # a file's last, partial snippet, padded as offline
            self.emit(frames, first, count / fps)

    def stream_time(self, count: int, fps: float, pts: float | None = None, after: float = 0.0) -> float:
        """A file: ``count / fps``. A live source: the wall clock at its connection's first frame, advanced
        by the frames' timestamps (decoding comes in bursts; timestamps keep the true spacing)."""
        if not self.live:
            return count / fps
        wall = time.monotonic() - self.started_at
        if pts is None:
            return wall + after
        if self.clock is None:
            self.clock = (wall, pts)
        return self.clock[0] + pts - self.clock[1] + after

    def emit(self, frames: list[np.ndarray], start_s: float, end_s: float) -> None:
        stacked = np.stack(frames)
        if len(stacked) < self.snippet_frames:
            stacked = stacked[snippet_frame_indices(len(stacked), self.snippet_frames)[0]]
        snippet = Snippet(self.url, self.produced, stacked, start_s, end_s, time.monotonic())
        self.produced += 1
        self.put(snippet, block=not self.live)

    def put(self, item, block: bool) -> None:
        """Queue an item. A file waits for the scorer (every snippet is scored) until the source is stopped;
        a live source never waits: it drops the oldest waiting snippet instead, and counts it."""
        while block and not self.stopping.is_set():
            try:
                self.snippets.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        while True:
            try:
                self.snippets.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.snippets.get_nowait()
                    self.skipped += 1
                except queue.Empty:
                    pass

    # -- recording ----------------------------------------------------------------------------------------------

    def keep_packet(self, now: float, packet) -> None:
        self.packets.append((now, packet))
        horizon = self.record_seconds + MAX_CLIP_SECONDS + self.post_roll_s
        while self.packets and now - self.packets[0][0] > horizon:
            self.packets.popleft()

    def write_due_clips(self, container, final: bool = False) -> None:
        with self.lock:
            if not self.clip_requests or not self.packets:
                return
            now = self.packets[-1][0]
            due = [r for r in self.clip_requests if final or now >= r.end_s + self.post_roll_s]
            self.clip_requests = [r for r in self.clip_requests if r not in due]
        for request in due:
            try:
                self.write_clip(container, request)
                self.clips_written.put((request, str(request.path)))
            except Exception as error:  # a clip that cannot be written must not stop the stream
                self.clips_written.put((request, f"not written: {first_line(error)}"))

    def write_clip(self, container, request: ClipRequest) -> None:
        """Remux the kept packets from the keyframe before ``start_s - record_seconds`` to ``end_s + post_roll``."""
        import av

        begin = request.start_s - self.record_seconds
        chosen = [(t, p) for t, p in self.packets if t <= request.end_s + self.post_roll_s]
        if not chosen:
            raise ValueError("no packets of that time are kept any more")
        keyframes = [i for i, (t, p) in enumerate(chosen) if p.is_keyframe and t <= max(begin, chosen[0][0])]
        chosen = chosen[keyframes[-1] if keyframes else 0 :]
        request.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = request.path.with_name(f".{request.path.name}.tmp.mp4")
        with av.open(str(tmp), "w") as output:
            out_stream = output.add_stream_from_template(container.streams.video[0])
            for _, packet in chosen:
                packet.stream = out_stream
                output.mux(packet)
        tmp.replace(request.path)
