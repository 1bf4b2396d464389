"""Peak resident memory of inference against video length (50, 200, 800 frames by default).

Goal: memory does not grow with the video length -- the
800-frame peak within 1.2x of the 50-frame peak. Each (path, length) runs in a fresh
subprocess so peaks cannot mask each other; the child reports ``ru_maxrss`` (peak RSS of
the whole process: Python, torch, the model and the inference) and its RSS just before
inference starts (baseline), so the growth during inference is printed too.

Paths, both through the real ``genvis.infer.inference.write_inference`` (online, N_f = 1,
by default) with one randomly initialised GenVIS model of the experiment's sizes:

* cache: one synthetic cached video per length, written with the real ``CacheWriter``
  (Zarr layout of ``config/detectors/synth_tiny.yaml``: L=3, Q_f=16, C=64) at
  ``--cache-height`` x ``--cache-width`` input frames (default 120x216, half of DAVIS 240p;
  mask features at stride 4 are 0.46 MB a frame in float32: 370 MB over 800 frames if
  they were held). The features are random but spatially smooth (non-negative
  like the detector's ReLU output, so masks and their RLEs have realistic sizes; per-pixel
  noise would give worst-case RLEs): memory does not otherwise depend on their values.
* end to end: the optional real data's ``videos/vtest.avi`` (``../shared/data`` beside the
  repository by default, ``--shared-data``; 768x576) decoded with PyAV as a video
  file, its frames repeated / truncated to each length, through ``DetectorClipSource``
  (randomly initialised synth-tiny detector at its 96x128 input, outputs spilled to float16
  files for pass 2, so the detector runs once per frame), then stage two. An 800-frame video
  holds 1 GB of decoded frames: any accumulation shows.

    python benchmarks/bench_memory.py        # ~3-6 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

GOAL = 1.2


def rss_bytes() -> int:
    """Current resident set size of this process."""
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux ru_maxrss is in KiB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def dataset_for(video_id: int, length: int, height: int, width: int, num_classes: int, name: str):
    """A one-video VISDataset (no annotations) for write_inference."""
    from genvis.data.ytvis import CategoryRecord, VideoRecord, VISDataset

    video = VideoRecord(id=video_id, file_names=[f"{name}/{i:05d}.jpg" for i in range(length)],
                        length=length, width=width, height=height)
    cats = [CategoryRecord(id=k + 1, name=f"c{k + 1}") for k in range(num_classes)]
    return VISDataset(videos=[video], annotations=None, categories=cats, path=Path(name))


def write_synthetic_cache(store: Path, lengths: list[int], height: int, width: int, det_cfg, seed: int) -> None:
    """One cached video per length (video id = length) of random features, via CacheWriter."""
    import numpy as np

    from genvis.cache import layout
    from genvis.cache.writer import CacheWriter
    from genvis.detector.preprocess import padded_size

    prov = layout.make_provenance("synthetic-random-features", det_cfg.name, det_cfg.min_size,
                                  det_cfg.max_size, det_cfg.keep_layers, height=height, width=width)
    prov["features"] = "smooth-random-v2"
    writer = CacheWriter(store, prov)
    done = writer.completed_video_ids()
    rh, rw = height, width  # cached at the native size (min_size = height)
    ph, pw = padded_size(rh, rw, det_cfg.size_divisibility)
    shapes = layout.FrameShapes(det_cfg.keep_layers, det_cfg.num_queries, det_cfg.hidden_dim,
                                det_cfg.num_classes, (ph // 4, pw // 4))
    rng = np.random.default_rng(seed)
    for n in lengths:
        if n in done:
            continue
        attrs = {"file_names": [f"synthetic/{i:05d}.jpg" for i in range(n)], "original_size": [height, width],
                 "resized_size": [rh, rw], "padded_size": [ph, pw]}
        with writer.video(n, n, shapes, attrs) as vw:
            for s in range(0, n, 16):
                t = min(16, n - s)
                arrays = {}
                for f in layout.FIELDS:
                    shape = shapes.shape(f)
                    if f == "mask_features":
                        # spatially smooth like real features (noise at 1/8 of the grid, repeated),
                        # so the masks -- and their RLEs in the results -- have realistic sizes;
                        # ReLU like the detector's raw mask features
                        c, h, w = shape
                        low = rng.standard_normal((t, c, -(-h // 8), -(-w // 8)), dtype=np.float32)
                        x = np.maximum(low.repeat(8, axis=2).repeat(8, axis=3)[:, :, :h, :w], 0.0)
                    else:
                        x = rng.standard_normal((t, *shape), dtype=np.float32)
                    arrays[f] = x
                vw.write(s, arrays)


def child(args: argparse.Namespace) -> None:
    """One inference in this (fresh) process; prints a JSON line."""
    C.setup_torch(args)
    import torch

    from genvis.cache.reader import CacheReader
    from genvis.infer.inference import write_inference
    from genvis.model.genvis import GenVIS

    det_cfg = C.detector_config(args.detector_config)
    cfg = C.experiment(args.experiment)
    n = args.length
    if args.child == "cache":
        source = CacheReader(args.workdir / "synthetic.zarr")
        attrs = source.video_attrs(n)
        h, w = attrs["original_size"]
        ds = dataset_for(n, n, h, w, det_cfg.num_classes, "synthetic")
    else:
        from genvis.infer.detector_source import DetectorClipSource

        detector = C.make_detector(args.detector_config, args.seed)
        source = DetectorClipSource.from_video(detector, args.video, length=n, video_id=1, device=args.device,
                                               spill_dir=args.workdir / f"spill-{os.getpid()}")
        h, w = source.video_attrs(1)["original_size"]
        ds = dataset_for(1, n, h, w, det_cfg.num_classes, "vtest")
    mcfg = cfg.model_config(det_cfg.num_classes, det_cfg.hidden_dim, det_cfg.num_queries, det_cfg.hidden_dim)
    torch.manual_seed(args.seed)
    model = GenVIS(mcfg).to(args.device).eval()
    base = rss_bytes()
    t0 = time.perf_counter()
    c0 = time.process_time()
    out = args.workdir / f"results-{os.getpid()}.json"
    predictions = write_inference(model, source, ds, args.n_f, out, args.top_k, progress=False)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = peak_rss_bytes()
    if args.child != "cache":
        source.close()
        (args.workdir / f"spill-{os.getpid()}").rmdir()
    rle = out.stat().st_size   # the results json: RLE strings and their json framing
    out.unlink()
    print(json.dumps({"path": args.child, "length": n, "baseline": base, "peak": peak, "seconds": seconds,
                      "rle_bytes": rle,
                      "cpu_seconds": cpu, "fps": n / seconds, "predictions": predictions, "frame_size": [h, w]}))


def run_child(args: argparse.Namespace, path: str, length: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", path, "--length", str(length),
           "--workdir", str(args.workdir), "--detector-config", str(args.detector_config),
           "--experiment", args.experiment, "--n-f", str(args.n_f), "--top-k", str(args.top_k),
           "--threads", str(args.threads), "--device", args.device, "--seed", str(args.seed),
           "--video", str(args.video)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"child {path} {length} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_arguments(ap, "genvis_bench_memory")
    ap.add_argument("--lengths", default="50,200,800", help="video lengths in frames (default 50,200,800)")
    ap.add_argument("--paths", default="cache,e2e", help="which paths: cache, e2e (default both)")
    ap.add_argument("--experiment", default="genvis_online", help="config/experiments/<name>.yaml (model sizes)")
    ap.add_argument("--n-f", type=int, default=1, help="N_f^eval (default 1, online)")
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--cache-height", type=int, default=120)
    ap.add_argument("--cache-width", type=int, default=216)
    ap.add_argument("--shared-data", type=Path, default=C.SHARED_DATA, help="folder holding videos/vtest.avi")
    ap.add_argument("--video", type=Path, default=None, help="video file for the end-to-end path "
                    "(default <shared-data>/videos/vtest.avi)")
    ap.add_argument("--child", choices=("cache", "e2e"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--length", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.video is None:
        args.video = args.shared_data / "videos" / "vtest.avi"
    if args.child:
        child(args)
        return
    C.setup_torch(args)
    print(f"machine: {C.machine()}")
    lengths = [int(x) for x in args.lengths.split(",")]
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if "e2e" in paths and not args.video.is_file():
        sys.exit(f"error: {args.video} not found (use --shared-data DIR or --video FILE, or --paths cache)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    if "cache" in paths:
        t0 = time.perf_counter()
        store = args.workdir / "synthetic.zarr"
        det_cfg = C.detector_config(args.detector_config)
        try:
            write_synthetic_cache(store, lengths, args.cache_height, args.cache_width, det_cfg, args.seed)
        except Exception as exc:  # a store of other sizes: rebuild it
            import shutil

            print(f"rebuilding {store}: {exc}")
            shutil.rmtree(store, ignore_errors=True)
            write_synthetic_cache(store, lengths, args.cache_height, args.cache_width, det_cfg, args.seed)
        print(f"synthetic cache ready in {time.perf_counter() - t0:.1f} s: {store}")

    summary = []
    met_all = True
    for path in paths:
        rows = []
        for n in lengths:
            r = run_child(args, path, n)
            rows.append(r)
            print(f"  {path:<5} {n:>5} frames of {r['frame_size'][0]}x{r['frame_size'][1]}: peak "
                  f"{r['peak'] / 2**20:7.1f} MiB (before inference {r['baseline'] / 2**20:7.1f} MiB, growth "
                  f"{(r['peak'] - r['baseline']) / 2**20:6.1f} MiB), {r['fps']:.1f} frames/s "
                  f"({1000 * r['cpu_seconds'] / n:.0f} CPU-ms/frame), {r['predictions']} predictions streamed "
                  f"to a {r['rle_bytes'] / 2**20:.1f} MiB results json", flush=True)
        first, last = rows[0], rows[-1]
        ratio = last["peak"] / first["peak"]
        growth_ratio = (last["peak"] - last["baseline"]) / max(first["peak"] - first["baseline"], 1)
        met = ratio <= GOAL
        met_all &= met
        label = ("stage two from the cache" if path == "cache" else
                 f"end to end from {args.video.name}")
        print(f"{label}: peak {last['length']} / {first['length']} frames = {ratio:.3f}x "
              f"(goal <= {GOAL}x: {'MET' if met else 'MISSED'}); growth during inference "
              f"{growth_ratio:.2f}x; per length: " +
              ", ".join(f"{r['length']}: {r['peak'] / first['peak']:.3f}x" for r in rows))
        summary.append(f"{path} {last['length']}/{first['length']} peak {ratio:.2f}x "
                       f"({first['peak'] / 2**20:.0f}->{last['peak'] / 2**20:.0f} MiB; results json "
                       f"{last['rle_bytes'] / 2**20:.0f} MiB streamed to disk)")
    print(f"SUMMARY bench_memory: {'; '.join(summary)}; goal <= {GOAL}x "
          f"{'MET' if met_all else 'MISSED'} (N_f={args.n_f}), device={args.device}")


if __name__ == "__main__":
    main()
