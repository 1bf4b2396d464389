"""Hostile or careless input (docs/bad_inputs.md): a named one-line error or warning,
nothing written, nothing overwritten, no hang."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from genvis.cli import main
from genvis.data import masks as mask_ops
from genvis.data.results import read_results
from genvis.data.ytvis import load_vis_json, parse_vis_dict
from genvis.errors import InputError, InputWarning

REPO = Path(__file__).resolve().parents[1]


def _results_from_gt(gt: dict) -> list[dict]:
    """One perfect prediction per ground-truth instance (RLE on every frame, as infer writes)."""
    out = []
    for a in gt["annotations"]:
        v = next(v for v in gt["videos"] if v["id"] == a["video_id"])
        masks = np.stack([mask_ops.decode_rle(s, v["height"], v["width"]) for s in a["segmentations"]])
        out.append({"video_id": a["video_id"], "category_id": a["category_id"], "score": 0.9,
                    "segmentations": mask_ops.encode_masks(masks)})
    return out


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _run_cli(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """``genvis ARGS`` in a child process (so that a hang is a failed test, not a stuck run)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "genvis.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


# ------------------------------------------------------------------ row 1: RLE that does not cover H x W

def _reference_counts(s: bytes) -> list[int] | None:
    """pycocotools' rleFrString in plain Python: runs as it stores them (uint32), None if the
    string ends inside a number."""
    counts, p = [], 0
    while p < len(s):
        x = k = 0
        more = True
        while more:
            if p >= len(s):
                return None
            c = s[p] - 48
            x |= (c & 0x1F) << 5 * k
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << 5 * k
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x % 2 ** 32)
    return counts


def test_compressed_counts_check_agrees_with_pycocotools_decoding():
    """The vectorised check decodes strings exactly as pycocotools does: every valid RLE passes,
    every mutated one is judged as the plain-Python decoder judges it."""
    rng = np.random.default_rng(0)
    h, w = 19, 23
    masks = rng.random((60, h, w)) < rng.random((60, 1, 1))
    masks[:5] = False
    masks[5:10] = True
    valid = [r["counts"] for r in mask_ops.encode_masks(masks)]
    assert mask_ops.compressed_rle_problem(valid, [h * w] * len(valid)) is None
    rnd = random.Random(1)
    mutated = []
    for s in valid * 10:
        b = bytearray(s.encode())
        for _ in range(rnd.randint(1, 3)):
            op = rnd.random()
            if op < 0.4 and b:
                b[rnd.randrange(len(b))] = rnd.randint(48, 111)
            elif op < 0.7 and b:
                del b[rnd.randrange(len(b))]
            else:
                b.insert(rnd.randrange(len(b) + 1), rnd.randint(48, 111))
        mutated.append(bytes(b))
    seen = {"valid": 0, "unterminated": 0, "wrong total": 0, "wrapped": 0}
    for s in mutated:
        ref = _reference_counts(s)
        got = mask_ops.compressed_rle_problem([s], [h * w])
        if ref is None:
            assert got[1].endswith("ends in the middle of a number"), (s, got)
            seen["unterminated"] += 1
        elif sum(ref) != h * w:   # the pixel total pycocotools' loops would walk
            assert got == (0, f"compressed RLE 'counts' covers {sum(ref)} pixels, not {h * w}"), (s, ref)
            seen["wrong total"] += 1
            seen["wrapped"] += max(ref, default=0) > h * w     # a negative delta: a run near 2**32
        else:
            assert got is None
            seen["valid"] += 1
    assert min(seen.values()) > 0 and seen["wrong total"] > 100, seen   # every outcome is exercised
    # the first bad one is named, after good ones, across chunk boundaries
    problem = mask_ops.compressed_rle_problem(valid * 3 + ["zz"] + valid, [h * w] * (3 * len(valid) + 1 + len(valid)))
    assert problem == (3 * len(valid), "compressed RLE 'counts' has characters outside pycocotools' alphabet '0'..'o'")
    assert mask_ops.compressed_rle_problem(["é"], [4])[1].startswith("compressed RLE 'counts' has characters")
    assert mask_ops.compressed_rle_problem(["P"], [4])[1].endswith("ends in the middle of a number")
    assert mask_ops.compressed_rle_problem(["PPPPPPP0"], [4])[1].endswith("longer than 7 characters")
    assert mask_ops.compressed_rle_problem(["0O"], [4])[1].endswith(f"covers {2 ** 32 - 1} pixels, not 4")  # run -1
    assert mask_ops.compressed_rle_problem(["4"], [4]) is None and \
        mask_ops.compressed_rle_problem(["5"], [4])[1].endswith("covers 5 pixels, not 4")


@pytest.mark.parametrize("command", ["evaluate", "compare", "diagnose"])
def test_rle_not_covering_the_frame_is_refused_not_hung(tmp_path, tiny_vis_dict, command):
    """On 961377e pycocotools looped forever on such an RLE overlapping ground truth."""
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(tiny_vis_dict))
    results = _results_from_gt(tiny_vis_dict)
    garbled = results[2]["segmentations"][1]["counts"] + "1"    # one run more: 769+ pixels in a 24 x 32 frame
    total = sum(_reference_counts(garbled.encode()))
    assert total > 768
    results[2]["segmentations"][1] = {"size": [24, 32], "counts": garbled}
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    out = tmp_path / "out.json"
    args = {"evaluate": ["--results", str(res)], "compare": ["--a", str(res), "--b", str(res), "--bootstrap", "5"],
            "diagnose": ["--row", "x", str(res)]}[command]
    p = _run_cli([command, "--gt", str(gt_path), *args, "--out", str(out)], tmp_path)
    assert p.returncode == 2
    assert _one_line(p.stderr) == (f"genvis {command}: error: {res}: result 2 frame 1: compressed RLE "
                                   f"'counts' covers {total} pixels, not 768")
    assert not out.exists()


def test_ground_truth_rle_not_covering_the_frame_is_refused(tiny_vis_dict):
    seg = tiny_vis_dict["annotations"][3]["segmentations"][4]
    seg["counts"] = seg["counts"][:-1]
    with pytest.raises(InputError, match=r"gt.json: annotation 4 frame 4: compressed RLE 'counts' "):
        parse_vis_dict(tiny_vis_dict, "gt.json")


# ------------------------------------------------------------------ row 2: an output naming an input

def test_output_naming_an_input_is_refused_and_the_input_kept(tmp_path, tiny_vis_dict, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(tiny_vis_dict))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(_results_from_gt(tiny_vis_dict)))
    before = gt.read_bytes(), res.read_bytes()
    (tmp_path / "link.json").symlink_to(gt)
    cases = [
        (["evaluate", "--gt", str(gt), "--results", str(res), "--out", str(gt)], "--out", "--gt"),
        (["evaluate", "--gt", str(gt), "--results", str(res), "--out", str(tmp_path / "link.json")], "--out", "--gt"),
        (["evaluate", "--gt", str(gt), "--results", str(res), "--out", str(tmp_path / "." / "res.json")],
         "--out", "--results"),
        (["split", "--annotations", str(gt), "--holdout-fraction", "0.5", "--out-train", str(gt),
          "--out-holdout", str(tmp_path / "h.json")], "--out-train", "--annotations"),
        (["infer", "--cache", str(tmp_path / "none.zarr"), "--annotations", str(gt), "--model",
          str(tmp_path / "none.pt"), "--out", str(gt)], "--out", "--annotations"),
        (["compare", "--gt", str(gt), "--a", str(res), "--b", str(res), "--out", str(res)], "--out", "--a"),
    ]
    for argv, out_flag, in_flag in cases:
        assert main(argv) == 2, argv
        line = _one_line(capsys.readouterr().err)
        assert line.startswith(f"genvis {argv[0]}: error: {out_flag}: ") and f"is also the input {in_flag}" in line
        assert (gt.read_bytes(), res.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.json", "link.json", "res.json"]


# ------------------------------------------------------------------ row 8: odd but scoreable results

def _write(tmp_path: Path, name: str, obj) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return p


def test_duplicate_results_warn_and_are_scored_as_false_positives(tmp_path, tiny_vis_dict, capsys):
    gt = _write(tmp_path, "gt.json", tiny_vis_dict)
    results = _results_from_gt(tiny_vis_dict)
    res = _write(tmp_path, "res.json", results + [results[0], results[3]])
    with pytest.warns(InputWarning, match=r"res.json: 2 result\(s\) repeat an earlier one exactly "
                                          r"\(e.g. result 6 = result 0\)"):
        read_results(res, load_vis_json(gt))
    out = tmp_path / "m.json"
    assert main(["evaluate", "--gt", str(gt), "--results", str(res), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert _one_line(err).startswith(f"genvis evaluate: warning: {res}: 2 result(s) repeat")
    # scored as the official code does: each repeat is a false positive, exactly like an empty
    # prediction of the same video, category and score
    empty = [dict(r, segmentations=mask_ops.encode_masks(np.zeros((len(r["segmentations"]), 24, 32), bool)))
             for r in (results[0], results[3])]
    fp = _write(tmp_path, "fp.json", results + empty)
    assert main(["evaluate", "--gt", str(gt), "--results", str(fp), "--out", str(tmp_path / "fp_m.json")]) == 0
    ap, ap_fp = json.loads(out.read_text())["AP"], json.loads((tmp_path / "fp_m.json").read_text())["AP"]
    assert ap == pytest.approx(ap_fp) and ap < 100.0


def test_only_exact_repeats_count_as_duplicates(tmp_path, tiny_vis_dict):
    """A result with the same video, category, score and masks in another frame order (same
    RLE strings, same total length) is no repeat; each repeat names the first of its kind."""
    gt = load_vis_json(_write(tmp_path, "gt.json", tiny_vis_dict))
    results = _results_from_gt(tiny_vis_dict)
    n = len(results)
    segs = results[0]["segmentations"]
    t0, t1 = next((a, b) for a in range(len(segs)) for b in range(a + 1, len(segs))
                  if segs[a] and segs[b] and segs[a]["counts"] != segs[b]["counts"])
    swapped = list(segs)
    swapped[t0], swapped[t1] = segs[t1], segs[t0]
    extra = [dict(results[0], segmentations=swapped), dict(results[0]), dict(results[0], segmentations=list(swapped))]
    with pytest.warns(InputWarning, match=rf"2 result\(s\) repeat an earlier one exactly \(e.g. result {n + 1} = "
                                          r"result 0\)"):
        read_results(_write(tmp_path, "res.json", results + extra), gt)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        read_results(_write(tmp_path, "res2.json", results + extra[:1]), gt)   # the reordered one alone: no repeat


def test_null_frames_are_absent_with_a_warning(tmp_path, tiny_vis_dict):
    gt = load_vis_json(_write(tmp_path, "gt.json", tiny_vis_dict))
    results = _results_from_gt(tiny_vis_dict)
    results[0]["segmentations"][0] = None
    results[1]["segmentations"] = [None] * len(results[1]["segmentations"])
    with pytest.warns(InputWarning, match=r"5 null segmentation\(s\) in 2 result\(s\), scored as 'absent on "
                                          r"that frame'.*; 1 result\(s\) have no mask on any frame"):
        back = read_results(_write(tmp_path, "res.json", results), gt)
    assert back[0].segmentations[0] is None and back[1].segmentations == [None] * 4


def test_empty_results_list_is_an_error(tmp_path, tiny_vis_dict, capsys):
    gt = _write(tmp_path, "gt.json", tiny_vis_dict)
    res = _write(tmp_path, "res.json", [])
    assert main(["evaluate", "--gt", str(gt), "--results", str(res), "--out", str(tmp_path / "m.json")]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"genvis evaluate: error: {res}: empty results list: no predictions to score (the official "
        "evaluation fails on an empty list too)")
    assert not (tmp_path / "m.json").exists()


def test_garbled_rle_without_overlapping_ground_truth_is_an_error(tmp_path, tiny_vis_dict):
    gt = load_vis_json(_write(tmp_path, "gt.json", tiny_vis_dict))
    # video 2's second instance first appears at frame 2: frame 0 overlaps no ground truth
    entry = {"video_id": 2, "category_id": 2, "score": 0.5,
             "segmentations": [{"size": [24, 32], "counts": "zz"}] + [None] * 5}
    with pytest.raises(InputError, match=r"res.json: result 0 frame 0: compressed RLE 'counts' has characters"):
        read_results(_write(tmp_path, "res.json", [entry]), gt)


# ------------------------------------------------------------------ row 9: results zip inflating past the cap

def test_results_zip_inflating_past_the_cap_is_refused(tmp_path, tiny_vis_dict, capsys, monkeypatch):
    import genvis.data.results as results_mod

    gt = _write(tmp_path, "gt.json", tiny_vis_dict)
    text = json.dumps(_results_from_gt(tiny_vis_dict)) + " " * 200_000   # valid json, inflates to ~210 kB
    z = tmp_path / "sub.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("results.json", text)
    assert z.stat().st_size < 10_000
    assert len(read_results(z, load_vis_json(gt))) == 6                 # under the default cap: read
    with pytest.raises(InputError, match=r"sub.zip: results.json in the zip inflates to more than 100000 bytes"):
        read_results(z, max_zip_bytes=100_000)
    monkeypatch.setattr(results_mod, "MAX_RESULTS_JSON_BYTES", 100_000)
    out = tmp_path / "m.json"
    assert main(["evaluate", "--gt", str(gt), "--results", str(z), "--out", str(out)]) == 2
    assert "inflates to more than 100000 bytes" in _one_line(capsys.readouterr().err)
    assert not out.exists()


# ------------------------------------------------------------------ row 10: absurd RLE size in ground truth

@pytest.mark.parametrize("size,problem", [
    ([10 ** 9, 10 ** 9], "frame size 1000000000x1000000000 is too large"),
    (None, "RLE 'size' must be two integers [H, W], got [inf, 32]"),
    (-1, "RLE 'size' [-24, -32] is negative"),
])
def test_absurd_rle_size_in_ground_truth_is_a_named_error(tiny_vis_dict, size, problem):
    d = tiny_vis_dict
    a = d["annotations"][0]
    if size == [10 ** 9, 10 ** 9]:       # the video and its RLEs agree on an absurd size
        d["videos"][0]["height"] = d["videos"][0]["width"] = 10 ** 9
        a["segmentations"] = [{"size": size, "counts": [0, 10 ** 18]} for _ in a["segmentations"]]
        del a["areas"]
    elif size is None:
        a["segmentations"][0]["size"] = [float("inf"), 32]
    else:
        a["segmentations"][0]["size"] = [-24, -32]
    with pytest.raises(InputError) as info:
        parse_vis_dict(d, "gt.json")
    assert str(info.value).startswith("gt.json: ") and problem in str(info.value)


# ------------------------------------------------------------------ row 11: read-only output folder

@contextlib.contextmanager
def _read_only(folder: Path):
    """Make ``folder`` unwritable, also for root (``chattr +i``); skip where that is impossible."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is not allowed: no read-only folder possible")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_read_only_output_folder_is_one_line_naming_it(tmp_path, tiny_vis_dict, capsys):
    gt = _write(tmp_path, "gt.json", tiny_vis_dict)
    res = _write(tmp_path, "res.json", _results_from_gt(tiny_vis_dict))
    ro = tmp_path / "ro"
    ro.mkdir()
    with _read_only(ro):
        assert main(["evaluate", "--gt", str(gt), "--results", str(res), "--out", str(ro / "m" / "metrics.json")]) == 2
        assert _one_line(capsys.readouterr().err) == (
            f"genvis evaluate: error: --out: cannot write {ro / 'm' / 'metrics.json'}: folder {ro} is not writable")
        assert main(["synth", "--out", str(ro), "--videos", "2", "--no-progress"]) == 2
        assert f"folder {ro} is not writable" in _one_line(capsys.readouterr().err)
    assert list(ro.iterdir()) == []


def test_os_refusal_while_writing_is_one_line(tmp_path, tiny_vis_dict, capsys, monkeypatch):
    """A folder that turns read-only (or a full disk) after the start: the OS error is one line."""
    import genvis.utils.io as io_mod

    gt = _write(tmp_path, "gt.json", tiny_vis_dict)
    res = _write(tmp_path, "res.json", _results_from_gt(tiny_vis_dict))

    def refuse(*args, dir=None, **kw):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(io_mod.tempfile, "mkstemp", refuse)
    assert main(["evaluate", "--gt", str(gt), "--results", str(res), "--out", str(tmp_path / "m.json")]) == 2
    assert _one_line(capsys.readouterr().err) == f"genvis evaluate: error: {tmp_path}: Permission denied"


# ------------------------------------------------------------------ row 12: refused torch files, one line

class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_resume_checkpoint_is_one_line(tmp_path):
    import torch

    from genvis.train.config import ExperimentConfig
    from genvis.train.loop import train
    from tests.helpers.toy import make_toy_problem

    marker = tmp_path / "pwned"
    out = tmp_path / "m.pt"
    torch.save({"iteration": 1, "evil": _Evil(marker)}, tmp_path / "m.resume.pt")
    src, ds = make_toy_problem(num_videos=2, length=4)
    cfg = ExperimentConfig.from_dict({"name": "t", "model": {"num_queries": 6, "num_heads": 4, "dim_feedforward": 64,
                                                             "enc_layers": 1, "dec_layers": 2},
                                      "train": {"n_v": 2, "n_f": 1, "batch_videos": 2, "iterations": 2,
                                                "num_points": 32, "decay_steps": [1000]}})
    with pytest.raises(InputError) as info:
        train(cfg, src, ds, out, resume=True, progress=False)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path / 'm.resume.pt'}: cannot read resume checkpoint")
    assert "refused: it asks for Python object posix.system" in msg or "Python object os.system" in msg
    assert not marker.exists() and not out.exists()


def test_other_weights_only_refusals_are_one_line(tmp_path):
    import torch

    from genvis.model.checkpoint import load_any_model, load_model
    from genvis.detector.model import read_detector_file

    evil = tmp_path / "evil.pt"
    torch.save({"evil": _Evil(tmp_path / "pwned")}, evil)
    for load, what in ((load_model, "model file"), (load_any_model, "model file"),
                       (read_detector_file, "detector checkpoint")):
        with pytest.raises(InputError) as info:
            load(evil)
        msg = str(info.value)
        assert "\n" not in msg and len(msg) < 400 and msg.startswith(f"{evil}: cannot read {what}: refused"), msg
    assert not (tmp_path / "pwned").exists()


def test_check_finite_names_nan_and_inf_in_any_float_layout():
    from types import SimpleNamespace

    import torch

    from genvis.clip_source import check_finite

    store = SimpleNamespace(path="store.zarr")
    ok = torch.randn(3, 4, 5)
    check_finite(store, 7, "mask_features", ok, 0, 3)
    check_finite(store, 7, "mask_features", ok.half().transpose(0, 2), 0, 3)   # fp16, strided
    for bad_value in (float("nan"), float("inf"), float("-inf")):
        for bad in (ok.clone(), ok.clone().transpose(0, 2), ok.clone().double()):
            bad[1, 2, 3 if bad.shape[2] > 3 else 0] = bad_value
            with pytest.raises(InputError, match="non-finite values .* mask_features of video 7, frames 4..5"):
                check_finite(store, 7, "mask_features", bad, 4, 6)
