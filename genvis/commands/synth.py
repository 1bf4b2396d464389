"""`genvis synth`: write the synthetic OVIS-style occlusion benchmark (frames + train/valid json).

See :mod:`genvis.data.synth` for what the videos contain.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: --out, --videos, --seed and the optional size / length / instance settings."""
    from genvis.data.synth import CATEGORIES, STYLES, SynthConfig

    d = SynthConfig()
    parser.add_argument("--out", required=True, type=Path, help="output folder (frames/, train.json, valid.json)")
    parser.add_argument("--videos", required=True, type=int, help="number of videos in train + valid")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    parser.add_argument("--height", type=int, default=d.height, help=f"frame height in pixels (default {d.height})")
    parser.add_argument("--width", type=int, default=d.width, help=f"frame width in pixels (default {d.width})")
    parser.add_argument("--min-length", type=int, default=d.min_length, help=f"shortest video, frames (default {d.min_length})")
    parser.add_argument("--max-length", type=int, default=d.max_length, help=f"longest video, frames (default {d.max_length})")
    parser.add_argument("--valid-fraction", type=float, default=d.valid_fraction,
                        help=f"fraction of videos in valid.json (default {d.valid_fraction})")
    parser.add_argument("--valid-videos", type=int, default=None,
                        help="number of videos in valid.json (instead of --valid-fraction); the train "
                        "videos are the same for any count, so a larger valid split can be added later")
    parser.add_argument("--min-instances", type=int, default=d.min_instances)
    parser.add_argument("--max-instances", type=int, default=d.max_instances)
    parser.add_argument("--categories", type=int, default=d.num_categories,
                        help=f"number of categories, 1..{len(CATEGORIES)} (default {d.num_categories})")
    parser.add_argument("--style", choices=STYLES, default=d.style,
                        help="'shared': shapes and textures shared between categories, random colours "
                        "(the original benchmark); 'distinct': one shape, texture and colour pair per "
                        "category, dark contours: easy frames, look-alike instances (default "
                        f"{d.style})")
    parser.add_argument("--color-jitter", type=float, default=d.color_jitter,
                        help="distinct style: standard deviation, in grey levels per channel, of each "
                        f"instance's colours around its category's (default {d.color_jitter})")
    parser.add_argument("--lookalike-jitter", type=float, default=d.lookalike_jitter,
                        help="standard deviation, in grey levels per channel, of a look-alike's colours "
                        f"around those of the instance it copies (default {d.lookalike_jitter})")
    parser.add_argument("--lookalike-offset", type=float, default=d.lookalike_offset,
                        help="closest distance, in radii, between the centres of a look-alike pair as "
                        f"they cross; 0: the same point at the same time (default {d.lookalike_offset})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Generate and write the benchmark; print a summary. Returns 0."""
    from genvis.data.synth import SynthConfig, write_synth_dataset
    from genvis.errors import ConfigError

    valid_fraction = args.valid_fraction
    if args.valid_videos is not None:
        if not 1 <= args.valid_videos < args.videos:
            raise ConfigError("--valid-videos", f"must be in 1..{args.videos - 1} (--videos {args.videos}), "
                              f"got {args.valid_videos}")
        valid_fraction = args.valid_videos / args.videos
    cfg = SynthConfig(num_videos=args.videos, seed=args.seed, height=args.height, width=args.width,
                      min_length=args.min_length, max_length=args.max_length,
                      valid_fraction=valid_fraction, min_instances=args.min_instances,
                      max_instances=args.max_instances, num_categories=args.categories,
                      style=args.style, color_jitter=args.color_jitter,
                      lookalike_jitter=args.lookalike_jitter,
                      lookalike_offset=args.lookalike_offset).validate()
    summary = write_synth_dataset(args.out, cfg, progress=not args.no_progress)
    for split in ("train", "valid"):
        s = summary[split]
        print(f"{split}: {s['videos']} videos, {s['frames']} frames, {s['instances']} instances "
              f"-> {args.out / (split + '.json')}")
    return 0
