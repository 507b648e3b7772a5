"""``flow``: motion statistics, a feature without learned weights.

Per snippet, OpenCV's DIS dense optical flow (fast preset) between each pair of consecutive frames of the
snippet (15 flows for 16 frames; a snippet sees no frame of another, so snippets stay independent and
batchable; the repeated frames that pad a video's last snippet add zero flow), on the frames' luma: the
decoded Y plane (limited range stretched to 0-255), resized as the contract says (short side 224; whole
frame in the ``full`` crop mode) by OpenCV: halved with its Gaussian pyramid (``pyrDown``) while the frame
is at least twice the target size, then bilinear.
Flow magnitude ``m = |(dx, dy)|`` in pixels per frame at that size. The 42 statistics, over all pixels of
all flows of the snippet, in this order:

* [0:8]   log-histogram: ``log10(fraction of pixel-flows + 1e-5)`` in magnitude bins with edges
  0, 0.25, 0.5, 1, 2, 4, 8, 16, inf px/frame;
* [8:13]  ``log2(1 + q)`` for the 50th, 90th, 99th, 99.9th percentiles and the maximum of m;
* [13:37] a 4 x 6 grid of equal cells (row-major): ``log2(1 + 99th percentile of m in the cell)``, the speed
  of what moves fastest there (perspective makes normal speed depend on the place);
* [37:39] ``log2(1 + mean of m)`` and ``log2(1 + the largest per-flow mean of m)``;
* [39:42] over moving pixels (m > 1 px/frame): ``log10(their fraction + 1e-5)``, ``log2(1 + mean |dx|)``,
  ``log2(1 + mean |dy|)`` (0 when nothing moves).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from extractors.crops import CropMode, take_crops
from extractors.preprocessing import resized_shape
from extractors.registry import Backbone, InputContract, register_backbone

# v1 (until dakd 2026-11-28) took grey levels of the resized RGB frames: on 2 cores, converting to RGB and resizing
# three channels cost more CPU than the flow left free (docs/benchmark-extract.md).
VERSION = "dis-fast/luma/magnitude-statistics-v2"
HISTOGRAM_EDGES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, np.inf)
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
GRID = (4, 6)
CELL_PERCENTILE = 99.0
MOVING = 1.0  # px/frame
FEATURE_DIM = (len(HISTOGRAM_EDGES) - 1) + len(PERCENTILES) + 1 + GRID[0] * GRID[1] + 2 + 3


def dense_flows(gray: np.ndarray) -> np.ndarray:
    """DIS flows between consecutive frames of uint8 ``[F, H, W]`` -> float32 ``[max(F - 1, 1), H, W, 2]``."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    flows = [dis.calc(a, b, None) for a, b in zip(gray[:-1], gray[1:])]
    return np.stack(flows) if flows else np.zeros((1, *gray.shape[1:], 2), np.float32)


def motion_statistics(flows: np.ndarray) -> np.ndarray:
    """Flows ``[m, H, W, 2]`` -> the ``FEATURE_DIM`` statistics of the module doc (float32)."""
    flows = flows.astype(np.float32, copy=False)
    dx, dy = flows[..., 0], flows[..., 1]
    magnitude = np.sqrt(dx * dx + dy * dy)  # [m, H, W]
    flat = magnitude.ravel()
    # Counts below each inner edge give the histogram (magnitudes are >= 0 and finite): 0.7 ms against
    # np.histogram's 20 ms (it sorts the data for uneven bins), with the same counts.
    below = [np.count_nonzero(flat < edge) for edge in HISTOGRAM_EDGES[1:-1]]
    histogram = np.diff([0, *below, flat.size]) / flat.size
    quantiles = np.append(np.percentile(flat, PERCENTILES), flat.max())
    rows = np.linspace(0, magnitude.shape[1], GRID[0] + 1).astype(int)
    cols = np.linspace(0, magnitude.shape[2], GRID[1] + 1).astype(int)
    cells = [
        np.percentile(magnitude[:, rows[i] : rows[i + 1], cols[j] : cols[j + 1]], CELL_PERCENTILE)
        for i in range(GRID[0])
        for j in range(GRID[1])
    ]
    moving = magnitude > MOVING
    if moving.any():
        moving_dx, moving_dy = np.abs(dx[moving]).mean(), np.abs(dy[moving]).mean()
    else:
        moving_dx = moving_dy = 0.0
    parts = [
        np.log10(histogram + 1e-5),
        np.log2(1.0 + quantiles),
        np.log2(1.0 + np.asarray(cells)),
        np.log2(1.0 + np.array([flat.mean(), magnitude.mean(axis=(1, 2)).max()])),
        np.array([np.log10(moving.mean() + 1e-5), np.log2(1.0 + moving_dx), np.log2(1.0 + moving_dy)]),
    ]
    return np.concatenate(parts).astype(np.float32)


def resize_luma(image: np.ndarray, out: np.ndarray) -> None:
    """Resize uint8 ``[H, W]`` into ``out`` ``[h, w]``: Gaussian pyramid halvings while the image is at least twice
    ``out``'s size (antialiasing), then bilinear. One channel at a time this costs a quarter of torch's
    antialiased kernel (docs/benchmark-extract.md)."""
    import cv2

    height, width = out.shape
    while image.shape[0] >= 2 * height and image.shape[1] >= 2 * width:
        image = cv2.pyrDown(image)
    cv2.resize(image, (width, height), dst=out, interpolation=cv2.INTER_LINEAR)


class MotionStatistics(Backbone):
    """Input: luma uint8 clips ``[B, F, h, w]``; output: ``[B, 42]`` motion statistics (float32)."""

    feature_dim = FEATURE_DIM
    is_network = False
    clip_layout = None  # luma clips, see preprocess

    def __init__(self, contract: InputContract):
        import cv2

        super().__init__()
        self.contract = contract
        self.workers = max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
        # OpenCV's own thread pool only costs CPU here: clips already run in parallel threads (forward), and a
        # frame's resize is too small to split (its threads spent 0.4 CPU s a minute of video waiting; the
        # flow itself is as fast; docs/benchmark-extract.md).
        cv2.setNumThreads(1)

    def preprocess(self, frames: torch.Tensor, crops: CropMode) -> torch.Tensor:
        """uint8 ``[N, F, H, W, C]`` (luma last: ``C`` 1, or 4 for R, G, B, Y) -> luma ``[views, N, F, h, w]``."""
        n, f, h, w, _ = frames.shape
        height, width = resized_shape(h, w, self.contract, crops)
        luma = frames[..., -1].reshape(n * f, h, w).cpu().numpy()
        resized = np.empty((n * f, height, width), np.uint8)
        for index, image in enumerate(luma):
            resize_luma(np.ascontiguousarray(image), resized[index])
        resized = torch.from_numpy(resized)
        views = resized[None] if crops == "full" else take_crops(resized, self.contract.crop_size, crops)
        return views.reshape(len(views), n, f, *views.shape[-2:])

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        # OpenCV releases the GIL: clips run in parallel threads.
        gray = clips.cpu().numpy()
        with ThreadPoolExecutor(self.workers) as pool:
            stats = list(pool.map(lambda clip: motion_statistics(dense_flows(clip)), gray))
        return torch.from_numpy(np.stack(stats))


FLOW_CONTRACT = InputContract(
    frames="all",
    resize="short_side",
    resize_size=224,
    crop_size=224,
    interpolation="Gaussian pyramid halvings, then bilinear (OpenCV)",
    antialias=True,
    resize_kernel=None,
    value_range=(0.0, 255.0),
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    channels="luma (the decoded Y plane, 0-255)",
    pixels="luma",
    definition=f"{VERSION}: OpenCV DIS optical flow, fast preset, between consecutive frames of a snippet; "
    "42 statistics of flow magnitude (dakd extractors/backbones/flow.py)",
)


@register_backbone(
    "flow",
    contract=FLOW_CONTRACT,
    weights=None,
    summary="motion statistics of OpenCV DIS optical flow per snippet (histogram, percentiles, 4x6 grid), 42-d",
)
def flow(contract: InputContract) -> MotionStatistics:
    return MotionStatistics(contract)
