"""``genvis infer``: stage two, clip-by-clip inference from the cache -> YouTube-VIS results json."""

from __future__ import annotations

import argparse
import sys

from genvis.commands import (add_cluster_arguments, add_device_argument, add_threads_argument, apply_threads,
                             check_device, wants_cluster)
from genvis.errors import ConfigError
from genvis.infer.config import ASSOCIATIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options of ``genvis infer``."""
    parser.add_argument("--cache", required=True, help="stage-one Zarr store of the split")
    parser.add_argument("--annotations", required=True, help="json of the split (videos, categories)")
    parser.add_argument("--model", required=True, help="MODEL.pt written by `genvis train`, or an official GenVIS .pth")
    parser.add_argument("--out", required=True, help="results json to write")
    parser.add_argument("--n-f-eval", type=int, default=None,
                        help="N_f^eval, frames per clip (default: the experiment's setting)")
    parser.add_argument("--top-k", type=int, default=None, help="predictions per video (default: experiment)")
    parser.add_argument("--association", choices=ASSOCIATIONS + ("idol",), default=None,
                        help="inter-clip association (default: experiment): propagate = GenVIS "
                        "(instance queries carried clip to clip with the memory); minvis = fresh "
                        "queries per clip matched by prototype cosine similarity (MinVIS); oracle = "
                        "fresh queries per clip linked to the ground truth of --annotations (a "
                        "diagnostic: estimates the most any association could make of these clips); "
                        "idol = frame-by-frame IDOL association (needs an IDOL MODEL.pt)")
    parser.add_argument("--idol-matching", choices=("embeddings", "multi_cue"), default=None,
                        help="IDOL models only: override idol.matching of the experiment")
    parser.add_argument("--idol-temporal", choices=("on", "off"), default=None,
                        help="IDOL models only: override idol.temporal (temporally weighted memory)")
    parser.add_argument("--zip", default=None, help="also write the server submission zip here")
    parser.add_argument("--allow-other-detector", action="store_true",
                        help="run even if the cache was not written by the detector (weights, "
                        "resolution) the model was trained on; by default that is refused")
    parser.add_argument("--no-resume", action="store_true",
                        help="do not keep finished videos in .OUT.parts/ for a rerun to skip "
                        "(by default an interrupted run resumes where it stopped, if the model, "
                        "annotations, cache and settings are unchanged)")
    parser.add_argument("--videos-at-once", type=int, default=None,
                        help="videos whose clip steps run as one batch in the first pass (default 8; "
                        "the results do not depend on it)")
    add_device_argument(parser, "the video modules")
    add_threads_argument(parser)
    add_cluster_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Run inference and write the results. Returns 0; GenvisError subclasses on bad input."""
    from genvis.cache.reader import CacheReader
    from genvis.data.results import write_results_zip
    from genvis.data.ytvis import load_vis_json
    from genvis.infer.inference import VIDEOS_AT_ONCE, write_inference
    from genvis.model.checkpoint import check_model_provenance, load_any_model
    from genvis.settings import resolve_inference
    from genvis.utils.io import sha256_file

    apply_threads(args)
    check_device(args)
    if args.videos_at_once is not None and args.videos_at_once < 1:
        raise ConfigError("--videos-at-once", f"must be >= 1, got {args.videos_at_once}")
    from genvis.model.idol_head import is_idol_model

    if args.association == "idol" or is_idol_model(args.model):  # IDOL: genvis.infer.idol
        from genvis.infer.idol import infer_command

        return infer_command(args)
    model, meta = load_any_model(args.model)  # genvis MODEL.pt or official GenVIS .pth
    settings = resolve_inference(meta.get("experiment"), args.n_f_eval, args.top_k, args.association,
                                 source=str(args.model), num_classes=model.cfg.num_classes)
    n_f, top_k, association = settings.n_f_eval, settings.top_k, settings.association
    dataset = load_vis_json(args.annotations)
    reader = CacheReader(args.cache)
    for diff in check_model_provenance(args.model, meta, reader.provenance, args.cache,
                                       args.allow_other_detector):
        print(f"genvis infer: warning: cache differs from the model's training cache: {diff}",
              file=sys.stderr)
    model.to(args.device)
    run_key = {  # what the results depend on: finished videos of an equal key are kept on a rerun
        "model_sha256": sha256_file(args.model), "annotations_sha256": sha256_file(args.annotations),
        "cache_provenance": reader.provenance, "n_f_eval": n_f, "top_k": top_k, "association": association}
    if wants_cluster(args.workers, args.scheduler):   # videos as tasks on a dask cluster
        from genvis.cluster import cluster_client, infer_on_cluster  # imports dask.distributed (~0.3 s)

        with cluster_client(args.workers, args.scheduler, threads_per_worker=args.threads or 1) as client:
            count = infer_on_cluster(client, args.model, args.cache, args.annotations, args.out, n_f, top_k,
                                     association, run_key, device=args.device, threads=args.threads or 1,
                                     progress=not args.no_progress, fresh=args.no_resume)
    else:
        count = write_inference(model, reader, dataset, n_f, args.out, top_k, association,
                                progress=not args.no_progress, resume_key=None if args.no_resume else run_key,
                                videos_at_once=args.videos_at_once or VIDEOS_AT_ONCE)
    if args.zip:
        write_results_zip(args.out, args.zip)
    print(f"wrote {args.out} ({count} predictions, {len(dataset.videos)} videos, N_f^eval={n_f}, "
          f"association {association})")
    return 0
