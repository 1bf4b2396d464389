"""DAVIS layout -> YouTube-VIS json (one category, one instance per object id).

Layout (as published by DAVIS 2016/2017)::

    ROOT/JPEGImages/<sequence>/<frame>.jpg
    ROOT/Annotations/<sequence>/<frame>.png   palette PNG: 0 background, 1..n object ids
                                              (255, where used, marks void and is ignored)

Each object id of a sequence becomes one annotation (null on the frames where it is
absent); video ids follow the sorted list of all sequences of ROOT (1-based), so train
and val parts of one ROOT never share ids. ``file_names`` are relative to
``ROOT/JPEGImages``. The split by sequence is deterministic for a seed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from genvis.data import masks as mask_ops
from genvis.data.frames import IMAGE_SUFFIXES, image_size
from genvis.data.ytvis import AnnotationRecord, CategoryRecord, VideoRecord, VISDataset
from genvis.errors import InputError

VOID_ID = 255


def list_sequences(root: str | os.PathLike) -> list[str]:
    """Sorted sequence names (folders of ``ROOT/JPEGImages``).

    Raises:
        InputError: ``ROOT`` lacks ``JPEGImages`` or ``Annotations``, or has no sequences.
    """
    root = Path(root)
    for sub in ("JPEGImages", "Annotations"):
        if not (root / sub).is_dir():
            raise InputError(root, f"not a DAVIS-layout folder: no {sub}/ directory")
    seqs = sorted(p.name for p in (root / "JPEGImages").iterdir() if p.is_dir())
    if not seqs:
        raise InputError(root / "JPEGImages", "no sequence folders")
    return seqs


def split_sequences(sequences: Sequence[str], split: str, val_fraction: float, seed: int) -> list[str]:
    """Deterministic split by sequence: shuffle the sorted names with ``seed``, the first
    ``round(val_fraction * n)`` (at least 1, at most n - 1) are "val", the rest "train".

    Returns the chosen part, sorted. Raises InputError for a bad split name or fraction.
    """
    if split not in ("train", "val"):
        raise InputError("--split", f"must be 'train' or 'val', got {split!r}")
    if not 0.0 < val_fraction < 1.0:
        raise InputError("--val-fraction", f"must be in (0, 1), got {val_fraction}")
    names = sorted(sequences)
    if len(names) < 2:
        raise InputError("--split", f"needs at least 2 sequences, found {len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    n_val = min(len(names) - 1, max(1, round(val_fraction * len(names))))
    val = {names[i] for i in order[:n_val]}
    return sorted(n for n in names if (n in val) == (split == "val"))


def _read_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L", "I", "I;16", "1"):
                arr = np.asarray(im)
            else:  # RGB masks: any non-black pixel is object 1 (DAVIS 2016 style binary)
                arr = (np.asarray(im.convert("L")) > 0).astype(np.uint8)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"unreadable mask image ({exc})") from exc
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr


def import_davis(root: str | os.PathLike, sequences: Sequence[str] | None = None, split: str | None = None,
                 val_fraction: float = 0.25, seed: int = 0, category: str = "object",
                 progress: bool = False) -> VISDataset:
    """Build a YouTube-VIS dataset from a DAVIS-layout folder.

    Args:
        root: the DAVIS root (``JPEGImages/``, ``Annotations/``).
        sequences: names to import (default: all, or the ``split`` part).
        split: "train" or "val" for the deterministic split by sequence (see
            :func:`split_sequences`); ignored when ``sequences`` is given.
        val_fraction, seed: the split's held-out fraction and seed.
        category: the single category's name (id 1).

    Returns:
        A :class:`VISDataset` (sizes in pixels from the frames; ``areas``/``bboxes`` from the masks).

    Raises:
        InputError: missing layout or sequence, a frame without a mask, or a mask whose
            size differs from its frame (the message names the mask file).
    """
    from tqdm import tqdm

    root = Path(root)
    all_seqs = list_sequences(root)
    if sequences:
        unknown = [s for s in sequences if s not in all_seqs]
        if unknown:
            raise InputError(root / "JPEGImages", f"no sequence(s) {', '.join(unknown)}")
        chosen = list(sequences)
    elif split is not None:
        chosen = split_sequences(all_seqs, split, val_fraction, seed)
    else:
        chosen = all_seqs
    videos: list[VideoRecord] = []
    anns: list[AnnotationRecord] = []
    for seq in tqdm(chosen, desc="import-davis", unit="seq", disable=not progress):
        vid = all_seqs.index(seq) + 1
        frame_paths = sorted(p for p in (root / "JPEGImages" / seq).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not frame_paths:
            raise InputError(root / "JPEGImages" / seq, "no frames")
        h, w = image_size(frame_paths[0])
        ids_masks = []
        for fp in frame_paths:
            mp = root / "Annotations" / seq / (fp.stem + ".png")
            if not mp.is_file():
                raise InputError(mp, f"missing mask for frame {fp.name}")
            fh, fw = image_size(fp)
            m = _read_mask(mp)
            if m.shape[:2] != (fh, fw):
                raise InputError(mp, f"mask size {m.shape[1]}x{m.shape[0]} (WxH) differs from its frame "
                                     f"{fp.name} {fw}x{fh}")
            if (fh, fw) != (h, w):
                raise InputError(fp, f"frame size {fw}x{fh} differs from the sequence's first frame {w}x{h}")
            ids_masks.append(m)
        labels = np.stack(ids_masks)  # [T, H, W]
        obj_ids = [int(i) for i in np.unique(labels) if i != 0 and i != VOID_ID]
        videos.append(VideoRecord(vid, [f"{seq}/{p.name}" for p in frame_paths], len(frame_paths), w, h))
        for oid in obj_ids:
            segs = mask_ops.encode_masks_or_none(labels == oid)
            anns.append(AnnotationRecord(len(anns) + 1, vid, 1, segs, mask_ops.rle_areas(segs),
                                         mask_ops.rle_bboxes(segs), 0, {"davis_object_id": oid}))
    videos.sort(key=lambda v: v.id)
    anns.sort(key=lambda a: (a.video_id, a.extra["davis_object_id"]))
    for i, a in enumerate(anns):
        a.id = i + 1
    info = {"info": {"description": f"DAVIS-layout import of {root}", "sequences": [v.name for v in videos]}}
    return VISDataset(videos, anns, [CategoryRecord(1, category, category)], None, info)
