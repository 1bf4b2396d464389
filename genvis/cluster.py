"""Scale-out over a dask.distributed cluster: stage one and inference with videos as tasks.

One machine to many: ``--workers N`` starts a local cluster of N worker processes
(:class:`distributed.LocalCluster`); ``--scheduler ADDRESS`` connects to a running scheduler
(for example one started by dask-jobqueue's ``SLURMCluster`` or dask-cuda's
``LocalCUDACluster``, one worker per GPU). Every worker loads the heavy objects once, in a
:class:`distributed.WorkerPlugin` (the frozen detector for extraction; the video model, the
cache reader and the annotations for inference), and each video is one task:

* extraction: a task runs :func:`genvis.cache.extract.extract` on a one-video subset, so a
  video is written atomically into the shared Zarr store exactly as a serial run writes it
  (same batches from frame 0, same bytes); completed videos are skipped, so a rerun after a
  killed worker or a killed client completes the store;
* inference: a task writes one video's predictions into the run's part folder
  (:class:`genvis.data.results.ResultsParts`), and the client joins the parts in video order,
  so the results json is byte-identical to a serial run and an interrupted run resumes.

Without these options nothing changes: the commands run in-process as before. The store and
the part folder must be on a file system that every worker sees (local disk for
``--workers``, a shared file system on a cluster).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from distributed import WorkerPlugin

from genvis.commands import wants_cluster  # noqa: F401  (re-exported: cluster_client uses it)
from genvis.errors import ConfigError

_EXTRACT_PLUGIN = "genvis-extract"
_INFER_PLUGIN = "genvis-infer"


#: dask settings of the local clusters started here (``--workers N``), passed on to the workers
#: by their nannies. Videos are long tasks (seconds each), so dask's sub-second background
#: work is pure overhead on cores the detector needs: the statistical profiler sampled every
#: thread's stack each 10 ms in every worker (holding the GIL the task's thread needs), the
#: memory monitors polled each 100 ms and the event-loop tick each 20 ms. Measured on the
#: tiny-detector benchmark (8 videos x 60 frames, 1 worker): the worker's event-loop thread
#: used 0.36 CPU s and the client/scheduler process 0.37 CPU s per 480 frames; 0.06 s and
#: 0.18 s with these settings. Work stealing is off: the scheduler queues the videos and hands
#: one to each worker as it frees up, so there is nothing to rebalance.
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.tick.interval": "1s",
    "distributed.scheduler.work-stealing": False,
}


#: glibc malloc settings of the local workers (a variable already set in the environment wins).
#: By default glibc gives a freed block of more than 128 KiB back to the kernel (or trims the
#: heap), so the next batch's tensors fault their pages in again, zeroed: ~1100 minor page
#: faults and 3-4.5 ms of system CPU per frame of the tiny detector (a quarter of the worker's
#: CPU), against 35-70 faults and 0.5 ms with these (blocks up to 32 MiB, glibc's maximum, stay
#: in the heap; up to 256 MiB of free heap is kept; one arena, as the worker runs one task
#: thread: with an arena per thread a worker still faulted 800 times a frame). See
#: docs/scaleout.md. The same variables exported before ``genvis extract`` help a serial run.
WORKER_MALLOC: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
    "MALLOC_ARENA_MAX": "1",
}


#: Zarr settings of a local worker (donfig reads ``ZARR_*`` variables): one thread in Zarr's
#: codec pool. With its default pool (one thread per core) each of two workers on two cores
#: ran its chunk encoding on extra threads that competed with the other worker's detector:
#: 2 workers 1.63x the 1-worker rate against 1.84x with this (bench_extract, idle machine).
WORKER_ZARR: dict[str, str] = {"ZARR_THREADING__MAX_WORKERS": "1"}


@contextlib.contextmanager
def cluster_client(workers: int | None = None, scheduler: str | None = None,
                   threads_per_worker: int = 1, connect_timeout: float = 20.0) -> Iterator[Any]:
    """A :class:`distributed.Client` on a new local cluster or on an existing scheduler.

    Args:
        workers: number of local worker processes (``LocalCluster(processes=True)``), or None.
        scheduler: address of a running scheduler, or None.
        threads_per_worker: threads of each local worker; torch in each worker uses as many.
        connect_timeout: seconds to wait for ``scheduler``.

    Yields:
        the client; a local cluster is closed on exit.

    Raises:
        ConfigError: both or neither option given, a bad count, or the scheduler cannot be
            reached (the message names the address).
    """
    from distributed import Client, LocalCluster

    if not wants_cluster(workers, scheduler):
        raise ConfigError("--workers", "give --workers N or --scheduler ADDRESS")
    if threads_per_worker < 1:
        raise ConfigError("--threads", f"must be >= 1, got {threads_per_worker}")
    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{connect_timeout}s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError("--scheduler", f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
        with client:
            yield client
        return
    import dask

    # dashboard off: nothing to serve on a compute node; the scheduler's health endpoint binds
    # a free port (not 8787, taken by any other cluster on the machine). The workers spawn
    # with the thread counts, WORKER_MALLOC and WORKER_ZARR set (not dask's MALLOC_TRIM_THRESHOLD_=65536,
    # which made glibc return memory after every tensor: the forward ran 2x slower).
    n = str(int(threads_per_worker))
    environ = {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
               **{k: v for k, v in {**WORKER_MALLOC, **WORKER_ZARR}.items() if k not in os.environ}}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ, **LOCAL_CLUSTER_CONFIG}), \
            LocalCluster(n_workers=int(workers), threads_per_worker=int(threads_per_worker), processes=True,
                         dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"},
                         silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def _as_completed_bar(futures: Sequence[Any], total: int, desc: str, unit: str, progress: bool,
                      weight=None) -> Iterator[Any]:
    """Yield the results of ``futures`` as they finish, advancing a tqdm bar."""
    from distributed import as_completed
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit=unit, disable=not progress, dynamic_ncols=True) as bar:
        for fut in as_completed(futures):
            result = fut.result()   # re-raises the task's error (a GenvisError keeps its message)
            bar.update(weight(result) if weight else 1)
            yield result


# --------------------------------------------------------------------------- extraction
class _DetectorPlugin(WorkerPlugin):
    """Worker plugin: load the frozen detector and the split once per worker; the detector's
    fingerprint (a hash of every weight, seconds for a large backbone) is computed once too,
    not once per video."""

    name = _EXTRACT_PLUGIN

    def __init__(self, detector_path: str, annotations: str, device: str, threads: int):
        self.detector_path = detector_path
        self.annotations = annotations
        self.device = device
        self.threads = threads
        self.detector = None
        self.dataset = None
        self.fingerprint = None

    def setup(self, worker: Any) -> None:
        import torch

        from genvis.data.ytvis import load_vis_json
        from genvis.detector.model import FrameDetector

        torch.set_num_threads(self.threads)
        self.detector = FrameDetector.load(self.detector_path).to(self.device).eval()
        self.fingerprint = self.detector.fingerprint()
        self.dataset = load_vis_json(self.annotations)

    def teardown(self, worker: Any) -> None:
        self.detector = self.dataset = None

    def settings(self) -> tuple:
        """What the loaded objects depend on (files with their modification times)."""
        return (self.detector_path, _mtime(self.detector_path), self.annotations, _mtime(self.annotations),
                self.device, self.threads)

    def provenance(self, min_size: int, max_size: int) -> dict:
        """:func:`genvis.cache.extract.cache_provenance` of the loaded detector."""
        from genvis.cache import layout

        cfg = self.detector.cfg
        return layout.make_provenance(self.fingerprint, cfg.name, min_size, max_size, cfg.keep_layers,
                                      backbone=cfg.backbone, num_queries=cfg.num_queries,
                                      hidden_dim=cfg.hidden_dim, num_classes=cfg.num_classes)


def _ensure_plugin(client: Any, plugin: Any) -> None:
    """Register ``plugin`` under its name unless every worker already holds one with the same
    settings (a repeated call on one client then loads nothing again)."""
    want = plugin.settings()

    def holds(dask_worker, name=plugin.name, want=want) -> bool:
        have = dask_worker.plugins.get(name)
        return have is not None and have.settings() == want

    have = client.run(holds)
    if not have or not all(have.values()):
        client.register_plugin(plugin, name=plugin.name)


def _worker_plugin(name: str) -> Any:
    from distributed import get_worker

    return get_worker().plugins[name]


def _detector_task(batch_size: int, min_size: int | None, max_size: int | None) -> tuple[Any, int, int, dict]:
    """On a worker: (detector config, min_size, max_size, cache provenance) of its detector,
    the sizes checked and defaulted as :func:`genvis.cache.extract.check_settings` does."""
    from genvis.cache.extract import check_settings

    plugin = _worker_plugin(_EXTRACT_PLUGIN)
    lo, hi = check_settings(plugin.detector.cfg, batch_size, min_size, max_size)
    return plugin.detector.cfg, lo, hi, plugin.provenance(lo, hi)


def _extract_task(video_id: int, image_root: str, out: str, batch_size: int, min_size: int,
                  max_size: int, device: str) -> tuple[int, str, Any]:
    """One video into the shared store (:func:`genvis.cache.extract.extract_video`, waiting
    for another writer's claim); returns (video id, outcome, its ExtractStats)."""
    from genvis.cache.extract import ExtractStats, extract_video
    from genvis.cache.writer import CacheWriter

    import torch

    plugin = _worker_plugin(_EXTRACT_PLUGIN)
    torch.set_num_threads(plugin.threads)   # in the task's own thread too
    t0 = time.perf_counter()
    writer = CacheWriter(out, plugin.provenance(min_size, max_size))   # the store exists: checks it
    stats = ExtractStats()
    outcome = extract_video(writer, plugin.dataset.video(video_id), image_root, plugin.detector, min_size,
                            max_size, batch_size, device, wait=True, source=plugin.annotations, stats=stats)
    stats.total_s = time.perf_counter() - t0
    return video_id, outcome, stats


def extract_on_cluster(client: Any, annotations: str | os.PathLike, image_root: str | os.PathLike,
                       detector_path: str | os.PathLike, out: str | os.PathLike, batch_size: int = 8,
                       shard: tuple[int, int] = (0, 1), min_size: int | None = None,
                       max_size: int | None = None, device: str = "cpu", threads: int = 1,
                       progress: bool = True) -> Any:
    """Stage one over a dask cluster: every video of the split (or shard) as one task.

    The workers load the detector first (once each, a worker plugin); the client then asks
    one of them for the cache provenance (so it never builds the detector itself), checks
    every video record of the split, and creates or reopens the store (provenance checked)
    before any video task starts, so a store of another detector or resolution is refused
    at once; each worker then writes its videos atomically
    (:func:`genvis.cache.extract.extract_video`). Videos already complete are not submitted.
    The result equals a serial :func:`genvis.cache.extract.extract` with the same batch size,
    byte for byte.

    Args:
        client: a :class:`distributed.Client` (:func:`cluster_client`).
        annotations: the split json; read here and once on every worker.
        image_root: directory the json's ``file_names`` are relative to (seen by every worker).
        detector_path: detector file (``genvis train-detector`` / ``import-checkpoint``),
            loaded once on every worker.
        out: the Zarr store, on a file system every worker sees.
        batch_size, shard, min_size, max_size, device: as for ``extract``.
        threads: torch CPU threads in each worker.
        progress: tqdm bar over frames, advanced as videos finish.

    Returns:
        :class:`genvis.cache.extract.ExtractStats`: ``total_s`` is the wall time of this
        call; ``read_s``, ``forward_s`` and ``write_s`` are summed over the workers (worker
        seconds, so they may add up to more than ``total_s``); ``written_ids`` in completion
        order.

    Raises:
        InputError / ConfigError: as ``extract`` (bad split, other detector's store, missing
            detector file, bad frames: the first failing video's error is raised here;
            finished videos stay).
    """
    from genvis.cache.extract import ExtractStats, plan_video, shard_video_ids
    from genvis.cache.writer import CacheWriter
    from genvis.data.ytvis import load_vis_json
    from genvis.errors import InputError

    t0 = time.perf_counter()
    if batch_size < 1:
        raise InputError("--batch-size", f"must be >= 1, got {batch_size}")
    dataset = load_vis_json(annotations)
    if not Path(image_root).is_dir():
        raise InputError(image_root, "image root is not a directory")
    if not Path(detector_path).is_file():
        raise InputError(detector_path, "detector checkpoint not found")
    annotations = str(Path(annotations).resolve())
    _ensure_plugin(client, _DetectorPlugin(str(Path(detector_path).resolve()), annotations, device, int(threads)))
    cfg, lo, hi, provenance = client.submit(_detector_task, batch_size, min_size, max_size, pure=False).result()
    ids = shard_video_ids([v.id for v in dataset.videos], *shard)
    for i in ids:  # bad records are refused before the store is created
        plan_video(dataset.video(i), cfg, lo, hi, annotations)
    writer = CacheWriter(out, provenance)
    done = writer.completed_video_ids()
    todo = [i for i in ids if i not in done]
    stats = ExtractStats(videos_skipped=len(ids) - len(todo))
    if todo:
        futures = [client.submit(_extract_task, vid, str(Path(image_root).resolve()), str(Path(out).resolve()),
                                 batch_size, lo, hi, device, key=f"genvis-extract-{vid}", pure=False)
                   for vid in todo]
        total = sum(dataset.video(v).length for v in todo)
        try:
            for vid, outcome, task in _as_completed_bar(futures, total, "extract", "frame", progress,
                                                        weight=lambda r: dataset.video(r[0]).length):
                if outcome == "written":
                    stats.videos_written += 1
                    stats.written_ids.append(vid)
                else:   # completed meanwhile by another process
                    stats.videos_skipped += 1
                stats.frames += task.frames
                stats.read_s += task.read_s
                stats.forward_s += task.forward_s
                stats.write_s += task.write_s
        except BaseException:
            client.cancel(futures)
            writer.remove_if_unused()   # a store this run created, still empty (tasks' claims respected)
            raise
        finally:
            client.cancel(futures)
    stats.total_s = time.perf_counter() - t0
    return stats


# --------------------------------------------------------------------------- inference
class _ModelPlugin(WorkerPlugin):
    """Worker plugin: load the video model, open the cache and read the split once per worker."""

    name = _INFER_PLUGIN

    def __init__(self, model_path: str, cache: str, annotations: str, device: str, threads: int):
        self.model_path = model_path
        self.cache = cache
        self.annotations = annotations
        self.device = device
        self.threads = threads
        self.model = self.reader = self.dataset = None

    def setup(self, worker: Any) -> None:
        import torch

        from genvis.cache.reader import CacheReader
        from genvis.model.checkpoint import load_any_model
        from genvis.data.ytvis import load_vis_json

        torch.set_num_threads(self.threads)
        self.model, _ = load_any_model(self.model_path)
        self.model.to(self.device).eval()
        self.reader = CacheReader(self.cache)
        self.dataset = load_vis_json(self.annotations)

    def teardown(self, worker: Any) -> None:
        self.model = self.reader = self.dataset = None

    def settings(self) -> tuple:
        """What the loaded objects depend on (files with their modification times)."""
        return (self.model_path, _mtime(self.model_path), self.cache, self.annotations, _mtime(self.annotations),
                self.device, self.threads)


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _infer_task(video_id: int, out: str, resume_key: dict, n_f_eval: int, top_k: int,
                association: str) -> tuple[int, int]:
    """One video's predictions into the run's part folder; returns (video id, predictions)."""
    from genvis.data.results import ResultsParts
    from genvis.infer.inference import write_video_part

    import torch

    plugin = _worker_plugin(_INFER_PLUGIN)
    torch.set_num_threads(plugin.threads)   # in the task's own thread too
    parts = ResultsParts(out, resume_key)
    count = write_video_part(plugin.model, plugin.reader, plugin.dataset, plugin.dataset.video(video_id),
                             n_f_eval, top_k, association, parts)
    return video_id, count


def infer_on_cluster(client: Any, model_path: str | os.PathLike, cache: str | os.PathLike,
                     annotations: str | os.PathLike, out: str | os.PathLike, n_f_eval: int, top_k: int,
                     association: str, resume_key: dict, device: str = "cpu", threads: int = 1,
                     progress: bool = True, fresh: bool = False) -> int:
    """Stage-two inference over a dask cluster: every video as one task; the results json
    is assembled in video order from the per-video parts, byte-identical to a serial run.

    Args:
        client: a :class:`distributed.Client`.
        model_path: MODEL.pt or an official .pth (loaded once on every worker).
        cache, annotations: the split's Zarr store and json (seen by every worker).
        out: results json; its part folder ``.<name>.parts/`` is shared by the workers.
        n_f_eval, top_k, association: as ``genvis infer``.
        resume_key: json-able description of the run (see
            :func:`genvis.infer.inference.write_inference`); finished parts of an equal key
            are kept and skipped, so an interrupted run resumes.
        device, threads: torch device and CPU threads of each worker.
        fresh: discard finished parts first (``genvis infer --no-resume``).

    Returns:
        the number of predictions written.

    Raises:
        InputError / ConfigError: as ``genvis infer`` (checked here before any task runs);
            the first failing video's error (``out`` is then not written).
    """
    from genvis.cache.reader import CacheReader
    from genvis.model.checkpoint import load_any_model
    from genvis.data.results import ResultsParts
    from genvis.data.ytvis import load_vis_json
    from genvis.infer.inference import check_inputs

    dataset = load_vis_json(annotations)
    model, _ = load_any_model(model_path)
    check_inputs(model, CacheReader(cache), dataset, n_f_eval)
    del model
    parts = ResultsParts(out, resume_key)
    if fresh:
        shutil.rmtree(parts.dir)
        parts = ResultsParts(out, resume_key)
    ids = [v.id for v in dataset.videos]
    done = parts.finished(ids)
    todo = [i for i in ids if i not in done]
    if todo:
        _ensure_plugin(client, _ModelPlugin(str(Path(model_path).resolve()), str(Path(cache).resolve()),
                                            str(Path(annotations).resolve()), device, int(threads)))
        futures = [client.submit(_infer_task, vid, str(Path(out).resolve()), resume_key, int(n_f_eval),
                                 int(top_k), association, key=f"genvis-infer-{vid}", pure=False)
                   for vid in todo]
        try:
            for _ in _as_completed_bar(futures, len(todo), "infer", "video", progress):
                pass
        finally:
            client.cancel(futures)
    return parts.join(ids)
