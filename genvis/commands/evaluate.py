"""`genvis evaluate`: score a YouTube-VIS results json against ground truth (video AP / AR).

Writes ``metrics.json`` (AP, AP50, AP75, APs, APm, APl, AR1, AR10 in percent, null where
undefined, plus per-category AP; AP / AR per OVIS occlusion level APso, APmo, APho, ARso,
ARmo, ARho by ground-truth mBOR; with ``--iou boundary`` also the Tube-Boundary AP of VMT,
AP_B, AP_B50, AP_B75, AR_B1, AR_B10; with ``--protocol davis`` also DAVIS 2017 J&F under
``"davis"``; unless ``--no-hota``, HOTA, DetA, AssA, LocA, IDF1 in percent and IDSW,
class-averaged as TrackEval's YouTube-VIS evaluation, with the full class- and
detection-averaged results under ``association``) atomically and prints tables.

Boundary AP is opt-in because of its cost: on bench_evaluate's 200-video set it takes ~13 s
of CPU (decoding, eroding and re-encoding the masks of every pair that reaches IoU 0.5)
against ~1 s for everything else.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import time
from pathlib import Path

from genvis.utils.io import atomic_write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: --gt, --results (json or server zip), --out."""
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth VIS json (with annotations)")
    parser.add_argument("--results", required=True, type=Path,
                        help="results json (or a server zip holding results.json)")
    parser.add_argument("--out", required=True, type=Path, help="metrics json to write")
    parser.add_argument("--per-frame", nargs="?", const="0:", default=None, metavar="START:STOP",
                        help="also score the results frame by frame, identities ignored (COCO mask AP; "
                        "genvis.evaluate.frame_ap), on frames START..STOP-1 of every video (default all, "
                        "e.g. 20: for frame 20 onward); written as metrics['per_frame']")


    parser.add_argument("--iou", choices=("mask", "boundary"), default="mask",
                        help="'boundary' adds the Tube-Boundary AP of VMT (AP_B, AP_B50, AP_B75, AR_B1, AR_B10: "
                        "video IoU = min(mask, boundary) IoU; slower, see genvis.evaluate.boundary) to the "
                        "mask metrics")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="processes for the RLE check (from 4 M characters on) and the per-video matching "
                        "and association (HOTA) counts (from 32 videos on); default: 2 where 2 CPUs are "
                        "available and one idle (load average), else 1; the numbers do not depend on it")
    parser.add_argument("--scheduler", default=None,
                        help="address of a running dask scheduler (tcp://host:8786): the per-video matching "
                        "runs there as tasks of 16 videos (for large sets; genvis.cluster); --workers is then "
                        "not used")
    parser.add_argument("--hota", action=argparse.BooleanOptionalAction, default=True,
                        help="the association metrics (HOTA, DetA, AssA, LocA, IDF1, IDSW; genvis.evaluate.hota; "
                        "on by default); --no-hota skips them: about 40%% of the time on bench_evaluate's set, "
                        "which leaves the work of the official YouTube-VIS evaluation plus the occlusion levels")
    parser.add_argument("--protocol", choices=("ytvis", "davis"), default="ytvis",
                        help="'davis' adds DAVIS 2017 J&F (unsupervised flow: the top-20 tracks painted into "
                        "one id map, matched to the objects by the Hungarian method; genvis.evaluate.davis_jf) "
                        "as metrics['davis']")


@contextlib.contextmanager
def _no_gc():
    """Cyclic GC off while the large, acyclic json object trees are built and scored (it
    otherwise rescans them again and again: about half of the load time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def run(args: argparse.Namespace) -> int:
    """See :func:`_run`; runs it with the cyclic garbage collector paused."""
    with _no_gc():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Load, validate, evaluate, write metrics, print the table. Returns 0."""
    from genvis.data.ytvis import load_vis_json_unchecked
    from genvis.errors import ConfigError, InputError
    from genvis.evaluate.ytvis_eval import evaluate, format_table

    t0 = time.perf_counter()
    gt, gt_check = load_vis_json_unchecked(args.gt)
    if not gt.has_annotations:
        raise InputError(args.gt, "has no ground-truth annotations (\"annotations\": null); cannot evaluate")
    workers = _default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise ConfigError("--workers", f"must be >= 1, got {workers}")
    results, mbor = _read_results_beside_gt_checks(args, gt, gt_check, workers)
    frames = _frame_range(args.per_frame) if args.per_frame is not None else None
    if args.scheduler:
        from genvis.cluster import cluster_client

        with cluster_client(scheduler=args.scheduler) as client:
            metrics = evaluate(gt, results, progress=len(gt.videos) >= 50, boundary=args.iou == "boundary",
                               client=client, hota=args.hota, mbor=mbor)
    else:
        metrics = evaluate(gt, results, progress=len(gt.videos) >= 50, boundary=args.iou == "boundary",
                           workers=workers, hota=args.hota, mbor=mbor)
    if args.protocol == "davis":
        from genvis.evaluate.davis_jf import davis_jf
        from genvis.report.metrics import DAVIS_METRICS

        metrics["davis"] = davis_jf(gt, results)
        metrics.update({k: metrics["davis"][k] for k in DAVIS_METRICS})  # flat too, for report tables
    if frames is not None:
        from genvis.evaluate.frame_ap import FRAME_KEYS, frame_mask_ap

        metrics["per_frame"] = {"frames_from": frames[0], "frames_to": frames[1],
                                **frame_mask_ap(gt, results, frames)}
    metrics["gt"] = str(args.gt)
    metrics["results"] = str(args.results)
    atomic_write_json(args.out, metrics, indent=1)
    print(format_table(metrics))
    if "association" in metrics:
        from genvis.evaluate.hota import format_assoc_table

        print("\nassociation (TrackEval's HOTA / IDF1; every prediction counts, whatever its score):")
        print(format_assoc_table(metrics))
    if "davis" in metrics:
        from genvis.evaluate.davis_jf import format_davis_table

        print()
        print(format_davis_table(metrics["davis"]))
    if frames is not None:
        pf = metrics["per_frame"]
        fmt = {k: "-" if pf[k] is None else f"{pf[k]:.2f}" for k in FRAME_KEYS}
        print(f"per frame (frames {frames[0]}..{'end' if frames[1] is None else frames[1] - 1}, identities "
              f"ignored): mask AP {fmt['AP']}, AP50 {fmt['AP50']}, AP75 {fmt['AP75']}, AR100 {fmt['AR100']} "
              f"({pf['frames']} frames, {pf['detections']} detections)")
    print(f"{len(gt.videos)} videos, {len(results)} predicted instances, "
          f"{time.perf_counter() - t0:.2f} s -> {args.out}")
    return 0


def _read_results_beside_gt_checks(args: argparse.Namespace, gt, gt_check, workers: int):
    """(validated results, mBOR per ground-truth annotation id or None).

    With ``workers`` > 1 (and enough videos to fork for), the ground truth's RLE check and
    its occlusion levels (mBOR), which depend on the ground truth only, run in a forked
    process while this one reads and checks the results (the second CPU is otherwise idle
    then). The outcome is the serial one's: a ground-truth error is raised before any error
    of the results, and the results' warnings are shown only after the ground truth passed.
    Else the ground truth is checked first and the mBOR is left to :func:`evaluate`.
    """
    import warnings

    from genvis.data.results import read_results
    from genvis.errors import InputError
    from genvis.utils.forked import ForkedCall, can_fork

    if not can_fork(len(gt.videos), workers):
        gt_check.run()
        return read_results(args.results, gt, workers=workers), None
    helper = ForkedCall(_gt_side, (gt, gt_check))
    show = warnings.showwarning
    try:
        with warnings.catch_warnings(record=True) as caught:
            results = read_results(args.results, gt, workers=workers)
    finally:
        problem, mbor = helper.result()
        if problem is not None:
            raise InputError(gt_check.source, problem)
    for w in caught:
        show(w.message, w.category, w.filename, w.lineno, w.file, w.line)
    return results, mbor


def _gt_side(job: tuple) -> tuple[str | None, dict[int, float] | None]:
    """(the ground truth's first RLE problem, None) or (None, its mBOR per annotation id); the
    mBOR is computed only after the check passed (pycocotools must not see a garbled RLE)."""
    from genvis.evaluate.occlusion import instance_mbor

    gt, check = job
    problem = check.problem()
    if problem is not None:
        return problem, None
    return None, instance_mbor(gt)


def _default_workers() -> int:
    """2 when this process may run on at least 2 CPUs and about one of them is idle (the
    1-minute load average, where the system has one), else 1.

    A second process only pays when a core is free: on the 2-core development machine at load
    3.4, 2 processes cost 1.9 CPU-s against 1.14 with one for the same wall time
    (bench_evaluate's 200 videos). The numbers do not depend on it."""
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    if n < 2:
        return 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this system
        return 2
    return 2 if (os.cpu_count() or n) - load >= 1.0 else 1


def _frame_range(text: str) -> tuple[int, int | None]:
    """``"START:STOP"`` (either side may be empty) -> (start, stop or None). ConfigError naming
    ``--per-frame`` when malformed or empty."""
    from genvis.errors import ConfigError

    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise ConfigError("--per-frame", f"expected START:STOP (e.g. 0:20 or 20:), got {text!r}") from None
    if start < 0 or (stop is not None and stop <= start):
        raise ConfigError("--per-frame", f"need 0 <= START < STOP, got {text!r}")
    return start, stop
