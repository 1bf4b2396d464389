"""Stage-two training loop: GenVIS video modules trained from cached frame queries.

Per iteration: draw ``batch_videos`` samples of N_v consecutive clips (N_f frames each),
treat the frame queries of each of the last ``detector_layers`` detector layers of each
video as its own sequence, run the clips in order (queries and memory propagated), compute
the clip losses with the configured label assignment carried across clips, sum them, and
take one AdamW step (lr step decay, total-norm gradient clipping).

Outputs beside ``out`` (MODEL.pt):
``<stem>.losses.csv`` (one row per iteration), ``<stem>.resume.pt`` (model, optimizer,
schedule position, every RNG state, loss rows -- resuming reproduces an uninterrupted run
bit for bit on the same machine) and finally ``MODEL.pt`` itself, all written atomically.

:func:`train` is three named steps: :func:`build_model` (sizes from the source, heads /
model initialisation), :class:`TrainingState` (optimizer, RNGs, loss rows, carried slots;
owns save / load of the resume checkpoint) and :func:`run_steps` (the iteration loop). The
clips of the next batch are read by a background thread while the current step runs
(:class:`BatchPrefetcher`; not with ``carry_state``, whose next windows depend on the step).
"""

from __future__ import annotations

import math
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from genvis.model.checkpoint import save_model
from genvis.clip_source import ClipSource, check_covers, check_finite, probe_sizes, source_name
from genvis.errors import ConfigError, InputError
from genvis.model.config import GenVISConfig
from genvis.model.genvis import GenVIS
from genvis.settings import apply_training_overrides
from genvis.train.config import ExperimentConfig
from genvis.train.carry import CarrySampler, SlotState, batch_state, split_state
from genvis.train.criterion import ClipTargets, SetCriterion
from genvis.train.sampler import ClipSampler, Sample
from genvis.train.targets import DatasetTargets, VideoTargets
from genvis.utils.device import resolve_device
from genvis.utils.io import atomic_path, atomic_write_text, csv_text, run_origin

LOSS_COLUMNS = ("loss_ce", "loss_mask", "loss_dice", "loss_sim")
CSV_COLUMNS = ("iteration", "lr", "loss") + LOSS_COLUMNS


def side_paths(out: str | os.PathLike) -> dict[str, Path]:
    """Files written beside MODEL.pt: ``losses`` (CSV) and ``resume`` (checkpoint)."""
    out = Path(out)
    return {"losses": out.parent / f"{out.stem}.losses.csv",
            "resume": out.parent / f"{out.stem}.resume.pt"}


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; LayerNorm and embedding parameters get no weight decay (Mask2Former's
    ``WEIGHT_DECAY_NORM = WEIGHT_DECAY_EMBED = 0``)."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if isinstance(module, (nn.LayerNorm, nn.Embedding)) else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def learning_rate(it: int, base: float, decay_steps: list[int], gamma: float, warmup: int) -> float:
    """Step decay: ``base * gamma^(#decay steps <= it)``, linear warm-up over ``warmup`` iterations."""
    lr = base * gamma ** sum(1 for s in decay_steps if it >= s)
    if warmup > 0 and it < warmup:
        lr *= (it + 1) / warmup
    return lr


def optimizer_step(loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer, clip_grad_norm: float,
                   source: str, it: int, videos: Sequence[int]) -> float:
    """One optimisation step on ``loss`` (stage two and IDOL training): refuse a non-finite
    loss, then zero the gradients, back-propagate, clip the gradient norm (if ``clip_grad_norm``
    > 0) and step.

    Args:
        loss: float scalar tensor of the iteration.
        source: the clip source's name, for the error; it, videos: the iteration and its videos.

    Returns:
        The loss as a Python float.

    Raises:
        InputError: the loss is NaN or infinite (naming the source, iteration and videos).
    """
    value = float(loss.detach())
    if not math.isfinite(value):
        raise InputError(source, f"loss became {value} at iteration {it} (videos {list(videos)}); lower train.lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    optimizer.step()
    return value


@dataclass
class LoadedBatch:
    """The inputs of one iteration, read from the clip source (CPU tensors).

    Attributes:
        batch: the samples (video id, N_v x N_f frame indices).
        frame_queries: float [B, N_v * N_f, L, Q_f, C], the last L detector layers.
        mask_features: per video, raw mask features float [N_v * N_f, C_m, h, w].
        targets: per video, :class:`VideoTargets` of the sampled frames (bool masks).
        valid: per video, bool [N_v, N]: instance visible in the clip.
    """

    batch: list[Sample]
    frame_queries: torch.Tensor
    mask_features: list[torch.Tensor]
    targets: list[VideoTargets]
    valid: list[torch.Tensor]


def read_frames(source: ClipSource, video_id: int, frames: Sequence[int], layers: int) -> dict[str, torch.Tensor]:
    """Frame queries (last ``layers`` detector layers) and mask features of the given frames
    (in order, repeats allowed). Only those frames are read when the source has
    ``read_frames`` (:class:`~genvis.cache.reader.CacheReader`); otherwise the span is read
    with ``read_clip`` and indexed."""
    fields = ("frame_queries", "mask_features")
    if hasattr(source, "read_frames"):
        return source.read_frames(video_id, frames, fields=fields, layers=slice(-layers, None))
    lo, hi = frames[0], frames[-1] + 1
    clip = source.read_clip(video_id, lo, hi, fields=fields, layers=slice(-layers, None))
    index = [f - lo for f in frames]
    if index == list(range(hi - lo)):
        return clip
    return {k: v[index] for k, v in clip.items()}


def load_batch(source: ClipSource, targets: Callable[[int], VideoTargets], batch: list[Sample], layers: int,
               n_v: int, keep_all: bool = False) -> LoadedBatch:
    """Read one batch (frame queries, mask features, targets) on the CPU.

    Args:
        keep_all: keep every instance of the video (``carry_state``) instead of those
            visible in the sample.

    Raises:
        InputError: NaN / infinite features (names the video and frames).
    """
    fqs, mfs, tgts, valid = [], [], [], []
    for vid, frames in batch:
        clip = read_frames(source, vid, frames, layers)
        fq, mf = clip["frame_queries"], clip["mask_features"]
        check_finite(source, vid, "frame_queries", fq, frames[0], frames[-1] + 1)
        check_finite(source, vid, "mask_features", mf, frames[0], frames[-1] + 1)
        vt = targets(vid).select(frames, keep_all=keep_all)
        fqs.append(fq)
        mfs.append(mf)
        tgts.append(vt)
        n, w, h, wd = vt.masks.shape
        valid.append(vt.masks.reshape(n, n_v, (w // n_v) * h * wd).any(2).T.contiguous())   # [N_v, N]
    return LoadedBatch(list(batch), torch.stack(fqs), mfs, tgts, valid)


class BatchPrefetcher:
    """Reads batches on one background thread (zarr decoding and target selection overlap
    the training step). ``submit`` returns a future; errors surface at ``result()``."""

    def __init__(self, source: ClipSource, targets: Callable[[int], VideoTargets], layers: int, n_v: int):
        self.source, self.targets, self.layers, self.n_v = source, targets, layers, n_v
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genvis-train-read")

    def submit(self, batch: list[Sample], keep_all: bool = False) -> Future:
        """Start reading ``batch``."""
        return self.pool.submit(load_batch, self.source, self.targets, batch, self.layers, self.n_v, keep_all)

    def close(self) -> None:
        """Stop the thread (pending reads are cancelled)."""
        self.pool.shutdown(wait=True, cancel_futures=True)


def sample_losses(model: GenVIS, criterion: SetCriterion, cfg: ExperimentConfig, source: ClipSource,
                  targets: Callable[[int], VideoTargets], batch: list[Sample], layers: int,
                  generator: torch.Generator, carried: list[SlotState | None] | None = None,
                  loaded: LoadedBatch | None = None,
                  ) -> tuple[torch.Tensor, dict[str, float], list[SlotState] | None]:
    """Total loss of one batch of samples (sum over clips, decoder layers and terms).

    Args:
        batch: :data:`~genvis.train.sampler.Sample` (video id, N_v x N_f frame indices) per
            video. layers: detector layers used (L).
        carried: with ``train.carry_state``, per slot the state carried from the previous
            iteration (None: start of a video); instances are then indexed over the whole
            video. None: every sample starts fresh (the paper).
        loaded: the batch already read (:func:`load_batch`, e.g. by the prefetcher); read
            here when None.

    Returns:
        (scalar loss with graph, {term: float} summed over clips and layers, the slots'
        states after this iteration when ``carried`` was given, else None).
    """
    tc = cfg.train
    device = model.device
    if loaded is None:
        loaded = load_batch(source, targets, batch, layers, tc.n_v, keep_all=carried is not None)
    b = len(batch)
    fq = loaded.frame_queries.to(device)                                 # [B, W, L, Q_f, C]
    fq = fq.permute(2, 0, 1, 3, 4).reshape(layers * b, fq.shape[1], *fq.shape[3:])
    elem_video = [e % b for e in range(layers * b)]                     # sequence e = layer * B + video
    mfs = [m.to(device) for m in loaded.mask_features]                  # raw: projected via the embeddings
    projection = model.mask_projection()
    tgts = [t.to(device) for t in loaded.targets]
    n_dec = model.cfg.dec_layers if tc.deep_supervision else 1
    if carried is None:
        state = model.initial_state(layers * b)
        assignments = [[{} for _ in range(layers * b)] for _ in range(n_dec)]
    else:
        state, assignments = batch_state(model, carried, layers, n_dec)
    terms: dict[str, list[torch.Tensor]] = {col: [] for col in LOSS_COLUMNS}
    encoded = model.encode_clips(fq, tc.n_f)                            # all clips in one batch
    for c in range(tc.n_v):
        sl = slice(c * tc.n_f, (c + 1) * tc.n_f)
        out, state = model.clip_step(fq[:, sl], state, all_layers=tc.deep_supervision, encoded=encoded[:, sl])
        clip_targets = [ClipTargets(vt.labels, vt.masks[:, sl], valid[c])
                        for vt, valid in zip(tgts, loaded.valid)]
        losses, assignments = criterion(out, [m[sl] for m in mfs], elem_video, clip_targets, c,
                                        assignments, generator, projection=projection)
        for k, v in losses.items():
            terms[next(col for col in LOSS_COLUMNS if k.startswith(col))].append(v)
    sums = {k: torch.stack(v).sum() for k, v in terms.items() if v}
    total = torch.stack(list(sums.values())).sum()
    values = torch.stack([v.detach() for v in sums.values()]).tolist()  # one transfer per iteration
    parts = dict(zip(sums, values))
    if carried is None:
        return total, parts, None
    return total, parts, split_state(state, assignments, batch, layers)


def build_model(cfg: ExperimentConfig, source: ClipSource, dataset: Any, init_heads: str | os.PathLike | None,
                init_model: str | os.PathLike | None,
                device: torch.device) -> tuple[GenVIS, GenVISConfig, int]:
    """The model to train, sized from the clip source, seeded with ``train.seed``,
    initialised from ``init_heads`` / ``init_model`` when given, on ``device`` in train mode.

    Returns:
        (model, its :class:`GenVISConfig`, L = detector layers used).
    """
    tc = cfg.train
    sizes = probe_sizes(source, dataset.videos[0].id)
    layers = min(tc.detector_layers, sizes["layers"])
    mcfg = cfg.model_config(dataset.num_classes, sizes["hidden_dim"], sizes["num_frame_queries"],
                            sizes["mask_feature_dim"])
    torch.manual_seed(tc.seed)
    model = GenVIS(mcfg)
    if init_heads is not None:
        from genvis.model.checkpoint import init_heads_from_detector

        init_heads_from_detector(model, init_heads)
    if init_model is not None:
        from genvis.model.checkpoint import init_from_model

        _, fresh = init_from_model(model, init_model)
        if fresh:
            print(f"--init-model {init_model}: {len(fresh)} parameter(s) not in it keep their "
                  f"initialisation ({', '.join(sorted({n.rsplit('.', 2)[0] for n in fresh}))})")
    model.to(device).train()
    return model, mcfg, layers


RESUME_MODES = (False, True, "interrupted")


def load_resume(path: Path, experiment: dict[str, Any], mode: bool | str,
                origin: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Read the resume checkpoint ``<stem>.resume.pt`` of a run, if it should be continued.

    Args:
        path: the checkpoint (absent: None is returned, the run starts afresh).
        experiment: ``ExperimentConfig.to_dict()`` of the run about to start.
        mode: False: never resume. True (``genvis train --resume``): continue it; the
            iterations may differ (extends or shortens a run), anything else of the experiment
            must match. ``"interrupted"`` (``--resume-interrupted``, what the workflow
            passes): continue it only if the same run wrote it -- same experiment including
            seed and iterations, same ``origin`` (initialisation, annotations, cache) -- and
            stopped before the end; any other checkpoint is stale (an earlier run with other
            settings or data): the run starts afresh (one line on stderr) and overwrites it at
            its first checkpoint.
        origin: :func:`run_origin` of the run about to start (``"interrupted"``).

    Returns:
        the checkpoint's dict (model, optimizer, RNG states, rows, iteration, ...), or None.

    Raises:
        ConfigError: ``mode`` True and the checkpoint belongs to another experiment;
            ``mode`` not one of :data:`RESUME_MODES`.
        InputError: the file is not a readable weights-only checkpoint.
    """
    if mode not in RESUME_MODES:
        raise ConfigError("resume", f"{mode!r} is not one of {RESUME_MODES}")
    if not mode or not path.is_file():
        return None
    from genvis.utils.torch_io import load_weights_only

    state = load_weights_only(path, "resume checkpoint (delete it to start afresh)")
    saved = dict(state.get("experiment") or {})
    if mode == "interrupted":
        same = (saved == experiment and state.get("origin") == origin
                and int(state.get("iteration", 0)) < int(experiment["train"]["iterations"]))
        if not same:
            print(f"{path}: written by another run (other settings or data, or finished); starting afresh",
                  file=sys.stderr)
            return None
        print(f"{path}: continuing the interrupted run from iteration {int(state['iteration'])}", file=sys.stderr)
        return state
    mine = dict(experiment)
    saved["train"] = {k: v for k, v in (saved.get("train") or {}).items() if k != "iterations"}
    mine["train"] = {k: v for k, v in mine["train"].items() if k != "iterations"}
    if saved != mine:
        raise ConfigError(str(path), "resume checkpoint was written for a different "
                          "experiment configuration; delete it or use the same config")
    return state


class TrainingState:
    """Everything an exact resume needs besides the data: model, optimizer, the torch /
    sampling / point RNGs, the loss rows, the next iteration and the carried slots.

    Args:
        cfg: the experiment. model: the model being trained (its weights are part of the
            state). carry: the :class:`CarrySampler` with ``carry_state``, else None.
        paths: :func:`side_paths` of MODEL.pt.
        origin: :func:`run_origin` of the run, saved in the checkpoint (resume mode
            ``"interrupted"`` compares it).
    """

    def __init__(self, cfg: ExperimentConfig, model: GenVIS, carry: CarrySampler | None, paths: dict[str, Path],
                 origin: dict[str, Any] | None = None):
        tc = cfg.train
        self.origin = origin
        self.experiment = cfg.to_dict()
        self.model = model
        self.optimizer = build_optimizer(model, tc.lr, tc.weight_decay)
        self.sample_gen = torch.Generator().manual_seed(tc.seed + 1)
        self.point_gen = torch.Generator().manual_seed(tc.seed + 2)
        self.carry = carry
        self.paths = paths
        self.rows: list[dict[str, float]] = []
        self.start = 0

    def load(self, mode: bool | str = True) -> None:
        """Continue from the resume checkpoint (see :func:`load_resume` for ``mode``)."""
        state = load_resume(self.paths["resume"], self.experiment, mode, self.origin)
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])   # moves the moments to the model's device
        torch.set_rng_state(state["torch_rng"])
        self.sample_gen.set_state(state["sample_rng"])
        self.point_gen.set_state(state["point_rng"])
        self.rows = list(state["rows"])
        self.start = int(state["iteration"])
        if self.carry is not None:
            self.carry.load_state_dict(state["carry"])

    def save(self, iteration: int, sample_rng: torch.Tensor) -> None:
        """Write the resume checkpoint and the loss CSV after ``iteration`` iterations.

        Args:
            sample_rng: the sampling generator's state after drawing the batches of those
                iterations (the prefetcher may have drawn the next one already).
        """
        payload = {"iteration": iteration, "experiment": self.experiment, "model": self.model.state_dict(),
                   "optimizer": self.optimizer.state_dict(), "schedule": {"iteration": iteration},
                   "torch_rng": torch.get_rng_state(), "sample_rng": sample_rng,
                   "point_rng": self.point_gen.get_state(), "rows": self.rows,
                   "carry": None if self.carry is None else self.carry.state_dict(), "origin": self.origin}
        with atomic_path(self.paths["resume"]) as tmp:
            torch.save(payload, tmp)
        self.write_losses()

    def write_losses(self) -> None:
        """The loss rows as CSV (atomic)."""
        atomic_write_text(self.paths["losses"], csv_text(self.rows, CSV_COLUMNS))


def run_steps(cfg: ExperimentConfig, ts: TrainingState, criterion: SetCriterion, source: ClipSource,
              targets: Callable[[int], VideoTargets], sampler: ClipSampler, layers: int,
              progress: bool = True) -> None:
    """The iterations from ``ts.start`` to ``train.iterations``: batch, losses, backward,
    clipping, AdamW step, loss row, periodic checkpoint. Without ``carry_state`` the next
    batch is drawn and read in the background while the current step runs; the batches
    drawn, and so the run, are the same as reading them in the loop.

    Raises:
        InputError: the loss is not finite (names the videos).
    """
    tc = cfg.train
    model, optimizer = ts.model, ts.optimizer
    prefetch = BatchPrefetcher(source, targets, layers, tc.n_v)
    pending: tuple[list[Sample], Future] | None = None
    bar = tqdm(range(ts.start, tc.iterations), initial=ts.start, total=tc.iterations, disable=not progress,
               desc=f"train {cfg.name}", unit="it", dynamic_ncols=True)
    try:
        for it in bar:
            lr = learning_rate(it, tc.lr, tc.decay_steps, tc.decay_gamma, tc.warmup_iters)
            for g in optimizer.param_groups:
                g["lr"] = lr
            carried, loaded = None, None
            if ts.carry is not None:
                batch, carried = ts.carry.next_batch(ts.sample_gen)
            else:
                if pending is None:
                    batch = sampler.sample(tc.batch_videos, ts.sample_gen)
                    pending = (batch, prefetch.submit(batch))
                batch, future = pending
                pending = None
            sample_rng = ts.sample_gen.get_state()       # after this iteration's batch
            if ts.carry is None:
                if it + 1 < tc.iterations:                # read the next batch during this step
                    nxt = sampler.sample(tc.batch_videos, ts.sample_gen)
                    pending = (nxt, prefetch.submit(nxt))
                loaded = future.result()
            loss, parts, reached = sample_losses(model, criterion, cfg, source, targets, batch, layers,
                                                 ts.point_gen, carried, loaded)
            loss_value = optimizer_step(loss, model, optimizer, tc.clip_grad_norm, source_name(source), it,
                                        [v for v, _ in batch])
            if ts.carry is not None:
                ts.carry.update(reached)
            row = {"iteration": it + 1, "lr": lr, "loss": loss_value}
            row.update({k: float(parts.get(k, 0.0)) for k in LOSS_COLUMNS})
            ts.rows.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            if (it + 1) % tc.checkpoint_every == 0 or it + 1 == tc.iterations:
                ts.save(it + 1, sample_rng)
    finally:
        bar.close()
        prefetch.close()


def train(cfg: ExperimentConfig, cache: ClipSource, dataset: Any, out: str | os.PathLike, resume: bool = False,
          iterations: int | None = None, targets: Callable[[int], VideoTargets] | None = None,
          progress: bool = True, init_heads: str | os.PathLike | None = None,
          init_model: str | os.PathLike | None = None, device: str | torch.device = "cpu",
          seed: int | None = None) -> Path:
    """Train GenVIS from a clip source and write MODEL.pt.

    Args:
        cfg: the experiment (validated).
        cache: the clip source (:class:`genvis.clip_source.ClipSource`: the cache reader,
            the detector in the loop, tensors in memory).
        dataset: the annotated training split (``VISDataset``); its videos are sampled.
        out: MODEL.pt path.
        resume: continue from ``<stem>.resume.pt`` if it exists: True (same experiment
            required, iterations may differ) or ``"interrupted"`` (only a checkpoint of this
            very run, else start afresh); see :func:`load_resume`.
        iterations: overrides ``cfg.train.iterations``; ``decay_steps`` are scaled by the
            same factor (rounded), so a shorter run keeps the schedule's shape.
        targets: video id -> :class:`VideoTargets` (default: decoded from ``dataset`` on the
            source's geometry).
        progress: show a tqdm bar.
        init_heads: a frame detector file (DET.pt) whose class head, mask-embedding MLP and
            mask projection initialise the model's heads
            (:func:`genvis.model.checkpoint.init_heads_from_detector`).
        init_model: a trained stage-two MODEL.pt (e.g. the N_v = 1 VITA-style model) whose
            weights initialise every parameter of the same name and shape -- the paper's
            fine-tuning protocol (:func:`genvis.model.checkpoint.init_from_model`); applied after
            ``init_heads``.
        device: torch device of the model and the loss computation (``cpu``, ``cuda``,
            ``cuda:1``). Clips are read on the CPU and moved; the sampling and point RNGs
            stay on the CPU, so a run draws the same clips and points on any device.
            MODEL.pt and the resume checkpoint load on any device.
        seed: overrides ``cfg.train.seed`` (initialisation, sampler and point sampling), so
            one experiment yaml trains several seeds; MODEL.pt records the seed used.

    Returns:
        the path of MODEL.pt.

    Raises:
        InputError: videos missing from the source, NaN features (names the video), no
            video long enough, no annotations; ``device`` is CUDA and none is available.
        ConfigError: invalid settings (also ``iterations`` < 1, ``seed`` < 0); resume
            checkpoint of a different experiment (or seed).
        AssignmentError: more instances than instance queries.
    """
    out = Path(out)
    apply_training_overrides(cfg, iterations, seed)
    tc = cfg.train
    if getattr(cfg, "idol", None) is not None:  # IDOL embedding head (genvis.train.idol_train)
        if init_model is not None:
            raise ConfigError("--init-model", "not supported for IDOL experiments")
        from genvis.train.idol_train import train_idol

        return train_idol(cfg, cache, dataset, out, resume=resume, targets=targets, progress=progress,
                          init_heads=init_heads, device=device)
    device = resolve_device(device)
    check_covers(cache, dataset)
    if not dataset.videos:
        raise InputError(getattr(dataset, "path", None), "the annotation file has no videos")
    targets = targets or DatasetTargets(dataset, cache)
    sampler = ClipSampler({v.id: cache.length(v.id) for v in dataset.videos}, tc.n_v, tc.n_f,
                          source=str(getattr(dataset, "path", None) or "training split"),
                          frame_range=tc.frame_range)
    carry = CarrySampler(sampler, tc.batch_videos) if tc.carry_state else None
    model, mcfg, layers = build_model(cfg, cache, dataset, init_heads, init_model, device)
    origin = run_origin(dataset, cache, heads=init_heads, model=init_model)
    ts = TrainingState(cfg, model, carry, side_paths(out), origin)
    ts.load(resume)
    run_steps(cfg, ts, SetCriterion(tc, mcfg.num_classes), cache, targets, sampler, layers, progress)
    ts.write_losses()
    categories = [{"id": c.id, "name": c.name} for c in getattr(dataset, "categories", [])]
    model.cpu()  # MODEL.pt holds CPU tensors
    save_model(out, model, ts.experiment, extra={
        "iterations": tc.iterations, "categories": categories,
        "provenance": dict(getattr(cache, "provenance", None) or {}),
        "detector_layers": layers, "init_heads": None if init_heads is None else str(init_heads),
        "init_model": None if init_model is None else str(init_model)})
    return out
