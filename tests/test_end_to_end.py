"""Synthetic videos -> extract -> train-teacher -> distill -> evaluate -> score, through the CLI."""

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from dakd.annotations import read_annotations
from dakd.checkpoint import load_checkpoint
from dakd.timeline import true_intervals
from pipelines.cli import app
from pipelines.demo import DemoConfig, generate_dataset

SMALL = ["--set", "optim.steps=12", "--set", "optim.batch_per_class=2", "--set", "model.width=16", "--no-progress"]
TEACHER = ["--set", "backbones=[clip_tiny,i3d_tiny]"]  # random-weight views are used only when named
FRAMES = 40
ANOMALOUS = "test_fast_00"  # the test video that is scored


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The demo's synthetic dataset (6 videos), extracted with the tiny test backbones."""
    root = tmp_path_factory.mktemp("e2e")
    config = DemoConfig(
        out=str(root), train_normal=2, train_anomalous=2, test_normal=1, test_anomalous=1, frames=FRAMES
    )
    data = generate_dataset(config)
    (root / "videos").symlink_to(data / "videos")
    (root / "annotations.csv").symlink_to(data / "annotations.csv")
    result = CliRunner().invoke(
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


def train(root, out, seed=0, *overrides):
    options = [option for key in overrides for option in ("--set", key)]
    command = ["--cache", str(root / "cache"), "--annotations", str(root / "annotations.csv"), "--out", str(out)]
    result = CliRunner().invoke(app, ["train-teacher", *command, *SMALL, *TEACHER, "--set", f"seed={seed}", *options])
    assert result.exit_code == 0, result.output
    return result


def distil(root, teacher, out, *overrides, backbone="i3d_tiny"):
    options = [option for key in overrides for option in ("--set", key)]
    command = ["--cache", str(root / "cache"), "--annotations", str(root / "annotations.csv"), "--out", str(out)]
    result = CliRunner().invoke(
        app, ["distill", "--teacher", str(teacher), "--backbone", backbone, *command, *SMALL, *options]
    )
    assert result.exit_code == 0, result.output
    return result


def test_held_out_selection_for_both_commands(workspace):
    root = workspace
    held = ["validation_fraction=0.5", "validate_every=4"]
    result = train(root, root / "held-teacher", 0, *held)
    assert "selected: held-out video AUC" in result.output
    result = distil(root, root / "held-teacher" / "teacher.pt", root / "held-student", *held)
    assert "selected: held-out video AUC" in result.output
    for run in ("held-teacher/teacher.pt", "held-student/student.pt"):
        extra = load_checkpoint(root / run)[1]["extra"]
        # 3 normal + 3 anomalous labelled videos: round(0.5 * 3) = 2 of each held out
        assert extra["train_videos"] == 2 and extra["selected_step"] in (4, 8, 12)
        assert extra["selection"] == "held-out video AUC" and extra["validation_auc"] is not None


def test_topk_loss_tam_off_and_segment_mapping_from_the_command_line(workspace):
    root = workspace
    train(root, root / "topk", 0, "loss.mil=topk", "model.tam=none")
    history = json.loads((root / "topk" / "history.json").read_text())
    assert all("topk_bce" in step and "ranking" not in step for step in history)
    model, meta = load_checkpoint(root / "topk" / "teacher.pt")
    assert len(model.layers) == 0 and not any(k.startswith("layers.") for k in model.state_dict())
    assert meta["model_config"]["tam"] == "none"
    for mapping in ("snippets", "segments"):
        out = root / "topk" / mapping
        command = ["evaluate", "--checkpoint", str(root / "topk" / "teacher.pt"), "--cache", str(root / "cache")]
        command += ["--annotations", str(root / "annotations.csv"), "--mapping", mapping, "--out", str(out)]
        result = CliRunner().invoke(app, [*command, "--no-progress"])
        assert result.exit_code == 0, result.output
        assert json.loads((out / "metrics.json").read_text())["mapping"] == mapping


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
        assert metrics["frames"] == 6 * FRAMES and metrics["videos"] == 6
        # The metrics are those of the frame scores it saved against the annotations' frames.
        saved = np.load(root / "eval" / checkpoint.stem / "frame_scores.npz")
        truth = {v: a.frame_labels(FRAMES) for v, a in read_annotations(root / "annotations.csv").items()}
        videos = sorted(truth)
        frames = np.concatenate([saved[v] for v in videos])
        assert metrics["roc_auc"] == pytest.approx(roc_auc_score(np.concatenate([truth[v] for v in videos]), frames))
        normal = np.concatenate([saved[v] for v in videos if not truth[v].any()])
        assert metrics["false_alarm_rate"] == pytest.approx(np.mean(normal >= 0.5))
        partly = {v for v in videos if 0 < truth[v].sum() < FRAMES}
        assert partly and set(metrics["per_video_auc"]) == partly
        assert (root / "eval" / checkpoint.stem / "roc.png").stat().st_size > 1000

    result = CliRunner().invoke(
        app,
        [
            "score",
            str(root / "videos" / f"{ANOMALOUS}.mp4"),
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
    rows = list(csv.DictReader((root / "scores" / f"{ANOMALOUS}.csv").read_text().splitlines()))
    assert len(rows) == FRAMES and [int(r["frame"]) for r in rows] == list(range(1, FRAMES + 1))
    scores = np.array([float(r["score"]) for r in rows])
    record = json.loads((root / "scores" / f"{ANOMALOUS}.json").read_text())
    assert len(record["scores"]) == FRAMES and record["checkpoint_kind"] == "student"
    above = [(i["start_frame"] - 1, i["end_frame"] - 1) for i in record["intervals"]]
    assert above == true_intervals(np.array(record["scores"]) >= record["threshold"])
    assert (root / "scores" / f"{ANOMALOUS}.png").exists()
    assert (root / "scores" / f"{ANOMALOUS}_overlay.mp4").stat().st_size > 0
    # The scores of `score` (decode + extract + model) equal those of `evaluate` on the cache.
    cached = np.load(root / "eval" / "student" / "frame_scores.npz")[ANOMALOUS]
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

    def watching(trained, teacher, config, held_out=None):
        step = original(trained, teacher, config, held_out)

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


def test_distill_with_cross_fitted_soft_labels(workspace):
    root = workspace
    train(root, root / "xfit-teacher")
    arguments = ["distill", "--teacher", str(root / "xfit-teacher" / "teacher.pt"), "--backbone", "clip_tiny"]
    arguments += ["--cache", str(root / "cache"), "--annotations", str(root / "annotations.csv")]
    result = CliRunner().invoke(app, [*arguments, "--out", str(root / "xfit"), *SMALL, "--set", "distill.folds=2"])
    assert result.exit_code == 0, result.output
    assert "cross-fitting soft labels: 2 more Teachers" in result.output and "s of fold Teachers" in result.output
    model, meta = load_checkpoint(root / "xfit" / "student.pt")
    assert meta["train_config"]["distill"]["folds"] == 2


def test_mismatched_checkpoint_and_bad_options_are_refused(workspace, tmp_path):
    root = workspace
    train(root, root / "t")
    runner = CliRunner()
    other = tmp_path / "other-cache"
    result = runner.invoke(
        app,
        [
            "extract",
            str(root / "videos" / "train_normal_00.mp4"),
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
    video = f"videos/{ANOMALOUS}.mp4"
    runner = CliRunner()
    result = runner.invoke(
        app, ["extract", "videos", "--backbones", "i3d_tiny,clip_tiny", "--random-weights", "i3d_tiny,clip_tiny"]
    )
    assert result.exit_code == 0 and "labels: 6 videos" in result.output, result.output
    result = runner.invoke(app, ["score", video])
    assert result.exit_code == 1 and "no checkpoint given" in result.output
    result = runner.invoke(app, ["train-teacher", *SMALL])
    assert result.exit_code == 1 and "every backbone's features come from random weights" in result.output
    assert runner.invoke(app, ["train-teacher", *SMALL, *TEACHER]).exit_code == 0
    result = runner.invoke(app, ["distill", "--backbone", "i3d_tiny", *SMALL])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["score", video])
    assert result.exit_code == 0, result.output
    assert "using the newest checkpoint: runs/student/student.pt" in result.output
    assert (tmp_path / "scores" / f"{ANOMALOUS}.csv").exists()


def test_demo_dataset_is_deterministic_and_its_anomalies_are_where_the_labels_say(tmp_path):
    from dakd.annotations import read_annotations
    from extractors.video_io import VideoReader
    from pipelines.demo import make_video

    first = [frame.copy() for frame in make_video(np.random.default_rng(7), 30, 10.0, "left_object")[0]]
    again, interval = make_video(np.random.default_rng(7), 30, 10.0, "left_object")
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    start, end = interval[0]
    assert end == 30 and 1 <= start < 30  # a left object stays to the end
    # The annotated frames differ from the frame before the bag appeared far more than noise does.
    before, after = first[start - 2].astype(int), first[start - 1].astype(int)
    assert np.abs(after - before).max() > 100

    config = DemoConfig(
        out=str(tmp_path), train_normal=1, train_anomalous=3, test_normal=1, test_anomalous=0, frames=24
    )
    data = generate_dataset(config)
    annotations = read_annotations(data / "annotations.csv")
    assert {a.label for a in annotations.values()} == {0, 1}
    assert all(a.intervals for a in annotations.values() if a.label)
    assert (data / "splits" / "train.txt").read_text().split() == [
        "train_normal_00",
        "train_fast_00",
        "train_lawn_01",
        "train_left_object_02",
    ]
    with VideoReader(data / "videos" / "train_fast_00.mp4") as reader:
        assert sum(len(c) for c in reader.chunks()) == 24 and reader.fps == pytest.approx(10)
