"""Self-describing checkpoints: everything ``score`` needs to rebuild the model from the file alone.

A checkpoint is a plain dict of tensors and JSON-like values, so it loads with
``torch.load(path, weights_only=True)``: architecture config, backbones (feature width, weights
sha256, preprocessing, builder options), snippet length, crops, the resolved training config, the
dakd version and the state dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dakd import __version__, paths
from dakd.cache import FeatureCache
from dakd.config import from_dict, save_config, to_dict
from dakd.errors import DakdError, first_line
from dakd.files import atomic_write, write_json
from dakd.models import AnomalyModel, ModelConfig, build_model

FORMAT = "dakd-checkpoint/1"


def backbone_records(cache: FeatureCache, backbones: tuple[str, ...]) -> dict[str, dict]:
    """What a checkpoint records of each backbone, from the cache's backbone configs."""
    records = {}
    for name in backbones:
        config = cache.backbone_config(name)
        records[name] = {
            "feature_dim": config["feature_dim"],
            "weights_sha256": config["weights"]["sha256"],
            "random_weights": config["weights"]["random"],
            "preprocessing": config["preprocessing"],
            "options": config.get("options", {}),
        }
    return records


def save_checkpoint(
    path: Path,
    model: AnomalyModel,
    kind: str,
    cache: FeatureCache,
    train_config: Any,
    extra: dict[str, Any] | None = None,
) -> None:
    cache_config = cache.config()
    payload = {
        "format": FORMAT,
        "kind": kind,
        "dakd_version": __version__,
        "model_config": to_dict(model.config),
        "backbones": backbone_records(cache, model.names),
        "snippet_frames": cache_config["snippet_frames"],
        "crops": cache_config["crops"],
        "train_config": to_dict(train_config),
        "extra": extra or {},
        "state_dict": model.state_dict(),
    }
    atomic_write(path, lambda handle: torch.save(payload, handle), mode="wb")


def save_run(
    out: str | Path,
    model: AnomalyModel,
    kind: str,
    cache: FeatureCache,
    config: Any,
    summary: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a training run to ``out``: ``<kind>.pt``, ``config.yaml`` and ``history.json``; returns the checkpoint."""
    out = Path(out)
    checkpoint = out / f"{kind}.pt"
    recorded = {**{k: v for k, v in summary.items() if k != "history"}, **(extra or {})}
    save_checkpoint(checkpoint, model, kind, cache, config, recorded)
    save_config(config, out / "config.yaml")
    write_json(out / "history.json", summary["history"])
    return checkpoint


def load_checkpoint(path: str | Path) -> tuple[AnomalyModel, dict[str, Any]]:
    """The model (eval mode, CPU) and the checkpoint's metadata."""
    path = Path(path)
    if not path.is_file():
        raise DakdError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure means "not a dakd checkpoint"
        raise DakdError(f"{path}: not a dakd checkpoint ({first_line(error)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DakdError(
            f"{path}: not a dakd checkpoint (format {payload.get('format') if isinstance(payload, dict) else '?'})"
        )
    config = from_dict(ModelConfig, payload["model_config"], f"{path} model_config")
    dims = {name: record["feature_dim"] for name, record in payload["backbones"].items()}
    model = build_model(dims, config)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    meta = {key: value for key, value in payload.items() if key != "state_dict"}
    return model, meta


def check_against_cache(meta: dict[str, Any], cache: FeatureCache, path: Path | str) -> None:
    """Refuse a cache whose features do not fit the checkpoint (backbones, widths, snippet length)."""
    cache_config = cache.config()
    problems = []
    if cache_config["snippet_frames"] != meta["snippet_frames"]:
        problems.append(f"snippet_frames {cache_config['snippet_frames']} vs {meta['snippet_frames']}")
    have = cache.backbones()
    for name, record in meta["backbones"].items():
        if name not in have:
            problems.append(f"no {name!r} features")
            continue
        config = cache.backbone_config(name)
        if config["feature_dim"] != record["feature_dim"]:
            problems.append(f"{name} width {config['feature_dim']} vs {record['feature_dim']}")
        elif config["weights"]["sha256"] != record["weights_sha256"]:
            problems.append(
                f"{name} weights sha256 {config['weights']['sha256'][:12]} vs {record['weights_sha256'][:12]}"
            )
    if problems:
        raise DakdError(f"{path} does not match the cache {cache.root}: {'; '.join(problems)}")


def newest_checkpoint(runs: Path = paths.DEFAULT_RUNS) -> Path:
    """The newest ``student.pt`` under ``runs`` (then the newest ``teacher.pt``)."""
    for name in ("student.pt", "teacher.pt"):
        found = sorted(runs.rglob(name), key=lambda p: p.stat().st_mtime) if runs.is_dir() else []
        if found:
            return found[-1]
    raise DakdError(
        f"no checkpoint given and none under {runs}/: train one (dakd train-teacher, then dakd distill) "
        "or pass --checkpoint PATH"
    )
