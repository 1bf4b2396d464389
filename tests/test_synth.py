"""Synthetic occlusion benchmark: layout, determinism, the stresses it promises, evaluator round trip."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from genvis.cli import main
from genvis.data import masks as mask_ops
from genvis.data.frames import read_frame
from genvis.data.results import parse_results
from genvis.data.synth import SynthConfig, synth_annotations, write_synth_dataset
from genvis.data.ytvis import load_vis_json
from genvis.evaluate.ytvis_eval import evaluate


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_loads_and_frames_match_json(tiny_synth_dir):
    train = load_vis_json(tiny_synth_dir / "train.json")
    valid = load_vis_json(tiny_synth_dir / "valid.json")
    assert len(train.videos) + len(valid.videos) == 6 and len(valid.videos) >= 1
    assert not set(train.video_ids) & set(valid.video_ids)
    assert train.has_annotations and valid.has_annotations
    assert train.num_classes == 6
    lengths = sorted(v.length for v in train.videos)
    assert lengths[0] == 6 and lengths[-1] == 12  # min and max length both present
    v = train.videos[0]
    for name in v.file_names:
        assert (tiny_synth_dir / "frames" / name).is_file()
    f = read_frame(tiny_synth_dir / "frames" / v.file_names[0])
    assert f.shape == (48, 64, 3)
    # a mask marks textured foreground: inside-mask pixels differ from the smooth background
    ann = max(train.annotations_of(v.id), key=lambda a: max(x or 0 for x in a.areas))
    t = int(np.argmax([x or 0 for x in ann.areas]))
    m = mask_ops.annotation_masks(ann, v)[t]
    inside = f[m].astype(float)
    assert inside.std(axis=0).mean() > 15  # two-colour texture inside the mask


def test_deterministic_per_seed(tmp_path):
    cfg = SynthConfig(num_videos=3, seed=5, height=32, width=40, min_length=4, max_length=8)
    write_synth_dataset(tmp_path / "a", cfg, progress=False)
    write_synth_dataset(tmp_path / "b", cfg, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    other = SynthConfig(num_videos=3, seed=6, height=32, width=40, min_length=4, max_length=8)
    write_synth_dataset(tmp_path / "c", other, progress=False)
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    # resuming with the same config keeps the folders and gives the same output
    summary = write_synth_dataset(tmp_path / "a", cfg, progress=False)
    assert summary["train"]["folders_written"] == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


@pytest.fixture(scope="module", params=["shared", "distinct"])
def stress_set(request):
    cfg = SynthConfig(num_videos=12, seed=1, height=48, width=64, min_length=20, max_length=60,
                      valid_fraction=0.0, style=request.param)
    return synth_annotations(cfg, "train")


def _present(ann):
    return np.array([s is not None for s in ann.segmentations])


def test_stresses_genvis_cares_about(stress_set):
    ds = stress_set
    anns = ds.annotations
    # several instances per video and look-alikes (two instances of one category in a video)
    assert np.mean([len(ds.annotations_of(v.id)) for v in ds.videos]) >= 2.5
    lookalike = [v for v in ds.videos if max(Counter(a.category_id for a in ds.annotations_of(v.id)).values()) > 1]
    style = ds.info["info"]["synth_config"]["style"]
    assert len(lookalike) >= (9 if style == "distinct" else 3)
    # instances that leave (or vanish behind others) and come back after >= 3 frames
    def longest_gap(a):
        idx = np.flatnonzero(_present(a))
        return int(np.diff(idx).max()) - 1 if len(idx) > 1 else 0
    assert sum(longest_gap(a) >= 3 for a in anns) >= 3
    if style == "distinct":  # more exits than the shared style (11 of 49 instances there)
        assert sum(longest_gap(a) >= 5 for a in anns) >= 0.3 * len(anns)
    # instances first appearing mid-video
    assert sum(int(np.flatnonzero(_present(a))[0]) >= 5 for a in anns) >= 2
    # crossings with occlusion: two instances' boxes overlap heavily on some frame
    crossings = 0
    for v in ds.videos:
        for a, b in combinations(ds.annotations_of(v.id), 2):
            for ba, bb in zip(a.bboxes, b.bboxes):
                if ba and bb:
                    x0, y0 = max(ba[0], bb[0]), max(ba[1], bb[1])
                    x1, y1 = min(ba[0] + ba[2], bb[0] + bb[2]), min(ba[1] + ba[3], bb[1] + bb[3])
                    if x1 > x0 and y1 > y0 and (x1 - x0) * (y1 - y0) > 0.3 * min(ba[2] * ba[3], bb[2] * bb[3]):
                        crossings += 1
                        break
    assert crossings >= 5
    # heavy occlusion: visible area falls below 40% of the instance's largest visible area
    occluded = sum(any(0 < (x or 0) < 0.4 * max(y or 0 for y in a.areas) for x in a.areas) for a in anns)
    assert occluded >= 0.3 * len(anns)


def test_ground_truth_round_trips_through_evaluator(tiny_synth_dir):
    gt = load_vis_json(tiny_synth_dir / "valid.json")
    res = parse_results([{"video_id": a.video_id, "category_id": a.category_id, "score": 0.9,
                          "segmentations": a.segmentations} for a in gt.annotations], "res", gt)
    m = evaluate(gt, res)
    assert m["AP"] == pytest.approx(100.0) and m["AR10"] == pytest.approx(100.0)


def test_cli_writes_benchmark_and_rejects_bad_settings(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["synth", "--out", str(out), "--videos", "2", "--seed", "0", "--height", "32", "--width", "32",
                 "--min-length", "3", "--max-length", "5", "--no-progress"]) == 0
    train = json.loads((out / "train.json").read_text())
    assert len(train["videos"]) == 1 and train["videos"][0]["height"] == 32
    assert (out / "valid.json").is_file()
    bad = tmp_path / "bad"
    assert main(["synth", "--out", str(bad), "--videos", "2", "--height", "5"]) == 2
    assert "synth.height" in capsys.readouterr().err
    assert not bad.exists()


def test_valid_videos_grows_valid_and_keeps_train(tmp_path, capsys):
    """--valid-videos: a larger valid split for less noisy AP, with the same train videos
    (so a trained detector and its train cache stay valid)."""
    common = ["--seed", "3", "--height", "32", "--width", "32", "--min-length", "3", "--max-length", "6",
              "--no-progress"]
    assert main(["synth", "--out", str(tmp_path / "a"), "--videos", "5", "--valid-videos", "2", *common]) == 0
    assert main(["synth", "--out", str(tmp_path / "b"), "--videos", "7", "--valid-videos", "4", *common]) == 0
    a = {s: json.loads((tmp_path / "a" / f"{s}.json").read_text()) for s in ("train", "valid")}
    b = {s: json.loads((tmp_path / "b" / f"{s}.json").read_text()) for s in ("train", "valid")}
    assert len(a["train"]["videos"]) == len(b["train"]["videos"]) == 3
    assert len(a["valid"]["videos"]) == 2 and len(b["valid"]["videos"]) == 4
    assert a["train"]["annotations"] == b["train"]["annotations"]
    assert b["valid"]["annotations"][: len(a["valid"]["annotations"])] == a["valid"]["annotations"]
    assert main(["synth", "--out", str(tmp_path / "c"), "--videos", "4", "--valid-videos", "4", *common]) == 2
    assert "--valid-videos: must be in 1..3" in capsys.readouterr().err


def test_distinct_style_one_look_per_category(tmp_path, capsys):
    """--style distinct: each category its own shape and colours, so every instance of a
    category looks alike (the plain magenta ellipses all have the category's colour)."""
    from genvis.data.synth import DISTINCT_COLORS

    out = tmp_path / "d"
    assert main(["synth", "--out", str(out), "--videos", "8", "--seed", "2", "--height", "96", "--width", "128",
                 "--min-length", "12", "--max-length", "20", "--style", "distinct", "--no-progress"]) == 0
    ds = load_vis_json(out / "train.json")
    shapes = [c.supercategory for c in ds.categories]
    assert len(set(shapes)) == len(shapes) == 6
    plain = [c.id for c in ds.categories if c.name == "plain_ellipse"][0]
    seen = 0
    for a in ds.annotations:
        if a.category_id != plain:
            continue
        v = ds.video(a.video_id)
        t = int(np.argmax([x or 0 for x in a.areas]))
        m = mask_ops.annotation_masks(a, v)[t]
        if m.sum() < 30:
            continue
        f = read_frame(out / "frames" / v.file_names[t]).astype(float)
        for _ in range(2):  # two pixels in from the edge: away from the dark contour (JPEG blurs it)
            m = m & np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1)
        if m.sum() < 10:
            continue
        assert np.abs(np.median(f[m], axis=0) - DISTINCT_COLORS[4][0]).max() < 30
        seen += 1
    assert seen >= 1
    from genvis.errors import ConfigError

    with pytest.raises(ConfigError, match="synth.style"):
        SynthConfig(style="bogus").validate()


def test_distinct_style_outline_and_annotation_threshold():
    """distinct: every instance has a dark 1-px contour (so two touching look-alikes are
    separable in one frame), and a visible fragment under the annotation threshold is no
    ground truth (its pixels are labelled -3); shared: neither."""
    from genvis.data.synth import UNLABELLED, min_visible_area, outline_width, render_video

    cfg = SynthConfig(height=96, width=128, style="distinct").validate()
    assert outline_width(cfg) == 1 and min_visible_area(cfg) == 25
    assert outline_width(SynthConfig(height=192, width=256, style="distinct")) == 2
    shared = SynthConfig(height=96, width=128, style="shared")
    assert outline_width(shared) == 0 and min_visible_area(shared) == 1
    v = render_video(cfg, np.random.default_rng([0, 1, 3]), 40)
    k = len(v.instances)
    areas = np.stack([(v.labels == i).sum((1, 2)) for i in range(k)])
    assert ((areas == 0) | (areas >= 25)).all()
    assert (v.labels == UNLABELLED).sum() > 0  # this video has fragments under the threshold
    # an instance wholly in view (visible = whole shape, off the frame border): its contour
    # pixels (in the mask, next to one outside it) are much darker than its inside
    grey = v.frames.astype(float).mean(-1)
    checked = 0
    for i in range(k):
        for t in np.flatnonzero((areas[i] == v.amodal_areas[i]) & (areas[i] > 200)):
            m = v.labels[t] == i
            if m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any():
                continue
            inner = m & np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1)
            assert grey[t][m & ~inner].mean() < 0.6 * grey[t][inner].mean()
            checked += 1
    assert checked >= 5
    ds = synth_annotations(SynthConfig(num_videos=4, seed=1, height=96, width=128, min_length=20, max_length=40,
                                       valid_fraction=0.0, style="distinct"), "train")
    assert min(x for a in ds.annotations for x in a.areas if x) >= 25



def test_colour_jitter_sets_how_alike_instances_are(tmp_path, capsys):
    """color_jitter / lookalike_jitter: the spread (grey levels per channel) of instance
    colours around the category's pair, and of a look-alike's around its twin's; recorded in
    synth_config.json and validated."""
    from genvis.data.synth import DISTINCT_COLORS, plan_video

    def spreads(**kw):
        cfg = SynthConfig(height=128, width=160, style="distinct", **kw).validate()
        around_category, twin = [], []
        for i in range(400):
            specs = plan_video(cfg, np.random.default_rng([7, i]), 40)
            around_category += [s.colors - np.asarray(DISTINCT_COLORS[s.category]) for s in specs[:1]]
            for a, b in combinations(specs, 2):
                if a.category == b.category and np.array_equal(a.anchor, b.anchor):
                    twin.append(b.colors - a.colors)
        # clipping at 0 and 255 (the near-black and near-white channels) leaves zeros: not counted
        cat = np.concatenate(around_category).ravel()
        return float(np.std(cat[cat != 0])), float(np.std(np.concatenate(twin))), len(twin)

    cat_default, twin_default, pairs = spreads()
    assert pairs > 100
    assert 4 < cat_default < 7 and 4.5 < twin_default < 7.5
    cat_wide, twin_wide, _ = spreads(color_jitter=20, lookalike_jitter=30)
    assert 16 < cat_wide < 26 and 24 < twin_wide < 32
    from genvis.errors import ConfigError

    with pytest.raises(ConfigError, match="synth.color_jitter"):
        SynthConfig(color_jitter=-1).validate()
    out = tmp_path / "j"
    assert main(["synth", "--out", str(out), "--videos", "2", "--height", "32", "--width", "32",
                 "--min-length", "3", "--max-length", "4", "--style", "distinct", "--color-jitter", "20",
                 "--lookalike-jitter", "30", "--no-progress"]) == 0
    recorded = json.loads((out / "synth_config.json").read_text())
    assert recorded["color_jitter"] == 20 and recorded["lookalike_jitter"] == 30
    assert main(["synth", "--out", str(tmp_path / "k"), "--videos", "2", "--lookalike-jitter", "200"]) == 2
    assert "synth.lookalike_jitter" in capsys.readouterr().err


def test_lookalike_offset_moves_the_crossing_apart(tmp_path):
    """lookalike_offset: a look-alike pair that crossed through one point passes that many
    radii apart (closest approach of the centres at the pair's anchor time), the rest of the
    plan (every draw) unchanged, so 0 is the benchmark as before. 15-frame videos: no exits,
    which would re-anchor an instance afterwards."""
    from genvis.data.synth import _fold, plan_video

    def centre(s, t):
        return np.array([_fold(s.anchor[0] + s.velocity[0] * (t - s.anchor_time), *s.bounds[0]),
                         _fold(s.anchor[1] + s.velocity[1] * (t - s.anchor_time), *s.bounds[1])])

    checked = 0
    for i in range(200):
        before = plan_video(SynthConfig(height=128, width=160, style="distinct").validate(),
                            np.random.default_rng([11, i]), 15)
        after = plan_video(SynthConfig(height=128, width=160, style="distinct", lookalike_offset=1.0).validate(),
                           np.random.default_rng([11, i]), 15)
        moved = [k for k, (x, y) in enumerate(zip(before, after)) if not np.array_equal(x.anchor, y.anchor)]
        for k, (x, y) in enumerate(zip(before, after)):
            assert (x.category, x.anchor_time, x.radius, x.start) == (y.category, y.anchor_time, y.radius, y.start)
            assert np.array_equal(x.velocity, y.velocity) and np.array_equal(x.colors, y.colors)
        for b in moved:
            # its twin: the same category, crossing it at one point in the plan without offset (a
            # crossing partner of that category by chance may share the point too: one of them)
            twins = [k for k, s in enumerate(before) if k != b and s.category == before[b].category
                     and np.array_equal(s.anchor, before[b].anchor) and s.anchor_time == before[b].anchor_time]
            a = next(k for k in twins if np.isclose(np.hypot(*(after[b].anchor - after[k].anchor)), after[k].radius))
            shift = after[b].anchor - after[a].anchor
            assert abs(float(shift @ (after[b].velocity - after[a].velocity))) < 1e-6
            t0 = after[a].anchor_time
            if all(lo < c < hi for s in (after[a], after[b]) for c, (lo, hi) in zip(centre(s, t0), s.bounds)):
                ts = np.linspace(t0 - 1.0, t0 + 1.0, 201)   # no bounce near t0: closest there, 1 radius
                gaps = [np.hypot(*(centre(after[b], t) - centre(after[a], t))) for t in ts]
                assert min(gaps) == pytest.approx(after[a].radius, rel=1e-3)
                checked += 1
    assert checked > 50
    with pytest.raises(Exception, match="synth.lookalike_offset"):
        SynthConfig(lookalike_offset=-0.5).validate()
    assert main(["synth", "--out", str(tmp_path / "o"), "--videos", "2", "--height", "32", "--width", "32",
                 "--min-length", "3", "--max-length", "4", "--lookalike-offset", "1.5", "--no-progress"]) == 0
    assert json.loads((tmp_path / "o" / "synth_config.json").read_text())["lookalike_offset"] == 1.5
