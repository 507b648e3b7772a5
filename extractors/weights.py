"""Finding, verifying and loading backbone weights.

Resolution order for a backbone: an explicit file (``--weights NAME=PATH``), then the dakd weights cache
(``$DAKD_HOME/weights``, with ``manifest.json`` recording each file's sha256), then the caches the
library itself uses (torch hub, Hugging Face), then the library's standard download when downloads are
allowed. If nothing is found the error names the file, the places searched and how to get it. Random
weights are used only when asked for (``--random-weights``), and are then recorded as such.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dakd import paths
from dakd.cache import write_json
from dakd.errors import DakdError
from extractors.registry import Backbone, backbone_entry, build_random, state_dict_sha256

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest() -> dict[str, dict]:
    """The weights cache manifest: backbone name -> {path, sha256, source, added}."""
    manifest = paths.weights_dir() / MANIFEST_NAME
    if not manifest.exists():
        return {}
    try:
        return json.loads(manifest.read_text())
    except json.JSONDecodeError as error:
        raise DakdError(f"{manifest}: not valid JSON ({error}); delete it and import the weights again") from None


def record_in_cache(backbone: str, path: Path, source: str, sha256: str | None = None) -> dict:
    """Record a weights file of the dakd cache in the manifest (its sha256 is computed when not given)."""
    entry = {
        "path": str(path.resolve().relative_to(paths.weights_dir().resolve()))
        if path.resolve().is_relative_to(paths.weights_dir().resolve())
        else str(path.resolve()),
        "sha256": sha256 or file_sha256(path),
        "source": source,
        "added": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    manifest = read_manifest()
    manifest[backbone] = entry
    write_json(paths.weights_dir() / MANIFEST_NAME, manifest)
    return entry


@dataclass(frozen=True)
class ResolvedWeights:
    """Which weights a backbone will use. ``path`` is None for random weights.

    ``verified``: True when the file's sha256 matches the checksum on record (the cache manifest or the
    published one), False never (a mismatch is an error), None when there is nothing to compare with.
    """

    backbone: str
    path: Path | None
    origin: str  # explicit | dakd-cache | library-cache | download | random
    sha256: str
    verified: bool | None

    @property
    def random(self) -> bool:
        return self.path is None


def _cache_candidate(backbone: str) -> Path | None:
    entry = read_manifest().get(backbone)
    if entry:
        return paths.weights_dir() / entry["path"]
    return None


def _verify(backbone: str, path: Path, expected: str | None, origin: str) -> ResolvedWeights:
    sha = file_sha256(path)
    # ``expected`` may be a prefix: torchvision publishes the first 8 hex digits in the file name.
    if expected is not None and not sha.startswith(expected):
        raise DakdError(
            f"{path}: sha256 {sha[:12]}... does not match the recorded {expected[:12]}... for backbone "
            f"{backbone!r}; the file is corrupt or not these weights: delete it and obtain it again"
        )
    return ResolvedWeights(backbone, path, origin, sha, verified=expected is not None)


def reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether an HTTPS connection to ``host`` opens within ``timeout`` seconds."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_weights(
    backbone: str, explicit: Path | None = None, random: bool = False, allow_download: bool = True
) -> ResolvedWeights:
    """Find the weights ``backbone`` will use (see the module docstring for the order)."""
    entry = backbone_entry(backbone)
    spec = entry.weights
    if random:
        return ResolvedWeights(backbone, None, "random", "", None)
    if spec is None:
        raise DakdError(
            f"backbone {backbone!r} has no pretrained weights (it is a test variant); "
            f"pass --random-weights {backbone} to use it untrained"
        )
    if explicit is not None:
        explicit = Path(explicit).expanduser()
        if not explicit.is_file():
            raise DakdError(f"{explicit}: weights file for backbone {backbone!r} not found")
        # The user chose this file: a checksum that differs from the published one is reported, not refused.
        sha = file_sha256(explicit)
        matches = spec.sha256 is not None and sha.startswith(spec.sha256)
        if spec.sha256 is not None and not matches:
            log.warning(
                "%s: not the published %s weights (sha256 %s...); using it as given",
                explicit,
                backbone,
                sha[:12],
            )
        return ResolvedWeights(backbone, explicit, "explicit", sha, verified=True if matches else None)

    searched = [f"--weights {backbone}=PATH (not given)"]
    cached = _cache_candidate(backbone) or paths.weights_dir() / spec.file_name
    searched.append(str(cached))
    if cached.is_file():
        recorded = read_manifest().get(backbone)
        if recorded is None:  # a file copied into the cache by hand: record it now
            recorded = record_in_cache(backbone, cached, source="copied into the cache")
        return _verify(backbone, cached, recorded["sha256"], "dakd-cache")
    for location in spec.known_locations():
        searched.append(str(location))
        if location.is_file():
            return _verify(backbone, location, spec.sha256, "library-cache")

    if spec.download is None:
        download_note = "no automatic download exists"
    elif not allow_download:
        download_note = "not downloaded here"
    elif not paths.downloads_allowed():
        download_note = "downloads are disabled (DAKD_OFFLINE or HF_HUB_OFFLINE is set)"
    elif spec.download_host and not reachable(spec.download_host):
        download_note = f"{spec.download_host} cannot be reached from this machine"
    else:
        try:
            downloaded = spec.download(paths.weights_dir())
        except (OSError, RuntimeError, ValueError) as error:  # network and hub errors
            download_note = f"download from {spec.source} failed: {str(error).splitlines()[0][:200]}"
        else:
            recorded = read_manifest().get(backbone) or record_in_cache(backbone, downloaded, source=spec.source)
            return _verify(backbone, downloaded, recorded["sha256"], "download")
    raise DakdError(
        f"no weights for backbone {backbone!r}: expected {spec.file_name}; searched {', '.join(searched)}; "
        f"{download_note}. To get them: {spec.instructions}. "
        f"Or pass --random-weights {backbone} for untrained features (tests, demos)."
    )


def load_backbone(
    weights: ResolvedWeights, device: torch.device | str = "cpu", **options: object
) -> tuple[Backbone, dict]:
    """Build the backbone with the resolved weights; returns it (eval mode, on ``device``) and the record
    stored in every cache manifest: ``{origin, path, sha256, verified, random}``.

    ``options`` are the backbone builder's keyword arguments (e.g. ``frames`` for CLIP).
    """
    model = build_random(weights.backbone, **options)
    if weights.path is not None:
        try:
            model.load_weights(weights.path)
        except (RuntimeError, KeyError, ValueError, OSError, EOFError) as error:
            first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise DakdError(f"{weights.path}: cannot load as {weights.backbone!r} weights ({first_line})") from None
    sha = weights.sha256 or state_dict_sha256(model)
    record = {
        "origin": weights.origin,
        "path": str(weights.path) if weights.path else None,
        "sha256": sha,
        "verified": weights.verified,
        "random": weights.random,
    }
    return model.eval().to(device, memory_format=model.memory_format), record


def import_weights(backbone: str, source: Path) -> Path:
    """Put a user-supplied weights file into the dakd cache and record its sha256.

    The file is converted by the backbone's importer when it has one (i3d), else it is checked to load
    into the backbone and copied. Returns the stored file.
    """
    spec = backbone_entry(backbone).weights
    source = Path(source).expanduser()
    if spec is None:
        raise DakdError(f"backbone {backbone!r} is a test variant and takes no pretrained weights")
    if not source.is_file():
        raise DakdError(f"{source}: no such file")
    if spec.importer is not None:
        return spec.importer(source)
    load_backbone(ResolvedWeights(backbone, source, "explicit", "", None))  # fails clearly if it does not fit
    target = paths.weights_dir() / (Path(spec.file_name).stem + source.suffix)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    record_in_cache(backbone, target, source=f"imported from {source.resolve()}")
    return target
