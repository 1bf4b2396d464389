"""Frame mask AP of the quickstart's frame detector against its training cost, per synth style.

Generates a synthetic benchmark (``genvis synth`` settings below), trains the frame detector
of ``--detector-config`` for ``--iterations`` (the real ``genvis train-detector`` code), and
scores it with the frame-level COCO mask AP on the valid split (``evaluate_frame_ap``).
Prints the seconds per iteration, the frame AP / AP50 / AP75, and the extrapolated cost
of the quickstart's detector at its configured iterations. Use it to choose the levers of
the benchmark (style, frame size, iterations) by measurement; runs are small: ``nice`` them.

    nice python benchmarks/bench_detector_ap.py --style distinct --iterations 400 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import DEFAULT_DETECTOR, setup_torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--style", default="distinct", choices=("shared", "distinct"))
    ap.add_argument("--videos", type=int, default=40, help="train + valid videos")
    ap.add_argument("--valid-videos", type=int, default=8)
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--min-length", type=int, default=10)
    ap.add_argument("--max-length", type=int, default=110)
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--eval-frames-per-video", type=int, default=12,
                    help="evenly spaced valid frames scored per video (0 = all)")
    ap.add_argument("--detector-config", type=Path, default=DEFAULT_DETECTOR)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_detector_ap"))
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    setup_torch(args)

    from genvis.data.synth import SynthConfig, write_synth_dataset
    from genvis.data.ytvis import load_vis_json
    from genvis.detector.config import load_detector_yaml
    from genvis.detector.train import TrainDetectorConfig, evaluate_frame_ap, train_detector

    tag = f"{args.style}_{args.videos}_{args.height}x{args.width}_{args.min_length}-{args.max_length}"
    data = args.workdir / tag
    cfg = SynthConfig(num_videos=args.videos, seed=0, height=args.height, width=args.width,
                      min_length=args.min_length, max_length=args.max_length,
                      valid_fraction=args.valid_videos / args.videos, style=args.style).validate()
    t0 = time.perf_counter()
    write_synth_dataset(data, cfg, progress=False)
    t_synth = time.perf_counter() - t0
    train = load_vis_json(data / "train.json")
    valid = load_vis_json(data / "valid.json")
    dcfg, opts = load_detector_yaml(args.detector_config)
    configured = int(opts.get("iterations", TrainDetectorConfig.iterations))
    tcfg = TrainDetectorConfig.from_dict({**opts, "iterations": args.iterations,
                                          "checkpoint_every": max(int(opts.get("checkpoint_every", 200)),
                                                                  args.iterations)}, args.detector_config)
    det_path = args.workdir / f"{tag}_{args.iterations}.pt"
    t0 = time.perf_counter()
    det = train_detector(train, data / "frames", dcfg, tcfg, det_path, device=args.device, progress=False)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    m = evaluate_frame_ap(det, valid, data / "frames", top_k=tcfg.eval_top_k, device=args.device,
                          progress=False, max_frames_per_video=args.eval_frames_per_video)
    t_eval = time.perf_counter() - t0
    per_it = t_train / args.iterations
    out = {"style": args.style, "videos": args.videos, "valid_videos": args.valid_videos,
           "frame_size": [args.height, args.width], "iterations": args.iterations,
           "train_frames": sum(v.length for v in train.videos), "seconds_synth": round(t_synth, 1),
           "seconds_train": round(t_train, 1), "seconds_per_iteration": round(per_it, 3),
           "seconds_eval": round(t_eval, 1), "eval_frames": m["frames"],
           "frame_AP": round(m["AP"], 2), "frame_AP50": round(m["AP50"], 2), "frame_AP75": round(m["AP75"], 2),
           "configured_iterations": configured,
           "extrapolated_train_minutes_at_configured": round(per_it * configured / 60, 1)}
    for k, v in out.items():
        print(f"{k:>40}: {v}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
