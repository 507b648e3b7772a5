"""PNG plots: ROC and PR curves of an evaluation, and a video's score over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_curves(points: dict[str, np.ndarray], metrics: dict, folder: Path, title: str) -> tuple[Path, Path]:
    plt = _pyplot()
    roc_path, pr_path = folder / "roc.png", folder / "pr.png"
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.plot(points["fpr"], points["tpr"], label=f"ROC AUC {metrics['roc_auc']:.4f}")
    axis.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    axis.set(xlabel="false positive rate (frames)", ylabel="true positive rate (frames)", title=title)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(roc_path, dpi=120)
    plt.close(figure)
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    label = f"AP {metrics['average_precision']:.4f} (trapezoid {metrics['pr_auc_trapezoid']:.4f})"
    axis.plot(points["recall"], points["precision"], label=label)
    axis.set(xlabel="recall (frames)", ylabel="precision (frames)", title=title, ylim=(0, 1.02))
    axis.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(pr_path, dpi=120)
    plt.close(figure)
    return roc_path, pr_path


def plot_scores(
    path: Path,
    times: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    intervals: list[tuple[int, int]],
    truth: np.ndarray | None,
    title: str,
) -> None:
    """Score over time; detected intervals shaded; ground-truth anomalous frames drawn when known."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(10, 3))
    step = times[1] - times[0] if len(times) > 1 else 1.0
    if truth is not None and truth.any():
        axis.fill_between(
            times, 0, truth.astype(float), step="mid", color="tab:green", alpha=0.25, label="ground truth"
        )
    for start, end in intervals:
        axis.axvspan(times[start], times[end] + step, color="tab:red", alpha=0.15)
    axis.plot(times, scores, color="tab:red", linewidth=1.2, label="anomaly score")
    axis.axhline(threshold, color="k", linestyle=":", linewidth=0.8, label=f"threshold {threshold:g}")
    axis.set(xlabel="time (s)", ylabel="score", ylim=(-0.02, 1.02), xlim=(times[0], times[-1] + step), title=title)
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
