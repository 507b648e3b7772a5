"""Training configuration and the one ``fit`` loop. Teacher training and distillation differ only in the
step function they pass to ``fit``."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from dakd.bags import BagSet, Batch
from dakd.models import ModelConfig

log = logging.getLogger(__name__)


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
    alpha: float = 1.0  # weight of the distillation losses: L = L_MIL + alpha (L_pred + L_feat)
    prediction: bool = True  # prediction-level loss on/off (ablation)
    feature: bool = True  # feature-level loss on/off (ablation)
    soft_labels: Literal["minmax", "raw"] = "minmax"


@dataclass(frozen=True)
class TrainConfig:
    """Settings of ``dakd train-teacher`` and ``dakd distill`` (``distill`` is used by the latter only)."""

    backbones: tuple[str, ...] = ()  # teacher: empty = every backbone in the cache; student: exactly one
    segments: int = 32
    seed: int = 0
    device: str = "auto"
    validation_fraction: float = 0.0  # > 0: hold out this share of training videos for model selection
    validate_every: int = 50
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


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
def video_level_auc(model: torch.nn.Module, bags: BagSet, device: torch.device) -> float:
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
    model: torch.nn.Module,
    parameters,
    step: Callable[[Batch], dict[str, torch.Tensor]],
    bags: BagSet,
    config: TrainConfig,
    device: torch.device,
    validation: BagSet | None = None,
    on_step: Callable[[int, dict[str, float]], None] = lambda i, losses: None,
) -> FitResult:
    """Run ``config.optim.steps`` optimisation steps of ``step`` on balanced batches of ``bags``.

    Model selection never looks at test labels: the last step, or (with ``validation``) the step with
    the best video-level AUC on held-out training videos.
    """
    optimizer = make_optimizer(parameters, config.optim)
    batches = bags.batches(config.optim.batch_per_class, np.random.default_rng(config.seed))
    history: list[dict[str, float]] = []
    best = (-1.0, config.optim.steps, None)
    for index in range(1, config.optim.steps + 1):
        batch = next(batches)
        batch = Batch({k: v.to(device) for k, v in batch.features.items()}, batch.labels.to(device), batch.videos)
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
