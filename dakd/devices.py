"""Which device runs the models."""

from __future__ import annotations

import torch

from dakd import paths
from dakd.errors import DakdError


def choose_device(name: str) -> torch.device:
    """``auto``: this rank's GPU when there is one, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", paths.distributed_env().local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DakdError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DakdError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
