"""``dakd export``: a Student checkpoint's backbone and head as one model for a plain inference runtime.

The exported model takes the preprocessed clips of one video, ``[T, *clip]`` (T snippets, any number),
and returns the T snippet scores: it is ``dakd score`` without the decoding and the preprocessing, which
``export.json`` describes so that a user can do them with PyAV and numpy alone (README, "Exporting").
Formats: OpenVINO IR (``model.xml`` + ``model.bin``) and ONNX (``model.onnx``), both fp32.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dakd.checkpoint import load_checkpoint
from dakd.errors import DakdError, first_line
from dakd.files import write_json
from dakd.models import AnomalyModel
from extractors.backbones import checkpoint_backbones
from extractors.registry import Backbone
from pipelines.jobs import ExportJob


class ClipScorer(nn.Module):
    """Preprocessed clips of one video ``[T, *clip]`` -> snippet scores ``[T]``: backbone, then head."""

    def __init__(self, backbone: Backbone, head: AnomalyModel, name: str):
        super().__init__()
        self.backbone, self.head, self.name = backbone, head, name

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head({self.name: self.backbone(clips)[None]}).scores[0]


@dataclass
class ExportSummary:
    model: Path
    description: Path
    clip_shape: list[int]


def clip_shape(backbone: Backbone, meta: dict, frame_size: str | None) -> list[int]:
    """The shape of one preprocessed clip; in the ``full`` crop mode it follows the videos' frame size."""
    frames = len(backbone.frame_offsets(meta["snippet_frames"]))
    size = backbone.contract.crop_size
    example = torch.zeros(1, frames, size, size, 3, dtype=torch.uint8)  # a centre crop's shape is fixed
    if meta["crops"] == "full":
        if not frame_size:
            raise DakdError("this checkpoint scores whole frames: give the videos' size, e.g. --frame-size 640x480")
        try:
            width, height = (int(part) for part in frame_size.lower().split("x"))
        except ValueError:
            raise DakdError(f"--frame-size {frame_size!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
        example = torch.zeros(1, frames, height, width, 3, dtype=torch.uint8)
    crops = "full" if meta["crops"] == "full" else 1
    return list(backbone.preprocess(example, crops).shape[2:])


def convert(scorer: ClipScorer, example: torch.Tensor, shape: list[int], format: str, out: Path) -> Path:
    """Write ``scorer`` as ``out/model.onnx`` or ``out/model.xml`` (+ .bin), with a dynamic snippet count."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape arithmetic is fixed by the clip shape
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter (dynamo=False) is deprecated
        warnings.simplefilter("ignore", FutureWarning)  # and so is torch.jit.trace, which OpenVINO uses
        if format == "onnx":
            path = out / "model.onnx"
            torch.onnx.export(
                scorer,
                (example,),
                str(path),
                input_names=["clips"],
                output_names=["scores"],
                dynamic_axes={"clips": {0: "snippets"}, "scores": {0: "snippets"}},
                opset_version=17,
                dynamo=False,
            )
            return path
        import openvino

        path = out / "model.xml"
        converted = openvino.convert_model(scorer, example_input=example, input=[(-1, *shape)])
        openvino.save_model(converted, path, compress_to_fp16=False)
        return path


def run(job: ExportJob) -> ExportSummary:
    checkpoint = Path(job.checkpoint)
    head, meta = load_checkpoint(checkpoint)
    if len(head.names) != 1:
        raise DakdError(
            f"{checkpoint}: a {len(head.names)}-backbone {meta['kind']}; export takes a one-backbone student"
        )
    name = head.names[0]
    backbone = checkpoint_backbones(meta)[name]
    if not backbone.is_network:
        raise DakdError(f"{name} is computed with OpenCV, not a network: it cannot be exported as one model")
    shape = clip_shape(backbone, meta, job.frame_size)
    scorer = ClipScorer(backbone, head, name).eval()
    example = torch.randn(3, *shape)
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        model_path = convert(scorer, example, shape, job.format, out)
    except (ImportError, RuntimeError, ValueError) as error:  # a missing converter or an unsupported operation
        raise DakdError(f"{checkpoint}: cannot export as {job.format} ({first_line(error)})") from None
    backbone_record = meta["backbones"][name]
    description = {
        "format": job.format,
        "model": model_path.name,
        "input": {"name": "clips", "shape": ["snippets", *shape], "dtype": "float32"},
        "output": {"name": "scores", "shape": ["snippets"], "range": "[0, 1], one per snippet"},
        "backbone": name,
        "snippet_frames": meta["snippet_frames"],
        "frames_of_a_snippet": backbone.frame_offsets(meta["snippet_frames"]),
        "crops": "full" if meta["crops"] == "full" else "centre",
        "frame_size": job.frame_size,
        "preprocessing": backbone_record["preprocessing"],
        "checkpoint": str(checkpoint.resolve()),
        "weights_sha256": backbone_record["weights_sha256"],
        "precision": "fp32",
    }
    description_path = out / "export.json"
    write_json(description_path, description)
    return ExportSummary(model_path, description_path, shape)
