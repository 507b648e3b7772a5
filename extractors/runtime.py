"""Where and how backbones run: PyTorch or OpenVINO, in fp32 or bf16 (and OpenVINO in INT8, see ``quantize``).

On a CPU the model runtime, not the hardware, decides the speed (docs/benchmark-score.md): OpenVINO
runs Inception-I3D about 2x faster than PyTorch eager, and bf16 doubles that again where the CPU computes
bf16 natively (AVX-512 BF16 or AMX). ``auto`` therefore means OpenVINO on a CPU and PyTorch on a GPU, and
bf16 where the CPU (or GPU) supports it, fp32 otherwise. Runtime and precision change features only at
the level of rounding (per-snippet cosine >= 0.999 against PyTorch fp32 in bf16 for the test variants of
every backbone and for the real I3D and EfficientNet-Lite0 on Ped2, whose first layers stay fp32:
``Backbone.precise_front``), so they are recorded in every manifest but do not make a cache incompatible;
what they and INT8 do to detection is measured in docs/benchmark-runtime-accuracy-*.md.

OpenVINO models are converted from the PyTorch backbone once per input shape (the batch size stays
dynamic), saved as OpenVINO IR under ``$DAKD_HOME/compiled`` and compiled, for a fixed number of clips,
with OpenVINO's model cache there, so a second run pays neither the conversion nor the compilation.
Backbones that are not neural networks (``flow``) run as they are under every runtime.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from dakd import __version__, paths
from dakd.errors import DakdError
from dakd.files import write_json
from extractors.crops import CropMode
from extractors.preprocessing import normalise_clips, resized_clips
from extractors.registry import Backbone, InputContract

log = logging.getLogger(__name__)

Runtime = Literal["auto", "torch", "openvino"]
Precision = Literal["auto", "fp32", "bf16", "int8"]


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
    """A resolved runtime (``torch`` or ``openvino``) and precision (``fp32``, ``bf16``, ``fp16`` on GPUs
    without bf16, or ``int8``: OpenVINO's models quantized by ``dakd quantize``)."""

    runtime: str
    precision: str

    def record(self) -> dict[str, str]:
        return {"runtime": self.runtime, "precision": self.precision}

    def __str__(self) -> str:
        return "no network to run" if self == NO_NETWORK else f"{self.runtime} {self.precision}"


# The execution of backbones that are not networks (flow): they run as they are whatever was asked.
NO_NETWORK = Execution("none", "none")


def choose_execution(runtime: str, precision: str, device: torch.device) -> Execution:
    """Resolve ``auto``: OpenVINO on a CPU, PyTorch on a GPU; bf16 where the hardware has it, else fp32 (never
    int8, which needs a model calibrated on the user's videos)."""
    if runtime not in ("auto", "torch", "openvino") or precision not in ("auto", "fp32", "bf16", "int8"):
        raise DakdError(
            f"--runtime {runtime} --precision {precision}: expected auto|torch|openvino and auto|fp32|bf16|int8"
        )
    if precision == "int8" and (runtime == "torch" or device.type == "cuda"):
        raise DakdError("--precision int8 runs OpenVINO's quantized models on the CPU: use --runtime openvino on a CPU")
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


def network_source_digest(model: torch.nn.Module) -> str:
    """sha256 of the file that defines ``model``'s class: an edit to the network's code invalidates its IR."""
    module = sys.modules[type(model).__module__]
    return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()


class FromFrames(torch.nn.Module):
    """What OpenVINO runs first for a backbone with a clip layout: resized uint8 clips ``[B, F, h, w, 3]`` in,
    normalised inside the graph, then ``network``."""

    def __init__(self, network: torch.nn.Module, contract: InputContract, layout: str):
        super().__init__()
        self.network, self.contract, self.layout = network, contract, layout

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.network(normalise_clips(clips, self.contract, self.layout))


class OpenVINOBackbone(Backbone):
    """A backbone whose forward pass runs in OpenVINO; contract and weights stay the wrapped model's. It takes
    the resized uint8 clips and normalises them in its graph (where the model has a clip layout; else the
    model's own preprocessing). One converted model per input shape (any batch size), cached on disk; in
    ``int8`` the model :meth:`quantize` made for that shape. Each is compiled for a fixed number of clips per
    request (static shapes: EfficientNet-Lite0 12-17 % and I3D 3-5 % faster than a dynamic batch,
    docs/benchmark-score.md), so a shape runs at most two compiled models: ``INFER_CLIPS`` and the remainder.
    A backbone with a precise front (:meth:`Backbone.precise_front`) is two models run in turn, the front always
    in fp32; only the rest takes bf16 or INT8."""

    # Clips per inference request: OpenVINO's time per clip hardly changes from 2 to 16 clips, its memory does
    # (I3D on 224x298 clips, bf16: 201 ms per clip and 985 MB peak at 2, 191 ms and 1834 MB at 16;
    # benchmarks/openvino_batch.py, docs/benchmark-score.md).
    INFER_CLIPS = 2

    def __init__(self, model: Backbone, precision: str, name: str):
        super().__init__()
        self.model, self.precision, self.name = model.cpu(), precision, name
        self.feature_dim, self.contract, self.weights_record = model.feature_dim, model.contract, model.weights_record
        self.from_frames = model.clip_layout is not None
        parts = model.precise_front()
        networks = [model] if parts is None else list(parts)  # run in turn; all but the last in fp32
        if self.from_frames:
            networks[0] = FromFrames(networks[0], model.contract, model.clip_layout)
        self.networks = tuple(networks)  # a tuple: not submodules (their parameters are the model's)
        self.compiled: dict[tuple[int, ...], list] = {}

    def frame_offsets(self, snippet_frames: int) -> list[int]:
        return self.model.frame_offsets(snippet_frames)

    def preprocess(self, frames: torch.Tensor, crops: CropMode) -> torch.Tensor:
        if not self.from_frames:
            return self.model.preprocess(frames, crops)
        # Normalising in PyTorch cost 2.7 s per minute of 640x480 video (I3D, 2 cores), a tenth of the model.
        return resized_clips(frames, self.contract, crops)

    def ir_path(self, shape: tuple[int, ...], part: int = 0, int8: bool = False) -> Path:
        """Where the IR of one part of the network, for one input shape of the backbone, lives; its name changes
        with anything that changes the network."""
        import openvino

        key = {
            "backbone": self.name,
            "source": network_source_digest(self.model),
            "input": "uint8 clips" if self.from_frames else "preprocessed clips",
            "weights": self.weights_record["sha256"],
            "contract": self.contract.to_dict(),
            "shape": shape,
            "dakd": __version__,
            "openvino": openvino.__version__,
            "torch": torch.__version__,
        }
        if len(self.networks) > 1:
            key["part"] = f"{part + 1} of {len(self.networks)}"
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        suffix = (f"-part{part + 1}" if len(self.networks) > 1 else "") + ("-int8" if int8 else "")
        return paths.compiled_models_dir() / f"{self.name}-{'x'.join(map(str, shape))}-{digest}{suffix}.xml"

    def convert(self, example: torch.Tensor) -> list[Path]:
        """The fp32 IRs of the network's parts for inputs shaped like ``example`` (converted once, then kept)."""
        import openvino

        shape = tuple(example.shape[1:])
        ir_paths = [self.ir_path(shape, part) for part in range(len(self.networks))]
        inputs = example[:1]
        for part, (network, path) in enumerate(zip(self.networks, ir_paths)):
            if all(later.exists() for later in ir_paths[part:]):
                break
            if not path.exists():
                log.info("converting %s to OpenVINO for inputs %s (once; kept in %s)", self.name, shape, path.parent)
                input_type = openvino.Type.u8 if part == 0 and self.from_frames else openvino.Type.f32
                input_shape = openvino.PartialShape([-1, *inputs.shape[1:]])
                # Tracing bakes in shape arithmetic (TF "SAME" padding): right for this input shape, which is the
                # only one this model serves.
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    warnings.simplefilter("ignore", FutureWarning)  # OpenVINO traces with the deprecated torch.jit
                    converted = openvino.convert_model(network, example_input=inputs, input=[(input_shape, input_type)])
                save_ir(converted, path)
            with torch.no_grad():
                inputs = network(inputs)  # the next part's example input
        return ir_paths

    def quantize(self, calibration: list[torch.Tensor], record: dict) -> Path:
        """INT8 post-training quantization (NNCF) of the network (of its part after the precise front) for the shape
        of the ``calibration`` inputs (this model's preprocessed clips, ``[1, ...]`` each), saved next to the fp32 IR
        with ``record`` (where the clips came from) in a JSON file beside it. Replaces an earlier INT8 model of this
        shape."""
        import nncf
        import openvino

        ir_paths = self.convert(calibration[0])
        inputs = [clip.numpy() for clip in calibration]
        for path in ir_paths[:-1]:  # the precise front stays fp32: the rest is calibrated on its outputs
            front = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            inputs = [front(clip)[0] for clip in inputs]
        # Full bias correction, not NNCF's fast one: on Ped2 (I3D) its features keep a per-snippet cosine of
        # 0.998 with fp32 instead of 0.991, and its AUC stays within 0.5. Depthwise (group) convolutions stay
        # unquantized: EfficientNet-Lite0's features then keep a cosine of 0.997 at worst instead of 0.985
        # (docs/benchmark-runtime-accuracy-*.md).
        quantized = nncf.quantize(
            openvino.Core().read_model(ir_paths[-1]),
            nncf.Dataset(inputs),
            subset_size=len(calibration),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            fast_bias_correction=False,
            ignored_scope=nncf.IgnoredScope(types=["GroupConvolution"], validate=False),
        )
        path = self.ir_path(tuple(calibration[0].shape[1:]), len(self.networks) - 1, int8=True)
        save_ir(quantized, path)
        write_json(path.with_suffix(".json"), {**record, "nncf": nncf.__version__})
        self.compiled.clear()
        return path

    def compile(self, example: torch.Tensor) -> list:
        """The network's parts compiled for inputs shaped exactly like ``example`` (batch size included)."""
        import openvino

        shape = tuple(example.shape[1:])
        last = len(self.networks) - 1
        if self.precision == "int8":
            int8 = self.ir_path(shape, last, int8=True)
            if not int8.exists():
                raise DakdError(
                    f"no INT8 model of {self.name} for {'x'.join(map(str, shape))} inputs: run `dakd "
                    "quantize` on normal videos of this size first (or use --precision bf16 or fp32)"
                )
            ir_paths = [*(self.convert(example)[:last] if last else []), int8]
        else:
            ir_paths = self.convert(example)
        core = openvino.Core()
        compiled = []
        for part, path in enumerate(ir_paths):
            network = core.read_model(str(path))
            input_shape = network.input(0).get_partial_shape()
            input_shape[0] = len(example)
            network.reshape(input_shape)
            precision = "bf16" if part == last and self.precision == "bf16" else "f32"
            config = {
                "INFERENCE_PRECISION_HINT": precision,
                "CACHE_DIR": str(paths.compiled_models_dir() / "openvino-cache"),
                # Unpinned threads lose less to the decoding thread that shares the cores: EfficientNet-Lite0's
                # extraction 6 % faster, I3D's level (docs/benchmark-extract.md).
                "ENABLE_CPU_PINNING": False,
            }
            compiled.append(core.compile_model(network, "CPU", config))
        return compiled

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        clips = clips.cpu() if self.from_frames else clips.float().cpu()
        outputs = []
        for part in clips.split(self.INFER_CLIPS):
            shape = tuple(part.shape)
            if shape not in self.compiled:
                self.compiled[shape] = self.compile(part)
            values = part.contiguous().numpy()
            for network in self.compiled[shape]:
                values = network(values)[0]
            outputs.append(values)
        return torch.from_numpy(np.concatenate(outputs))


def save_ir(model, path: Path) -> None:
    """Write an OpenVINO model as ``path`` (.xml) + .bin without ever leaving a half-written pair."""
    import openvino

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.xml")  # processes may convert at once
    openvino.save_model(model, tmp, compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
    tmp.replace(path)  # the .xml last: its presence means the pair is complete
