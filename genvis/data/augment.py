"""Augmented views of a training split: random flip and crop, the same for every frame of a video.

The paper trains GenVIS on randomly flipped and cropped frames (Sec. 4.1, "random flipping
and cropping"), so the frozen detector sees every training video under many views and the
video modules many sets of frame queries per video. A stage-one cache holds one view per
frame; this module makes the extra views *before* stage one, as new videos of a new split,
so the detector, the cache and stage two need no change: extract the augmented split and
train on it.

View ``v`` (1..K) of a video is drawn from ``numpy.random.default_rng([seed, video id, v])``:

* a horizontal flip with probability 0.5;
* a crop of ``s * H`` x ``s * W`` pixels (``s`` uniform in [``min_scale``, 1], so the aspect
  ratio is kept) at a uniform position, resized back to ``H x W`` (frames bilinear,
  ground-truth masks nearest), so every view keeps the video's size.

One transform per video and view, as video mappers apply one augmentation to all frames of a
training sample (temporal consistency). Masks are transformed with the frames; an instance
cropped out of a frame is absent there (``None``), and one cropped out of every frame is
dropped. The output split holds the original videos (view 0, ids unchanged) and K views of
each: video id ``v * offset + id`` and annotation id ``v * offset_a + id``, with ``offset`` /
``offset_a`` the smallest power of ten above every video / annotation id. Each view's json
entry records ``augmentation: {of, view, flip, crop: [x, y, w, h]}`` (crop in pixels of
the original frame).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from tqdm import tqdm

from genvis.data import masks as mask_ops
from genvis.data.frames import read_frame
from genvis.data.ytvis import AnnotationRecord, VideoRecord, VISDataset, save_vis_json
from genvis.errors import ConfigError, InputError
from genvis.utils.io import DIR_MODE, atomic_write_json, sha256_file


@dataclass(frozen=True)
class ViewTransform:
    """One augmented view of a video: optional horizontal flip after a crop.

    Attributes:
        flip: mirror left-right (after cropping).
        crop: ``(x, y, w, h)`` in pixels of the original frame; the crop is resized back to
            the original ``H x W``.
    """

    flip: bool
    crop: tuple[int, int, int, int]


def draw_view(height: int, width: int, rng: np.random.Generator, min_scale: float) -> ViewTransform:
    """Draw a flip (p = 0.5) and a crop of relative side ``s ~ U[min_scale, 1]`` at a uniform position.

    Raises:
        ConfigError: ``min_scale`` outside (0, 1].
    """
    if not 0.0 < min_scale <= 1.0:
        raise ConfigError("min_scale", f"must be in (0, 1], got {min_scale}")
    flip = bool(rng.random() < 0.5)
    s = float(rng.uniform(min_scale, 1.0))
    w, h = max(1, round(s * width)), max(1, round(s * height))
    x = int(rng.integers(0, width - w + 1))
    y = int(rng.integers(0, height - h + 1))
    return ViewTransform(flip, (x, y, w, h))


def transform_frame(frame: np.ndarray, tf: ViewTransform) -> np.ndarray:
    """Apply a view to one frame: uint8 ``[H, W, 3]`` -> uint8 ``[H, W, 3]`` (bilinear resize)."""
    height, width = frame.shape[:2]
    x, y, w, h = tf.crop
    im = Image.fromarray(frame[y:y + h, x:x + w]).resize((width, height), Image.BILINEAR)
    out = np.asarray(im)
    return out[:, ::-1].copy() if tf.flip else out


def transform_masks(masks: np.ndarray, tf: ViewTransform) -> np.ndarray:
    """Apply a view to masks: bool ``[T, H, W]`` -> bool ``[T, H, W]`` (nearest resize, like the frames' grid)."""
    t, height, width = masks.shape
    x, y, w, h = tf.crop
    crop = torch.from_numpy(np.ascontiguousarray(masks[:, y:y + h, x:x + w])).to(torch.uint8)
    out = F.interpolate(crop[None].float(), size=(height, width), mode="nearest")[0] > 0.5
    if tf.flip:
        out = out.flip(-1)
    return out.numpy()


def _offset(ids: list[int]) -> int:
    """The smallest power of ten above every id (at least 10)."""
    top = max([abs(i) for i in ids], default=0)
    return 10 ** max(1, len(str(top)))


def _view_dir(video: VideoRecord, view: int) -> str:
    return video.name if view == 0 else f"{video.name}@aug{view}"


def _write_frames(image_root: Path, out_root: Path, video: VideoRecord, view: int,
                  tf: ViewTransform | None) -> list[str]:
    """Write one view's frames under ``out_root`` (whole folder or nothing); return the file names."""
    folder = _view_dir(video, view)
    names = [f"{folder}/{Path(f).name}" for f in video.file_names]
    if len(set(names)) != len(names):
        raise InputError(image_root, f"video {video.id}: frame file names repeat within the video")
    final = out_root / folder
    if final.is_dir() and all((out_root / n).is_file() for n in names):
        return names                                  # written by an earlier (interrupted) run
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        for src_name, dst_name in zip(video.file_names, names):
            src, dst = image_root / src_name, tmp / Path(dst_name).name
            if tf is None:
                if not src.is_file():
                    raise InputError(src, "frame file not found")
                shutil.copyfile(src, dst)
            else:
                img = Image.fromarray(transform_frame(read_frame(src), tf))
                img.save(dst, quality=95) if dst.suffix.lower() in (".jpg", ".jpeg") else img.save(dst)
        os.chmod(tmp, DIR_MODE)                      # mkdtemp makes it owner-only
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
        raise
    return names


def _source_hash(ds: VISDataset) -> str:
    """SHA-256 of the split's json file (of its json text when it was not read from a file)."""
    if ds.path is not None and Path(ds.path).is_file():
        return sha256_file(ds.path)
    return hashlib.sha256(json.dumps(ds.to_json(), sort_keys=True).encode()).hexdigest()


def _claim(out_dir: Path, settings: dict) -> None:
    """Record the settings in ``out_dir/augment.json``; refuse a folder written with others.

    Frame folders are kept across runs (resume), so views of other settings must not be
    mistaken for these.
    """
    marker = out_dir / "augment.json"
    if marker.is_file():
        try:
            old = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(marker, f"unreadable ({exc}); delete the folder to start over") from exc
        if old != settings:
            diff = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v)
            raise InputError(marker, f"the folder holds views made with other settings ({diff}); "
                             "use another --out or delete it")
        return
    atomic_write_json(marker, settings)


def _view_annotation(ann: AnnotationRecord, video: VideoRecord, tf: ViewTransform, ann_id: int,
                     video_id: int) -> AnnotationRecord | None:
    """The annotation seen through a view (None when the crop leaves it no pixel in any frame)."""
    masks = transform_masks(mask_ops.annotation_masks(ann, video), tf)
    rles = mask_ops.encode_masks_or_none(masks)
    if all(r is None for r in rles):
        return None
    return AnnotationRecord(ann_id, video_id, ann.category_id, rles, mask_ops.rle_areas(rles),
                            mask_ops.rle_bboxes(rles), ann.iscrowd, dict(ann.extra))


def augment_split(ds: VISDataset, image_root: str | os.PathLike, out_dir: str | os.PathLike,
                  views: int, seed: int = 0, min_scale: float = 0.6, progress: bool = True) -> VISDataset:
    """Write the originals and ``views`` augmented views of every video of a split.

    Args:
        ds: the split, with ground truth.
        image_root: folder the split's ``file_names`` are relative to.
        out_dir: writes ``out_dir/frames/<video>[@aug<v>]/<frame>`` and
            ``out_dir/annotations.json`` (``file_names`` relative to ``out_dir/frames``).
        views: K >= 1 augmented views per video (the split gets (K + 1) x the videos).
        seed: the views' seed (module docstring). min_scale: smallest crop side, relative.

    Returns:
        The augmented split (also saved). Resumable: a video folder written whole by an
        earlier run is kept (views are deterministic), and the json is written last,
        atomically. ``out_dir/augment.json`` records the settings and a hash of the source
        split, so a folder made with other settings is refused rather than reused.

    Raises:
        InputError: no ground truth, a missing or unreadable frame, frame names repeating in
            a video, two videos sharing a frame folder, or ``out_dir`` made with other settings
            or from another split.
        ConfigError: views < 1 or min_scale outside (0, 1].
    """
    if int(views) < 1:
        raise ConfigError("views", f"must be >= 1, got {views}")
    if not 0.0 < min_scale <= 1.0:
        raise ConfigError("min_scale", f"must be in (0, 1], got {min_scale}")
    if ds.annotations is None:
        raise InputError(ds.path or "annotations", "has no ground truth; augmented views need masks to transform")
    image_root, out_dir = Path(image_root), Path(out_dir)
    folders = [v.name for v in ds.videos]
    if len(set(folders)) != len(folders):
        dup = sorted({f for f in folders if folders.count(f) > 1})[:3]
        raise InputError(ds.path or "annotations", f"several videos share a frame folder ({dup}); "
                         "augmented views are written one folder per video")
    _claim(out_dir, {"views": int(views), "seed": int(seed), "min_scale": float(min_scale),
                     "source_sha256": _source_hash(ds)})
    frames = out_dir / "frames"
    v_off = _offset(ds.video_ids)
    a_off = _offset([a.id for a in ds.annotations])
    videos: list[VideoRecord] = []
    anns: list[AnnotationRecord] = []
    for video in tqdm(ds.videos, desc="augment", unit="video", disable=not progress):
        for view in range(int(views) + 1):
            tf = None if view == 0 else draw_view(video.height, video.width,
                                                  np.random.default_rng([int(seed), int(video.id), view]), min_scale)
            names = _write_frames(image_root, frames, video, view, tf)
            vid = video.id + view * v_off
            extra = dict(video.extra)
            if tf is not None:
                extra["augmentation"] = {"of": video.id, "view": view, "flip": tf.flip, "crop": list(tf.crop)}
            videos.append(dataclasses.replace(video, id=vid, file_names=names, extra=extra))
            for ann in ds.annotations_of(video.id):
                if tf is None:
                    anns.append(ann)
                    continue
                new = _view_annotation(ann, video, tf, ann.id + view * a_off, vid)
                if new is not None:
                    anns.append(new)
    out = VISDataset(videos, anns, list(ds.categories), None, dict(ds.info))
    save_vis_json(out, out_dir / "annotations.json")
    out.path = out_dir / "annotations.json"
    return out
