"""`dakd watch` and `dakd calibrate`: online scores equal the causal computation offline, alerts fire on
the anomaly (and reach a webhook, with a clip), a stream served by a local FFmpeg process (PyAV) is
reconnected after it dies, live queues stay bounded, SIGINT ends with a summary."""

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dakd.checkpoint import load_checkpoint
from dakd.scoring import causal_snippet_scores
from extractors.backbones import create_backbone
from extractors.engine import extract_video, load_for_scoring, score_video
from extractors.stream import END, LiveSource, Snippet
from extractors.video_io import VideoReader, write_video
from pipelines.cli import app
from pipelines.demo import make_video

FPS = 10.0
FRAMES = 96
SERVER = """
import sys, time
import av, numpy as np
port, frames, fps = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
with av.open(f"tcp://127.0.0.1:{port}?listen=1", "w", format="mpegts") as out:
    stream = out.add_stream("libx264", rate=int(fps))
    stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
    stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
    rng = np.random.default_rng(0)
    for index in range(frames):
        frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            out.mux(packet)
        time.sleep(1 / fps)
    for packet in stream.encode():
        out.mux(packet)
"""


def invoke(*args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Walkers on a path (normal) and a fast cyclist (anomalous); a Teacher on motion statistics that learnt
    the difference (flow is parameter-free: real features without weights to download)."""
    root = tmp_path_factory.mktemp("watch")
    rng = np.random.default_rng(3)
    videos, intervals = root / "videos", {}
    videos.mkdir()
    rows = ["video,label,anomalous_frames"]
    for index in range(8):
        event = "fast" if index % 2 else None
        frames, interval = make_video(rng, FRAMES, FPS, event)
        name = f"{'fast' if event else 'normal'}_{index}"
        write_video(videos / f"{name}.mp4", frames, fps=FPS)
        intervals[name] = interval
        rows.append(f"{name},{'anomalous' if event else 'normal'},{'-'.join(map(str, interval[0])) if event else ''}")
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    cache = root / "cache"
    invoke("extract", videos, "--cache", cache, "--backbones", "flow", "--crops", "full", "--no-progress")
    invoke("train-teacher", "--cache", cache, "--annotations", root / "annotations.csv", "--out", root / "model",
           "--set", "optim.steps=150", "--set", "optim.lr=1e-3", "--set", "optim.batch_per_class=4",
           "--set", "model.width=32", "--no-progress")  # fmt: skip
    return root, videos, intervals, root / "model" / "teacher.pt"


def events_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_online_scores_equal_the_causal_offline_computation(scene):
    root, videos, _, checkpoint = scene
    out = root / "online.jsonl"
    invoke("watch", videos / "fast_1.mp4", "--checkpoint", checkpoint, "--events", out, "--window", 4)
    events = events_of(out)
    online = np.array([e["score"] for e in events if e["event"] == "score"])
    model, _ = load_checkpoint(checkpoint)
    with VideoReader(videos / "fast_1.mp4") as reader:
        features = extract_video(reader, {"flow": create_backbone("flow")}, "cpu", crops="full")
    offline = causal_snippet_scores(model, {"flow": features["flow"][0]}, window=4)
    assert len(online) == FRAMES // 16
    np.testing.assert_allclose(online, offline, atol=1e-5)
    summary = events[-1]
    assert summary["event"] == "summary" and summary["stopped_by"] == "end of sources"
    assert summary["sources"][str(videos / "fast_1.mp4")]["snippets_skipped"] == 0  # a file waits for the scorer


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        Receiver.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_calibration_gives_its_false_alarm_rate_and_score_uses_it(scene, tmp_path):
    root, videos, _, checkpoint = scene
    normals = [str(videos / f"normal_{i}.mp4") for i in (0, 2, 4, 6)]
    result = invoke("calibrate", *normals, "--checkpoint", checkpoint, "--false-alarm-rate", "0.05")
    calibration = json.loads(checkpoint.with_name("teacher.calibration.json").read_text())
    assert "stored in" in result.output and calibration["false_alarm_rate"] == 0.05 and len(calibration["videos"]) == 4
    result = invoke("score", normals[0], "--checkpoint", checkpoint, "--out", tmp_path)
    assert f"threshold {calibration['threshold']:.4f}: calibrated for a 5 % false-alarm rate" in result.output
    loaded = load_for_scoring(checkpoint, "cpu", "torch", "fp32")
    scores = []
    for video in normals:
        with VideoReader(video) as reader:
            scores.append(score_video(reader, loaded))
    scores = np.concatenate(scores)
    assert np.mean(scores >= calibration["threshold"]) <= 0.05
    assert np.mean(scores >= np.nextafter(np.float32(calibration["threshold"]), 0)) > 0.05  # the lowest one
    checkpoint.with_name("teacher.calibration.json").unlink()


def test_alert_fires_on_the_anomaly_reaches_the_webhook_and_is_recorded(scene):
    root, videos, intervals, checkpoint = scene
    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/alerts"
    out, clips = root / "alerts.jsonl", root / "clips"
    invoke("watch", videos / "fast_3.mp4", videos / "normal_0.mp4", "--checkpoint", checkpoint, "--events", out,
           "--threshold", "0.5", "--webhook", url, "--record", clips, "--min-duration", "0.5", "--pre-roll", "1",
           "--post-roll", "1")  # fmt: skip
    server.shutdown()
    events = events_of(out)
    closed = [e for e in events if e["event"] == "alert_close"]
    assert closed and all(e["source"].endswith("fast_3.mp4") for e in closed)  # none on the normal video
    start, end = intervals["fast_3"][0]  # 1-based frames of the cyclist
    assert any(e["start_s"] < end / FPS and e["end_s"] > (start - 1) / FPS for e in closed)
    assert [e["event"] for e in Receiver.received].count("alert_close") == len(closed)
    clip_events = [e for e in events if e["event"] == "clip"]
    assert clip_events and Path(clip_events[0]["clip"]).exists() and Path(closed[0]["plot"]).exists()
    with VideoReader(clip_events[0]["clip"]) as reader:
        assert sum(len(chunk) for chunk in reader.chunks()) >= 16


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(port: int, frames: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(frames), "20"])


def test_a_killed_stream_is_reconnected(scene, tmp_path):
    root, _, _, checkpoint = scene
    port = free_port()
    first = serve(port, 80)
    out = tmp_path / "stream.jsonl"
    watcher = threading.Thread(
        target=invoke,
        args=("watch", f"tcp://127.0.0.1:{port}", "--checkpoint", checkpoint, "--events", out, "--duration", 14),
    )
    time.sleep(1.0)
    watcher.start()
    time.sleep(2.5)
    first.kill()  # the camera dies mid-stream
    first.wait()
    time.sleep(1.0)
    second = serve(port, 400)  # and comes back
    watcher.join(timeout=60)
    second.kill()
    events = events_of(out)
    statuses = [e["status"] for e in events if e["event"] == "source"]
    assert "connected" in statuses and "lost" in statuses and "reconnected" in statuses
    reconnected_at = next(i for i, e in enumerate(events) if e.get("status") == "reconnected")
    assert any(e["event"] == "score" for e in events[reconnected_at:])  # scoring goes on after it
    summary = events[-1]
    assert summary["sources"][f"tcp://127.0.0.1:{port}"]["reconnections"] >= 1
    assert summary["latency_ms_p50"] is not None


def test_a_live_source_drops_whole_snippets_when_the_scorer_falls_behind():
    source = LiveSource("tcp://127.0.0.1:9", queue_size=2)  # never started: only its queue is used
    for index in range(10):
        source.put(Snippet(source.url, index, np.zeros((16, 4, 4, 3), np.uint8), index, index + 1, 0.0), block=False)
    assert source.snippets.qsize() == 2 and source.skipped == 8
    assert [source.snippets.get().index for _ in range(2)] == [8, 9]  # the newest are kept
    source.put(END, block=False)
    assert source.snippets.get() is END


def test_sigint_closes_files_and_prints_a_summary(scene, tmp_path):
    root, _, _, checkpoint = scene
    port = free_port()
    server = serve(port, 600)
    out = tmp_path / "events.jsonl"
    time.sleep(1.0)
    command = [sys.executable, "-m", "dakd", "watch", f"tcp://127.0.0.1:{port}", "--checkpoint", str(checkpoint),
               "--events", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and '"score"' in out.read_text()):
        time.sleep(0.5)
    watcher.send_signal(signal.SIGINT)
    _, stderr = watcher.communicate(timeout=60)
    server.kill()
    assert watcher.returncode == 0, stderr
    assert "stopped by signal" in stderr and "snippets scored" in stderr
    assert events_of(out)[-1]["event"] == "summary"
