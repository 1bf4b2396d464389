"""`genvis import-checkpoint`: official Mask2Former (.pkl) / VITA / GenVIS (.pth) detector -> DET.pt."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="official checkpoint: detectron2 .pkl or VITA/GenVIS .pth")
    parser.add_argument("--config", required=True, help="detector YAML describing the checkpoint's architecture")
    parser.add_argument("--out", required=True, help="genvis detector file to write (DET.pt)")


def run(args: argparse.Namespace) -> int:
    from genvis.detector.official_import import import_official_checkpoint
    from genvis.detector.config import load_detector_yaml
    from genvis.utils.io import sha256_file

    cfg, _ = load_detector_yaml(args.config)
    det, report = import_official_checkpoint(args.checkpoint, cfg)
    det.save(args.out, extra={"imported_from": str(args.checkpoint),
                              "imported_sha256": sha256_file(args.checkpoint)})
    print(f"imported {report['mapped']} detector weights from {args.checkpoint} "
          f"({report['ignored_non_detector']} non-detector keys ignored, "
          f"{report['derived_buffers']} derived buffers recomputed); 0 unmapped; "
          f"wrote {args.out} (fingerprint {det.fingerprint()})")
    return 0
