"""`genvis augment`: write randomly flipped and cropped views of a training split (before stage one)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: --annotations, --image-root, --views, --seed, --min-scale, --out, --no-progress."""
    parser.add_argument("--annotations", required=True, type=Path, help="VIS json with ground truth (a training split)")
    parser.add_argument("--image-root", required=True, type=Path, help="folder the json's file_names are relative to")
    parser.add_argument("--views", required=True, type=int, help="augmented views per video (K >= 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the views (default 0)")
    parser.add_argument("--min-scale", type=float, default=0.6,
                        help="smallest crop side relative to the frame, in (0, 1] (default 0.6)")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder: frames/ and annotations.json (originals + K views per video)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Write the augmented split; print a summary. Returns 0."""
    from genvis.data.augment import augment_split
    from genvis.data.ytvis import load_vis_json

    ds = load_vis_json(args.annotations)
    out = augment_split(ds, args.image_root, args.out, args.views, args.seed, args.min_scale,
                        progress=not args.no_progress)
    dropped = (args.views + 1) * len(ds.annotations or []) - len(out.annotations or [])
    print(f"{len(ds.videos)} videos x {args.views + 1} views = {len(out.videos)} videos, "
          f"{len(out.annotations or [])} instances ({dropped} cropped out entirely) -> {args.out}/annotations.json")
    return 0
