"""Inference speed: stage two from the cache vs end to end from frames (detector + stage two),
and stage two from the cache against an older commit (default 961377e, before the speed-ups).

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

Against ``--base`` (first): for the quickstart's three experiments (their N_f^eval and
association), ``genvis.infer.inference.write_inference`` on the valid cache with a seeded,
randomly initialised model, timed by ``benchmarks/_infer_worker.py`` in a subprocess for this
checkout and for the older commit (extracted with ``git archive``, its own PYTHONPATH),
alternating; the two results json files are compared byte for byte and evaluated.

    python benchmarks/bench_inference.py     # ~4-8 min on 2 shared CPU cores
    python benchmarks/bench_inference.py --base '' --rounds 1   # cache vs end to end only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import _compare as X  # noqa: E402

EXPERIMENTS = "genvis_semi_online,genvis_online,minvis_nv1"


def against_base(args, ds, store) -> list[str]:
    """This checkout vs ``args.base`` from the cache: frames/s, CPU, identical results."""
    import statistics

    from genvis.data.results import read_results
    from genvis.evaluate.ytvis_eval import evaluate

    base = X.extract_commit(args.base, args.workdir)
    codes = {"this": C.REPO, args.base: base}
    names = list(codes)
    work = args.workdir
    summary = []
    for exp in args.experiments.split(","):
        cfg = C.experiment(exp)
        n_f = cfg.inference.n_f_eval or cfg.train.n_f
        got = {name: [] for name in names}
        for r in range(args.base_rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                out = work / f"results_{exp}_{name}.json"
                got[name].append(X.run_worker("_infer_worker.py", codes[name], [
                    "--experiment", str(codes[name] / "config" / "experiments" / f"{exp}.yaml"),
                    "--store", str(store), "--dataset", str(work / "synth" / "valid.json"), "--out", str(out),
                    "--n-f", str(n_f), "--top-k", str(args.top_k), "--threads", str(args.threads),
                    "--association", cfg.inference.association, "--seed", str(args.seed)], args.nice))
        files = [work / f"results_{exp}_{name}.json" for name in names]
        same = files[0].read_bytes() == files[1].read_bytes()
        metrics = [evaluate(ds, read_results(f, ds)) for f in files]
        diff = max(abs(metrics[0][k] - metrics[1][k]) for k in ("AP", "AP50", "AP75", "AR1", "AR10"))
        print(f"{exp} (N_f^eval {n_f}, {cfg.inference.association}), stage two from the cache:")
        rate = {}
        for name in names:
            frames = got[name][0]["frames"]
            wall = statistics.median(x["seconds"][0] for x in got[name])
            cpu = statistics.median(x["cpu_seconds"][0] for x in got[name])
            p1 = statistics.mean(x["parts"]["pass1"] for x in got[name])
            p2 = statistics.mean(x["parts"]["pass2"] for x in got[name])
            other = statistics.mean(x["cpu_seconds"][0] - x["main_thread_cpu_seconds"][0] for x in got[name])
            rate[name] = (frames / wall, frames / cpu)
            print(f"  {name:>9}: {frames / wall:.1f} frames/s wall, {frames / cpu:.1f} frames per CPU-s "
                  f"({1000 * cpu / frames:.2f} CPU-ms/frame; pass 1 {1000 * p1 / frames:.2f}, pass 2 (masks, RLE) "
                  f"{1000 * p2 / frames:.2f}, other threads (cache reads) {1000 * other / frames:.2f} ms/frame)")
        a, b = rate["this"], rate[args.base]
        print(f"  ratio vs {args.base}: {a[0] / b[0]:.2f}x wall, {a[1] / b[1]:.2f}x CPU; results json "
              f"{'byte-identical' if same else 'DIFFERENT'}, largest metric difference {diff:.2g} (AP {metrics[0]['AP']:.3f})")
        summary.append(f"{exp} {a[0] / b[0]:.2f}x wall / {a[1] / b[1]:.2f}x CPU vs {args.base}"
                       f"{', identical' if same else ', DIFFERENT results'}")
    return summary


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
    ap.add_argument("--base", default="961377e", help="commit to compare stage two with ('' to skip)")
    ap.add_argument("--experiments", default=EXPERIMENTS, help="experiments of the comparison with --base")
    ap.add_argument("--base-rounds", type=int, default=2, help="runs per code and experiment against --base")
    ap.add_argument("--e2e", type=int, default=1, help="1: also cache vs end to end from frames; 0: skip")
    ap.add_argument("--nice", type=int, default=0, help="niceness of the worker processes")
    ap.set_defaults(threads=1)
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
    base_summary = against_base(args, ds, store) if args.base else []
    if not args.e2e:
        print(f"SUMMARY bench_inference: {'; '.join(base_summary)} ({args.threads} thread(s))")
        return

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
    print(f"SUMMARY bench_inference: {'; '.join(base_summary + summary)} ({args.height}x{args.width}, "
          f"{detector.cfg.name}, N_q {mcfg.num_queries}, top-k {args.top_k}), device={args.device}")


if __name__ == "__main__":
    main()
