"""`genvis compare`: method A vs method B over training seeds, with a paired video bootstrap.

Each method is given as one results json per training seed. Prints the per-seed video AP,
the seed means, their difference with a 95% bootstrap interval over the valid videos and
the fraction of draws where A is ahead (:mod:`genvis.evaluate.compare`), and writes them
atomically to ``--out`` (with the bootstrap draws), and with ``--plot`` a PNG of the per-seed
AP and the bootstrap distribution (:mod:`genvis.report.compare_figure`).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from genvis.utils.io import atomic_write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: --gt, --a FILE..., --b FILE..., --bootstrap N, --seed, --out, --plot,
    --label-a, --label-b, --no-progress."""
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth VIS json (with annotations)")
    parser.add_argument("--a", required=True, nargs="+", type=Path, metavar="RESULTS",
                        help="method A: one results json per training seed")
    parser.add_argument("--b", required=True, nargs="+", type=Path, metavar="RESULTS",
                        help="method B (e.g. the baseline): one results json per training seed")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="video bootstrap draws (1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the video draws (0)")
    parser.add_argument("--out", required=True, type=Path, help="comparison json to write")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="also draw the per-seed AP and the bootstrap distribution")
    parser.add_argument("--label-a", default="A", help="name of method A in the printout and the plot")
    parser.add_argument("--label-b", default="B", help="name of method B in the printout and the plot")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _nan_to_none(x):
    """NaN (undefined AP) -> None at any depth, for the strict json writer."""
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


def run(args: argparse.Namespace) -> int:
    """Load, compare, write, print. Returns 0."""
    from genvis.data.results import read_results
    from genvis.data.ytvis import load_vis_json
    from genvis.errors import InputError
    from genvis.evaluate.compare import paired_bootstrap

    t0 = time.perf_counter()
    gt = load_vis_json(args.gt)
    if not gt.has_annotations:
        raise InputError(args.gt, "has no ground-truth annotations (\"annotations\": null); cannot compare")
    a = [read_results(p, gt) for p in args.a]
    b = [read_results(p, gt) for p in args.b]
    out = paired_bootstrap(gt, a, b, n_boot=args.bootstrap, seed=args.seed, progress=not args.no_progress)
    la, lb = args.label_a, args.label_b
    record = {**out, "label_a": la, "label_b": lb, "gt": str(args.gt), "a": [str(p) for p in args.a],
              "b": [str(p) for p in args.b]}
    record = _nan_to_none(record)
    if args.plot is not None:
        from genvis.report.compare_figure import plot_comparison

        plot_comparison(record, args.plot, label_a=la, label_b=lb)
    atomic_write_json(args.out, record, indent=1)
    print(f"{la} per seed: {' / '.join(_fmt(x) for x in out['a_ap'])}  (mean {_fmt(out['a_mean'])})")
    print(f"{lb} per seed: {' / '.join(_fmt(x) for x in out['b_ap'])}  (mean {_fmt(out['b_mean'])})")
    lo, hi = out["ci95"]
    print(f"{la} - {lb}: {out['diff']:+.2f} video AP; 95% interval over {out['num_videos']} videos "
          f"({out['n_boot']} draws): [{lo:+.2f}, {hi:+.2f}]; {la} ahead in {100 * out['p_a_better']:.0f}% of draws")
    for k, r in out.get("assoc", {}).items():
        lo_k, hi_k = r["ci95"]
        print(f"{la} - {lb}: {r['diff']:+.2f} {k} ({_fmt(r['a_mean'])} vs {_fmt(r['b_mean'])}); "
              f"95% interval [{lo_k:+.2f}, {hi_k:+.2f}]; {la} ahead in {100 * r['p_a_better']:.0f}% of draws")
    print(f"{time.perf_counter() - t0:.1f} s -> {args.out}" + (f", {args.plot}" if args.plot else ""))
    return 0
