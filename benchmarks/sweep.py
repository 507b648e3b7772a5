"""The paper's Figure 5 grid: Student AUC as tau, alpha, k or delta varies (one at a time, the others at
their defaults), on any cache. Each point distils the given Teacher into a Student and evaluates it.

Example (UCSD Ped2 cache)::

    python benchmarks/sweep.py --cache ped2-cache --teacher runs/teacher/teacher.pt \
        --annotations ../shared/data/ucsd-ped2/annotations.csv \
        --train-split ../shared/data/ucsd-ped2/splits/weak_train.txt \
        --test-split ../shared/data/ucsd-ped2/splits/weak_test.txt --seeds 0,1,2

Writes ``sweep.md`` (mean and spread per value) and ``sweep.png`` (four panels) to ``--out``. The split
the points are evaluated on is reported, never used to pick defaults: tune on training videos only
(e.g. ``--test-split`` = a held-out part of the training split).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GRID = {
    "distill.tau": [0.05, 0.1, 0.2, 0.5, 1.0],
    "distill.alpha": [0.1, 0.5, 1.0, 2.0, 5.0],
    "model.max_relative_distance": [1, 2, 4, 8, 16],
    "distill.delta": [0.3, 0.4, 0.5, 0.6, 0.7],
}
SYMBOLS = {"distill.tau": "tau", "distill.alpha": "alpha", "model.max_relative_distance": "k", "distill.delta": "delta"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--teacher", required=True, help="Teacher checkpoint to distil from")
    parser.add_argument("--annotations")
    parser.add_argument("--train-split")
    parser.add_argument("--test-split")
    parser.add_argument("--backbone", default="i3d", help="the Student's backbone")
    parser.add_argument("--config", help="base YAML config of the Student")
    parser.add_argument("--set", action="append", default=[], help="extra override, key=value (repeatable)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--parameters", default=",".join(SYMBOLS.values()), help="subset of tau,alpha,k,delta")
    parser.add_argument("--out", default="runs/sweep")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from dakd.config import load_config
    from dakd.training import TrainConfig
    from pipelines import distill, evaluate
    from pipelines.jobs import EvaluateJob, TrainJob

    out = Path(args.out)
    wanted = set(args.parameters.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, list[tuple[float, list[float]]]] = {}
    for key, values in GRID.items():
        if SYMBOLS[key] not in wanted:
            continue
        for value in values:
            aucs = []
            for seed in seeds:
                overrides = [*args.set, f"backbones=[{args.backbone}]", f"{key}={value}", f"seed={seed}"]
                run_dir = out / f"{SYMBOLS[key]}={value}" / f"seed{seed}"
                job = TrainJob(
                    cache=args.cache,
                    annotations=args.annotations,
                    split=args.train_split,
                    out=str(run_dir),
                    teacher=args.teacher,
                    train=load_config(TrainConfig, args.config, overrides),
                    progress=False,
                )
                summary = distill.run(job, report=lambda m: None)
                metrics = evaluate.run(
                    EvaluateJob(
                        checkpoint=summary["checkpoint"],
                        cache=args.cache,
                        annotations=args.annotations,
                        split=args.test_split,
                        progress=False,
                    ),
                    report=lambda m: None,
                )
                aucs.append(100 * metrics["roc_auc"])
            results.setdefault(key, []).append((value, aucs))
            print(f"{SYMBOLS[key]}={value}: AUC {np.mean(aucs):.2f} +- {np.std(aucs):.2f}", flush=True)

    lines = [
        "# Figure 5 sweep",
        "",
        f"Student `{args.backbone}` distilled from `{args.teacher}`; cache `{args.cache}`; train split "
        f"`{args.train_split}`; evaluated on `{args.test_split}`; seeds {args.seeds}; frame ROC AUC (%), "
        "mean +- standard deviation over seeds. One parameter varies at a time; the others keep their defaults.",
        "",
        "| parameter | value | AUC mean | AUC std |",
        "|---|---|---|---|",
    ]
    for key, points in results.items():
        for value, aucs in points:
            lines.append(f"| {SYMBOLS[key]} | {value:g} | {np.mean(aucs):.2f} | {np.std(aucs):.2f} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3), squeeze=False)
    for axis, (key, points) in zip(axes[0], results.items()):
        values = [v for v, _ in points]
        means = [np.mean(a) for _, a in points]
        stds = [np.std(a) for _, a in points]
        axis.errorbar(range(len(values)), means, yerr=stds, marker="o", capsize=3)
        axis.set_xticks(range(len(values)), [f"{v:g}" for v in values])
        axis.set(xlabel=SYMBOLS[key], ylabel="frame AUC (%)")
    figure.tight_layout()
    figure.savefig(out / "sweep.png", dpi=110)
    print((out / "sweep.md").read_text())


if __name__ == "__main__":
    main()
