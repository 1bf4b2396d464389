"""One timed stage-two inference run (`genvis.infer.inference.write_inference`) for
bench_inference.py (not a benchmark itself).

Run in a subprocess whose PYTHONPATH selects the genvis code under test, so this branch and
an older commit are timed by the same script on the same cache and model. The model is a
randomly initialised GenVIS of the experiment's sizes (seeded; the work done does not depend
on the weights), or ``--model`` (a MODEL.pt). Writes the results json to ``--out`` and prints
one json line: seconds per run (after one warm-up run on the first video), frames/s, CPU
seconds (all threads, and the main thread alone: the rest is the cache's read-ahead and zarr's
own threads), and the share spent in pass 1 (video modules) and pass 2 (mask decoding, RLE).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", type=Path, required=True)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--dataset", type=Path, required=True, help="split json (videos inferred)")
    ap.add_argument("--out", type=Path, required=True, help="results json written")
    ap.add_argument("--n-f", type=int, required=True, help="N_f^eval")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--association", default="propagate")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import genvis.infer.inference as inf
    from genvis.cache.reader import CacheReader
    from genvis.data.ytvis import VISDataset, load_vis_json
    from genvis.model.genvis import GenVIS
    from genvis.train.config import load_experiment

    spent = {"pass1": 0.0, "pass2": 0.0}

    def timed(fn, key):
        def wrapper(*a, **kw):
            t0 = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                spent[key] += time.thread_time() - t0
        return wrapper

    inf.clip_predictions = timed(inf.clip_predictions, "pass1")
    if hasattr(inf, "clip_predictions_many"):   # batched pass 1 (issue 19; not in older commits)
        inf.clip_predictions_many = timed(inf.clip_predictions_many, "pass1")
    inf.video_masks = timed(inf.video_masks, "pass2")
    ds = load_vis_json(args.dataset)
    reader = CacheReader(args.store)
    cfg = load_experiment(args.experiment)
    mcfg = cfg.model_config(ds.num_classes, reader.hidden_dim, reader.num_queries, reader.hidden_dim)
    torch.manual_seed(args.seed)
    model = GenVIS(mcfg).eval()
    warm = VISDataset(videos=ds.videos[:1], annotations=None, categories=ds.categories, path=ds.path)
    inf.write_inference(model, reader, warm, args.n_f, args.out, top_k=args.top_k, association=args.association,
                        progress=False)
    frames = sum(v.length for v in ds.videos)
    wall, cpu, main_cpu = [], [], []
    for _ in range(args.runs):
        spent.update(pass1=0.0, pass2=0.0)
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        inf.write_inference(model, reader, ds, args.n_f, args.out, top_k=args.top_k, association=args.association,
                            progress=False)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        main_cpu.append(time.thread_time() - m0)
    print(json.dumps({"seconds": wall, "cpu_seconds": cpu, "main_thread_cpu_seconds": main_cpu, "frames": frames,
                      "parts": {k: v for k, v in spent.items()}}))


if __name__ == "__main__":
    main()
