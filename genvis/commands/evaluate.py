"""`genvis evaluate`: score a YouTube-VIS results json against ground truth (video AP / AR).

Writes ``metrics.json`` (AP, AP50, AP75, APs, APm, APl, AR1, AR10 in percent, null where
undefined, plus per-category AP) atomically and prints a table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from genvis.utils.io import atomic_write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: --gt, --results (json or server zip), --out."""
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth VIS json (with annotations)")
    parser.add_argument("--results", required=True, type=Path,
                        help="results json (or a server zip holding results.json)")
    parser.add_argument("--out", required=True, type=Path, help="metrics json to write")


def run(args: argparse.Namespace) -> int:
    """Load, validate, evaluate, write metrics, print the table. Returns 0."""
    from genvis.data.results import read_results
    from genvis.data.ytvis import load_vis_json
    from genvis.errors import InputError
    from genvis.evaluate.ytvis_eval import evaluate, format_table

    t0 = time.perf_counter()
    gt = load_vis_json(args.gt)
    if not gt.has_annotations:
        raise InputError(args.gt, "has no ground-truth annotations (\"annotations\": null); cannot evaluate")
    results = read_results(args.results, gt)
    metrics = evaluate(gt, results, progress=len(gt.videos) >= 50)
    metrics["gt"] = str(args.gt)
    metrics["results"] = str(args.results)
    atomic_write_json(args.out, metrics, indent=1)
    print(format_table(metrics))
    print(f"{len(gt.videos)} videos, {len(results)} predicted instances, "
          f"{time.perf_counter() - t0:.2f} s -> {args.out}")
    return 0
