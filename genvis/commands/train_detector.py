"""`genvis train-detector`: train the Mask2Former frame detector on a split's frames."""

from __future__ import annotations

import argparse

from genvis.commands import add_device_argument, add_threads_argument, apply_threads, check_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="training split json (with annotations)")
    parser.add_argument("--image-root", required=True, help="directory the json's file_names are relative to")
    parser.add_argument("--config", required=True, help="detector YAML (config/detectors/*.yaml)")
    parser.add_argument("--out", required=True, help="detector file to write (DET.pt)")
    parser.add_argument("--iterations", type=int, default=None, help="override train.iterations of the config")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from <out>.state.pt (same configs)")
    again.add_argument("--resume-interrupted", action="store_true",
                       help="continue from <out>.state.pt only if this same run (configs, --init, annotation "
                       "file) wrote it, else start afresh; the workflow passes it, so a killed job continues")
    parser.add_argument("--init", default=None, help="start from this genvis detector file (e.g. an imported one)")
    parser.add_argument("--eval-annotations", default=None, help="split json for frame-level mask AP")
    parser.add_argument("--eval-image-root", default=None, help="image root of --eval-annotations")
    parser.add_argument("--eval-out", default=None, help="write the frame AP json here")
    add_device_argument(parser, "the detector")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    import json

    from genvis.data.ytvis import load_vis_json
    from genvis.detector.config import load_detector_yaml
    from genvis.detector.train import TrainDetectorConfig, evaluate_frame_ap, train_detector
    from genvis.errors import InputError
    from genvis.utils.io import atomic_write_json

    if (args.eval_annotations is None) != (args.eval_image_root is None):
        raise InputError("--eval-annotations", "give --eval-annotations and --eval-image-root together")
    if args.eval_out and not args.eval_annotations:
        raise InputError("--eval-out", "needs --eval-annotations and --eval-image-root")
    apply_threads(args)
    check_device(args)
    cfg, train_opts = load_detector_yaml(args.config)
    if args.iterations is not None:
        train_opts = {**train_opts, "iterations": args.iterations}
    tcfg = TrainDetectorConfig.from_dict(train_opts, source=args.config)
    dataset = load_vis_json(args.annotations)
    resume = "interrupted" if args.resume_interrupted else args.resume
    det = train_detector(dataset, args.image_root, cfg, tcfg, args.out, resume=resume,
                         device=args.device, progress=not args.no_progress, init=args.init)
    print(f"wrote {args.out} (fingerprint {det.fingerprint()})")
    if args.eval_annotations:
        val = load_vis_json(args.eval_annotations)
        metrics = evaluate_frame_ap(det, val, args.eval_image_root, top_k=tcfg.eval_top_k,
                                    device=args.device, progress=not args.no_progress)
        metrics["detector"] = str(args.out)
        metrics["annotations"] = str(args.eval_annotations)
        print("frame mask AP: " + json.dumps({k: round(v, 2) if isinstance(v, float) else v
                                               for k, v in metrics.items()}))
        if args.eval_out:
            atomic_write_json(args.eval_out, metrics, indent=2)
    return 0
