"""Training the frame detector on a dataset's frames, and its frame-level mask AP.

The official detector is trained on COCO and the target dataset; neither is reachable here,
so ``genvis train-detector`` trains the Mask2Former on the frames of a VIS split, each frame
an independent image (Mask2Former, Cheng et al. CVPR 2022, Sec. 3 and 4):

* Hungarian matching (scipy ``linear_sum_assignment``) on class + mask BCE + Dice costs,
* loss = 2 * CE (no-object weight 0.1) + 5 * mask BCE + 5 * Dice, masks compared on
  ``num_points`` sampled points (importance sampling, oversample 3, ratio 0.75), with deep
  supervision on every decoder layer. The matcher and loss are transformers' Mask2Former
  implementation (``Mask2FormerForUniversalSegmentation`` with ``mask_labels``).
* AdamW (backbone lr scaled by ``backbone_lr_multiplier``), step decay, gradient clipping.

Checkpoints (``<out>.state.pt``: weights, optimizer, iteration, RNG states) are written every
``checkpoint_every`` iterations; ``--resume`` continues exactly (same samples, same points).
Evaluation: COCO-style mask AP over frames (pycocotools ``COCOeval``, iouType ``segm``).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from genvis.detector.config import DetectorConfig
from genvis.detector.model import FrameDetector
from genvis.detector.preprocess import ImageSizes, masks_to_original, preprocess_frames
from genvis.errors import ConfigError, InputError
from genvis.utils.io import run_origin


@dataclass
class TrainDetectorConfig:
    """Detector training options (the ``train:`` mapping of a detector YAML).

    Attributes:
        iterations: optimisation steps.
        batch_size: frames per step.
        lr: AdamW learning rate (Mask2Former: 1e-4); weight_decay (0.05).
        backbone_lr_multiplier: backbone lr factor (0.1 in Mask2Former).
        lr_decay_at: fractions of ``iterations`` where lr is multiplied by 0.1.
        warmup_iterations: linear warm-up steps.
        grad_clip: max gradient norm (full model), 0 disables.
        num_points: sampled points per mask for loss and matching (12544 in Mask2Former;
            fewer for small frames).
        hflip: random horizontal flip augmentation.
        scale_jitter: random factor range for the training shortest side, e.g. [0.8, 1.2]
            (1.0 = off); the longest side is capped by ``max_size`` * the factor.
        checkpoint_every: iterations between resumable checkpoints.
        seed: seeds sampling, augmentation and point sampling.
        max_frames_per_video: use at most this many evenly spaced frames per video (0 = all).
        eval_top_k: detections kept per frame for AP.
    """

    iterations: int = 2000
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_multiplier: float = 0.1
    lr_decay_at: list[float] = None  # type: ignore[assignment]
    warmup_iterations: int = 0
    grad_clip: float = 0.01
    num_points: int = 12544
    hflip: bool = True
    scale_jitter: list[float] = None  # type: ignore[assignment]
    checkpoint_every: int = 200
    seed: int = 0
    max_frames_per_video: int = 0
    eval_top_k: int = 20

    def __post_init__(self) -> None:
        if self.lr_decay_at is None:
            self.lr_decay_at = [0.9]
        if self.scale_jitter is None:
            self.scale_jitter = [1.0, 1.0]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | os.PathLike | None = None) -> "TrainDetectorConfig":
        """Build and validate from a mapping. Raises ConfigError naming ``source: train.<key>``."""
        where = f"{source}: train" if source else "train"
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(where, f"unknown keys {unknown}; known: {sorted(known)}")
        cfg = cls(**dict(data))
        for key in ("iterations", "batch_size", "num_points", "checkpoint_every"):
            v = getattr(cfg, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{where}.{key}", f"must be a positive integer, got {v!r}")
        for key in ("lr", "weight_decay", "backbone_lr_multiplier", "grad_clip"):
            v = getattr(cfg, key)
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"{where}.{key}", f"must be a non-negative number, got {v!r}")
        if not (isinstance(cfg.scale_jitter, list) and len(cfg.scale_jitter) == 2
                and 0 < cfg.scale_jitter[0] <= cfg.scale_jitter[1]):
            raise ConfigError(f"{where}.scale_jitter", f"must be [low, high] with 0 < low <= high, got {cfg.scale_jitter!r}")
        if not all(isinstance(f, (int, float)) and 0 < f <= 1 for f in cfg.lr_decay_at):
            raise ConfigError(f"{where}.lr_decay_at", f"must be fractions in (0, 1], got {cfg.lr_decay_at!r}")
        return cfg


# ----------------------------------------------------------------------------- data

@dataclass
class FrameSample:
    """One training/eval frame: video id, frame index and its instances (annotation ids)."""

    video_id: int
    frame: int


def frame_samples(dataset, max_frames_per_video: int = 0, require_instances: bool = True) -> list[FrameSample]:
    """Frames of a dataset as samples (frames without any instance skipped if required)."""
    samples = []
    for v in dataset.videos:
        anns = dataset.annotations_of(v.id)
        idx = list(range(v.length))
        if max_frames_per_video and v.length > max_frames_per_video:
            idx = sorted(set(np.linspace(0, v.length - 1, max_frames_per_video).round().astype(int).tolist()))
        for t in idx:
            if require_instances and not any(a.segmentations[t] is not None for a in anns):
                continue
            samples.append(FrameSample(v.id, t))
    return samples


def frame_targets(dataset, video, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Instance masks and contiguous class indices of one frame.

    Returns:
        ``(masks bool [n, H, W], classes int64 [n])`` (n may be 0); crowd and empty
        instances skipped.
    """
    from genvis.data.masks import decode_rle, to_rle

    masks, classes = [], []
    for a in dataset.annotations_of(video.id):
        seg = a.segmentations[frame]
        if seg is None or a.iscrowd:
            continue
        m = decode_rle(to_rle(seg, video.height, video.width), video.height, video.width)
        if m.any():
            masks.append(m)
            classes.append(dataset.category_index(a.category_id))
    if not masks:
        return np.zeros((0, video.height, video.width), bool), np.zeros((0,), np.int64)
    return np.stack(masks), np.asarray(classes, np.int64)


def _target_to_input(masks: np.ndarray, sizes: ImageSizes, flip: bool) -> torch.Tensor:
    """GT masks [n, H, W] -> float [n, Hp, Wp] on the padded network input (nearest resize)."""
    m = torch.from_numpy(masks).float()[None]
    if sizes.resized != sizes.original:
        m = F.interpolate(m, size=sizes.resized, mode="nearest")
    out = m.new_zeros((1, m.shape[1], *sizes.padded))
    out[..., : sizes.resized[0], : sizes.resized[1]] = m
    if flip:
        out[..., : sizes.resized[1]] = out[..., : sizes.resized[1]].flip(-1)
    return out[0]


def _make_batch(dataset, image_root: Path, samples: list[FrameSample], cfg: DetectorConfig,
                tcfg: TrainDetectorConfig, gen: torch.Generator):
    from genvis.data.frames import read_frame

    pixels, mask_labels, class_labels = [], [], []
    lo, hi = tcfg.scale_jitter
    factor = lo + (hi - lo) * float(torch.rand((), generator=gen))
    min_size = max(32, int(round(cfg.min_size * factor)))
    max_size = max(min_size, int(round(cfg.max_size * factor)))
    for s in samples:
        video = dataset.video(s.video_id)
        frame = read_frame(image_root / video.file_names[s.frame])
        if frame.shape[:2] != (video.height, video.width):
            raise InputError(image_root / video.file_names[s.frame],
                             f"frame size {frame.shape[0]}x{frame.shape[1]} differs from the "
                             f"{video.height}x{video.width} in the annotations")
        flip = tcfg.hflip and bool(torch.rand((), generator=gen) < 0.5)
        x, sizes = preprocess_frames(frame, cfg, min_size, max_size)
        if flip:
            x[..., : sizes.resized[1]] = x[..., : sizes.resized[1]].flip(-1)
        masks, classes = frame_targets(dataset, video, s.frame)
        pixels.append(x[0])
        mask_labels.append(_target_to_input(masks, sizes, flip))
        class_labels.append(torch.from_numpy(classes))
    # frames of different sizes: pad to the largest (bottom/right zeros, as detectron2)
    hp = max(p.shape[-2] for p in pixels)
    wp = max(p.shape[-1] for p in pixels)
    batch = pixels[0].new_zeros((len(pixels), 3, hp, wp))
    for i, p in enumerate(pixels):
        batch[i, :, : p.shape[-2], : p.shape[-1]] = p
        m = mask_labels[i]
        mask_labels[i] = F.pad(m, (0, wp - m.shape[-1], 0, hp - m.shape[-2]))
    return batch, mask_labels, class_labels


# ----------------------------------------------------------------------------- training

def _optimizer(det: FrameDetector, tcfg: TrainDetectorConfig) -> torch.optim.AdamW:
    backbone = det.m2f.model.pixel_level_module.encoder
    bb_ids = {id(p) for p in backbone.parameters()}
    bb = [p for p in det.parameters() if id(p) in bb_ids and p.requires_grad]
    rest = [p for p in det.parameters() if id(p) not in bb_ids and p.requires_grad]
    return torch.optim.AdamW([{"params": rest, "lr": tcfg.lr},
                              {"params": bb, "lr": tcfg.lr * tcfg.backbone_lr_multiplier}],
                             lr=tcfg.lr, weight_decay=tcfg.weight_decay)


def _lr_factor(it: int, tcfg: TrainDetectorConfig) -> float:
    f = 0.1 ** sum(it >= int(d * tcfg.iterations) for d in tcfg.lr_decay_at)
    if tcfg.warmup_iterations and it < tcfg.warmup_iterations:
        f *= (it + 1) / tcfg.warmup_iterations
    return f


def _freeze_backbone_norms(det: FrameDetector) -> None:
    """Keep the backbone's BatchNorm statistics fixed (detectron2 FrozenBN) when fine-tuning
    from pretrained weights with small batches."""
    for m in det.m2f.model.pixel_level_module.encoder.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def state_path(out: str | os.PathLike) -> Path:
    """Path of the resumable training state written beside ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".state.pt")


def _check_training_data(dataset, cfg: DetectorConfig, tcfg: TrainDetectorConfig) -> list[FrameSample]:
    """Step 1: the frames to train on. Raises InputError (no annotations, class count
    mismatch, no frame with an instance)."""
    src = getattr(dataset, "path", None)
    if not getattr(dataset, "has_annotations", True) or dataset.annotations is None:
        raise InputError(src, "has no annotations; cannot train a detector on it")
    if dataset.num_classes != cfg.num_classes:
        raise InputError(src, f"has {dataset.num_classes} categories but the detector config says "
                         f"num_classes {cfg.num_classes}")
    samples = frame_samples(dataset, tcfg.max_frames_per_video)
    if not samples:
        raise InputError(src, "no frame with an annotated instance to train on")
    return samples


def _build_detector(cfg: DetectorConfig, tcfg: TrainDetectorConfig, device: str | torch.device,
                    init: str | os.PathLike | None) -> tuple[FrameDetector, torch.optim.AdamW]:
    """Step 2: the detector in training mode (seeded; optionally from ``init``, then with frozen
    backbone norms), its loss's point count, and its optimizer."""
    torch.manual_seed(tcfg.seed)
    det = FrameDetector(cfg)
    if init is not None:
        det.load_state_dict(FrameDetector.load(init).state_dict())
    det.m2f.criterion.num_points = tcfg.num_points
    det.m2f.criterion.matcher.num_points = tcfg.num_points
    det.to(device).train()
    if init is not None:
        _freeze_backbone_norms(det)
    return det, _optimizer(det, tcfg)


def _save_state(spath: Path, det: FrameDetector, opt: torch.optim.Optimizer, gen: torch.Generator,
                cfg: DetectorConfig, tcfg: TrainDetectorConfig, it: int, origin: dict[str, Any]) -> None:
    """The resumable state after ``it`` iterations (weights, optimizer, RNGs, the run's
    origin: :func:`genvis.utils.io.run_origin`), atomically."""
    from genvis.utils.io import atomic_path

    with atomic_path(spath) as tmp:
        torch.save({"config": cfg.to_dict(), "train_config": asdict(tcfg), "iteration": it,
                    "model": det.state_dict(), "optimizer": opt.state_dict(),
                    "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "origin": origin}, tmp)


def _resume_state(spath: Path, det: FrameDetector, opt: torch.optim.Optimizer, gen: torch.Generator,
                  cfg: DetectorConfig, tcfg: TrainDetectorConfig, mode: bool | str = True,
                  origin: dict[str, Any] | None = None) -> int:
    """Step 3: restore weights, optimizer and RNGs; return the iteration to continue from.

    ``mode`` True (``--resume``): the state must exist and match the configs. ``"interrupted"``
    (``--resume-interrupted``, the workflow's): continue only a state of the same configs and
    ``origin`` (initialisation, annotation file); without one, or with another, start afresh
    (0; one line on stderr when a stale state is passed over).

    Raises:
        InputError: (mode True) no state file or one written with another config; (both)
            a corrupt file.
    """
    if not spath.is_file():
        if mode == "interrupted":
            return 0
        raise InputError(spath, "no training state to resume from")
    from genvis.utils.torch_io import load_weights_only

    st = load_weights_only(spath, "training state (delete it to start afresh)")
    same_config = st.get("config") == cfg.to_dict() and st.get("train_config") == asdict(tcfg)
    if mode == "interrupted":
        if not same_config or st.get("origin") != origin:
            print(f"{spath}: written by another run (other settings or data); starting afresh", file=sys.stderr)
            return 0
    elif not same_config:
        raise InputError(spath, "training state was written with another config; "
                         "delete it or train without --resume")
    det.load_state_dict(st["model"])
    opt.load_state_dict(st["optimizer"])
    gen.set_state(st["generator"])
    torch.set_rng_state(st["torch_rng"])
    print(f"{spath}: continuing from iteration {int(st['iteration'])}", file=sys.stderr)
    return int(st["iteration"])


def _train_step(det: FrameDetector, opt: torch.optim.Optimizer, batch, it: int, tcfg: TrainDetectorConfig,
                device: str | torch.device, src: Any) -> float:
    """Step 4, once per iteration: set the scheduled lr, forward with the Mask2Former loss,
    backward, clip, step. Returns the loss. Raises InputError when the loss is not finite."""
    pixels, mask_labels, class_labels = batch
    for g, base in zip(opt.param_groups, (tcfg.lr, tcfg.lr * tcfg.backbone_lr_multiplier)):
        g["lr"] = base * _lr_factor(it, tcfg)
    out_m2f, _ = det.run(pixels.to(device), [m.to(device) for m in mask_labels],
                         [c.to(device) for c in class_labels])
    loss = out_m2f.loss
    if not torch.isfinite(loss):
        raise InputError(src, f"training diverged (loss {loss.item()}) at iteration {it}; lower lr")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if tcfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(det.parameters(), tcfg.grad_clip)
    opt.step()
    return float(loss.item())


def train_detector(
    dataset,
    image_root: str | os.PathLike,
    cfg: DetectorConfig,
    tcfg: TrainDetectorConfig,
    out: str | os.PathLike,
    resume: bool | str = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    init: str | os.PathLike | None = None,
    stop_after: int | None = None,
) -> FrameDetector:
    """Train a :class:`FrameDetector` on the frames of ``dataset``; writes ``out`` (atomic).

    Steps: the training frames (:func:`_check_training_data`), the detector and optimizer
    (:func:`_build_detector`), the resumed state (:func:`_resume_state`), the iterations
    (:func:`_make_batch`, :func:`_train_step`, :func:`_save_state` every
    ``checkpoint_every``), then the detector file.

    Args:
        dataset: a ``VISDataset`` with annotations; K must equal ``cfg.num_classes``.
        image_root: directory of its ``file_names``.
        cfg, tcfg: detector and training configuration.
        out: the detector file (``FrameDetector.save``); the resumable state goes to
            ``<out>.state.pt`` and is removed when training completes.
        resume: continue from ``<out>.state.pt`` (exactly: weights, optimizer, RNG): True,
            or ``"interrupted"`` (only a state of this very run, else start afresh; see
            :func:`_resume_state`).
        device: ``cpu`` or ``cuda``.
        init: optional genvis detector file to start from (e.g. an imported checkpoint).
        stop_after: stop (after checkpointing) once this many iterations are done, without
            writing ``out``: used to test resume.

    Returns:
        the trained detector (eval mode).

    Raises:
        InputError: no annotations, class count mismatch, no frame with an instance,
            ``--resume`` without (or with an incompatible) state file, unreadable frames.
    """
    from tqdm import tqdm

    src = getattr(dataset, "path", None)
    samples = _check_training_data(dataset, cfg, tcfg)
    image_root = Path(image_root)
    det, opt = _build_detector(cfg, tcfg, device, init)
    gen = torch.Generator().manual_seed(tcfg.seed)
    spath = state_path(out)
    origin = run_origin(dataset, None, init=init)
    start = _resume_state(spath, det, opt, gen, cfg, tcfg, resume, origin) if resume else 0

    bar = tqdm(total=tcfg.iterations, initial=start, desc="train-detector", unit="it",
               disable=not progress, dynamic_ncols=True)
    ema = None
    t0 = time.perf_counter()
    try:
        for it in range(start, tcfg.iterations):
            idx = torch.randint(len(samples), (tcfg.batch_size,), generator=gen).tolist()
            batch = _make_batch(dataset, image_root, [samples[i] for i in idx], cfg, tcfg, gen)
            loss = _train_step(det, opt, batch, it, tcfg, device, src)
            ema = loss if ema is None else 0.9 * ema + 0.1 * loss
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}")
            done = it + 1
            if done % tcfg.checkpoint_every == 0 or (stop_after is not None and done >= stop_after):
                _save_state(spath, det, opt, gen, cfg, tcfg, done, origin)
            if stop_after is not None and done >= stop_after and done < tcfg.iterations:
                det.eval()
                return det
    finally:
        bar.close()
    det.eval()
    det.save(out, extra={"train": {"iterations": tcfg.iterations, "seconds": time.perf_counter() - t0,
                                   "annotations": str(src)}})
    spath.unlink(missing_ok=True)
    return det


# ----------------------------------------------------------------------------- evaluation

def predict_frame_instances(det: FrameDetector, frames: np.ndarray, top_k: int = 20,
                            device: str | torch.device = "cpu", min_size: int | None = None,
                            max_size: int | None = None):
    """Mask2Former instance inference on frames of one video.

    Scores are softmax class probabilities without no-object; the top ``top_k`` (query, class)
    pairs are kept; each score is multiplied by the mean mask probability inside its hard
    mask (Mask2Former ``instance_inference``).

    Args:
        frames: uint8 ``[T, H, W, 3]``.

    Returns:
        list over frames of ``(scores float [k], classes int [k], masks bool [k, H, W])``.
    """
    x, sizes = preprocess_frames(frames, det.cfg, min_size, max_size)
    results = []
    with torch.no_grad():
        out = det(x.to(device))
    K = det.cfg.num_classes
    for b in range(x.shape[0]):
        probs = out.class_logits[b].softmax(-1)[:, :K]  # [Q, K]
        k = min(top_k, probs.numel())
        scores, flat = probs.flatten().topk(k)
        q = flat // K
        cls = flat % K
        logits = masks_to_original(out.mask_logits[b, q], sizes)  # [k, H, W]
        prob = logits.sigmoid()
        hard = prob > 0.5
        mask_score = (prob * hard).flatten(1).sum(1) / hard.flatten(1).sum(1).clamp(min=1)
        results.append(((scores * mask_score).cpu().numpy(), cls.cpu().numpy(), hard.cpu().numpy()))
    return results


def evaluate_frame_ap(det: FrameDetector, dataset, image_root: str | os.PathLike, top_k: int = 20,
                      batch_size: int = 8, device: str | torch.device = "cpu",
                      progress: bool = True, max_frames_per_video: int = 0) -> dict[str, float]:
    """COCO-style frame-level mask AP of the detector on a VIS split (pycocotools COCOeval,
    through :func:`genvis.evaluate.frame_ap.coco_mask_ap`).

    Every annotated frame is an image; every instance present in it a ground-truth object.

    Returns:
        dict with ``AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100`` in percent (0-100;
        -1 where COCOeval has no ground truth for that size range) and ``frames``.

    Raises:
        InputError: the split has no annotations; frames unreadable.
    """
    from pycocotools import mask as mask_utils
    from tqdm import tqdm

    from genvis.data.frames import read_frames
    from genvis.evaluate.frame_ap import coco_mask_ap

    src = getattr(dataset, "path", None)
    if dataset.annotations is None:
        raise InputError(src, "has no annotations; cannot compute frame AP")
    det = det.to(device).eval()
    image_root = Path(image_root)
    images, gts, dts = [], [], []
    samples = frame_samples(dataset, max_frames_per_video, require_instances=False)
    by_video: dict[int, list[int]] = {}
    for s in samples:
        by_video.setdefault(s.video_id, []).append(s.frame)
    bar = tqdm(total=len(samples), desc="frame AP", unit="frame", disable=not progress, dynamic_ncols=True)
    for vid, idx in by_video.items():
        video = dataset.video(vid)
        for b in range(0, len(idx), batch_size):
            chunk = idx[b:b + batch_size]
            frames = read_frames(image_root, video.file_names, chunk)
            preds = predict_frame_instances(det, frames, top_k, device)
            for t, (scores, classes, masks) in zip(chunk, preds):
                image_id = len(images) + 1
                images.append({"id": image_id, "height": video.height, "width": video.width})
                gm, gc = frame_targets(dataset, video, t)
                for m, c in zip(gm, gc):
                    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                    gts.append({"id": len(gts) + 1, "image_id": image_id, "category_id": int(c) + 1,
                                "segmentation": rle, "area": float(mask_utils.area(rle)),
                                "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": 0})
                for s, c, m in zip(scores, classes, masks):
                    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                    dts.append({"image_id": image_id, "category_id": int(c) + 1, "segmentation": rle,
                                "score": float(s)})
            bar.update(len(chunk))
    bar.close()
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"]
    if not gts:
        raise InputError(src, "no annotated instance in the evaluated frames")
    if not dts:
        return {**{k: 0.0 for k in keys}, "frames": len(images)}
    stats = coco_mask_ap(images, gts, dts, [(i + 1, str(i)) for i in range(dataset.num_classes)])
    res = {k: -1.0 if v is None else v for k, v in zip(keys, stats)}
    res["frames"] = len(images)
    return res
