"""``genvis demo``: detector + GenVIS on a video file or frame folder -> results json + overlay video."""

from __future__ import annotations

import argparse

from genvis.commands import add_device_argument, add_threads_argument, apply_threads, check_device
from genvis.commands.import_checkpoint import add_official_size_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options of ``genvis demo``."""
    parser.add_argument("--video", required=True, help="video file (e.g. .mp4/.avi) or folder of frames")
    parser.add_argument("--checkpoint", default=None,
                        help="official GenVIS .pth holding the detector and the video modules: no "
                        "YAML, no DET.pt (architecture from its keys, input size from --dataset / "
                        "the class count or --min-size/--max-size)")
    parser.add_argument("--detector", default=None, help="frame detector DET.pt (instead of --checkpoint)")
    parser.add_argument("--model", default=None, help="stage-two MODEL.pt (GenVIS or IDOL) or official GenVIS .pth "
                        "(instead of --checkpoint, or to replace its video modules)")
    add_official_size_arguments(parser)
    parser.add_argument("--out-dir", required=True, help="writes results.json and overlay.mp4 here")
    parser.add_argument("--n-f-eval", type=int, default=None, help="N_f^eval (default: the experiment's)")
    parser.add_argument("--top-k", type=int, default=None, help="predictions kept (default: the experiment's)")
    parser.add_argument("--score-threshold", type=float, default=0.3,
                        help="class score an instance needs to be drawn in the overlay (default 0.3)")
    parser.add_argument("--max-frames", type=int, default=None, help="only the first N frames")
    parser.add_argument("--allow-other-detector", action="store_true",
                        help="run even if --detector is not the detector (weights, resolution) whose "
                        "cache the model was trained on; by default that is refused")
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
    detector, model = args.detector, args.model
    if args.checkpoint is None:
        if detector is None or model is None:
            raise ConfigError("--checkpoint", "give an official checkpoint (--checkpoint OFFICIAL.pth), "
                              "or both --detector DET.pt and --model MODEL.pt")
        if args.dataset or args.min_size or args.max_size:
            raise ConfigError("--dataset/--min-size/--max-size", "apply to --checkpoint only (a DET.pt "
                              "keeps its input size)")
    else:
        if detector is not None:
            raise ConfigError("--detector", "give either --checkpoint or --detector, not both")
        from genvis.model.checkpoint import load_official_genvis
        from genvis.commands.import_checkpoint import describe
        from genvis.detector.official_import import load_official_detector

        detector, _, official = load_official_detector(args.checkpoint, None, args.dataset,
                                                       args.min_size, args.max_size)
        print(f"detector inferred from {args.checkpoint}: {describe(detector.cfg)}")
        if model is None:
            import torch

            video = {k: torch.from_numpy(v) for k, v in official.items() if k.startswith("vita_module.")}
            if not video:
                raise ConfigError("--model", f"{args.checkpoint} holds no video modules (vita_module.*), "
                                  f"e.g. a Mask2Former detector checkpoint: pass --model MODEL.pt")
            model = (load_official_genvis(video, num_classes=detector.cfg.num_classes,
                                          hidden_dim=detector.cfg.hidden_dim), {"official": True, "experiment": None})
        del official
    out = run_demo(args.video, detector, model, args.out_dir, args.n_f_eval, args.top_k,
                   args.score_threshold, args.max_frames, args.device, not args.no_progress,
                   allow_other_detector=args.allow_other_detector)
    print(f"wrote {out['results']} ({out['predictions']} predictions) and {out['overlay']} "
          f"({out['frames']} frames, {out['instances']} instances drawn)")
    return 0
