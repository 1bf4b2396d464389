"""`genvis split`: split a VIS json by video into train and held-out parts (local scoring)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: --annotations, --holdout-fraction, --seed, --out-train, --out-holdout."""
    parser.add_argument("--annotations", required=True, type=Path, help="VIS json with ground truth")
    parser.add_argument("--holdout-fraction", required=True, type=float, help="fraction of videos held out, in (0, 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--out-train", required=True, type=Path, help="train part json")
    parser.add_argument("--out-holdout", required=True, type=Path, help="held-out part json")


def run(args: argparse.Namespace) -> int:
    """Split and write; print a summary. Returns 0."""
    from genvis.data.split import write_split
    from genvis.data.ytvis import load_vis_json

    ds = load_vis_json(args.annotations)
    train, hold = write_split(ds, args.holdout_fraction, args.seed, args.out_train, args.out_holdout)
    print(f"train: {len(train.videos)} videos -> {args.out_train}; "
          f"held out: {len(hold.videos)} videos -> {args.out_holdout}")
    return 0
