"""One timed `genvis.train.loop.train` run, for bench_train.py (not a benchmark itself).

Run in a subprocess whose PYTHONPATH selects the genvis code under test (this branch, or
an older commit extracted into a temporary folder), so both are timed by the same script
on the same cache. Iterations are timed between successive optimizer steps (so the
set-up and the final save are excluded); a breakdown wraps the model's clip step, the
criterion, backward and the clip source's reads, in CPU seconds of the calling thread
(reads on another thread are reported apart: they overlap the step). Wall-clock and
process CPU seconds per iteration are both recorded. Prints one json line.

With ``--flops K`` the K iterations after the warm-up run under ``torch.profiler``
(``with_flops``; their timings are then not meaningful) and the json also holds the
floating-point operations per iteration and the compute floor: every matrix product of
those iterations (mm, addmm, bmm: > 95 % of the counted operations) is re-timed alone on
random operands of the same shapes, warm, on this machine and thread count; their sum per
iteration is the time the matrix products alone need (:func:`matmul_floor`).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", type=Path, required=True, help="experiment yaml")
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--dataset", type=Path, required=True, help="training split json")
    ap.add_argument("--iterations", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations (>= 1; the first one "
                    "includes the set-up); iterations - warmup - 1 are timed (not the last, which has no "
                    "next batch to read ahead)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--detector", type=Path, default=None,
                    help="detector yaml: clips from DetectorClipSource on the frames (detector in the loop)")
    ap.add_argument("--image-root", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flops", type=int, default=0, help="profile this many iterations after the warm-up "
                    "for the operation count and the matmul floor (timings of the run are then distorted)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import genvis.model.genvis as gm
    import genvis.train.criterion as crit
    from genvis.cache.reader import CacheReader
    from genvis.data.ytvis import load_vis_json
    from genvis.train.config import load_experiment
    from genvis.train.loop import train

    spent = {"forward": 0.0, "criterion": 0.0, "backward": 0.0, "read": 0.0, "read_background": 0.0}

    def timed(fn, key):
        def wrapper(*a, **kw):
            t0 = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                dt = time.thread_time() - t0
                bg = key == "read" and threading.current_thread() is not threading.main_thread()
                spent["read_background" if bg else key] += dt
        return wrapper

    gm.GenVIS.clip_step = timed(gm.GenVIS.clip_step, "forward")
    if hasattr(gm.GenVIS, "encode_clips"):  # the encoder of all clips at once (newer code)
        gm.GenVIS.encode_clips = timed(gm.GenVIS.encode_clips, "forward")
    crit.SetCriterion.__call__ = timed(crit.SetCriterion.__call__, "criterion")
    torch.Tensor.backward = timed(torch.Tensor.backward, "backward")
    steps: list[tuple[float, dict]] = []
    step = torch.optim.AdamW.step

    prof = None
    if args.flops > 0:
        from torch.profiler import ProfilerActivity, profile

        prof = profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=True)

    def timed_step(self, *a, **kw):
        r = step(self, *a, **kw)
        steps.append((time.perf_counter(), time.process_time(), dict(spent)))
        if prof is not None and len(steps) == args.warmup:
            prof.__enter__()
        if prof is not None and len(steps) == args.warmup + args.flops:
            prof.__exit__(None, None, None)
        return r

    torch.optim.AdamW.step = timed_step
    ds = load_vis_json(args.dataset)
    if args.detector is None:
        source = CacheReader(args.store)
    else:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import _common as C
        from genvis.infer.detector_source import DetectorClipSource

        det = C.make_detector(args.detector, args.seed)
        source = DetectorClipSource.from_dataset(det, ds, args.image_root, device="cpu", batch_size=8)
    for name in ("read_clip", "read_frames"):
        if hasattr(source, name):
            setattr(source, name, timed(getattr(source, name), "read"))
    cfg = load_experiment(args.experiment)
    cfg.train.checkpoint_every = 10 ** 9
    train(cfg, source, ds, args.out, iterations=args.iterations, progress=False)
    w = max(1, args.warmup)  # the first iteration ends the set-up: never timed
    timed = steps[w - 1:-1]  # nor the last: it has no next batch to read ahead (less work)
    times = [b[0] - a[0] for a, b in zip(timed, timed[1:])]
    cpu = [b[1] - a[1] for a, b in zip(timed, timed[1:])]
    n = len(times)
    parts = {k: (timed[-1][2][k] - timed[0][2][k]) / n for k in spent}
    result = {"s_per_it": times, "cpu_s_per_it": cpu, "parts": parts}
    if prof is not None:
        result.update(matmul_floor(prof, args.flops))
    print(json.dumps(result))


def matmul_floor(prof, iterations: int) -> dict:
    """Operation count and matmul floor of the profiled iterations.

    Returns:
        {"gflop_per_it": all operations the profiler counts (matrix products, convolutions,
        elementwise add / mul), "matmul_gflop_per_it", "matmul_floor_s_per_it": the matrix
        products of one iteration re-timed alone (best of 5 after a warm-up, per shape),
        "matmul_gflops": their rate, "matmul_calls_per_it", "ops_per_it": aten operations
        the profiler recorded (nested ones included)}.
    """
    import torch

    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.flops for e in events)
    ops = sum(e.count for e in events)
    mm_flops, floor, calls = 0.0, 0.0, 0
    for e in events:
        if e.key not in ("aten::mm", "aten::addmm", "aten::bmm") or not e.flops:
            continue
        shapes = [s for s in e.input_shapes if s]
        if e.key == "aten::addmm":
            bias, a, b = shapes[:3]
            args = (torch.randn(bias), torch.randn(a), torch.randn(b))
            fn = torch.addmm
        else:
            args = (torch.randn(shapes[0]), torch.randn(shapes[1]))
            fn = torch.mm if e.key == "aten::mm" else torch.bmm
        fn(*args)
        best = float("inf")
        for _ in range(5):
            reps = max(1, min(200, int(2e8 / max(e.flops / e.count, 1))))
            t0 = time.process_time()
            for _ in range(reps):
                fn(*args)
            best = min(best, (time.process_time() - t0) / reps)
        floor += best * e.count
        mm_flops += e.flops
        calls += e.count
    return {"gflop_per_it": total / iterations / 1e9, "matmul_gflop_per_it": mm_flops / iterations / 1e9,
            "matmul_floor_s_per_it": floor / iterations, "matmul_gflops": mm_flops / max(floor, 1e-12) / 1e9,
            "matmul_calls_per_it": calls / iterations, "ops_per_it": ops / iterations}


if __name__ == "__main__":
    main()
