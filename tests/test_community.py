"""Community feature families and ground truth: small files in each exact format, imported, converted and
evaluated; the expected AUC/AP are computed here the way the community's scripts compute them."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score
from typer.testing import CliRunner

from dakd.annotations import read_annotations
from dakd.cache import FeatureCache
from dakd.checkpoint import load_checkpoint
from pipelines.cli import app
from tests.media import write_indexed_video

TRAIN = ["--set", "optim.steps=6", "--set", "optim.batch_per_class=1", "--set", "model.width=16", "--no-progress"]


def invoke(*args, code=0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def features(rng, snippets, crops, dim, anomalous_snippets=()):
    """Random features; anomalous snippets shifted so that a trained model can tell them apart."""
    array = rng.normal(0, 1, (snippets, crops, dim)).astype(np.float32)
    for t in anomalous_snippets:
        array[t] += 1.5
    return array


def community_gt(n_snippets: int, pairs) -> np.ndarray:
    """A video's ground truth as the community's make_gt scripts build it: zeros((T + 1) * 16), gt[s:e] = 1,
    the last 16 dropped."""
    gt = np.zeros((n_snippets + 1) * 16, np.float32)
    for s, e in pairs:
        if s != -1 and e != -1:
            gt[s:e] = 1
    return gt[:-16]


def expected_metrics(checkpoint, cache, videos, gts, crop=None):
    """RTFM's test loop: per video, the model's snippet scores (mean over crops), np.repeat(.., 16),
    concatenated in list order; sklearn AUC, AP and trapezoid PR-AUC."""
    model, meta = load_checkpoint(checkpoint)
    name = next(iter(meta["backbones"]))
    predictions = []
    for video in videos:
        array = FeatureCache(cache).read(name, video).astype(np.float32)
        crops = range(array.shape[0]) if crop is None else [crop]
        with torch.no_grad():
            scores = np.mean([model({name: torch.from_numpy(array[c])[None]}).scores[0].numpy() for c in crops], 0)
        predictions.append(np.repeat(scores, 16))
    pred, gt = np.concatenate(predictions), np.concatenate(gts)
    precision, recall, _ = precision_recall_curve(gt, pred)
    return roc_auc_score(gt, pred), average_precision_score(gt, pred), auc(recall, precision)


def evaluate(tmp_path, checkpoint, cache, split, *extra):
    out = tmp_path / "eval"
    invoke("evaluate", "--checkpoint", checkpoint, "--cache", cache, "--split", split, "--out", out,
           "--protocol", "community", "--no-progress", *extra)  # fmt: skip
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture
def ucf_rtfm(tmp_path):
    """UCF-Crime in the RTFM family: (T, 10, 2048) per video, .list files, Temporal_Anomaly_Annotation.txt."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "UCF_Train_ten_crop_i3d"
    folder.mkdir()
    videos = {  # video: (snippets, annotated pairs in the txt, or None for a training video)
        "Abuse001_x264": (3, None),
        "Normal_Videos001_x264": (4, None),
        "Abuse028_x264": (4, [(17, 40), (-1, -1)]),
        "Arson011_x264": (6, [(5, 20), (50, 70)]),
        "Normal_Videos_003_x264": (3, [(-1, -1), (-1, -1)]),
    }
    arrays = {}
    for video, (snippets, pairs) in videos.items():
        hot = [t for t in range(snippets) for s, e in (pairs or []) if s != -1 and s < 16 * (t + 1) and e > 16 * t]
        if video.startswith("Abuse001"):
            hot = [1, 2]
        arrays[video] = features(rng, snippets, 10, 2048, hot)
        np.save(folder / f"{video}_i3d.npy", arrays[video])
    train = ["Abuse001_x264", "Normal_Videos001_x264"]
    test = ["Abuse028_x264", "Arson011_x264", "Normal_Videos_003_x264"]
    # Normal videos first: labels must not come from the position in a list.
    (tmp_path / "ucf-i3d.list").write_text("\n".join(str(folder / f"{v}_i3d.npy") for v in reversed(train)) + "\n")
    (tmp_path / "ucf-i3d-test.list").write_text("\n".join(str(folder / f"{v}_i3d.npy") for v in test) + "\n")
    lines = []
    for video in test:
        kind = "Normal" if "Normal" in video else video[:5].rstrip("0123456789")
        numbers = "  ".join(f"{s}  {e}" for s, e in videos[video][1])
        lines.append(f"{video}.mp4  {kind}  {numbers}")
    (tmp_path / "Temporal_Anomaly_Annotation.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test) + "\n")
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n")
    return tmp_path, videos, arrays


def test_rtfm_ucf_crime_import_ground_truth_and_evaluation(ucf_rtfm):
    root, videos, arrays = ucf_rtfm
    cache = root / "cache"
    output = invoke("import-features", "rtfm", root / "ucf-i3d.list", root / "ucf-i3d-test.list", "--cache", cache,
                    "--dtype", "float32", "--no-progress")  # fmt: skip
    assert "imported 5 video(s) as 'i3d_r50'" in output
    features_cache = FeatureCache(cache)
    assert features_cache.config()["crops"] == 10 and features_cache.config()["snippet_frames"] == 16
    provenance = features_cache.backbone_config("i3d_r50")["provenance"]
    assert provenance["family"] == "rtfm" and len(provenance["lists"]) == 2
    for video, array in arrays.items():
        np.testing.assert_array_equal(features_cache.read("i3d_r50", video), array.transpose(1, 0, 2))
        assert features_cache.manifest("i3d_r50", video)["n_frames"] == 16 * videos[video][0]

    invoke("annotations", "ucf-crime", root / "Temporal_Anomaly_Annotation.txt", "--cache", cache)
    table = read_annotations(cache / "annotations.csv")
    assert table["Abuse028_x264"].intervals == ((18, 40),)  # gt[17:40] = 1 is frames 18..40, 1-based
    assert table["Arson011_x264"].intervals == ((6, 20), (51, 70))
    assert table["Normal_Videos_003_x264"].label == 0 and table["Normal_Videos001_x264"].label == 0
    assert table["Abuse001_x264"].label == 1 and table["Abuse001_x264"].intervals == ()
    invoke("annotations", "ucf-crime", root / "Temporal_Anomaly_Annotation.txt", "--cache", cache,
           "--convention", "inclusive", "--out", root / "inclusive.csv")  # fmt: skip
    assert read_annotations(root / "inclusive.csv")["Abuse028_x264"].intervals == ((17, 40),)

    invoke("train-teacher", "--cache", cache, "--split", root / "train.txt", "--out", root / "run", *TRAIN)
    checkpoint = root / "run" / "teacher.pt"
    test = ["Abuse028_x264", "Arson011_x264", "Normal_Videos_003_x264"]
    gts = [community_gt(videos[v][0], videos[v][1]) for v in test]
    metrics = evaluate(root, checkpoint, cache, root / "test.txt")
    expected = expected_metrics(checkpoint, cache, test, gts)
    assert metrics["frames"] == sum(len(g) for g in gts)
    assert metrics["roc_auc"] == pytest.approx(expected[0], abs=1e-9)
    assert metrics["average_precision"] == pytest.approx(expected[1], abs=1e-9)
    assert metrics["pr_auc_trapezoid"] == pytest.approx(expected[2], abs=1e-9)
    single = evaluate(root, checkpoint, cache, root / "test.txt", "--crop", "0")
    assert single["roc_auc"] == pytest.approx(expected_metrics(checkpoint, cache, test, gts, crop=0)[0], abs=1e-9)
    assert single["crops"] == "crop 0 only" and metrics["crops"] == "mean of all"
    invoke("evaluate", "--checkpoint", checkpoint, "--cache", cache, "--crop", "10", code=1)
    video = root / "clip.mp4"
    video.write_bytes(b"")  # never opened: the checkpoint is refused first
    output = invoke("score", video, "--checkpoint", checkpoint, "--out", root / "scores", code=1)
    assert "imported from the rtfm family" in output


def test_wu_xd_violence_five_crops(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "i3d-features"
    folder.mkdir()
    videos = {
        "Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6": (5, [(10, 30), (40, 45)]),
        "Cop.Movie__#00-00-00_00-01-00_label_B1-0-0": (3, [(0, 20)]),
        "Some.Clip__#00-10-00_00-11-00_label_A": (4, []),
    }
    lines = []
    arrays = {}
    for video, (snippets, pairs) in videos.items():
        hot = [t for t in range(snippets) for s, e in pairs if s < 16 * (t + 1) and e > 16 * t]
        arrays[video] = features(rng, snippets, 5, 1024, hot)
        for crop in range(5):
            np.save(folder / f"{video}__{crop}.npy", arrays[video][:, crop])
            lines.append(str(folder / f"{video}__{crop}.npy"))
    (tmp_path / "rgbtest.list").write_text("\n".join(lines) + "\n")
    (tmp_path / "annotations.txt").write_text(
        "".join(f"{v}.mp4 {' '.join(f'{s} {e}' for s, e in p)}\n" for v, (_, p) in videos.items() if p)
    )
    cache = tmp_path / "cache"
    invoke("import-features", "wu", tmp_path / "rgbtest.list", "--cache", cache, "--no-progress")
    features_cache = FeatureCache(cache)
    assert features_cache.config()["crops"] == 5 and features_cache.backbones() == ["i3d"]
    for video, array in arrays.items():
        np.testing.assert_array_equal(features_cache.read("i3d", video), array.transpose(1, 0, 2).astype(np.float16))
    invoke("annotations", "xd-violence", tmp_path / "annotations.txt", "--cache", cache)
    table = read_annotations(cache / "annotations.csv")
    assert table["Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6"].intervals == ((11, 30), (41, 45))
    assert table["Cop.Movie__#00-00-00_00-01-00_label_B1-0-0"].intervals == ((1, 20),)
    assert table["Some.Clip__#00-10-00_00-11-00_label_A"].label == 0

    invoke("train-teacher", "--cache", cache, "--out", tmp_path / "run", *TRAIN)
    order = list(videos)
    (tmp_path / "test.txt").write_text("\n".join(order) + "\n")
    metrics = evaluate(tmp_path, tmp_path / "run" / "teacher.pt", cache, tmp_path / "test.txt")
    gts = [community_gt(videos[v][0], videos[v][1]) for v in order]
    expected = expected_metrics(tmp_path / "run" / "teacher.pt", cache, order, gts)
    assert metrics["roc_auc"] == pytest.approx(expected[0], abs=1e-9)
    assert metrics["pr_auc_trapezoid"] == pytest.approx(expected[2], abs=1e-9)


def test_vadclip_csv_labels_and_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    rows = ["path,label"]
    arrays = {}
    for video, label, snippets in [("Abuse/Abuse001_x264", "Abuse", 3), ("Normal/Normal_Videos_003_x264", "Normal", 2)]:
        arrays[video] = features(rng, snippets, 10, 512)
        (tmp_path / video).parent.mkdir(parents=True, exist_ok=True)
        for crop in range(10):
            np.save(tmp_path / f"{video}__{crop}.npy", arrays[video][:, crop])
            rows.append(f"{tmp_path / video}__{crop}.npy,{label}")
    (tmp_path / "ucf_CLIP_rgb.csv").write_text("\n".join(rows) + "\n")
    cache = tmp_path / "cache"
    invoke("import-features", "vadclip", tmp_path / "ucf_CLIP_rgb.csv", "--cache", cache, "--no-progress")
    features_cache = FeatureCache(cache)
    assert features_cache.backbones() == ["clip"] and features_cache.config()["crops"] == 10
    for video, array in arrays.items():
        name = video.split("/")[-1]
        np.testing.assert_array_equal(features_cache.read("clip", name), array.transpose(1, 0, 2).astype(np.float16))
    labels = read_annotations(cache / "annotations.csv")
    assert labels["Abuse001_x264"].label == 1 and labels["Normal_Videos_003_x264"].label == 0
    output = invoke("import-features", "vadclip", tmp_path / "ucf_CLIP_rgb.csv", "--cache", cache, "--no-progress")
    assert "imported 0 video(s)" in output and "skipped 2 already imported" in output

    # Evaluated as VadCLIP tests: one crop, ground truth from the UCF-Crime annotation file.
    (tmp_path / "gt.txt").write_text(
        "Abuse001_x264.mp4  Abuse  10  30  -1  -1\nNormal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
    )
    invoke("annotations", "ucf-crime", tmp_path / "gt.txt", "--cache", cache)
    invoke("train-teacher", "--cache", cache, "--out", tmp_path / "run", *TRAIN)
    order = ["Abuse001_x264", "Normal_Videos_003_x264"]
    (tmp_path / "test.txt").write_text("\n".join(order) + "\n")
    checkpoint = tmp_path / "run" / "teacher.pt"
    metrics = evaluate(tmp_path, checkpoint, cache, tmp_path / "test.txt", "--crop", "0")
    gts = [community_gt(3, [(10, 30)]), community_gt(2, [])]
    assert metrics["roc_auc"] == pytest.approx(expected_metrics(checkpoint, cache, order, gts, crop=0)[0], abs=1e-9)


def test_frame_counts_from_the_videos(tmp_path):
    """Imported features only imply 16 x T frames; --videos counts the real ones by decoding."""
    rng = np.random.default_rng(5)
    np.save(tmp_path / "Abuse001_x264_i3d.npy", features(rng, 3, 10, 2048))
    (tmp_path / "a.list").write_text(str(tmp_path / "Abuse001_x264_i3d.npy") + "\n")
    (tmp_path / "videos").mkdir()
    write_indexed_video(tmp_path / "videos" / "Abuse001_x264.mp4", 40)
    (tmp_path / "gt.txt").write_text("Abuse001_x264.mp4  Abuse  5  20  -1  -1\n")
    invoke("import-features", "rtfm", tmp_path / "a.list", "--cache", tmp_path / "c", "--no-progress")
    invoke("annotations", "ucf-crime", tmp_path / "gt.txt", "--cache", tmp_path / "c", "--out", tmp_path / "a.csv")
    assert read_annotations(tmp_path / "a.csv")["Abuse001_x264"].n_frames == 48
    invoke("annotations", "ucf-crime", tmp_path / "gt.txt", "--cache", tmp_path / "c", "--out", tmp_path / "b.csv",
           "--videos", tmp_path / "videos")  # fmt: skip
    assert read_annotations(tmp_path / "b.csv")["Abuse001_x264"].n_frames == 40


def test_shanghaitech_masks_padded_to_sixteen_frames(tmp_path):
    rng = np.random.default_rng(3)
    folder, masks = tmp_path / "features", tmp_path / "test_frame_mask"
    folder.mkdir()
    masks.mkdir()
    mask = np.zeros(70, np.int64)
    mask[20:41] = 1
    np.save(masks / "01_0014.npy", mask)
    np.save(masks / "01_0016.npy", np.zeros(40, np.int64))  # a test video without anomaly
    snippets = {"01_0014": 5, "01_0016": 3, "01_001": 4, "02_0161": 3}
    np.save(masks / "02_0161.npy", np.r_[np.zeros(10), np.ones(38)].astype(np.int64))
    for video, t in snippets.items():
        hot = [1, 2] if video == "01_0014" else ([0, 1, 2] if video == "02_0161" else [])
        np.save(folder / f"{video}_i3d.npy", features(rng, t, 10, 2048, hot))
    (tmp_path / "shanghai-i3d-test-10crop.list").write_text(
        "\n".join(str(folder / f"{v}_i3d.npy") for v in snippets) + "\n"
    )
    cache = tmp_path / "cache"
    invoke("import-features", "rtfm", tmp_path / "shanghai-i3d-test-10crop.list", "--cache", cache, "--no-progress")
    invoke("annotations", "shanghaitech", masks, "--cache", cache)
    table = read_annotations(cache / "annotations.csv")
    assert table["01_0014"].label == 1 and table["01_0014"].intervals == ((21, 41),)
    assert table["01_0014"].n_frames == 70
    assert table["01_0016"].label == 0 and table["01_001"].label == 0
    assert table["02_0161"].intervals == ((11, 48),)

    invoke("train-teacher", "--cache", cache, "--out", tmp_path / "run", *TRAIN)
    order = ["01_0014", "01_0016", "02_0161"]
    (tmp_path / "test.txt").write_text("\n".join(order) + "\n")
    metrics = evaluate(tmp_path, tmp_path / "run" / "teacher.pt", cache, tmp_path / "test.txt")
    gts = []
    for video in order:  # the mask, cut or zero-padded to 16 x snippets
        truth = np.zeros(16 * snippets[video])
        frames = np.load(masks / f"{video}.npy")[: len(truth)]
        truth[: len(frames)] = frames
        gts.append(truth)
    expected = expected_metrics(tmp_path / "run" / "teacher.pt", cache, order, gts)
    assert metrics["frames"] == 16 * 11 and metrics["roc_auc"] == pytest.approx(expected[0], abs=1e-9)


def test_bad_feature_files_are_recorded_and_the_rest_imported(tmp_path):
    rng = np.random.default_rng(4)
    good = tmp_path / "Good001_x264_i3d.npy"
    np.save(good, features(rng, 2, 10, 2048))
    (tmp_path / "Broken001_x264_i3d.npy").write_bytes(b"not an array")
    np.save(tmp_path / "Wrong001_x264_i3d.npy", features(rng, 2, 10, 1024))
    listed = [good, tmp_path / "Broken001_x264_i3d.npy", tmp_path / "Wrong001_x264_i3d.npy", tmp_path / "Gone_i3d.npy"]
    (tmp_path / "a.list").write_text("\n".join(map(str, listed)) + "\n")
    output = invoke("import-features", "rtfm", tmp_path / "a.list", "--cache", tmp_path / "c", "--no-progress", code=1)
    assert "imported 1 video(s)" in output and "3 failed" in output
    assert "expected (T, crops, 2048)" in output and "not a readable .npy" in output
    failures = FeatureCache(tmp_path / "c").failures()
    assert {f["video_id"] for f in failures} == {"Broken001_x264", "Wrong001_x264", "Gone"}
    assert FeatureCache(tmp_path / "c").video_ids("i3d_r50") == ["Good001_x264"]
    invoke("import-features", "wu", tmp_path / "a.list", "--cache", tmp_path / "d", "--no-progress", code=1)
    invoke("import-features", "nope", tmp_path / "a.list", "--cache", tmp_path / "d", "--no-progress", code=1)
