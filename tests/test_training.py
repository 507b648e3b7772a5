"""The training loop's held-out selection, the objectives it is handed, and scoring through segments."""

import dataclasses

import numpy as np
import pytest
import torch

from dakd import training
from dakd.bags import BagSet
from dakd.cache import FeatureCache
from dakd.models import AnomalyModel, ModelConfig
from dakd.scoring import snippet_scores
from dakd.timeline import pool_segments, true_intervals
from dakd.training import Distillation, LossConfig, OptimConfig, TrainConfig, distillation_step, fit, teacher_step


def tiny_bags(root, videos: int = 8, snippets: int = 6, dim: int = 4) -> BagSet:
    """A feature cache of random features, half the videos anomalous (their last snippets shifted)."""
    cache = FeatureCache(root)
    cache.claim(16, 1)
    cache.claim_backbone("x", {"feature_dim": dim, "weights": {"sha256": "0", "random": True}})
    rng = np.random.default_rng(0)
    labels = {}
    for index in range(videos):
        features = rng.normal(size=(1, snippets, dim)).astype(np.float32)
        labels[f"v{index}"] = index % 2
        features[0, -2:] += 3.0 * (index % 2)
        cache.write("x", f"v{index}", features, {"n_frames": 16 * snippets})
    return BagSet(cache, ("x",), labels, segments=4)


def small_config(**optim) -> TrainConfig:
    return TrainConfig(
        segments=4,
        validate_every=2,
        model=ModelConfig(width=8, heads=2, feedforward=8, head_hidden=(8,), dropout=0.0, head_dropout=0.0),
        optim=OptimConfig(steps=6, batch_per_class=1, lr=1e-2, **optim),
    )


def test_held_out_selection_restores_the_step_with_the_best_video_auc(tmp_path, monkeypatch):
    bags = tiny_bags(tmp_path)
    train_bags, held_out = training.split_validation(bags, 0.25, seed=0)
    assert len(held_out) == 2 and set(held_out.labels) == {0, 1}
    assert not set(held_out.videos) & set(train_bags.videos)
    config = small_config()
    torch.manual_seed(0)
    model = AnomalyModel({"x": 4}, config.model)
    scripted, snapshots = iter([0.5, 0.9, 0.7]), []

    def scripted_auc(scored_model, validation, device):
        snapshots.append({k: v.clone() for k, v in scored_model.state_dict().items()})
        return next(scripted)

    monkeypatch.setattr(training, "video_level_auc", scripted_auc)
    result = fit(model, teacher_step(model, config), train_bags, config, torch.device("cpu"), held_out)
    assert (result.selection, result.selected_step, result.validation_auc) == ("held-out video AUC", 4, 0.9)
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[1][key]), key
    assert not all(torch.equal(snapshots[1][k], snapshots[2][k]) for k in snapshots[1])  # training moved on


def test_distillation_is_validated_on_the_students_scores(tmp_path):
    bags = tiny_bags(tmp_path)
    config = small_config()
    wider = ModelConfig(width=12, heads=2, feedforward=8, head_hidden=(8,))
    teacher = AnomalyModel({"x": 4}, wider).eval().requires_grad_(False)
    trained = Distillation(AnomalyModel({"x": 4}, config.model), teacher_width=teacher.feature_dim)
    assert isinstance(trained.projector, torch.nn.Linear)
    train_bags, held_out = training.split_validation(bags, 0.25, seed=0)
    step = distillation_step(trained, teacher, config)
    result = fit(trained, step, train_bags, config, torch.device("cpu"), held_out)
    assert result.selection == "held-out video AUC" and result.validation_auc >= 0.0
    features = {"x": torch.randn(2, 5, 4)}
    torch.testing.assert_close(trained(features).scores, trained.student(features).scores)


def test_the_mil_variant_is_a_config_key(tmp_path):
    bags = tiny_bags(tmp_path)
    batch = next(bags.batches(2, np.random.default_rng(0)))
    scores = torch.rand(4, 4)
    ranking = training.mil_objective(scores, batch.labels, LossConfig())
    topk = training.mil_objective(scores, batch.labels, LossConfig(mil="topk", topk=2))
    assert "ranking" in ranking and "topk_bce" in topk and "ranking" not in topk
    video_scores = scores.topk(2, dim=1).values.mean(1)
    expected = torch.nn.functional.binary_cross_entropy(video_scores, batch.labels.float())
    torch.testing.assert_close(topk["loss"], expected)


def test_segment_mapping_scores_pooled_segments_and_gives_each_snippet_its_segment(tmp_path):
    torch.manual_seed(0)
    model = AnomalyModel({"x": 4}, ModelConfig(width=8, heads=2)).eval()
    features = {"x": np.random.default_rng(1).normal(size=(1, 8, 4)).astype(np.float32)}
    by_segment = snippet_scores(model, features, mapping="segments", segments=4)
    with torch.no_grad():
        pooled = model({"x": torch.from_numpy(pool_segments(features["x"][0], 4))[None]}).scores[0].numpy()
    np.testing.assert_allclose(by_segment, np.repeat(pooled, 2), rtol=1e-6)
    by_snippet = snippet_scores(model, features, mapping="snippets")
    assert not np.allclose(by_segment, by_snippet)


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        ([0, 1, 1, 0, 1], [(1, 2), (4, 4)]),
        ([1, 1, 1], [(0, 2)]),
        ([0, 0], []),
        ([], []),
    ],
)
def test_true_intervals(mask, expected):
    assert true_intervals(np.array(mask, dtype=bool)) == expected


def memorisable_bags(root, anomalous: int = 4, normal: int = 4) -> BagSet:
    dim = anomalous + normal
    """Every video is marked by a feature direction of its own: an anomalous one shares nothing with another."""
    cache = FeatureCache(root)
    cache.claim(16, 1)
    cache.claim_backbone("x", {"feature_dim": dim, "weights": {"sha256": "0", "random": True}})
    rng = np.random.default_rng(0)
    labels = {}
    for index in range(anomalous + normal):
        features = 0.1 * rng.normal(size=(1, 4, dim)).astype(np.float32)
        features[0, :, index] += 3.0
        labels[f"v{index}"] = int(index < anomalous)
        cache.write("x", f"v{index}", features, {"n_frames": 64})
    return BagSet(cache, ("x",), labels, segments=4)


def test_held_out_soft_labels_come_from_teachers_that_never_saw_the_video(tmp_path):
    bags = memorisable_bags(tmp_path)
    config = small_config()
    config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, steps=60, batch_per_class=2))
    held_out = training.held_out_scores(bags, config, {"x": 8}, folds=4, device=torch.device("cpu"))
    assert sorted(held_out) == ["v0", "v1", "v2", "v3"] and held_out["v0"].shape == (1, 4)
    torch.manual_seed(config.seed)
    teacher = AnomalyModel({"x": 8}, config.model)
    training.train(teacher, teacher_step(teacher, config), bags, config, torch.device("cpu"))
    with torch.no_grad():
        own = [teacher({"x": torch.from_numpy(bags.features["x"][i])}).scores.mean().item() for i in range(4)]
    held = [held_out[f"v{i}"].mean().item() for i in range(4)]
    # A Teacher scores the anomalous videos it trained on high; one that never saw a video cannot tell it
    # from a normal one here, since no anomalous video shares its mark with another (over seeds 0-5 the
    # held-out mean was 0.0-0.64, the Teacher's own scores 0.99-1.0).
    assert min(own) > 0.95 and np.mean(held) < 0.8
    # Each held-out score is exactly that of a Teacher trained without the video (one video per fold here).
    order = np.random.default_rng(config.seed).permutation(4)
    torch.manual_seed(config.seed)
    without = AnomalyModel({"x": 8}, config.model)
    training.train(
        without,
        teacher_step(without, config),
        bags.subset(np.setdiff1d(np.arange(8), order[:1])),
        config,
        torch.device("cpu"),
    )
    with torch.no_grad():
        expected = without({"x": torch.from_numpy(bags.features["x"][order[0]])}).scores
    torch.testing.assert_close(held_out[f"v{order[0]}"], expected)


def test_distillation_uses_held_out_scores_for_the_videos_they_hold(tmp_path):
    bags = tiny_bags(tmp_path)
    config = small_config()
    teacher = AnomalyModel({"x": 4}, config.model).eval().requires_grad_(False)
    trained = Distillation(AnomalyModel({"x": 4}, config.model), teacher_width=teacher.feature_dim)
    batch = next(bags.batches(2, np.random.default_rng(0)))
    anomalous = [video for video, label in zip(batch.videos, batch.labels) if label == 1]
    ones = {video: torch.ones(1, 4) for video in anomalous}
    zeros = {video: torch.full((1, 4), 1e-6) for video in anomalous}
    high = distillation_step(trained, teacher, config, ones)(batch)["prediction"]
    low = distillation_step(trained, teacher, config, zeros)(batch)["prediction"]
    plain = distillation_step(trained, teacher, config)(batch)["prediction"]
    assert len({round(v.item(), 6) for v in (high, low, plain)}) == 3
