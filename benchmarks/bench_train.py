"""Stage-two training speed: reading the cache vs the frozen detector run on the frames in the loop.

Set-up (once, reused from ``--workdir``): a small synthetic set (``genvis.data.synth``), a
randomly initialised frame detector of ``config/detectors/synth_tiny.yaml`` (timings do not
depend on the weights), and the cache of the training split written by the real
``genvis.cache.extract.extract``.

Measured in one process, with one model, optimizer, criterion, batch and clip settings
(the experiment YAML, default ``genvis_online``): one training iteration is exactly the
body of ``genvis.train.loop.train`` -- ``ClipSampler`` batch, ``sample_losses`` (UVLA,
point-sampled losses), backward, gradient clipping, AdamW step -- with its clips read
either from the Zarr cache (``CacheReader``) or from ``DetectorClipSource``, which runs the
frozen detector on the JPEG frames of each clip (no reuse between iterations). Both sides
use the same pre-drawn batches and pre-decoded targets; rounds alternate the order
(ABBA), warm-up iterations are excluded; medians and spread are reported per side, plus
the share of each iteration spent getting the clips.

    python benchmarks/bench_train.py                 # ~1-3 min on 2 CPU cores
    python benchmarks/bench_train.py --device cuda   # detector on the GPU (stage two on CPU)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402


class TimedSource:
    """Delegates to a clip source and adds up the seconds spent in ``read_clip``."""

    def __init__(self, inner):
        self.inner = inner
        self.read_s = 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def read_clip(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return self.inner.read_clip(*a, **kw)
        finally:
            self.read_s += time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_arguments(ap, "genvis_bench_train")
    ap.add_argument("--experiment", default="genvis_online", help="config/experiments/<name>.yaml")
    ap.add_argument("--batch", type=int, default=None, help="videos per iteration (default: experiment's)")
    ap.add_argument("--n-v", type=int, default=None, help="clips per sample N_v (default: experiment's)")
    ap.add_argument("--n-f", type=int, default=None, help="frames per clip N_f (default: experiment's)")
    C.add_synth_arguments(ap, videos=8, min_length=16, max_length=32,
                          videos_help="synthetic videos (half are the training split)")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds (order alternates)")
    ap.add_argument("--cache-iters", type=int, default=4, help="cache iterations per round")
    ap.add_argument("--detector-iters", type=int, default=2, help="detector-in-the-loop iterations per round")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up iterations per side (excluded)")
    ap.add_argument("--project-detector", type=Path, default=None,
                    help="also time this detector YAML on a few frames (e.g. config/detectors/r50_ovis.yaml, "
                    "paper-scale Mask2Former R50 at 360p) and print the ratio it would give, from the measured cache "
                    "iteration (a projection, labelled as such)")
    ap.add_argument("--project-frames", type=int, default=2, help="frames timed for --project-detector")
    args = ap.parse_args()
    C.setup_torch(args)

    import torch

    from genvis.cache.reader import CacheReader
    from genvis.infer.detector_source import DetectorClipSource
    from genvis.model.genvis import GenVIS
    from genvis.train.criterion import SetCriterion
    from genvis.clip_source import probe_sizes
    from genvis.train.loop import build_optimizer, sample_losses
    from genvis.train.sampler import ClipSampler
    from genvis.train.targets import DatasetTargets

    print(f"machine: {C.machine()}")
    ds, image_root, detector, store, _ = C.synth_cache(args, "train")

    cfg = C.experiment(args.experiment, batch_videos=args.batch, n_v=args.n_v, n_f=args.n_f)
    tc = cfg.train
    cache = TimedSource(CacheReader(store))
    loop = TimedSource(DetectorClipSource.from_dataset(detector, ds, image_root, device=args.device,
                                                       batch_size=8))
    sizes = probe_sizes(cache.inner, ds.videos[0].id)
    layers = min(tc.detector_layers, sizes["layers"])
    mcfg = cfg.model_config(ds.num_classes, sizes["hidden_dim"], sizes["num_frame_queries"],
                            sizes["mask_feature_dim"])
    torch.manual_seed(args.seed)
    model = GenVIS(mcfg).to(args.device).train()
    optimizer = build_optimizer(model, tc.lr, tc.weight_decay)
    criterion = SetCriterion(tc, mcfg.num_classes)
    targets = DatasetTargets(ds, cache.inner)
    for v in ds.videos:  # decode every target once, outside the timings (same for both sides)
        targets(v.id)
    sampler = ClipSampler({v.id: cache.length(v.id) for v in ds.videos}, tc.n_v, tc.n_f)
    sample_gen = torch.Generator().manual_seed(args.seed + 1)
    point_gen = torch.Generator().manual_seed(args.seed + 2)
    n_batches = args.warmup + args.rounds * max(args.cache_iters, args.detector_iters)
    batches = [sampler.sample(tc.batch_videos, sample_gen) for _ in range(n_batches)]
    frames_per_it = tc.batch_videos * tc.n_v * tc.n_f
    print(f"experiment {cfg.name}: batch {tc.batch_videos} videos x N_v {tc.n_v} clips x N_f {tc.n_f} "
          f"frames = {frames_per_it} frames/iteration, {layers} detector layers, N_q "
          f"{mcfg.num_queries}, C {mcfg.hidden_dim}, {tc.num_points} points; detector "
          f"{detector.cfg.name} and stage two on {args.device}")

    cpu = {"cache": [], "detector": []}

    def step(source, batch, name=None) -> float:
        with C.Timer(args.device) as t:
            loss, _, _ = sample_losses(model, criterion, cfg, source, targets, batch, layers, point_gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad_norm)
            optimizer.step()
        if name:
            cpu[name].append(t.cpu_seconds)
        return t.seconds

    for i in range(args.warmup):
        step(cache, batches[i])
        step(loop, batches[i])
    times = {"cache": [], "detector": []}
    read = {"cache": 0.0, "detector": 0.0}
    sides = {"cache": (cache, args.cache_iters), "detector": (loop, args.detector_iters)}
    per_round = max(args.cache_iters, args.detector_iters)  # both sides use the same batches
    t_bench = time.perf_counter()
    for r in range(args.rounds):
        order = ("cache", "detector") if r % 2 == 0 else ("detector", "cache")
        for name in order:
            src, k = sides[name]
            src.read_s = 0.0
            for j in range(k):
                times[name].append(step(src, batches[args.warmup + r * per_round + j], name))
            read[name] += src.read_s
    bench_s = time.perf_counter() - t_bench

    it_cache = [1.0 / s for s in times["cache"]]
    it_det = [1.0 / s for s in times["detector"]]
    med_c = C.describe(it_cache)["median"]
    med_d = C.describe(it_det)["median"]
    share_c = read["cache"] / sum(times["cache"])
    share_d = read["detector"] / sum(times["detector"])
    print(f"from the cache:          {C.fmt_rate(it_cache, 'it/s')}; reading clips {100 * share_c:.0f}% "
          f"of the time")
    print(f"detector in the loop:    {C.fmt_rate(it_det, 'it/s')}; detector on the clips "
          f"{100 * share_d:.0f}% of the time")
    cpu_c = C.describe(cpu["cache"])["median"]
    cpu_d = C.describe(cpu["detector"])["median"]
    print(f"CPU time per iteration:  cache {cpu_c:.2f} s, detector in the loop {cpu_d:.2f} s "
          f"(ratio {cpu_d / cpu_c:.1f}x; all threads of this process, less noisy than wall clock)")
    print(f"frames/s of training:    cache {med_c * frames_per_it:.1f}, detector in the loop "
          f"{med_d * frames_per_it:.1f}")
    print(f"ratio (median it/s):     cache is {med_c / med_d:.1f}x faster per iteration "
          f"({args.rounds} interleaved rounds, {bench_s:.0f} s; shared machine: expect noise)")
    projected = ""
    if args.project_detector is not None:

        from genvis.detector.preprocess import preprocess_frames
        from genvis.data.frames import read_frames

        big = C.make_detector(args.project_detector, args.seed).to(args.device)
        v = ds.videos[0]
        frames = read_frames(image_root, v.file_names, range(min(args.project_frames, v.length)))
        pv, sz = preprocess_frames(frames, big.cfg)
        with torch.no_grad():
            big(pv[:1].to(args.device))  # warm-up
            with C.Timer(args.device) as t:
                big(pv.to(args.device))
        per_frame, per_frame_cpu = t.seconds / len(frames), t.cpu_seconds / len(frames)
        med_s = 1.0 / med_c
        ratio = (med_s + frames_per_it * per_frame) / med_s
        ratio_cpu = (cpu_c + frames_per_it * per_frame_cpu) / cpu_c
        print(f"projection with {big.cfg.name} ({big.cfg.backbone}, input {sz.padded[0]}x{sz.padded[1]}): "
              f"{per_frame:.2f} s/frame ({per_frame_cpu:.2f} CPU-s) x {frames_per_it} frames/iteration "
              f"-> detector in the loop would be {ratio:.0f}x slower per iteration than the cache "
              f"({ratio_cpu:.0f}x by CPU time); stage two measured at this run's sizes, not at that "
              f"detector's C/Q_f")
        projected = f"; projected with {big.cfg.name}: {ratio:.0f}x"
    print(f"SUMMARY bench_train: cache {med_c:.3g} it/s vs detector-in-loop {med_d:.3g} it/s = "
          f"{med_c / med_d:.1f}x ({cfg.name}, batch {tc.batch_videos}, N_v {tc.n_v}, N_f {tc.n_f}, "
          f"{args.height}x{args.width}, detector {detector.cfg.name}){projected}, device={args.device}")


if __name__ == "__main__":
    main()
