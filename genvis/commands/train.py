"""``genvis train``: stage two, train the GenVIS video modules from the feature cache."""

from __future__ import annotations

import argparse

from genvis.commands import add_device_argument, add_threads_argument, apply_threads, check_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options of ``genvis train``."""
    parser.add_argument("--cache", required=True, help="stage-one Zarr store of the training split")
    parser.add_argument("--annotations", required=True, help="YouTube-VIS/OVIS json with ground truth")
    parser.add_argument("--config", required=True, help="experiment YAML (config/experiments/*.yaml)")
    parser.add_argument("--out", required=True, help="MODEL.pt to write (losses.csv and resume "
                        "checkpoint are written beside it as <stem>.losses.csv / <stem>.resume.pt)")
    parser.add_argument("--iterations", type=int, default=None, help="override train.iterations (decay_steps are scaled by the same factor)")
    parser.add_argument("--seed", type=int, default=None,
                        help="override train.seed (initialisation, clip sampling, point sampling)")
    parser.add_argument("--init-heads", default=None, metavar="DET.pt",
                        help="initialise the class head, mask-embedding MLP and mask-feature 1x1 conv "
                        "from this frame detector's heads (recommended when training from scratch)")
    parser.add_argument("--init-model", default=None, metavar="MODEL.pt",
                        help="fine-tune: start from this trained stage-two model's weights (every "
                        "parameter of the same name and shape; the paper starts GenVIS from VITA "
                        "weights, here e.g. the N_v=1 model)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from <stem>.resume.pt if present "
                       "(same experiment; --iterations may differ, to extend a run)")
    again.add_argument("--resume-interrupted", action="store_true",
                       help="continue from <stem>.resume.pt only if this same run (experiment, seed, "
                       "iterations, initialisation, annotations, cache) wrote it and stopped early, else "
                       "start afresh; "
                       "the workflow's training rules pass it, so a killed job continues")
    add_device_argument(parser, "the video modules and the losses")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Train and write MODEL.pt. Returns 0; GenvisError subclasses on bad input."""
    from genvis.cache.reader import CacheReader
    from genvis.data.ytvis import load_vis_json
    from genvis.train.config import load_experiment
    from genvis.train.loop import train

    apply_threads(args)
    check_device(args)
    cfg = load_experiment(args.config)
    dataset = load_vis_json(args.annotations)
    reader = CacheReader(args.cache)
    resume = "interrupted" if args.resume_interrupted else args.resume
    out = train(cfg, reader, dataset, args.out, resume=resume, iterations=args.iterations,
                progress=not args.no_progress, init_heads=args.init_heads,
                init_model=args.init_model, device=args.device, seed=args.seed)
    print(f"wrote {out}")
    return 0
