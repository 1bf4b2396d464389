"""Clip-by-clip inference of a trained GenVIS model (paper Sec. 3, appendix A.2 / Table 7).

A video is split into non-overlapping clips of N_f^eval frames (the last may be shorter;
N_f^eval is free at test time). Pass 1 runs the video modules over the clips' last-layer
frame queries, propagating the instance queries (and memory) from clip to clip -- no
heuristics -- and keeps only the per-clip class logits and mask embeddings. Video scores
(official ``Genvis.inference``): softmax over K+1 classes without no-object, max over clips
per query, top-k over (query, class). Pass 2 streams the mask features clip by clip:
mask logits of the top-k queries are upsampled to the padded input size, cropped to the
resized image, turned into probabilities (for the score factor: mean probability inside
the hard mask), resized to the original size (skipped when it is the resized size: the
identity), thresholded and RLE-encoded -- all queries and frames of a clip in one
pycocotools call -- into a spool file
(:mod:`genvis.infer.spool`) that :func:`write_inference` streams into the results json,
so peak memory does not grow with the video length.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from torch.nn import functional as F
from tqdm import tqdm

from genvis.clip_source import ClipSource, check_covers, check_finite, probe_sizes, source_name
from genvis.errors import ConfigError, InputError
from genvis.infer.config import ASSOCIATIONS
from genvis.infer.minvis import associate
from genvis.model.genvis import GenVIS

if TYPE_CHECKING:
    from genvis.data.results import ResultsParts, VideoResult
    from genvis.data.ytvis import VideoRecord, VISDataset
    from genvis.infer.spool import SegmentationSpool

#: ``(start, stop, hard bool [k, t, H, W])`` called with each clip's masks (the demo's overlay)
OnClip = Callable[[int, int, torch.Tensor], None]


@torch.no_grad()
def clip_predictions(model: GenVIS, source: ClipSource, video_id: int, n_f: int,
                     association: str = "propagate", dataset: VISDataset | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pass 1: per-clip class logits and mask embeddings of one video.

    Args:
        model: GenVIS (eval mode is set by the caller).
        source: the clip source (:class:`genvis.clip_source.ClipSource`).
        n_f: N_f^eval (>= 1).
        association: "propagate" (GenVIS), "minvis" (fresh queries per clip, Hungarian on
            prototype cosine similarity) or "oracle" (fresh queries per clip linked to the
            ground truth, :mod:`genvis.infer.oracle`; a diagnostic that needs ``dataset``
            with annotations and reads the mask features in this pass too).
        dataset: the split; required for "oracle".

    Returns:
        (class logits float [n_clips, N_q, K+1], mask embeddings float [n_clips, N_q, C]),
        on the model's device (frame queries are moved there clip by clip).

    Raises:
        ValueError: unknown association; "oracle" without ``dataset``.
        InputError: "oracle" with a ``dataset`` that has no ground truth.
    """
    if association not in ASSOCIATIONS:
        raise ValueError(f"association must be one of {ASSOCIATIONS}, got {association!r}")
    device = model.device
    state = model.initial_state(1)
    logits, embeds = [], []
    previous = None
    oracle = None
    fields: tuple[str, ...] = ("frame_queries",)
    if association == "oracle":
        from genvis.infer.oracle import OracleLinker
        if dataset is None:
            raise ValueError("oracle association needs the annotated split (dataset)")
        oracle = OracleLinker(dataset, video_id, model.cfg.num_queries)
        fields = ("frame_queries", "mask_features")
    sizes = None
    for s, e, clip in source.iter_clips(video_id, n_f, fields, layers=slice(-1, None)):
        fq = clip["frame_queries"][:, -1]   # [t, Q_f, C]
        check_finite(source, video_id, "frame_queries", fq, s, e)
        fq = fq.to(device)
        if association != "propagate":
            state = model.initial_state(1)
        out, state = model.clip_step(fq[None], state)
        lg, me, pr = out.logits[-1, 0], out.mask_embed[-1, 0], out.prototypes[0]
        if association == "minvis":
            if previous is not None:
                perm = associate(previous, pr)
                lg, me, pr = lg[perm], me[perm], pr[perm]
            previous = pr
        elif association == "oracle":
            raw = clip["mask_features"]
            check_finite(source, video_id, "mask_features", raw, s, e)
            if sizes is None:
                sizes = _sizes(source, video_id, dataset, tuple(raw.shape[-2:]))
            _, hard = clip_masks(model, me, raw, sizes)
            perm = oracle.permutation(s, e, hard, lg.softmax(-1)[:, -1], pr)
            lg, me = lg[perm], me[perm]
        logits.append(lg)
        embeds.append(me)
    return torch.stack(logits), torch.stack(embeds)


def select_topk(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Video-level top-k over (query, class).

    Args:
        logits: float [n_clips, N_q, K+1] class logits (last = no-object).
        top_k: k (clamped to N_q * K).

    Returns:
        (scores float [k] in [0, 1], query indices long [k], class indices long [k]); scores
        are the softmax probabilities without no-object, max over clips.
    """
    probs = logits.softmax(-1)[..., :-1]            # [n_clips, N_q, K]
    per_query = probs.max(dim=0).values             # [N_q, K]
    k_cls = per_query.shape[1]
    k = min(int(top_k), per_query.numel())
    scores, flat = per_query.flatten().topk(k)
    return scores, torch.div(flat, k_cls, rounding_mode="floor"), flat % k_cls


def _sizes(source: ClipSource, video_id: int, dataset: VISDataset | None, grid: tuple[int, int]) -> tuple:
    attrs = source.video_attrs(video_id)
    if dataset is not None:
        v = dataset.video(video_id)
        original = (v.height, v.width)
    else:
        original = tuple(attrs.get("original_size", (4 * grid[0], 4 * grid[1])))
    if "original_size" in attrs and tuple(attrs["original_size"]) != tuple(original):
        raise InputError(source_name(source),
                         f"video {video_id}: cached original size {tuple(attrs['original_size'])} "
                         f"differs from the annotation file's {tuple(original)}")
    padded = tuple(attrs.get("padded_size", (4 * grid[0], 4 * grid[1])))
    resized = tuple(attrs.get("resized_size", padded))
    return tuple(int(x) for x in original), tuple(int(x) for x in resized), tuple(int(x) for x in padded)


def clip_masks(model: GenVIS, mask_embed: torch.Tensor, raw: torch.Tensor,
               sizes: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask logits and hard masks of some queries on one clip.

    Args:
        mask_embed: float [k, C] mask embeddings of the queries for this clip.
        raw: float [t, C_m, h, w] raw (cached) mask features of the clip.
        sizes: (original, resized, padded) (H, W) pairs of the video (:func:`_sizes`).

    Returns:
        (logits float [k, t, H_r, W_r] upsampled to the padded size and cropped to the
        resized image; hard bool [k, t, H, W] at the original size, logit > 0), on the
        model's device.
    """
    original, resized, padded = sizes
    mf = model.project_mask_features(raw.to(model.device))
    logits = GenVIS.mask_logits(mask_embed, mf)                            # [k, t, h, w]
    logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
    logits = logits[:, :, :resized[0], :resized[1]]
    if tuple(original) == tuple(resized):   # a same-size bilinear resize is the identity: skip it
        return logits, logits > 0.0
    full = F.interpolate(logits, size=original, mode="bilinear", align_corners=False) > 0.0
    return logits, full


@torch.no_grad()
def video_masks(model: GenVIS, source: ClipSource, video_id: int, n_f: int, mask_embed: torch.Tensor,
                queries: torch.Tensor, dataset: VISDataset | None = None,
                on_clip: OnClip | None = None) -> tuple[SegmentationSpool, torch.Tensor]:
    """Pass 2: stream mask features clip by clip and encode the selected queries' masks.

    The RLEs go to a :class:`~genvis.infer.spool.SegmentationSpool` (temporary files) as
    each clip is encoded, so memory does not grow with the video length.

    Args:
        mask_embed: float [n_clips, N_q, C] from :func:`clip_predictions`.
        queries: long [k] selected query indices.
        dataset: gives the original size (else the source's ``original_size`` attr).
        on_clip: optional callback ``(start, stop, hard bool [k, t, H, W])`` (e.g. the
            demo's overlay writer).

    Returns:
        (spool: k per-frame RLE lists -- the caller closes it, mask score factor float [k]:
        mean mask probability inside the hard mask at the padded/cropped resolution).
    """
    from genvis.data.masks import encode_masks
    from genvis.infer.spool import SegmentationSpool

    device = model.device
    mask_embed, queries = mask_embed.to(device), queries.to(device)
    k = queries.shape[0]
    spool = SegmentationSpool(k)
    numerator = torch.zeros(k, device=device)
    denominator = torch.zeros(k, device=device)
    sizes = None
    try:
        for i, (s, e, clip) in enumerate(source.iter_clips(video_id, n_f, ("mask_features",))):
            raw = clip["mask_features"]
            check_finite(source, video_id, "mask_features", raw, s, e)
            if sizes is None:
                sizes = _sizes(source, video_id, dataset, tuple(raw.shape[-2:]))
            if k == 0:
                continue
            logits, full = clip_masks(model, mask_embed[i, queries], raw, sizes)
            soft = logits.sigmoid()
            hard = soft > 0.5
            numerator += (soft * hard).flatten(1).sum(1)
            denominator += hard.flatten(1).sum(1)
            full = full.cpu()
            if on_clip is not None:
                on_clip(s, e, full)
            t = full.shape[1]
            rles = encode_masks(full.numpy().reshape(k * t, *full.shape[2:]))   # one call for the clip
            for j in range(k):
                spool.extend(j, rles[j * t:(j + 1) * t])
    except BaseException:
        spool.close()
        raise
    return spool, (numerator / (denominator + 1e-6)).cpu()


def _predict(model: GenVIS, source: ClipSource, video_id: int, n_f_eval: int, top_k: int,
             dataset: VISDataset | None, association: str, on_clip: OnClip | None = None,
             ) -> tuple[list[int], list[int], list[float], SegmentationSpool]:
    """Both passes over one video: (query indices, class indices, final scores, RLE spool)."""
    logits, embeds = clip_predictions(model, source, video_id, int(n_f_eval), association, dataset)
    scores, queries, labels = (x.cpu() for x in select_topk(logits, top_k))
    spool, factor = video_masks(model, source, video_id, int(n_f_eval), embeds, queries, dataset, on_clip)
    return queries.tolist(), labels.tolist(), (scores * factor).clamp(0.0, 1.0).tolist(), spool


@contextlib.contextmanager
def _eval_mode(model: GenVIS) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _video_results(model: GenVIS, reader: ClipSource, dataset: VISDataset, video: VideoRecord, n_f_eval: int,
                   top_k: int, association: str) -> Iterator[VideoResult]:
    """One video's predictions (VideoResult with lazy spool-backed segmentations)."""
    from genvis.data.results import VideoResult

    _, labels, final, spool = _predict(model, reader, video.id, n_f_eval, top_k, dataset, association)
    with spool:
        for j, (c, sc) in enumerate(zip(labels, final)):
            yield VideoResult(video.id, dataset.category_id(c), sc, spool.read(j))


def iter_results(model: GenVIS, reader: ClipSource, dataset: VISDataset, n_f_eval: int, top_k: int = 20,
                 association: str = "propagate", progress: bool = True) -> Iterator[VideoResult]:
    """Inference over every video of ``dataset``, one prediction at a time.

    Checks the inputs first (see :func:`run_inference`), then yields
    ``genvis.data.results.VideoResult`` objects whose ``segmentations`` is a lazy iterator
    over the video's spool: consume it before asking for the next result (the spool of a
    video is deleted when the generator moves on to the next video).
    """
    check_inputs(model, reader, dataset, n_f_eval)
    with _eval_mode(model):
        for v in tqdm(dataset.videos, desc="infer", unit="video", disable=not progress):
            yield from _video_results(model, reader, dataset, v, n_f_eval, top_k, association)


def infer_video(model: GenVIS, source: ClipSource, video_id: int, n_f_eval: int, top_k: int,
                dataset: VISDataset | None = None, association: str = "propagate",
                on_clip: OnClip | None = None) -> list[dict]:
    """Predictions of one video, in memory: list of {query, label (0..K-1), score, segmentations}."""
    queries, labels, final, spool = _predict(model, source, video_id, n_f_eval, top_k, dataset, association,
                                             on_clip)
    with spool:
        segs = spool.lists()
    return [{"query": q, "label": c, "score": sc, "segmentations": sg}
            for q, c, sc, sg in zip(queries, labels, final, segs)]


def check_inputs(model: GenVIS, reader: ClipSource, dataset: VISDataset, n_f_eval: int) -> None:
    """Refuse a model, clip source and split that do not fit together (before any video).

    Raises:
        ValueError: n_f_eval < 1.
        InputError: videos of ``dataset`` missing from ``reader``; class counts differ.
        ConfigError: the model's hidden size / frame queries / mask-feature channels differ
            from the cached features'.
    """
    if int(n_f_eval) < 1:
        raise ValueError(f"N_f^eval must be >= 1, got {n_f_eval}")
    check_covers(reader, dataset)
    if model.cfg.num_classes != dataset.num_classes:
        raise InputError(dataset.path, f"the model has {model.cfg.num_classes} "
                         f"classes but the annotation file {dataset.num_classes}")
    if dataset.videos:
        sizes = probe_sizes(reader, dataset.videos[0].id)
        mine = {"hidden_dim": model.cfg.hidden_dim, "num_frame_queries": model.cfg.num_frame_queries,
                "mask_feature_dim": model.cfg.mask_feature_dim}
        bad = {k: (v, sizes[k]) for k, v in mine.items() if sizes[k] != v}
        if bad:
            raise ConfigError(source_name(reader),
                              "the model does not fit these features: " + ", ".join(
                                  f"{k} model={a} features={b}" for k, (a, b) in bad.items()))


def run_inference(model: GenVIS, reader: ClipSource, dataset: VISDataset, n_f_eval: int, top_k: int = 20,
                  association: str = "propagate", progress: bool = True) -> list[VideoResult]:
    """Inference over every video of ``dataset``, all results in memory.

    For long videos or many videos prefer :func:`write_inference`, which streams the
    results to disk and keeps memory flat.

    Args:
        model: trained GenVIS.
        reader: the clip source (:class:`genvis.clip_source.ClipSource`: the cache, the
            detector in the loop, ...).
        dataset: the split (VISDataset); gives video ids, original sizes, category ids.
        n_f_eval: N_f^eval >= 1. top_k: predictions per video.
        association: "propagate", "minvis" or "oracle" (:func:`clip_predictions`).

    Returns:
        list of ``genvis.data.results.VideoResult``.

    Raises:
        InputError: videos missing from the reader, NaN features, size mismatch.
        ConfigError: the model's hidden size / frame queries differ from the reader's.
        ValueError: n_f_eval < 1.
    """
    from genvis.data.results import VideoResult

    return [VideoResult(r.video_id, r.category_id, r.score, list(r.segmentations))
            for r in iter_results(model, reader, dataset, n_f_eval, top_k, association, progress)]


def write_inference(model: GenVIS, reader: ClipSource, dataset: VISDataset, n_f_eval: int,
                    out: str | os.PathLike, top_k: int = 20,
                    association: str = "propagate", progress: bool = True,
                    resume_key: dict | None = None) -> int:
    """Inference over every video of ``dataset``, streamed into the results json ``out``.

    Same arguments and errors as :func:`run_inference`; the file is written atomically
    (nothing under ``out`` on an error) and peak memory does not grow with the video length
    or the number of videos.

    Args:
        resume_key: None (one pass), or a json-able description of the run (model and
            annotation hashes, N_f^eval, top-k, association...): each finished video is
            then kept in a part file (:class:`genvis.data.results.ResultsParts`, beside
            ``out``), a rerun with an equal key skips the finished videos, a different key
            discards them, and the parts are joined into ``out`` (same bytes as one pass)
            and removed at the end.

    Returns:
        the number of predictions written.
    """
    from genvis.data.results import ResultsParts, ResultsWriter

    if resume_key is None:
        with ResultsWriter(out) as w:
            for r in iter_results(model, reader, dataset, n_f_eval, top_k, association, progress):
                w.add(r)
        return w.count
    check_inputs(model, reader, dataset, n_f_eval)
    parts = ResultsParts(out, resume_key)
    ids = [v.id for v in dataset.videos]
    done = parts.finished(ids)
    if parts.discarded and progress:
        print(f"{out}: discarded {parts.discarded} finished video(s) of a run with other settings or inputs")
    if done and progress:
        print(f"resuming {out}: {len(done)} of {len(ids)} videos already done")
    with _eval_mode(model):
        todo = [v for v in dataset.videos if v.id not in done]
        for v in tqdm(todo, desc="infer", unit="video", disable=not progress, initial=len(done), total=len(ids)):
            write_video_part(model, reader, dataset, v, n_f_eval, top_k, association, parts)
    return parts.join(ids)


def write_video_part(model: GenVIS, reader: ClipSource, dataset: VISDataset, video: VideoRecord, n_f_eval: int,
                     top_k: int, association: str, parts: ResultsParts) -> int:
    """One video's predictions into its part file of ``parts``
    (:class:`genvis.data.results.ResultsParts`), whole or not at all.

    The model must be in eval mode and the inputs checked (:func:`check_inputs`); used by
    :func:`write_inference` and by the tasks of :mod:`genvis.cluster`.

    Returns:
        the number of predictions of the video.
    """
    with parts.writer(video.id) as w:
        for r in _video_results(model, reader, dataset, video, n_f_eval, top_k, association):
            w.add(r)
    return w.count
