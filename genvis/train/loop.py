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
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm import tqdm

from genvis.model.checkpoint import save_model
from genvis.clip_source import ClipSource, check_covers, check_finite, probe_sizes, source_name
from genvis.errors import ConfigError, InputError
from genvis.model.genvis import GenVIS
from genvis.settings import apply_training_overrides
from genvis.train.config import ExperimentConfig
from genvis.train.carry import CarrySampler, SlotState, batch_state, split_state
from genvis.train.criterion import ClipTargets, SetCriterion
from genvis.train.sampler import ClipSampler, Sample
from genvis.train.targets import DatasetTargets, VideoTargets
from genvis.utils.device import resolve_device
from genvis.utils.io import atomic_path, atomic_write_text

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


def _csv_text(rows: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r.get(k, "")) for k in CSV_COLUMNS})
    return buf.getvalue()


def sample_losses(model: GenVIS, criterion: SetCriterion, cfg: ExperimentConfig, source: ClipSource,
                  targets: Callable[[int], VideoTargets], batch: list[Sample], layers: int,
                  generator: torch.Generator, carried: list[SlotState | None] | None = None,
                  ) -> tuple[torch.Tensor, dict[str, float], list[SlotState] | None]:
    """Total loss of one batch of samples (sum over clips, decoder layers and terms).

    Args:
        batch: :data:`~genvis.train.sampler.Sample` (video id, N_v x N_f frame indices) per
            video. layers: detector layers used (L).
        carried: with ``train.carry_state``, per slot the state carried from the previous
            iteration (None: start of a video); instances are then indexed over the whole
            video. None: every sample starts fresh (the paper).

    Returns:
        (scalar loss with graph, {term: float} summed over clips and layers, the slots'
        states after this iteration when ``carried`` was given, else None).
    """
    tc = cfg.train
    window = tc.n_v * tc.n_f
    device = model.device
    fqs, projected, tgts = [], [], []
    for vid, frames in batch:
        lo, hi = frames[0], frames[-1] + 1
        clip = source.read_clip(vid, lo, hi, fields=("frame_queries", "mask_features"),
                                layers=slice(-layers, None))
        index = [f - lo for f in frames]
        fq, mf = clip["frame_queries"][index], clip["mask_features"][index]
        check_finite(source, vid, "frame_queries", fq, lo, hi)
        check_finite(source, vid, "mask_features", mf, lo, hi)
        fqs.append(fq.to(device))
        projected.append(model.project_mask_features(mf.to(device)))
        tgts.append(targets(vid).select(frames, keep_all=carried is not None).to(device))
    b = len(batch)
    fq = torch.stack(fqs)                                   # [B, W, L, Q_f, C]
    fq = fq.permute(2, 0, 1, 3, 4).reshape(layers * b, window, *fq.shape[3:])
    elem_video = [e % b for e in range(layers * b)]         # sequence e = layer * B + video
    n_dec = model.cfg.dec_layers if tc.deep_supervision else 1
    if carried is None:
        state = model.initial_state(layers * b)
        assignments = [[{} for _ in range(layers * b)] for _ in range(n_dec)]
    else:
        state, assignments = batch_state(model, carried, layers, n_dec)
    total = fq.new_zeros(())
    parts: dict[str, float] = defaultdict(float)
    for c in range(tc.n_v):
        sl = slice(c * tc.n_f, (c + 1) * tc.n_f)
        out, state = model.clip_step(fq[:, sl], state, all_layers=tc.deep_supervision)
        clip_targets = []
        for vt in tgts:
            m = vt.masks[:, sl]
            clip_targets.append(ClipTargets(vt.labels, m.float(), m.flatten(1).any(1)))
        losses, assignments = criterion(out, [p[sl] for p in projected], elem_video, clip_targets, c,
                                        assignments, generator)
        for k, v in losses.items():
            total = total + v
            parts[next(col for col in LOSS_COLUMNS if k.startswith(col))] += float(v.detach())
    if carried is None:
        return total, dict(parts), None
    return total, dict(parts), split_state(state, assignments, batch, layers)


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
        resume: continue from ``<stem>.resume.pt`` if it exists (same experiment required).
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
    device = resolve_device(device)
    check_covers(cache, dataset)
    if not dataset.videos:
        raise InputError(getattr(dataset, "path", None), "the annotation file has no videos")
    targets = targets or DatasetTargets(dataset, cache)
    sampler = ClipSampler({v.id: cache.length(v.id) for v in dataset.videos}, tc.n_v, tc.n_f,
                          source=str(getattr(dataset, "path", None) or "training split"),
                          frame_range=tc.frame_range)
    carry = CarrySampler(sampler, tc.batch_videos) if tc.carry_state else None
    sizes = probe_sizes(cache, dataset.videos[0].id)
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
    optimizer = build_optimizer(model, tc.lr, tc.weight_decay)
    criterion = SetCriterion(tc, mcfg.num_classes)
    sample_gen = torch.Generator().manual_seed(tc.seed + 1)
    point_gen = torch.Generator().manual_seed(tc.seed + 2)
    paths = side_paths(out)
    rows: list[dict[str, float]] = []
    start = 0
    experiment = cfg.to_dict()
    if resume and paths["resume"].is_file():
        from genvis.utils.torch_io import load_weights_only

        state = load_weights_only(paths["resume"], "resume checkpoint (delete it to start afresh)")
        saved = dict(state["experiment"])
        mine = dict(experiment)
        saved["train"] = {k: v for k, v in saved["train"].items() if k != "iterations"}
        mine["train"] = {k: v for k, v in mine["train"].items() if k != "iterations"}
        if saved != mine:
            raise ConfigError(str(paths["resume"]), "resume checkpoint was written for a different "
                              "experiment configuration; delete it or use the same config")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])   # moves the moments to the model's device
        torch.set_rng_state(state["torch_rng"])
        sample_gen.set_state(state["sample_rng"])
        point_gen.set_state(state["point_rng"])
        rows = list(state["rows"])
        start = int(state["iteration"])
        if carry is not None:
            carry.load_state_dict(state["carry"])

    def checkpoint(it: int) -> None:
        payload = {"iteration": it, "experiment": experiment, "model": model.state_dict(),
                   "optimizer": optimizer.state_dict(), "schedule": {"iteration": it},
                   "torch_rng": torch.get_rng_state(), "sample_rng": sample_gen.get_state(),
                   "point_rng": point_gen.get_state(), "rows": rows,
                   "carry": None if carry is None else carry.state_dict()}
        with atomic_path(paths["resume"]) as tmp:
            torch.save(payload, tmp)
        atomic_write_text(paths["losses"], _csv_text(rows))

    bar = tqdm(range(start, tc.iterations), initial=start, total=tc.iterations, disable=not progress,
               desc=f"train {cfg.name}", unit="it", dynamic_ncols=True)
    for it in bar:
        lr = learning_rate(it, tc.lr, tc.decay_steps, tc.decay_gamma, tc.warmup_iters)
        for g in optimizer.param_groups:
            g["lr"] = lr
        if carry is None:
            batch, carried = sampler.sample(tc.batch_videos, sample_gen), None
        else:
            batch, carried = carry.next_batch(sample_gen)
        loss, parts, reached = sample_losses(model, criterion, cfg, cache, targets, batch, layers, point_gen,
                                             carried)
        if not math.isfinite(float(loss.detach())):
            raise InputError(source_name(cache), f"loss became {float(loss)} at iteration {it} "
                             f"(videos {[v for v, _ in batch]}); lower train.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad_norm)
        optimizer.step()
        if carry is not None:
            carry.update(reached)
        row = {"iteration": it + 1, "lr": lr, "loss": float(loss.detach())}
        row.update({k: float(parts.get(k, 0.0)) for k in LOSS_COLUMNS})
        rows.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}")
        if (it + 1) % tc.checkpoint_every == 0 or it + 1 == tc.iterations:
            checkpoint(it + 1)
    bar.close()
    atomic_write_text(paths["losses"], _csv_text(rows))
    categories = [{"id": c.id, "name": c.name} for c in getattr(dataset, "categories", [])]
    model.cpu()  # MODEL.pt holds CPU tensors
    save_model(out, model, experiment, extra={
        "iterations": tc.iterations, "categories": categories,
        "provenance": dict(getattr(cache, "provenance", None) or {}),
        "detector_layers": layers, "init_heads": None if init_heads is None else str(init_heads),
        "init_model": None if init_model is None else str(init_model)})
    return out
