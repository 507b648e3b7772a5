"""Alerts on a stream of scores, and the threshold that gives a chosen false-alarm rate.

An alert opens when the score has stayed >= ``threshold`` for ``min_duration_s`` (it then starts where
that run started) and closes when the score falls below ``release`` (< threshold: hysteresis, so a score
hovering at the threshold does not open and close alerts all the time). A run shorter than
``min_duration_s`` never opens one. Times are stream times in seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dakd.errors import DakdError
from dakd.files import write_json

CALIBRATION_SUFFIX = ".calibration.json"


@dataclass(frozen=True)
class AlertPolicy:
    threshold: float = 0.5
    release: float | None = None  # None: threshold - 0.1
    min_duration_s: float = 1.0

    @property
    def release_level(self) -> float:
        return self.threshold - 0.1 if self.release is None else self.release


class AlertTracker:
    """Feed it each snippet's ``(start_s, end_s, score)``; it returns the alert events that snippet causes."""

    def __init__(self, policy: AlertPolicy):
        self.policy = policy
        self.run_start: float | None = None  # start of the current run of scores >= threshold
        self.open: dict | None = None

    def update(self, start_s: float, end_s: float, score: float) -> list[dict]:
        policy, events = self.policy, []
        if self.open is not None:
            if score < policy.release_level:
                events.append({**self.open, "event": "alert_close", "end_s": round(start_s, 3)})
                self.open, self.run_start = None, None
            else:
                self.open["peak"] = round(max(self.open["peak"], score), 6)
            return events
        if score < policy.threshold:
            self.run_start = None
            return events
        if self.run_start is None:
            self.run_start, self.peak = start_s, score
        self.peak = max(self.peak, score)
        if end_s - self.run_start >= policy.min_duration_s:
            self.open = {"event": "alert_open", "start_s": round(self.run_start, 3), "peak": round(self.peak, 6)}
            events.append(dict(self.open))
        return events

    def finish(self, end_s: float) -> list[dict]:
        """Close an alert still open when the stream ends."""
        if self.open is None:
            return []
        event, self.open = {**self.open, "event": "alert_close", "end_s": round(end_s, 3)}, None
        return [event]


def threshold_for_false_alarm_rate(normal_frame_scores: np.ndarray, rate: float) -> float:
    """The lowest threshold at which at most ``rate`` of the normal frames score >= it: the next number
    above the score that ``floor(rate * n) + 1`` frames reach, in the scores' own precision (NumPy compares
    a float32 array with a Python float in float32)."""
    if not 0 < rate < 1:
        raise DakdError(f"--false-alarm-rate {rate}: expected a rate between 0 and 1, e.g. 0.01")
    scores = np.sort(np.asarray(normal_frame_scores).ravel())
    allowed = int(np.floor(rate * len(scores)))  # frames that may score at or above the threshold
    return float(np.nextafter(scores[len(scores) - allowed - 1], np.array(np.inf, dtype=scores.dtype)))


def calibration_path(checkpoint: str | Path) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + CALIBRATION_SUFFIX)


def write_calibration(
    checkpoint: str | Path, threshold: float, live_threshold: float, rate: float, videos: list[str], frames: int
) -> Path:
    path = calibration_path(checkpoint)
    write_json(
        path,
        {
            "threshold": threshold,  # offline scores (dakd score)
            "live_threshold": live_threshold,  # causal scores (dakd watch)
            "false_alarm_rate": rate,
            "videos": videos,
            "frames": frames,
            "checkpoint": str(Path(checkpoint).resolve()),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    return path


def read_calibration(checkpoint: str | Path) -> dict | None:
    """The calibration stored next to a checkpoint, or None."""
    path = calibration_path(checkpoint)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DakdError(f"{path}: unreadable calibration ({error}); run dakd calibrate again") from None


def resolve_threshold(given: float | None, checkpoint: str | Path, key: str = "threshold") -> tuple[float, str]:
    """The threshold to use and where it came from: the one given, else the checkpoint's calibration (its
    ``key``: ``threshold`` for offline scores, ``live_threshold`` for causal ones), else 0.5."""
    if given is not None:
        return given, "given"
    calibration = read_calibration(checkpoint)
    if calibration is not None and key in calibration:
        rate = calibration["false_alarm_rate"]
        return float(
            calibration[key]
        ), f"calibrated for a {100 * rate:g} % false-alarm rate ({calibration_path(checkpoint)})"
    return 0.5, "default (no calibration: see dakd calibrate)"
