from dataclasses import dataclass, field

import pytest
from typer.testing import CliRunner

from dakd.config import load_config, to_dict
from dakd.errors import DakdError
from pipelines.cli import app
from tests.media import write_indexed_video


@dataclass(frozen=True)
class Inner:
    tau: float = 0.1
    names: tuple[str, ...] = ("i3d",)


@dataclass(frozen=True)
class Outer:
    epochs: int = 3
    inner: Inner = field(default_factory=Inner)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\ninner:\n  tau: 1\n")
    config = load_config(Outer, path, ["inner.names=[i3d,clip]", "epochs=7"])
    assert config == Outer(epochs=7, inner=Inner(tau=1.0, names=("i3d", "clip")))
    assert load_config(Outer, None, ["inner.tau=1e-3"]).inner.tau == 0.001  # YAML 1.1 reads 1e-3 as text
    assert to_dict(config) == {"epochs": 7, "inner": {"tau": 1.0, "names": ["i3d", "clip"]}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epoch=3", "unknown key"),
        ("epochs=true", "expected int"),
        ("inner.tau=abc", "expected float"),
        ("x", "key=value"),
    ],
)
def test_strict_errors(override, message):
    with pytest.raises(DakdError, match=message):
        load_config(Outer, None, [override])


def test_extract_config_file_and_command_line_precedence(tmp_path):
    write_indexed_video(tmp_path / "v.mp4", 20)
    config = tmp_path / "extract.yaml"
    config.write_text("crops: 5\ndtype: float32\nbackbones: [clip_tiny]\nrandom_weights: [clip_tiny]\n")
    result = CliRunner().invoke(
        app,
        ["extract", str(tmp_path / "v.mp4"), "--config", str(config), "--cache", str(tmp_path / "c"), "--crops", "1"],
    )
    assert result.exit_code == 0, result.output
    import numpy as np

    features = np.load(tmp_path / "c" / "clip_tiny" / "v.npy")
    assert features.shape == (1, 2, 32) and features.dtype == np.float32  # --crops wins, dtype from the file
    config.write_text("crop: 5\n")
    result = CliRunner().invoke(app, ["extract", str(tmp_path / "v.mp4"), "--config", str(config)])
    assert result.exit_code == 1 and "unknown key(s) crop" in result.output


def test_shipped_configs_mirror_the_dataclasses_key_by_key():
    """configs/teacher.yaml, student.yaml and extract.yaml hold every key of their dataclass, with its default
    (the student's backbone aside): a key added to a dataclass without its YAML line fails here."""
    from pathlib import Path

    import yaml

    from dakd.training import TrainConfig
    from pipelines.jobs import DEFAULT_STUDENT, ExtractConfig

    configs = Path(__file__).resolve().parents[1] / "configs"
    expected = {
        "teacher.yaml": to_dict(TrainConfig()),
        "student.yaml": {**to_dict(TrainConfig()), "backbones": [DEFAULT_STUDENT]},
        "extract.yaml": {k: v for k, v in to_dict(ExtractConfig()).items() if k != "videos"},  # an argument
    }
    for name, defaults in expected.items():
        written = yaml.safe_load((configs / name).read_text())
        for section in ("model", "loss", "optim", "distill"):
            if section in defaults:
                assert set(written[section]) == set(defaults[section]), (name, section)
        assert set(written) == set(defaults), name
        loaded = to_dict(load_config(TrainConfig if name != "extract.yaml" else ExtractConfig, configs / name))
        assert {k: v for k, v in loaded.items() if k in defaults} == defaults, name
    load_config(ExtractConfig, configs / "extract-10crop.yaml")


def test_dataset_configs_load():
    from pathlib import Path

    from dakd.training import TrainConfig

    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in ("ucf-crime", "shanghaitech", "xd-violence"):
        config = load_config(TrainConfig, configs / f"{name}.yaml", ["backbones=[i3d_r50]"])
        assert config.segments == 32 and config.backbones == ("i3d_r50",) and config.optim.steps >= 1000
        assert config.distill.feature and config.distill.soft_labels == "minmax"  # the paper's recipe, not Ped2's
        assert config.distill.folds == 0 and config.distill.alpha == 1.0
