"""Segmentations of YouTube-VIS / OVIS json <-> COCO RLE <-> boolean masks (pycocotools).

A per-frame segmentation in a VIS json is one of:

* a compressed RLE ``{"size": [H, W], "counts": "<str>"}``,
* an uncompressed RLE ``{"size": [H, W], "counts": [int, ...]}``,
* polygons ``[[x0, y0, x1, y1, ...], ...]`` (pixel coordinates),
* ``None`` (JSON ``null``) where the instance is absent from the frame.

Every RLE this module returns is *compressed* with ``counts`` as a ``str``, which is both
valid JSON and accepted by every ``pycocotools.mask`` function.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from genvis.utils.forked import can_fork, map_forked

if TYPE_CHECKING:  # pragma: no cover
    from genvis.data.ytvis import AnnotationRecord, VideoRecord

RLE = dict  # {"size": [H, W], "counts": str}


def _decode(rles):
    """``pycocotools.mask.decode`` without its numpy-2 DeprecationWarning about ``copy``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rles)


def _compressed(rle: dict) -> dict:
    """Return ``rle`` with ``counts`` as ``str`` (pycocotools returns bytes)."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def to_rle(seg: Any, height: int, width: int) -> RLE | None:
    """Convert one frame's segmentation to a compressed RLE.

    Args:
        seg: compressed or uncompressed RLE dict, polygon list, or ``None``.
        height, width: the video's frame size in pixels (used for polygons; RLEs carry
            their own ``size``, which callers validate against the video).

    Returns:
        ``{"size": [H, W], "counts": str}``, or ``None`` when ``seg`` is ``None``.

    Raises:
        ValueError: ``seg`` is not one of the supported forms.
    """
    if seg is None or (isinstance(seg, list) and not seg):
        return None
    if type(seg) is dict and type(seg.get("counts")) is str and len(seg) == 2:  # fast path: already ours
        size = seg["size"]
        if type(size) is list and len(size) == 2 and type(size[0]) is int and type(size[1]) is int:
            return seg
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise ValueError("RLE segmentation needs 'size' and 'counts'")
        counts = seg["counts"]
        if isinstance(counts, list):
            h, w = int(seg["size"][0]), int(seg["size"][1])
            return _compressed(mask_utils.frPyObjects(seg, h, w))
        if isinstance(counts, (str, bytes)):
            return _compressed(seg)
        raise ValueError(f"RLE 'counts' must be a string or a list of ints, got {type(counts).__name__}")
    if isinstance(seg, list):
        polys = [p for p in seg if isinstance(p, list) and len(p) >= 6]
        if len(polys) != len(seg) or any(len(p) % 2 for p in polys):
            raise ValueError("polygon segmentation must be a list of [x0, y0, x1, y1, ...] lists of >= 3 points")
        rles = mask_utils.frPyObjects(polys, int(height), int(width))
        return _compressed(mask_utils.merge(rles))
    raise ValueError(f"unsupported segmentation type {type(seg).__name__}")


def segmentation_size(seg: Any) -> tuple[int, int] | None:
    """Return the ``(H, W)`` an RLE segmentation declares, or ``None`` for polygons/``None``."""
    if isinstance(seg, dict) and "size" in seg:
        size = seg["size"]
        return int(size[0]), int(size[1])
    return None


#: the largest mask pycocotools can describe: run lengths and areas are 32-bit unsigned
MAX_MASK_PIXELS = (1 << 32) - 1

#: characters of a compressed RLE string (pycocotools writes 6-bit groups as chr(48 + c))
_RLE_CHAR_MIN, _RLE_CHAR_MAX = 48, 111
#: a run-length number of more than 7 characters (35 bits) cannot come from pycocotools
_RLE_MAX_CHARS_PER_NUMBER = 7
#: value of a one-character number per 6-bit group c (0..63): the low 5 bits, minus 32 when the
#: sign bit (16) is set (C: x |= -1 << 5), modulo 2**32 (a group with the continuation bit is only
#: read this way at a string's forced end, in a string refused as unterminated)
_ONE_CHAR = ((np.arange(64) & 31) - 32 * ((np.arange(64) >> 4) & 1)).astype(np.int64).astype(np.uint32)
#: characters validated per vectorised pass (small temporaries that the allocator reuses: 4x
#: faster than one pass over everything on a busy machine)
_RLE_CHECK_CHUNK = 1 << 16

_RLE_PROBLEMS = {
    1: "compressed RLE 'counts' has characters outside pycocotools' alphabet '0'..'o'",
    2: "compressed RLE 'counts' ends in the middle of a number",
    3: "compressed RLE 'counts' has a number longer than 7 characters",
}


def rle_size(seg: dict) -> tuple[int, int]:
    """The ``(H, W)`` an RLE dict declares, checked: two integers >= 0 whose product is at most
    :data:`MAX_MASK_PIXELS` (what pycocotools can hold; checked before anything is allocated).

    Raises:
        ValueError: ``size`` is missing, not two integers (integral floats are accepted),
            negative, or too large; the message says which.
    """
    size = seg.get("size") if isinstance(seg, dict) else None
    if type(size) is list and len(size) == 2 and type(size[0]) is int and type(size[1]) is int \
            and size[0] >= 0 and size[1] >= 0 and size[0] * size[1] <= MAX_MASK_PIXELS:
        return size[0], size[1]   # the usual case, without the general checks below
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"RLE 'size' must be [H, W], got {size!r}")
    out = []
    for v in size:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                isinstance(v, float) and not (np.isfinite(v) and v == int(v))):
            raise ValueError(f"RLE 'size' must be two integers [H, W], got {size!r}")
        out.append(int(v))
    h, w = out
    if h < 0 or w < 0:
        raise ValueError(f"RLE 'size' {size!r} is negative")
    if h * w > MAX_MASK_PIXELS:
        raise ValueError(f"RLE 'size' {h} x {w} is too large (more than {MAX_MASK_PIXELS} pixels)")
    return h, w


def uncompressed_counts_problem(counts: list, height: int, width: int) -> str | None:
    """Why an uncompressed RLE ``counts`` list is invalid for an H x W mask, or None if it
    is valid (integers in [0, 2**32) summing to exactly H * W)."""
    if not all(type(c) is int for c in counts):
        return "uncompressed RLE 'counts' must be a list of integers"
    if counts and (min(counts) < 0 or max(counts) > MAX_MASK_PIXELS):
        return "uncompressed RLE 'counts' has a negative or over-long run"
    total = sum(counts)
    if total != height * width:
        return f"uncompressed RLE covers {total} pixels, not {height} x {width}"
    return None


def _check_counts_chunk(b: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised decode of compressed RLE strings; returns (problem code int8 [R], pixel
    total int64 [R], foreground area int64 [R]: the runs at odd places, as
    ``pycocotools.mask.area``). Code 0 = valid when total == pixels, see :data:`_RLE_PROBLEMS`.

    Character-level work is a few passes over uint8 / bool arrays. Most numbers have one
    character (in masks of moving objects, runs differ little from the run two before), so
    every number is first read from its last character through a 64-entry table, then the
    few numbers with continuation characters are assembled from those (at most 7 used) and
    written over. The runs are built in uint32, wrapping modulo 2**32 as pycocotools' C code
    stores them, from two running sums (even and odd places) rebased per string; no per-RLE
    Python work.
    """
    r = len(lens)
    code = np.zeros(r, np.int8)
    totals = np.zeros(r, np.int64)
    areas = np.zeros(r, np.int64)
    n = int(lens.sum())
    if n == 0:
        return code, totals, areas
    ends_of_str = np.cumsum(lens)
    nonempty = lens > 0
    starts = (ends_of_str - lens)[nonempty]
    last = ends_of_str[nonempty] - 1
    d = b - np.uint8(48)
    bad_char = np.zeros(r, bool)
    outside = d > 63
    if outside.any():
        bad_char[np.searchsorted(ends_of_str, np.flatnonzero(outside), side="right")] = True
        d = d & np.uint8(0x3F)
    end = d < 32
    unterminated = np.zeros(r, bool)
    unterminated[nonempty] = ~end[last]
    end[last] = True
    ntok = np.zeros(r, np.int64)
    ntok[nonempty] = np.add.reduceat(end, starts, dtype=np.int64)
    e = d[end]                                   # the last group of every number
    x = _ONE_CHAR[e]                             # uint32: each number as if it had one character
    cont = np.flatnonzero(~end)                  # groups with the continuation bit (few)
    too_long = np.zeros(r, bool)
    first = np.cumsum(ntok) - ntok
    if cont.size:
        k = np.arange(cont.size)
        num = cont - k                           # the number each belongs to (rank of the next end)
        new = np.r_[True, num[1:] != num[:-1]]
        j = k - np.maximum.accumulate(np.where(new, k, 0))   # place inside its number
        nums = num[new]
        length = np.diff(np.r_[np.flatnonzero(new), cont.size]) + 1
        ok_j = j < _RLE_MAX_CHARS_PER_NUMBER
        val = np.zeros(nums.size, np.int64)
        np.add.at(val, np.cumsum(new)[ok_j] - 1,
                  (d[cont[ok_j]] & np.uint8(0x1F)).astype(np.int64) << (5 * j[ok_j]))
        top = e[nums].astype(np.int64)
        short = length <= _RLE_MAX_CHARS_PER_NUMBER
        val[short] += (top[short] & 0x1F) << (5 * (length[short] - 1))
        val -= ((top >> 4) & 1) << (5 * np.minimum(length, _RLE_MAX_CHARS_PER_NUMBER))
        x[nums] = (val & 0xFFFFFFFF).astype(np.uint32)
        if not short.all():
            too_long[np.searchsorted(first, nums[~short], side="right") - 1] = True
    # runs as pycocotools stores them (uint32): numbers 0, 1, 2 of a string as they are, number
    # m >= 3 plus run m - 2; i.e. per string and parity, running sums of the numbers after the
    # first. Both parities at once: cumulative sums over the even and the odd global places,
    # rebased at each string's start (wrapping modulo 2**32 like the C code).
    firsts = first[nonempty]
    xz = x.copy()
    xz[firsts] = 0
    p = np.empty_like(xz)
    np.cumsum(xz[0::2], dtype=np.uint32, out=p[0::2])
    np.cumsum(xz[1::2], dtype=np.uint32, out=p[1::2])
    zero = np.zeros(1, np.uint32)
    pe = np.concatenate([zero, p[0::2]])          # pe[c]: sum of the first c even-place numbers
    po = np.concatenate([zero, p[1::2]])
    base_e = pe[(firsts + 1) // 2]                # before the string's first even place
    base_o = po[firsts // 2]
    nt = ntok[nonempty]
    runs = p
    rep = np.repeat(base_e, nt)
    runs[0::2] -= rep[0::2]
    rep = np.repeat(base_o, nt)
    runs[1::2] -= rep[1::2]
    runs[firsts] = x[firsts]
    totals[nonempty] = np.add.reduceat(runs, firsts, dtype=np.int64)
    odd = runs.copy()   # foreground: runs at odd places inside each string
    odd[0::2] = 0
    odd_sum = np.add.reduceat(odd, firsts, dtype=np.int64)
    areas[nonempty] = np.where(firsts & 1, totals[nonempty] - odd_sum, odd_sum)
    for value, flag in ((3, too_long), (2, unterminated), (1, bad_char)):
        code[flag] = value
    return code, totals, areas


def compressed_rle_problem(counts: Sequence[str | bytes], pixels: Sequence[int] | np.ndarray) -> tuple[int, str] | None:
    """Check compressed RLE strings before pycocotools sees them (vectorised, no mask decoded).

    pycocotools trusts ``counts``: a string whose runs do not add up to H x W makes
    ``mask.iou`` / ``mask.decode`` loop for hours or write past the mask. Here every string
    is decoded as ``rleFrString`` does, in numpy over all strings at once (in chunks of
    ~64 K characters), and checked: only the 64 characters pycocotools writes, no
    unterminated or over-long number, and the runs as pycocotools stores them (uint32, the
    deltas wrapping modulo 2**32 as in C) summing to exactly ``pixels[i]``: the pixels its
    loops walk. ~7 ns of CPU per character (benchmarks/bench_rle_check.py; 9.6 before the
    one-character table and uint32 runs), about 4x ``mask.area`` and 1/140 of ``mask.decode``
    on 720p masks.

    Args:
        counts: compressed ``counts`` strings (str or bytes), R of them.
        pixels: H * W of each (int, [R]).

    Returns:
        None when all are valid, else ``(index of the first invalid one, problem in words)``.
    """
    return compressed_rle_check(counts, pixels)[0]


#: fewest characters for which compressed_rle_check splits the work between processes (~30 ms)
_RLE_FORK_CHARS = 4_000_000


def compressed_rle_check(counts: Sequence[str | bytes], pixels: Sequence[int] | np.ndarray, workers: int = 1
                         ) -> tuple[tuple[int, str] | None, np.ndarray | None]:
    """:func:`compressed_rle_problem` that also returns the masks' areas from the same pass.

    ``workers`` > 1 splits the chunks between that many forked processes from 4 M characters
    on (:mod:`genvis.utils.forked`; ``genvis evaluate --workers``); the result is the same.

    Returns:
        ``(problem, areas)``: problem as :func:`compressed_rle_problem` (None when all are
        valid); areas float64 [R], the foreground pixels of each RLE (the runs at odd places,
        equal to ``pycocotools.mask.area``), or None when a problem was found.
    """
    pixels = np.asarray(pixels, dtype=np.int64).reshape(-1)
    if len(counts) != len(pixels):
        raise ValueError(f"{len(counts)} RLE strings but {len(pixels)} sizes")
    if not len(counts):
        return None, np.zeros(0)
    try:
        joined = "".join(counts)
    except TypeError:   # some are bytes
        joined = "".join(c.decode("latin-1") if isinstance(c, bytes) else c for c in counts)
    lens = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
    if not joined.isascii():
        k = next(k for k, c in enumerate(counts) if not (c.isascii() if isinstance(c, str) else c.isascii()))
        before = compressed_rle_problem(counts[:k], pixels[:k]) if k else None
        return before or (k, _RLE_PROBLEMS[1]), None
    data = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    areas = np.zeros(len(counts))
    # chunks of whole strings, about _RLE_CHECK_CHUNK characters each
    inner = np.searchsorted(offsets, np.arange(_RLE_CHECK_CHUNK, offsets[-1], _RLE_CHECK_CHUNK), side="right") - 1
    cuts = np.unique(np.concatenate([[0], inner, [len(counts)]]))
    chunks = list(zip(cuts[:-1].tolist(), cuts[1:].tolist()))

    def check(share: Sequence[int], _job: Any, _progress: bool) -> dict[int, tuple]:
        out: dict[int, tuple] = {}
        for c in share:   # ascending: a share stops at its first bad chunk
            i, j = chunks[c]
            code, totals, fg = _check_counts_chunk(data[offsets[i]:offsets[j]], lens[i:j])
            bad = np.flatnonzero((code != 0) | (totals != pixels[i:j]))
            if bad.size:
                k = int(bad[0])
                out[c] = ("bad", i + k, _RLE_PROBLEMS[int(code[k])] if code[k] else
                          f"compressed RLE 'counts' covers {int(totals[k])} pixels, not {int(pixels[i + k])}")
                break
            out[c] = ("ok", fg)
        return out

    keys = list(range(len(chunks)))
    if can_fork(int(offsets[-1]), workers, _RLE_FORK_CHARS):
        done = map_forked(check, keys, None, workers, False)
    else:
        done = check(keys, None, False)
    for c in keys:   # in order: the first bad string is reported (later chunks may be missing)
        if done[c][0] == "bad":
            return (done[c][1], done[c][2]), None
        i, j = chunks[c]
        areas[i:j] = done[c][1]
    return None, areas


def decode_rle(rle: RLE | None, height: int, width: int) -> np.ndarray:
    """Decode one RLE to a bool mask ``[H, W]`` (all False for ``None``)."""
    if rle is None:
        return np.zeros((height, width), dtype=bool)
    return _decode(rle).astype(bool)


def annotation_masks(ann: "AnnotationRecord", video: "VideoRecord") -> np.ndarray:
    """Decode an annotation to per-frame masks.

    Args:
        ann: the annotation (one instance over the whole video).
        video: its video (gives ``length``, ``height`` and ``width``).

    Returns:
        ``np.ndarray`` of dtype bool, shape ``[T, H, W]`` with ``T = video.length``;
        all False on frames where the instance is absent (``None`` segmentation).
    """
    out = np.zeros((video.length, video.height, video.width), dtype=bool)
    present = [(t, to_rle(s, video.height, video.width)) for t, s in enumerate(ann.segmentations) if s is not None]
    if present:
        decoded = _decode([r for _, r in present])  # [H, W, n] uint8, one C call
        for j, (t, _) in enumerate(present):
            out[t] = decoded[:, :, j].astype(bool)
    return out


def encode_masks(masks: np.ndarray) -> list[RLE]:
    """Encode masks ``[T, H, W]`` (bool or 0/1 integers) as one compressed RLE per frame.

    Empty frames get an RLE of an empty mask (never ``None``), as the results format
    expects an RLE for every frame. Vectorised: one pycocotools call for all frames.

    Raises:
        ValueError: ``masks`` is not 3-D.
    """
    return [_compressed(r) for r in _encode_raw(masks)]


def _encode_raw(masks: np.ndarray) -> list[dict]:
    """pycocotools' compressed RLEs (``counts`` as bytes) of masks ``[N, H, W]``, one C call.

    Raises:
        ValueError: ``masks`` is not 3-D.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected masks [N, H, W], got shape {masks.shape}")
    return mask_utils.encode(_fortran_uint8(masks)) if masks.shape[0] else []


def _fortran_uint8(masks: np.ndarray) -> np.ndarray:
    """``[N, H, W]`` bool / 0-1 integers -> the Fortran-ordered uint8 ``(H, W, N)`` array that
    ``pycocotools.mask.encode`` takes, with one copy (none if already laid out so; a bool
    array is reinterpreted as uint8, not converted)."""
    if masks.dtype == np.bool_:
        masks = masks.view(np.uint8)
    elif masks.dtype != np.uint8:
        masks = masks.astype(np.uint8)
    return np.asfortranarray(masks.transpose(1, 2, 0))


def encode_masks_json(masks: np.ndarray) -> list[str]:
    """Encode masks ``[N, H, W]`` (bool or 0/1 integers) as the json text of one compressed
    RLE per mask: exactly ``json.dumps(encode_masks(masks)[i])``, without building the dicts.

    For writers that store the text (inference's spool, :class:`genvis.data.results.JSONText`):
    one pycocotools call for all masks; a ``[k, t, W, H]`` C-ordered array reshaped to
    ``[N, W, H]`` and transposed to ``[N, H, W]`` needs no copy before it.

    Raises:
        ValueError: ``masks`` is not 3-D.
    """
    rles = _encode_raw(masks)
    if not rles:
        return []
    head = '{"size": [%d, %d], "counts": "' % tuple(rles[0]["size"])
    # compressed counts use the characters 48..111 ('0'..'o'): of those json escapes only the backslash
    return [head + r["counts"].decode("ascii").replace("\\", "\\\\") + '"}' for r in rles]


def encode_masks_or_none(masks: np.ndarray) -> list[RLE | None]:
    """Like :func:`encode_masks` but ``None`` for empty frames (the ground-truth convention)."""
    masks = np.asarray(masks)
    rles = encode_masks(masks)
    present = masks.reshape(masks.shape[0], -1).any(axis=1)
    return [r if p else None for r, p in zip(rles, present)]


_AREA_CHUNK = 255  # pycocotools 2.0.11 + numpy 2: area() of > 255 RLEs at once overflows a uint8


def area_array(rles: Sequence[RLE]) -> np.ndarray:
    """Pixel areas (float64 ``[n]``) of a list of RLEs (no ``None``), in C, chunked."""
    out = np.zeros(len(rles), dtype=np.float64)
    for s in range(0, len(rles), _AREA_CHUNK):
        out[s:s + _AREA_CHUNK] = np.atleast_1d(mask_utils.area(list(rles[s:s + _AREA_CHUNK])))
    return out


def rle_areas(rles: Sequence[RLE | None]) -> list[float | None]:
    """Pixel areas of RLEs (``None`` stays ``None``)."""
    idx = [i for i, r in enumerate(rles) if r is not None]
    out: list[float | None] = [None] * len(rles)
    if idx:
        for i, a in zip(idx, area_array([rles[i] for i in idx]).tolist()):
            out[i] = a
    return out


def rle_bboxes(rles: Sequence[RLE | None]) -> list[list[float] | None]:
    """COCO boxes ``[x, y, w, h]`` (pixels) of RLEs (``None`` stays ``None``)."""
    idx = [i for i, r in enumerate(rles) if r is not None]
    out: list[list[float] | None] = [None] * len(rles)
    if idx:
        boxes = np.atleast_2d(mask_utils.toBbox([rles[i] for i in idx]))
        for i, b in zip(idx, boxes):
            out[i] = [float(v) for v in b]
    return out

