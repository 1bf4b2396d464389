"""`genvis extract`: stage one, the frozen detector over every frame into the Zarr cache."""

from __future__ import annotations

import argparse

from genvis.commands import (add_cluster_arguments, add_device_argument, add_threads_argument, apply_threads,
                             check_device, wants_cluster)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="split json (YouTube-VIS / OVIS format)")
    parser.add_argument("--image-root", required=True, help="directory the json's file_names are relative to")
    parser.add_argument("--detector", required=True, help="detector checkpoint (genvis train-detector / import-checkpoint)")
    parser.add_argument("--out", required=True, help="Zarr store to create or resume (e.g. cache/ovis/valid/r50.zarr)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per detector forward (default 8)")
    parser.add_argument("--shard", default="0/1", help="i/n: process every n-th video starting at the i-th (default 0/1)")
    parser.add_argument("--min-size", type=int, default=None, help="shortest side in pixels (default: detector config)")
    parser.add_argument("--max-size", type=int, default=None, help="longest-side cap in pixels (default: detector config)")
    add_device_argument(parser, "the detector")
    add_threads_argument(parser)
    add_cluster_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from genvis.cache.extract import extract, parse_shard
    from genvis.data.ytvis import load_vis_json
    from genvis.detector.model import FrameDetector

    shard = parse_shard(args.shard)
    apply_threads(args)
    check_device(args)
    if wants_cluster(args.workers, args.scheduler):   # videos as tasks on a dask cluster
        from genvis.cluster import cluster_client, extract_on_cluster  # imports dask.distributed (~0.3 s)

        with cluster_client(args.workers, args.scheduler, threads_per_worker=args.threads or 1) as client:
            stats = extract_on_cluster(client, args.annotations, args.image_root, args.detector, args.out,
                                       batch_size=args.batch_size, shard=shard, min_size=args.min_size,
                                       max_size=args.max_size, device=args.device, threads=args.threads or 1,
                                       progress=not args.no_progress)
        print(stats.summary())
        return 0
    dataset = load_vis_json(args.annotations)
    detector = FrameDetector.load(args.detector)
    stats = extract(dataset, args.image_root, detector, args.out, batch_size=args.batch_size,
                    shard=shard, min_size=args.min_size, max_size=args.max_size,
                    device=args.device, progress=not args.no_progress)
    print(stats.summary())
    return 0
