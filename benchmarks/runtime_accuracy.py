"""Does the runtime change detection? One checkpoint, trained on PyTorch fp32 features of UCSD Ped2's weak
training split, evaluated on the test videos' features extracted by each runtime and precision.

    python benchmarks/runtime_accuracy.py --work runs/runtime-accuracy --backbone i3d

Target: every runtime and precision within 0.5 AUC of PyTorch fp32. Also reports the per-snippet cosine
of every runtime's features against PyTorch fp32 and the extraction time of each. INT8 is calibrated as a
user would (`dakd quantize`) on the normal videos of the weak training split only. Writes
docs/benchmark-runtime-accuracy-BACKBONE.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXECUTIONS = (("torch", "fp32"), ("torch", "bf16"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ucsd-ped2"))
    parser.add_argument("--work", default="runs/runtime-accuracy")
    parser.add_argument("--backbone", default="i3d")
    parser.add_argument("--crops", default="full")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--clips", type=int, default=128, help="INT8 calibration clips (dakd quantize --clips)")
    parser.add_argument("--out", help="default: docs/benchmark-runtime-accuracy-BACKBONE.md")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from dakd.annotations import read_annotations
    from dakd.cache import FeatureCache
    from dakd.config import load_config
    from dakd.files import read_list
    from dakd.training import TrainConfig
    from extractors.crops import parse_crop_mode
    from pipelines import evaluate, extract, quantize, train_teacher
    from pipelines.jobs import EvaluateJob, ExtractConfig, QuantizeJob, TrainJob

    data, work = Path(args.data), Path(args.work)
    annotations = str(data / "annotations.csv")
    labels = read_annotations(annotations)
    normal = [
        str(next((data / "videos").glob(f"{video}.*")))
        for video in read_list(data / "splits" / "weak_train.txt", "split")
        if labels[video].label == 0
    ]
    started = time.perf_counter()
    crops = parse_crop_mode(args.crops)
    job = QuantizeJob(videos=tuple(normal), backbones=(args.backbone,), crops=crops, clips=args.clips)
    calibration = quantize.run(job, report=lambda m: None)
    quantize_seconds = time.perf_counter() - started
    print(f"quantized on {calibration.clips} clips of {len(normal)} normal videos in {quantize_seconds:.0f} s")
    caches, seconds = {}, {}
    for runtime, precision in EXECUTIONS:
        cache = work / f"cache-{runtime}-{precision}"
        started = time.perf_counter()
        config = ExtractConfig(
            videos=(str(data / "videos"),),
            backbones=(args.backbone,),
            cache=str(cache),
            crops=crops,
            runtime=runtime,
            precision=precision,
            progress=False,
        )
        summary = extract.run(config, report=lambda m: None)
        if summary.failed:
            raise SystemExit(f"extraction failed: {summary.failed}")
        # A rerun resumes: the time of the run that extracted the cache is kept in it.
        timing = cache / "extraction-seconds.json"
        if summary.extracted:
            timing.write_text(json.dumps({"seconds": time.perf_counter() - started}))
        caches[(runtime, precision)] = cache
        seconds[(runtime, precision)] = json.loads(timing.read_text())["seconds"]
        print(f"{runtime} {precision}: {seconds[(runtime, precision)]:.0f} s", flush=True)

    reference = FeatureCache(caches[("torch", "fp32")])
    cosines = {}
    for key, cache in caches.items():
        other = FeatureCache(cache)
        values = []
        for video in reference.video_ids(args.backbone):
            a = reference.read(args.backbone, video).astype(np.float32)[0]
            b = other.read(args.backbone, video).astype(np.float32)[0]
            values.append((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)))
        cosines[key] = np.concatenate(values)

    aucs: dict[tuple[str, str], list[float]] = {key: [] for key in caches}
    for seed in (int(s) for s in args.seeds.split(",")):
        job = TrainJob(
            cache=str(caches[("torch", "fp32")]),
            annotations=annotations,
            split=str(data / "splits" / "weak_train.txt"),
            out=str(work / f"model-seed{seed}"),
            train=load_config(
                TrainConfig, REPO / "configs" / "teacher.yaml", [f"backbones=[{args.backbone}]", f"seed={seed}"]
            ),
            progress=False,
        )
        checkpoint = train_teacher.run(job, report=lambda m: None)["checkpoint"]
        for key, cache in caches.items():
            metrics = evaluate.run(
                EvaluateJob(
                    checkpoint=checkpoint,
                    cache=str(cache),
                    annotations=annotations,
                    split=str(data / "splits" / "weak_test.txt"),
                    out=str(work / f"eval-{key[0]}-{key[1]}-seed{seed}"),
                    plots=False,
                    progress=False,
                ),
                report=lambda m: None,
            )
            aucs[key].append(100 * metrics["roc_auc"])
    base = np.array(aucs[("torch", "fp32")])
    lines = [
        "# Does the runtime change detection?",
        "",
        f"`python benchmarks/runtime_accuracy.py {' '.join(sys.argv[1:])}`: one {args.backbone} model per seed "
        f"(seeds {args.seeds}; configs/teacher.yaml, trained on PyTorch fp32 features of the weak training split), "
        f"evaluated on the weak test split with the features of each runtime; crops {args.crops}; frame ROC AUC in %. "
        f"INT8: `dakd quantize` on {calibration.clips} clips of the {len(normal)} normal videos of the weak training "
        f"split ({quantize_seconds:.0f} s).",
        "",
        "| runtime | precision | extraction of 28 videos, s | per-snippet cosine vs torch fp32 (min / mean) | "
        "AUC (mean over seeds) | AUC - torch fp32 AUC, per seed | largest difference (<= 0.5) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in caches:
        differences = np.array(aucs[key]) - base
        lines.append(
            f"| {key[0]} | {key[1]} | {seconds[key]:.0f} | {cosines[key].min():.5f} / {cosines[key].mean():.5f} | "
            f"{np.mean(aucs[key]):.2f} | {' '.join(f'{d:+.2f}' for d in differences)} | "
            f"{np.abs(differences).max():.2f} |"
        )
    text = "\n".join(lines) + "\n"
    Path(args.out or REPO / "docs" / f"benchmark-runtime-accuracy-{args.backbone}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
