"""``dakd watch``: live sources scored as their snippets arrive, with alerts, a webhook and alert clips.

Every source decodes in a thread of its own (:class:`extractors.stream.LiveSource`); this loop takes the
snippets that are ready, runs the checkpoint's backbones once for all of them (sources share one model),
scores each with its source's causal scorer (the most recent ``window`` snippets, no future one) and
emits JSON lines: ``score`` per snippet, ``alert_open`` / ``alert_close``, ``clip``, ``source`` status
changes, and a ``summary`` at the end (on SIGINT/SIGTERM too). Latency is from a snippet's last frame
being decoded to its score being written.
"""

from __future__ import annotations

import json
import queue
import signal
import sys
import threading
import time
import urllib.request
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dakd.alerts import AlertPolicy, AlertTracker, resolve_threshold
from dakd.errors import DakdError, first_line
from dakd.plots import plot_scores
from dakd.scoring import CausalScorer
from extractors.engine import FreedMemoryRelease, load_for_scoring, pixels_for, snippet_features
from extractors.stream import END, LiveSource
from pipelines.common import peak_rss_mb
from pipelines.jobs import WatchJob

HISTORY_SECONDS = 600.0  # scores kept per source for the plots of alert clips


class EventWriter:
    """JSON lines to a file (appended, flushed per line) or standard output; thread safe."""

    def __init__(self, path: str | None):
        self.handle = open(path, "a", buffering=1) if path else sys.stdout  # noqa: SIM115 (closed in close())
        self.lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event})
        with self.lock:
            self.handle.write(line + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not sys.stdout:
            self.handle.close()


class Webhook(threading.Thread):
    """POSTs alert events as JSON from a thread of its own: a slow or dead receiver never delays scoring."""

    def __init__(self, url: str, emit: Callable[[dict], None]):
        super().__init__(daemon=True, name="webhook")
        self.url, self.emit, self.pending = url, emit, queue.Queue(maxsize=1000)

    def post(self, event: dict) -> None:
        try:
            self.pending.put_nowait(event)
        except queue.Full:
            self.emit({"event": "webhook", "status": "dropped", "message": "more than 1000 alerts waiting"})

    def run(self) -> None:
        while (event := self.pending.get()) is not None:
            request = urllib.request.Request(
                self.url, json.dumps(event).encode(), {"Content-Type": "application/json"}, method="POST"
            )
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except Exception as error:  # network errors of any kind: report, keep going
                self.emit({"event": "webhook", "status": "failed", "message": first_line(error), "alert": event})

    def close(self) -> None:
        self.pending.put(None)
        self.join(timeout=15)


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")[-60:]


def run(job: WatchJob, emit: Callable[[dict], None] | None = None, report: Callable[[str], None] = print) -> dict:
    """Watch ``job.sources`` until they end, ``job.duration`` passes, or SIGINT/SIGTERM; returns the summary."""
    if not job.sources:
        raise DakdError("no sources given: pass stream URLs, camera devices or video files")
    loaded = load_for_scoring(job.checkpoint, job.device, job.runtime, job.precision)
    checkpoint, model, meta, device, execution = loaded.path, loaded.model, loaded.meta, loaded.device, loaded.execution
    threshold, origin = resolve_threshold(job.threshold, checkpoint, "live_threshold")
    policy = AlertPolicy(threshold, job.release, job.min_duration)
    report(f"watching {len(job.sources)} source(s) with {checkpoint} ({'+'.join(model.names)}, {execution}); "
           f"alert threshold {threshold:.4f}: {origin}")  # fmt: skip
    writer = EventWriter(job.events)
    emit = emit or writer
    webhook = Webhook(job.webhook, emit) if job.webhook else None
    record = Path(job.record) if job.record else None
    sources = [
        LiveSource(
            url,
            meta["snippet_frames"],
            job.realtime,
            job.queue,
            record_seconds=job.pre_roll if record else 0.0,
            post_roll_s=job.post_roll,
            pixels=pixels_for(loaded.backbones.values()),
        )
        for url in job.sources
    ]
    scorers = {s.url: CausalScorer(model, job.window, device) for s in sources}
    trackers = {s.url: AlertTracker(policy) for s in sources}
    history: dict[str, deque] = {s.url: deque() for s in sources}
    alerts: dict[str, int] = defaultdict(int)
    latencies: list[float] = []
    warmup_skipped: dict[str, int] = {}  # skipped before the model's first pass had finished (loading, compiling)
    stop = threading.Event()
    restore = install_signal_handlers(stop)

    def handle_alert(source: LiveSource, event: dict) -> None:
        event = {**event, "source": source.url}
        if event["event"] == "alert_close":
            alerts[source.url] += 1
            if record:
                base = record / f"{slug(source.url)}-at-{int(1000 * event['start_s']):09d}ms"
                source.request_clip(event["start_s"], event["end_s"], base.with_suffix(".mp4"))
                write_alert_plot(base.with_suffix(".png"), history[source.url], event, threshold)
                event["plot"] = str(base.with_suffix(".png"))
        emit(event)
        if webhook:
            webhook.post(event)

    def drain(source: LiveSource) -> None:
        while not source.events.empty():
            emit({"event": "source", "source": source.url, **source.events.get()})
        while not source.clips_written.empty():
            request, written = source.clips_written.get()
            emit({"event": "clip", "source": source.url, "start_s": request.start_s, "end_s": request.end_s,
                  "clip": written})  # fmt: skip

    if webhook:
        webhook.start()
    for source in sources:
        source.start()
    started = time.monotonic()
    release_freed_memory = FreedMemoryRelease()
    active = list(sources)
    try:
        while active and not stop.is_set():
            if job.duration is not None and time.monotonic() - started >= job.duration:
                break
            ready = []
            for source in list(active):
                drain(source)
                try:
                    item = source.snippets.get_nowait()
                except queue.Empty:
                    continue
                if item is END:
                    active.remove(source)
                    drain(source)
                    continue
                ready.append((source, item))
            if not ready:
                time.sleep(0.005)
                continue
            by_shape = defaultdict(list)
            for source, snippet in ready:
                by_shape[snippet.frames.shape].append((source, snippet))
            for group in by_shape.values():  # one forward pass per backbone for every source of this frame size
                frames = np.stack([snippet.frames for _, snippet in group])
                features = snippet_features(loaded.backbones, frames, device, loaded.crops, execution)
                if not warmup_skipped:
                    warmup_skipped.update({s.url: s.skipped for s in sources})
                for index, (source, snippet) in enumerate(group):
                    score = scorers[source.url].push({name: array[0, index] for name, array in features.items()})
                    latency = time.monotonic() - snippet.arrived
                    latencies.append(latency)
                    emit({"event": "score", "source": source.url, "snippet": snippet.index,
                          "start_s": round(snippet.start_s, 3), "end_s": round(snippet.end_s, 3),
                          "score": round(score, 6), "latency_ms": round(1000 * latency, 1)})  # fmt: skip
                    kept = history[source.url]
                    kept.append((snippet.start_s, snippet.end_s, score))
                    while kept and snippet.end_s - kept[0][0] > HISTORY_SECONDS:
                        kept.popleft()
                    for event in trackers[source.url].update(snippet.start_s, snippet.end_s, score):
                        handle_alert(source, event)
            release_freed_memory(len(ready))  # the sources' threads decode the frames this thread frees
    finally:
        for source in sources:  # alerts still open close first: they may ask the sources for clips
            for event in trackers[source.url].finish(history[source.url][-1][1] if history[source.url] else 0.0):
                handle_alert(source, event)
        for source in sources:
            source.stop()
        for source in sources:
            source.join(timeout=30)
            drain(source)
        summary = {
            "event": "summary",
            "seconds": round(time.monotonic() - started, 2),
            "latency_ms_p50": round(1000 * float(np.percentile(latencies, 50)), 1) if latencies else None,
            "latency_ms_p95": round(1000 * float(np.percentile(latencies, 95)), 1) if latencies else None,
            "sources": {
                s.url: {
                    "snippets_scored": s.produced - s.skipped,
                    "snippets_skipped": s.skipped,
                    "snippets_skipped_warming_up": warmup_skipped.get(s.url, s.skipped),
                    "corrupt_packets": s.corrupt_packets,
                    "reconnections": s.reconnects,
                    "alerts": alerts[s.url],
                }
                for s in sources
            },
            "stopped_by": "signal" if stop.is_set() else "duration" if active else "end of sources",
            "peak_rss_mb": peak_rss_mb(),
        }
        emit(summary)
        if webhook:
            webhook.close()
        writer.close()
        restore()
    return summary


def write_alert_plot(path: Path, kept: deque, event: dict, threshold: float) -> None:
    """The scores around an alert, the alert shaded."""
    if not kept:
        return
    starts = np.array([start for start, _, _ in kept])
    scores = np.array([score for _, _, score in kept])
    inside = np.flatnonzero((starts >= event["start_s"]) & (starts < event["end_s"]))
    interval = [(int(inside[0]), int(inside[-1]))] if len(inside) else []
    path.parent.mkdir(parents=True, exist_ok=True)
    title = f"{event['source']}: alert {event['start_s']:.1f}-{event['end_s']:.1f} s, peak {event['peak']:.3f}"
    plot_scores(path, starts, scores, threshold, interval, None, title)


def install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM set ``stop`` (files are closed and the summary printed); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
