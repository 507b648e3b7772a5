"""The UCSD Ped2 benchmark: extract -> train the Teacher and the Student over several seeds on the weak
training split -> evaluate on the weak test split, plus the paper's ablations; writes a markdown table.

    python benchmarks/ped2.py --data ../shared/data/ucsd-ped2 --work runs/ped2 --seeds 0,1,2,3,4

``--data`` is any folder in the Ped2 layout (``videos/``, ``annotations.csv``,
``splits/weak_train.txt``, ``splits/weak_test.txt``). Backbones whose weights are not found are run
with random weights, and the table says so. Defaults come from the configs (never tuned on test data).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RTFM_PED2_AUC = 98.6  # RTFM (ICCV 2021), I3D-ResNet50 10-crop features, same weak split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ucsd-ped2"))
    parser.add_argument("--work", default="runs/ped2")
    parser.add_argument("--backbones", default="i3d,s3d,clip")
    parser.add_argument("--student", default="i3d")
    parser.add_argument("--crops", type=int, default=1)
    parser.add_argument("--cache", help="feature cache to use or fill (default: WORK/cache-<crops>crop)")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--ablation-seeds", default="0,1,2", help="seeds of the ablations (empty: none)")
    parser.add_argument("--set", action="append", default=[], help="config override for every run, key=value")
    parser.add_argument("--out", default=str(REPO / "docs" / "results.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from dakd.config import load_config
    from dakd.errors import DakdError
    from dakd.training import TrainConfig
    from extractors.backbones import find_weights
    from pipelines import distill, evaluate, extract, train_teacher
    from pipelines.jobs import EvaluateJob, ExtractConfig, TrainJob

    data, work = Path(args.data), Path(args.work)
    annotations = str(data / "annotations.csv")
    train_split, test_split = str(data / "splits" / "weak_train.txt"), str(data / "splits" / "weak_test.txt")
    backbones = tuple(args.backbones.split(","))
    random = []
    for name in backbones:
        try:
            find_weights(name)
        except DakdError:
            random.append(name)
    cache = args.cache or str(work / f"cache-{args.crops}crop")
    started = time.perf_counter()
    summary = extract.run(
        ExtractConfig(
            videos=(str(data / "videos"),),
            backbones=backbones,
            cache=cache,
            crops=args.crops,
            random_weights=tuple(random),
            progress=False,
        ),
        report=lambda m: None,
    )
    extract_seconds = time.perf_counter() - started
    if summary.failed:
        raise SystemExit(f"extraction failed: {summary.failed}")
    print(
        f"extract: {extract_seconds:.0f} s ({len(summary.extracted)} videos extracted, "
        f"{len(summary.skipped)} already in the cache); random weights: {random or 'none'}",
        flush=True,
    )

    def train_and_evaluate(kind: str, name: str, seed: int, overrides: list[str], teacher: str | None = None) -> dict:
        run_dir = work / "runs" / name / f"seed{seed}"
        config = load_config(TrainConfig, None, [*args.set, *overrides, f"seed={seed}"])
        job = TrainJob(
            cache=cache,
            annotations=annotations,
            split=train_split,
            out=str(run_dir),
            teacher=teacher,
            train=config,
            progress=False,
        )
        t0 = time.perf_counter()
        trained = (train_teacher if kind == "teacher" else distill).run(job, report=lambda m: None)
        t1 = time.perf_counter()
        metrics = evaluate.run(
            EvaluateJob(
                checkpoint=trained["checkpoint"], cache=cache, annotations=annotations, split=test_split, progress=False
            ),
            report=lambda m: None,
        )
        metrics.update(train_seconds=t1 - t0, eval_seconds=time.perf_counter() - t1, checkpoint=trained["checkpoint"])
        print(f"{name} seed {seed}: AUC {100 * metrics['roc_auc']:.2f}", flush=True)
        return metrics

    def teacher_path(name: str, seed: int) -> str:
        return str(work / "runs" / name / f"seed{seed}" / "teacher.pt")

    rows: dict[str, list[dict]] = {}
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:
        rows.setdefault("Teacher", []).append(
            train_and_evaluate("teacher", "teacher", seed, [f"backbones=[{','.join(backbones)}]"])
        )
        rows.setdefault("Student", []).append(
            train_and_evaluate(
                "student", "student", seed, [f"backbones=[{args.student}]"], teacher_path("teacher", seed)
            )
        )
    ablations: dict[str, list[dict]] = {}
    ablation_seeds = [int(s) for s in args.ablation_seeds.split(",") if s]
    # every proper, non-empty subset of the teacher's backbones (the full set is the main row)
    subsets = list(
        dict.fromkeys([backbones[:i] + backbones[i + 1 :] for i in range(len(backbones))] + [(b,) for b in backbones])
    )
    subsets = [s for s in subsets if s and s != backbones]
    for seed in ablation_seeds:
        ablations.setdefault("Teacher, TAM replaced by concatenation", []).append(
            train_and_evaluate(
                "teacher", "teacher-concat", seed, [f"backbones=[{','.join(backbones)}]", "model.tam=none"]
            )
        )
        for subset in subsets:
            ablations.setdefault(f"Teacher, backbones {'+'.join(subset)}", []).append(
                train_and_evaluate("teacher", f"teacher-{'-'.join(subset)}", seed, [f"backbones=[{','.join(subset)}]"])
            )
        student = [f"backbones=[{args.student}]"]
        teacher = teacher_path("teacher", seed)
        ablations.setdefault("Student without prediction-level loss", []).append(
            train_and_evaluate("student", "student-no-pred", seed, [*student, "distill.prediction=false"], teacher)
        )
        ablations.setdefault("Student without feature-level loss", []).append(
            train_and_evaluate("student", "student-no-feat", seed, [*student, "distill.feature=false"], teacher)
        )
        ablations.setdefault("Student without distillation (MIL only)", []).append(
            train_and_evaluate(
                "student",
                "student-mil-only",
                seed,
                [*student, "distill.prediction=false", "distill.feature=false"],
                teacher,
            )
        )

    def line(name: str, results: list[dict]) -> str:
        def stat(key: str) -> str:
            values = [100 * r[key] for r in results if r[key] is not None]
            return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if values else "n/a"

        train_s = np.mean([r["train_seconds"] for r in results])
        eval_s = np.mean([r["eval_seconds"] for r in results])
        return (
            f"| {name} | {len(results)} | {stat('roc_auc')} | {stat('average_precision')} | "
            f"{stat('pr_auc_trapezoid')} | {stat('false_alarm_rate')} | {train_s:.1f} | {eval_s:.1f} |"
        )

    command = "python benchmarks/ped2.py " + " ".join(sys.argv[1:])
    random_note = (
        f"**{', '.join(random)} ran with random weights** (no pretrained weights on this machine)"
        if random
        else "all backbones pretrained"
    )
    lines = [
        "# Results",
        "",
        "Produced by `benchmarks/ped2.py` (the command is under each table). Frame-level metrics are computed",
        "exactly as `dakd evaluate` does: snippet scores (crops averaged) given to their frames, all test frames",
        "concatenated in split order; AP is reported both as sklearn's average precision and as the trapezoid",
        "PR-AUC many WSVAD papers call AP. Checkpoints are the last training step: nothing is selected on test data.",
        "",
        "**How the defaults were chosen.** Every default (`configs/teacher.yaml`, `configs/student.yaml`) was",
        "fixed before any test number was seen and never changed after: tau 0.1, delta 0.5, alpha 1 as the",
        "method issue prescribes; MIL ranking loss with sparsity and smoothness 8e-5 and 32 segments from the",
        "authors' earlier PRIDE code; k = 4, width 128, one TAM layer, 300 Adam steps at 1e-4 with 16 + 16 bags",
        "as small, conventional choices for training sets of a few hundred videos. The Ped2 training split (10",
        "videos) is too small to tune on; `validation_fraction` and `benchmarks/sweep.py` are there to tune on",
        "held-out training videos of larger datasets. During development a handful of exploratory i3d-only",
        "teacher runs (steps, learning rate, width, dropout, top-k loss) were evaluated on the Ped2 test split",
        "(72.7 to 78.7 AUC); the defaults were not changed after them.",
        "",
        "## UCSD Ped2, weak split (10 training videos with video-level labels, 18 test videos)",
        "",
        f"`{command}`: {args.crops} crop(s), teacher backbones {'+'.join(backbones)} ({random_note}), "
        f"student {args.student}; mean ± standard deviation over seeds; frame-level metrics in %. "
        f"Extraction of the 28 videos: {extract_seconds:.0f} s on this machine (0 s when cached).",
        "",
        "| model | seeds | ROC AUC | AP (sklearn) | PR-AUC (trapezoid) | false alarms @0.5 | train s | eval s |",
        "|---|---|---|---|---|---|---|---|",
        *(line(name, results) for name, results in rows.items()),
        f"| RTFM (published, I3D-ResNet50 10-crop) | - | {RTFM_PED2_AUC} | - | - | - | - | - |",
    ]
    if ablations:
        lines += [
            "",
            "### Ablations",
            "",
            "| variant | seeds | ROC AUC | AP (sklearn) | PR-AUC (trapezoid) | false alarms @0.5 | train s | eval s |",
            "|---|---|---|---|---|---|---|---|",
            *(line(name, results) for name, results in ablations.items()),
        ]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
