"""``dakd train-teacher``: the multi-backbone Teacher with the Temporal Aggregation Module, MIL objective
on segment bags, video-level labels only."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm import tqdm

from dakd.bags import load_bags
from dakd.cache import FeatureCache
from dakd.checkpoint import save_run
from dakd.devices import choose_device
from dakd.errors import DakdError
from dakd.models import build_model
from dakd.training import teacher_step, train
from pipelines.common import random_weight_warnings, step_progress
from pipelines.jobs import TrainJob


def real_backbones(cache: FeatureCache) -> tuple[str, ...]:
    """The Teacher's default views: every backbone of the cache whose features come from real weights."""
    extracted = cache.backbones()
    if not extracted:
        raise DakdError(f"{cache.root}: no features; run dakd extract first")
    real = tuple(name for name in extracted if not cache.has_random_weights(name))
    if not real:
        raise DakdError(
            f"{cache.root}: every backbone's features come from random weights ({', '.join(extracted)}); "
            f"to train on them anyway, name them: --set backbones=[{','.join(extracted)}]"
        )
    return real


def run(job: TrainJob, report: Callable[[str], None] = tqdm.write) -> dict:
    """Train the Teacher; writes ``teacher.pt``, ``config.yaml`` and ``history.json`` to ``job.out``."""
    config = job.train
    cache = FeatureCache(job.cache)
    backbones = config.backbones or real_backbones(cache)
    bags = load_bags(cache, backbones, job.annotations, job.split, config.segments)
    for line in random_weight_warnings(cache, backbones):
        report(line)
    torch.manual_seed(config.seed)
    model = build_model({name: cache.backbone_config(name)["feature_dim"] for name in backbones}, config.model)
    report(
        f"training the teacher on {len(bags)} videos ({int(bags.labels.sum())} anomalous), "
        f"backbones {', '.join(backbones)}"
    )
    with step_progress(config.optim.steps, "teacher", job.progress) as on_step:
        summary = train(model, teacher_step(model, config), bags, config, choose_device(config.device), on_step)
    checkpoint = save_run(job.out, model, "teacher", cache, config, summary)
    summary.update(checkpoint=str(checkpoint), backbones=list(backbones))
    return summary
