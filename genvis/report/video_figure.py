"""Predicted tracks of a dataset video drawn beside its ground truth (``genvis visualize``).

A video AP number does not say *how* a method fails on a video: a missed instance, a
broken mask, or two instances whose identities swap half way. This module draws the
ground-truth instances of one video (top row / left half) and the predicted instances of a
results json (bottom row / right half) on the video's frames. Every prediction kept
(score >= threshold, best first, at most ``max_instances``) is matched one to one to a
ground-truth instance by Hungarian matching (scipy) on class-agnostic video IoU (sum of
intersections over sum of unions, as the YouTube-VIS evaluation); a matched prediction is
drawn in its instance's colour, so an identity switch shows as a colour that jumps from
one object to another, and an unmatched one in a colour no instance uses.

Two outputs: a PNG contact sheet of ``frames`` evenly spaced frames with a legend (score,
category, matched instance and video IoU per prediction), and an H.264 mp4 of every frame,
ground truth and predictions side by side. Both are written atomically; the mp4 reads,
decodes and draws one frame at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from genvis.errors import InputError
from genvis.report.overlay import PALETTE, Mp4Writer, overlay
from genvis.utils.io import atomic_path


@dataclass
class Track:
    """One drawn instance.

    Attributes:
        label: legend text.
        colour: RGB float [3] (0-255).
        rles: one compressed RLE (or None where absent) per frame.
    """

    label: str
    colour: np.ndarray
    rles: list


def video_tracks(dataset: Any, results: Sequence[Any], video_id: int, score_threshold: float = 0.3,
                 max_instances: int = 10) -> tuple[list[Track], list[Track]]:
    """Ground-truth and predicted tracks of one video, colours matched by video IoU.

    Args:
        dataset: the split (``genvis.data.ytvis.VISDataset``); its annotations (if any) are
            the ground truth.
        results: ``genvis.data.results.VideoResult`` objects (any videos; the others are
            ignored), validated against ``dataset``.
        video_id: the video to draw.
        score_threshold: predictions scoring below it are not drawn.
        max_instances: at most this many predictions (the best scoring).

    Returns:
        (ground-truth tracks in annotation order, predicted tracks best first).

    Raises:
        InputError: ``video_id`` is not in ``dataset``.
    """
    from genvis.data import masks as mask_ops
    from genvis.evaluate.ytvis_eval import track_ious
    from genvis.utils.matching import hungarian

    try:
        video = dataset.video(video_id)
    except (KeyError, InputError):
        raise InputError(getattr(dataset, "path", None), f"video {video_id} is not in the annotation file") from None
    h, w = video.height, video.width
    anns = dataset.annotations_of(video_id) if dataset.has_annotations else []
    gt_rles = [[mask_ops.to_rle(s, h, w) if s is not None else None for s in a.segmentations] for a in anns]
    preds = sorted((r for r in results if int(r.video_id) == int(video_id) and r.score >= score_threshold),
                   key=lambda r: -r.score)[:max(int(max_instances), 0)]
    ious = track_ious([list(r.segmentations) for r in preds], gt_rles, video.length)
    match: dict[int, int] = {}
    if ious.size:
        for i, j in zip(*hungarian(-ious)):
            if ious[i, j] > 0:
                match[int(i)] = int(j)
    gt_tracks = [Track(f"instance {a.id} ({dataset.category_name(a.category_id)})", PALETTE[j % len(PALETTE)], rles)
                 for j, (a, rles) in enumerate(zip(anns, gt_rles))]
    pred_tracks = []
    spare = len(anns)
    for i, r in enumerate(preds):
        name = dataset.category_name(r.category_id)
        if i in match:
            j = match[i]
            colour = PALETTE[j % len(PALETTE)]
            label = f"{r.score:.2f} {name} -> instance {anns[j].id}, video IoU {ious[i, j]:.2f}"
        else:
            colour = PALETTE[spare % len(PALETTE)]
            spare += 1
            label = f"{r.score:.2f} {name}, unmatched"
        pred_tracks.append(Track(label, colour, list(r.segmentations)))
    return gt_tracks, pred_tracks


def draw_tracks(frame: np.ndarray, tracks: Sequence[Track], t: int) -> np.ndarray:
    """Frame ``t`` of ``tracks`` blended onto ``frame`` (RGB uint8 [H, W, 3]); returns uint8
    [H, W, 3]. Earlier tracks are drawn last, on top: :func:`video_tracks` lists predictions by
    descending score, so where tracks overlap the best-scoring one is the one seen.

    Raises:
        InputError: a mask of another size than the frame.
    """
    from genvis.data import masks as mask_ops

    h, w = frame.shape[:2]
    drawn = [(tr, tr.rles[t]) for tr in reversed(tracks) if t < len(tr.rles) and tr.rles[t] is not None]
    masks = [mask_ops.decode_rle(rle, h, w) for _, rle in drawn]
    for m, (tr, _) in zip(masks, drawn):
        if m.shape != (h, w):
            raise InputError(None, f"a mask of '{tr.label}' is {m.shape[0]}x{m.shape[1]} on a {h}x{w} frame")
    return overlay(frame, masks, [tr.colour for tr, _ in drawn])


def _frame(image_root: Path, video: Any, t: int) -> np.ndarray:
    from genvis.data.frames import read_frame

    frame = read_frame(image_root / video.file_names[t])
    if frame.shape[:2] != (video.height, video.width):
        raise InputError(image_root / video.file_names[t], f"frame is {frame.shape[0]}x{frame.shape[1]}, the "
                         f"annotation file says {video.height}x{video.width}")
    return frame


def write_contact_sheet(dataset: Any, image_root: str | os.PathLike, video_id: int, gt: Sequence[Track],
                        pred: Sequence[Track], path: str | os.PathLike, frames: int = 8,
                        title: str | None = None) -> list[int]:
    """PNG: ``frames`` evenly spaced frames, ground truth above, predictions below, legend.

    Returns:
        the frame indices drawn.

    Raises:
        InputError: a frame is missing or of another size than the annotation file says.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    video = dataset.video(video_id)
    n = max(1, min(int(frames), video.length))
    idx = sorted(set(np.linspace(0, video.length - 1, n).round().astype(int).tolist()))
    root = Path(image_root)
    aspect = video.height / video.width
    legend_h = 0.2 + 0.16 * -(-(len(gt) + len(pred)) // 2)     # inches: two legend columns
    panels_h = 2 * (2.2 * aspect + 0.25) + 0.35                  # two rows with frame titles, suptitle
    height = panels_h + legend_h
    fig, axes = plt.subplots(2, len(idx), figsize=(2.2 * len(idx), height), dpi=110, squeeze=False)
    try:
        for c, t in enumerate(idx):
            frame = _frame(root, video, t)
            for r, tracks in enumerate((gt, pred)):
                ax = axes[r, c]
                ax.imshow(draw_tracks(frame, tracks, t))
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"frame {t}", fontsize=8)
        axes[0, 0].set_ylabel("ground truth", fontsize=8)
        axes[1, 0].set_ylabel("predictions", fontsize=8)
        handles = [Patch(color=tr.colour / 255.0, label=f"GT {tr.label}") for tr in gt] + \
                  [Patch(color=tr.colour / 255.0, label=f"pred {tr.label}") for tr in pred]
        if handles:
            fig.legend(handles=handles, loc="lower center", fontsize=7, ncol=2, frameon=False)
        fig.suptitle(title or f"video {video_id} ({video.length} frames)", fontsize=9)
        fig.tight_layout(rect=(0, legend_h / height, 1, 1 - 0.3 / height), h_pad=0.4, w_pad=0.4)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return idx


def write_side_by_side_video(dataset: Any, image_root: str | os.PathLike, video_id: int, gt: Sequence[Track],
                             pred: Sequence[Track], path: str | os.PathLike, fps: float = 6.0,
                             progress: bool = False) -> int:
    """H.264 mp4 of every frame: ground truth left, predictions right (8-pixel white gap).

    Returns:
        the number of frames written.

    Raises:
        InputError: a frame is missing or of another size than the annotation file says.
    """
    from tqdm import tqdm

    video = dataset.video(video_id)
    root = Path(image_root)
    with atomic_path(path) as tmp:
        writer = Mp4Writer(tmp, fps)
        try:
            for t in tqdm(range(video.length), desc=f"video {video_id}", unit="frame", disable=not progress):
                frame = _frame(root, video, t)
                gap = np.full((frame.shape[0], 8, 3), 255, dtype=np.uint8)
                writer.add(np.concatenate([draw_tracks(frame, gt, t), gap, draw_tracks(frame, pred, t)], axis=1))
        finally:
            writer.close()
    return video.length
