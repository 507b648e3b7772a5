"""Helpers of several commands' output (not a command itself): progress of training runs, warnings."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from tqdm import tqdm

from dakd.cache import FeatureCache


@contextlib.contextmanager
def step_progress(total: int, description: str, enabled: bool) -> Iterator[Callable[[int, dict[str, float]], None]]:
    """A progress bar over training steps; yields the ``on_step`` callback of :func:`dakd.training.fit`."""
    with tqdm(total=total, desc=description, unit="step", disable=not enabled) as bar:

        def on_step(index: int, losses: dict[str, float]) -> None:
            bar.update(1)
            if index % 10 == 0:
                bar.set_postfix(loss=f"{losses['loss']:.4f}", refresh=False)

        yield on_step


def random_weight_warnings(cache: FeatureCache, backbones: tuple[str, ...]) -> list[str]:
    """One warning per backbone whose cached features came from untrained (random) weights."""
    return [
        f"warning: {name} features in {cache.root} come from RANDOM weights (extracted with --random-weights)"
        for name in backbones
        if cache.has_random_weights(name)
    ]


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MB (Linux's VmHWM), or None where /proc does not tell."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return int(line.split()[1]) / 1024 if line else None
