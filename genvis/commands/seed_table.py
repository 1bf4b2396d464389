"""``genvis seed-table``: rows of methods x training seeds -> mean ± std table (markdown + CSV).

    genvis seed-table --row "LABEL" s0/metrics.json s1/metrics.json ... [--row ...]
                      --out-md T.md --out-csv T.csv [--title TITLE] [--command CMD]

Columns: AP, AP50, AP75, AR1, AR10 and, where the metrics files have them, HOTA / AssA /
occlusion-level keys (:mod:`genvis.report.seed_table`). ``--command`` is written at the head
of both files (the command that reproduces the table).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options of ``genvis seed-table``."""
    parser.add_argument("--row", nargs="+", action="append", required=True, metavar=("LABEL", "METRICS"),
                        help="a row: its label, then one metrics.json per seed (repeat for each row)")
    parser.add_argument("--out-md", required=True, help="markdown table to write")
    parser.add_argument("--out-csv", required=True, help="CSV table to write")
    parser.add_argument("--title", default="Results over seeds", help="markdown title")
    parser.add_argument("--command", default=None, help="the command that reproduces the table")


def run(args: argparse.Namespace) -> int:
    """Write both tables. Returns 0; bad input raises InputError (exit code 2)."""
    from genvis.report.seed_table import build, to_csv, to_markdown
    from genvis.utils.io import atomic_write_text

    cols, rows = build([(r[0], r[1:]) for r in args.row])
    md = to_markdown(cols, rows, args.title, args.command)
    atomic_write_text(args.out_md, md)
    atomic_write_text(args.out_csv, to_csv(cols, rows, args.command))
    print(md)
    return 0
