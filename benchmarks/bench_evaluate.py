"""Benchmark of the video AP evaluator (`genvis evaluate`) on a generated set of videos.

Generates ground truth (2-8 moving, occluding ellipses per video over 3 categories;
instances absent in some frames) and perturbed predictions (shifted / rescaled masks,
dropped frames, wrong classes, false positives; a fixed number per video like GenVIS's
top-k) as RLE only (no JPEGs), then times:

* ``evaluate()`` on in-memory records (the protocol itself),
* the whole ``genvis evaluate`` command (json loading, validation, evaluation, writing),
  by default and with ``--no-hota`` (no association metrics: the reference's work plus the
  occlusion levels),
* the project's reference evaluator (pycocotools ``COCOeval`` with the official per-pair,
  per-frame video IoU, from ``tests/test_evaluate_reference.py``) end to end on the same
  files in the same run, as a speed-up ratio, with the largest metric difference,
* the video-IoU step against a naive per-pair, per-frame ``merge``/``area`` loop (the
  official code's form) on the first videos, as a speed-up ratio.

Prints figures; the last line is a one-line summary. ``--device`` is accepted for
uniformity with the other benchmarks and ignored (evaluation runs on the CPU).

    python benchmarks/bench_evaluate.py --videos 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from genvis.cli import main as genvis_main
from genvis.data import masks as mask_ops
from genvis.data.results import VideoResult
from genvis.data.ytvis import VISDataset, parse_vis_dict
from genvis.evaluate.ytvis_eval import _prepare, evaluate, evaluate_arrays, video_ious


def ellipse_masks(h: int, w: int, centers: np.ndarray, radii: tuple[float, float]) -> np.ndarray:
    """uint8 masks ``[H, W, T]`` (Fortran order, ready for pycocotools) of an axis-aligned
    ellipse at ``centers`` [T, 2] (x, y), computed on each frame's bounding-box crop."""
    t_len = len(centers)
    out = np.zeros((h, w, t_len), np.uint8, order="F")
    rx, ry = radii
    for t, (cx, cy) in enumerate(centers):
        x0, x1 = max(0, int(cx - rx)), min(w, int(cx + rx) + 2)
        y0, y1 = max(0, int(cy - ry)), min(h, int(cy + ry) + 2)
        if x0 >= x1 or y0 >= y1:
            continue
        dx = (np.arange(x0, x1, dtype=np.float32) - cx) / rx
        dy = (np.arange(y0, y1, dtype=np.float32) - cy) / ry
        out[y0:y1, x0:x1, t] = (dy[:, None] ** 2 + dx[None, :] ** 2) <= 1.0
    return out


def encode(masks_hwt: np.ndarray) -> list[dict]:
    """Compressed RLE (str counts) per frame of uint8 ``[H, W, T]`` Fortran-ordered masks."""
    return [{"size": r["size"], "counts": r["counts"].decode("ascii")} for r in mask_utils.encode(masks_hwt)]


def generate(n_videos: int, h: int, w: int, min_len: int, max_len: int, preds: int, n_cats: int,
             seed: int) -> tuple[dict, list[dict]]:
    """Ground-truth json dict and results list (see module docstring)."""
    rng = np.random.default_rng(seed)
    videos, anns, results = [], [], []
    for vid in range(1, n_videos + 1):
        t_len = int(rng.integers(min_len, max_len + 1))
        videos.append({"id": vid, "file_names": [f"v{vid:04d}/{t:05d}.jpg" for t in range(t_len)],
                       "length": t_len, "width": w, "height": h})
        t = np.arange(t_len)
        n_inst = int(rng.integers(2, 9))
        tracks, cats_of = [], []
        covered = np.zeros((h, w, t_len), bool, order="F")
        visible = []
        for k in range(n_inst):  # nearest first: each instance hides what is behind it
            r = (float(rng.uniform(0.05, 0.25) * w), float(rng.uniform(0.05, 0.25) * h))
            centers = rng.uniform([0, 0], [w, h])[None] + rng.normal(0, 0.01, size=2)[None] * [w, h] * t[:, None]
            full = ellipse_masks(h, w, centers, r).astype(bool)
            vis = full & ~covered
            covered |= full
            vis[:, :, rng.random(t_len) < 0.15] = False  # absent frames
            tracks.append((centers, r))
            cats_of.append(int(rng.integers(1, n_cats + 1)))
            visible.append(vis)
        for k in range(n_inst):
            if not visible[k].any():
                continue
            segs = encode(np.asfortranarray(visible[k], dtype=np.uint8))
            segs = [s if visible[k][:, :, i].any() else None for i, s in enumerate(segs)]
            anns.append({"id": len(anns) + 1, "video_id": vid, "category_id": cats_of[k], "segmentations": segs,
                         "areas": mask_ops.rle_areas(segs), "iscrowd": 0})
        for p in range(preds):
            k = int(rng.integers(n_inst))
            centers, r = tracks[k]
            if p >= 2 * n_inst or rng.random() < 0.2:  # a false positive
                centers = rng.uniform([0, 0], [w, h])[None].repeat(t_len, 0)
                r = (0.1 * w, 0.1 * h)
            else:  # a shifted, rescaled, unoccluded guess of instance k
                centers = centers + rng.integers(-6, 7, size=2)[None]
                r = (r[0] * rng.uniform(0.85, 1.15), r[1] * rng.uniform(0.85, 1.15))
            m = ellipse_masks(h, w, centers, r)
            m[:, :, rng.random(t_len) < 0.1] = 0
            cat = cats_of[k] if rng.random() < 0.8 else int(rng.integers(1, n_cats + 1))
            results.append({"video_id": vid, "category_id": cat, "score": float(rng.random()),
                            "segmentations": encode(m)})
    gt = {"videos": videos, "annotations": anns,
          "categories": [{"id": c, "name": f"cat{c}"} for c in range(1, n_cats + 1)]}
    return gt, results


def naive_video_ious(dts, gts) -> np.ndarray:
    """The official code's form: per pair, per frame merge/area calls."""
    out = np.zeros((len(dts), len(gts)))
    for i, d in enumerate(dts):
        for j, g in enumerate(gts):
            inter = union = 0.0
            for ds, gs in zip(d.rles, g.rles):
                if ds and gs:
                    inter += mask_utils.area(mask_utils.merge([ds, gs], True))
                    union += mask_utils.area(mask_utils.merge([ds, gs], False))
                elif gs:
                    union += mask_utils.area(gs)
                elif ds:
                    union += mask_utils.area(ds)
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def iou_speedup(gt: VISDataset, results: list[VideoResult], n_videos: int) -> tuple[float, float, float]:
    """(ours s, naive s, max |difference|) of the video-IoU step on the first ``n_videos`` videos:
    ours as ``evaluate`` runs it (one call per video, pairs of equal category), naive as the
    official code (per (video, category), per pair, per frame)."""
    gts, dts = _prepare(gt, results)
    vids = sorted(gt.video_ids)[:n_videos]
    cats = sorted(c.id for c in gt.categories)
    t0 = time.perf_counter()
    ours = {}
    for v in vids:
        d_all = [(c, d) for c in cats for d in dts.get((v, c), [])]
        g_all = [(c, g) for c in cats for g in gts.get((v, c), [])]
        m = video_ious([d for _, d in d_all], [g for _, g in g_all], gt.video(v).length,
                       [c for c, _ in d_all], [c for c, _ in g_all])
        for c in cats:
            di = [i for i, (cc, _) in enumerate(d_all) if cc == c]
            gi = [j for j, (cc, _) in enumerate(g_all) if cc == c]
            ours[v, c] = m[np.ix_(di, gi)]
    t1 = time.perf_counter()
    naive = {(v, c): naive_video_ious(dts.get((v, c), []), gts.get((v, c), [])) for v in vids for c in cats}
    t2 = time.perf_counter()
    diff = max((float(np.abs(ours[k] - naive[k]).max()) for k in naive if naive[k].size), default=0.0)
    return t1 - t0, t2 - t1, diff


def _cpu() -> float:
    """CPU seconds of this process and its finished children (forked evaluation workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def reference_run(gt_path: Path, res_path: Path) -> tuple[float, float, np.ndarray]:
    """(wall s, CPU s, stats[12]) of the project's reference evaluator (pycocotools ``COCOeval``
    with the official per-pair, per-frame video IoU; ``tests/test_evaluate_reference.py``),
    end to end from the json files (stdlib ``json`` as the official API)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_evaluate_reference import reference_stats

    t0, c0 = time.perf_counter(), _cpu()
    gt_json = json.loads(gt_path.read_text())
    res_json = json.loads(res_path.read_text())
    stats, _ = reference_stats(gt_json, res_json)
    return time.perf_counter() - t0, _cpu() - c0, stats


def cli_run(gt_path: Path, res_path: Path, out_path: Path, extra: list[str]) -> tuple[float, float]:
    """(wall s, CPU s incl. forked workers) of ``genvis evaluate`` in this process, output hidden."""
    import contextlib
    import io

    t0, c0 = time.perf_counter(), _cpu()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = genvis_main(["evaluate", "--gt", str(gt_path), "--results", str(res_path), "--out", str(out_path)]
                         + extra)
    assert rc == 0
    return time.perf_counter() - t0, _cpu() - c0


def budget(gt_path: Path, res_path: Path) -> dict[str, float]:
    """One-process CPU seconds of each step of ``genvis evaluate`` (default: AP, occlusion
    levels, HOTA) on the files, cyclic GC paused as in the command; best of 3. The steps run
    as the command runs them; the per-frame IoU and the association counts are timed apart
    from the AP matching by running them alone over all videos (the command does all three in
    one pass over each video)."""
    import dataclasses
    import gc

    from genvis.data.results import _read_results_obj, parse_results
    from genvis.data.ytvis import load_vis_json_unchecked
    from genvis.evaluate.frame_pairs import video_pairs
    from genvis.evaluate.hota import _one_video
    from genvis.evaluate.occlusion import OCCLUSION_LEVELS, instance_mbor
    from genvis.evaluate.ytvis_eval import EvalParams, _run_videos, accumulate

    def cpu(fn):
        best, value = float("inf"), None
        for _ in range(3):
            c0 = time.process_time()
            value = fn()
            best = min(best, time.process_time() - c0)
        return best, value

    was = gc.isenabled()
    gc.disable()
    try:
        out = {}
        out["ground truth: json + structure"], (gt, check) = cpu(lambda: load_vis_json_unchecked(gt_path))
        out["ground truth: RLE check"], _ = cpu(check.problem)
        out["ground truth: mBOR (occlusion levels)"], mbor = cpu(lambda: instance_mbor(gt))
        out["results: json"], data = cpu(lambda: _read_results_obj(res_path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_all, results = cpu(lambda: parse_results(data, res_path, gt))
        counts = [s["counts"] for r in results for s in r.segmentations if s is not None]
        pixels = [gt.video(r.video_id).height * gt.video(r.video_id).width
                  for r in results for s in r.segmentations if s is not None]
        out["results: RLE check"], _ = cpu(lambda: mask_ops.compressed_rle_check(counts, pixels))
        out["results: structure"] = t_all - out["results: RLE check"]
        cat_ids = {c.id for c in gt.categories}
        by_video: dict[int, list] = {v: [] for v in gt.video_ids}
        for r in results:
            if r.category_id in cat_ids:
                by_video[r.video_id].append(r)
        per_video = [(gt.video(v), [a for a in gt.annotations_of(v) if a.category_id in cat_ids], by_video[v])
                     for v in sorted(gt.video_ids)]
        out["per-frame IoU (pycocotools.mask.iou, one call a frame)"], pairs = cpu(
            lambda: [video_pairs(*x) for x in per_video])
        out["association counts (HOTA, IDF1, CLEAR)"], _ = cpu(
            lambda: [_one_video(*x, pv) for x, pv in zip(per_video, pairs)])
        p = dataclasses.replace(EvalParams(), occlusion_ranges=tuple((lo, hi) for _, lo, hi in OCCLUSION_LEVELS))
        t_videos, per = cpu(lambda: _run_videos(gt, results, p, False, mbor, 1, None, True))
        out["AP matching, per video (the rest of the pass)"] = (t_videos - out["per-frame IoU (pycocotools.mask.iou, "
                                                                "one call a frame)"]
                                                              - out["association counts (HOTA, IDF1, CLEAR)"])
        out["accumulation"], _ = cpu(lambda: accumulate([per[v][0] for v in sorted(per)], sorted(cat_ids), p))
    finally:
        if was:
            gc.enable()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=432)
    ap.add_argument("--min-length", type=int, default=10)
    ap.add_argument("--max-length", type=int, default=60)
    ap.add_argument("--preds-per-video", type=int, default=20, help="like GenVIS top-k (k=20 on OVIS)")
    ap.add_argument("--categories", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--naive-videos", type=int, default=10, help="videos for the naive IoU comparison")
    ap.add_argument("--skip-reference", action="store_true", help="do not time the reference evaluator")
    ap.add_argument("--workers", type=int, default=None, help="genvis evaluate --workers (default: its own)")
    ap.add_argument("--budget", action="store_true", help="also time each step of genvis evaluate alone "
                    "(one process, CPU)")
    ap.add_argument("--device", default="cpu", help="ignored (evaluation runs on the CPU)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    gt_json, res_json = generate(args.videos, args.height, args.width, args.min_length, args.max_length,
                                 args.preds_per_video, args.categories, args.seed)
    t_gen = time.perf_counter() - t0
    frames = sum(v["length"] for v in gt_json["videos"])
    print(f"generated {args.videos} videos ({frames} frames at {args.height}x{args.width}), "
          f"{len(gt_json['annotations'])} GT instances, {len(res_json)} predictions in {t_gen:.1f} s")

    gt = parse_vis_dict(gt_json, "bench-gt")
    results = [VideoResult(r["video_id"], r["category_id"], r["score"], r["segmentations"]) for r in res_json]
    t0, c0 = time.perf_counter(), time.process_time()
    metrics = evaluate(gt, results)
    t_eval, c_eval = time.perf_counter() - t0, time.process_time() - c0
    print(f"evaluate(): {t_eval:.2f} s wall ({c_eval:.2f} s CPU), {args.videos / t_eval:.1f} videos/s, "
          f"{frames / t_eval:.0f} frames/s; AP {metrics['AP']:.2f} AP50 {metrics['AP50']:.2f} AR10 {metrics['AR10']:.2f}")

    from genvis.evaluate.hota import association_metrics

    t0, c0 = time.perf_counter(), time.process_time()
    assoc = association_metrics(gt, results)["class_averaged"]
    t_assoc, c_assoc = time.perf_counter() - t0, time.process_time() - c0
    print(f"association_metrics(): {t_assoc:.2f} s wall ({c_assoc:.2f} s CPU), {args.videos / t_assoc:.1f} videos/s; "
          f"HOTA {assoc['HOTA']:.2f} DetA {assoc['DetA']:.2f} AssA {assoc['AssA']:.2f} IDF1 {assoc['IDF1']:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        gp, rp, mp = Path(tmp, "gt.json"), Path(tmp, "res.json"), Path(tmp, "metrics.json")
        gp.write_text(json.dumps(gt_json))
        rp.write_text(json.dumps(res_json))
        runs = {}  # extra arguments -> (wall s, CPU s)
        from genvis.commands.evaluate import _default_workers

        for extra in ([], ["--no-hota"]):
            # the count the command chooses when it starts (its default follows the load average)
            workers = f"default = {_default_workers()}" if args.workers is None else args.workers
            t_cli, c_cli = cli_run(gp, rp, mp, extra + ([] if args.workers is None else ["--workers", str(args.workers)]))
            cli_metrics = json.loads(mp.read_text())
            assert cli_metrics["AP"] == metrics["AP"] and cli_metrics["APho"] == metrics["APho"]
            assert ("HOTA" in cli_metrics) == (not extra)
            runs[" ".join(extra)] = (t_cli, c_cli)
            what = "AP, occlusion levels, HOTA" if not extra else "--no-hota: AP, occlusion levels"
            print(f"genvis evaluate ({what}; load + validate + evaluate + write; workers "
                  f"{workers}): {t_cli:.2f} s wall ({c_cli:.2f} s CPU "
                  f"incl. workers), {args.videos / t_cli:.1f} videos/s")
        t_cli, c_cli = runs[""]
        t_ref = c_ref = None
        if not args.skip_reference:
            t_ref, c_ref, ref_stats = reference_run(gp, rp)
            diff = float(np.abs(evaluate_arrays(gt, results).stats - ref_stats).max())  # all 12 stats, unrounded
            print(f"reference evaluator (COCOeval + official video IoU, tests/test_evaluate_reference.py; json "
                  f"load + evaluate + accumulate + summarize): {t_ref:.2f} s wall ({c_ref:.2f} s CPU); "
                  f"max |metric difference| {diff:.1e}")
            for extra, (t, c) in runs.items():
                print(f"  genvis evaluate {extra or '(default)'} is {t_ref / t:.1f}x faster wall "
                      f"({c_ref / c:.1f}x CPU)")
        print(f"load average (1 min) after the timed runs: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        if args.budget:
            steps = budget(gp, rp)
            print("one-process CPU of genvis evaluate's steps (best of 3; s):")
            for name, sec in steps.items():
                print(f"  {name:<55} {sec:6.3f}")
            print(f"  {'sum':<55} {sum(steps.values()):6.3f}")

    n_naive = min(args.naive_videos, args.videos)
    ours, naive, diff = iou_speedup(gt, results, n_naive)
    print(f"video IoU on {n_naive} videos: ours {ours * 1e3:.1f} ms, naive per-frame merge loop "
          f"{naive * 1e3:.1f} ms ({naive / max(ours, 1e-9):.1f}x faster), max |diff| {diff:.2e}")
    t_nh = runs["--no-hota"][0]
    ratio = "" if t_ref is None else (f"{t_ref / t_cli:.1f}x vs reference evaluator (wall; --no-hota "
                                      f"{t_ref / t_nh:.1f}x), ")
    print(f"SUMMARY bench_evaluate: {args.videos} videos, {len(res_json)} predictions, "
          f"evaluate {args.videos / t_eval:.1f} videos/s, HOTA {args.videos / t_assoc:.1f} videos/s, CLI {args.videos / t_cli:.1f} videos/s, {ratio}"
          f"IoU {naive / max(ours, 1e-9):.1f}x vs naive, device=cpu")


if __name__ == "__main__":
    main()
