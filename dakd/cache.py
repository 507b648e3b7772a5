"""The feature cache: per (backbone, video) one array ``[crops, T, D]`` and a manifest, written atomically.

Layout of a cache folder::

    cache.json                      format, snippet_frames, crops: fixed for the whole cache
    <backbone>/backbone.json        backbone config: dims, dtype, weights sha256, preprocessing
    <backbone>/<video_id>.npy       features [crops, n_snippets, feature_dim]
    <backbone>/<video_id>.json      manifest of that video (written last: its presence means done)
    failures.jsonl                  one JSON line per video that could not be (fully) extracted

Video ids may contain ``/`` (videos in subfolders), which become subfolders here. Several processes
may write one cache at once: every file is written to a temporary name and moved into place with
``os.replace``, and the shared config files are created once and compared afterwards.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from dakd import __version__
from dakd.errors import DakdError
from dakd.files import atomic_write, write_json

CACHE_FORMAT = 1
CACHE_CONFIG = "cache.json"
BACKBONE_CONFIG = "backbone.json"
FAILURES = "failures.jsonl"
# Keys that may differ between runs writing the same cache without changing the features.
VOLATILE_KEYS = {"dakd_version", "created", "origin", "path", "verified", "execution"}


def _stable(config: Any) -> Any:
    """The part of a config that decides the features (drops versions, timestamps, file locations)."""
    if isinstance(config, dict):
        return {key: _stable(value) for key, value in config.items() if key not in VOLATILE_KEYS}
    return config


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    found = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: cache has {a!r}, this run has {b!r}")
    return found


class FeatureCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -- configuration shared by all writers ---------------------------------------------------------

    def _claim_config(self, path: Path, config: dict, what: str) -> None:
        """Create ``path`` with ``config`` unless it exists; refuse a config that differs from it."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
            try:
                os.link(tmp, path)  # atomic create-if-absent, safe between concurrent writers
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        existing = self._read_json(path)
        differences = _differences(_stable(existing), _stable(config))
        if differences:
            raise DakdError(
                f"{self.root}: refusing to mix {what} configs in one cache ({'; '.join(differences[:3])}); "
                "use another --cache folder, or delete the old features"
            )

    def claim(self, snippet_frames: int, crops: int | str) -> None:
        """Fix the cache's snippet length and crop mode (1, 5, 10 or "full"), or refuse a different one."""
        self._claim_config(
            self.root / CACHE_CONFIG,
            {
                "format": CACHE_FORMAT,
                "snippet_frames": snippet_frames,
                "crops": crops,
                "dakd_version": __version__,
            },
            "cache",
        )

    def claim_backbone(self, backbone: str, config: dict) -> None:
        self._claim_config(self.root / backbone / BACKBONE_CONFIG, {"backbone": backbone, **config}, f"{backbone!r}")

    def config(self) -> dict:
        path = self.root / CACHE_CONFIG
        if not path.exists():
            raise DakdError(f"{self.root}: not a dakd feature cache (no {CACHE_CONFIG}); run `dakd extract` first")
        return self._read_json(path)

    def backbone_config(self, backbone: str) -> dict:
        path = self.root / backbone / BACKBONE_CONFIG
        if not path.exists():
            raise DakdError(
                f"{self.root}: no {backbone!r} features in this cache (have: {', '.join(self.backbones()) or 'none'})"
            )
        return self._read_json(path)

    def backbones(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob(f"*/{BACKBONE_CONFIG}"))

    def has_random_weights(self, backbone: str) -> bool:
        """Whether ``backbone``'s features came from untrained weights (``--random-weights``)."""
        return bool(self.backbone_config(backbone)["weights"]["random"])

    # -- per-video features ---------------------------------------------------------------------------

    def _paths(self, backbone: str, video_id: str) -> tuple[Path, Path]:
        base = self.root / backbone / video_id
        return base.with_name(base.name + ".npy"), base.with_name(base.name + ".json")

    def manifest(self, backbone: str, video_id: str) -> dict | None:
        """The video's manifest, or None while its features are not (completely) written."""
        path = self._paths(backbone, video_id)[1]
        return self._read_json(path) if path.exists() else None

    def is_done(self, backbone: str, video_id: str, source: Path) -> bool:
        """True when features exist for this exact source file (same size and modification time)."""
        manifest = self.manifest(backbone, video_id)
        if manifest is None:
            return False
        stat = source.stat()
        return manifest["source_size"] == stat.st_size and manifest["source_mtime"] == stat.st_mtime

    def write(self, backbone: str, video_id: str, features: np.ndarray, manifest: dict) -> None:
        """Store ``features [crops, T, D]`` and then its manifest, each atomically."""
        array_path, manifest_path = self._paths(backbone, video_id)
        atomic_write(array_path, lambda handle: np.save(handle, features), mode="wb")
        manifest = {
            **manifest,
            "video_id": video_id,
            "backbone": backbone,
            "shape": list(features.shape),
            "dtype": str(features.dtype),
            "dakd_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json(manifest_path, manifest)

    def read(self, backbone: str, video_id: str) -> np.ndarray:
        """Features ``[crops, T, D]``, memory-mapped (read-only)."""
        array_path = self._paths(backbone, video_id)[0]
        if self.manifest(backbone, video_id) is None:
            raise DakdError(f"{self.root}: no {backbone!r} features for video {video_id!r}")
        return np.load(array_path, mmap_mode="r")

    def video_ids(self, backbone: str) -> list[str]:
        folder = self.root / backbone
        ids = [p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.json")]
        return sorted(i for i in ids if i != Path(BACKBONE_CONFIG).stem)

    # -- failures ---------------------------------------------------------------------------------------

    def record_failure(self, path: str, video_id: str | None, error_type: str, message: str) -> None:
        """Append one line to failures.jsonl (a single ``write`` on an O_APPEND file: safe between processes)."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            {
                "path": path,
                "video_id": video_id,
                "error_type": error_type,
                "message": message,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        fd = os.open(self.root / FAILURES, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def failures(self) -> list[dict]:
        path = self.root / FAILURES
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    @staticmethod
    def _read_json(path: Path) -> dict:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise DakdError(f"{path}: unreadable cache file ({error})") from None
