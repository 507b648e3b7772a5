"""The UCSD Ped2 benchmark: extract every view -> train Teachers and Students over several seeds on each
split -> evaluate; writes the results table into docs/results.md (between its ``ped2`` markers).

    python benchmarks/ped2.py --work runs/ped2 --selection benchmarks/ped2_selection.yaml   # docs/results.md
    python benchmarks/ped2.py --work runs/ped2 --splits dev1,dev2,dev3,dev4,dev5 --seeds 0,1,2 --set KEY=VALUE

Rows: the Teacher with every view, each view alone (a Teacher on it), the Student distilled from the
Teacher, the same Student trained with the MIL loss only. Columns: the weak split (the reported number)
and the mean over the five dev splits (what every default was chosen on), mean +- standard deviation
over seeds. ``--selection FILE`` adds the rows of a YAML file (name, kind, views or backbone,
overrides): the dev-split comparisons that chose the defaults. ``--data`` is any folder in the Ped2
layout (``videos/``, ``annotations.csv``, ``splits/<split>_train.txt`` and ``_test.txt``). Views without
weights on this machine are left out and named.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RTFM_PED2_AUC = 98.6  # RTFM (ICCV 2021), I3D-ResNet50 10-crop features, the weak split
SPLITS = ("weak", "dev1", "dev2", "dev3", "dev4", "dev5")
BEGIN, END = "<!-- ped2 table: written by benchmarks/ped2.py -->", "<!-- end of ped2 table -->"


@dataclass
class Row:
    name: str
    kind: str  # teacher | student
    backbones: tuple[str, ...]
    overrides: list[str] = field(default_factory=list)
    teacher_row: str = "Teacher, all views"  # the Teacher a student row distils from


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ucsd-ped2"))
    parser.add_argument("--work", default="runs/ped2")
    parser.add_argument("--views", default="i3d_max,efficientnet_lite0,flow", help="the Teacher's views")
    parser.add_argument(
        "--students", default="flow,efficientnet_lite0", help="Student backbones, a row pair each (first: the default)"
    )
    parser.add_argument("--crops", default="full")
    parser.add_argument("--splits", default=",".join(SPLITS))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--selection-seeds", default="0,1,2", help="seeds of the --selection rows")
    parser.add_argument("--set", action="append", default=[], help="config override for every run, key=value")
    parser.add_argument("--selection", help="YAML of extra rows (dev-split comparisons that chose the defaults)")
    parser.add_argument("--out", default=str(REPO / "docs" / "results.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import yaml

    from dakd.config import load_config
    from dakd.training import TrainConfig
    from extractors.crops import parse_crop_mode
    from pipelines import distill, evaluate, extract, train_teacher
    from pipelines.demo import real_views
    from pipelines.jobs import EvaluateJob, ExtractConfig, TrainJob

    data, work = Path(args.data), Path(args.work)
    annotations = str(data / "annotations.csv")
    students = tuple(args.students.split(","))
    student = students[0]  # the Student of the selection rows
    items = yaml.safe_load(Path(args.selection).read_text()) if args.selection else []
    wanted = [*args.views.split(","), *students, *(b for item in items for b in item.get("backbones", []))]
    views, missing = real_views(tuple(dict.fromkeys(wanted)))
    crops = parse_crop_mode(args.crops)
    cache = str(work / f"cache-{crops}")

    timings = Path(cache) / "extraction-seconds.json"  # the time of the run that extracted, kept for reruns
    extract_seconds = json.loads(timings.read_text()) if timings.exists() else {}
    for view in views:  # one view at a time, to time each
        started = time.perf_counter()
        summary = extract.run(
            ExtractConfig(videos=(str(data / "videos"),), backbones=(view,), cache=cache, crops=crops, progress=False),
            report=lambda m: None,
        )
        if summary.failed:
            raise SystemExit(f"extraction failed: {summary.failed}")
        if summary.extracted:
            extract_seconds[view] = [time.perf_counter() - started, len(summary.extracted)]
            timings.write_text(json.dumps(extract_seconds))
        print(f"extract {view}: {time.perf_counter() - started:.0f} s ({len(summary.extracted)} videos)", flush=True)

    teacher_views = tuple(v for v in views if v in args.views.split(","))
    rows = [Row("Teacher, all views", "teacher", teacher_views)]
    rows += [Row(f"Teacher on {view} alone", "teacher", (view,)) for view in teacher_views]
    mil_only = ["distill.prediction=false", "distill.feature=false"]
    for name in students:
        rows += [Row(f"Student ({name}), distilled", "student", (name,))]
        rows += [Row(f"Student ({name}), MIL loss only", "student", (name,), mil_only)]
    selection = [
        Row(
            item["name"],
            item["kind"],
            tuple(item.get("backbones", teacher_views if item["kind"] == "teacher" else (student,))),
            list(item.get("set", [])),
            item.get("teacher", "Teacher, all views"),
        )
        for item in items
    ]

    def run_dir(row_name: str, split: str, seed: int) -> Path:
        slug = "".join(c if c.isalnum() else "-" for c in row_name.lower()).strip("-")
        return work / "runs" / split / slug / f"seed{seed}"

    def run(row: Row, split: str, seed: int) -> dict:
        folder = run_dir(row.name, split, seed)
        record = folder / "result.json"
        if record.exists():  # reruns resume
            return json.loads(record.read_text())
        config_file = REPO / "configs" / f"{row.kind}.yaml"
        overrides = [*args.set, *row.overrides, f"backbones=[{','.join(row.backbones)}]", f"seed={seed}"]
        teacher = str(run_dir(row.teacher_row, split, seed) / "teacher.pt")
        job = TrainJob(
            cache=cache,
            annotations=annotations,
            split=str(data / "splits" / f"{split}_train.txt"),
            out=str(folder),
            teacher=teacher,
            train=load_config(TrainConfig, config_file, overrides),
            progress=False,
        )
        started = time.perf_counter()
        trained = (train_teacher if row.kind == "teacher" else distill).run(job, report=lambda m: None)
        train_seconds = time.perf_counter() - started
        metrics = evaluate.run(
            EvaluateJob(
                checkpoint=trained["checkpoint"],
                cache=cache,
                annotations=annotations,
                split=str(data / "splits" / f"{split}_test.txt"),
                plots=False,
                progress=False,
            ),
            report=lambda m: None,
        )
        result = {"auc": 100 * metrics["roc_auc"], "ap": 100 * metrics["average_precision"], "train_s": train_seconds}
        record.write_text(json.dumps(result))
        print(f"{split} {row.name} seed {seed}: AUC {result['auc']:.2f} ({train_seconds:.0f} s)", flush=True)
        return result

    splits = args.splits.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    selection_seeds = [int(s) for s in args.selection_seeds.split(",")]
    results: dict[str, dict[str, list[dict]]] = {}
    for row in rows + selection:
        for split in splits if row in rows else [s for s in splits if s != "weak"]:
            for seed in seeds if row in rows else selection_seeds:
                results.setdefault(row.name, {}).setdefault(split, []).append(run(row, split, seed))

    def weak(name: str) -> str:
        values = [r["auc"] for r in results[name].get("weak", [])]
        return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if values else "-"

    def dev(name: str) -> tuple[str, list[str]]:
        dev_splits = [s for s in splits if s != "weak"]
        if not dev_splits:
            return "-", []
        per_seed = np.mean([[r["auc"] for r in results[name][s]] for s in dev_splits], axis=0)  # mean over splits
        per_split = [f"{np.mean([r['auc'] for r in results[name][s]]):.1f}" for s in dev_splits]
        return f"{np.mean(per_seed):.2f} ± {np.std(per_seed):.2f}", per_split

    def seconds(name: str) -> str:
        return f"{np.mean([r['train_s'] for runs in results[name].values() for r in runs]):.0f}"

    dev_names = [s for s in splits if s != "weak"]
    header = f"| model | weak split AUC | dev mean AUC | {' | '.join(dev_names)} | train s |"
    rule = "|---|---|---|" + "---|" * len(dev_names) + "---|"

    def table(chosen: list[Row]) -> list[str]:
        lines = [header, rule]
        for row in chosen:
            mean, per_split = dev(row.name)
            lines.append(f"| {row.name} | {weak(row.name)} | {mean} | {' | '.join(per_split)} | {seconds(row.name)} |")
        return lines

    command = "python benchmarks/ped2.py " + " ".join(sys.argv[1:])
    extraction = ", ".join(f"{v} {extract_seconds[v][0]:.0f} s" for v in views if v in extract_seconds)
    lines = [
        BEGIN,
        f"`{command}` (crops: {crops}; seeds {args.seeds}, selection rows {args.selection_seeds}; "
        f"frame-level ROC AUC in %, mean ± standard deviation "
        f"over seeds; a dev-split mean is the mean over the five dev splits, per seed). Teacher views: "
        f"{', '.join(teacher_views)}"
        + (f"; left out (no weights here): {', '.join(missing)}" if missing else "")
        + f". Extraction of the 28 videos on this machine: {extraction} (timed when first extracted); "
        "train s is per run.",
        "",
        *table(rows),
        f"| RTFM (published; I3D-ResNet50, 10 crops) | {RTFM_PED2_AUC} | - |" + " - |" * len(dev_names) + " - |",
    ]
    if selection:
        lines += ["", "Dev-split comparisons that chose the defaults (the weak split's test videos were not used):", ""]
        lines += table(selection)
    lines.append(END)
    block = "\n".join(lines)
    out = Path(args.out)
    text = out.read_text() if out.exists() else f"# Results\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text += "\n" + block + "\n"
    out.write_text(text)
    print(block)


if __name__ == "__main__":
    main()
