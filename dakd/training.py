"""Training: its configuration, the objectives, and the one ``fit`` loop.

The whole objective reads here. The Teacher minimises ``L_MIL`` (:func:`teacher_step`); the Student
minimises ``L = L_MIL + alpha (L_pred + L_feat)`` (:func:`distillation_step`): prediction level, BCE
against the Teacher's MIL-derived soft labels; feature level, InfoNCE between Student and Teacher
per-segment features with classes split by the Teacher score threshold delta. Teacher training and
distillation differ only in the step function they pass to :func:`fit`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from dakd.bags import BagSet, Batch
from dakd.losses import (
    infonce_loss,
    mil_ranking_loss,
    prediction_distillation_loss,
    segment_classes,
    soft_labels,
    topk_bce_loss,
)
from dakd.models import AnomalyModel, ModelConfig, ModelOutput, build_model

Step = Callable[[Batch], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class LossConfig:
    mil: Literal["ranking", "topk"] = "ranking"  # Sultani ranking loss, or top-k BCE
    sparsity: float = 8e-5
    smoothness: float = 8e-5
    topk: int = 3


@dataclass(frozen=True)
class OptimConfig:
    optimizer: Literal["adagrad", "adam", "adamw"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 1e-3
    steps: int = 300
    batch_per_class: int = 16  # anomalous bags and normal bags per step (each)


@dataclass(frozen=True)
class DistillConfig:
    tau: float = 0.1  # InfoNCE temperature
    delta: float = 0.5  # Teacher score threshold that splits segments into classes
    alpha: float = 4.0  # weight of the distillation losses: L = L_MIL + alpha (L_pred + L_feat); Ped2 dev splits
    prediction: bool = True  # prediction-level loss on/off (ablation)
    # Defaults chosen on the Ped2 dev splits (docs/results.md): the Teacher's raw scores as soft labels and
    # no feature-level loss carry more of the Teacher into the Student than the paper's min-max + InfoNCE.
    feature: bool = False  # feature-level loss (InfoNCE) on/off
    soft_labels: Literal["minmax", "raw"] = "raw"
    # > 1: the anomalous training videos are split into this many folds and each fold's soft labels come from
    # a Teacher of the same recipe trained without it (a Teacher scores its own training videos near 1 in
    # every segment); as many folds as anomalous videos is leave-one-out. 0: the Teacher's own scores.
    # 6 (leave-one-out on Ped2's splits) chosen on the Ped2 dev splits, 5 seeds (docs/results.md).
    folds: int = 6


@dataclass(frozen=True)
class TrainConfig:
    """Settings of ``dakd train-teacher`` and ``dakd distill`` (``distill`` is used by the latter only)."""

    backbones: tuple[str, ...] = ()  # teacher: empty = every backbone in the cache; student: exactly one
    segments: int = 12  # per training bag; chosen on the Ped2 dev splits (the paper's datasets: 32, their configs)
    seed: int = 0
    device: str = "auto"
    validation_fraction: float = 0.0  # > 0: hold out this share of training videos for model selection
    validate_every: int = 50
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


# -- objectives ---------------------------------------------------------------------------------------------


def mil_objective(scores: torch.Tensor, labels: torch.Tensor, config: LossConfig) -> dict[str, torch.Tensor]:
    """L_MIL on segment scores ``[B, S]`` and video labels ``[B]``: Sultani's ranking loss or top-k BCE."""
    if config.mil == "topk":
        return topk_bce_loss(scores, labels, config.topk)
    return mil_ranking_loss(scores, labels, config.sparsity, config.smoothness)


def teacher_step(model: AnomalyModel, config: TrainConfig) -> Step:
    def step(batch: Batch) -> dict[str, torch.Tensor]:
        return mil_objective(model(batch.features).scores, batch.labels, config.loss)

    return step


class Distillation(nn.Module):
    """What distillation trains: the Student, and a projection of its features onto the Teacher's width
    (feature-level distillation compares them). It scores as the Student does, so held-out selection
    sees the Student; the frozen Teacher is not part of it."""

    def __init__(self, student: AnomalyModel, teacher_width: int):
        super().__init__()
        self.student = student
        width = student.feature_dim
        self.projector = nn.Linear(width, teacher_width) if width != teacher_width else nn.Identity()

    def forward(self, features: dict[str, torch.Tensor], return_attention: bool = False) -> ModelOutput:
        return self.student(features, return_attention)


def distillation_step(
    trained: Distillation,
    teacher: AnomalyModel,
    config: TrainConfig,
    held_out: dict[str, torch.Tensor] | None = None,
) -> Step:
    """L = L_MIL(student) + alpha (L_pred + L_feat); the Teacher runs without gradients. ``held_out``
    (:func:`held_out_scores`) replaces the Teacher's scores of the videos it holds."""
    distill = config.distill

    def step(batch: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            teacher_out = teacher({name: batch.features[name] for name in teacher.names})
        scores = teacher_out.scores
        if held_out:
            scores = scores.clone()
            for row, (video, crop) in enumerate(zip(batch.videos, batch.crops)):
                if video in held_out:
                    scores[row] = held_out[video][crop].to(scores.device)
        student_out = trained({name: batch.features[name] for name in trained.student.names})
        losses = {f"mil_{k}": v for k, v in mil_objective(student_out.scores, batch.labels, config.loss).items()}
        total = losses["mil_loss"]
        if distill.prediction:
            soft = soft_labels(scores, batch.labels, normalise=distill.soft_labels == "minmax")
            losses["prediction"] = prediction_distillation_loss(student_out.scores, soft)
            total = total + distill.alpha * losses["prediction"]
        if distill.feature:
            classes = segment_classes(scores, batch.labels, distill.delta).flatten()
            projected = trained.projector(student_out.features).flatten(0, 1)
            losses["feature"] = infonce_loss(projected, teacher_out.features.flatten(0, 1), classes, distill.tau)
            total = total + distill.alpha * losses["feature"]
        losses["loss"] = total
        return losses

    return step


def held_out_scores(
    bags: BagSet,
    teacher_config: TrainConfig,
    dims: dict[str, int],
    folds: int,
    device: torch.device,
    on_fold: Callable[[], None] = lambda: None,
) -> dict[str, torch.Tensor]:
    """Cross-fitted Teacher scores ``{video: [crops, S]}`` of every anomalous video of ``bags``: the anomalous
    videos are split into ``folds`` (at most one fold per video) and each fold is scored by a Teacher of
    ``teacher_config`` (on the views ``dims``) trained on every other video of ``bags``."""
    anomalous = np.random.default_rng(teacher_config.seed).permutation(np.flatnonzero(bags.labels == 1))
    scores: dict[str, torch.Tensor] = {}
    for fold in np.array_split(anomalous, min(folds, len(anomalous))):
        torch.manual_seed(teacher_config.seed)
        model = build_model(dims, teacher_config.model)
        others = bags.subset(np.setdiff1d(np.arange(len(bags)), fold))
        train(model, teacher_step(model, teacher_config), others, teacher_config, device)
        with torch.no_grad():
            for index in fold:
                scores[bags.videos[index]] = model(
                    {name: torch.from_numpy(bags.features[name][index]) for name in dims}
                ).scores
        on_fold()
    return scores


# -- the loop -----------------------------------------------------------------------------------------------


def make_optimizer(parameters, config: OptimConfig) -> torch.optim.Optimizer:
    kinds = {"adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    return kinds[config.optimizer](parameters, lr=config.lr, weight_decay=config.weight_decay)


def split_validation(bags: BagSet, fraction: float, seed: int) -> tuple[BagSet, BagSet | None]:
    """Hold out ``fraction`` of each class of the training videos (video-level labels only)."""
    if fraction <= 0:
        return bags, None
    rng = np.random.default_rng(seed + 1)
    held = []
    for label in (0, 1):
        pool = rng.permutation(np.flatnonzero(bags.labels == label))
        held.extend(pool[: max(1, int(round(fraction * len(pool))))])
    keep = np.setdiff1d(np.arange(len(bags)), held)
    return bags.subset(keep), bags.subset(np.array(sorted(held)))


@torch.no_grad()
def video_level_auc(model: nn.Module, bags: BagSet, device: torch.device) -> float:
    """ROC AUC of each held-out video's highest segment score (crops averaged) against its label."""
    model.eval()
    scores = []
    for index in range(len(bags)):
        features = {k: torch.from_numpy(v[index]).to(device) for k, v in bags.features.items()}
        scores.append(model(features).scores.mean(0).max().item())
    return float(roc_auc_score(bags.labels, scores))


@dataclass
class FitResult:
    history: list[dict[str, float]]
    selected_step: int
    selection: str  # "last step" or "held-out video AUC"
    validation_auc: float | None = None


def fit(
    model: nn.Module,
    step: Step,
    bags: BagSet,
    config: TrainConfig,
    device: torch.device,
    validation: BagSet | None = None,
    on_step: Callable[[int, dict[str, float]], None] = lambda i, losses: None,
) -> FitResult:
    """Run ``config.optim.steps`` optimisation steps of ``step`` on balanced batches of ``bags``, training
    every parameter of ``model`` (whose ``forward`` gives the scores held-out selection looks at).

    Model selection never looks at test labels: the last step, or (with ``validation``) the step with
    the best video-level AUC on held-out training videos.
    """
    optimizer = make_optimizer(model.parameters(), config.optim)
    batches = bags.batches(config.optim.batch_per_class, np.random.default_rng(config.seed))
    history: list[dict[str, float]] = []
    best = (-1.0, config.optim.steps, None)
    for index in range(1, config.optim.steps + 1):
        batch = next(batches)
        features = {k: v.to(device) for k, v in batch.features.items()}
        batch = Batch(features, batch.labels.to(device), batch.videos, batch.crops)
        model.train()
        losses = step(batch)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        record = {name: float(value.detach()) for name, value in losses.items()}
        history.append(record)
        on_step(index, record)
        if validation is not None and (index % config.validate_every == 0 or index == config.optim.steps):
            auc = video_level_auc(model, validation, device)
            if auc > best[0]:
                best = (auc, index, copy.deepcopy(model.state_dict()))
    model.eval()
    if validation is None:
        return FitResult(history, config.optim.steps, "last step")
    model.load_state_dict(best[2])
    return FitResult(history, best[1], "held-out video AUC", best[0])


def train(
    model: nn.Module,
    step: Step,
    bags: BagSet,
    config: TrainConfig,
    device: torch.device,
    on_step: Callable[[int, dict[str, float]], None] = lambda i, losses: None,
) -> dict:
    """Fit ``model`` on ``device`` (holding out ``validation_fraction`` of the videos when asked), leave it on
    the CPU in eval mode and return the run's summary (timing, selection, loss history)."""
    model.to(device)
    train_bags, validation = split_validation(bags, config.validation_fraction, config.seed)
    started = time.perf_counter()
    result = fit(model, step, train_bags, config, device, validation, on_step)
    model.cpu()
    return {
        "seconds": time.perf_counter() - started,
        "steps": config.optim.steps,
        "selected_step": result.selected_step,
        "selection": result.selection,
        "validation_auc": result.validation_auc,
        "final_loss": result.history[-1]["loss"],
        "train_videos": len(train_bags),
        "train_anomalous": int(train_bags.labels.sum()),
        "history": result.history,
    }
