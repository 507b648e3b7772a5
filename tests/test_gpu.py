"""The GPU paths: extraction under autocast, training on the GPU, checkpoints that move between devices.

Skipped without CUDA. The suite hides GPUs by default (tests/conftest.py); to run these on a GPU machine:
``CUDA_VISIBLE_DEVICES=0 python -m pytest -m gpu``.
"""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dakd.cache import FeatureCache
from dakd.checkpoint import load_checkpoint
from pipelines.cli import app
from pipelines.demo import DemoConfig, generate_dataset
from tests.media import write_indexed_video

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def invoke(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_gpu_features_match_cpu_features(tmp_path):
    """The same video through full-size backbones on the CPU (float32) and the GPU (bf16/fp16 autocast)."""
    (tmp_path / "videos").mkdir()
    write_indexed_video(tmp_path / "videos" / "v.mp4", 40, height=120, width=160)
    backbones = "i3d,s3d,clip"
    for device in ("cpu", "cuda"):
        invoke(
            "extract", tmp_path / "videos", "--cache", tmp_path / device, "--backbones", backbones,
            "--random-weights", backbones, "--device", device, "--no-progress",
        )  # fmt: skip
    for name in backbones.split(","):
        cpu = FeatureCache(tmp_path / "cpu").read(name, "v").astype(np.float32)
        gpu = FeatureCache(tmp_path / "cuda").read(name, "v").astype(np.float32)
        assert cpu.shape == gpu.shape == (1, 3, cpu.shape[-1])
        cosine = (cpu * gpu).sum(-1) / (np.linalg.norm(cpu, axis=-1) * np.linalg.norm(gpu, axis=-1))
        assert cosine.min() > 0.99, (name, cosine)


def test_train_on_gpu_then_score_on_cpu(tmp_path):
    config = DemoConfig(out=str(tmp_path), train_normal=2, train_anomalous=2, test_normal=1, test_anomalous=1)
    data = generate_dataset(config)
    small = ["--set", "optim.steps=12", "--set", "optim.batch_per_class=2", "--no-progress"]
    tiny = "i3d_tiny,clip_tiny"
    (data / "videos" / "annotations.csv").symlink_to(data / "annotations.csv")  # labels travel with the cache
    invoke("extract", data / "videos", "--cache", tmp_path / "cache", "--backbones", tiny, "--random-weights", tiny,
           "--device", "cuda", "--no-progress")  # fmt: skip
    invoke("train-teacher", "--cache", tmp_path / "cache", "--out", tmp_path / "teacher", *small,
           "--set", "device=cuda", "--set", f"backbones=[{tiny}]")  # fmt: skip
    invoke("distill", "--teacher", tmp_path / "teacher" / "teacher.pt", "--backbone", "i3d_tiny",
           "--cache", tmp_path / "cache", "--out", tmp_path / "student", *small, "--set", "device=cuda")  # fmt: skip
    model, _ = load_checkpoint(tmp_path / "student" / "student.pt")
    assert all(p.device.type == "cpu" for p in model.parameters())
    for device in ("cuda", "cpu"):
        invoke("evaluate", "--checkpoint", tmp_path / "student" / "student.pt", "--cache", tmp_path / "cache",
               "--out", tmp_path / f"eval-{device}", "--device", device, "--no-progress")  # fmt: skip
    on_gpu, on_cpu = (json.loads((tmp_path / f"eval-{d}" / "metrics.json").read_text()) for d in ("cuda", "cpu"))
    assert abs(on_gpu["roc_auc"] - on_cpu["roc_auc"]) < 0.02
    video = next((data / "videos").glob("test_*.mp4"))
    invoke("score", video, "--checkpoint", tmp_path / "student" / "student.pt", "--out", tmp_path / "scores",
           "--device", "cpu")  # fmt: skip
    assert (tmp_path / "scores" / f"{video.stem}.csv").exists()
