"""Helpers shared by the benchmarks (not a benchmark itself).

Set-up through the project's own code: ``genvis.data.synth`` for frames, ``FrameDetector``
from a detector YAML (randomly initialised: timings and memory do not depend on the
weights), ``genvis.cache.extract.extract`` for the cache, experiment YAMLs from
``config/experiments``. Plus timing statistics and the ``--device`` check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_DETECTOR = REPO / "config" / "detectors" / "synth_tiny.yaml"
#: used when config/detectors/synth_tiny.yaml is absent (same values)
FALLBACK_DETECTOR = dict(name="synth-lite0", backbone="efficientnet_lite0", num_classes=6, hidden_dim=64,
                         num_queries=16, decoder_layers=4, encoder_layers=2, num_heads=4,
                         dim_feedforward=256, encoder_feedforward_dim=256, keep_layers=3,
                         min_size=96, max_size=128)
#: stage-two model used when config/experiments/<name>.yaml is absent (same values)
FALLBACK_MODEL = dict(num_queries=20, num_heads=8, dim_feedforward=512, enc_layers=2, dec_layers=3,
                      enc_window=0, memory="index")


def add_common_arguments(ap: argparse.ArgumentParser, workdir: str) -> None:
    """--device, --threads, --workdir, --detector-config, --seed."""
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where the frame detector and the stage-two "
                    "video modules run")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp") / workdir,
                    help=f"generated frames, caches and models (default /tmp/{workdir}; reused when present)")
    ap.add_argument("--detector-config", type=Path, default=DEFAULT_DETECTOR,
                    help="detector YAML (default config/detectors/synth_tiny.yaml; randomly initialised)")
    ap.add_argument("--seed", type=int, default=0)


def setup_torch(args: argparse.Namespace) -> None:
    """Thread count; a clear error for --device cuda without a GPU."""
    import torch

    torch.set_num_threads(max(1, int(args.threads)))
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"error: --device {args.device} requested but CUDA is not available on this machine "
                 f"(torch {torch.__version__}, no GPU); run without --device or on a GPU machine")


def sync(device: str) -> None:
    """Wait for queued GPU work so that wall-clock timings are complete."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def machine() -> str:
    """One line describing where the figures come from."""
    import platform

    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs (load {load:.1f}), "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads, {gpu}")


def detector_config(path: Path):
    """DetectorConfig from ``path``, or the built-in synth-tiny values when it is absent."""
    from genvis.detector.config import DetectorConfig, load_detector_yaml

    if Path(path).is_file():
        return load_detector_yaml(path)[0]
    return DetectorConfig(**FALLBACK_DETECTOR)


def make_detector(path: Path, seed: int = 0):
    """A randomly initialised FrameDetector (eval mode) of the config at ``path``."""
    import torch

    from genvis.detector.model import FrameDetector

    torch.manual_seed(seed)
    return FrameDetector(detector_config(path)).eval()


def experiment(name: str, **train_overrides: Any):
    """ExperimentConfig from config/experiments/<name>.yaml (else built-in small values)."""
    from genvis.train.config import ExperimentConfig, load_experiment

    path = REPO / "config" / "experiments" / f"{name}.yaml"
    if path.is_file():
        cfg = load_experiment(path)
    else:
        cfg = ExperimentConfig.from_dict({"name": name, "model": dict(FALLBACK_MODEL),
                                          "train": {"n_f": 3 if "semi" in name else 1, "batch_videos": 4,
                                                    "num_points": 1024, "lr": 2e-4}})
    for k, v in train_overrides.items():
        if v is not None:
            setattr(cfg.train, k, v)
    return cfg.validate()


def synth(out: Path, videos: int, height: int, width: int, min_length: int, max_length: int,
          seed: int = 0) -> Path:
    """``genvis synth`` output in ``out`` (written once; reused when the config matches)."""
    from genvis.data.synth import SynthConfig, write_synth_dataset

    cfg = SynthConfig(num_videos=videos, seed=seed, height=height, width=width, min_length=min_length,
                      max_length=max_length, valid_fraction=0.5).validate()
    write_synth_dataset(out, cfg, progress=False)
    return out


def extract_store(dataset, image_root: Path, detector, out: Path, device: str = "cpu",
                  batch_size: int = 8):
    """Run the real ``genvis extract`` code into ``out`` (resumes / skips complete videos).

    A store left by another detector config is refused by extract (InputError); this
    benchmark-only store is then deleted and rebuilt.
    """
    import shutil

    from genvis.cache.extract import extract
    from genvis.errors import InputError

    try:
        return extract(dataset, image_root, detector, out, batch_size=batch_size, device=device, progress=False)
    except InputError as exc:
        print(f"rebuilding {out}: {exc}")
        shutil.rmtree(out)
        return extract(dataset, image_root, detector, out, batch_size=batch_size, device=device, progress=False)


def add_synth_arguments(ap: argparse.ArgumentParser, videos: int, min_length: int, max_length: int,
                        videos_help: str) -> None:
    """--videos, --height, --width, --min-length, --max-length: the synthetic set that
    :func:`synth_cache` builds (frames of 96x128 by default; lengths in frames)."""
    ap.add_argument("--videos", type=int, default=videos, help=videos_help)
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--min-length", type=int, default=min_length)
    ap.add_argument("--max-length", type=int, default=max_length)


def synth_cache(args: argparse.Namespace, split: str):
    """The set-up every cache benchmark shares: the synthetic benchmark (``args.videos``,
    ``height``, ``width``, ``min_length``, ``max_length``, ``seed``) under ``args.workdir/synth``,
    the detector of ``args.detector_config`` and the real extraction of ``split`` into
    ``args.workdir/<split>.zarr``. Prints the set-up time and extraction figures.

    Returns:
        (VISDataset of the split, image root, detector, store path, extraction stats).
    """
    import time

    from genvis.data.ytvis import load_vis_json

    work = args.workdir
    t0 = time.perf_counter()
    synth(work / "synth", args.videos, args.height, args.width, args.min_length, args.max_length, args.seed)
    dataset = load_vis_json(work / "synth" / f"{split}.json")
    image_root = work / "synth" / "frames"
    detector = make_detector(args.detector_config, args.seed)
    store = work / f"{split}.zarr"
    stats = extract_store(dataset, image_root, detector, store, args.device)
    frames = sum(v.length for v in dataset.videos)
    print(f"set-up {time.perf_counter() - t0:.1f} s: {len(dataset.videos)} {split} videos, {frames} frames "
          f"at {args.height}x{args.width}; {stats.summary()}")
    return dataset, image_root, detector, store, stats


def describe(values: Sequence[float]) -> dict[str, float]:
    """median, min, max, and the interquartile range of a sample."""
    v = sorted(values)
    if len(v) >= 4:
        q = statistics.quantiles(v, n=4)
        iqr = q[2] - q[0]
    else:
        iqr = v[-1] - v[0] if v else float("nan")
    return {"median": statistics.median(v) if v else float("nan"), "min": v[0] if v else float("nan"),
            "max": v[-1] if v else float("nan"), "iqr": iqr, "n": len(v)}


def fmt_rate(values: Sequence[float], unit: str) -> str:
    """'median unit (min..max, IQR x, n=k)'."""
    d = describe(values)
    return (f"{d['median']:.3g} {unit} (min {d['min']:.3g}, max {d['max']:.3g}, IQR {d['iqr']:.2g}, "
            f"n={d['n']})")


class Timer:
    """``with Timer(device) as t: ...``; afterwards ``t.seconds`` (wall clock, GPU work
    synchronised) and ``t.cpu_seconds`` (CPU time of this process, all threads: less
    sensitive than wall clock to other jobs on a shared machine)."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.seconds = self.cpu_seconds = float("nan")

    def __enter__(self) -> "Timer":
        sync(self.device)
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self._t0
        self.cpu_seconds = time.process_time() - self._c0
