"""IDOL association at inference: online, frame by frame (IDOL, Wu et al. ECCV 2022, Sec. 3.2).

The frozen frame detector's detections of each frame (cached class logits, mask embeddings
and frame queries of its last layer) are linked to the tracks in a memory bank by the
embeddings of the IDOL head (:mod:`genvis.model.idol_head`). Per frame
(:meth:`IDOLTracker.step`):

1. candidates: detections whose class score (softmax without no-object, max over classes)
   exceeds ``score_threshold``, in decreasing score order;
2. duplicate removal: a candidate whose mask IoU with a higher-scoring kept one exceeds
   ``nms_threshold`` is dropped (IDOL's mask NMS before matching);
3. matching against the memory bank:

   * ``embeddings`` (IDOL): bi-softmax ``f = (softmax_rows(E M^T) + softmax_cols(E M^T)) / 2``
     of the detections' embeddings E against the tracks' memory embeddings M; in score
     order each detection takes its best track if ``f > match_threshold``, and that track
     is then closed to the others;
   * ``multi_cue`` (MaskTrack R-CNN style; supplement Table 1 rows 1-2): per detection
     ``log p`` over [new, tracks] with ``p = softmax([0, E_i M^T])``, plus ``cue_iou`` x
     the mask IoU with the track's last mask and ``cue_class`` x [same class]; the best
     option wins, greedily in score order ("new" or a track not yet taken);

4. unmatched detections above ``new_track_threshold`` start new tracks
   (``init_threshold`` while the memory is empty);
5. memory bank: per track the embeddings of its last ``memory_frames`` (T) matched frames.
   With ``temporal`` (the temporally weighted softmax of Sec. 3.2) the memory embedding is
   their weighted mean with weights ``tau + t / n`` for the t-th of the n stored
   embeddings, oldest first (:func:`temporal_weights`; the supplement's defaults tau = 0.5,
   T = 3): the latest frames count most, but an instance that was occluded still matches
   through its older appearances. Without it the memory embedding is a momentum average
   ``(1 - momentum) m + momentum e`` (IDOL's public tracker). A track unmatched for
   ``max_absence`` frames leaves the memory.

Video outputs: each track is one prediction; its score is the mean detection score over its
frames, its class the score-weighted vote of its detections' classes; the ``top_k`` best
tracks are kept. As in clip inference (:mod:`genvis.infer.inference`) there are two passes:
tracking keeps only (track, query, score, class) per frame; masks of the kept tracks are then
recomputed frame by frame at the original size and RLE-encoded into a spool, so memory does
not grow with the video length.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch.nn import functional as F
from tqdm import tqdm

from genvis.errors import InputError
from genvis.model.idol_head import IDOLModel
from genvis.utils.matching import mask_iou

FIELDS = ("frame_queries", "class_logits", "mask_embeddings", "mask_features")


def _clips(source: Any, video_id: int, n: int, fields: tuple, layers: slice | None = None) -> Iterator[tuple]:
    """(start, stop, {field: float tensor}) for consecutive chunks of ``n`` frames of a clip source."""
    if hasattr(source, "iter_clips"):
        yield from source.iter_clips(video_id, n, fields=fields, layers=layers)
        return
    length = source.length(video_id)
    for s in range(0, length, n):
        e = min(s + n, length)
        yield s, e, source.read_clip(video_id, s, e, fields=fields, layers=layers)


def _finite(source: Any, video_id: int, name: str, x: torch.Tensor, s: int, e: int) -> None:
    if not torch.isfinite(x).all():
        raise InputError(str(getattr(source, "path", "clip source")),
                         f"non-finite values (NaN/Inf) in {name} of video {video_id}, frames {s}..{e - 1}")


def _sizes(source: Any, video_id: int, dataset: Any | None, grid: tuple[int, int]) -> tuple:
    """((H, W) original, (h, w) resized, (Hp, Wp) padded) of a video; InputError when the cache
    and the annotation file disagree on the original size."""
    attrs = dict(source.video_attrs(video_id)) if hasattr(source, "video_attrs") else {}
    padded = tuple(attrs.get("padded_size", (4 * grid[0], 4 * grid[1])))
    resized = tuple(attrs.get("resized_size", padded))
    original = tuple(attrs.get("original_size", padded))
    if dataset is not None:
        v = dataset.video(video_id)
        if "original_size" in attrs and tuple(original) != (v.height, v.width):
            raise InputError(str(getattr(source, "path", "clip source")),
                             f"video {video_id}: cached original size {tuple(original)} differs from the "
                             f"annotation file's {(v.height, v.width)}")
        original = (v.height, v.width)
    return tuple(int(x) for x in original), tuple(int(x) for x in resized), tuple(int(x) for x in padded)


def temporal_weights(n: int, tau: float) -> torch.Tensor:
    """Weights of the temporally weighted memory: ``tau + t / n`` for t = 1..n (oldest first).

    Returns:
        float [n] (unnormalised).
    """
    return tau + torch.arange(1, n + 1, dtype=torch.float32) / n


def bisoftmax(embeds: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """IDOL's bi-softmax matching score.

    Args:
        embeds: float [N, D] detections. memory: float [M, D] tracks.

    Returns:
        float [N, M] ``(softmax over tracks + softmax over detections) / 2`` of ``embeds @ memory.T``.
    """
    sim = embeds @ memory.T
    return (sim.softmax(dim=1) + sim.softmax(dim=0)) / 2


@dataclass
class Track:
    """One track of the memory bank."""

    id: int
    embeds: deque
    ema: torch.Tensor
    last_mask: torch.Tensor
    label: int
    last_frame: int


@dataclass
class IDOLTracker:
    """Online IDOL association of one video (module docstring).

    Args:
        settings: :class:`genvis.train.idol_config.IDOLSettings` (matching, thresholds, memory).
    """

    settings: Any
    tracks: dict = field(default_factory=dict)
    next_id: int = 0
    frame: int = -1

    def memory(self) -> tuple[list[Track], torch.Tensor | None]:
        """(tracks in the memory, float [M, D] their memory embeddings, or None when empty)."""
        tracks = list(self.tracks.values())
        if not tracks:
            return tracks, None
        s = self.settings
        rows = []
        for t in tracks:
            if s.temporal:
                e = torch.stack(list(t.embeds))
                w = temporal_weights(e.shape[0], s.tau).to(e)
                rows.append((e * w[:, None]).sum(0) / w.sum())
            else:
                rows.append(t.ema)
        return tracks, torch.stack(rows)

    def step(self, embeds: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
             masks: torch.Tensor) -> list[int]:
        """Associate one frame's detections.

        Args:
            embeds: float [Q, D] embeddings. scores: float [Q] class scores in [0, 1].
            labels: long [Q] classes. masks: bool [Q, h, w] hard masks (any common grid).

        Returns:
            per detection its track id, -1 for detections not tracked (below threshold,
            duplicates, unmatched and too weak to start a track).
        """
        s = self.settings
        self.frame += 1
        q = scores.shape[0]
        ids = [-1] * q
        order = [i for i in scores.argsort(descending=True).tolist() if float(scores[i]) > s.score_threshold]
        kept: list[int] = []
        if order:
            ious = mask_iou(masks[order], masks[order])
            for a, i in enumerate(order):
                if all(float(ious[a, order.index(j)]) <= s.nms_threshold for j in kept):
                    kept.append(i)
        tracks, memory = self.memory()
        if kept and memory is not None:
            e = embeds[kept]
            if s.matching == "embeddings":
                f = bisoftmax(e, memory.to(e))
                for a, i in enumerate(kept):
                    conf, j = f[a].max(0)
                    if float(conf) > s.match_threshold:
                        ids[i] = tracks[int(j)].id
                        f[:, int(j)] = 0.0
            else:
                logp = torch.cat([e.new_zeros(len(kept), 1), e @ memory.to(e).T], dim=1).log_softmax(1)
                last = torch.stack([t.last_mask for t in tracks]).to(masks.device)
                cue = s.cue_iou * mask_iou(masks[kept], last)
                same = (labels[kept][:, None] == torch.tensor([t.label for t in tracks], device=labels.device)[None])
                total = logp[:, 1:] + cue + s.cue_class * same.float()
                taken: set[int] = set()
                for a, i in enumerate(kept):
                    free = [j for j in range(len(tracks)) if j not in taken]
                    if not free:
                        break
                    j = max(free, key=lambda j: float(total[a, j]))
                    if float(total[a, j]) > float(logp[a, 0]):
                        ids[i] = tracks[j].id
                        taken.add(j)
        threshold = s.init_threshold if memory is None else s.new_track_threshold
        for i in kept:
            if ids[i] == -1 and float(scores[i]) > threshold:
                ids[i] = self.next_id
                self.next_id += 1
        self._update(ids, embeds, labels, masks)
        return ids

    def _update(self, ids: list[int], embeds: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor) -> None:
        s = self.settings
        for i, tid in enumerate(ids):
            if tid < 0:
                continue
            e = embeds[i].detach().cpu()
            t = self.tracks.get(tid)
            if t is None:
                self.tracks[tid] = Track(tid, deque([e], maxlen=s.memory_frames), e, masks[i].cpu(),
                                         int(labels[i]), self.frame)
            else:
                t.embeds.append(e)
                t.ema = (1 - s.momentum) * t.ema + s.momentum * e
                t.last_mask, t.label, t.last_frame = masks[i].cpu(), int(labels[i]), self.frame
        for tid in [tid for tid, t in self.tracks.items() if self.frame - t.last_frame >= s.max_absence]:
            del self.tracks[tid]


def _frame_detections(model: IDOLModel, clip: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Per frame of a clip: (embeds [t, Q, D], scores [t, Q], labels [t, Q], mask logits [t, Q, h, w])."""
    device = model.device
    fq = clip["frame_queries"][:, -1].to(device)
    probs = clip["class_logits"].to(device).softmax(-1)[..., :-1]
    scores, labels = probs.max(-1)
    logits = model.frame_mask_logits(clip["mask_embeddings"].to(device), clip["mask_features"].to(device))
    return model(fq), scores, labels, logits


@torch.no_grad()
def track_video(model: IDOLModel, source: Any, video_id: int, settings: Any, chunk: int = 8) -> list[list[tuple]]:
    """Pass 1: run the tracker over a video.

    Returns:
        per frame a list of (track id, query index, score, class index) of its tracked detections.

    Raises:
        InputError: non-finite cached values (names the video and frames).
    """
    tracker = IDOLTracker(settings)
    frames: list[list[tuple]] = []
    for s, e, clip in _clips(source, video_id, chunk, FIELDS, layers=slice(-1, None)):
        for name in FIELDS:
            _finite(source, video_id, name, clip[name], s, e)
        embeds, scores, labels, logits = _frame_detections(model, clip)
        for i in range(e - s):
            ids = tracker.step(embeds[i], scores[i], labels[i], logits[i] > 0)
            frames.append([(tid, q, float(scores[i, q]), int(labels[i, q])) for q, tid in enumerate(ids) if tid >= 0])
    return frames


def summarise_tracks(frames: list[list[tuple]], num_classes: int, top_k: int) -> list[tuple[int, int, float]]:
    """(track id, class index, score) of the ``top_k`` best tracks: score = mean detection
    score over the track's frames, class = score-weighted vote; best first (ties: lower id)."""
    votes: dict[int, torch.Tensor] = {}
    sums: dict[int, list[float]] = {}
    for dets in frames:
        for tid, _, score, label in dets:
            votes.setdefault(tid, torch.zeros(num_classes))[label] += score
            sums.setdefault(tid, []).append(score)
    tracks = [(tid, int(votes[tid].argmax()), sum(v) / len(v)) for tid, v in sums.items()]
    tracks.sort(key=lambda x: (-x[2], x[0]))
    return tracks[: int(top_k)]


@torch.no_grad()
def track_masks(model: IDOLModel, source: Any, video_id: int, frames: list[list[tuple]], track_ids: list[int],
                dataset: Any | None = None, on_clip=None, chunk: int = 8):
    """Pass 2: masks of the kept tracks at the original size, RLE-encoded into a spool.

    Args:
        frames: from :func:`track_video`. track_ids: the kept tracks (spool order).
        on_clip: optional ``(start, stop, hard bool [k, t, H, W])`` callback (the demo).

    Returns:
        the spool (k per-frame RLE lists, empty masks where a track is absent; the caller closes it).
    """
    from genvis.data.masks import encode_masks
    from genvis.infer.spool import SegmentationSpool

    k = len(track_ids)
    slot = {tid: j for j, tid in enumerate(track_ids)}
    spool = SegmentationSpool(k)
    sizes = None
    try:
        for s, e, clip in _clips(source, video_id, chunk, ("mask_embeddings", "mask_features")):
            raw = clip["mask_features"]
            _finite(source, video_id, "mask_features", raw, s, e)
            if sizes is None:
                sizes = _sizes(source, video_id, dataset, tuple(raw.shape[-2:]))
            original, resized, padded = sizes
            hard = torch.zeros(k, e - s, *original, dtype=torch.bool)
            for i in range(e - s):
                chosen = [(slot[tid], q) for tid, q, _, _ in frames[s + i] if tid in slot]
                if not chosen:
                    continue
                qs = [q for _, q in chosen]
                me = clip["mask_embeddings"][i:i + 1, qs].to(model.device)
                logits = model.frame_mask_logits(me, raw[i:i + 1].to(model.device))      # [1, n, h, w]
                logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
                logits = logits[:, :, :resized[0], :resized[1]]
                full = F.interpolate(logits, size=original, mode="bilinear", align_corners=False)[0] > 0
                for (j, _), m in zip(chosen, full.cpu()):
                    hard[j, i] = m
            if on_clip is not None:
                on_clip(s, e, hard)
            arr = hard.numpy()
            for j in range(k):
                spool.extend(j, encode_masks(arr[j]))
    except BaseException:
        spool.close()
        raise
    return spool


def predict_video(model: IDOLModel, source: Any, video_id: int, settings: Any, top_k: int, num_classes: int,
                  dataset: Any | None = None, on_clip=None) -> tuple[list[tuple[int, int, float]], Any]:
    """Both passes over one video: ([(track id, class index, score)], RLE spool in that order)."""
    frames = track_video(model, source, video_id, settings)
    kept = summarise_tracks(frames, num_classes, top_k)
    spool = track_masks(model, source, video_id, frames, [t[0] for t in kept], dataset, on_clip)
    return kept, spool


def _video_results(model: IDOLModel, reader: Any, dataset: Any, video: Any, settings: Any, top_k: int) -> Iterator[Any]:
    from genvis.data.results import VideoResult

    kept, spool = predict_video(model, reader, video.id, settings, top_k, dataset.num_classes, dataset)
    with spool:
        for j, (_, c, score) in enumerate(kept):
            yield VideoResult(video.id, dataset.category_id(c), min(1.0, max(0.0, score)), spool.read(j))


def check_inputs(model: IDOLModel, reader: Any, dataset: Any) -> None:
    """InputError / ConfigError when the cache or the split do not fit the model: the checks
    of :func:`genvis.infer.inference.check_inputs` (coverage, classes, feature sizes; an IDOL
    model's config has the same size fields), frame by frame (N_f^eval = 1)."""
    from genvis.infer.inference import check_inputs as check_clip_inputs

    check_clip_inputs(model, reader, dataset, 1)


def write_idol_inference(model: IDOLModel, reader: Any, dataset: Any, out: Any, settings: Any, top_k: int = 20,
                         progress: bool = True, resume_key: dict | None = None) -> int:
    """IDOL inference over every video of ``dataset``, streamed into the results json ``out``.

    Args:
        settings: IDOLSettings (matching, temporal weighting, thresholds).
        resume_key: as :func:`genvis.infer.inference.write_inference` (finished videos kept
            in part files; a rerun with an equal key skips them).

    Returns:
        the number of predictions written.

    Raises:
        InputError / ConfigError: see :func:`check_inputs`; non-finite cached values.
    """
    from genvis.data.results import ResultsParts, ResultsWriter

    check_inputs(model, reader, dataset)
    model.eval()
    if resume_key is None:
        with ResultsWriter(out) as w:
            for v in tqdm(dataset.videos, desc="infer idol", unit="video", disable=not progress):
                for r in _video_results(model, reader, dataset, v, settings, top_k):
                    w.add(r)
        return w.count
    parts = ResultsParts(out, resume_key)
    ids = [v.id for v in dataset.videos]
    done = parts.finished(ids)
    todo = [v for v in dataset.videos if v.id not in done]
    for v in tqdm(todo, desc="infer idol", unit="video", disable=not progress, initial=len(done), total=len(ids)):
        with parts.writer(v.id) as w:
            for r in _video_results(model, reader, dataset, v, settings, top_k):
                w.add(r)
    return parts.join(ids)


def infer_command(args: Any) -> int:
    """``genvis infer`` with an IDOL model (see :mod:`genvis.commands.infer` for the options)."""
    from genvis.cache.reader import CacheReader
    from genvis.data.results import write_results_zip
    from genvis.data.ytvis import load_vis_json
    from genvis.errors import ConfigError
    from genvis.model.idol_head import load_idol_model
    from genvis.settings import resolve_idol
    from genvis.utils.io import sha256_file

    if args.association not in (None, "idol"):
        raise ConfigError("--association", f"{args.model} is an IDOL model: only 'idol' association applies")
    if getattr(args, "workers", None) or getattr(args, "scheduler", None):   # e.g. the workflow's dask_scheduler
        import sys

        print(f"genvis infer: note: {args.model} is an IDOL model; --workers/--scheduler apply to GenVIS "
              "models only, so its videos run in this process", file=sys.stderr)
    model, meta = load_idol_model(args.model)
    settings, top_k = resolve_idol(meta["experiment"], args.idol_matching, args.idol_temporal, args.top_k,
                                   source=str(args.model))
    dataset = load_vis_json(args.annotations)
    reader = CacheReader(args.cache)
    model.to(args.device)
    resume_key = None if args.no_resume else {
        "model_sha256": sha256_file(args.model), "annotations_sha256": sha256_file(args.annotations),
        "cache_provenance": reader.provenance, "top_k": top_k, "association": "idol",
        "idol": settings.to_dict()}
    count = write_idol_inference(model, reader, dataset, args.out, settings, top_k,
                                 progress=not args.no_progress, resume_key=resume_key)
    if args.zip:
        write_results_zip(args.out, args.zip)
    print(f"wrote {args.out} ({count} predictions, {len(dataset.videos)} videos, association idol, "
          f"matching {settings.matching}, temporal {'on' if settings.temporal else 'off'})")
    return 0


def run_idol_demo(video: Any, detector_path: Any, model_path: Any, out_dir: Any, top_k: int | None = None,
                  score_threshold: float = 0.3, max_frames: int | None = None, device: str = "cpu",
                  progress: bool = True) -> dict[str, Any]:
    """``genvis demo`` with an IDOL model: detector in the loop, IDOL tracks, overlay video.

    Same outputs and arguments as :func:`genvis.infer.demo.run_demo` (``results.json`` with
    video id 1, ``overlay.mp4``: each track in one colour); tracks whose score is below
    ``score_threshold`` are written to the results but not drawn.

    Raises:
        InputError: unreadable video / model files. ConfigError: the model does not fit the
            detector (hidden size, frame queries, classes) or bad settings.
    """
    from pathlib import Path

    from genvis.data.results import ResultsWriter, VideoResult
    from genvis.detector.model import FrameDetector
    from genvis.errors import ConfigError, InputError
    from genvis.infer.demo import overlay_clips
    from genvis.infer.detector_source import DetectorClipSource
    from genvis.model.idol_head import load_idol_model
    from genvis.settings import resolve_idol
    from genvis.report.overlay import colour_of

    video = Path(video)
    if not video.exists():
        raise InputError(video, "video file or frame folder not found")
    out_dir = Path(out_dir)
    detector = FrameDetector.load(detector_path)
    model, meta = load_idol_model(model_path)
    dc, mc = detector.cfg, model.cfg
    if (mc.hidden_dim, mc.num_frame_queries, mc.num_classes) != (dc.hidden_dim, dc.num_queries, dc.num_classes):
        raise ConfigError(str(model_path), f"IDOL model expects C={mc.hidden_dim}, Q_f={mc.num_frame_queries}, "
                          f"K={mc.num_classes} but the detector {detector_path} gives C={dc.hidden_dim}, "
                          f"Q_f={dc.num_queries}, K={dc.num_classes}")
    settings, k = resolve_idol(meta["experiment"], top_k=top_k, source=str(model_path))
    categories = meta.get("categories") or [{"id": i + 1, "name": f"class{i + 1}"} for i in range(mc.num_classes)]
    model.to(device).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path, overlay_path = out_dir / "results.json", out_dir / "overlay.mp4"
    with DetectorClipSource.from_video(detector, video, length=max_frames, spill_dir=True,
                                       device=device) as source, torch.no_grad():
        t = source.length(1)
        frames_ids = track_video(model, source, 1, settings)
        kept = summarise_tracks(frames_ids, mc.num_classes, k)
        drawn = [j for j, (_, _, s) in enumerate(kept) if s >= score_threshold]
        with overlay_clips(video, overlay_path, t, drawn, [colour_of(kept[j][0]) for j in drawn], "demo idol",
                           progress) as on_clip:
            spool = track_masks(model, source, 1, frames_ids, [x[0] for x in kept], None, on_clip)
    with spool, ResultsWriter(results_path) as results:
        for j, (_, c, s) in enumerate(kept):
            results.add(VideoResult(1, int(categories[c]["id"]), min(1.0, max(0.0, s)), spool.read(j)))
    return {"results": results_path, "overlay": overlay_path, "frames": t, "instances": len(drawn),
            "predictions": results.count}
