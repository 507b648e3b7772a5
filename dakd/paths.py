"""Default locations and every environment variable dakd reads. No other module reads the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path("dakd-cache")
DEFAULT_RUNS = Path("runs")


def dakd_home() -> Path:
    """Root of dakd's own files (weights cache): ``$DAKD_HOME``, default ``~/.cache/dakd``."""
    return Path(os.environ.get("DAKD_HOME") or Path.home() / ".cache" / "dakd").expanduser()


def weights_dir() -> Path:
    return dakd_home() / "weights"


def downloads_allowed() -> bool:
    """False when the user (or the test suite) asked for no network: ``DAKD_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``."""
    return not any(os.environ.get(name, "") not in ("", "0") for name in ("DAKD_OFFLINE", "HF_HUB_OFFLINE"))


def torch_hub_checkpoints() -> Path:
    """Where ``torch.hub`` keeps downloaded checkpoints (``$TORCH_HOME/hub/checkpoints``)."""
    torch_home = (
        os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    )
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


@dataclass(frozen=True)
class DistributedEnv:
    """This process's place in a ``torchrun`` launch (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def distributed_env() -> DistributedEnv:
    if "WORLD_SIZE" not in os.environ:
        return DistributedEnv()
    return DistributedEnv(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def compiled_models_dir() -> Path:
    """Where converted and compiled models of the inference runtimes are kept (OpenVINO IR and its cache)."""
    return dakd_home() / "compiled"
