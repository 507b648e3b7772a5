import numpy as np
import pytest

from dakd.errors import VideoError
from extractors.video_io import VideoReader, discover_videos
from tests.media import indexed_frame, read_index, write_audio_only, write_indexed_video, write_truncated


def decode_all(path, chunk=16):
    with VideoReader(path) as reader:
        chunks = list(reader.chunks(chunk))
        return reader, np.concatenate(chunks), [len(c) for c in chunks]


def test_indexed_frames_decode_exactly(tmp_path):
    path = write_indexed_video(tmp_path / "a.mp4", 70, fps=25)
    reader, frames, sizes = decode_all(path, chunk=16)
    assert reader.n_decoded == 70 and reader.fps == pytest.approx(25)
    assert max(sizes) <= 16  # memory is bounded by the chunk, not the video
    assert [read_index(f) for f in frames] == list(range(70))
    assert frames.shape == (70, 48, 80, 3) and frames.dtype == np.uint8
    assert frames[0, 2, 2, 0] > 200 and frames[0, 2, 2, 2] < 60  # RGB order: the top band is red


def test_read_index_roundtrip_without_codec():
    assert [read_index(indexed_frame(i)) for i in (0, 1, 513, 1023)] == [0, 1, 513, 1023]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("odd.mp4", {"height": 49, "width": 81, "pix_fmt": "yuv444p"}),
        ("gray.mkv", {"codec": "ffv1", "pix_fmt": "gray"}),
        ("yuv444.mp4", {"pix_fmt": "yuv444p"}),
    ],
)
def test_odd_sizes_grayscale_and_yuv444(tmp_path, name, options):
    path = write_indexed_video(tmp_path / name, 20, **options)
    reader, frames, _ = decode_all(path)
    assert frames.shape[0] == 20 and frames.shape[-1] == 3
    assert (reader.height, reader.width) == frames.shape[1:3]
    assert [read_index(f) for f in frames] == list(range(20))


@pytest.mark.parametrize("options", [{}, {"height": 49, "width": 81, "pix_fmt": "yuv444p"}])
def test_frames_equal_pyav_per_frame_conversion(tmp_path, options):
    # The reader keeps one scaler for the whole video (faster); its pixels must be PyAV's own.
    import av

    path = write_indexed_video(tmp_path / "a.mp4", 20, **options)
    with av.open(str(path)) as container:
        expected = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    np.testing.assert_array_equal(decode_all(path)[1], expected)


def decode_pixels(path, pixels):
    with VideoReader(path) as reader:
        return np.concatenate(list(reader.chunks(8, pixels)))


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("limited.mp4", {}),  # yuv420p, limited range: Y 16-235 is stretched to 0-255
        ("full.mkv", {"codec": "mjpeg", "pix_fmt": "yuvj420p"}),  # full range already: Y as decoded
        ("yuv444.mp4", {"pix_fmt": "yuv444p"}),
        ("gray.mkv", {"codec": "ffv1", "pix_fmt": "gray"}),
        ("rgb.mkv", {"codec": "ffv1", "pix_fmt": "bgr0"}),  # no luma plane: grey through FFmpeg's scaler
    ],
)
def test_luma_is_the_grey_of_the_frames_in_full_range(tmp_path, name, options):
    # Luma is read off the decoded Y plane, with no conversion. On grey ramps it must be the frames' grey levels
    # within the rounding of FFmpeg's RGB conversion, whatever the format and range; and the R, G, B + luma
    # layout must hold both exactly.
    import cv2

    from extractors.video_io import write_video

    ramp = np.linspace(0, 255, 96).round().astype(np.uint8)
    frames = [np.repeat(np.roll(ramp, 3 * i)[None, :, None], 48, 0).repeat(3, 2) for i in range(12)]
    path = tmp_path / name
    write_video(path, frames, **options)
    rgb, luma, both = (decode_pixels(path, pixels) for pixels in ("rgb", "luma", "rgb+luma"))
    assert luma.shape == (*rgb.shape[:3], 1) and both.shape == (*rgb.shape[:3], 4)
    grey = cv2.cvtColor(rgb.reshape(-1, rgb.shape[2], 3), cv2.COLOR_RGB2GRAY).reshape(rgb.shape[:3])
    assert np.abs(luma[..., 0].astype(int) - grey).max() <= 1
    assert luma.min() <= 2 and luma.max() >= 253
    np.testing.assert_array_equal(both[..., :3], rgb)
    np.testing.assert_array_equal(both[..., 3:], luma)


def test_the_limited_range_stretch_is_ffmpegs():
    from extractors.video_io import LIMITED_TO_FULL

    assert LIMITED_TO_FULL[16] == 0 and LIMITED_TO_FULL[235] == 255 and LIMITED_TO_FULL[126] == 128
    assert LIMITED_TO_FULL[:16].max() == 0 and LIMITED_TO_FULL[235:].min() == 255
    assert np.all(np.diff(LIMITED_TO_FULL.astype(int)) >= 0)


def test_chunk_memory_is_reused_only_once_nothing_refers_to_it(tmp_path):
    import torch

    path = write_indexed_video(tmp_path / "a.mp4", 80)
    with VideoReader(path) as reader:
        addresses, held, seen = [], None, []
        for index, chunk in enumerate(reader.chunks(8)):
            addresses.append(chunk.__array_interface__["data"][0])
            seen.append([read_index(f) for f in chunk])
            if index == 2:  # a tensor made from a slice of a chunk keeps the whole chunk from being reused
                held = torch.from_numpy(chunk[3:5])
    assert len(set(addresses)) <= 3  # 10 chunks in at most 3 blocks: released chunks are reused
    assert addresses[2] not in addresses[3:]  # the held chunk's block was not handed out again
    assert [read_index(f) for f in held.numpy()] == [19, 20]  # and its frames are intact
    assert seen == [list(range(i, i + 8)) for i in range(0, 80, 8)]


def test_one_frame_video(tmp_path):
    reader, frames, _ = decode_all(write_indexed_video(tmp_path / "one.mp4", 1))
    assert reader.n_decoded == 1 and frames.shape[0] == 1


def test_truncated_mp4_keeps_its_beginning(tmp_path):
    reader, frames, _ = decode_all(write_truncated(tmp_path / "cut.mp4", 96, keep=0.5))
    assert reader.truncated and reader.warning
    assert 10 < reader.n_decoded < 96
    assert [read_index(f) for f in frames[:5]] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: p.write_bytes(b""), "empty_file"),
        (lambda p: p.write_text("not a video\n" * 50), "not_a_video"),
        (lambda p: write_audio_only(p), "no_video_stream"),
        (lambda p: None, "missing"),
        (lambda p: p.symlink_to(p.with_name("nowhere.mp4")), "missing"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path, make, kind):
    path = tmp_path / "bad.mp4"
    make(path)
    with pytest.raises(VideoError) as raised:
        VideoReader(path)
    assert raised.value.kind == kind
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_discover_folders_lists_and_unique_ids(tmp_path):
    for sub in ("normal", "anomalous"):
        (tmp_path / "videos" / sub).mkdir(parents=True)
        (tmp_path / "videos" / sub / "a.mp4").write_bytes(b"x")
    (tmp_path / "videos" / "notes.txt").write_text("not a list of videos")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.mp4").write_bytes(b"x")
    (tmp_path / "list.txt").write_text("# comment\nother/a.mp4\n\n")
    videos, missing = discover_videos([tmp_path / "videos", tmp_path / "list.txt", tmp_path / "nope.mp4"])
    assert set(videos) == {"normal/a", "anomalous/a", "a"}
    assert videos["a"] == (tmp_path / "other" / "a.mp4").absolute()
    assert missing == [(str(tmp_path / "nope.mp4"), "no such file or folder")]
    # Two a.mp4 given directly from different folders get distinct ids.
    videos, _ = discover_videos([tmp_path / "videos/normal/a.mp4", tmp_path / "other/a.mp4"])
    assert set(videos) == {"normal/a", "other/a"}
