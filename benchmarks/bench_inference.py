"""Inference speed: stage two from the cache vs end to end from frames (detector + stage two).

Set-up (once, reused from ``--workdir``): synthetic videos (``genvis.data.synth``), a
randomly initialised detector of ``config/detectors/synth_tiny.yaml`` and the cache of the
valid split written by the real ``genvis.cache.extract.extract``; one randomly initialised
GenVIS model of the experiment's sizes (default ``genvis_online``; the semi-online
experiment has the same modules). Weights do not change the work done: top-k masks are
always decoded and RLE-encoded for every frame.

Both paths are the real ``genvis.infer.inference.run_inference`` (pass 1: clip-by-clip
video modules; pass 2: masks streamed clip by clip, RLE-encoded), over the same videos,
for N_f = 1 (online) and N_f = 3 (semi-online):

* cache: clips read by ``CacheReader`` (with read-ahead);
* end to end: clips from ``DetectorClipSource``, which reads the JPEG frames and runs the
  detector (batches of ``--detector-batch`` frames, once per frame; outputs spilled as
  float16 for pass 2, as the cache would hold them).

Each run uses fresh sources; a warm-up run on the shortest video per path is excluded;
rounds alternate the order; medians and spread of frames/s are printed.

    python benchmarks/bench_inference.py     # ~2-4 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_arguments(ap, "genvis_bench_inference")
    ap.add_argument("--experiment", default="genvis_online", help="config/experiments/<name>.yaml (model sizes)")
    ap.add_argument("--n-f", default="1,3", help="N_f^eval values, comma-separated (default 1,3)")
    C.add_synth_arguments(ap, videos=6, min_length=12, max_length=30,
                          videos_help="synthetic videos (the valid half is inferred)")
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2, help="timed runs per path and N_f (alternating order)")
    ap.add_argument("--detector-batch", type=int, default=8, help="frames per detector forward (end to end)")
    args = ap.parse_args()
    C.setup_torch(args)

    import torch

    from genvis.cache.reader import CacheReader
    from genvis.data.ytvis import VISDataset
    from genvis.infer.detector_source import DetectorClipSource
    from genvis.infer.inference import run_inference
    from genvis.model.genvis import GenVIS

    print(f"machine: {C.machine()}")
    ds, root, detector, store, _ = C.synth_cache(args, "valid")
    frames = sum(v.length for v in ds.videos)

    cfg = C.experiment(args.experiment)
    reader = CacheReader(store)
    mcfg = cfg.model_config(ds.num_classes, reader.hidden_dim, reader.num_queries, reader.hidden_dim)
    torch.manual_seed(args.seed)
    model = GenVIS(mcfg).to(args.device).eval()
    shortest = min(ds.videos, key=lambda v: v.length)
    warm_ds = VISDataset(videos=[shortest], annotations=None, categories=ds.categories, path=ds.path)
    print(f"model: N_q {mcfg.num_queries}, C {mcfg.hidden_dim}, {mcfg.enc_layers} encoder / "
          f"{mcfg.dec_layers} decoder layers, top-k {args.top_k}; detector {detector.cfg.name} on "
          f"{args.device} (batch {args.detector_batch}), stage two on {args.device}")

    cpu = {}

    def run(path: str, n_f: int, dataset) -> float:
        n = sum(v.length for v in dataset.videos)
        if path == "cache":
            source = CacheReader(store)
        else:
            source = DetectorClipSource.from_dataset(detector, dataset, root, device=args.device,
                                                     batch_size=args.detector_batch, spill_dir=True)
        try:
            with C.Timer(args.device) as t:
                run_inference(model, source, dataset, n_f, args.top_k, progress=False)
        finally:
            if path != "cache":
                source.close()
        cpu.setdefault((path, n_f), []).append(1000.0 * t.cpu_seconds / n)
        return n / t.seconds

    n_fs = [int(x) for x in args.n_f.split(",")]
    rates = {(p, n): [] for p in ("cache", "e2e") for n in n_fs}
    t_bench = time.perf_counter()
    for p in ("cache", "e2e"):  # warm-up, excluded
        run(p, n_fs[0], warm_ds)
    for r in range(args.rounds):
        for n_f in n_fs:
            for p in (("cache", "e2e") if r % 2 == 0 else ("e2e", "cache")):
                rates[(p, n_f)].append(run(p, n_f, ds))
    bench_s = time.perf_counter() - t_bench

    summary = []
    for n_f in n_fs:
        mode = "online" if n_f == 1 else "semi-online"
        c = C.describe(rates[("cache", n_f)])["median"]
        e = C.describe(rates[("e2e", n_f)])["median"]
        det = 1.0 / max(1.0 / e - 1.0 / c, 1e-9)
        print(f"N_f={n_f} ({mode}):")
        print(f"  stage two from the cache: {C.fmt_rate(rates[('cache', n_f)], 'frames/s')}")
        print(f"  end to end from frames:   {C.fmt_rate(rates[('e2e', n_f)], 'frames/s')}")
        cc = C.describe(cpu[("cache", n_f)][-args.rounds:])["median"]
        ce = C.describe(cpu[("e2e", n_f)][-args.rounds:])["median"]
        print(f"  CPU time: cache {cc:.0f} ms/frame, end to end {ce:.0f} ms/frame ({ce / cc:.1f}x)")
        print(f"  cache / end to end: {c / e:.1f}x; implied detector-side rate {det:.1f} frames/s "
              f"(frame reading + preprocessing + detector + spill)")
        summary.append(f"N_f={n_f}: cache {c:.1f} vs e2e {e:.1f} frames/s ({c / e:.1f}x)")
    print(f"({args.rounds} alternating rounds over {frames} frames, {bench_s:.0f} s; shared machine: expect noise)")
    print(f"SUMMARY bench_inference: {'; '.join(summary)} ({args.height}x{args.width}, "
          f"{detector.cfg.name}, N_q {mcfg.num_queries}, top-k {args.top_k}), device={args.device}")


if __name__ == "__main__":
    main()
