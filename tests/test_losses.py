"""Losses on hand-computed cases."""

import math

import pytest
import torch

from dakd.losses import (
    infonce_loss,
    mil_ranking_loss,
    prediction_distillation_loss,
    segment_classes,
    soft_labels,
    topk_bce_loss,
)


def test_mil_ranking_sparsity_smoothness_by_hand():
    scores = torch.tensor([[0.1, 0.9, 0.2], [0.3, 0.2, 0.4], [0.0, 0.5, 0.1]])
    labels = torch.tensor([1, 0, 0])
    parts = mil_ranking_loss(scores, labels, sparsity=0.01, smoothness=0.1)
    # pairs: (0.9 vs 0.4) -> max(0, 1 - 0.9 + 0.4) = 0.5 ; (0.9 vs 0.5) -> 0.6 ; mean 0.55
    assert parts["ranking"].item() == pytest.approx(0.55)
    assert parts["sparsity"].item() == pytest.approx(1.2)
    assert parts["smoothness"].item() == pytest.approx(0.8**2 + 0.7**2)
    assert parts["loss"].item() == pytest.approx(0.55 + 0.01 * 1.2 + 0.1 * (0.64 + 0.49))


def test_mil_ranking_is_zero_when_separated_by_the_margin():
    scores = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    assert mil_ranking_loss(scores, torch.tensor([1, 0]), 0, 0)["loss"].item() == 0


def test_mil_needs_both_classes():
    with pytest.raises(ValueError):
        mil_ranking_loss(torch.rand(2, 4), torch.tensor([1, 1]))


def test_topk_bce_by_hand():
    scores = torch.tensor([[0.9, 0.1, 0.7], [0.2, 0.4, 0.1]])
    loss = topk_bce_loss(scores, torch.tensor([1, 0]), k=2)["loss"].item()
    assert loss == pytest.approx(-(math.log(0.8) + math.log(1 - 0.3)) / 2, rel=1e-6)


def test_soft_labels_minmax_in_anomalous_videos_zeros_in_normal():
    teacher = torch.tensor([[0.2, 0.6, 1.0], [0.5, 0.9, 0.7]])
    labels = torch.tensor([1, 0])
    soft = soft_labels(teacher, labels)
    torch.testing.assert_close(soft, torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(soft_labels(teacher, labels, normalise=False)[0], teacher[0])
    flat = soft_labels(torch.full((1, 3), 0.4), torch.tensor([1]))
    assert torch.isfinite(flat).all()
    assert prediction_distillation_loss(torch.tensor([[0.5]]), torch.tensor([[1.0]])).item() == pytest.approx(
        math.log(2)
    )


def test_segment_classes_threshold_and_normal_videos_are_class_zero():
    teacher = torch.tensor([[0.2, 0.6], [0.9, 0.95]])
    classes = segment_classes(teacher, torch.tensor([1, 0]), delta=0.5)
    assert classes.tolist() == [[0, 1], [0, 0]]


def test_infonce_positives_and_negatives_by_hand():
    tau = 0.5
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    classes = torch.tensor([0, 0, 1])
    s = torch.nn.functional.normalize(student, dim=1)
    t = torch.nn.functional.normalize(teacher, dim=1)
    sim = (s @ t.T / tau).tolist()
    # anchor 0 (class 0): positive t0, negative t2 (class 1); t1 is the same class: not a negative
    expected0 = -sim[0][0] + math.log(math.exp(sim[0][0]) + math.exp(sim[0][2]))
    expected1 = -sim[1][1] + math.log(math.exp(sim[1][1]) + math.exp(sim[1][2]))
    # anchor 2 (class 1): positive t2, negatives t0 and t1
    expected2 = -sim[2][2] + math.log(math.exp(sim[2][2]) + math.exp(sim[2][0]) + math.exp(sim[2][1]))
    loss = infonce_loss(student, teacher, classes, tau).item()
    assert loss == pytest.approx((expected0 + expected1 + expected2) / 3, rel=1e-5)


def test_infonce_without_negatives_is_zero_and_gradients_reach_the_student():
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3)
    assert infonce_loss(student, teacher, torch.zeros(4, dtype=torch.long), 0.1).item() == pytest.approx(0.0, abs=1e-6)
    loss = infonce_loss(student, teacher, torch.tensor([0, 0, 1, 1]), 0.1)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
