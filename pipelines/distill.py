"""``dakd distill``: a single-backbone Student trained by bi-level distillation from a frozen Teacher
(the objective, ``L = L_MIL + alpha (L_pred + L_feat)``, is :func:`dakd.training.distillation_step`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from dakd.bags import load_bags
from dakd.cache import FeatureCache
from dakd.checkpoint import check_against_cache, load_checkpoint, save_run
from dakd.devices import choose_device
from dakd.errors import DakdError
from dakd.models import build_model
from dakd.training import Distillation, distillation_step, train
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
    with step_progress(config.optim.steps, "student", job.progress) as on_step:
        summary = train(trained, distillation_step(trained, teacher, config), bags, config, device, on_step)
    teacher.cpu()
    extra = {"teacher": str(teacher_path.resolve())}
    checkpoint = save_run(job.out, student, "student", cache, config, summary, extra)
    summary.update(checkpoint=str(checkpoint), backbones=[name], teacher=str(teacher_path))
    return summary
