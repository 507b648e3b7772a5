"""Every test runs offline, with its own empty dakd home, on the CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["DAKD_OFFLINE"] = "1"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

PED2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "ucsd-ped2"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch, request):
    """A fresh, empty DAKD_HOME per test, except for tests marked ``weights`` (they read the real one)."""
    if "weights" not in request.keywords:
        monkeypatch.setenv("DAKD_HOME", str(tmp_path_factory.mktemp("dakd-home")))
        monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))


@pytest.fixture(scope="session")
def compiled_models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("compiled-models")


@pytest.fixture(autouse=True)
def shared_compiled_models(compiled_models, monkeypatch):
    """One folder of converted OpenVINO models for the session: each tiny model is converted once, not per test."""
    monkeypatch.setattr("dakd.paths.compiled_models_dir", lambda: compiled_models)


@pytest.fixture(scope="session")
def ped2() -> Path:
    if not (PED2 / "videos").is_dir():
        pytest.skip("../shared/data/ucsd-ped2 is not present")
    return PED2
