"""``dakd distill``: a single-backbone Student trained by bi-level distillation from a frozen Teacher
(the objective, ``L = L_MIL + alpha (L_pred + L_feat)``, is :func:`dakd.training.distillation_step`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from dakd.bags import load_bags
from dakd.cache import FeatureCache
from dakd.checkpoint import check_against_cache, load_checkpoint, save_run
from dakd.config import from_dict
from dakd.devices import choose_device
from dakd.errors import DakdError
from dakd.models import build_model
from dakd.training import Distillation, TrainConfig, distillation_step, held_out_scores, train
from pipelines.common import random_weight_warnings, step_progress
from pipelines.jobs import TrainJob


def run(job: TrainJob, report: Callable[[str], None] = tqdm.write) -> dict:
    """Distil the Teacher ``job.teacher`` into a Student; writes ``student.pt`` and friends to ``job.out``."""
    config = job.train
    if len(config.backbones) != 1:
        raise DakdError(f"the student uses exactly one backbone, got {list(config.backbones) or 'none'}")
    teacher_path = Path(job.teacher)
    teacher, teacher_meta = load_checkpoint(teacher_path)
    if teacher_meta["kind"] != "teacher":
        raise DakdError(f"{teacher_path}: a {teacher_meta['kind']} checkpoint, expected a teacher")
    cache = FeatureCache(job.cache)
    backbones = tuple(dict.fromkeys((*teacher.names, *config.backbones)))
    bags = load_bags(cache, backbones, job.annotations, job.split, config.segments)
    check_against_cache(teacher_meta, cache, teacher_path)
    for line in random_weight_warnings(cache, backbones):
        report(line)
    device = choose_device(config.device)
    teacher.requires_grad_(False)
    teacher.to(device).eval()
    torch.manual_seed(config.seed)
    name = config.backbones[0]
    student = build_model({name: cache.backbone_config(name)["feature_dim"]}, config.model)
    trained = Distillation(student, teacher.feature_dim)
    report(
        f"distilling {', '.join(teacher.names)} -> {name} on {len(bags)} videos ({int(bags.labels.sum())} anomalous)"
    )
    held_out, cross_fit_seconds = None, 0.0
    uses_teacher = config.distill.prediction or config.distill.feature  # else the Student learns by MIL alone
    folds = min(config.distill.folds, int(bags.labels.sum())) if uses_teacher else 0
    if uses_teacher and config.distill.folds > 1 and folds < 2:
        report("soft labels not cross-fitted: it needs at least 2 anomalous training videos; the Teacher's own scores")
    if folds > 1:
        teacher_config = from_dict(TrainConfig, teacher_meta["train_config"], f"{teacher_path}: train_config")
        dims = {view: cache.backbone_config(view)["feature_dim"] for view in teacher.names}
        report(f"cross-fitting soft labels: {folds} more Teachers, each trained without a fold of the anomalous videos")
        started = time.perf_counter()
        with tqdm(total=folds, desc="fold teachers", unit="teacher", disable=not job.progress) as bar:
            held_out = held_out_scores(bags, teacher_config, dims, folds, device, on_fold=lambda: bar.update())
        cross_fit_seconds = time.perf_counter() - started
    step = distillation_step(trained, teacher, config, held_out)
    with step_progress(config.optim.steps, "student", job.progress) as on_step:
        summary = train(trained, step, bags, config, device, on_step)
    teacher.cpu()
    extra = {"teacher": str(teacher_path.resolve())}
    checkpoint = save_run(job.out, student, "student", cache, config, summary, extra)
    summary.update(
        checkpoint=str(checkpoint), backbones=[name], teacher=str(teacher_path), cross_fit_seconds=cross_fit_seconds
    )
    return summary
