"""``dakd demo``: a synthetic surveillance dataset with known anomalous frames, and the whole pipeline on it.

The scene is a fixed camera over a plaza: a lawn, a walkway across it, benches, sensor noise. People
walk along the walkway at a normal pace (normal). Anomalous videos add one event with known frames:

* ``fast``: something crosses along the walkway several times faster than anyone walks (a cyclist);
* ``lawn``: a person crosses the lawn, where nobody walks;
* ``left_object``: a bag appears on the walkway and stays until the end.

Everything is deterministic given the seed. The dataset is written in dakd's formats: ``videos/*.mp4``,
``annotations.csv`` (1-based inclusive anomalous frames) and ``splits/{train,test}.txt``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dakd.annotations import VideoAnnotation, write_annotations
from dakd.config import load_config
from dakd.errors import DakdError
from dakd.training import TrainConfig
from extractors.backbones import find_weights
from extractors.video_io import write_video
from pipelines.jobs import DemoConfig, EvaluateJob, ExtractConfig, ScoreJob, TrainJob

# Square frames: the backbones' centre crops then see (almost) the whole scene.
WIDTH, HEIGHT = 240, 240
PATH_TOP, PATH_BOTTOM = 100, 140  # the walkway's rows
EVENTS = ("fast", "lawn", "left_object")


def background(rng: np.random.Generator) -> np.ndarray:
    """Lawn with texture, a paved walkway across it, two benches."""
    lawn = np.array([70, 120, 60], np.float32) + rng.normal(0, 8, (HEIGHT // 4, WIDTH // 4, 3)).repeat(4, 0).repeat(
        4, 1
    )
    frame = lawn
    frame[PATH_TOP:PATH_BOTTOM] = np.array([150, 145, 135], np.float32) + rng.normal(
        0, 4, (PATH_BOTTOM - PATH_TOP, WIDTH, 3)
    )
    for x in (40, 160):
        frame[PATH_TOP - 18 : PATH_TOP - 10, x : x + 36] = (90, 60, 40)
    return frame


def draw_person(frame: np.ndarray, x: float, y: float, colour: tuple[int, int, int], step: int) -> None:
    """A 10x24 figure standing at (x, y) = feet position; legs alternate with ``step``."""
    x, y = int(x), int(y)
    frame[max(y - 24, 0) : max(y - 8, 0), max(x - 4, 0) : max(x + 4, 0)] = colour  # body
    frame[max(y - 30, 0) : max(y - 24, 0), max(x - 3, 0) : max(x + 3, 0)] = (225, 190, 160)  # head
    offset = 2 if step % 2 else -2
    frame[max(y - 8, 0) : y, max(x - 3 + offset, 0) : max(x - 1 + offset, 0)] = (40, 40, 60)
    frame[max(y - 8, 0) : y, max(x + 1 - offset, 0) : max(x + 3 - offset, 0)] = (40, 40, 60)


@dataclass
class Walker:
    start: int
    x0: float
    y: float
    speed: float  # pixels per frame, signed
    colour: tuple[int, int, int]
    vertical: bool = False

    def position(self, frame: int) -> tuple[float, float] | None:
        t = frame - self.start
        if t < 0:
            return None
        moved = self.x0 + self.speed * t
        if self.vertical:
            return (self.y, moved) if -30 <= moved <= HEIGHT + 30 else None
        return (moved, self.y) if -20 <= moved <= WIDTH + 20 else None


def make_video(
    rng: np.random.Generator, frames: int, fps: float, event: str | None, base: np.ndarray | None = None
) -> tuple[list[np.ndarray], tuple]:
    """The frames of one video and its anomalous interval (1-based inclusive), or () for a normal video.
    ``base``: the scene (one fixed camera: the same for every video of a dataset); a new one if None."""
    base = background(rng) if base is None else base
    walkers = []
    for _ in range(rng.integers(3, 6)):
        direction = rng.choice([-1.0, 1.0])
        walkers.append(
            Walker(
                start=int(rng.integers(-60, frames - 20)),
                x0=-10.0 if direction > 0 else WIDTH + 10.0,
                y=float(rng.uniform(PATH_TOP + 12, PATH_BOTTOM)),
                speed=direction * float(rng.uniform(1.5, 3.0)) * 10.0 / fps,
                colour=tuple(int(c) for c in rng.integers(40, 230, 3)),
            )
        )
    interval: tuple = ()
    anomaly = None
    bag = None
    if event is not None:
        start = int(rng.integers(frames // 6, frames // 2))
        if event == "fast":
            direction = rng.choice([-1.0, 1.0])
            speed = direction * float(rng.uniform(14, 20)) * 10.0 / fps
            anomaly = Walker(
                start,
                -10.0 if direction > 0 else WIDTH + 10.0,
                float(rng.uniform(PATH_TOP + 15, PATH_BOTTOM)),
                speed,
                (230, 40, 40),
            )
        elif event == "lawn":
            direction = rng.choice([-1.0, 1.0])
            anomaly = Walker(
                start,
                -30.0 if direction > 0 else HEIGHT + 30.0,
                float(rng.uniform(50, WIDTH - 50)),
                direction * 2.5 * 10.0 / fps,
                (40, 40, 220),
                vertical=True,
            )
        else:
            bag = (start, int(rng.uniform(50, WIDTH - 50)), int(rng.uniform(PATH_TOP + 14, PATH_BOTTOM - 2)))
    video = []
    visible = []
    for index in range(frames):
        frame = base.copy()
        for walker in walkers:
            where = walker.position(index)
            if where:
                draw_person(frame, *where, walker.colour, index // 2)
        shown = False
        if anomaly is not None and (where := anomaly.position(index)):
            draw_person(frame, *where, anomaly.colour, index)
            shown = 0 <= where[0] <= WIDTH and 0 <= where[1] <= HEIGHT + 24
        if bag is not None and index >= bag[0]:
            frame[bag[2] - 12 : bag[2], bag[1] - 8 : bag[1] + 8] = (30, 30, 30)
            shown = True
        visible.append(shown)
        noise = rng.normal(0, 3, frame.shape)
        video.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
    if any(visible):
        first = visible.index(True)
        last = len(visible) - 1 - visible[::-1].index(True)
        interval = ((first + 1, last + 1),)
    return video, interval


def generate_dataset(config: DemoConfig, report: Callable[[str], None] = lambda m: None) -> Path:
    """Write the synthetic dataset under ``config.out/data``; returns that folder."""
    root = Path(config.out) / "data"
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "splits").mkdir(exist_ok=True)
    rng = np.random.default_rng(config.seed)
    scene = background(rng)  # one fixed camera: every video shows the same plaza
    annotations, splits = [], {"train": [], "test": []}
    plan = [
        ("train", None, config.train_normal),
        ("train", "anomalous", config.train_anomalous),
        ("test", None, config.test_normal),
        ("test", "anomalous", config.test_anomalous),
    ]
    for split, kind, count in plan:
        for index in range(count):
            event = EVENTS[index % len(EVENTS)] if kind else None
            name = f"{split}_{event or 'normal'}_{index:02d}"
            frames, interval = make_video(rng, config.frames, config.fps, event, scene)
            if event and not interval:
                raise DakdError(f"demo video {name}: its anomaly never became visible (seed {config.seed})")
            write_video(root / "videos" / f"{name}.mp4", frames, fps=config.fps)
            annotations.append(VideoAnnotation(name, int(bool(event)), interval, config.frames, config.fps))
            splits[split].append(name)
    write_annotations(annotations, root / "annotations.csv")
    for split, names in splits.items():
        (root / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    report(f"dataset: {len(annotations)} videos in {root} (annotations.csv, splits/train.txt, splits/test.txt)")
    return root


@dataclass
class DemoResult:
    data: Path
    metrics: dict[str, dict] = field(default_factory=dict)
    score_outputs: list[str] = field(default_factory=list)
    views: tuple[str, ...] = ()  # the Teacher's views (real weights only)
    student: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


Report = Callable[[str], None]
# The demo's Teacher takes every one of these views whose real weights are on the machine (flow needs none).
DEMO_VIEWS = ("i3d_max", "s3d", "clip", "efficientnet_lite0", "flow")


def real_views(candidates: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """The candidates whose pretrained weights are found (or that need none), and the others."""
    found, missing = [], []
    for name in candidates:
        try:
            find_weights(name)
            found.append(name)
        except DakdError:
            missing.append(name)
    return tuple(found), missing


@dataclass(frozen=True)
class Commands:
    """The commands the demo chains, handed over by the command line: a command module never imports another."""

    extract: Callable[[ExtractConfig, Report], Any]
    train_teacher: Callable[[TrainJob, Report], dict]
    distill: Callable[[TrainJob, Report], dict]
    evaluate: Callable[[EvaluateJob, Report], dict]
    score: Callable[[ScoreJob, Report], list[dict]]


def run(config: DemoConfig, commands: Commands, report: Report = tqdm.write) -> DemoResult:
    """Generate the dataset, then extract -> train-teacher -> distill -> evaluate -> score."""
    out = Path(config.out)
    clock = time.perf_counter()
    data = generate_dataset(config, report)
    result = DemoResult(data)
    result.seconds["dataset"] = time.perf_counter() - clock
    views, missing = real_views(config.backbones or DEMO_VIEWS)
    if missing:
        report(f"left out (no pretrained weights on this machine; see `dakd weights list`): {', '.join(missing)}")
    if not views:
        raise DakdError("no backbone with pretrained weights, not even a parameter-free one: nothing to run")
    student_backbone = config.student if config.student in views else views[0]
    if student_backbone != config.student:
        report(f"student: {config.student} has no pretrained weights here, the student uses {student_backbone}")
    result.views, result.student = views, student_backbone
    cache = str(out / "cache")
    clock = time.perf_counter()
    summary = commands.extract(
        ExtractConfig(
            videos=(str(data / "videos"),),
            backbones=views,
            cache=cache,
            crops=config.crops,
            runtime=config.runtime,
            precision=config.precision,
            progress=config.progress,
        ),
        report,
    )
    if summary.failed:
        raise DakdError(f"extraction failed for {len(summary.failed)} demo video(s); see {cache}/failures.jsonl")
    result.seconds["extract"] = time.perf_counter() - clock
    annotations = str(data / "annotations.csv")
    train_split, test_split = str(data / "splits" / "train.txt"), str(data / "splits" / "test.txt")
    steps = [f"optim.steps={config.steps}", f"seed={config.seed}"]
    clock = time.perf_counter()

    def job(name: str, overrides: list[str], **teacher: str) -> TrainJob:
        return TrainJob(
            cache=cache,
            annotations=annotations,
            split=train_split,
            out=str(out / "runs" / name),
            train=load_config(TrainConfig, None, [*steps, *overrides]),
            progress=config.progress,
            **teacher,
        )

    teacher = commands.train_teacher(job("teacher", []), report)
    student_job = job("student", [f"backbones=[{student_backbone}]"], teacher=teacher["checkpoint"])
    student = commands.distill(student_job, report)
    result.seconds["train"] = time.perf_counter() - clock
    clock = time.perf_counter()
    for kind, checkpoint in (("teacher", teacher["checkpoint"]), ("student", student["checkpoint"])):
        result.metrics[kind] = commands.evaluate(
            EvaluateJob(checkpoint=checkpoint, cache=cache, annotations=annotations, split=test_split, progress=False),
            report,
        )
    test_video = next(v for v in (data / "splits" / "test.txt").read_text().split() if "normal" not in v)
    scored = commands.score(
        ScoreJob(
            videos=(str(data / "videos" / f"{test_video}.mp4"),),
            checkpoint=student["checkpoint"],
            out=str(out / "scores"),
            annotations=annotations,
            runtime=config.runtime,
            precision=config.precision,
        ),
        report,
    )
    result.score_outputs = scored[0].get("outputs", [])
    result.seconds["evaluate_and_score"] = time.perf_counter() - clock
    return result
