"""``genvis visualize``: draw a results json's tracks beside the ground truth of some videos.

For every chosen video writes ``<out-dir>/video_<id>.png`` (a contact sheet of evenly
spaced frames, ground truth above, predictions below, with a legend) and, with ``--mp4``,
``<out-dir>/video_<id>.mp4`` (every frame, side by side). Predictions take the colour of the
ground-truth instance they match by video IoU (:mod:`genvis.report.video_figure`), so
identity switches and drift are visible at a glance.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options of ``genvis visualize``."""
    parser.add_argument("--annotations", required=True, type=Path,
                        help="the split's json (videos; its annotations, if any, are drawn as ground truth)")
    parser.add_argument("--image-root", required=True, type=Path, help="directory the json's file_names are relative to")
    parser.add_argument("--results", required=True, type=Path, help="results json (or server zip) to draw")
    parser.add_argument("--out-dir", required=True, type=Path, help="where video_<id>.png (and .mp4) go")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--video-id", type=int, action="append", help="a video to draw (repeat for more)")
    which.add_argument("--all", action="store_true", help="draw every video of the annotation file")
    which.add_argument("--longest", type=int, metavar="N",
                       help="draw the N longest videos (in frames; ties by id): where propagation is hardest")
    parser.add_argument("--score-threshold", type=float, default=0.3,
                        help="draw predictions scoring at least this (default 0.3)")
    parser.add_argument("--max-instances", type=int, default=10, help="at most this many predictions per video (default 10)")
    parser.add_argument("--frames", type=int, default=8, help="frames on the contact sheet (default 8)")
    parser.add_argument("--mp4", action="store_true", help="also write an mp4 of every frame, side by side")
    parser.add_argument("--fps", type=float, default=6.0, help="mp4 frame rate (default 6)")
    parser.add_argument("--label", help="name of the results in the figure titles (default: the file name)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def longest_videos(dataset, count: int) -> list[int]:
    """Ids of the ``count`` longest videos of a :class:`~genvis.data.ytvis.VisDataset` (most
    frames first, ties by ascending id); all of them if it has fewer."""
    return sorted(dataset.video_ids, key=lambda v: (-dataset.video(v).length, v))[:count]


def run(args: argparse.Namespace) -> int:
    """Draw the chosen videos. Returns 0; InputError / ConfigError on bad input."""
    from tqdm import tqdm

    from genvis.data.results import read_results
    from genvis.data.ytvis import load_vis_json
    from genvis.errors import ConfigError, InputError
    from genvis.report.video_figure import video_tracks, write_contact_sheet, write_side_by_side_video

    if args.frames < 1 or args.max_instances < 0 or args.fps <= 0:
        raise ConfigError("--frames/--max-instances/--fps", "need frames >= 1, max-instances >= 0, fps > 0")
    if args.longest is not None and args.longest < 1:
        raise ConfigError("--longest", f"need at least 1 video, got {args.longest}")
    dataset = load_vis_json(args.annotations)
    if args.all:
        ids = dataset.video_ids
    elif args.longest is not None:
        ids = longest_videos(dataset, args.longest)
    else:
        ids = list(dict.fromkeys(args.video_id))
    known = set(dataset.video_ids)
    missing = [v for v in ids if v not in known]
    if missing:
        raise InputError(args.annotations, f"no video with id {missing[0]}"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    results = read_results(args.results, dataset)
    for vid in tqdm(ids, desc="visualize", unit="video", disable=args.no_progress or len(ids) < 2):
        gt, pred = video_tracks(dataset, results, vid, args.score_threshold, args.max_instances)
        png = args.out_dir / f"video_{vid}.png"
        write_contact_sheet(dataset, args.image_root, vid, gt, pred, png, args.frames,
                            title=f"{args.label or args.results.name}: video {vid} ({dataset.video(vid).length} frames)")
        line = f"video {vid}: {len(gt)} ground-truth instances, {len(pred)} predictions drawn -> {png}"
        if args.mp4:
            mp4 = args.out_dir / f"video_{vid}.mp4"
            write_side_by_side_video(dataset, args.image_root, vid, gt, pred, mp4, args.fps,
                                     progress=not args.no_progress)
            line += f", {mp4}"
        print(line)
    return 0
