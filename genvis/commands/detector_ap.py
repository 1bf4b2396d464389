"""`genvis detector-ap`: the frame-level COCO mask AP of a trained frame detector on a split.

Every (sampled) frame of the split's videos is one image; the detector's top-k instances per
frame are scored against the instances present in it (pycocotools COCOeval, segm;
:func:`genvis.detector.train.evaluate_frame_ap`). Writes the json atomically and prints it.
"""

from __future__ import annotations

import argparse

from genvis.commands import add_device_argument, add_threads_argument, apply_threads, check_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: --detector, --annotations, --image-root, --out, --frames-per-video, --top-k."""
    parser.add_argument("--detector", required=True, help="genvis detector file (DET.pt)")
    parser.add_argument("--annotations", required=True, help="split json with annotations")
    parser.add_argument("--image-root", required=True, help="directory the json's file_names are relative to")
    parser.add_argument("--out", required=True, help="frame AP json to write")
    parser.add_argument("--frames-per-video", type=int, default=0,
                        help="score at most this many evenly spaced frames per video (0 = all frames)")
    parser.add_argument("--top-k", type=int, default=20, help="detections kept per frame (default 20)")
    add_device_argument(parser, "the detector")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    """Load, score, write, print. Returns 0."""
    import json

    from genvis.data.ytvis import load_vis_json
    from genvis.detector.model import FrameDetector
    from genvis.detector.train import evaluate_frame_ap
    from genvis.errors import ConfigError
    from genvis.utils.io import atomic_write_json

    if args.frames_per_video < 0:
        raise ConfigError("--frames-per-video", f"must be >= 0, got {args.frames_per_video}")
    if args.top_k < 1:
        raise ConfigError("--top-k", f"must be >= 1, got {args.top_k}")
    apply_threads(args)
    check_device(args)
    det = FrameDetector.load(args.detector)
    split = load_vis_json(args.annotations)
    metrics = evaluate_frame_ap(det, split, args.image_root, top_k=args.top_k, device=args.device,
                                progress=not args.no_progress, max_frames_per_video=args.frames_per_video)
    metrics.update({"detector": str(args.detector), "annotations": str(args.annotations),
                    "frames_per_video": int(args.frames_per_video)})
    atomic_write_json(args.out, metrics, indent=1)
    print("frame mask AP: " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in metrics.items()}))
    return 0
