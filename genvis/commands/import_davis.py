"""`genvis import-davis`: convert a DAVIS-layout dataset into YouTube-VIS json.

``file_names`` in the output are relative to ``ROOT/JPEGImages`` (the image root of the split).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: --root, --out, and either --sequences or --split (+ --val-fraction, --seed); --category."""
    parser.add_argument("--root", required=True, type=Path, help="DAVIS root with JPEGImages/ and Annotations/")
    parser.add_argument("--out", required=True, type=Path, help="YouTube-VIS json to write")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--sequences", help="comma-separated sequence names to import")
    group.add_argument("--split", choices=("train", "val"), help="deterministic split by sequence")
    parser.add_argument("--val-fraction", type=float, default=0.25,
                        help="fraction of sequences in the val part (default 0.25)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--category", default="object", help="name of the single category (default 'object')")


def run(args: argparse.Namespace) -> int:
    """Import and write atomically; print a summary. Returns 0."""
    from genvis.data.davis import import_davis
    from genvis.data.ytvis import save_vis_json

    seqs = [s.strip() for s in args.sequences.split(",") if s.strip()] if args.sequences else None
    ds = import_davis(args.root, sequences=seqs, split=args.split, val_fraction=args.val_fraction,
                      seed=args.seed, category=args.category, progress=True)
    save_vis_json(ds, args.out)
    print(f"{len(ds.videos)} sequences, {sum(v.length for v in ds.videos)} frames, "
          f"{len(ds.annotations or [])} instances -> {args.out}")
    return 0
