"""Backbone runtimes and precisions: OpenVINO and bf16 give the features of PyTorch fp32 up to rounding,
the automatic choice follows the hardware, and converted models are kept on disk."""

import numpy as np
import pytest
import torch

from dakd.errors import DakdError
from extractors import runtime
from extractors.backbones import create_backbone
from extractors.engine import extract_video
from extractors.preprocessing import normalise_clips, resized_clips
from extractors.runtime import Execution, choose_execution, prepare
from extractors.video_io import VideoReader
from tests.media import write_indexed_video

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("runtime") / "v.mp4"
    write_indexed_video(path, 40, height=72, width=96)
    return path


def features(video, name: str, execution: Execution) -> np.ndarray:
    model = create_backbone(name, weights=None if name == "flow" else "random")
    with VideoReader(video) as reader:
        return extract_video(reader, {name: prepare(model, execution, name)}, CPU, crops="full", execution=execution)[
            name
        ][0]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("name", ["i3d_tiny", "clip_tiny", "efficientnet_tiny", "flow"])
def test_every_runtime_and_precision_gives_the_features_of_torch_fp32(video, name):
    reference = features(video, name, Execution("torch", "fp32"))
    for execution in (Execution("openvino", "fp32"), Execution("openvino", "bf16"), Execution("torch", "bf16")):
        other = features(video, name, execution)
        assert other.shape == reference.shape
        assert cosine(other, reference).min() >= 0.999, (execution, cosine(other, reference))
    fp32 = features(video, name, Execution("openvino", "fp32"))
    np.testing.assert_allclose(fp32, reference, atol=1e-4, rtol=1e-4)


def test_auto_follows_the_hardware_and_falls_back(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert choose_execution("auto", "auto", CPU) == Execution("openvino", "bf16")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)  # a CPU without bf16
    assert choose_execution("auto", "auto", CPU) == Execution("openvino", "fp32")
    assert choose_execution("torch", "bf16", CPU) == Execution("torch", "bf16")  # asked for: given
    monkeypatch.setattr(runtime, "openvino_available", lambda: False)
    assert choose_execution("auto", "auto", CPU) == Execution("torch", "fp32")
    with pytest.raises(DakdError, match="not installed"):
        choose_execution("openvino", "auto", CPU)
    with pytest.raises(DakdError, match="runs on the CPU"):
        choose_execution("openvino", "auto", torch.device("cuda"))
    monkeypatch.setattr(runtime, "openvino_available", lambda: True)
    assert choose_execution("auto", "int8", CPU) == Execution("openvino", "int8")  # never chosen by auto, only asked
    for runtime_name, device in (("torch", CPU), ("auto", torch.device("cuda"))):
        with pytest.raises(DakdError, match="int8 runs OpenVINO"):
            choose_execution(runtime_name, "int8", device)


def test_converted_models_are_kept_and_reused(monkeypatch, tmp_path):
    import openvino

    monkeypatch.setattr("dakd.paths.compiled_models_dir", lambda: tmp_path)  # a folder of its own
    model = create_backbone("i3d_tiny", weights="random")
    clips = torch.randint(0, 256, (3, 16, 64, 80, 3), dtype=torch.uint8)  # resized uint8 clips: OpenVINO normalises
    first = prepare(model, Execution("openvino", "fp32"), "i3d_tiny")
    expected = first(clips)
    reference = model(normalise_clips(clips, model.contract, model.clip_layout).contiguous())
    torch.testing.assert_close(expected, reference, atol=1e-4, rtol=1e-4)  # the graph normalises as PyTorch does
    path = first.ir_path((16, 64, 80, 3))
    assert path.exists() and path.with_suffix(".bin").exists()

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(openvino, "convert_model", no_conversion)
    again = prepare(create_backbone("i3d_tiny", weights="random"), Execution("openvino", "fp32"), "i3d_tiny")
    torch.testing.assert_close(again(clips), expected)
    torch.testing.assert_close(again(clips[:1]), expected[:1])  # any batch size, one converted model
    # compiled for fixed shapes: 3 clips run as requests of INFER_CLIPS (2) and the remainder (1)
    assert sorted(shape[0] for shape in again.compiled) == [1, again.INFER_CLIPS] and again.INFER_CLIPS == 2
    with pytest.raises(AssertionError, match="converted again"):
        again(torch.zeros(1, 16, 64, 64, 3, dtype=torch.uint8))  # another input shape needs its own conversion


def test_a_precise_front_stays_fp32_under_bf16_and_int8(monkeypatch, tmp_path):
    """EfficientNet's stem and first blocks run in fp32 while the rest takes bf16 (OpenVINO and PyTorch autocast)
    or INT8, for which only the rest is quantized, calibrated on the front's fp32 outputs."""
    import openvino

    monkeypatch.setattr("dakd.paths.compiled_models_dir", lambda: tmp_path)
    model = create_backbone("efficientnet_tiny", weights="random")
    clips = torch.randint(0, 256, (3, 2, 64, 80, 3), dtype=torch.uint8)
    normalised = normalise_clips(clips, model.contract, model.clip_layout)
    with torch.no_grad():
        reference = model(normalised).numpy()

    def precisions(network) -> list[str]:
        parts = network.compiled[(2, 2, 64, 80, 3)]
        return [part.get_property("INFERENCE_PRECISION_HINT").get_type_name() for part in parts]

    bf16 = prepare(model, Execution("openvino", "bf16"), "efficientnet_tiny")
    assert cosine(bf16(clips).numpy(), reference).min() >= 0.999
    # A CPU without bf16 runs a bf16 hint in f32 (the suite must pass there too)
    native = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert precisions(bf16) == ["f32", "bf16" if native else "f32"]
    # threads unpinned: the decoding thread shares the cores (docs/benchmark-extract.md)
    assert [part.get_property("ENABLE_CPU_PINNING") for part in bf16.compiled[(2, 2, 64, 80, 3)]] == [False, False]

    dtypes = []
    for block in model._blocks[1:3]:  # the last block of the front, the first of the rest
        conv = block._depthwise_conv
        monkeypatch.setattr(conv, "forward", lambda x, run=conv.forward: dtypes.append(run(x).dtype) or run(x))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(normalised)
    assert dtypes == [torch.float32, torch.bfloat16]

    int8 = prepare(model, Execution("openvino", "int8"), "efficientnet_tiny")
    path = int8.quantize([clips[i : i + 1] for i in range(3)], {"clips": 3})
    front, rest = int8.convert(clips)
    assert path.name.endswith("-part2-int8.xml") and rest.name.endswith("-part2.xml")

    def fake_quantize_ops(ir) -> int:
        return sum(op.get_type_name() == "FakeQuantize" for op in openvino.Core().read_model(ir).get_ops())

    assert fake_quantize_ops(front) == 0 and fake_quantize_ops(path) > 0
    features = int8(clips).numpy()
    assert precisions(int8) == ["f32", "f32"] and features.shape == reference.shape


@pytest.mark.weights
def test_real_efficientnet_lite0_in_bf16_keeps_the_features_of_fp32(ped2):
    """On real footage (Ped2) the real EfficientNet-Lite0 in OpenVINO bf16 stays within cosine 0.999 of PyTorch fp32
    per snippet (0.994 with the whole network in bf16; docs/benchmark-runtime-accuracy-efficientnet_lite0.md)."""
    try:
        model = create_backbone("efficientnet_lite0")
    except DakdError as error:
        pytest.skip(f"EfficientNet-Lite0 weights not available: {error}")
    with VideoReader(ped2 / "videos" / "Test004.mp4") as reader:
        frames = next(reader.chunks(64))
    clips = torch.from_numpy(frames.reshape(4, 16, *frames.shape[1:]))
    resized = resized_clips(clips, model.contract, "full")[0]
    with torch.no_grad():
        reference = model(normalise_clips(resized, model.contract, model.clip_layout)).numpy()
    bf16 = prepare(model, Execution("openvino", "bf16"), "efficientnet_lite0")(resized).numpy()
    assert cosine(bf16, reference).min() >= 0.999
