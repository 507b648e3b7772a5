"""Synthetic videos -> extract -> train-teacher -> distill -> evaluate -> score, through the CLI."""

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dakd.checkpoint import load_checkpoint
from dakd.cli import app
from extractors.video_io import write_video

SMALL = ["--set", "optim.steps=12", "--set", "optim.batch_per_class=2", "--set", "model.width=16", "--no-progress"]
VIDEOS = {
    "n1": (40, None),
    "n2": (50, None),
    "n3": (33, None),
    "a1": (48, (17, 40)),
    "a2": (56, (9, 30)),
    "a3": (45, (30, 45)),
}


def scene(n_frames, anomaly, seed):
    rng = np.random.default_rng(seed)
    for i in range(n_frames):
        frame = np.full((72, 96, 3), 60, np.uint8)
        x = (4 * i) % 80
        frame[30:40, x : x + 10] = 200  # a walker
        if anomaly and anomaly[0] <= i + 1 <= anomaly[1]:
            frame[10:60, 20:70] = rng.integers(0, 255, 3)  # something large appears
        yield frame


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    (root / "videos").mkdir()
    with open(root / "annotations.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "label", "anomalous_frames", "n_frames", "fps"])
        for seed, (name, (n, anomaly)) in enumerate(VIDEOS.items()):
            write_video(root / "videos" / f"{name}.mp4", scene(n, anomaly, seed), fps=10)
            label = "anomalous" if anomaly else "normal"
            writer.writerow([name, label, f"{anomaly[0]}-{anomaly[1]}" if anomaly else "", n, 10])
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "extract",
            str(root / "videos"),
            "--cache",
            str(root / "cache"),
            "--backbones",
            "i3d_tiny,clip_tiny",
            "--random-weights",
            "i3d_tiny,clip_tiny",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    return root


def train(root, out, seed=0):
    result = CliRunner().invoke(
        app,
        [
            "train-teacher",
            "--cache",
            str(root / "cache"),
            "--annotations",
            str(root / "annotations.csv"),
            "--out",
            str(out),
            *SMALL,
            "--set",
            f"seed={seed}",
        ],
    )
    assert result.exit_code == 0, result.output
    return result


def test_pipeline_end_to_end(workspace):
    root = workspace
    result = train(root, root / "runs" / "teacher")
    assert "teacher (clip_tiny+i3d_tiny)" in result.output and "RANDOM weights" in result.output
    teacher = root / "runs" / "teacher" / "teacher.pt"
    result = CliRunner().invoke(
        app,
        [
            "distill",
            "--teacher",
            str(teacher),
            "--backbone",
            "i3d_tiny",
            "--cache",
            str(root / "cache"),
            "--annotations",
            str(root / "annotations.csv"),
            "--out",
            str(root / "runs" / "student"),
            *SMALL,
            "--set",
            "distill.tau=0.2",
        ],
    )
    assert result.exit_code == 0, result.output
    student = root / "runs" / "student" / "student.pt"
    model, meta = load_checkpoint(student)
    assert meta["kind"] == "student" and model.names == ("i3d_tiny",)
    assert meta["train_config"]["distill"]["tau"] == 0.2 and (root / "runs" / "student" / "config.yaml").exists()

    for checkpoint in (teacher, student):
        result = CliRunner().invoke(
            app,
            [
                "evaluate",
                "--checkpoint",
                str(checkpoint),
                "--cache",
                str(root / "cache"),
                "--annotations",
                str(root / "annotations.csv"),
                "--out",
                str(root / "eval" / checkpoint.stem),
                "--no-progress",
            ],
        )
        assert result.exit_code == 0, result.output
        metrics = json.loads((root / "eval" / checkpoint.stem / "metrics.json").read_text())
        assert metrics["frames"] == sum(n for n, _ in VIDEOS.values())
        assert 0 <= metrics["roc_auc"] <= 1 and 0 <= metrics["false_alarm_rate"] <= 1
        assert set(metrics["per_video_auc"]) == {"a1", "a2", "a3"}
        assert (root / "eval" / checkpoint.stem / "roc.png").stat().st_size > 1000

    result = CliRunner().invoke(
        app,
        [
            "score",
            str(root / "videos" / "a1.mp4"),
            "--checkpoint",
            str(student),
            "--out",
            str(root / "scores"),
            "--annotations",
            str(root / "annotations.csv"),
            "--overlay",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((root / "scores" / "a1.csv").read_text().splitlines()))
    assert len(rows) == 48 and [int(r["frame"]) for r in rows] == list(range(1, 49))
    scores = np.array([float(r["score"]) for r in rows])
    assert ((scores >= 0) & (scores <= 1)).all()
    record = json.loads((root / "scores" / "a1.json").read_text())
    assert len(record["scores"]) == 48 and record["checkpoint_kind"] == "student"
    assert (root / "scores" / "a1.png").exists() and (root / "scores" / "a1_overlay.mp4").stat().st_size > 0
    # The scores of `score` (decode + extract + model) equal those of `evaluate` on the cache.
    cached = np.load(root / "eval" / "student" / "frame_scores.npz")["a1"]
    np.testing.assert_allclose(scores, cached, atol=2e-3)


def test_training_is_repeatable_with_a_seed(workspace):
    root = workspace
    states = []
    for run in ("r1", "r2", "r3"):
        train(root, root / run, seed=0 if run != "r3" else 1)
        states.append(torch.load(root / run / "teacher.pt", weights_only=True)["state_dict"])
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_teacher_is_frozen_during_distillation(workspace, monkeypatch):
    import pipelines.distill as distill_module

    root = workspace
    train(root, root / "frozen-teacher")
    teacher_path = root / "frozen-teacher" / "teacher.pt"
    before = torch.load(teacher_path, weights_only=True)["state_dict"]
    seen = []
    original = distill_module.distillation_step

    def watching(student, teacher, projector, config):
        step = original(student, teacher, projector, config)

        def wrapped(batch):
            seen.append((teacher.training, any(p.requires_grad for p in teacher.parameters())))
            losses = step(batch)
            return losses

        wrapped.teacher = teacher
        watching.teacher = teacher
        return wrapped

    monkeypatch.setattr(distill_module, "distillation_step", watching)
    result = CliRunner().invoke(
        app,
        [
            "distill",
            "--teacher",
            str(teacher_path),
            "--backbone",
            "clip_tiny",
            "--cache",
            str(root / "cache"),
            "--annotations",
            str(root / "annotations.csv"),
            "--out",
            str(root / "frozen-student"),
            *SMALL,
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen and all(mode == (False, False) for mode in seen)  # eval mode, no gradients, at every step
    after = watching.teacher.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key


def test_mismatched_checkpoint_and_bad_options_are_refused(workspace, tmp_path):
    root = workspace
    train(root, root / "t")
    runner = CliRunner()
    other = tmp_path / "other-cache"
    result = runner.invoke(
        app,
        [
            "extract",
            str(root / "videos" / "n1.mp4"),
            "--cache",
            str(other),
            "--backbones",
            "clip_tiny",
            "--random-weights",
            "clip_tiny",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(root / "t" / "teacher.pt"),
            "--cache",
            str(other),
            "--annotations",
            str(root / "annotations.csv"),
        ],
    )
    assert (
        result.exit_code == 1
        and "does not match the cache" in result.output
        and "no 'i3d_tiny' features" in result.output
    )
    result = runner.invoke(app, ["train-teacher", "--cache", str(root / "cache"), "--set", "optim.lr=fast"])
    assert result.exit_code == 1 and "optim.lr: expected float" in result.output
    result = runner.invoke(app, ["train-teacher", "--cache", str(root / "cache"), "--set", "optim.learning_rate=1"])
    assert result.exit_code == 1 and "unknown key" in result.output
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--cache", str(root / "cache")])
    assert result.exit_code == 1 and "no such checkpoint" in result.output


def test_bare_commands_chain_in_one_folder(workspace, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(workspace / "videos", "videos")
    shutil.copy(workspace / "annotations.csv", "videos/annotations.csv")
    runner = CliRunner()
    result = runner.invoke(
        app, ["extract", "videos", "--backbones", "i3d_tiny,clip_tiny", "--random-weights", "i3d_tiny,clip_tiny"]
    )
    assert result.exit_code == 0 and "labels: 6 videos" in result.output, result.output
    result = runner.invoke(app, ["score", "videos/a1.mp4"])
    assert result.exit_code == 1 and "no checkpoint given" in result.output
    assert runner.invoke(app, ["train-teacher", *SMALL]).exit_code == 0
    result = runner.invoke(app, ["distill", "--backbone", "i3d_tiny", *SMALL])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["score", "videos/a1.mp4"])
    assert result.exit_code == 0, result.output
    assert "using the newest checkpoint: runs/student/student.pt" in result.output
    assert (tmp_path / "scores" / "a1.csv").exists()
