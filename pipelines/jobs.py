"""What each command is asked to do: one frozen dataclass per command. They are the one source of every
option's default: the command line's options and the YAML files in ``configs/`` mirror them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dakd import paths
from dakd.timeline import DEFAULT_SEGMENTS, DEFAULT_SNIPPET_FRAMES
from dakd.training import TrainConfig
from extractors.crops import CropMode
from extractors.runtime import Precision, Runtime

# The Student's backbone when none is named (chosen on the Ped2 dev splits, docs/results.md).
DEFAULT_STUDENT = "flow"


@dataclass(frozen=True)
class ExtractConfig:
    """``dakd extract`` (configs/extract.yaml mirrors it)."""

    videos: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ("i3d_max", "efficientnet_lite0", "flow")  # real weights offline (docs/results.md)
    cache: str = str(paths.DEFAULT_CACHE)
    crops: CropMode = "full"  # 1, 5, 10 or "full" (the whole frame, for fully convolutional backbones)
    snippet_frames: int = DEFAULT_SNIPPET_FRAMES
    image_frames: int | None = None  # image backbones: frames per snippet (None: each one's own default)
    device: str = "auto"
    runtime: Runtime = "auto"  # auto: OpenVINO on a CPU, PyTorch on a GPU
    precision: Precision = "auto"  # auto: bf16 where the hardware computes it natively, else fp32
    batch_size: int = 16  # clips (snippets x crops) per forward pass
    dtype: Literal["float16", "float32"] = "float16"
    weights: dict[str, str] = field(default_factory=dict)  # backbone -> explicit weights file
    random_weights: tuple[str, ...] = ()
    shard: str = ""  # "i/n"; empty: torchrun's RANK/WORLD_SIZE, or everything
    progress: bool = True


@dataclass(frozen=True)
class ImportJob:
    """``dakd import-features``."""

    family: Literal["rtfm", "wu", "vadclip"]
    lists: tuple[str, ...]
    cache: str = str(paths.DEFAULT_CACHE)
    dtype: Literal["float16", "float32"] = "float16"
    progress: bool = True


@dataclass(frozen=True)
class AnnotationsJob:
    """``dakd annotations``: a benchmark's ground truth -> the annotations CSV of a cache's videos."""

    dataset: Literal["ucf-crime", "xd-violence", "shanghaitech"]
    source: str
    cache: str = str(paths.DEFAULT_CACHE)
    out: str | None = None  # default: CACHE/annotations.csv
    videos: str | None = None  # count frames by decoding the videos found here
    convention: Literal["community", "inclusive"] = "community"


@dataclass(frozen=True)
class TrainJob:
    """``dakd train-teacher`` and ``dakd distill``: where a run reads and writes; hyperparameters in ``train``."""

    cache: str = str(paths.DEFAULT_CACHE)
    annotations: str | None = None
    split: str | None = None
    out: str = str(paths.DEFAULT_RUNS / "teacher")
    teacher: str = str(paths.DEFAULT_RUNS / "teacher" / "teacher.pt")  # distillation only
    train: TrainConfig = field(default_factory=TrainConfig)
    progress: bool = True


@dataclass(frozen=True)
class EvaluateJob:
    """``dakd evaluate``."""

    checkpoint: str = str(paths.DEFAULT_RUNS / "student" / "student.pt")
    cache: str = str(paths.DEFAULT_CACHE)
    annotations: str | None = None
    split: str | None = None
    out: str | None = None  # default: <checkpoint folder>/eval
    mapping: Literal["snippets", "segments"] = "snippets"
    protocol: Literal["dakd", "community"] = "dakd"
    crop: int | None = None  # None: mean over all crops
    threshold: float = 0.5
    device: str = "auto"
    plots: bool = True  # roc.png and pr.png
    progress: bool = True


@dataclass(frozen=True)
class ScoreJob:
    """``dakd score``."""

    videos: tuple[str, ...] = ()
    checkpoint: str | None = None  # default: the newest student.pt under ./runs
    out: str = "scores"
    annotations: str | None = None
    overlay: bool = False
    threshold: float | None = None  # None: the checkpoint's calibration, else 0.5
    crops: CropMode | None = None  # None: the crop mode the checkpoint was trained on ("full" or centre)
    mapping: Literal["snippets", "segments"] = "snippets"
    device: str = "auto"
    runtime: Runtime = "auto"
    precision: Precision = "auto"
    batch_size: int = 16
    weights: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CalibrateJob:
    """``dakd calibrate``: the threshold that gives a false-alarm rate on normal videos."""

    videos: tuple[str, ...] = ()
    checkpoint: str | None = None  # default: the newest student.pt under ./runs
    false_alarm_rate: float = 0.01
    window: int = DEFAULT_SEGMENTS  # the live scorer's window (dakd watch), for the live threshold
    device: str = "auto"
    runtime: Runtime = "auto"
    precision: Precision = "auto"
    batch_size: int = 16


@dataclass(frozen=True)
class WatchJob:
    """``dakd watch``: live sources scored as they arrive, with alerts."""

    sources: tuple[str, ...] = ()
    checkpoint: str | None = None  # default: the newest student.pt under ./runs
    threshold: float | None = None  # None: the checkpoint's live calibration, else 0.5
    release: float | None = None  # an alert closes below this (None: threshold - 0.1)
    min_duration: float = 1.0  # seconds above the threshold before an alert opens
    window: int = DEFAULT_SEGMENTS  # snippets the causal scorer looks back
    events: str | None = None  # JSON lines file (appended); None: standard output
    webhook: str | None = None  # POST every alert event here (JSON)
    record: str | None = None  # folder for each alert's clip (mp4) and score plot (png)
    pre_roll: float = 5.0  # seconds of video kept before an alert
    post_roll: float = 3.0  # seconds of video after it
    realtime: bool = False  # files: play at their native frame rate, as a camera would
    queue: int = 2  # snippets that may wait per source before the oldest is dropped
    duration: float | None = None  # stop after this many seconds (None: until the sources end or a signal)
    device: str = "auto"
    runtime: Runtime = "auto"
    precision: Precision = "auto"


@dataclass(frozen=True)
class QuantizeJob:
    """``dakd quantize``: INT8 OpenVINO models of a checkpoint's (or named) backbones, calibrated on normal videos."""

    videos: tuple[str, ...] = ()
    checkpoint: str | None = None  # default: the newest student.pt under ./runs (unless backbones are named)
    backbones: tuple[str, ...] = ()  # instead of a checkpoint's: these, with their pretrained weights
    crops: CropMode = "full"  # with backbones: the crop mode they will run in (a checkpoint knows its own)
    clips: int = 128  # calibration clips, spread evenly over the videos


@dataclass(frozen=True)
class ExportJob:
    """``dakd export``: a student's backbone and head as one OpenVINO or ONNX model."""

    checkpoint: str = str(paths.DEFAULT_RUNS / "student" / "student.pt")
    format: Literal["openvino", "onnx"] = "openvino"
    out: str = "export"
    frame_size: str | None = None  # "WIDTHxHEIGHT" of the videos; needed for whole-frame checkpoints


@dataclass(frozen=True)
class DemoConfig:
    """``dakd demo``: the generated dataset's shape and the training steps."""

    out: str = "demo"
    seed: int = 0
    train_normal: int = 5
    train_anomalous: int = 5
    test_normal: int = 3
    test_anomalous: int = 3
    frames: int = 96  # per video
    fps: float = 10.0
    backbones: tuple[str, ...] = ()  # the Teacher's views; empty: every one with real weights here
    student: str = DEFAULT_STUDENT
    crops: CropMode = "full"
    runtime: Runtime = "auto"
    precision: Precision = "auto"
    steps: int = 200
    progress: bool = True
