"""``genvis demo``: detector + GenVIS on a video file or frame folder -> results json + overlay video."""

from __future__ import annotations

import argparse

from genvis.commands import add_device_argument, add_threads_argument, apply_threads, check_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options of ``genvis demo``."""
    parser.add_argument("--video", required=True, help="video file (e.g. .mp4/.avi) or folder of frames")
    parser.add_argument("--detector", required=True, help="frame detector DET.pt")
    parser.add_argument("--model", required=True, help="stage-two MODEL.pt (GenVIS or IDOL) or official GenVIS .pth")
    parser.add_argument("--out-dir", required=True, help="writes results.json and overlay.mp4 here")
    parser.add_argument("--n-f-eval", type=int, default=None, help="N_f^eval (default: the experiment's)")
    parser.add_argument("--top-k", type=int, default=None, help="predictions kept (default: the experiment's)")
    parser.add_argument("--score-threshold", type=float, default=0.3,
                        help="class score an instance needs to be drawn in the overlay (default 0.3)")
    parser.add_argument("--max-frames", type=int, default=None, help="only the first N frames")
    add_device_argument(parser, "the detector and the video modules")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the demo. Returns 0; GenvisError subclasses on bad input."""
    from genvis.errors import ConfigError
    from genvis.infer.demo import run_demo

    apply_threads(args)
    check_device(args)
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError("--max-frames", f"must be >= 1, got {args.max_frames}")
    out = run_demo(args.video, args.detector, args.model, args.out_dir, args.n_f_eval, args.top_k,
                   args.score_threshold, args.max_frames, args.device, not args.no_progress)
    print(f"wrote {out['results']} ({out['predictions']} predictions) and {out['overlay']} "
          f"({out['frames']} frames, {out['instances']} instances drawn)")
    return 0
