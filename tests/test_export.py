"""`dakd export`: the exported Student (ONNX and OpenVINO, fp32) scores like `dakd score`, and the README's
example scores a video with PyAV, numpy and ONNX Runtime alone."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dakd.cache import FeatureCache
from extractors.backbones import create_backbone
from extractors.engine import decoded_snippets
from extractors.video_io import VideoReader
from pipelines.cli import app
from pipelines.demo import generate_dataset
from pipelines.jobs import DemoConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "score_exported.py"
SMALL = ["--set", "optim.steps=10", "--set", "optim.batch_per_class=2", "--set", "model.width=16", "--no-progress"]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    config = DemoConfig(out=str(root), train_normal=2, train_anomalous=2, test_normal=0, test_anomalous=1, frames=40)
    data = generate_dataset(config)
    cache, annotations = root / "cache", data / "annotations.csv"
    invoke("extract", data / "videos", "--cache", cache, "--backbones", "i3d_tiny", "--random-weights", "i3d_tiny",
           "--crops", "1", "--runtime", "torch", "--no-progress")  # fmt: skip
    common = ["--cache", cache, "--annotations", annotations, *SMALL]
    invoke("train-teacher", *common, "--out", root / "teacher", "--set", "backbones=[i3d_tiny]")
    invoke("distill", *common, "--teacher", root / "teacher" / "teacher.pt", "--backbone", "i3d_tiny",
           "--out", root / "student")  # fmt: skip
    video = data / "videos" / "test_fast_00.mp4"
    invoke("score", video, "--checkpoint", root / "student" / "student.pt", "--out", root / "scores",
           "--runtime", "torch", "--precision", "fp32")  # fmt: skip
    scores = np.array(json.loads((root / "scores" / "test_fast_00.json").read_text())["scores"])
    return root, video, scores


def dakd_clips(video: Path) -> np.ndarray:
    """The video's clips as dakd preprocesses them (centre crop): ``[snippets, 3, 16, 64, 64]``."""
    model = create_backbone("i3d_tiny", weights="random")
    with VideoReader(video) as reader:
        snippets = np.concatenate(list(decoded_snippets(reader, 16)))
    return model.preprocess(torch.from_numpy(snippets), 1)[0].numpy()


@pytest.mark.parametrize("format", ["onnx", "openvino"])
def test_exported_student_scores_like_dakd_score(student, format):
    root, video, scores = student
    out = root / f"export-{format}"
    invoke("export", "--checkpoint", root / "student" / "student.pt", "--format", format, "--out", out)
    spec = json.loads((out / "export.json").read_text())
    assert spec["input"]["shape"] == ["snippets", 3, 16, 64, 64] and spec["crops"] == "centre"
    clips = dakd_clips(video)
    for count in (len(clips), 2):  # any number of snippets
        if format == "onnx":
            import onnxruntime

            exported = onnxruntime.InferenceSession(str(out / "model.onnx")).run(None, {"clips": clips[:count]})[0]
        else:
            import openvino

            exported = openvino.Core().compile_model(str(out / "model.xml"), "CPU")(clips[:count])[0]
        if count == len(clips):  # every frame takes its snippet's score
            np.testing.assert_allclose(np.repeat(exported, 16)[: len(scores)], scores, atol=1e-3)
        assert exported.shape == (count,)


def test_the_readme_example_scores_without_dakd(student, tmp_path):
    root, video, scores = student
    out = root / "export-example"
    invoke("export", "--checkpoint", root / "student" / "student.pt", "--format", "onnx", "--out", out)
    result = subprocess.run(
        [sys.executable, "-I", str(EXAMPLE), str(out), str(video)], capture_output=True, text=True, cwd=tmp_path
    )  # -I: an isolated interpreter, which cannot import dakd from the repository
    assert result.returncode == 0, result.stderr
    printed = np.array([float(line) for line in result.stdout.split()])
    assert printed.shape == scores.shape
    assert np.abs(printed - scores).max() < 0.05  # FFmpeg's resize stands in for dakd's


def test_int8_needs_dakd_quantize_then_gives_the_features_of_fp32(student, tmp_path, monkeypatch):
    monkeypatch.setattr("dakd.paths.compiled_models_dir", lambda: tmp_path / "compiled")
    root, video, _ = student
    checkpoint = root / "student" / "student.pt"
    refused = CliRunner().invoke(app, [str(a) for a in ["score", video, "--checkpoint", checkpoint, "--precision",
                                                          "int8", "--out", tmp_path / "refused"]])  # fmt: skip
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    lines = refused.output.splitlines()
    assert any(line.startswith("error: no INT8 model") and "dakd quantize" in line for line in lines)
    quantized = invoke("quantize", video.parent, "--checkpoint", checkpoint, "--clips", 12)
    assert "INT8 model" in quantized.output
    (record_file,) = (tmp_path / "compiled").glob("*-int8.json")
    record = json.loads(record_file.read_text())
    assert record["checkpoint"] == str(checkpoint) and 0 < record["clips"] <= 12 and str(video) in record["videos"]
    invoke("score", video, "--checkpoint", checkpoint, "--precision", "int8", "--out", tmp_path / "int8")
    result = json.loads((tmp_path / "int8" / "test_fast_00.json").read_text())
    assert (result["runtime"], result["precision"]) == ("openvino", "int8")
    # The same INT8 model serves extraction (same backbone, weights and input size): its features against PyTorch fp32.
    invoke("extract", video, "--cache", tmp_path / "cache", "--backbones", "i3d_tiny", "--random-weights", "i3d_tiny",
           "--crops", "1", "--precision", "int8", "--no-progress")  # fmt: skip
    int8 = FeatureCache(tmp_path / "cache").read("i3d_tiny", "test_fast_00")[0].astype(np.float32)
    fp32 = FeatureCache(root / "cache").read("i3d_tiny", "test_fast_00")[0].astype(np.float32)
    cosine = (int8 * fp32).sum(-1) / (np.linalg.norm(int8, axis=-1) * np.linalg.norm(fp32, axis=-1))
    assert not np.array_equal(int8, fp32)  # the quantized model ran
    assert cosine.min() > 0.98, cosine
