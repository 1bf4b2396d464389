"""Cost of the stage-one cache: bytes per frame on disk, compression, clip read throughput.

Set-up (once, reused from ``--workdir``): synthetic videos (``genvis.data.synth``) and their
cache written by the real ``genvis.cache.extract.extract`` with a randomly initialised
detector of ``config/detectors/synth_tiny.yaml`` (Zarr 3, float16, one frame per chunk,
Blosc zstd + shuffle, see ``genvis.cache.layout``). Random weights give less regular
features than a trained detector, so the compression ratio here is a conservative guess.

Printed:
* bytes per frame on disk (files under ``videos/``), per field and in total, against the
  raw size of the same arrays in float16 and float32 -> compression ratios;
* read throughput of ``CacheReader.iter_clips`` (what training / inference read: all kept
  layers of frame queries + mask features) with read-ahead (``prefetch=2``) vs without
  (``prefetch=0``), in frames/s and in MB/s of raw float32 delivered, alternating runs,
  first (warm-up) pass excluded; once with a bare consumer and once with a consumer that
  spends ``--consumer-ms`` per frame (a stand-in for stage-two compute, e.g. on a GPU),
  where read-ahead can hide the reads.

    python benchmarks/bench_cache.py      # ~1-2 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402


def dir_bytes(path: Path) -> int:
    """Sum of the sizes of the regular files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_arguments(ap, "genvis_bench_cache")
    C.add_synth_arguments(ap, videos=6, min_length=30, max_length=60,
                          videos_help="synthetic videos (the valid half is cached)")
    ap.add_argument("--n-f", type=int, default=3, help="frames per clip read (default 3)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per setting (after one warm-up)")
    ap.add_argument("--consumer-ms", type=float, default=5.0,
                    help="simulated stage-two work per frame for the second comparison (default 5 ms)")
    args = ap.parse_args()
    C.setup_torch(args)

    import numpy as np

    from genvis.cache import layout
    from genvis.cache.reader import CacheReader

    print(f"machine: {C.machine()}")
    ds, _, detector, store, stats = C.synth_cache(args, "valid")

    reader = CacheReader(store)
    ids = reader.video_ids
    frames = sum(reader.length(v) for v in ids)
    # ---------------------------------------------------------------- size on disk
    disk = {f: 0 for f in layout.FIELDS}
    raw16 = {f: 0 for f in layout.FIELDS}
    vdir = store / layout.VIDEOS_GROUP
    for v in ids:
        for f in layout.FIELDS:
            disk[f] += dir_bytes(vdir / layout.video_key(v) / f)
            shape = reader._array(v, f).shape  # [T, ...]
            raw16[f] += int(np.prod(shape)) * 2
    meta = dir_bytes(vdir) - sum(disk.values())
    total_disk = dir_bytes(vdir)
    total16 = sum(raw16.values())
    a = reader.video_attrs(ids[0])
    print(f"cache: {len(ids)} videos, {frames} frames of {a['original_size'][0]}x{a['original_size'][1]} "
          f"(detector input {a['padded_size'][0]}x{a['padded_size'][1]}); L={reader.num_layers}, "
          f"Q_f={reader.num_queries}, C={reader.hidden_dim}, K={reader.num_classes}")
    print(f"{'field':<16} {'disk B/frame':>13} {'raw fp16 B/frame':>17} {'vs fp16':>8} {'vs fp32':>8}")
    for f in layout.FIELDS:
        print(f"{f:<16} {disk[f] / frames:>13.0f} {raw16[f] / frames:>17.0f} "
              f"{raw16[f] / max(disk[f], 1):>7.2f}x {2 * raw16[f] / max(disk[f], 1):>7.2f}x")
    print(f"{'total':<16} {total_disk / frames:>13.0f} {total16 / frames:>17.0f} "
          f"{total16 / total_disk:>7.2f}x {2 * total16 / total_disk:>7.2f}x  "
          f"(incl. {meta / frames:.0f} B/frame of metadata files)")

    # ---------------------------------------------------------------- read throughput
    fields = ("frame_queries", "mask_features")
    delivered32 = sum(2 * raw16[f] for f in fields) / frames  # bytes of float32 per frame

    def one_pass(prefetch: int, consumer_s: float) -> float:
        t = time.perf_counter()
        n = 0
        for v in ids:
            for s, e, clip in reader.iter_clips(v, args.n_f, fields=fields, prefetch=prefetch):
                n += e - s
                if consumer_s:
                    time.sleep(consumer_s * (e - s))
        return n / (time.perf_counter() - t)

    results = {}
    for consumer_ms in (0.0, args.consumer_ms):
        rates = {2: [], 0: []}
        one_pass(2, 0.0)  # warm-up (file cache, zarr metadata)
        for r in range(args.repeats):
            for p in ((2, 0) if r % 2 == 0 else (0, 2)):
                rates[p].append(one_pass(p, consumer_ms / 1000.0))
        results[consumer_ms] = rates
        label = "bare reads" if consumer_ms == 0 else f"with {consumer_ms:g} ms/frame of consumer work"
        m2, m0 = C.describe(rates[2])["median"], C.describe(rates[0])["median"]
        print(f"read {label}, N_f={args.n_f} clips:")
        print(f"  prefetch=2: {C.fmt_rate(rates[2], 'frames/s')} = {m2 * delivered32 / 1e6:.1f} MB/s float32")
        print(f"  prefetch=0: {C.fmt_rate(rates[0], 'frames/s')} = {m0 * delivered32 / 1e6:.1f} MB/s float32")
        if consumer_ms:
            ideal = 1000.0 / consumer_ms
            print(f"  read-ahead: {m2 / m0:.2f}x; consumer alone would run at {ideal:.0f} frames/s")
        else:
            why = ("the reader thread decompresses while the caller converts/checks the previous clip"
                   if m2 > m0 else "no consumer work to hide the reads behind; the thread hand-off costs")
            print(f"  read-ahead: {m2 / m0:.2f}x ({why})")
    bare = C.describe(results[0.0][2])["median"]
    m2 = C.describe(results[args.consumer_ms][2])["median"]
    m0 = C.describe(results[args.consumer_ms][0])["median"]
    print(f"SUMMARY bench_cache: {total_disk / frames / 1024:.1f} KiB/frame on disk, "
          f"{total16 / total_disk:.2f}x vs raw fp16 ({2 * total16 / total_disk:.2f}x vs fp32); read "
          f"{bare:.0f} frames/s ({bare * delivered32 / 1e6:.0f} MB/s fp32); with {args.consumer_ms:g} ms/frame "
          f"work prefetch {m2:.0f} vs {m0:.0f} frames/s = {m2 / m0:.2f}x "
          f"({args.height}x{args.width}, {detector.cfg.name}), device={args.device}")


if __name__ == "__main__":
    main()
