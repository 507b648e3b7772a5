"""Training objectives. Each takes tensors (shapes in the docstring) and returns a dict of named parts
plus ``loss``. Labels are per video (1 anomalous, 0 normal): weak supervision only."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mil_ranking_loss(
    scores: torch.Tensor, labels: torch.Tensor, sparsity: float = 8e-5, smoothness: float = 8e-5
) -> dict[str, torch.Tensor]:
    """Sultani et al. (CVPR 2018) MIL ranking loss on segment scores ``[B, S]`` and video labels ``[B]``.

    ranking = mean over every (anomalous, normal) pair of ``max(0, 1 - max(s_a) + max(s_n))``;
    sparsity = mean over anomalous bags of ``sum_t s_t``; smoothness = mean over anomalous bags of
    ``sum_t (s_t - s_{t+1})^2``. The batch must hold both classes.
    """
    anomalous, normal = scores[labels == 1], scores[labels == 0]
    if len(anomalous) == 0 or len(normal) == 0:
        raise ValueError("the MIL ranking loss needs anomalous and normal bags in every batch")
    top_anomalous = anomalous.max(dim=1).values
    top_normal = normal.max(dim=1).values
    ranking = F.relu(1.0 - top_anomalous[:, None] + top_normal[None, :]).mean()
    sparse = anomalous.sum(dim=1).mean()
    smooth = (anomalous[:, 1:] - anomalous[:, :-1]).pow(2).sum(dim=1).mean()
    loss = ranking + sparsity * sparse + smoothness * smooth
    return {"loss": loss, "ranking": ranking, "sparsity": sparse, "smoothness": smooth}


def topk_bce_loss(scores: torch.Tensor, labels: torch.Tensor, k: int = 3) -> dict[str, torch.Tensor]:
    """Top-k MIL: BCE between the mean of each bag's ``k`` highest segment scores and its video label."""
    k = min(k, scores.shape[1])
    video_scores = scores.topk(k, dim=1).values.mean(dim=1).clamp(1e-6, 1 - 1e-6)
    bce = F.binary_cross_entropy(video_scores, labels.float())
    return {"loss": bce, "topk_bce": bce}


def soft_labels(teacher_scores: torch.Tensor, labels: torch.Tensor, normalise: bool = True) -> torch.Tensor:
    """MIL-derived soft labels ``[B, S]`` from the Teacher's segment scores.

    Anomalous videos: the scores min-max normalised within the video (``normalise``) or raw; normal
    videos: zeros (their every segment is normal by definition of the weak labels).
    """
    soft = teacher_scores
    if normalise:
        low = soft.min(dim=1, keepdim=True).values
        high = soft.max(dim=1, keepdim=True).values
        soft = (soft - low) / (high - low).clamp_min(1e-8)
    return soft * (labels[:, None] == 1)


def prediction_distillation_loss(student_scores: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """BCE between the Student's segment scores ``[B, S]`` and the soft labels ``[B, S]``."""
    return F.binary_cross_entropy(student_scores.clamp(1e-6, 1 - 1e-6), soft)


def segment_classes(teacher_scores: torch.Tensor, labels: torch.Tensor, delta: float) -> torch.Tensor:
    """Class of each segment ``[B, S]``: 1 where the Teacher scores it >= delta inside an anomalous video."""
    return ((teacher_scores >= delta) & (labels[:, None] == 1)).long()


def infonce_loss(
    student_features: torch.Tensor, teacher_features: torch.Tensor, classes: torch.Tensor, tau: float
) -> torch.Tensor:
    """Feature-level distillation: InfoNCE over the N segments of a batch.

    ``student_features`` ``[N, F]`` (already projected to the Teacher's width), ``teacher_features``
    ``[N, F]``, ``classes`` ``[N]``. For anchor i (a Student segment) the positive is the Teacher feature
    of the same segment and the negatives are the Teacher features of every segment of the other class:
    ``-log(exp(s_i.t_i / tau) / (exp(s_i.t_i / tau) + sum_{j: class_j != class_i} exp(s_i.t_j / tau)))``
    with L2-normalised features, averaged over anchors. An anchor without negatives contributes 0.
    """
    student = F.normalize(student_features, dim=-1)
    teacher = F.normalize(teacher_features, dim=-1)
    logits = student @ teacher.T / tau  # [N, N]
    negatives = classes[:, None] != classes[None, :]
    keep = negatives | torch.eye(len(classes), dtype=torch.bool, device=classes.device)
    masked = logits.masked_fill(~keep, float("-inf"))
    return (torch.logsumexp(masked, dim=1) - logits.diagonal()).mean()
