"""``dakd train-teacher``: the multi-backbone Teacher with the Temporal Aggregation Module, MIL objective
on segment bags, video-level labels only."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dakd import paths
from dakd.annotations import resolve_labels
from dakd.bags import BagSet, Batch
from dakd.cache import FeatureCache, write_json
from dakd.checkpoint import save_checkpoint
from dakd.config import save_config
from dakd.errors import DakdError
from dakd.losses import mil_ranking_loss, topk_bce_loss
from dakd.models import AnomalyModel, build_model
from dakd.training import LossConfig, TrainConfig, fit, split_validation
from pipelines.common import choose_device, random_weight_warnings


@dataclass(frozen=True)
class TrainJob:
    """Where a training run reads and writes; the hyperparameters are in ``train``."""

    cache: str = str(paths.DEFAULT_CACHE)
    annotations: str | None = None
    split: str | None = None
    out: str = str(paths.DEFAULT_RUNS / "teacher")
    teacher: str | None = None  # distillation only: the Teacher checkpoint
    train: TrainConfig = field(default_factory=TrainConfig)
    progress: bool = True


def mil_objective(scores: torch.Tensor, labels: torch.Tensor, config: LossConfig) -> dict[str, torch.Tensor]:
    if config.mil == "topk":
        return topk_bce_loss(scores, labels, config.topk)
    return mil_ranking_loss(scores, labels, config.sparsity, config.smoothness)


def load_bags(job: TrainJob, backbones: tuple[str, ...]) -> tuple[FeatureCache, BagSet, int]:
    """The training bags of ``backbones`` and the number of labelled videos."""
    cache = FeatureCache(job.cache)
    cache.config()
    for name in backbones:
        cache.backbone_config(name)  # a clear error when a backbone was not extracted
    labels = resolve_labels(cache.root, cache.video_ids(backbones[0]), job.annotations, job.split)
    bags = BagSet(cache, backbones, {v: a.label for v, a in labels.items()}, job.train.segments)
    return cache, bags, len(labels)


def train_model(
    job: TrainJob,
    model: AnomalyModel,
    step: Callable[[Batch], dict[str, torch.Tensor]],
    parameters,
    bags: BagSet,
    description: str,
) -> dict:
    device = choose_device(job.train.device)
    model.to(device)
    train_bags, validation = split_validation(bags, job.train.validation_fraction, job.train.seed)
    bar = tqdm(total=job.train.optim.steps, desc=description, unit="step", disable=not job.progress)

    def on_step(index: int, losses: dict[str, float]) -> None:
        bar.update(1)
        if index % 10 == 0:
            bar.set_postfix(loss=f"{losses['loss']:.4f}", refresh=False)

    started = time.perf_counter()
    result = fit(model, parameters, step, train_bags, job.train, device, validation, on_step)
    bar.close()
    model.cpu()
    return {
        "seconds": time.perf_counter() - started,
        "steps": job.train.optim.steps,
        "selected_step": result.selected_step,
        "selection": result.selection,
        "validation_auc": result.validation_auc,
        "final_loss": result.history[-1]["loss"],
        "train_videos": len(train_bags),
        "train_anomalous": int(train_bags.labels.sum()),
        "history": result.history,
    }


def run(job: TrainJob, report: Callable[[str], None] = tqdm.write) -> dict:
    """Train the Teacher; writes ``teacher.pt``, ``config.yaml`` and ``history.json`` to ``job.out``."""
    config = job.train
    cache = FeatureCache(job.cache)
    backbones = config.backbones or tuple(cache.backbones())
    if not backbones:
        raise DakdError(f"{cache.root}: no features; run dakd extract first")
    cache, bags, n_labelled = load_bags(job, backbones)
    for line in random_weight_warnings(cache, backbones):
        report(line)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    dims = {name: cache.backbone_config(name)["feature_dim"] for name in backbones}
    model = build_model(dims, config.model)

    def step(batch: Batch) -> dict[str, torch.Tensor]:
        return mil_objective(model(batch.features).scores, batch.labels, config.loss)

    report(
        f"training the teacher on {len(bags)} videos ({int(bags.labels.sum())} anomalous), "
        f"backbones {', '.join(backbones)}"
    )
    summary = train_model(job, model, step, model.parameters(), bags, "teacher")
    out = Path(job.out)
    save_checkpoint(
        out / "teacher.pt", model, "teacher", cache, config, {k: v for k, v in summary.items() if k != "history"}
    )
    save_config(config, out / "config.yaml")
    write_json(out / "history.json", summary["history"])
    summary.update(checkpoint=str(out / "teacher.pt"), backbones=list(backbones))
    return summary
