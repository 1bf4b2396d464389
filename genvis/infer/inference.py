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
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
from torch.nn import functional as F
from tqdm import tqdm

from genvis.clip_source import ClipSource, check_covers, check_finite, probe_sizes, source_name
from genvis.errors import ConfigError, InputError
from genvis.infer.config import ASSOCIATIONS
from genvis.infer.minvis import associate
from genvis.model.genvis import GenVIS, VideoState

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


#: videos whose pass 1 runs as one batch by default (``write_inference``, ``genvis infer``)
VIDEOS_AT_ONCE = 8


#: frames read at once (a multiple of N_f, at least one clip) and the most bytes (float32) a
#: read block may hold: fewer, larger reads (a zarr read has a fixed cost on top of its chunks)
BLOCK_FRAMES = 32
BLOCK_BYTES = 16 << 20


def _clips_in_blocks(source: ClipSource, video_id: int, n_f: int, field: str, layers: slice | None = None,
                     frame_bytes: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(start, stop, field tensor [stop - start, ...])`` of the clips of ``n_f`` frames of one
    video (the last may be shorter), read in blocks of whole clips (up to :data:`BLOCK_FRAMES`
    frames and :data:`BLOCK_BYTES`; one clip at least) with the source's read-ahead; the
    clips are views of their block. ``frame_bytes``: the size of one frame of ``field`` in
    float32 (an estimate is enough); None reads frame 0 to find it.

    Raises:
        InputError: as the source's ``read_clip``; non-finite values (naming the clip's frames).
    """
    length = source.length(video_id)
    if frame_bytes is None:
        frame_bytes = 4 * source.read_clip(video_id, 0, 1, fields=(field,), layers=layers)[field].numel()
    per_clip = max(1, int(frame_bytes) * n_f)
    block = n_f * max(1, min(BLOCK_FRAMES // n_f, BLOCK_BYTES // per_clip))
    for s, e, chunk in source.iter_clips(video_id, min(block, length), (field,), layers=layers):
        data = chunk[field]
        suspect = not torch.isfinite(data.sum())   # finite values sum to a finite number (unless it overflows)
        for a in range(s, e, n_f):
            clip = data[a - s:min(a + n_f, e) - s]
            if suspect:
                check_finite(source, video_id, field, clip, a, min(a + n_f, e))
            yield a, min(a + n_f, e), clip


def _state_rows(state: VideoState, start: int, stop: int) -> VideoState:
    """Sequences ``start:stop`` of a batched state (views; the sequences are independent)."""
    return VideoState(state.output[start:stop], state.memory.rows(start, stop))


@torch.no_grad()
def clip_predictions_many(model: GenVIS, source: ClipSource, video_ids: Sequence[int], n_f: int,
                          association: str = "propagate") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pass 1 of several videos at once: :func:`clip_predictions` of each, with the clip steps
    of the videos batched (the i-th clips of all videos that have one go through the model
    together), so the per-operation cost of the small video modules is paid once per step,
    not once per video (issue 19).

    The videos advance in lockstep, longest first: at step i the videos with an i-th clip
    form a prefix of that order, those with a full clip of ``n_f`` frames first; a shorter
    last clip is its own batch, and a video leaves the batch after its last clip. The
    sequences of a batch do not interact (per-sequence attention, per-row linear layers and
    memory; the IPM attends one sequence at a time), and on CPU the results equal the one-video
    computation bit for bit (``tests/test_infer_batched.py``).

    Args:
        model, source, n_f: as for :func:`clip_predictions`.
        video_ids: the videos (any lengths; each one's frame queries are read in blocks of
            clips with the source's read-ahead).
        association: "propagate" or "minvis" ("oracle" runs :func:`clip_predictions` video
            by video).

    Returns:
        per video, in the order of ``video_ids``: (class logits float [n_clips, N_q, K+1],
        mask embeddings float [n_clips, N_q, C]) on the model's device, as :func:`clip_predictions`.

    Raises:
        ValueError: unknown association. Errors of the source (missing video, damaged chunk,
        non-finite values), as :func:`clip_predictions`.
    """
    if association not in ASSOCIATIONS:
        raise ValueError(f"association must be one of {ASSOCIATIONS}, got {association!r}")
    if association == "oracle":
        return [clip_predictions(model, source, v, n_f, association) for v in video_ids]
    device = model.device
    lengths = [source.length(v) for v in video_ids]
    order = sorted(range(len(video_ids)), key=lambda i: -lengths[i])   # stable: ties keep their order
    n_clips = [-(-lengths[i] // n_f) for i in order]
    fq_bytes = 4 * model.cfg.num_frame_queries * model.cfg.hidden_dim
    clips = [_clips_in_blocks(source, video_ids[i], n_f, "frame_queries", slice(-1, None), fq_bytes) for i in order]
    per_video: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [[] for _ in order]
    state = model.initial_state(len(order)) if association == "propagate" else None
    try:
        step, active = 0, sum(n > 0 for n in n_clips)
        while active:
            fqs = []
            for b in range(active):
                fqs.append(next(clips[b])[2][:, -1])   # [t, Q_f, C]
            nxt = None
            a = 0
            while a < active:   # runs of equal clip length: the full clips first, then shorter last clips
                z = a + 1
                while z < active and fqs[z].shape[0] == fqs[a].shape[0]:
                    z += 1
                run_state = model.initial_state(z - a) if state is None else _state_rows(state, a, z)
                out, new_state = model.clip_step(torch.stack(fqs[a:z]).to(device), run_state,
                                                 read_per_sequence=True)
                if a == 0:
                    nxt = new_state
                for b in range(a, z):
                    per_video[b].append((out.logits[-1, b - a], out.mask_embed[-1, b - a], out.prototypes[b - a]))
                a = z
            step += 1
            active = sum(n > step for n in n_clips)
            if state is not None and active:
                state = _state_rows(nxt, 0, active)
    finally:
        for it in clips:
            it.close()
    results: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(video_ids)
    for b, i in enumerate(order):
        logits, embeds, previous = [], [], None
        for lg, me, pr in per_video[b]:
            if association == "minvis":
                if previous is not None:
                    perm = associate(previous, pr)
                    lg, me, pr = lg[perm], me[perm], pr[perm]
                previous = pr
            logits.append(lg)
            embeds.append(me)
        results[i] = (torch.stack(logits), torch.stack(embeds))
    return results


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
    from genvis.data.masks import encode_masks_json
    from genvis.infer.spool import SegmentationSpool

    device = model.device
    k = queries.shape[0]
    queries = queries.to(device)
    selected = mask_embed.to(device)[:, queries]   # [n_clips, k, C]
    # a query selected with several classes has one mask: upsample and encode it once
    unique, inverse = torch.unique(queries, sorted=True, return_inverse=True)
    first = torch.full_like(unique, k).scatter_reduce_(0, inverse, torch.arange(k, device=device), "amin")
    spool = SegmentationSpool(k)
    numerator = torch.zeros(k, device=device)
    denominator = torch.zeros(k, device=device)
    buffers = _Buffers(device)
    sizes = None
    try:
        padded = source.video_attrs(video_id).get("padded_size")   # mask features at 1/4 of the padded input
        mf_bytes = None if padded is None else 4 * model.cfg.mask_feature_dim * (padded[0] // 4) * (padded[1] // 4)
        for i, (s, e, raw) in enumerate(_clips_in_blocks(source, video_id, n_f, "mask_features", None, mf_bytes)):
            if sizes is None:
                sizes = _sizes(source, video_id, dataset, tuple(raw.shape[-2:]))
            if k == 0:
                continue
            kept_sum, count, cols, owner = _clip_mask_stats(model, selected[i], raw, sizes, buffers, first, inverse)
            numerator += kept_sum
            denominator += count
            u, t, w, h = cols.shape
            if on_clip is not None:
                on_clip(s, e, cols.transpose(2, 3)[owner].cpu())
            texts = encode_masks_json(cols.cpu().numpy().reshape(u * t, w, h).transpose(0, 2, 1))
            for j, r in enumerate(owner.tolist()):
                spool.extend_json(j, texts[r * t:(r + 1) * t])
    except BaseException:
        spool.close()
        raise
    return spool, (numerator / (denominator + 1e-6)).cpu()


class _Buffers:
    """Work tensors reused from clip to clip (one per name and shape): pass 2 would otherwise
    allocate, and page-fault in, several fresh mask-sized tensors per clip."""

    def __init__(self, device: torch.device):
        self.device = device
        self._held: dict[tuple, torch.Tensor] = {}

    def get(self, name: str, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` and ``dtype``, the same one on every call."""
        key = (name, tuple(int(x) for x in shape), dtype)
        if key not in self._held:
            self._held[key] = torch.empty(key[1], dtype=dtype, device=self.device)
        return self._held[key]


def _clip_mask_stats(model: GenVIS, mask_embed: torch.Tensor, raw: torch.Tensor, sizes: tuple, buffers: _Buffers,
                     first: torch.Tensor, inverse: torch.Tensor,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pass 2 on one clip: the numbers of :func:`clip_masks` followed by ``soft = sigmoid(logits)``,
    ``sum(soft * (soft > 0.5))``, ``count(soft > 0.5)`` and the hard masks, bit for bit, with
    fewer passes over the masks, no fresh mask-sized tensors, and each distinct mask
    upsampled, thresholded and transposed once.

    Args:
        mask_embed: float [k, C] (rows of repeated queries are equal); raw: float
            [t, C_m, h, w]; sizes: as for :func:`clip_masks`.
        first, inverse: long [u] first row of each distinct query, long [k] row -> its
            distinct query (``torch.unique``); used when the clip's mask logits of equal
            queries are equal bit for bit (checked: else every row is its own mask).

    Returns:
        (sum of the kept probabilities float [k], their count float [k] (float32, as an int64
        count added to a float32 tensor), hard masks bool [u', t, W, H] -- transposed, so
        that each mask is a Fortran-ordered (H, W) image for pycocotools -- in a reused
        buffer: valid until the next call; long [k] the row of each prediction's mask), on
        the model's device.
    """
    original, resized, padded = sizes
    mf = model.project_mask_features(raw.to(model.device))
    logits = GenVIS.mask_logits(mask_embed, mf)                            # [k, t, h, w]
    k, t = logits.shape[:2]
    if first.shape[0] < k and torch.equal(logits, logits[first][inverse]):
        rows, owner = logits[first], inverse
    else:
        rows, owner = logits, torch.arange(k, device=logits.device)
    u = rows.shape[0]
    up = buffers.get("up", (u, t, *padded))
    torch.ops.aten.upsample_bilinear2d.out(rows, list(padded), False, None, None, out=up)   # = F.interpolate
    # the probabilities of all k rows, laid out as F.interpolate(logits) was: the same
    # sigmoid loop (its vectorised body and scalar tail round differently), so the same bits
    every = up if u == k else torch.index_select(up, 0, owner, out=buffers.get("every", (k, t, *padded)))
    soft = torch.sigmoid(every[:, :, :resized[0], :resized[1]], out=buffers.get("soft", (k, t, *resized)))
    F.threshold(soft, 0.5, 0.0, inplace=True)           # soft * (soft > 0.5): soft where > 0.5, else 0
    flat = soft.view(k, -1)
    kept_sum = flat.sum(1)
    # the kept values are 0 or in (0.5, 1]: ceil gives 0/1, whose float32 sum is exact below 2^24
    count = flat.ceil_().sum(1) if flat.shape[1] < (1 << 24) else flat.ceil_().sum(1, dtype=torch.float64).float()
    crop = up[:, :, :resized[0], :resized[1]]
    cols = buffers.get("cols", (u, t, original[1], original[0]), torch.bool)
    if tuple(original) == tuple(resized):   # a same-size bilinear resize is the identity: skip it
        torch.gt(crop.transpose(2, 3), 0.0, out=cols)
    else:
        cols.copy_((F.interpolate(crop, size=original, mode="bilinear", align_corners=False) > 0.0).transpose(2, 3))
    return kept_sum, count, cols, owner


def _predict(model: GenVIS, source: ClipSource, video_id: int, n_f_eval: int, top_k: int,
             dataset: VISDataset | None, association: str, on_clip: OnClip | None = None,
             ) -> tuple[list[int], list[int], list[float], SegmentationSpool]:
    """Both passes over one video: (query indices, class indices, final scores, RLE spool)."""
    logits, embeds = clip_predictions(model, source, video_id, int(n_f_eval), association, dataset)
    return _masks_and_scores(model, source, video_id, n_f_eval, top_k, dataset, logits, embeds, on_clip)


def _masks_and_scores(model: GenVIS, source: ClipSource, video_id: int, n_f_eval: int, top_k: int,
                      dataset: VISDataset | None, logits: torch.Tensor, embeds: torch.Tensor,
                      on_clip: OnClip | None = None) -> tuple[list[int], list[int], list[float], SegmentationSpool]:
    """Top-k selection and pass 2 of one video from its pass-1 outputs."""
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


def _spooled(dataset: VISDataset, video: VideoRecord, labels: list[int], final: list[float],
             spool: SegmentationSpool, raw: bool) -> Iterator[VideoResult]:
    """A video's predictions read back from its spool (closed when the generator ends)."""
    from genvis.data.results import VideoResult

    with spool:
        for j, (c, sc) in enumerate(zip(labels, final)):
            yield VideoResult(video.id, dataset.category_id(c), sc, spool.read_json(j) if raw else spool.read(j))


def _results_by_video(model: GenVIS, reader: ClipSource, dataset: VISDataset, videos: Sequence[VideoRecord],
                      n_f_eval: int, top_k: int, association: str, videos_at_once: int = 1,
                      raw: bool = False) -> Iterator[tuple[VideoRecord, Iterator[VideoResult]]]:
    """``(video, its predictions)`` for each of ``videos`` in order; pass 1 of up to
    ``videos_at_once`` videos runs as one batch (:func:`clip_predictions_many`), pass 2 video
    by video. Consume a video's predictions before asking for the next video (its spool is
    then deleted). ``raw``: segmentations as json text (:class:`genvis.data.results.JSONText`),
    for writers."""
    if int(videos_at_once) < 1:
        raise ValueError(f"videos_at_once must be >= 1, got {videos_at_once}")
    for g in range(0, len(videos), int(videos_at_once)):
        group = videos[g:g + int(videos_at_once)]
        passes = clip_predictions_many(model, reader, [v.id for v in group], int(n_f_eval), association) \
            if association != "oracle" else [None] * len(group)
        for video, first in zip(group, passes):
            if first is None:
                _, labels, final, spool = _predict(model, reader, video.id, n_f_eval, top_k, dataset, association)
            else:
                _, labels, final, spool = _masks_and_scores(model, reader, video.id, n_f_eval, top_k, dataset, *first)
            it = _spooled(dataset, video, labels, final, spool, raw)
            try:
                yield video, it
            finally:
                it.close()


def _video_results(model: GenVIS, reader: ClipSource, dataset: VISDataset, video: VideoRecord, n_f_eval: int,
                   top_k: int, association: str, raw: bool = False) -> Iterator[VideoResult]:
    """One video's predictions (VideoResult with lazy spool-backed segmentations)."""
    for _, results in _results_by_video(model, reader, dataset, [video], n_f_eval, top_k, association, 1, raw):
        yield from results


def iter_results(model: GenVIS, reader: ClipSource, dataset: VISDataset, n_f_eval: int, top_k: int = 20,
                 association: str = "propagate", progress: bool = True,
                 videos_at_once: int = VIDEOS_AT_ONCE, raw: bool = False) -> Iterator[VideoResult]:
    """Inference over every video of ``dataset``, one prediction at a time.

    Checks the inputs first (see :func:`run_inference`), then yields
    ``genvis.data.results.VideoResult`` objects whose ``segmentations`` is a lazy iterator
    over the video's spool: consume it before asking for the next result (the spool of a
    video is deleted when the generator moves on to the next video).

    Args:
        videos_at_once: videos whose pass 1 runs as one batch (:func:`clip_predictions_many`;
            the same results as one at a time).
        raw: segmentations as their json text (:class:`genvis.data.results.JSONText`, what
            a :class:`~genvis.data.results.ResultsWriter` copies verbatim) instead of dicts.
    """
    check_inputs(model, reader, dataset, n_f_eval)
    with _eval_mode(model):
        bar = tqdm(total=len(dataset.videos), desc="infer", unit="video", disable=not progress)
        with bar:
            for _, results in _results_by_video(model, reader, dataset, dataset.videos, n_f_eval, top_k,
                                                association, videos_at_once, raw):
                yield from results
                bar.update(1)


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
                  association: str = "propagate", progress: bool = True,
                  videos_at_once: int = VIDEOS_AT_ONCE) -> list[VideoResult]:
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
        videos_at_once: videos whose pass 1 runs as one batch (:func:`clip_predictions_many`;
            the results do not depend on it).

    Returns:
        list of ``genvis.data.results.VideoResult``.

    Raises:
        InputError: videos missing from the reader, NaN features, size mismatch.
        ConfigError: the model's hidden size / frame queries differ from the reader's.
        ValueError: n_f_eval < 1 or videos_at_once < 1.
    """
    from genvis.data.results import VideoResult

    return [VideoResult(r.video_id, r.category_id, r.score, list(r.segmentations))
            for r in iter_results(model, reader, dataset, n_f_eval, top_k, association, progress, videos_at_once)]


def write_inference(model: GenVIS, reader: ClipSource, dataset: VISDataset, n_f_eval: int,
                    out: str | os.PathLike, top_k: int = 20,
                    association: str = "propagate", progress: bool = True,
                    resume_key: dict | None = None, videos_at_once: int = VIDEOS_AT_ONCE) -> int:
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
        videos_at_once: as for :func:`run_inference`.

    Returns:
        the number of predictions written.
    """
    from genvis.data.results import ResultsParts, ResultsWriter

    if resume_key is None:
        with ResultsWriter(out) as w:
            for r in iter_results(model, reader, dataset, n_f_eval, top_k, association, progress,
                                  videos_at_once, raw=True):
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
        with tqdm(todo, desc="infer", unit="video", disable=not progress, initial=len(done), total=len(ids)) as bar:
            for video, results in _results_by_video(model, reader, dataset, todo, n_f_eval, top_k, association,
                                                    videos_at_once, raw=True):
                with parts.writer(video.id) as w:
                    for r in results:
                        w.add(r)
                bar.update(1)
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
        for r in _video_results(model, reader, dataset, video, n_f_eval, top_k, association, raw=True):
            w.add(r)
    return w.count
