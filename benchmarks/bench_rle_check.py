"""Benchmark of the RLE check that guards pycocotools (issue 20): cost next to what the
evaluation does with the same RLEs anyway.

Encodes moving-ellipse masks at a YouTube-VIS frame size, then times on the same compressed
RLEs: ``genvis.data.masks.compressed_rle_problem`` (every ``counts`` string decoded in numpy,
runs checked to cover H x W), ``pycocotools.mask.area`` (one C pass over each string) and
``pycocotools.mask.decode`` (what a check by decoding would cost), and ``read_results`` of a
results file holding them (json + validation). Prints figures and ratios; the last line is
a one-line summary. Times are CPU seconds (best of ``--repeats``).

    python benchmarks/bench_rle_check.py --rles 20000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from genvis.data import masks as mask_ops
from genvis.data.results import read_results


def best_of(fn, repeats: int) -> float:
    """Least CPU time (s) of ``repeats`` calls: CPU, not wall, so that a busy shared machine
    changes the figures less (every step here is single-threaded)."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rles", type=int, default=20000, help="compressed RLEs (frames x predictions)")
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--frames", type=int, default=36, help="frames per prediction in the results file")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="ignored (CPU only)")
    args = ap.parse_args()
    h, w = args.height, args.width
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = []
    for _ in range(64):   # 64 distinct ellipses, repeated: encoding is not what is measured
        cx, cy, rx, ry = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * w, rng.uniform(0.05, 0.3) * h
        m = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8)
        base.append(mask_utils.encode(np.asfortranarray(m[:, :, None]))[0])
    rles = [{"size": [h, w], "counts": base[i % 64]["counts"].decode("ascii")} for i in range(args.rles)]
    counts = [r["counts"] for r in rles]
    chars = sum(len(c) for c in counts)
    print(f"{len(rles)} RLEs of {h}x{w} masks, {chars / len(rles):.0f} characters each on average")

    t_check = best_of(lambda: mask_ops.compressed_rle_problem(counts, [h * w] * len(counts)), args.repeats)
    t_area = best_of(lambda: mask_ops.area_array(rles), args.repeats)
    n_dec = min(len(rles), 500)
    t_dec = best_of(lambda: [mask_utils.decode(r) for r in rles[:n_dec]], 1) * len(rles) / n_dec
    print(f"check (numpy decode of counts): {t_check:.3f} s ({1e9 * t_check / chars:.1f} ns/char)")
    print(f"pycocotools area:               {t_area:.3f} s (check = {t_check / t_area:.1f}x area)")
    print(f"pycocotools decode (estimated): {t_dec:.3f} s (check = {t_check / t_dec:.3f}x decode)")

    n_pred = len(rles) // args.frames
    vids = [{"id": 1, "file_names": [f"v/{t}.jpg" for t in range(args.frames)], "length": args.frames,
             "width": w, "height": h}]
    gt = {"videos": vids, "annotations": [], "categories": [{"id": 1, "name": "x"}]}
    res = [{"video_id": 1, "category_id": 1, "score": 0.5 * k / n_pred,   # distinct: no duplicate warning
            "segmentations": rles[k * args.frames:(k + 1) * args.frames]} for k in range(n_pred)]
    with tempfile.TemporaryDirectory() as tmp:
        gp, rp = Path(tmp, "gt.json"), Path(tmp, "res.json")
        gp.write_text(json.dumps(gt))
        rp.write_text(json.dumps(res))
        from genvis.data.ytvis import load_vis_json

        g = load_vis_json(gp)
        t_read = best_of(lambda: read_results(rp, g), args.repeats)
        t_json = best_of(lambda: json.loads(rp.read_bytes()), args.repeats)
    share = mask_ops.compressed_rle_problem(counts[:n_pred * args.frames], [h * w] * (n_pred * args.frames))
    assert share is None
    t_check_file = t_check * n_pred * args.frames / len(rles)
    print(f"read_results of {n_pred} predictions x {args.frames} frames: {t_read:.3f} s "
          f"(json.loads alone {t_json:.3f} s; the check ~{t_check_file:.3f} s = {100 * t_check_file / t_read:.0f}%)")
    print(f"SUMMARY bench_rle_check: {1e9 * t_check / chars:.1f} ns/char, {t_check / t_area:.1f}x pycocotools area, "
          f"{t_check / t_dec:.3f}x decode, {100 * t_check_file / t_read:.0f}% of read_results")


if __name__ == "__main__":
    main()
