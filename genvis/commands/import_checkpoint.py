"""`genvis import-checkpoint`: official Mask2Former (.pkl) / VITA / GenVIS (.pth) detector -> DET.pt.

Without ``--config`` the architecture is read from the checkpoint's keys and shapes and the
input size from the dataset's official test size (:mod:`genvis.detector.official_config`).
"""

from __future__ import annotations

import argparse


def add_official_size_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--min-size``, ``--max-size``: the input size of an official detector
    whose config is inferred (shared by ``import-checkpoint`` and ``demo``)."""
    from genvis.detector.official_config import KNOWN_DATASETS

    parser.add_argument("--dataset", choices=sorted(KNOWN_DATASETS), default=None,
                        help="dataset the checkpoint was trained on: sets the official test size "
                        "(default: found from the class count: 25 OVIS, 40 YouTube-VIS, 80 COCO)")
    parser.add_argument("--min-size", type=int, default=None, help="shortest side of the input, pixels "
                        "(default: the dataset's official test size, e.g. 360 for R50 and 448 for Swin-L)")
    parser.add_argument("--max-size", type=int, default=None, help="longest-side cap, pixels (default 1333)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="official checkpoint: detectron2 .pkl or VITA/GenVIS .pth")
    parser.add_argument("--config", default=None, help="detector YAML describing the checkpoint's architecture "
                        "(default: inferred from the checkpoint's keys and shapes)")
    add_official_size_arguments(parser)
    parser.add_argument("--out", required=True, help="genvis detector file to write (DET.pt)")


def describe(cfg) -> str:
    """One line naming an inferred detector config's architecture and input size."""
    opts = "".join(f" {k}={v}" for k, v in cfg.backbone_options.items())
    return (f"{cfg.name}: {cfg.backbone}{opts}, {cfg.num_queries} queries, {cfg.num_classes} classes, "
            f"hidden {cfg.hidden_dim}, decoder_layers {cfg.decoder_layers}, encoder_layers {cfg.encoder_layers}, "
            f"input {cfg.min_size}/{cfg.max_size}")


def run(args: argparse.Namespace) -> int:
    from genvis.detector.official_import import load_official_detector
    from genvis.detector.config import load_detector_yaml
    from genvis.utils.io import sha256_file

    cfg = load_detector_yaml(args.config)[0] if args.config else None
    det, report, _ = load_official_detector(args.checkpoint, cfg, args.dataset, args.min_size, args.max_size)
    if cfg is None:
        print(f"inferred from the checkpoint: {describe(det.cfg)}")
    det.save(args.out, extra={"imported_from": str(args.checkpoint),
                              "imported_sha256": sha256_file(args.checkpoint)})
    index = ""
    if report["position_index"]:
        index = f", {report['position_index']} Swin position index tables used as stored"
        if report["nonstandard_position_index"]:
            index += (f" ({report['nonstandard_position_index']} differ from the standard table, "
                      f"as the official code would use them)")
    print(f"imported {report['mapped']} detector weights from {args.checkpoint} "
          f"({report['ignored_non_detector']} non-detector keys ignored{index}); 0 unmapped; "
          f"wrote {args.out} (fingerprint {det.fingerprint()})")
    return 0
