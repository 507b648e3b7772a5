"""Where and how backbones run: PyTorch or OpenVINO, in fp32 or bf16.

On a CPU the model runtime, not the hardware, decides the speed (docs/benchmark-runtime.md): OpenVINO
runs Inception-I3D about 2x faster than PyTorch eager, and bf16 doubles that again where the CPU computes
bf16 natively (AVX-512 BF16 or AMX). ``auto`` therefore means OpenVINO on a CPU and PyTorch on a GPU, and
bf16 where the CPU (or GPU) supports it, fp32 otherwise. Runtime and precision change features only at
the level of rounding (per-snippet cosine >= 0.999 against PyTorch fp32, tested), so they are recorded in
every manifest but do not make a cache incompatible.

OpenVINO models are converted from the PyTorch backbone once per input shape (the batch size stays
dynamic), saved as OpenVINO IR under ``$DAKD_HOME/compiled`` and compiled with OpenVINO's model cache
there, so a second run pays neither the conversion nor the compilation. Backbones that are not neural
networks (``flow``) run as they are under every runtime.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from dakd import __version__, paths
from dakd.errors import DakdError
from extractors.crops import CropMode
from extractors.registry import Backbone

log = logging.getLogger(__name__)

Runtime = Literal["auto", "torch", "openvino"]
Precision = Literal["auto", "fp32", "bf16"]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo's flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) is not None


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Execution:
    """A resolved runtime (``torch`` or ``openvino``) and precision (``fp32``, ``bf16``, or ``fp16`` on GPUs
    without bf16)."""

    runtime: str
    precision: str

    def record(self) -> dict[str, str]:
        return {"runtime": self.runtime, "precision": self.precision}


def choose_execution(runtime: str, precision: str, device: torch.device) -> Execution:
    """Resolve ``auto``: OpenVINO on a CPU, PyTorch on a GPU; bf16 where the hardware has it, else fp32."""
    if runtime not in ("auto", "torch", "openvino") or precision not in ("auto", "fp32", "bf16"):
        raise DakdError(f"--runtime {runtime} --precision {precision}: expected auto|torch|openvino and auto|fp32|bf16")
    if device.type == "cuda":
        if runtime == "openvino":
            raise DakdError("--runtime openvino runs on the CPU: pass --device cpu, or --runtime torch for the GPU")
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return Execution("torch", precision)
    if runtime == "auto":
        runtime = "openvino" if openvino_available() else "torch"
    elif runtime == "openvino" and not openvino_available():
        raise DakdError("--runtime openvino: the openvino package is not installed (pip install openvino)")
    if precision == "auto":
        precision = "bf16" if cpu_has_native_bf16() else "fp32"
    return Execution(runtime, precision)


def autocast(device: torch.device, execution: Execution):
    """The PyTorch autocast of a precision (nothing for fp32, and nothing for OpenVINO, which sets its own)."""
    if execution.runtime != "torch" or execution.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if execution.precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def prepare(model: Backbone, execution: Execution, name: str) -> Backbone:
    """``model`` as it runs under ``execution``: itself for PyTorch (and for backbones that are not networks),
    else an :class:`OpenVINOBackbone` around it."""
    if execution.runtime == "torch" or not model.is_network:
        return model
    return OpenVINOBackbone(model, execution.precision, name)


class OpenVINOBackbone(Backbone):
    """A backbone whose forward pass runs in OpenVINO; preprocessing, contract and weights stay the wrapped
    model's. One converted model per input shape ``[C, F, H, W]`` (any batch size), cached on disk."""

    def __init__(self, model: Backbone, precision: str, name: str):
        super().__init__()
        self.model, self.precision, self.name = model.cpu(), precision, name
        self.feature_dim, self.contract, self.weights_record = model.feature_dim, model.contract, model.weights_record
        self.compiled: dict[tuple[int, ...], object] = {}

    def frame_offsets(self, snippet_frames: int) -> list[int]:
        return self.model.frame_offsets(snippet_frames)

    def preprocess(self, frames: torch.Tensor, crops: CropMode) -> torch.Tensor:
        return self.model.preprocess(frames, crops)

    def ir_path(self, shape: tuple[int, ...]) -> Path:
        """Where the IR for one input shape lives; its name changes with anything that changes the network."""
        import openvino

        key = {
            "backbone": self.name,
            "weights": self.weights_record["sha256"],
            "contract": self.contract.to_dict(),
            "shape": shape,
            "dakd": __version__,
            "openvino": openvino.__version__,
            "torch": torch.__version__,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return paths.compiled_models_dir() / f"{self.name}-{'x'.join(map(str, shape))}-{digest}.xml"

    def compile(self, example: torch.Tensor):
        import openvino

        shape = tuple(example.shape[1:])
        path = self.ir_path(shape)
        if not path.exists():
            log.info("converting %s to OpenVINO for inputs %s (once; kept in %s)", self.name, shape, path.parent)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Tracing bakes in shape arithmetic (TF "SAME" padding): right for this input shape, which is the
            # only one this model serves.
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace, which OpenVINO uses, is deprecated
                converted = openvino.convert_model(self.model, example_input=example[:1], input=[(-1, *shape)])
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.xml")  # processes may convert at once
            openvino.save_model(converted, tmp, compress_to_fp16=False)
            tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
            tmp.replace(path)  # the .xml last: its presence means the pair is complete
        core = openvino.Core()
        config = {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32"}
        config["CACHE_DIR"] = str(paths.compiled_models_dir() / "openvino-cache")
        return core.compile_model(str(path), "CPU", config)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        shape = tuple(clips.shape[1:])
        if shape not in self.compiled:
            self.compiled[shape] = self.compile(clips.float().cpu())
        outputs = self.compiled[shape](clips.float().cpu().contiguous().numpy())
        return torch.from_numpy(outputs[0].copy())
