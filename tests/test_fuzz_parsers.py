"""Property-based fuzzing (hypothesis) of the results and annotation parsers (issue 20).

Random corruptions of a valid results json and of a valid annotation json, at the json level
(a value replaced, removed or repeated; an RLE string edited) and at the byte level, go
through what ``genvis evaluate`` does with them: read and validate, score, decode every mask.
The property: that either works or stops with one of the project's named errors
(:class:`genvis.errors.GenvisError`); never another exception, never a hang (a watchdog ends
the test run with a traceback if one example takes too long, since a loop inside
pycocotools cannot be interrupted from Python).
"""

from __future__ import annotations

import copy
import faulthandler
import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from genvis.data import masks as mask_ops
from genvis.data.results import read_results
from genvis.data.ytvis import load_vis_json
from genvis.errors import GenvisError, InputWarning
from genvis.evaluate.ytvis_eval import evaluate

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])  # the watchdog spans the test
WATCHDOG_S = 120   # whole test; a normal run takes a few seconds


def _valid_gt() -> dict:
    from tests.conftest import make_tiny_vis_dict

    return make_tiny_vis_dict(0)


def _valid_results(gt: dict) -> list[dict]:
    out = []
    for k, a in enumerate(gt["annotations"]):
        v = next(v for v in gt["videos"] if v["id"] == a["video_id"])
        masks = np.stack([mask_ops.decode_rle(s, v["height"], v["width"]) for s in a["segmentations"]])
        masks[:, :, : k % 3] = False            # imperfect predictions: IoU below 1 for some
        out.append({"video_id": a["video_id"], "category_id": a["category_id"], "score": 0.9 - 0.1 * k,
                    "segmentations": mask_ops.encode_masks(masks)})
    return out


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 40, 2 ** 40), st.sampled_from([0, 1, -1, 24, 32, 10 ** 9, 2 ** 63]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["Ph0", "zz", "0", "", "é", "m:6b0", "PPPPPPPP0"]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["size", "counts", "id", "video_id", "x"]), inner,
                                                 max_size=3)), max_leaves=8)


def _locations(obj: Any, path: tuple = ()) -> list[tuple]:
    """Every (container path, key) below ``obj``."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        out.append(path + (k,))
        out.extend(_locations(v, path + (k,)))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


@st.composite
def corrupted(draw, base: Any) -> bytes:
    """``base`` serialised after 1-3 random edits (json level), then maybe a few byte edits."""
    obj = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        locs = _locations(obj)
        if not locs:
            break
        op = draw(st.sampled_from(["replace", "remove", "repeat", "edit_string", "scale", "edit_counts"]))
        counts = [p for p in locs if p[-1] == "counts" and isinstance(_get(obj, p), str)]
        if op == "edit_counts" and counts:   # the RLE strings pycocotools trusts: edited more often
            path, op = draw(st.sampled_from(counts)), "edit_string"
        else:
            path = draw(st.sampled_from(locs))
        parent, key = _get(obj, path[:-1]), path[-1]
        old = parent[key]
        if op == "replace":
            parent[key] = draw(json_values)
        elif op == "remove":
            del parent[key]
        elif op == "repeat" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(old))
        elif op == "edit_string" and isinstance(old, str):
            chars = list(old)
            for _ in range(draw(st.integers(1, 3))):
                pos = draw(st.integers(0, len(chars)))
                new = draw(st.characters(min_codepoint=40, max_codepoint=130))
                action = draw(st.sampled_from(["insert", "delete", "set"]))
                if action == "insert" or not chars:
                    chars.insert(pos, new)
                elif action == "delete":
                    del chars[min(pos, len(chars) - 1)]
                else:
                    chars[min(pos, len(chars) - 1)] = new
            parent[key] = "".join(chars)
        elif op == "scale" and isinstance(old, (int, float)) and not isinstance(old, bool):
            parent[key] = old * draw(st.sampled_from([-1, 0, 2, 10 ** 9, 0.5, math.inf]))
    text = json.dumps(obj).encode()
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()) and text:
            pos = draw(st.integers(0, len(text) - 1))
            text = text[:pos] + bytes([draw(st.integers(0, 255))]) + text[pos + 1:]
    return text


def _use_results(results, gt) -> None:
    """What evaluate and visualize do with accepted results: score them, decode every mask."""
    evaluate(gt, results)
    for r in results:
        v = gt.video(r.video_id)
        for s in r.segmentations:
            assert mask_ops.decode_rle(s, v.height, v.width).shape == (v.height, v.width)


@pytest.fixture
def watchdog(capfd):
    """End the whole run, printing every thread's traceback to the real stderr (not pytest's
    capture, which is lost on exit), if the test outlives ``WATCHDOG_S``."""
    with capfd.disabled():
        real_stderr = os.dup(2)
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True, file=real_stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        os.close(real_stderr)


GT = _valid_gt()
RESULTS = _valid_results(GT)


@FUZZ
@given(text=corrupted(RESULTS))
def test_corrupted_results_give_a_named_error_or_a_score(watchdog, text):
    with tempfile.TemporaryDirectory(prefix="genvis_fuzz_") as tmp:
        gt_path, res_path = Path(tmp) / "gt.json", Path(tmp) / "res.json"
        gt_path.write_text(json.dumps(GT))
        res_path.write_bytes(text)
        gt = load_vis_json(gt_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputWarning)
            try:
                results = read_results(res_path, gt)
            except GenvisError as exc:
                assert "\n" not in str(exc) and str(exc).startswith(str(res_path))
                event(f"refused: {str(exc).split(': ', 2)[-1][:40]}")
                return
        event("accepted")
        _use_results(results, gt)


@FUZZ
@given(text=corrupted(GT))
def test_corrupted_annotations_give_a_named_error_or_a_score(watchdog, text):
    with tempfile.TemporaryDirectory(prefix="genvis_fuzz_") as tmp:
        gt_path, res_path = Path(tmp) / "gt.json", Path(tmp) / "res.json"
        gt_path.write_bytes(text)
        res_path.write_text(json.dumps(RESULTS))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputWarning)
            try:
                gt = load_vis_json(gt_path)
            except GenvisError as exc:
                assert "\n" not in str(exc) and str(exc).startswith(str(gt_path))
                event(f"refused: {str(exc).split(': ', 2)[-1][:40]}")
                return
            event("accepted")
            for a in gt.annotations or []:
                masks = mask_ops.annotation_masks(a, gt.video(a.video_id))
                assert masks.shape[0] == gt.video(a.video_id).length
            if not gt.has_annotations:
                return
            try:
                results = read_results(res_path, gt)
            except GenvisError:
                return
        _use_results(results, gt)
