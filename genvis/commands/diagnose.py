"""`genvis diagnose`: the same methods under several inter-clip associations, side by side.

Each ``--row LABEL RESULTS...`` is one method scored with one association, one results json
per training seed (e.g. written by ``genvis infer --association oracle``). Writes the seed-mean
video AP and per-frame AP of every row (:mod:`genvis.evaluate.diagnosis`) atomically to
``--out`` (json) and, with ``--table``, as markdown, with ``--plot`` as a figure
(:mod:`genvis.report.diagnosis_figure`); prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genvis.utils.io import atomic_write_json, atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: --gt, --row LABEL RESULTS... (repeated), --horizon H, --out, --table, --plot."""
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth VIS json (with annotations)")
    parser.add_argument("--row", required=True, action="append", nargs="+", metavar="LABEL_OR_RESULTS",
                        help="a label, then one results json per training seed; repeat for every row")
    parser.add_argument("--horizon", type=int, default=None, metavar="H",
                        help="also split the per-frame AP at frame H (e.g. N_v x N_f of training) "
                             "and report it in consecutive ranges of H frames")
    parser.add_argument("--out", required=True, type=Path, help="diagnosis json to write")
    parser.add_argument("--table", type=Path, default=None, metavar="MD", help="also write the markdown table")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="also draw video AP per row and frame AP along the videos")


def run(args: argparse.Namespace) -> int:
    """Load, score, write, print. Returns 0; ConfigError / InputError on bad input."""
    from genvis.data.results import read_results
    from genvis.data.ytvis import load_vis_json
    from genvis.errors import ConfigError, InputError
    from genvis.evaluate.diagnosis import Row, diagnose, format_markdown

    if args.horizon is not None and args.horizon < 1:
        raise ConfigError("--horizon", f"must be >= 1 frame, got {args.horizon}")
    gt = load_vis_json(args.gt)
    if not gt.has_annotations:
        raise InputError(args.gt, "has no ground-truth annotations (\"annotations\": null); cannot diagnose")
    rows = []
    for spec in args.row:
        if len(spec) < 2:
            raise ConfigError("--row", f"needs a label and at least one results json, got {spec}")
        rows.append(Row(spec[0], [read_results(p, gt) for p in spec[1:]]))
    out = diagnose(gt, rows, args.horizon)
    table = format_markdown(out)
    atomic_write_json(args.out, {**out, "gt": str(args.gt),
                                 "results": {s[0]: s[1:] for s in args.row}}, indent=1)
    if args.table is not None:
        atomic_write_text(args.table, table)
    if args.plot is not None:
        from genvis.report.diagnosis_figure import plot_diagnosis

        plot_diagnosis(out, args.plot, title=f"association diagnosis: {args.out.name.split('.')[0]} ({args.gt.name})")
    print(table, end="")
    return 0
