"""YouTube-VIS / OVIS results json (read, validate, write) and the evaluation-server zip.

The results file is a json list, one entry per predicted instance (video-level)::

    [{"video_id": int, "category_id": int, "score": float in [0, 1],
      "segmentations": [RLE | null, ...]  (one per frame of the video)}, ...]

RLEs are compressed COCO RLEs ``{"size": [H, W], "counts": str}`` (uncompressed RLEs are
accepted on reading and converted). The CodaLab servers of OVIS and YouTube-VIS take a zip
holding ``results.json`` at its root (:func:`write_results_zip`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from genvis.data import masks as mask_ops
from genvis.data.ytvis import VISDataset, read_json_file
from genvis.errors import InputError, InputWarning
from genvis.utils.io import atomic_path, atomic_write_text


@dataclass
class VideoResult:
    """One predicted instance over a whole video.

    Attributes:
        video_id: id of the video in the ground-truth / annotation file.
        category_id: json category id (not the contiguous index).
        score: confidence in [0, 1] (float).
        segmentations: one compressed RLE per frame (``{"size": [H, W], "counts": str}``),
            or None for a frame without a mask.
        areas: optional float64 [T] pixel areas of the segmentations (0 where None), set by
            :func:`parse_results` from its RLE check so that the evaluation needs no area
            pass of its own; None when unknown. Not compared, not written.
    """

    video_id: int
    category_id: int
    score: float
    segmentations: list[dict | None]
    areas: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The json entry."""
        return {"video_id": int(self.video_id), "category_id": int(self.category_id),
                "score": float(self.score), "segmentations": list(self.segmentations)}


class JSONText(str):
    """A json value already serialised as ``json.dumps`` would write it (e.g. an RLE read
    back from inference's spool): :class:`ResultsWriter` copies it verbatim instead of
    serialising the string again. Only for text made by ``json.dumps`` or an exact
    equivalent (:func:`genvis.data.masks.encode_masks_json`); nothing checks it."""

    __slots__ = ()


class ResultsWriter:
    """Write a results json one prediction at a time, atomically.

    Entries are written as they are added, and an entry's segmentations may be any
    iterable (e.g. RLEs read back from a spool file), consumed once, so peak memory does
    not depend on the number of predictions or the video length. The bytes equal
    ``json.dumps`` of the whole list. The file appears under ``path`` only when the
    ``with`` block ends without an exception; otherwise nothing is left (see
    :func:`genvis.utils.io.atomic_path`)::

        with ResultsWriter(path) as w:
            w.add(VideoResult(video_id, category_id, score, rle_iterator))

    Raises (from :meth:`add`):
        InputError: a score is NaN/infinite or outside [0, 1] (the file is not written).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.count = 0
        self._atomic = None
        self._file = None

    def __enter__(self) -> "ResultsWriter":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._file = open(tmp, "w", encoding="utf-8")
        self._file.write("[")
        return self

    def add(self, result: VideoResult) -> None:
        """Append one prediction (its ``segmentations`` iterable is consumed here)."""
        s = float(result.score)
        if not math.isfinite(s) or not 0.0 <= s <= 1.0:
            raise InputError(self.path, f"result {self.count}: score {result.score!r} is not a finite "
                             "number in [0, 1]")
        f = self._file
        head = {"video_id": int(result.video_id), "category_id": int(result.category_id), "score": s}
        f.write((", " if self.count else "") + json.dumps(head)[:-1] + ', "segmentations": [')
        for i, seg in enumerate(result.segmentations):
            f.write((", " if i else "") + (seg if type(seg) is JSONText else json.dumps(seg, allow_nan=False)))
        f.write("]}")
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._file.write("]")
            self._file.close()
        finally:
            self._atomic.__exit__(exc_type, exc, tb)
        return False


class ResultsParts:
    """Per-video part files of a results json, so that an interrupted inference resumes.

    Layout: a hidden folder ``.<out name>.parts/`` beside ``out`` holding ``key.json`` (the
    run's resume key: what the results depend on) and ``<video_id>.<count>.json`` for every
    finished video (its results list with ``count`` entries, written atomically by
    :class:`ResultsWriter`, so a part is whole or absent). A folder made under another key
    is deleted on opening (its parts belong to another model or other settings).
    :meth:`join` copies the parts byte for byte into ``out`` (atomically; the same bytes as
    one :class:`ResultsWriter` pass) and removes the folder.

    Args:
        out: the results json to be written.
        key: json-able description of the run (e.g. model and annotation sha256, N_f^eval,
            top-k, association).

    Attributes:
        discarded: number of finished videos deleted because their key differed.
    """

    def __init__(self, out: str | os.PathLike, key: Any):
        import shutil

        self.out = Path(out)
        self.dir = self.out.parent / f".{self.out.name}.parts"
        key_text = json.dumps(key, sort_keys=True, allow_nan=False)
        key_path = self.dir / "key.json"
        self.discarded = 0
        if self.dir.exists() and (not key_path.exists() or key_path.read_text(encoding="utf-8") != key_text):
            self.discarded = len(self._parts())
            shutil.rmtree(self.dir)
        if not key_path.exists():
            atomic_write_text(key_path, key_text)

    def _parts(self) -> dict[int, tuple[Path, int]]:
        out = {}
        for p in self.dir.glob("*.json"):
            fields = p.name.split(".")
            if len(fields) == 3 and fields[0].lstrip("-").isdigit() and fields[1].isdigit():
                out[int(fields[0])] = (p, int(fields[1]))
        return out

    def finished(self, video_ids: Iterable[int]) -> set[int]:
        """The ids among ``video_ids`` whose part is complete."""
        have = self._parts()
        return {int(v) for v in video_ids if int(v) in have}

    @contextlib.contextmanager
    def writer(self, video_id: int) -> Iterator[ResultsWriter]:
        """A :class:`ResultsWriter` for one video's part; the part counts as finished only
        if the ``with`` block ends without an exception."""
        partial = self.dir / f"{int(video_id)}.partial"
        with ResultsWriter(partial) as w:
            yield w
        os.replace(partial, self.dir / f"{int(video_id)}.{w.count}.json")

    def join(self, video_ids: Sequence[int]) -> int:
        """Write ``out`` from the parts of ``video_ids`` (in that order) and delete the folder.

        Returns:
            the number of predictions written.

        Raises:
            InputError: a video of ``video_ids`` has no finished part (``out`` is not written).
        """
        import shutil

        have = self._parts()
        missing = [v for v in video_ids if int(v) not in have]
        if missing:
            raise InputError(self.dir, f"no finished part for video(s) {missing[:10]}")
        count = 0
        with atomic_path(self.out) as tmp, open(tmp, "wb") as f:
            f.write(b"[")
            for v in video_ids:
                path, n = have[int(v)]
                if n == 0:
                    continue
                size = path.stat().st_size
                with open(path, "rb") as src:   # "[" + entries + "]": copy the entries
                    src.seek(1)
                    if count:
                        f.write(b", ")
                    left = size - 2
                    while left > 0:
                        block = src.read(min(left, 1 << 20))
                        if not block:
                            raise InputError(path, "part file shorter than when it was listed")
                        f.write(block)
                        left -= len(block)
                count += n
            f.write(b"]")
        shutil.rmtree(self.dir)
        return count


def write_results(results: Iterable[VideoResult], path: str | os.PathLike) -> None:
    """Write results json atomically (all of ``results``; see :class:`ResultsWriter`).

    Raises:
        InputError: a score is NaN/infinite or outside [0, 1] (nothing is written).
    """
    with ResultsWriter(path) as w:
        for r in results:
            w.add(r)


#: largest inflated size of ``results.json`` read from a server zip (bytes); a zip that
#: inflates past it is refused by name instead of exhausting memory (a zip bomb, or a
#: results file far beyond any benchmark's: YouTube-VIS 2021 valid is ~0.5 GB)
MAX_RESULTS_JSON_BYTES = 2 << 30


def _read_zip_member(path: Path, max_bytes: int) -> bytes:
    """``results.json`` of a server zip, refused past ``max_bytes`` inflated bytes (the
    declared size is checked first, then the stream is read with the same cap, since a
    zip's header can lie)."""
    import zlib

    too_big = (f"results.json in the zip inflates to more than {max_bytes} bytes "
               f"(the cap on results read from a zip); not a results file, or a zip bomb")
    try:
        with zipfile.ZipFile(path) as zf:
            if "results.json" not in zf.namelist():
                raise InputError(path, "zip has no results.json at its root")
            if zf.getinfo("results.json").file_size > max_bytes:
                raise InputError(path, too_big)
            chunks, total = [], 0
            with zf.open("results.json") as f:
                while True:
                    block = f.read(min(1 << 24, max_bytes + 1 - total))
                    if not block:
                        break
                    total += len(block)
                    if total > max_bytes:
                        raise InputError(path, too_big)
                    chunks.append(block)
            return b"".join(chunks)
    except zipfile.BadZipFile as exc:
        raise InputError(path, f"not a valid zip file ({exc})") from exc
    except (zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise InputError(path, f"cannot inflate results.json from the zip ({type(exc).__name__}: {exc})") from exc
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from exc


def _read_results_obj(path: Path, max_zip_bytes: int | None = None) -> Any:
    if path.suffix.lower() == ".zip":
        if not path.exists():
            raise InputError(path, "file not found")
        raw = _read_zip_member(path, MAX_RESULTS_JSON_BYTES if max_zip_bytes is None else max_zip_bytes)
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(path, f"results.json in the zip is not valid json ({exc})") from exc
        except RecursionError:
            raise InputError(path, "results.json in the zip is nested too deeply to be a results list") from None
    return read_json_file(path)


def _seg_problem(s: Any, video: Any) -> tuple[tuple[int, int] | None, str | None]:
    """((H, W), None) for a well-formed RLE dict of the right size, else (None, problem)."""
    if not isinstance(s, dict) or "size" not in s or "counts" not in s:
        return None, "segmentation must be an RLE {'size', 'counts'} or null"
    try:
        h, w = mask_ops.rle_size(s)
    except ValueError as exc:
        return None, str(exc)
    if video is not None and (h, w) != (video.height, video.width):
        return None, (f"mask size {[h, w]} (H, W) disagrees with video {video.id} size "
                      f"[{video.height}, {video.width}]")
    counts = s["counts"]
    if isinstance(counts, list):
        problem = mask_ops.uncompressed_counts_problem(counts, h, w)
        if problem:
            return None, problem
    elif not isinstance(counts, str):
        return None, f"RLE 'counts' must be a string or a list of integers, got {type(counts).__name__}"
    return (h, w), None


def _counts_per_frame(rles: Sequence[dict | None]) -> list:
    """The ``counts`` of each frame's RLE (None for a null frame): what two exactly repeated
    results share frame for frame."""
    return [None if x is None else x["counts"] for x in rles]


def parse_results(data: Any, source: str | os.PathLike, gt: VISDataset | None = None,
                  workers: int = 1) -> list[VideoResult]:
    """Validate a parsed results json (see :func:`read_results`).

    Every RLE is checked before pycocotools sees it (:func:`genvis.data.masks.rle_size`,
    :func:`~genvis.data.masks.compressed_rle_problem`: runs add up to exactly H x W), so
    that no later evaluation can hang or read past a mask. Warns (:class:`InputWarning`)
    about exact duplicate entries and about null per-frame segmentations (both are
    scored, as the official API scores them: see docs/bad_inputs.md). ``workers``: processes
    for the RLE check (:func:`~genvis.data.masks.compressed_rle_check`).
    """
    if isinstance(data, dict) and "videos" in data:
        raise InputError(source, "this is an annotation file (has 'videos'), not a results list")
    if not isinstance(data, list):
        raise InputError(source, f"not a VIS results file: top level is a {type(data).__name__}, expected a list")
    if not data:
        raise InputError(source, "empty results list: no predictions to score (the official "
                                 "evaluation fails on an empty list too)")
    out: list[VideoResult] = []
    comp_counts: list[str] = []        # every compressed RLE string, checked in one pass at the end
    comp_pixels: list[int] = []
    comp_pos: list[int] = []           # their positions in a flat [sum of T] per-frame area array
    bases: list[int] = []              # each result's offset in that array
    base = 0
    no_areas: list[int] = []           # results with RLEs not checked there (uncompressed counts)
    null_frames = 0
    null_results = 0
    empty_results = 0
    # exact repeats: results alike in video, category, score, frame count, null frames and total
    # RLE length share a bucket, and only inside one are the masks compared (hashing every
    # RLE string of a file would cost more than the rest of this loop)
    seen: dict[tuple, list[list]] = {}
    duplicates: list[tuple[int, int]] = []
    for i, r in enumerate(data):
        if not isinstance(r, dict):
            raise InputError(source, f"result {i} is not an object")
        missing = [k for k in ("video_id", "category_id", "score", "segmentations") if k not in r]
        if missing:
            raise InputError(source, f"result {i} lacks {', '.join(missing)}")
        score = r["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score) \
                or not 0.0 <= score <= 1.0:
            raise InputError(source, f"result {i}: score {score!r} is not a finite number in [0, 1]")
        vid, cid = r["video_id"], r["category_id"]
        if not isinstance(vid, int) or isinstance(vid, bool) or not isinstance(cid, int) or isinstance(cid, bool):
            raise InputError(source, f"result {i}: video_id and category_id must be integers")
        segs = r["segmentations"]
        if not isinstance(segs, list):
            raise InputError(source, f"result {i}: 'segmentations' must be a list (one RLE or null per frame)")
        video = None
        if gt is not None:
            try:
                video = gt.video(vid)
            except KeyError:
                raise InputError(source, f"result {i}: video_id {vid} is not in the ground truth "
                                         f"{gt.path or ''}".rstrip()) from None
            try:
                gt.category_index(cid)
            except KeyError:
                raise InputError(source, f"result {i}: category_id {cid} is not in the ground truth "
                                         f"{gt.path or ''}".rstrip()) from None
            if len(segs) != video.length:
                raise InputError(source, f"result {i}: {len(segs)} segmentations but video {vid} has "
                                         f"{video.length} frames")
        vsize = None if video is None else [video.height, video.width]
        b0 = base
        bases.append(base)
        base += len(segs)
        if vsize is not None and all(type(s) is dict and len(s) == 2 and type(s.get("counts")) is str
                                     and s.get("size") == vsize for s in segs if s is not None):
            # the usual case: every mask a compressed RLE of the video's size, or null
            rles: list[dict | None] = list(segs)
            cs = [s["counts"] for s in segs if s is not None]
            comp_counts.extend(cs)
            comp_pixels.extend([vsize[0] * vsize[1]] * len(cs))
            comp_pos.extend(range(b0, base) if len(cs) == len(segs) else
                            [b0 + t for t, s in enumerate(segs) if s is not None])
            n_null = len(segs) - len(cs)
        else:
            rles = []
            for t, s in enumerate(segs):
                if s is None:
                    rles.append(None)
                    continue
                size, problem = _seg_problem(s, video)
                if problem:
                    raise InputError(source, f"result {i} frame {t}: {problem}")
                h, w = size
                if isinstance(s["counts"], str):
                    comp_counts.append(s["counts"])
                    comp_pixels.append(h * w)
                    comp_pos.append(b0 + t)
                    rles.append({"size": [h, w], "counts": s["counts"]})
                else:
                    rles.append(mask_ops.to_rle(s, h, w))
                    if not no_areas or no_areas[-1] != i:
                        no_areas.append(i)
            n_null = sum(x is None for x in rles)
            cs = [x["counts"] for x in rles if x is not None]
        if n_null:
            null_frames += n_null
            null_results += 1
            empty_results += n_null == len(rles)
        # masks compared only between results alike in these (and in their RLEs' total length)
        bucket = seen.setdefault((vid, cid, float(score), len(rles), n_null, sum(map(len, cs))), [])
        first = None
        if bucket:
            counts = _counts_per_frame(rles)
            for entry in bucket:   # [result index, its counts (made on its first comparison)]
                if entry[1] is None:
                    entry[1] = _counts_per_frame(out[entry[0]].segmentations)
                if entry[1] == counts:
                    first = entry[0]
                    break
            if first is None:
                bucket.append([i, counts])
            else:
                duplicates.append((first, i))
        else:
            bucket.append([i, None])
        out.append(VideoResult(vid, cid, float(score), rles))
    bad, comp_areas = mask_ops.compressed_rle_check(comp_counts, comp_pixels, workers)
    if bad is not None:
        pos = comp_pos[bad[0]]
        i = int(np.searchsorted(bases, pos, side="right")) - 1
        raise InputError(source, f"result {i} frame {pos - bases[i]}: {bad[1]}")
    flat = np.zeros(base)
    flat[np.asarray(comp_pos, dtype=np.int64)] = comp_areas
    for k, r in enumerate(out):
        r.areas = flat[bases[k]:bases[k] + len(r.segmentations)]
    for k in no_areas:
        out[k].areas = None
    if duplicates:
        a, b = duplicates[0]
        warnings.warn(InputWarning(source, f"{len(duplicates)} result(s) repeat an earlier one exactly "
                                   f"(e.g. result {b} = result {a}); each repeat is scored as a false "
                                   "positive, as by the official evaluation"), stacklevel=2)
    if null_frames:
        warnings.warn(InputWarning(source, f"{null_frames} null segmentation(s) in {null_results} result(s), "
                                   "scored as 'absent on that frame' (as the official evaluation does)"
                                   + (f"; {empty_results} result(s) have no mask on any frame"
                                      if empty_results else "")), stacklevel=2)
    return out


def read_results(path: str | os.PathLike, gt: VISDataset | None = None,
                 max_zip_bytes: int | None = None, workers: int = 1) -> list[VideoResult]:
    """Read and validate a results json (or a server zip holding ``results.json``).

    Args:
        path: results ``.json`` or ``.zip``.
        gt: ground truth to check against (video ids, category ids, frame counts, mask
            sizes); None checks the structure only.
        max_zip_bytes: cap on the inflated size of ``results.json`` in a zip (bytes;
            default :data:`MAX_RESULTS_JSON_BYTES`).
        workers: processes for the RLE check (forked from 4 M characters on; the result
            does not depend on it).

    Returns:
        The results in file order (file order breaks score ties in the evaluation).

    Raises:
        InputError: missing/unreadable file, not a results list or an empty one, NaN or
            out-of-range score, unknown video or category, wrong number of frames or mask
            size, an RLE whose runs do not cover exactly H x W pixels (message: file,
            result index, frame, problem), a zip member inflating past ``max_zip_bytes``.

    Warns:
        InputWarning: exact duplicate entries; null per-frame segmentations.
    """
    path = Path(path)
    return parse_results(_read_results_obj(path, max_zip_bytes), path, gt, workers)


def write_results_zip(results_json_path: str | os.PathLike, zip_path: str | os.PathLike) -> None:
    """Pack a results json into the server zip layout (``results.json`` at the zip root), atomically.

    Raises:
        InputError: ``results_json_path`` is missing or not a results list.
    """
    results_json_path = Path(results_json_path)
    data = read_json_file(results_json_path)
    parse_results(data, results_json_path)  # structure check before packing
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.write(results_json_path, arcname="results.json")


__all__ = ["VideoResult", "write_results", "read_results", "parse_results", "write_results_zip"]
