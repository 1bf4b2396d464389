"""YouTube-VIS 2019/2021/2022 and OVIS annotation json: typed records, loading, validation, saving.

The format (one json per split)::

    {"videos": [{"id", "file_names": [...], "length", "width", "height", ...}],
     "annotations": [{"id", "video_id", "category_id", "segmentations": [seg | null per frame],
                      "areas": [float | null], "bboxes": [[x, y, w, h] | null], "iscrowd"}] | null,
     "categories": [{"id", "name", "supercategory"}], ...}

OVIS ``valid.json`` carries ``"annotations": null`` (YouTube-VIS valid files may omit the key);
both load with ``VISDataset.annotations = None``. A segmentation is a compressed or
uncompressed RLE, a polygon list, or null where the instance is absent (see
:mod:`genvis.data.masks`). ``file_names`` are relative to the split's image root.

Loading validates the structure and raises :class:`genvis.errors.InputError` naming the
file and the problem (e.g. a video whose ``file_names`` disagree with ``length``, an
annotation whose segmentation list has the wrong number of frames, an RLE whose size is
not the video's, an RLE whose runs do not cover exactly H x W pixels (which would make
pycocotools loop forever or write past a mask), a polygon vertex far outside the frame,
a frame of more than 2**32 pixels). Unknown keys are kept (``extra``) and written back by
:func:`save_vis_json`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import orjson

from genvis.data import masks as mask_ops
from genvis.errors import InputError
from genvis.utils.io import atomic_write_json

_VIDEO_KEYS = ("id", "file_names", "length", "width", "height")
_ANN_KEYS = ("id", "video_id", "category_id", "segmentations", "areas", "bboxes", "iscrowd")


@dataclass
class VideoRecord:
    """One video of a VIS split.

    Attributes:
        id: video id (int, unique in the file).
        file_names: frame paths relative to the image root, in temporal order (len = length).
        length: number of frames T.
        width, height: frame size in pixels (W, H); every segmentation is H x W.
        extra: any other keys of the json entry (kept on save).
    """

    id: int
    file_names: list[str]
    length: int
    width: int
    height: int
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The video's folder name: the parent directory of its first frame (or its id)."""
        if self.file_names:
            parent = Path(self.file_names[0]).parent.as_posix()
            if parent not in ("", "."):
                return parent
        return str(self.id)

    def to_json(self) -> dict[str, Any]:
        """The json entry (``extra`` keys first, then the standard keys)."""
        d = dict(self.extra)
        d.update(id=self.id, file_names=list(self.file_names), length=self.length,
                 width=self.width, height=self.height)
        return d


@dataclass
class AnnotationRecord:
    """One ground-truth instance over a whole video.

    Attributes:
        id: annotation id (int, unique in the file; the official evaluation expects >= 1).
        video_id: id of its video.
        category_id: its category id (as in the json, not the contiguous index).
        segmentations: one entry per frame (len = video length): RLE dict (compressed or
            uncompressed), polygon list, or None where the instance is absent.
        areas: per-frame visible area in pixels, None where absent (the evaluation's size
            ranges use the mean of the non-zero entries, as the official API does).
        bboxes: per-frame box ``[x, y, w, h]`` in pixels, or None.
        iscrowd: 1 for crowd regions (ignored by the evaluation), else 0.
        extra: any other keys of the json entry (kept on save).
    """

    id: int
    video_id: int
    category_id: int
    segmentations: list[Any]
    areas: list[float | None]
    bboxes: list[list[float] | None]
    iscrowd: int = 0
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The json entry."""
        d = dict(self.extra)
        d.update(id=self.id, video_id=self.video_id, category_id=self.category_id,
                 segmentations=list(self.segmentations), areas=list(self.areas),
                 bboxes=list(self.bboxes), iscrowd=self.iscrowd)
        return d


@dataclass
class CategoryRecord:
    """A category: json ``id`` (any int), ``name`` and optional ``supercategory``."""

    id: int
    name: str
    supercategory: str = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The json entry."""
        d = dict(self.extra)
        d.update(id=self.id, name=self.name, supercategory=self.supercategory)
        return d


@dataclass
class VISDataset:
    """A VIS split: videos, ground-truth annotations (None if the file has none) and categories.

    Categories are mapped to contiguous indices ``0..K-1`` in increasing order of their json
    id (``category_index`` / ``category_id``); K = ``num_classes``.
    """

    videos: list[VideoRecord]
    annotations: list[AnnotationRecord] | None
    categories: list[CategoryRecord]
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._reindex()

    def _reindex(self) -> None:
        self._videos = {v.id: v for v in self.videos}
        self._anns: dict[int, list[AnnotationRecord]] = {v.id: [] for v in self.videos}
        for a in self.annotations or []:
            self._anns.setdefault(a.video_id, []).append(a)
        ids = sorted(c.id for c in self.categories)
        self._cat_index = {cid: i for i, cid in enumerate(ids)}
        self._cat_ids = ids

    @property
    def has_annotations(self) -> bool:
        """True when the file carries ground truth (``annotations`` is not null)."""
        return self.annotations is not None

    @property
    def video_ids(self) -> list[int]:
        """Video ids in file order."""
        return [v.id for v in self.videos]

    def video(self, video_id: int) -> VideoRecord:
        """The video with id ``video_id``. Raises KeyError if absent."""
        try:
            return self._videos[video_id]
        except KeyError:
            raise KeyError(f"video id {video_id} not in {self.path or 'dataset'}") from None

    def annotations_of(self, video_id: int) -> list[AnnotationRecord]:
        """Ground-truth instances of one video (empty list when none or no ground truth)."""
        return list(self._anns.get(video_id, []))

    @property
    def num_classes(self) -> int:
        """K, the number of categories."""
        return len(self.categories)

    def category_index(self, category_id: int) -> int:
        """Contiguous index 0..K-1 of a json category id. Raises KeyError if unknown."""
        try:
            return self._cat_index[category_id]
        except KeyError:
            raise KeyError(f"category id {category_id} not in {self.path or 'dataset'}") from None

    def category_id(self, index: int) -> int:
        """Json category id of contiguous index ``index`` (0..K-1). Raises IndexError."""
        if not 0 <= index < len(self._cat_ids):
            raise IndexError(f"category index {index} out of range 0..{len(self._cat_ids) - 1}")
        return self._cat_ids[index]

    def category_name(self, category_id: int) -> str:
        """Name of a json category id."""
        for c in self.categories:
            if c.id == category_id:
                return c.name
        raise KeyError(f"category id {category_id} not in {self.path or 'dataset'}")

    def subset(self, video_ids: Iterable[int]) -> "VISDataset":
        """A new dataset with only the given videos (file order kept) and their annotations."""
        keep = set(video_ids)
        videos = [v for v in self.videos if v.id in keep]
        anns = None if self.annotations is None else [a for a in self.annotations if a.video_id in keep]
        return VISDataset(videos, anns, list(self.categories), None, dict(self.info))

    def to_json(self) -> dict[str, Any]:
        """The whole split as a json-ready dict."""
        d = dict(self.info)
        d["videos"] = [v.to_json() for v in self.videos]
        d["annotations"] = None if self.annotations is None else [a.to_json() for a in self.annotations]
        d["categories"] = [c.to_json() for c in self.categories]
        return d


# ----------------------------------------------------------------------------- loading

def read_json_file(path: str | os.PathLike) -> Any:
    """Read a json file; InputError naming the file if missing, unreadable or not json."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a directory, expected a json file")
    try:
        with open(path, "rb") as f:
            data = f.read()
        try:  # orjson: ~5x faster than json on the large results files; the same objects
            return orjson.loads(data)
        except orjson.JSONDecodeError:  # NaN literals, bad UTF-8, syntax: json decides (and words the error)
            return json.loads(data)
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(path, "not a UTF-8 text file (expected json)") from exc
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid json (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    except RecursionError:
        raise InputError(path, "json nested too deeply to be a VIS or results file") from None


def _int(value: Any, where: str, src: Path | str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and (not math.isfinite(value) or value != int(value))):
        raise InputError(src, f"{where} must be an integer, got {value!r}")
    return int(value)


def _finite_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _check_seg(seg: Any, t: int, video: VideoRecord, where: str, src: Path | str,
               compressed: list[tuple[str, int, tuple[str, int]]] | None = None) -> None:
    """Check one frame's segmentation; a compressed RLE string is appended to ``compressed``
    (with H * W and its place: annotation, frame) for one vectorised check of all of them
    (:func:`genvis.data.masks.compressed_rle_problem`) instead of being checked here."""
    if seg is None:
        return
    if isinstance(seg, dict):
        if "size" not in seg or "counts" not in seg:
            raise InputError(src, f"{where} frame {t}: RLE needs 'size' and 'counts'")
        try:
            size = mask_ops.rle_size(seg)
        except ValueError as exc:
            raise InputError(src, f"{where} frame {t}: {exc}") from None
        if size != (video.height, video.width):
            raise InputError(
                src, f"{where} frame {t}: segmentation size {list(size)} (H, W) disagrees with video "
                f"{video.id} size [{video.height}, {video.width}]")
        counts = seg["counts"]
        if not isinstance(counts, (str, list)):
            raise InputError(src, f"{where} frame {t}: RLE 'counts' must be a string or a list")
        if isinstance(counts, list):
            problem = mask_ops.uncompressed_counts_problem(counts, video.height, video.width)
            if problem:
                raise InputError(src, f"{where} frame {t}: {problem}")
        elif compressed is not None:
            compressed.append((counts, video.height * video.width, (where, t)))
        else:
            bad = mask_ops.compressed_rle_problem([counts], [video.height * video.width])
            if bad:
                raise InputError(src, f"{where} frame {t}: {bad[1]}")
        return
    if isinstance(seg, list):
        if not seg or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg):
            raise InputError(src, f"{where} frame {t}: polygons must be a non-empty list of "
                                  "[x0, y0, x1, y1, ...] lists with >= 3 points")
        # pycocotools rasterises a polygon edge by edge at 5x: a far-away vertex would cost
        # memory and time in proportion to its distance, so vertices stay near the frame
        h, w = video.height, video.width
        for p in seg:
            if not all(_finite_number(v) for v in p):
                raise InputError(src, f"{where} frame {t}: polygon coordinates must be finite numbers")
            xs, ys = p[0::2], p[1::2]
            if min(xs) < -w or max(xs) > 2 * w or min(ys) < -h or max(ys) > 2 * h:
                raise InputError(src, f"{where} frame {t}: polygon vertex far outside the {w}x{h} frame "
                                      f"(x in [{min(xs)}, {max(xs)}], y in [{min(ys)}, {max(ys)}])")
        return
    raise InputError(src, f"{where} frame {t}: segmentation must be an RLE dict, polygons or null, "
                          f"got {type(seg).__name__}")


def _inside_root(name: str) -> bool:
    """Whether a ``file_names`` entry names a file below the image root: not empty, not
    absolute (``/x``, ``\\x``, ``C:x``), no ``..`` component (either slash)."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[0].isalpha() and name[1] == ":"):
        return False
    return ".." not in name.replace("\\", "/").split("/")


class RleCheck:
    """The check of a parsed VIS file's compressed RLE strings, kept apart from the rest of
    its validation so that it can run later or in another process
    (:func:`load_vis_json_unchecked`; ``genvis evaluate`` runs it beside the reading of the
    results): every string decoded as pycocotools would, its runs adding up to exactly H x W
    (:func:`genvis.data.masks.compressed_rle_problem`). Until it has passed, no RLE of the
    dataset may reach pycocotools (a garbled string makes it loop for hours).

    Args:
        source: the file (named in the error).
        compressed: (counts string, H * W, (where, frame)) of every compressed RLE, in file order.
    """

    def __init__(self, source: str | os.PathLike, compressed: list[tuple[str, int, tuple[str, int]]]):
        self.source = source
        self.compressed = compressed

    def problem(self) -> str | None:
        """``"annotation A frame T: problem"`` of the first invalid string (file order), or None."""
        if not self.compressed:
            return None
        bad = mask_ops.compressed_rle_problem([c for c, _, _ in self.compressed], [p for _, p, _ in self.compressed])
        if bad is None:
            return None
        where, t = self.compressed[bad[0]][2]
        return f"{where} frame {t}: {bad[1]}"

    def run(self) -> None:
        """Raises InputError naming the file, the annotation, the frame and the problem of the
        first invalid string; returns None when all are valid."""
        problem = self.problem()
        if problem is not None:
            raise InputError(self.source, problem)


def parse_vis_dict(data: Any, source: str | os.PathLike | None = None) -> VISDataset:
    """Validate a parsed VIS json object and build a :class:`VISDataset`.

    Args:
        data: the parsed json.
        source: the file it came from (used in error messages and as ``.path``).

    Raises:
        InputError: the object is not a VIS split or is inconsistent (message names
            ``source`` and the offending video / annotation).
    """
    ds, check = _parse_vis_dict(data, source)
    check.run()
    return ds


def _parse_vis_dict(data: Any, source: str | os.PathLike | None) -> tuple[VISDataset, RleCheck]:
    """:func:`parse_vis_dict` but for the check of the compressed RLE strings, returned."""
    src = source if source is not None else "<vis json>"
    if not isinstance(data, dict):
        raise InputError(src, f"not a VIS annotation file: top level is a {type(data).__name__}, expected an object")
    if "videos" not in data:
        hint = " (this looks like a COCO image dataset, not a video one)" if "images" in data else ""
        raise InputError(src, f"not a VIS annotation file: no 'videos' list{hint}")
    if not isinstance(data["videos"], list):
        raise InputError(src, "not a VIS annotation file: 'videos' is not a list")
    if not isinstance(data.get("categories"), list):
        raise InputError(src, "not a VIS annotation file: no 'categories' list")

    categories = []
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise InputError(src, f"categories[{i}]: needs 'id' and 'name'")
        extra = {k: v for k, v in c.items() if k not in ("id", "name", "supercategory")}
        categories.append(CategoryRecord(_int(c["id"], f"categories[{i}].id", src), str(c["name"]),
                                         str(c.get("supercategory", "") or ""), extra))
    cat_ids = {c.id for c in categories}
    if len(cat_ids) != len(categories):
        raise InputError(src, "duplicate category ids")

    videos: list[VideoRecord] = []
    for i, v in enumerate(data["videos"]):
        if not isinstance(v, dict):
            raise InputError(src, f"videos[{i}] is not an object")
        missing = [k for k in ("id", "file_names", "width", "height") if k not in v]
        if missing:
            raise InputError(src, f"videos[{i}] lacks {', '.join(missing)} (not a VIS video entry)")
        vid = _int(v["id"], f"videos[{i}].id", src)
        names = v["file_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(src, f"video {vid}: 'file_names' must be a list of strings")
        length = _int(v["length"], f"video {vid} length", src) if "length" in v else len(names)
        if length != len(names):
            raise InputError(src, f"video {vid}: 'length' is {length} but 'file_names' lists {len(names)} frames")
        if length < 1:
            raise InputError(src, f"video {vid} has no frames (empty 'file_names')")
        for j, name in enumerate(names):
            if not _inside_root(name):
                raise InputError(src, f"video {vid}: file_names[{j}] = {name!r} leaves the image root "
                                 "(absolute path or '..'); file names are relative to the image root")
        w, h = _int(v["width"], f"video {vid} width", src), _int(v["height"], f"video {vid} height", src)
        if w <= 0 or h <= 0:
            raise InputError(src, f"video {vid}: non-positive size {w}x{h}")
        if w * h > mask_ops.MAX_MASK_PIXELS:
            raise InputError(src, f"video {vid}: frame size {w}x{h} is too large (more than "
                                  f"{mask_ops.MAX_MASK_PIXELS} pixels, the most a COCO RLE can hold)")
        extra = {k: val for k, val in v.items() if k not in _VIDEO_KEYS}
        videos.append(VideoRecord(vid, list(names), length, w, h, extra))
    by_id = {v.id: v for v in videos}
    if len(by_id) != len(videos):
        raise InputError(src, "duplicate video ids")

    raw_anns = data.get("annotations")
    annotations: list[AnnotationRecord] | None
    compressed: list[tuple[str, int, tuple[str, int]]] = []  # (counts, H * W, place): checked by RleCheck
    if raw_anns is None:
        annotations = None
    elif not isinstance(raw_anns, list):
        raise InputError(src, "'annotations' must be a list or null")
    else:
        annotations = []
        seen: set[int] = set()
        for i, a in enumerate(raw_anns):
            annotations.append(_parse_annotation(a, i, by_id, cat_ids, src, compressed))
            if annotations[-1].id in seen:
                raise InputError(src, f"duplicate annotation id {annotations[-1].id}")
            seen.add(annotations[-1].id)

    info = {k: v for k, v in data.items() if k not in ("videos", "annotations", "categories")}
    ds = VISDataset(videos, annotations, categories, Path(source) if source is not None else None, info)
    return ds, RleCheck(src, compressed)


def _parse_annotation(a: Any, i: int, by_id: dict[int, VideoRecord], cat_ids: set[int],
                      src: Path | str, compressed: list[tuple[str, int, tuple[str, int]]] | None = None
                      ) -> AnnotationRecord:
    if not isinstance(a, dict):
        raise InputError(src, f"annotations[{i}] is not an object")
    missing = [k for k in ("video_id", "category_id", "segmentations") if k not in a]
    if missing:
        raise InputError(src, f"annotations[{i}] lacks {', '.join(missing)} (not a VIS annotation)")
    aid = _int(a.get("id", i + 1), f"annotations[{i}].id", src)
    where = f"annotation {aid}"
    vid = _int(a["video_id"], f"{where} video_id", src)
    if vid not in by_id:
        raise InputError(src, f"{where}: unknown video_id {vid}")
    video = by_id[vid]
    cid = _int(a["category_id"], f"{where} category_id", src)
    if cid not in cat_ids:
        raise InputError(src, f"{where}: unknown category_id {cid}")
    segs = a["segmentations"]
    if not isinstance(segs, list):
        raise InputError(src, f"{where}: 'segmentations' must be a list (one entry per frame)")
    if len(segs) != video.length:
        raise InputError(src, f"{where}: {len(segs)} segmentations but video {vid} has {video.length} frames")
    # An empty polygon list means "absent" (the official API tests segmentations for truthiness).
    segs = [None if isinstance(s, list) and not s else s for s in segs]
    vsize = [video.height, video.width]
    if compressed is not None and all(type(s) is dict and len(s) == 2 and type(s.get("counts")) is str
                                      and s.get("size") == vsize for s in segs if s is not None):
        # the usual case: compressed RLEs of the video's size, or null (what _check_seg checks)
        pixels = video.height * video.width
        compressed.extend([(s["counts"], pixels, (where, t)) for t, s in enumerate(segs) if s is not None])
    else:
        for t, s in enumerate(segs):
            _check_seg(s, t, video, where, src, compressed)
    areas = a.get("areas")
    if areas is None:   # pycocotools' area only sums runs: safe before the counts are checked
        rles = [mask_ops.to_rle(s, video.height, video.width) for s in segs]
        areas = mask_ops.rle_areas(rles)
    elif not isinstance(areas, list) or len(areas) != video.length:
        raise InputError(src, f"{where}: 'areas' must list one value per frame ({video.length})")
    elif not all(v is None or (_finite_number(v) and v >= 0) for v in areas):
        raise InputError(src, f"{where}: 'areas' must be null or finite numbers >= 0")
    bboxes = a.get("bboxes")
    if bboxes is None:
        bboxes = [None] * video.length
    elif not isinstance(bboxes, list) or len(bboxes) != video.length:
        raise InputError(src, f"{where}: 'bboxes' must list one value per frame ({video.length})")
    iscrowd = _int(a.get("iscrowd", 0) or 0, f"{where} iscrowd", src)
    extra = {k: v for k, v in a.items() if k not in _ANN_KEYS}
    return AnnotationRecord(aid, vid, cid, list(segs), list(areas), list(bboxes), iscrowd, extra)


def load_vis_json(path: str | os.PathLike) -> VISDataset:
    """Load and validate a YouTube-VIS 2019/2021/2022 or OVIS json.

    Args:
        path: the annotation file (train, valid or test split).

    Returns:
        A :class:`VISDataset`; ``annotations`` is None when the file has none (OVIS valid).

    Raises:
        InputError: missing/unreadable file, not json, not VIS format, or inconsistent
            content; the message names ``path`` and the problem.
    """
    path = Path(path)
    return parse_vis_dict(read_json_file(path), path)


def load_vis_json_unchecked(path: str | os.PathLike) -> tuple[VISDataset, RleCheck]:
    """:func:`load_vis_json` without the check of the compressed RLE strings, which is returned
    instead: the caller runs it (:meth:`RleCheck.run`, or :meth:`RleCheck.problem` in another
    process) before any pycocotools call on the dataset's masks. ``genvis evaluate`` checks
    the ground truth this way beside the reading of the results.

    Raises:
        InputError: as :func:`load_vis_json`, but for invalid RLE strings.
    """
    path = Path(path)
    return _parse_vis_dict(read_json_file(path), path)


def save_vis_json(ds: VISDataset, path: str | os.PathLike) -> None:
    """Write ``ds`` as VIS json to ``path`` atomically (nothing half-written on failure)."""
    atomic_write_json(path, ds.to_json())
