"""`dakd watch` on live streams: latency, skipped snippets, memory over a long stream, and how many 30 fps
640x480 streams one machine sustains; and, on UCSD Ped2, how causal (live) scores compare with offline
ones in AUC.

    python benchmarks/watch.py --checkpoint runs/ped2/.../student.pt --minutes 10 --streams 1,2,3
    python benchmarks/watch.py --checkpoint CKPT --ped2-cache runs/ped2/cache-full --streams ""   # AUC only

Streams are generated scenes served over TCP by local FFmpeg processes (PyAV) at their frame rate, as a
camera would; the watcher is `dakd watch` in a process of its own (its peak RSS is its own). A stream
count is sustained when no snippet was skipped. Writes docs/benchmark-watch.md.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SERVER = """
import sys, time
sys.path.insert(0, sys.argv[4])
import av
from extract import scene_frames, FPS
port, seconds = int(sys.argv[1]), float(sys.argv[2])
with av.open(f"tcp://127.0.0.1:{port}?listen=1", "w", format="mpegts") as out:
    stream = out.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
    stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
    began = time.monotonic()
    for index, frame in enumerate(scene_frames(int(seconds * FPS), seed=int(sys.argv[3]))):
        time.sleep(max(0.0, began + index / FPS - time.monotonic()))
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            out.mux(packet)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def watch_streams(checkpoint: str, count: int, seconds: float, work: Path, options: list[str]) -> dict:
    """Serve ``count`` streams for ``seconds`` and watch them all in one `dakd watch` process."""
    ports = [free_port() for _ in range(count)]
    servers = [
        subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), str(seconds + 30), str(i), str(REPO / "benchmarks")],
            stderr=subprocess.DEVNULL,  # a broken pipe when the watcher leaves at --duration is expected
        )
        for i, port in enumerate(ports)
    ]
    time.sleep(2.0)
    events = work / f"events-{count}.jsonl"
    events.unlink(missing_ok=True)
    command = [sys.executable, "-m", "dakd", "watch", *(f"tcp://127.0.0.1:{p}" for p in ports), "--checkpoint",
               checkpoint, "--events", str(events), "--duration", str(seconds), *options]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    for server in servers:
        server.kill()
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    summary = [json.loads(line) for line in events.read_text().splitlines()][-1]
    peak = summary["peak_rss_mb"]
    scored = sum(s["snippets_scored"] for s in summary["sources"].values())
    skipped = sum(s["snippets_skipped"] for s in summary["sources"].values())
    warming_up = sum(s["snippets_skipped_warming_up"] for s in summary["sources"].values())
    return {"streams": count, "seconds": seconds, "scored": scored, "skipped": skipped, "warming_up": warming_up,
            "peak_rss_mb": peak,
            "p50": summary["latency_ms_p50"], "p95": summary["latency_ms_p95"]}  # fmt: skip


def online_vs_offline(checkpoint: str, cache: str, data: Path, window: int) -> tuple[float, float]:
    sys.path.insert(0, str(REPO))
    from dakd.annotations import resolve_labels
    from dakd.cache import FeatureCache
    from dakd.checkpoint import load_checkpoint
    from dakd.metrics import frame_metrics
    from dakd.scoring import causal_snippet_scores, frame_scores
    from dakd.timeline import snippet_scores_to_frames

    model, meta = load_checkpoint(checkpoint)
    features_cache = FeatureCache(cache)
    labels = resolve_labels(
        features_cache.root, features_cache.video_ids(model.names[0]), str(data / "annotations.csv"),
        str(data / "splits" / "weak_test.txt"),
    )  # fmt: skip
    offline, online, truth, kinds = {}, {}, {}, {}
    for video, annotation in labels.items():
        manifest = features_cache.manifest(model.names[0], video)
        features = {name: features_cache.read(name, video) for name in model.names}
        n_frames = manifest["n_frames"]
        offline[video] = frame_scores(model, features, n_frames, manifest["snippet_frames"])
        causal = causal_snippet_scores(model, {k: np.asarray(v[0], np.float32) for k, v in features.items()}, window)
        online[video] = snippet_scores_to_frames(causal, n_frames, manifest["snippet_frames"])
        truth[video], kinds[video] = annotation.frame_labels(n_frames), annotation.label
    return (
        100 * frame_metrics(offline, truth, kinds)["roc_auc"],
        100 * frame_metrics(online, truth, kinds)["roc_auc"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the checkpoint that watches the streams")
    parser.add_argument("--ped2-checkpoint", help="the checkpoint of the Ped2 AUC comparison (default: --checkpoint)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the single-stream run")
    parser.add_argument("--streams", default="1,2,3,4", help="stream counts to try, 1 minute each")
    parser.add_argument(
        "--ped2-cache", help="a Ped2 feature cache of the checkpoint's backbones: online vs offline AUC"
    )
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ucsd-ped2"))
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument(
        "--set", action="append", default=[], help="extra `dakd watch` option, e.g. --set=--runtime=torch"
    )
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "dakd-bench-watch"))
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmark-watch.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from extract import machine

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    options = ["--window", str(args.window), *args.set]
    lines = [
        "# Live scoring benchmark",
        "",
        f"`python benchmarks/watch.py {' '.join(sys.argv[1:])}`: {machine('cpu')}; checkpoint `{args.checkpoint}`.",
    ]
    if args.ped2_cache:
        ped2_checkpoint = args.ped2_checkpoint or args.checkpoint
        offline, online = online_vs_offline(ped2_checkpoint, args.ped2_cache, Path(args.data), args.window)
        lines += [
            "",
            f"UCSD Ped2 weak test split, checkpoint `{ped2_checkpoint}`, frame ROC AUC: "
            f"offline (`dakd evaluate`) {offline:.2f}, live causal scores "
            f"(window {args.window} snippets, no future frame) {online:.2f}: difference {online - offline:+.2f}.",
        ]
        print(lines[-1], flush=True)
    rows = []
    if args.minutes:
        rows.append(watch_streams(args.checkpoint, 1, 60 * args.minutes, work, options))
        print(rows[-1], flush=True)
    for count in [int(c) for c in args.streams.split(",") if c]:
        rows.append(watch_streams(args.checkpoint, count, 60.0, work, options))
        print(rows[-1], flush=True)
    if rows:
        lines += [
            "",
            "Generated 640x480 30 fps H.264 streams served over TCP at their frame rate; latency is from a "
            "snippet's last frame being decoded to its score being written.",
            "",
            "| streams | seconds | snippets scored | skipped | of which while the model loaded | latency p50 ms | "
            "latency p95 ms | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['streams']} | {r['seconds']:.0f} | {r['scored']} | {r['skipped']} | {r['warming_up']} | "
            f"{r['p50']} | {r['p95']} | {r['peak_rss_mb']:.0f} |"
            for r in rows
        ]
        # Sustained: nothing skipped once the model runs (a live stream does not wait while it loads).
        sustained = [r["streams"] for r in rows if r["skipped"] == r["warming_up"]]
        lines += [
            "",
            f"Streams sustained without a snippet skipped after loading: {max(sustained) if sustained else 0}.",
        ]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
