"""Benchmark of stage-one extraction: throughput, time split, bytes per frame on disk.

Runs ``genvis.cache.extract.extract`` (the code behind ``genvis extract``) over a generated
split of smooth random-colour frames and prints:

* throughput in frames/s (whole run, and detector forward alone),
* the time split between reading frames, detector forward and cache writing,
* bytes per frame on disk, the raw fp16 bytes per frame, and the compression ratio.

The last printed line is a one-line summary. Examples::

    python benchmarks/bench_extract.py                               # tiny detector, 96x128
    python benchmarks/bench_extract.py --config config/detectors/davis_lite0.yaml --height 240 --width 427
    python benchmarks/bench_extract.py --detector DET.pt --height 480 --width 854 --device cuda
    python benchmarks/bench_extract.py --videos 8 --workers 1 2     # + dask workers (genvis.cluster)

With ``--workers N [N ...]`` it also runs the extraction as dask tasks on a local cluster of
N worker processes (one torch thread each; ``genvis extract --workers N``) and prints, for
each N, the frames/s of the run (the cluster already up and every worker's detector loaded),
the start-up cost (cluster start + detector load on every worker) and the speed-up over
N = the first value given; then where the CPU went, in ms per frame: the worker processes
(and within them the task threads that ran the detector; Zarr encodes the chunks on its own thread) and this
process (client, scheduler and nannies), and the speed-up the CPU times predict for an idle
machine with this many cores (:func:`expected_ratio`). The in-process run prints its CPU
ms/frame too, and the load average is printed before and after: on a shared machine the
wall-clock rates say little, the CPU times much more. To compare 1 and 2 workers::

    python benchmarks/bench_extract.py --videos 8 --frames 60 --threads 1 --workers 1 2 --rounds 3

(``--rounds R`` alternates the worker counts R times and ends with the ratios of every round
and their median.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def make_split(root: Path, videos: int, frames: int, height: int, width: int, seed: int = 0) -> Path:
    """Write ``videos`` x ``frames`` JPEG frames (smooth colour fields with moving blobs) and a json."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width] / max(height, width)
    out = []
    for v in range(videos):
        base = rng.uniform(40, 215, size=(3, 3))
        names = []
        for t in range(frames):
            img = np.empty((height, width, 3))
            for c in range(3):
                img[..., c] = base[c, 0] + base[c, 1] * 0.3 * np.sin(6 * xx + t * 0.1) + base[c, 2] * 0.3 * np.cos(5 * yy)
            cy, cx = 0.3 + 0.2 * np.sin(t * 0.2 + v), 0.5 + 0.3 * np.cos(t * 0.15)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 0.01] = (230, 30, 30)
            name = f"v{v}/{t:05d}.jpg"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name, quality=90)
            names.append(name)
        out.append({"id": v + 1, "file_names": names, "length": frames, "width": width, "height": height})
    path = root / "split.json"
    path.write_text(json.dumps({"videos": out, "annotations": None,
                                "categories": [{"id": 1, "name": "object"}]}))
    return path


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/detectors/synth_tiny.yaml",
                        help="detector YAML (random weights) unless --detector is given")
    parser.add_argument("--detector", default=None, help="a trained/imported genvis detector file")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=24, help="frames per video")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--min-size", type=int, default=None, help="default: the detector's")
    parser.add_argument("--max-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--keep", default=None, help="keep the store at this path instead of a temp dir")
    parser.add_argument("--workers", type=int, nargs="*", default=[],
                        help="also time dask extraction with these numbers of local worker processes")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the --workers runs this many times, alternating (a fresh cluster each)")
    args = parser.parse_args(argv)

    import torch

    from genvis.cache import layout
    from genvis.cache.extract import extract
    from genvis.cache.reader import CacheReader
    from genvis.data.ytvis import load_vis_json
    from genvis.detector.config import load_detector_yaml
    from genvis.detector.model import FrameDetector

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA requested but not available", file=sys.stderr)
        return 2
    if args.detector:
        det = FrameDetector.load(args.detector)
    else:
        cfg, _ = load_detector_yaml(args.config)
        torch.manual_seed(0)
        det = FrameDetector(cfg)
    cfg = det.cfg
    cores = len(os.sched_getaffinity(0))
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        tmp = Path(tmp)
        split = make_split(tmp / "frames", args.videos, args.frames, args.height, args.width)
        ds = load_vis_json(split)
        store = Path(args.keep) if args.keep else tmp / "cache.zarr"
        # warm-up (first-call allocations, cuDNN autotune) on a throw-away store
        extract(ds.subset([1]), tmp / "frames", det, tmp / "warm.zarr", batch_size=args.batch_size,
                min_size=args.min_size, max_size=args.max_size, device=args.device, progress=False)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        cpu0, main0 = time.process_time(), time.thread_time()
        stats = extract(ds, tmp / "frames", det, store, batch_size=args.batch_size, min_size=args.min_size,
                        max_size=args.max_size, device=args.device, progress=False)
        cpu_s, main_cpu_s = time.process_time() - cpu0, time.thread_time() - main0
        reader = CacheReader(store)
        vid = reader.video_ids[0]
        sizes = reader.video_attrs(vid)
        per_frame = {f: int(np.prod(reader._array(vid, f).shape[1:])) * 2 for f in layout.FIELDS}
        disk = dir_bytes(store / layout.VIDEOS_GROUP)
        chunk_bytes = {f: sum(dir_bytes(store / layout.VIDEOS_GROUP / str(v) / f) for v in reader.video_ids)
                       for f in layout.FIELDS}
        cluster_rows = time_workers(args, det, split, tmp) if args.workers else []
    frames = stats.frames
    raw = sum(per_frame.values())
    print(f"device: {args.device} ({torch.get_num_threads()} CPU threads), detector: {cfg.name} "
          f"({cfg.backbone}, C={cfg.hidden_dim}, Q_f={cfg.num_queries}, L={cfg.keep_layers})")
    print(f"input: {args.videos} videos x {args.frames} frames of {args.height}x{args.width}, resized "
          f"{tuple(sizes['resized_size'])}, padded {tuple(sizes['padded_size'])}, batch {args.batch_size}")
    print(f"throughput: {frames / stats.total_s:.2f} frames/s overall; detector forward alone "
          f"{frames / max(stats.forward_s, 1e-9):.2f} frames/s")
    total = stats.read_s + stats.forward_s + stats.write_s
    print(f"time split: read {stats.read_s:.2f}s ({100 * stats.read_s / total:.0f}%), detector "
          f"{stats.forward_s:.2f}s ({100 * stats.forward_s / total:.0f}%), cache write {stats.write_s:.2f}s "
          f"({100 * stats.write_s / total:.0f}%), wall {stats.total_s:.2f}s")
    for f in layout.FIELDS:
        print(f"  {f:16s} raw fp16 {per_frame[f] / 1024:9.1f} KiB/frame, on disk "
              f"{chunk_bytes[f] / frames / 1024:9.1f} KiB/frame")
    print(f"bytes per frame: {disk / frames / 1024:.1f} KiB on disk, {raw / 1024:.1f} KiB raw fp16, "
          f"compression ratio {raw * frames / disk:.2f}x")
    print(f"SUMMARY extract {cfg.name} {args.height}x{args.width} {args.device}: "
          f"{frames / stats.total_s:.2f} frames/s, detector {100 * stats.forward_s / total:.0f}% / "
          f"write {100 * stats.write_s / total:.0f}% / read {100 * stats.read_s / total:.0f}%, "
          f"{disk / frames / 1024:.1f} KiB/frame on disk (raw {raw / 1024:.1f} KiB, {raw * frames / disk:.2f}x)")
    print(f"CPU in process: {1000 * cpu_s / frames:.2f} ms/frame ({1000 * main_cpu_s / frames:.2f} in the "
          f"extracting thread), {100 * cpu_s / stats.total_s:.0f}% of a core; load average at the start "
          f"{' '.join(f'{x:.2f}' for x in load_start)} (1, 5, 15 min) on {cores} cores")
    rounds = [cluster_rows[i:i + len(args.workers)] for i in range(0, len(cluster_rows), len(args.workers))]
    for k, rows in enumerate(rounds):
        first = rows[0]
        for r in rows:
            print(f"{f'round {k + 1}: ' if len(rounds) > 1 else ''}dask {r.workers} worker(s) x 1 thread: "
                  f"{r.fps:.2f} frames/s, start-up {r.start_s:.1f}s (cluster start + detector load on every "
                  f"worker; then a warm-up video on each {r.warm_s:.1f}s), {r.fps / first.fps:.2f}x the {first.workers}-worker rate, "
                  f"{r.fps / (frames / stats.total_s):.2f}x in process")
            print(f"  CPU ms/frame: workers {r.ms(r.worker_cpu_s):.2f} (task threads {r.ms(r.task_cpu_s):.2f}), "
                  f"client+scheduler {r.ms(r.client_cpu_s):.2f}; total "
                  f"{r.ms(r.worker_cpu_s + r.client_cpu_s):.2f} = "
                  f"{(r.worker_cpu_s + r.client_cpu_s) / r.wall_s:.2f} cores busy over the run")
            if r is not first:
                print(f"  expected on an idle {cores}-core machine from the CPU times: "
                      f"{expected_ratio(first, r, cores):.2f}x the {first.workers}-worker rate")
    if len(rounds) > 1:
        for j in range(1, len(args.workers)):
            wall = sorted(rows[j].fps / rows[0].fps for rows in rounds)
            cpu = sorted(expected_ratio(rows[0], rows[j], cores) for rows in rounds)
            print(f"SUMMARY dask {args.workers[j]} vs {args.workers[0]} worker(s) over {len(rounds)} rounds: "
                  f"wall-clock {' '.join(f'{x:.2f}' for x in wall)} (median {wall[len(wall) // 2]:.2f}x); "
                  f"expected from CPU {' '.join(f'{x:.2f}' for x in cpu)} (median {cpu[len(cpu) // 2]:.2f}x)")
    if cluster_rows:
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


@dataclass
class ClusterRow:
    """One dask run of :func:`time_workers`: rate, start-up and CPU seconds by whom."""

    workers: int
    frames: int
    wall_s: float            # the run, cluster up and detectors loaded
    start_s: float           # cluster start + detector load on every worker
    warm_s: float            # then one warm-up video on every worker (as the in-process run has)
    worker_cpu_s: float      # CPU of the worker processes during the run (all their threads)
    task_cpu_s: float        # of which the threads that ran the videos (detector + writes)
    client_cpu_s: float      # CPU of this process (client, scheduler, nannies) during the run

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s

    def ms(self, seconds: float) -> float:
        """CPU milliseconds per frame."""
        return 1000 * seconds / self.frames


def _thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds of every thread of this process, by native id: (thread name, seconds)."""
    import threading

    import psutil

    names = {t.native_id: t.name for t in threading.enumerate()}
    return {t.id: (names.get(t.id, "native"), t.user_time + t.system_time) for t in psutil.Process().threads()}


def _worker_cpu() -> tuple[float, float]:
    """(process CPU s, CPU s of the threads of dask's task pool) of the calling worker."""
    tasks = sum(cpu for name, cpu in _thread_cpu().values() if "Dask-Default-Threads" in name)
    return time.process_time(), tasks


def _warm_task(image_root: str, out: str, batch_size: int, min_size, max_size, device: str) -> None:
    """On a worker's task thread: the split's first video into a throw-away store (first-call
    allocations and lazy initialisation, which the in-process run's warm-up also takes out)."""
    from genvis.cache.extract import extract
    from genvis.cluster import _EXTRACT_PLUGIN, _worker_plugin

    plugin = _worker_plugin(_EXTRACT_PLUGIN)
    first = plugin.dataset.videos[0].id
    extract(plugin.dataset.subset([first]), image_root, plugin.detector, f"{out}_{os.getpid()}.zarr",
            batch_size=batch_size, min_size=min_size, max_size=max_size, device=device, progress=False)


def time_workers(args, det, split, tmp: Path) -> list[ClusterRow]:
    """Extraction as dask tasks, one run per worker count.

    Start-up = local cluster start + loading the detector on every worker (the worker
    plugin, registered here first); then every worker extracts one warm-up video into a
    throw-away store, as the in-process run does before it is timed. The run then finds the
    detectors loaded and warm, so its frames/s are the steady rate (a ``genvis extract --workers N`` run pays the start-up once on top). CPU
    seconds are taken before and after the run: of every worker process (``client.run``),
    of the threads there that ran the videos, and of this process (the client, the scheduler
    and the nannies of a local cluster live here).
    """
    from genvis.cluster import _DetectorPlugin, _ensure_plugin, cluster_client, extract_on_cluster

    det_path = tmp / "det.pt"
    det.save(det_path)
    rows = []
    for n in [n for _ in range(args.rounds) for n in args.workers]:
        t0 = time.perf_counter()
        with cluster_client(workers=n, threads_per_worker=1) as client:
            _ensure_plugin(client, _DetectorPlugin(str(det_path.resolve()), str(Path(split).resolve()),
                                                   args.device, 1))
            start_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            warm = [client.submit(_warm_task, str(tmp / "frames"), str(tmp / f"warm{len(rows)}"), args.batch_size,
                                  args.min_size, args.max_size, args.device, workers=[w],
                                  allow_other_workers=False, pure=False)
                    for w in client.scheduler_info()["workers"]]
            client.gather(warm)
            warm_s = time.perf_counter() - t1
            before, c0 = client.run(_worker_cpu), time.process_time()
            stats = extract_on_cluster(client, split, tmp / "frames", det_path, tmp / f"w{n}_{len(rows)}.zarr",
                                       batch_size=args.batch_size, min_size=args.min_size,
                                       max_size=args.max_size, device=args.device, progress=False)
            c1, after = time.process_time(), client.run(_worker_cpu)
        rows.append(ClusterRow(n, stats.frames, stats.total_s, start_s, warm_s,
                               sum(after[w][0] - before[w][0] for w in after),
                               sum(after[w][1] - before[w][1] for w in after), c1 - c0))
    return rows


def expected_ratio(one: ClusterRow, many: ClusterRow, cores: int) -> float:
    """Speed-up of ``many`` workers over ``one`` expected on an idle machine of ``cores`` cores,
    from CPU time alone (load on a shared machine stretches wall clocks, CPU seconds much less).

    A run's frames/s is capped twice: each worker runs its videos one after another, its task
    thread waiting for Zarr's codec thread to write a batch (rate <= workers / worker CPU
    per frame, all of a worker's threads), and all processes together get at most ``cores``
    CPUs (rate <= cores / total CPU per frame, total = workers + client).
    """
    def rate(r: ClusterRow) -> float:
        return min(r.workers / r.ms(r.worker_cpu_s), cores / r.ms(r.worker_cpu_s + r.client_cpu_s))

    return rate(many) / rate(one)


if __name__ == "__main__":
    sys.exit(main())
