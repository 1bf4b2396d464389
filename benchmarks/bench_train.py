"""Stage-two training speed: this checkout against an older commit (default 961377e, before
the speed-ups), and training from the cache against the detector in the loop.

Set-up (once, reused from ``--workdir``): a small synthetic set (``genvis.data.synth``, the
quickstart's 96x128 frames), a randomly initialised frame detector of
``config/detectors/synth_tiny.yaml`` (timings do not depend on the weights), and the cache
of the training split written by the real ``genvis.cache.extract.extract``.

Every figure is one real ``genvis.train.loop.train`` run in a subprocess
(``benchmarks/_train_worker.py``): iterations are timed between optimizer steps (set-up,
warm-up iterations and the final save excluded), with a breakdown in CPU seconds of the
training thread (model forward = GenVIS clip steps, criterion, backward, cache reads; reads
done by the background thread are listed apart). The older commit is extracted with ``git
archive`` into a temporary folder and timed by the same worker with its own PYTHONPATH; the
two codes alternate within every round (ABBA), for the quickstart's three experiments. The
detector-in-the-loop runs use this checkout with ``DetectorClipSource`` (detector run on the
JPEG frames of every clip).

Compute floor (``--flops K``, default 3): one more run of this checkout per experiment profiles
K iterations with ``torch.profiler`` (``with_flops``): floating-point operations per iteration,
and every matrix product of those iterations re-timed alone at its shape on this machine and
thread count. Their sum is the time the matrix products alone need per iteration (fp32, this
many threads), so ``961377e's s/iteration / that floor`` is the largest ratio this hardware
allows without doing less arithmetic.

    python benchmarks/bench_train.py                       # ~6-10 min on 2 shared CPU cores
    python benchmarks/bench_train.py --iterations 6 --rounds 1 --detector-iterations 0   # quicker
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import _compare as X  # noqa: E402

EXPERIMENTS = "genvis_semi_online,genvis_online,minvis_nv1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_arguments(ap, "genvis_bench_train")
    ap.set_defaults(threads=1)
    C.add_synth_arguments(ap, videos=16, min_length=16, max_length=32,
                          videos_help="synthetic videos (half are the training split)")
    ap.add_argument("--experiments", default=EXPERIMENTS, help="config/experiments names, comma-separated")
    ap.add_argument("--base", default="961377e", help="commit to compare with ('' to skip)")
    ap.add_argument("--iterations", type=int, default=9, help="iterations per run (warm-up and the last, "
                    "untimed, included)")
    ap.add_argument("--warmup", type=int, default=2, help="iterations per run excluded from the timings")
    ap.add_argument("--rounds", type=int, default=2, help="runs per code and experiment (order alternates)")
    ap.add_argument("--detector-experiment", default="genvis_online",
                    help="experiment of the cache vs detector-in-the-loop comparison")
    ap.add_argument("--detector-iterations", type=int, default=3,
                    help="timed iterations of a detector-in-the-loop run; 0 skips the comparison")
    ap.add_argument("--flops", type=int, default=3, help="iterations profiled (torch.profiler with_flops) per "
                    "experiment for the operation count and the matmul floor; 0 skips it")
    ap.add_argument("--nice", type=int, default=0, help="niceness of the worker processes")
    ap.add_argument("--project-detector", type=Path, default=None,
                    help="also time this detector YAML on a few frames (e.g. config/detectors/r50_ovis.yaml, "
                    "paper-scale Mask2Former R50 at 360p) and print the ratio it would give against the measured "
                    "cache iteration of --detector-experiment (a projection, labelled as such)")
    ap.add_argument("--project-frames", type=int, default=2, help="frames timed for --project-detector")
    args = ap.parse_args()
    C.setup_torch(args)
    if args.device != "cpu":
        sys.exit("bench_train compares codes on the CPU only (the worker does not take --device)")

    print(f"machine: {C.machine()}")
    ds, image_root, _, store, _ = C.synth_cache(args, "train")
    work = args.workdir
    codes = {"this": C.REPO}
    if args.base:
        codes[args.base] = X.extract_commit(args.base, work)
        print(f"{args.base} extracted into {codes[args.base]}")

    def worker(code: Path, experiment: str, iterations: int, warmup: int, detector: bool = False,
               flops: int = 0) -> dict:
        a = ["--flops", str(flops)] if flops else []
        a += ["--experiment", str(code / "config" / "experiments" / f"{experiment}.yaml"), "--store", str(store),
             "--dataset", str(work / "synth" / "train.json"), "--iterations", str(iterations), "--warmup", str(warmup),
             "--threads", str(args.threads), "--out", str(work / f"model_{experiment}.pt"), "--seed", str(args.seed)]
        if detector:
            a += ["--detector", str(args.detector_config), "--image-root", str(image_root)]
        return X.run_worker("_train_worker.py", code, a, args.nice)

    runs: dict[tuple[str, str], list[dict]] = {}
    t_bench = time.perf_counter()
    names = list(codes)
    for r in range(args.rounds):
        for exp in args.experiments.split(","):
            for name in (names if r % 2 == 0 else names[::-1]):
                runs.setdefault((exp, name), []).append(worker(codes[name], exp, args.iterations, args.warmup))
    det_runs: dict[str, list[dict]] = {}
    if args.detector_iterations > 0:
        for side in ("cache", "detector"):  # one run each; the detector side is the slow one
            det_runs.setdefault(side, []).append(worker(C.REPO, args.detector_experiment,
                                                        args.detector_iterations + 2, 1, side == "detector"))
    floors = {exp: worker(C.REPO, exp, args.warmup + args.flops + 1, args.warmup, flops=args.flops)
              for exp in args.experiments.split(",")} if args.flops > 0 else {}
    bench_s = time.perf_counter() - t_bench

    def stats(rs: list[dict]) -> dict:
        wall = [t for x in rs for t in x["s_per_it"]]
        cpu = [t for x in rs for t in x["cpu_s_per_it"]]
        parts = {k: statistics.mean(x["parts"][k] for x in rs) for k in rs[0]["parts"]}
        return {"wall": statistics.median(wall), "cpu": statistics.median(cpu), "n": len(wall), "parts": parts}

    summary = []
    for exp in args.experiments.split(","):
        cfg = C.experiment(exp)
        tc = cfg.train
        frames = tc.batch_videos * tc.n_v * tc.n_f
        print(f"\n{exp}: batch {tc.batch_videos} x N_v {tc.n_v} x N_f {tc.n_f} = {frames} frames/iteration, "
              f"{tc.num_points} points, {tc.detector_layers} detector layers, {tc.assignment}, {args.threads} thread(s)")
        got = {}
        for name in names:
            s = stats(runs[(exp, name)])
            got[name] = s
            p = s["parts"]
            print(f"  {name:>9}: {s['wall']:.3f} s/iteration wall ({frames / s['wall']:.0f} frames/s), "
                  f"{s['cpu']:.3f} CPU-s/iteration (n={s['n']}); CPU-s/iteration: forward {p['forward']:.3f}, "
                  f"criterion {p['criterion']:.3f}, backward {p['backward']:.3f}, cache read {p['read']:.3f}"
                  f" (+{p['read_background']:.3f} on the read-ahead thread)")
        if args.base:
            a, b = got["this"], got[args.base]
            print(f"  ratio vs {args.base}: {b['wall'] / a['wall']:.2f}x iterations/s (wall), "
                  f"{b['cpu'] / a['cpu']:.2f}x (CPU time)")
            summary.append(f"{exp} {b['wall'] / a['wall']:.2f}x wall / {b['cpu'] / a['cpu']:.2f}x CPU")
        if exp in floors:
            f = floors[exp]
            line = (f"compute floor: {f['gflop_per_it']:.2f} GFLOP/iteration (torch.profiler, {f['ops_per_it']:.0f} aten "
                    f"ops/iteration), {f['matmul_gflop_per_it']:.2f} GFLOP in {f['matmul_calls_per_it']:.0f} matrix "
                    f"products; re-timed alone at their shapes they run at {f['matmul_gflops']:.0f} GFLOP/s here "
                    f"({args.threads} thread(s), fp32): {f['matmul_floor_s_per_it']:.3f} s/iteration for the matrix "
                    f"products alone ({got['this']['cpu'] / f['matmul_floor_s_per_it']:.1f}x below this code's CPU time)")
            if args.base:
                base = got[args.base]
                line += (f"; largest ratio vs {args.base} that allows: {base['cpu'] / f['matmul_floor_s_per_it']:.1f}x "
                         f"(by its CPU time), {base['wall'] / f['matmul_floor_s_per_it']:.1f}x (by its wall time)")
                summary.append(f"{exp} floor {f['matmul_floor_s_per_it']:.3f} s/it = at most "
                               f"{base['cpu'] / f['matmul_floor_s_per_it']:.1f}x")
            print("  " + line)
    if det_runs:
        c, d = stats(det_runs["cache"]), stats(det_runs["detector"])
        cfg = C.experiment(args.detector_experiment)
        frames = cfg.train.batch_videos * cfg.train.n_v * cfg.train.n_f
        print(f"\n{args.detector_experiment}, this checkout: from the cache {c['wall']:.3f} s/iteration "
              f"({c['cpu']:.3f} CPU-s), detector in the loop {d['wall']:.3f} s/iteration ({d['cpu']:.3f} CPU-s; "
              f"reading + detector {d['parts']['read'] + d['parts']['read_background']:.3f} CPU-s, mostly on the "
              f"read-ahead thread); {frames} frames/iteration")
        print(f"  cache vs detector in the loop: {d['wall'] / c['wall']:.1f}x wall, {d['cpu'] / c['cpu']:.1f}x CPU")
        summary.append(f"cache vs detector-in-loop ({args.detector_experiment}) {d['wall'] / c['wall']:.1f}x wall / "
                       f"{d['cpu'] / c['cpu']:.1f}x CPU")
    if args.project_detector is not None:
        summary.append(project(args, ds, image_root, runs))
    print(f"\n({args.rounds} alternating round(s), {args.iterations - args.warmup - 1} timed iterations per run, "
          f"{bench_s:.0f} s; shared machine: wall clock is noisy, CPU time less so)")
    print(f"SUMMARY bench_train: {'; '.join(summary)} ({args.height}x{args.width}, {args.threads} thread(s), "
          f"this vs {args.base or '-'})")


def project(args, ds, image_root, runs) -> str:
    """CPU seconds per frame of ``--project-detector`` and the ratio it would give against
    this checkout's measured cache iteration (a projection)."""
    import statistics

    import torch

    from genvis.data.frames import read_frames
    from genvis.detector.preprocess import preprocess_frames

    exp = args.detector_experiment
    rs = runs.get((exp, "this"))
    if not rs:
        return f"no projection: {exp} not among --experiments"
    cpu_it = statistics.median(t for x in rs for t in x["cpu_s_per_it"])
    cfg = C.experiment(exp)
    frames_per_it = cfg.train.batch_videos * cfg.train.n_v * cfg.train.n_f
    big = C.make_detector(args.project_detector, args.seed)
    v = ds.videos[0]
    frames = read_frames(image_root, v.file_names, range(min(args.project_frames, v.length)))
    pv, sz = preprocess_frames(frames, big.cfg)
    with torch.no_grad():
        big(pv[:1])  # warm-up
        with C.Timer("cpu") as t:
            big(pv)
    per_frame = t.cpu_seconds / len(frames)
    ratio = (cpu_it + frames_per_it * per_frame) / cpu_it
    print(f"projection with {big.cfg.name} ({big.cfg.backbone}, input {sz.padded[0]}x{sz.padded[1]}): "
          f"{per_frame:.2f} CPU-s/frame x {frames_per_it} frames/iteration -> the detector in the loop would be "
          f"{ratio:.0f}x slower per iteration than the cache ({exp}, by CPU time; stage two measured at this "
          f"run's sizes, not at that detector's C/Q_f)")
    return f"projected with {big.cfg.name}: {ratio:.0f}x"


if __name__ == "__main__":
    main()
