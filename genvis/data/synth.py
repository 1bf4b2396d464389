"""Synthetic OVIS-style occlusion benchmark: textured shapes that move, cross, hide and return.

Each video shows 2-6 instances of textured shapes over a smooth random background. The
category of an instance is its *shape and texture family* together (e.g. a striped disc
and a checkered disc are different categories; colours are random per instance), so a
small frame detector can learn it, while telling two instances of one category apart
needs temporal context. What the generator puts in, because it is what GenVIS is about
(paper Sec. 1, 4; OVIS):

* look-alike instances: a second instance of the same category with near-identical
  colours, sent through the same point at the same time as the first (crossing; or
  ``lookalike_offset`` radii beside it, so that neither hides the other completely);
* motion with crossings: pairs of instances share an anchor point and time;
* heavy occlusion by depth order: instances are drawn far to near and an optional
  un-annotated occluder bar passes in front; masks are the *visible* parts only;
* leaving and re-entering: some instances bounce off a boundary beyond the frame edge,
  so they are out of view for several frames and come back;
* late appearance: some instances exist only from a frame in the first half onward;
* lengths from ``min_length`` (10) to ``max_length`` (110) frames, log-uniform, with
  the first video of each split at ``max_length`` and the second at ``min_length``.

Two styles (``SynthConfig.style``):

* ``"shared"`` (the original benchmark, the default): shapes and textures are shared
  between categories and colours are random per instance, objects 11-22% of the short side.
  A small frame detector finds it hard (frame mask AP 9-23), so video AP mostly measures
  detection.
* ``"distinct"`` (frames solved, association hard): every category has its own shape, its
  own texture and its own colour pair (jittered by a few grey levels per instance:
  ``color_jitter``; a look-alike twin by ``lookalike_jitter`` from its partner), and
  objects are 12-20% of the short side (the quickstart renders it at 128x160, so objects
  are as many pixels as the shared style's at 96x128 but less crowded), so frames are
  easier to segment and classify; but every instance of a category then looks alike, so telling two of them apart
  across crossings, occlusions and exits needs temporal context. The look-alike pair, the
  crossings, the occluder bar, leaving / re-entering and late appearance are as in
  ``"shared"``, with more of them (look-alike pair in 90% of the videos, a second
  look-alike pair in 50%; 85% of the instances outside a pair and 40% of those in one
  leave the frame mid-video and come back). Every instance has a dark contour
  (:func:`outline_width`), so two touching look-alikes are separable within one frame (as
  real objects are by their occlusion boundaries) but not told apart across frames; the
  occluder bar is grey (never a category's colour); a visible fragment smaller than the
  annotation threshold (:func:`min_visible_area`, 0.2% of the frame) is not annotated.

Output (:func:`write_synth_dataset`): ``DIR/frames/<video>/<00000>.jpg``,
``DIR/train.json`` and ``DIR/valid.json`` (OVIS format, both with ground truth,
``file_names`` relative to ``DIR/frames``), ``DIR/synth_config.json``. Deterministic for
a config (seed); each video depends only on (seed, split, index). Rendering is numpy on
per-instance crops (no per-pixel Python loops).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image
from scipy.ndimage import binary_erosion

from genvis.data import masks as mask_ops
from genvis.data.ytvis import AnnotationRecord, CategoryRecord, VideoRecord, VISDataset, save_vis_json
from genvis.errors import ConfigError
from genvis.utils.io import atomic_write_json

SYNTH_VERSION = 2  # bump when the rendering changes: a resumed run then re-renders every video

# (name, shape, texture); category id = position + 1. Shapes and textures are shared between
# categories, so neither alone decides the category.
CATEGORIES: tuple[tuple[str, str, str], ...] = (
    ("striped_disc", "disc", "stripes"),
    ("checkered_square", "square", "checker"),
    ("dotted_triangle", "triangle", "dots"),
    ("ringed_annulus", "annulus", "rings"),
    ("checkered_ellipse", "ellipse", "checker"),
    ("striped_cross", "cross", "stripes"),
    ("checkered_disc", "disc", "checker"),
    ("dotted_square", "square", "dots"),
)

# The "distinct" style: (name, shape, texture), each shape and texture used once, and one
# colour pair (texture, base; RGB) per category.
DISTINCT_CATEGORIES: tuple[tuple[str, str, str], ...] = (
    ("striped_disc", "disc", "stripes"),
    ("checkered_square", "square", "checker"),
    ("dotted_triangle", "triangle", "dots"),
    ("ringed_annulus", "annulus", "rings"),
    ("plain_ellipse", "ellipse", "plain"),
    ("gridded_cross", "cross", "grid"),
)
DISTINCT_COLORS: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((235, 40, 40), (250, 220, 60)),    # red on yellow
    ((20, 20, 20), (240, 240, 240)),    # black on white
    ((30, 60, 220), (120, 230, 250)),   # blue on cyan
    ((40, 170, 40), (20, 60, 20)),      # green on dark green
    ((200, 60, 220), (200, 60, 220)),   # plain magenta
    ((250, 140, 20), (90, 40, 10)),     # orange on brown
)
STYLES = ("shared", "distinct")
#: the ``distinct`` style's contour colour: this share of the instance's base colour
OUTLINE_SHADE = 0.3
#: the ``distinct`` style's annotation threshold: the visible part of an instance in a frame
#: must cover at least this share of the frame to be annotated (:func:`min_visible_area`)
MIN_VISIBLE_FRACTION = 0.002
#: label of the pixels of an instance fragment below the annotation threshold
UNLABELLED = -3


@dataclass
class SynthConfig:
    """Settings of the synthetic benchmark (all sizes in pixels, lengths in frames).

    Raises ConfigError (from :meth:`validate`) on impossible values.
    """

    num_videos: int = 32
    seed: int = 0
    height: int = 96
    width: int = 128
    min_length: int = 10
    max_length: int = 110
    valid_fraction: float = 0.25
    min_instances: int = 2
    max_instances: int = 6
    num_categories: int = 6
    jpeg_quality: int = 90
    style: str = "shared"
    #: ``distinct`` style: standard deviation (grey levels, per RGB channel) of each instance's
    #: colours around its category's colour pair; instances of one category differ this much
    color_jitter: float = 5.0
    #: standard deviation (grey levels, per RGB channel) of a look-alike's colours around those
    #: of the instance it copies (both styles): how alike the two of a look-alike pair are
    lookalike_jitter: float = 6.0
    #: closest distance, in radii of the copied instance, between the centres of a look-alike
    #: pair as they cross (both styles); 0: through the same point at the same time, so the
    #: nearer hides the farther completely and only the direction of motion tells them apart after
    lookalike_offset: float = 0.0

    def validate(self) -> "SynthConfig":
        """Check ranges; return self. Raises ConfigError naming the setting."""
        checks = [
            ("num_videos", self.num_videos >= 1, ">= 1"),
            ("height", self.height >= 24, ">= 24"),
            ("width", self.width >= 24, ">= 24"),
            ("min_length", self.min_length >= 2, ">= 2"),
            ("max_length", self.max_length >= self.min_length, ">= min_length"),
            ("valid_fraction", 0.0 <= self.valid_fraction < 1.0, "in [0, 1)"),
            ("min_instances", self.min_instances >= 1, ">= 1"),
            ("max_instances", self.max_instances >= self.min_instances, ">= min_instances"),
            ("num_categories", 1 <= self.num_categories <= len(self.category_table),
             f"in 1..{len(self.category_table)} for style {self.style!r}"),
            ("jpeg_quality", 1 <= self.jpeg_quality <= 100, "in 1..100"),
            ("color_jitter", 0.0 <= self.color_jitter <= 128.0, "in [0, 128] grey levels"),
            ("lookalike_jitter", 0.0 <= self.lookalike_jitter <= 128.0, "in [0, 128] grey levels"),
            ("lookalike_offset", 0.0 <= self.lookalike_offset <= 10.0, "in [0, 10] radii"),
        ]
        if self.style not in STYLES:
            raise ConfigError("synth.style", f"must be one of {list(STYLES)}, got {self.style!r}")
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"synth.{name}", f"must be {rule}, got {getattr(self, name)!r}")
        return self

    @property
    def category_table(self) -> tuple[tuple[str, str, str], ...]:
        """(name, shape, texture) per category of this style (the first ``num_categories`` are used)."""
        return DISTINCT_CATEGORIES if self.style == "distinct" else CATEGORIES

    @property
    def num_valid(self) -> int:
        """Videos in valid.json: round(valid_fraction * num_videos), at least 1 when the fraction > 0."""
        if self.valid_fraction <= 0 or self.num_videos < 2:
            return 0
        return min(self.num_videos - 1, max(1, round(self.valid_fraction * self.num_videos)))


@dataclass
class InstanceSpec:
    """The plan of one instance (category index 0-based, motion, look, depth)."""

    category: int
    anchor: np.ndarray  # (x, y) pixels at anchor_time
    anchor_time: float
    velocity: np.ndarray  # (vx, vy) pixels / frame
    bounds: np.ndarray  # [[xlo, xhi], [ylo, yhi]] reflection box of the centre
    radius: float
    angle: float
    spin: float  # radians / frame
    period: float  # texture period, pixels
    colors: np.ndarray  # [2, 3] uint8-range floats (texture, base)
    depth: float  # larger = nearer
    start: int  # first frame it exists


@dataclass
class SynthVideo:
    """A rendered video: frames uint8 [T, H, W, 3], visible-instance labels int16 [T, H, W]
    (-1 background, -2 occluder, -3 an instance fragment below the annotation threshold
    (:func:`min_visible_area`), k = instance k), and the instance plans."""

    frames: np.ndarray
    labels: np.ndarray
    instances: list[InstanceSpec]
    #: int64 [K, T] pixels of each instance's whole shape inside the frame (before anything
    #: nearer hides part of it): the generator's own occlusion ground truth
    amodal_areas: np.ndarray | None = None


def occlusion_rates(video: SynthVideo) -> np.ndarray:
    """The generator's occlusion ground truth: float64 [K, T] share of each instance's in-frame
    shape hidden by nearer instances or the occluder bar (1 - visible / whole); NaN on frames
    where the instance is not visible.

    Raises:
        ValueError: ``video`` has no ``amodal_areas`` (not from :func:`render_video`).
    """
    if video.amodal_areas is None:
        raise ValueError("video has no amodal areas")
    k = len(video.instances)
    visible = np.stack([(video.labels == i).sum((1, 2)) for i in range(k)]).astype(np.float64)
    whole = video.amodal_areas.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(visible > 0, 1.0 - visible / np.maximum(whole, 1), np.nan)


def _fold(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect positions into [lo, hi] (bouncing motion), vectorised."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, (lo + hi) / 2)
    y = np.mod(x - lo, 2 * span)
    return lo + np.where(y > span, 2 * span - y, y)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.82
    if shape == "triangle":
        s3 = math.sqrt(3.0)
        return (v >= -0.55) & (s3 * u + v <= 1.0) & (-s3 * u + v <= 1.0)
    if shape == "annulus":
        rr = u * u + v * v
        return (rr <= 1.0) & (rr >= 0.45 ** 2)
    if shape == "ellipse":
        return u * u + (v / 0.55) ** 2 <= 1.0
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.34) & (av <= 1.0)) | ((av <= 0.34) & (au <= 1.0))
    raise ValueError(f"unknown shape {shape}")


def _texture(texture: str, x: np.ndarray, y: np.ndarray, p: float) -> np.ndarray:
    if texture == "stripes":
        return np.sin(2 * np.pi * x / p) > 0
    if texture == "checker":
        return (np.floor(x / p) + np.floor(y / p)) % 2 == 0
    if texture == "dots":
        dx, dy = np.mod(x, p) - p / 2, np.mod(y, p) - p / 2
        return dx * dx + dy * dy <= (0.32 * p) ** 2
    if texture == "rings":
        return np.sin(2 * np.pi * np.sqrt(x * x + y * y) / p) > 0
    if texture == "plain":
        return np.zeros(np.broadcast(x, y).shape, bool)
    if texture == "grid":
        return (np.mod(x, p) < 0.3 * p) | (np.mod(y, p) < 0.3 * p)
    raise ValueError(f"unknown texture {texture}")


def _random_colors(rng: np.random.Generator) -> np.ndarray:
    while True:
        c = rng.uniform(20, 235, size=(2, 3))
        if abs(c[0].mean() - c[1].mean()) > 55:
            return c


def _category_colors(cat: int, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """The "distinct" style: the category's colour pair, jittered by normal noise of standard
    deviation ``jitter`` grey levels per channel (``SynthConfig.color_jitter``)."""
    base = np.asarray(DISTINCT_COLORS[cat], dtype=np.float64)
    return np.clip(base + rng.normal(0, jitter, size=(2, 3)), 0, 255)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    coarse = rng.uniform(60, 190, size=(4, 5, 3)).astype(np.float32)
    img = Image.fromarray(coarse.astype(np.uint8)).resize((w, h), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def plan_video(cfg: SynthConfig, rng: np.random.Generator, length: int) -> list[InstanceSpec]:
    """Draw the instances of one video (see the module docstring for what is put in)."""
    h, w = cfg.height, cfg.width
    n = int(rng.integers(cfg.min_instances, cfg.max_instances + 1))
    side = min(h, w)
    distinct = cfg.style == "distinct"
    r_lo, r_hi = (0.12, 0.20) if distinct else (0.11, 0.22)
    specs: list[InstanceSpec] = []
    for k in range(n):
        cat = int(rng.integers(cfg.num_categories))
        radius = float(rng.uniform(r_lo, r_hi) * side)
        speed = float(rng.uniform(0.6, 2.2) * side / 96)
        ang = rng.uniform(0, 2 * np.pi)
        vel = speed * np.array([math.cos(ang), math.sin(ang)])
        anchor = np.array([rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h])
        anchor_time = float(rng.uniform(0, length))
        # bounce within the frame (a little beyond the edge: partly cut) ...
        bounds = np.array([[0.3 * radius, w - 0.3 * radius], [0.3 * radius, h - 0.3 * radius]])
        start = 0
        specs.append(InstanceSpec(cat, anchor, anchor_time, vel, bounds, radius,
                                  float(rng.uniform(-0.5, 0.5)), float(rng.normal(0, 0.01)),
                                  float(rng.uniform(4.5, 7.0) * side / 96),
                                  _category_colors(cat, rng, cfg.color_jitter) if distinct else _random_colors(rng),
                                  float(rng.random()), start))
    # late appearance
    for s in specs[1:]:
        if rng.random() < 0.3 and length >= 8:
            s.start = int(rng.integers(length // 4, length // 2 + 1))
    paired: set[int] = set()
    twins: list[tuple[int, int]] = []
    # look-alike: copy the category and colours of another instance, cross it
    pair_probs = (0.9, 0.5) if distinct else (0.6,)
    for prob in pair_probs:
        free = [k for k in range(n) if k not in paired]
        if len(free) < 2 or rng.random() >= prob:
            continue
        a, b = rng.choice(free, size=2, replace=False)
        specs[b].category = specs[a].category
        specs[b].colors = np.clip(specs[a].colors + rng.normal(0, cfg.lookalike_jitter, size=(2, 3)), 0, 255)
        specs[b].period = specs[a].period
        specs[b].radius = specs[a].radius * float(rng.uniform(0.9, 1.1))
        specs[b].anchor, specs[b].anchor_time = specs[a].anchor.copy(), specs[a].anchor_time
        paired.update((int(a), int(b)))
        twins.append((int(a), int(b)))
    # crossings: more pairs sharing an anchor point and time
    order = rng.permutation(n)
    for i in range(0, n - 1, 2):
        if rng.random() < 0.5:
            a, b = order[i], order[i + 1]
            paired.update((int(a), int(b)))
            specs[b].anchor, specs[b].anchor_time = specs[a].anchor.copy(), specs[a].anchor_time
            specs[b].start = min(specs[b].start, int(max(0, specs[a].anchor_time - 2)))
    # look-alikes that still cross at one point pass lookalike_offset radii apart instead: b's
    # path moves sideways to the pair's relative motion, so the closest approach is at anchor_time
    for a, b in twins if cfg.lookalike_offset > 0 else ():
        if np.array_equal(specs[a].anchor, specs[b].anchor) and specs[a].anchor_time == specs[b].anchor_time:
            rel = specs[b].velocity - specs[a].velocity
            norm = float(np.hypot(*rel))
            side_dir = np.array([-rel[1], rel[0]]) / norm if norm > 1e-9 else np.array([1.0, 0.0])
            specs[b].anchor = specs[b].anchor + cfg.lookalike_offset * specs[a].radius * side_dir
    # Leave and re-enter: the bounce box reaches far beyond one edge and the instance is at
    # that far point mid-video, so it is out of view for several frames and comes back.
    for k, s in enumerate(specs):
        if distinct:  # more exits: every instance may leave, a crossing partner less often
            if length < 16 or rng.random() >= (0.4 if k in paired else 0.85):
                continue
        elif k in paired or length < 16 or rng.random() >= 0.6:
            continue
        axis = int(rng.integers(2))
        extent = (w, h)[axis]
        speed_axis = max(abs(s.velocity[axis]), 0.9 * side / 96)
        beyond = s.radius + speed_axis * rng.uniform(2.5, 7.0)  # ~5-14 frames out of view
        s.anchor_time = float(rng.uniform(0.3, 0.7) * length)
        s.start = 0
        if rng.random() < 0.5:
            s.bounds[axis] = [-beyond, extent - 0.3 * s.radius]
            s.anchor[axis] = -beyond
        else:
            s.bounds[axis] = [0.3 * s.radius, extent + beyond]
            s.anchor[axis] = extent + beyond
        s.velocity[axis] = speed_axis
    return specs


def render_video(cfg: SynthConfig, rng: np.random.Generator, length: int) -> SynthVideo:
    """Plan and render one video of ``length`` frames.

    Returns:
        :class:`SynthVideo` with frames uint8 ``[T, H, W, 3]`` and visible-instance labels
        int16 ``[T, H, W]``.
    """
    h, w = cfg.height, cfg.width
    specs = plan_video(cfg, rng, length)
    bg = _background(rng, h, w)
    t = np.arange(length, dtype=np.float64)
    centers = []
    for s in specs:
        cx = _fold(s.anchor[0] + s.velocity[0] * (t - s.anchor_time), *s.bounds[0])
        cy = _fold(s.anchor[1] + s.velocity[1] * (t - s.anchor_time), *s.bounds[1])
        centers.append(np.stack([cx, cy], 1))
    scale = 1.0 + 0.15 * np.sin(t[None, :] * rng.uniform(0.03, 0.1, size=(len(specs), 1))
                                + rng.uniform(0, 6.3, size=(len(specs), 1)))
    occluder = None
    if rng.random() < 0.5:  # un-annotated bar passing in front of everything
        vertical = bool(rng.random() < 0.5)
        extent = w if vertical else h
        thick = float(rng.uniform(0.08, 0.16) * extent)
        pos = _fold(rng.uniform(0, extent) + rng.uniform(0.4, 1.2) * (t - length / 2), -thick, extent)
        col = rng.uniform(40, 220, size=3)
        if cfg.style == "distinct":  # grey: never the colour of a category (a plain magenta bar
            col[:] = col.mean()       # was detected as a plain magenta ellipse)
        occluder = (vertical, thick, pos, col)
    depth_order = np.argsort([s.depth for s in specs], kind="stable")  # far first
    outline = outline_width(cfg)
    frames = np.empty((length, h, w, 3), np.uint8)
    labels = np.full((length, h, w), -1, np.int16)
    amodal = np.zeros((len(specs), length), np.int64)
    yy_full, xx_full = np.mgrid[0:h, 0:w].astype(np.float32)
    for ti in range(length):
        img = bg.copy()
        lab = labels[ti]
        for k in depth_order:
            s = specs[k]
            if ti < s.start:
                continue
            cx, cy = centers[k][ti]
            r = s.radius * scale[k, ti]
            x0, x1 = max(0, int(cx - 1.3 * r)), min(w, int(cx + 1.3 * r) + 2)
            y0, y1 = max(0, int(cy - 1.3 * r)), min(h, int(cy + 1.3 * r) + 2)
            if x0 >= x1 or y0 >= y1:
                continue
            dx, dy = xx_full[y0:y1, x0:x1] - cx, yy_full[y0:y1, x0:x1] - cy
            ang = s.angle + s.spin * ti
            ca, sa = math.cos(ang), math.sin(ang)
            lx, ly = ca * dx + sa * dy, -sa * dx + ca * dy
            name, shape, texture = cfg.category_table[s.category]
            inside = _shape_mask(shape, lx / r, -ly / r)
            if not inside.any():
                continue
            amodal[k, ti] = int(inside.sum())
            pattern = _texture(texture, lx, ly, s.period)
            color = np.where(pattern[..., None], s.colors[0], s.colors[1])
            if outline:  # a dark contour: touching look-alikes are separable in one frame
                edge = inside & ~binary_erosion(inside, iterations=outline, border_value=1)
                color[edge] = OUTLINE_SHADE * s.colors[1]
            img[y0:y1, x0:x1][inside] = color[inside]
            lab[y0:y1, x0:x1][inside] = k
        if occluder is not None:
            vertical, thick, pos, col = occluder
            a, b = max(0, int(pos[ti])), max(0, int(pos[ti] + thick))
            if vertical:
                img[:, a:b] = col
                lab[:, a:b] = -2
            else:
                img[a:b, :] = col
                lab[a:b, :] = -2
        img += rng.normal(0, 4.0, size=img.shape).astype(np.float32)
        frames[ti] = np.clip(img, 0, 255).astype(np.uint8)
    min_area = min_visible_area(cfg)
    if min_area > 1:  # fragments below the annotation threshold: no instance, no ground truth
        for k in range(len(specs)):
            vis = (labels == k).sum((1, 2))
            tiny = (vis > 0) & (vis < min_area)
            if tiny.any():
                lab_t = labels[tiny]
                lab_t[lab_t == k] = UNLABELLED
                labels[tiny] = lab_t
    return SynthVideo(frames, labels, specs, amodal)


def outline_width(cfg: SynthConfig) -> int:
    """Width in pixels of the dark contour drawn around every instance: 0 for the ``shared``
    style, ``max(1, round(min(H, W) / 96))`` for ``distinct`` (1 px at 96x128 frames)."""
    return 0 if cfg.style != "distinct" else max(1, round(min(cfg.height, cfg.width) / 96))


def min_visible_area(cfg: SynthConfig) -> int:
    """The annotation threshold in pixels: an instance whose visible part in a frame is
    smaller is not annotated there (no ground-truth mask; its pixels get label -3). 1 (every
    visible pixel annotated) for the ``shared`` style; ``ceil(MIN_VISIBLE_FRACTION * H * W)``
    for ``distinct`` (25 px at 96x128: a sliver at the frame edge or between occluders that
    no VIS annotator would label, and no detector can find)."""
    return 1 if cfg.style != "distinct" else math.ceil(MIN_VISIBLE_FRACTION * cfg.height * cfg.width)


def _lengths(cfg: SynthConfig, rng: np.random.Generator, n: int) -> list[int]:
    lo, hi = math.log(cfg.min_length), math.log(cfg.max_length + 1)
    out = [int(min(cfg.max_length, math.exp(rng.uniform(lo, hi)))) for _ in range(n)]
    if n >= 1:
        out[0] = cfg.max_length
    if n >= 2:
        out[1] = cfg.min_length
    return out


def iter_split(cfg: SynthConfig, split: str, first_video_id: int = 1) -> Iterator[tuple[VideoRecord, list[tuple[int, list]], SynthVideo]]:
    """Render the videos of ``split`` ("train" or "valid") one at a time.

    Yields:
        ``(video_record, [(category_id, per-frame RLE or None), ...], rendered_video)`` per
        video; instances never visible are left out.
    """
    cfg.validate()
    n = cfg.num_videos - cfg.num_valid if split == "train" else cfg.num_valid
    code = {"train": 0, "valid": 1}[split]
    lengths = _lengths(cfg, np.random.default_rng([cfg.seed, code, 10 ** 6]), n)
    for i in range(n):
        rng = np.random.default_rng([cfg.seed, code, i])
        video = render_video(cfg, rng, lengths[i])
        name = f"{split}_{i:04d}"
        rec = VideoRecord(first_video_id + i, [f"{name}/{t:05d}.jpg" for t in range(lengths[i])],
                          lengths[i], cfg.width, cfg.height)
        instances = []
        for k, spec in enumerate(video.instances):
            segs = mask_ops.encode_masks_or_none(video.labels == k)
            if any(s is not None for s in segs):
                instances.append((spec.category + 1, segs))
        yield rec, instances, video


def categories(cfg: SynthConfig) -> list[CategoryRecord]:
    """The category records (id = index + 1, name, supercategory = shape)."""
    table = cfg.category_table
    return [CategoryRecord(i + 1, name, shape) for i, (name, shape, _) in enumerate(table[: cfg.num_categories])]


def synth_annotations(cfg: SynthConfig, split: str) -> VISDataset:
    """Ground truth of one split without writing frames (benchmarks, tests)."""
    ds, _ = _collect(cfg, split, None, progress=False)
    return ds


def _collect(cfg: SynthConfig, split: str, frames_root: Path | None, progress: bool,
             resume: bool = False) -> tuple[VISDataset, int]:
    from tqdm import tqdm

    first_id = 1 if split == "train" else cfg.num_videos - cfg.num_valid + 1
    first_ann = 1 if split == "train" else 10 ** 6 + 1
    n = cfg.num_videos - cfg.num_valid if split == "train" else cfg.num_valid
    videos, anns = [], []
    written = 0
    for rec, instances, video in tqdm(iter_split(cfg, split, first_id), total=n, desc=f"synth {split}",
                                      disable=not progress, unit="video"):
        videos.append(rec)
        for cat, segs in instances:
            anns.append(AnnotationRecord(first_ann + len(anns), rec.id, cat, segs, mask_ops.rle_areas(segs),
                                         mask_ops.rle_bboxes(segs), 0))
        if frames_root is not None:
            written += _write_frames(frames_root, rec, video.frames, cfg.jpeg_quality, resume)
    ds = VISDataset(videos, anns, categories(cfg), None,
                    {"info": {"description": f"genvis synthetic occlusion benchmark ({split})",
                              "synth_config": dataclasses.asdict(cfg)}})
    return ds, written


def _write_frames(root: Path, rec: VideoRecord, frames: np.ndarray, quality: int, resume: bool) -> int:
    final = root / rec.name
    if resume and final.is_dir() and len(list(final.glob("*.jpg"))) == rec.length:
        return 0
    tmp = root / f".{rec.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for fname, frame in zip(rec.file_names, frames):
        Image.fromarray(frame).save(tmp / Path(fname).name, quality=quality)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return 1


def write_synth_dataset(out: str | os.PathLike, cfg: SynthConfig, progress: bool = True) -> dict:
    """Write the benchmark to ``out`` (frames, train.json, valid.json, synth_config.json).

    Resumable: a rerun with the same config keeps complete video folders; each video folder
    is written to a temporary sibling and renamed when complete, the json files last and
    atomically, so an interrupted run leaves no half-written output.

    Returns:
        Summary dict: videos and frames per split, instances, paths.

    Raises:
        ConfigError: invalid config.
    """
    cfg.validate()
    out = Path(out)
    frames_root = out / "frames"
    frames_root.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "synth_config.json"
    record = {"synth_version": SYNTH_VERSION, **dataclasses.asdict(cfg)}
    resume = cfg_path.exists() and _read_json_or_none(cfg_path) == record
    atomic_write_json(cfg_path, record, indent=1)
    summary = {"out": str(out)}
    for split in ("train", "valid"):
        ds, written = _collect(cfg, split, frames_root, progress, resume)
        save_vis_json(ds, out / f"{split}.json")
        summary[split] = {"videos": len(ds.videos), "frames": sum(v.length for v in ds.videos),
                          "instances": len(ds.annotations or []), "folders_written": written}
    return summary


def _read_json_or_none(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
