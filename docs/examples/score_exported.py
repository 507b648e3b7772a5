"""Score a video with a model from `dakd export --format onnx`, using only PyAV, numpy and ONNX Runtime.

    python score_exported.py EXPORT_FOLDER video.mp4      # prints one score per frame

The preprocessing follows EXPORT_FOLDER/export.json. FFmpeg's resize (swscale, bilinear) stands in for
dakd's antialiased bilinear one, so scores differ from `dakd score` by rounding only (see the README).
For an OpenVINO export: `openvino.Core().compile_model(f"{folder}/model.xml", "CPU")(clips)[0]`.
"""

import json
import sys
from pathlib import Path

import av
import numpy as np
import onnxruntime
from av.video.reformatter import VideoReformatter

folder, video = sys.argv[1], sys.argv[2]
spec = json.loads(Path(folder, "export.json").read_text())
contract, length = spec["preprocessing"], spec["snippet_frames"]
session = onnxruntime.InferenceSession(f"{folder}/{spec['model']}")
reformatter = VideoReformatter()  # one scaler for the whole video: frame.to_ndarray(...) builds one per frame


def prepare(frame: av.VideoFrame) -> np.ndarray:
    """One decoded frame -> [3, h, w] float32: resize (short side, or both sides), centre crop, normalise."""
    width, height = frame.width, frame.height
    side = contract["crop_size"] if spec["crops"] == "full" else contract["resize_size"]
    if contract["resize"] == "square" and spec["crops"] != "full":
        size = (side, side)
    else:  # the short side to `side`, the long one truncated (as torchvision)
        size = (int(side * width / height), side) if height <= width else (side, int(side * height / width))
    rgb = reformatter.reformat(frame, width=size[0], height=size[1], format="rgb24", interpolation="BILINEAR")
    rgb = rgb.to_ndarray()
    if spec["crops"] != "full":
        crop = contract["crop_size"]
        top, left = int(round((rgb.shape[0] - crop) / 2)), int(round((rgb.shape[1] - crop) / 2))
        rgb = rgb[top : top + crop, left : left + crop]
    x = (rgb.astype(np.float32) / 255 - np.array(contract["mean"], np.float32)) / np.array(contract["std"], np.float32)
    return x.transpose(2, 0, 1)


with av.open(video) as container:
    frames = [prepare(frame) for frame in container.decode(video=0)]
n_frames = len(frames)
n_snippets = -(-n_frames // length)
frames += [frames[-1]] * (n_snippets * length - n_frames)  # pad the last snippet with its last frame
clips = np.stack(frames).reshape(n_snippets, length, *frames[0].shape)[:, spec["frames_of_a_snippet"]]
if spec["input"]["shape"][1] == 3:  # 3D CNNs take [channels, frames, h, w] per clip
    clips = clips.transpose(0, 2, 1, 3, 4)
scores = session.run(None, {"clips": np.ascontiguousarray(clips)})[0]
for score in np.repeat(scores, length)[:n_frames]:  # every frame takes its snippet's score
    print(f"{score:.6f}")
