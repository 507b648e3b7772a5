"""Frame-level metrics, each labelled with its exact definition (the field uses "AP" for two things)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score, roc_curve


def frame_metrics(
    scores: dict[str, np.ndarray], labels: dict[str, np.ndarray], video_labels: dict[str, int], threshold: float = 0.5
) -> dict:
    """Metrics over all frames of the videos, concatenated in the order of ``scores``.

    * ``roc_auc``: ROC AUC of all frames (sklearn ``roc_auc_score``), the UCF-Crime / ShanghaiTech number;
    * ``average_precision``: sklearn ``average_precision_score`` (step-wise sum);
    * ``pr_auc_trapezoid``: trapezoid area under the precision-recall curve, what most WSVAD
      repositories report as "AP" on XD-Violence (``auc(recall, precision)``);
    * ``false_alarm_rate``: share of frames of normal videos scored >= ``threshold``;
    * ``per_video_auc``: ROC AUC inside each video that has both normal and anomalous frames.
    """
    videos = list(scores)
    y = np.concatenate([labels[v] for v in videos]).astype(np.int64)
    s = np.concatenate([scores[v] for v in videos]).astype(np.float64)
    both = 0 < y.sum() < len(y)
    normal_frames = [scores[v] for v in videos if video_labels[v] == 0]
    result = {
        "frames": int(len(y)),
        "anomalous_frames": int(y.sum()),
        "videos": len(videos),
        "roc_auc": float(roc_auc_score(y, s)) if both else None,
        "average_precision": float(average_precision_score(y, s)) if both else None,
        "pr_auc_trapezoid": None,
        "false_alarm_rate": float(np.mean(np.concatenate(normal_frames) >= threshold)) if normal_frames else None,
        "threshold": threshold,
        "per_video_auc": {},
    }
    if both:
        precision, recall, _ = precision_recall_curve(y, s)
        result["pr_auc_trapezoid"] = float(auc(recall, precision))
    for video in videos:
        truth = labels[video]
        if 0 < truth.sum() < len(truth):
            result["per_video_auc"][video] = float(roc_auc_score(truth, scores[video]))
    return result


def curves(scores: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ROC and PR curve points of the concatenated frames (for plots)."""
    y = np.concatenate([labels[v] for v in scores])
    s = np.concatenate(list(scores.values()))
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    return {"fpr": fpr, "tpr": tpr, "precision": precision, "recall": recall}
