import numpy as np
import pytest

from dakd import cache as cache_module
from dakd.cache import FeatureCache
from dakd.errors import DakdError


def make_source(tmp_path, name="v.mp4"):
    path = tmp_path / name
    path.write_bytes(b"video bytes")
    return path


def manifest_for(path):
    stat = path.stat()
    return {"source_size": stat.st_size, "source_mtime": stat.st_mtime, "n_snippets": 3}


def test_round_trip_memory_mapped(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    cache.claim(16, 1)
    source = make_source(tmp_path)
    features = np.random.default_rng(0).normal(size=(1, 3, 8)).astype(np.float16)
    cache.write("i3d", "sub/v", features, manifest_for(source))
    read = cache.read("i3d", "sub/v")
    assert isinstance(read, np.memmap) and np.array_equal(read, features)
    assert cache.manifest("i3d", "sub/v")["shape"] == [1, 3, 8]
    assert cache.video_ids("i3d") == ["sub/v"]
    assert cache.is_done("i3d", "sub/v", source)
    source.write_bytes(b"a changed video")
    assert not cache.is_done("i3d", "sub/v", source)


def test_interrupted_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "c")
    source = make_source(tmp_path)
    old = np.zeros((1, 3, 4), np.float16)
    cache.write("i3d", "v", old, manifest_for(source))

    def crash(handle, array):
        handle.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module.np, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.write("i3d", "v", np.ones((1, 3, 4), np.float16), manifest_for(source))
    monkeypatch.undo()
    assert np.array_equal(cache.read("i3d", "v"), old)  # the finished result survives
    assert not list((tmp_path / "c").rglob("*.tmp"))
    with pytest.raises(DakdError, match="no 'i3d' features for video 'w'"):
        cache.read("i3d", "w")


def test_conflicting_configs_are_refused(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    cache.claim(16, 1)
    cache.claim(16, 1)  # the same config again is fine
    with pytest.raises(DakdError, match="crops: cache has 1, this run has 10"):
        cache.claim(16, 10)
    config = {"feature_dim": 8, "weights": {"sha256": "aa", "path": "/x", "origin": "explicit"}}
    cache.claim_backbone("i3d", config)
    # the same weights found elsewhere are the same features
    cache.claim_backbone("i3d", {**config, "weights": {"sha256": "aa", "path": "/y", "origin": "dakd-cache"}})
    with pytest.raises(DakdError, match="weights.sha256"):
        cache.claim_backbone("i3d", {**config, "weights": {"sha256": "bb"}})


def test_failures_are_appended_as_json_lines(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    cache.record_failure("a.mp4", "a", "empty_file", "the file is empty")
    cache.record_failure("b.mp4", "b", "not_a_video", "not a readable video file")
    assert [f["error_type"] for f in cache.failures()] == ["empty_file", "not_a_video"]


def test_not_a_cache(tmp_path):
    with pytest.raises(DakdError, match="not a dakd feature cache"):
        FeatureCache(tmp_path).config()
