"""`dakd extract` end to end on synthetic videos, with the tiny test backbones."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dakd.cache import FeatureCache
from pipelines.cli import app
from pipelines.extract import parse_shard
from tests.media import write_audio_only, write_indexed_video, write_truncated

TINY = ["--backbones", "i3d_tiny,clip_tiny", "--random-weights", "i3d_tiny,clip_tiny", "--no-progress"]
LENGTHS = {"a": 40, "b": 16, "c": 5, "d": 33}


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name, n in LENGTHS.items():
        write_indexed_video(folder / f"{name}.mp4", n, height=72, width=96)
    return folder


def test_the_first_batches_grow_so_the_model_starts_early():
    from extractors.backbones import create_backbone
    from extractors.engine import model_inputs

    groups = [np.full((4, 16, 24, 32, 3), i, np.uint8) for i in range(10)]  # 40 snippets, 4 per decoded group
    batches = list(model_inputs(groups, {"flow": create_backbone("flow")}, torch.device("cpu"), 16, "full", 16))
    assert [n for _, n in batches] == [4, 8, 16, 12]
    levels = torch.cat([inputs["flow"][0, :, 0, 0, 0] for inputs, _ in batches])  # every snippet once, in order
    assert levels.tolist() == [i for i in range(10) for _ in range(4)]


def extract(*args):
    return CliRunner().invoke(app, ["extract", *map(str, args), *TINY])


def test_extract_writes_features_and_manifests(videos, tmp_path):
    result = extract(videos, "--cache", tmp_path / "c", "--crops", "5")
    assert result.exit_code == 0, result.output
    assert "RANDOM weights" in result.output
    cache = FeatureCache(tmp_path / "c")
    assert cache.backbones() == ["clip_tiny", "i3d_tiny"]
    for name, n in LENGTHS.items():
        expected_snippets = -(-n // 16)
        i3d = cache.read("i3d_tiny", name)
        assert i3d.shape == (5, expected_snippets, 64) and i3d.dtype == np.float16
        assert cache.read("clip_tiny", name).shape == (5, expected_snippets, 32)
        manifest = cache.manifest("i3d_tiny", name)
        assert manifest["n_frames"] == n and manifest["n_snippets"] == expected_snippets
        assert manifest["fps"] == pytest.approx(30) and manifest["random_weights"]
        assert manifest["preprocessing"]["crop_size"] == 64 and len(manifest["weights_sha256"]) == 64
        assert manifest["source_path"] == str((videos / f"{name}.mp4").resolve())
    assert not (tmp_path / "c" / "failures.jsonl").exists()


def test_features_follow_the_video_content(tmp_path):
    # A video whose second half repeats its first half has equal features for the matching snippets.
    folder = tmp_path / "v"
    folder.mkdir()
    from extractors.video_io import write_video
    from tests.media import indexed_frame

    frames = [indexed_frame(i % 32, 72, 96) for i in range(64)]
    write_video(folder / "loop.mkv", frames, fps=30, pix_fmt="yuv444p", options={"qp": "0"})  # lossless
    assert extract(folder, "--cache", tmp_path / "c", "--dtype", "float32").exit_code == 0
    features = FeatureCache(tmp_path / "c").read("i3d_tiny", "loop")[0]
    scale = np.abs(features).max()  # random tiny networks give small activations; compare relatively
    np.testing.assert_allclose(features[0], features[2], atol=1e-4 * scale)
    assert np.abs(features[0] - features[1]).max() > 1e-2 * scale


def test_rerun_skips_finished_videos_and_redoes_changed_ones(videos, tmp_path):
    assert extract(videos, "--cache", tmp_path / "c").exit_code == 0
    result = extract(videos, "--cache", tmp_path / "c")
    assert result.exit_code == 0 and "extracted 0 video(s)" in result.output and "skipped 4" in result.output
    write_indexed_video(videos / "b.mp4", 48, height=72, width=96)
    result = extract(videos, "--cache", tmp_path / "c")
    assert "extracted 1 video(s)" in result.output
    assert FeatureCache(tmp_path / "c").read("i3d_tiny", "b").shape[1] == 3


def test_conflicting_config_is_refused(videos, tmp_path):
    assert extract(videos, "--cache", tmp_path / "c").exit_code == 0
    result = extract(videos, "--cache", tmp_path / "c", "--crops", "10")
    assert result.exit_code == 1
    assert "refusing to mix" in result.output and "Traceback" not in result.output
    result = extract(videos, "--cache", tmp_path / "c", "--image-frames", "3")
    assert result.exit_code == 1 and "preprocessing.frames" in result.output


def test_bad_inputs_are_recorded_and_never_stop_the_batch(videos, tmp_path):
    (videos / "zero.mp4").write_bytes(b"")
    (videos / "text.mp4").write_text("this is not a video\n" * 20)
    write_audio_only(videos / "audio.mp4")
    write_truncated(videos / "cut.mp4", 96, keep=0.5)
    (videos / "link.mp4").symlink_to(tmp_path / "gone.mp4")
    result = extract(videos, tmp_path / "missing.mp4", "--cache", tmp_path / "c")
    assert result.exit_code == 1
    failures = {os.path.basename(f["path"]): f["error_type"] for f in FeatureCache(tmp_path / "c").failures()}
    assert failures == {
        "zero.mp4": "empty_file",
        "text.mp4": "not_a_video",
        "audio.mp4": "no_video_stream",
        "cut.mp4": "truncated",
        "link.mp4": "missing",
        "missing.mp4": "missing",
    }
    for name in failures:
        assert sum(name in line for line in result.output.splitlines()) == 1  # one printed line each
    cache = FeatureCache(tmp_path / "c")
    assert set(cache.video_ids("i3d_tiny")) == {*LENGTHS, "cut"}  # truncated: its decodable part
    cut = cache.manifest("i3d_tiny", "cut")
    assert cut["truncated"] and 10 < cut["n_frames"] < 96
    assert cache.read("i3d_tiny", "cut").shape[1] == -(-cut["n_frames"] // 16)


def test_same_file_name_in_two_folders(tmp_path):
    for sub in ("normal", "anomalous"):
        (tmp_path / "v" / sub).mkdir(parents=True)
        write_indexed_video(tmp_path / "v" / sub / "x.mp4", 16 if sub == "normal" else 40)
    assert extract(tmp_path / "v", "--cache", tmp_path / "c").exit_code == 0
    cache = FeatureCache(tmp_path / "c")
    assert cache.video_ids("i3d_tiny") == ["anomalous/x", "normal/x"]
    assert cache.manifest("i3d_tiny", "normal/x")["n_frames"] == 16
    assert cache.manifest("i3d_tiny", "anomalous/x")["n_frames"] == 40


def test_user_errors_are_one_line(videos, tmp_path):
    cases = [
        (["--crops", "3"], "--crops 3"),
        (["--shard", "2/2"], "need 0 <= i < n"),
        (["--weights", "s3d"], "expected NAME=PATH"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "CUDA is not available"))
    for args, message in cases:
        result = extract(videos, "--cache", tmp_path / "c", *args)
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["extract", str(videos), "--cache", str(tmp_path / "c"), "--backbones", "s3d"])
    assert result.exit_code == 1 and "no weights for backbone 's3d'" in result.output


def test_parse_shard_reads_torchrun_environment(monkeypatch):
    assert parse_shard("1/3") == (1, 3)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert parse_shard("") == (2, 4)


def test_two_processes_on_one_cache_equal_a_single_run(videos, tmp_path):
    for i in range(4):
        write_indexed_video(videos / f"extra{i}.mp4", 20 + 7 * i, height=72, width=96)
    command = [
        sys.executable,
        "-m",
        "dakd",
        "extract",
        str(videos),
        "--cache",
        str(tmp_path / "shared"),
        *TINY,
    ]
    processes = [
        subprocess.Popen(
            command,
            env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    assert "shard 0/2" in outputs[0] and "shard 1/2" in outputs[1]
    assert extract(videos, "--cache", tmp_path / "single").exit_code == 0
    shared, single = FeatureCache(tmp_path / "shared"), FeatureCache(tmp_path / "single")
    for backbone in ("i3d_tiny", "clip_tiny"):
        assert shared.video_ids(backbone) == single.video_ids(backbone) and len(single.video_ids(backbone)) == 8
        for video in single.video_ids(backbone):
            np.testing.assert_allclose(shared.read(backbone, video), single.read(backbone, video), atol=2e-3)
        config = json.loads((tmp_path / "shared" / backbone / "backbone.json").read_text())
        assert config["weights"]["random"]


def test_prefetcher_keeps_order_and_reraises_errors():
    from extractors.engine import Prefetcher

    assert list(Prefetcher(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise RuntimeError("decode failed")

    items = []
    with pytest.raises(RuntimeError, match="decode failed"):
        for item in Prefetcher(failing()):
            items.append(item)
    assert items == [1]
    prefetcher = Prefetcher(iter(range(1000)), depth=2)
    for item in prefetcher:  # the consumer stops early: the thread must end too
        if item == 3:
            break
    prefetcher.join(timeout=5)
    assert not prefetcher.is_alive()


def test_freed_memory_is_released_every_so_many_snippets(monkeypatch):
    from extractors.engine import FreedMemoryRelease

    trims = []
    monkeypatch.setattr(FreedMemoryRelease, "trim", staticmethod(lambda: trims.append(1)))
    release = FreedMemoryRelease(every=32)
    for _ in range(5):
        release(16)  # 80 snippets: a trim at 32 and at 64
    assert len(trims) == 2
