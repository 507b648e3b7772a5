"""``dakd distill``: a single-backbone Student trained by bi-level distillation from a frozen Teacher.

L = L_MIL(student) + alpha * (L_pred + L_feat): prediction level, BCE against the Teacher's MIL-derived
soft labels; feature level, InfoNCE between Student and Teacher per-segment features, classes split by
the Teacher score threshold delta.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dakd.bags import Batch
from dakd.cache import write_json
from dakd.checkpoint import check_against_cache, load_checkpoint, save_checkpoint
from dakd.config import save_config
from dakd.errors import DakdError
from dakd.losses import infonce_loss, prediction_distillation_loss, segment_classes, soft_labels
from dakd.models import AnomalyModel, build_model
from dakd.training import TrainConfig
from pipelines.common import choose_device, random_weight_warnings
from pipelines.train_teacher import TrainJob, load_bags, mil_objective, train_model


def distillation_step(
    student: AnomalyModel, teacher: AnomalyModel, projector: nn.Module, config: TrainConfig
) -> Callable[[Batch], dict[str, torch.Tensor]]:
    distill = config.distill

    def step(batch: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            teacher_out = teacher({name: batch.features[name] for name in teacher.names})
        student_out = student({name: batch.features[name] for name in student.names})
        losses = {f"mil_{k}": v for k, v in mil_objective(student_out.scores, batch.labels, config.loss).items()}
        total = losses["mil_loss"]
        if distill.prediction:
            soft = soft_labels(teacher_out.scores, batch.labels, normalise=distill.soft_labels == "minmax")
            losses["prediction"] = prediction_distillation_loss(student_out.scores, soft)
            total = total + distill.alpha * losses["prediction"]
        if distill.feature:
            classes = segment_classes(teacher_out.scores, batch.labels, distill.delta).flatten()
            projected = projector(student_out.features).flatten(0, 1)
            losses["feature"] = infonce_loss(projected, teacher_out.features.flatten(0, 1), classes, distill.tau)
            total = total + distill.alpha * losses["feature"]
        losses["loss"] = total
        return losses

    return step


def run(job: TrainJob, report: Callable[[str], None] = tqdm.write) -> dict:
    """Distil the Teacher ``job.teacher`` into a Student; writes ``student.pt`` and friends to ``job.out``."""
    config = job.train
    if len(config.backbones) != 1:
        raise DakdError(f"the student uses exactly one backbone, got {list(config.backbones) or 'none'}")
    teacher_path = Path(job.teacher or "runs/teacher/teacher.pt")
    teacher, teacher_meta = load_checkpoint(teacher_path)
    if teacher_meta["kind"] != "teacher":
        raise DakdError(f"{teacher_path}: a {teacher_meta['kind']} checkpoint, expected a teacher")
    backbones = tuple(dict.fromkeys((*teacher.names, *config.backbones)))
    cache, bags, _ = load_bags(job, backbones)
    check_against_cache(teacher_meta, cache, teacher_path)
    for line in random_weight_warnings(cache, backbones):
        report(line)
    teacher.requires_grad_(False)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    name = config.backbones[0]
    student = build_model({name: cache.backbone_config(name)["feature_dim"]}, config.model)
    # Feature-level distillation compares widths: project the Student when they differ.
    projector = (
        nn.Linear(student.feature_dim, teacher.feature_dim)
        if student.feature_dim != teacher.feature_dim
        else nn.Identity()
    )
    trained = nn.ModuleDict({"student": student, "projector": projector})  # what fit() trains; not the teacher
    teacher.to(choose_device(config.device)).eval()
    step = distillation_step(student, teacher, projector, config)
    report(
        f"distilling {', '.join(teacher.names)} -> {name} on {len(bags)} videos ({int(bags.labels.sum())} anomalous)"
    )
    summary = train_model(job, trained, step, trained.parameters(), bags, "student")
    teacher.cpu()
    out = Path(job.out)
    extra = {k: v for k, v in summary.items() if k != "history"}
    extra["teacher"] = str(teacher_path.resolve())
    save_checkpoint(out / "student.pt", student, "student", cache, config, extra)
    save_config(config, out / "config.yaml")
    write_json(out / "history.json", summary["history"])
    summary.update(checkpoint=str(out / "student.pt"), backbones=[name], teacher=str(teacher_path))
    return summary
