"""``genvis report``: ablation tables (markdown + CSV) and Fig. 3-style plots from metrics files.

    genvis report --spec SPEC.yaml --out-dir DIR [--base-dir DIR]

The spec (see ``genvis.report.spec``) lists tables (rows: labels + a metrics.json) and
figures (series of (x, metrics.json) points). Writes ``DIR/<name>.md``, ``DIR/<name>.csv``
per table and figure, ``DIR/<name>.png`` per figure, and ``DIR/report.md`` with all of
them; prints ``report.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--spec``, ``--out-dir`` and ``--base-dir``."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--spec", type=Path,
                      help="report spec, YAML or JSON (tables and figures -> metrics.json files)")
    what.add_argument("--comparison-table", type=Path, metavar="SPEC",
                      help="a table of seed-replicated comparisons (genvis.report.comparison_table spec, JSON: rows -> "
                      "genvis compare / diagnose jsons), written as DIR/table.md, table.csv, report.md")
    parser.add_argument("--out-dir", required=True, type=Path,
                        help="folder for NAME.md / NAME.csv / NAME.png and report.md")
    parser.add_argument("--base-dir", type=Path, default=None,
                        help="folder that relative metrics paths in the spec are resolved against "
                             "(default: the current directory)")
    parser.add_argument("--quiet", action="store_true", help="do not print report.md")


def run(args: argparse.Namespace) -> int:
    """Build the report. Returns 0; bad input raises InputError / ConfigError (exit code 2)."""
    from genvis.report.build import write_report
    from genvis.report.spec import load_spec

    if args.comparison_table is not None:
        from genvis.report.metrics import load_metrics
        from genvis.report.comparison_table import write_seed_table

        written = write_seed_table(load_metrics(args.comparison_table), args.out_dir, base_dir=args.base_dir)
    else:
        spec = load_spec(args.spec, base_dir=args.base_dir)
        written = write_report(spec, args.out_dir)
    if not args.quiet:
        print(written[-1].read_text(encoding="utf-8"))
    return 0
