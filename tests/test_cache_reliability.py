"""Reliability of stage one and its consumers under hostile or careless use.

Two extractions on one store, damaged chunks, a model run on another detector's features,
file names leaving the image root, videos without frames, failed extractions leaving no
store, and genvis jobs dying with their parent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from genvis.cache import layout
from genvis.cache.extract import extract
from genvis.cache.reader import CacheReader
from genvis.cache.writer import CacheWriter
from genvis.cli import main
from genvis.data.ytvis import load_vis_json, save_vis_json
from genvis.detector.config import DetectorConfig
from genvis.detector.model import FrameDetector
from genvis.errors import InputError
from genvis.train.config import ExperimentConfig
from tests.helpers.toy import make_toy_problem

from test_extract import TINY, make_split, store_contents

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def child_env() -> dict:
    """Environment for a genvis child process: this checkout's genvis, the venv's `genvis`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel")
    path = make_split(root)
    torch.manual_seed(0)
    det = FrameDetector(DetectorConfig(**TINY)).eval()
    det.save(root / "det.pt")
    return root, path, det


# ---------------------------------------------------------------- row 3: two extractions
def test_two_extract_processes_on_one_new_store_both_end_well(split, tmp_path):
    """Two real processes extract the same split into the same new store: the second starts
    while the first is writing its first video. Both exit 0, each video is written once,
    and the store is complete and identical to a single uninterrupted run."""
    root, ann, det = split
    store = tmp_path / "shared.zarr"
    script = textwrap.dedent(f"""
        import sys, time, torch
        from pathlib import Path
        torch.set_num_threads(1)
        from genvis.cache.extract import extract
        from genvis.data.ytvis import load_vis_json
        from genvis.detector.model import FrameDetector
        det = FrameDetector.load({str(root / 'det.pt')!r})
        real = det.forward
        def slow(x):
            time.sleep(0.1)
            return real(x)
        det.forward = slow
        ds = load_vis_json({str(ann)!r})
        Path(sys.argv[1] + ".ready").touch()
        while not Path(sys.argv[1] + ".go").exists():
            time.sleep(0.01)
        s = extract(ds, {str(root / 'frames')!r}, det, {str(store)!r}, batch_size=1, progress=False)
        print("written", s.written_ids, "skipped", s.videos_skipped)
    """)
    names = [str(tmp_path / f"p{i}") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", script, n], env=child_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in names]
    deadline = time.time() + 180
    while not all(Path(n + ".ready").exists() for n in names) and time.time() < deadline:
        time.sleep(0.05)
    Path(names[0] + ".go").touch()
    partial = store / layout.PARTIAL_DIR
    while not (partial.is_dir() and any(partial.iterdir())) and time.time() < deadline:
        time.sleep(0.01)
    Path(names[1] + ".go").touch()                         # the first is inside video 2 now
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    written = [json.loads(o[0].split("written ")[1].split(" skipped")[0]) for o in outs]
    assert sorted(written[0] + written[1]) == [2, 4, 6, 9]   # each video written once
    assert CacheReader(store).video_ids == [2, 4, 6, 9]
    assert not list(partial.iterdir())
    extract(load_vis_json(ann), root / "frames", det, tmp_path / "ref.zarr", batch_size=1, progress=False)
    assert store_contents(store) == store_contents(tmp_path / "ref.zarr")


def test_claims_keep_a_live_writers_partial_folder(tmp_path):
    """A writer never deletes the partial folder of another writer that is still at work."""
    prov = layout.make_provenance("abc", "tiny", 32, 64, 1)
    a, b = CacheWriter(tmp_path / "c.zarr", prov), CacheWriter(tmp_path / "c.zarr", prov)
    shapes = layout.FrameShapes(1, 2, 4, 1, (2, 2))
    arrays = {f: np.ones((1, *shapes.shape(f)), np.float32) for f in layout.FIELDS}
    with a.video(5, 1, shapes) as va:
        va.write(0, arrays)
        assert not b.claim(5, wait=False)               # a holds video 5
        with pytest.raises(RuntimeError, match="without holding"):
            b.discard_partial(5)
        assert len(list((tmp_path / "c.zarr" / layout.PARTIAL_DIR).iterdir())) == 1
    assert b.claim(5, wait=False) and b.has_video(5)    # released on commit; nothing left to do
    b.release(5)
    assert CacheReader(tmp_path / "c.zarr").video_ids == [5]


# ---------------------------------------------------------------- row 4: checksums
def _toy_cache(path: Path, fingerprint: str, layout_version: int = layout.LAYOUT_VERSION):
    """A cache of the toy problem (2 videos of 7 frames) with a detector-like provenance."""
    src, ds = make_toy_problem(num_videos=2, length=7, seed=3)
    prov = layout.make_provenance(fingerprint, "toy", 16, 32, 2, num_queries=4, hidden_dim=32, num_classes=2)
    prov["layout_version"] = layout_version
    writer = CacheWriter(path, prov)
    for vid in src.video_ids:
        c = src.read_clip(vid, 0, 7, fields=("frame_queries", "mask_features"))
        t, _, q, ch = c["frame_queries"].shape
        arrays = {"frame_queries": c["frame_queries"].numpy(), "mask_features": c["mask_features"].numpy(),
                  "class_logits": np.zeros((t, q, 3), np.float32), "mask_embeddings": np.zeros((t, q, ch), np.float32)}
        attrs = {"file_names": ds.video(vid).file_names,
                 **{k: v for k, v in src.video_attrs(vid).items() if k.endswith("_size")}}
        writer.write_video(vid, arrays, attrs)
    return ds


def _flip_byte(chunk: Path) -> None:
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x04
    chunk.write_bytes(bytes(data))


def _chunks(store: Path, video: int, field: str) -> list[Path]:
    return sorted(p for p in (store / "videos" / str(video) / field / "c").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained by `genvis train` on a toy cache of detector 'detA'."""
    d = tmp_path_factory.mktemp("trained")
    ds = _toy_cache(d / "a.zarr", "detA")
    ann = d / "ann.json"
    save_vis_json(ds, ann)
    exp = d / "exp.yaml"
    exp.write_text(yaml.safe_dump(ExperimentConfig.from_dict({
        "model": {"num_queries": 6, "num_heads": 4, "dim_feedforward": 64, "enc_layers": 1, "dec_layers": 1},
        "train": {"n_v": 2, "n_f": 1, "batch_videos": 2, "iterations": 2, "lr": 1e-3, "num_points": 16,
                  "checkpoint_every": 100, "decay_steps": [1000]}}).to_dict()))
    model = d / "model.pt"
    assert main(["train", "--cache", str(d / "a.zarr"), "--annotations", str(ann), "--config", str(exp),
                 "--out", str(model), "--iterations", "2", "--no-progress"]) == 0
    return d, ann, exp, model


def test_flipped_byte_in_frame_queries_is_refused_by_train_and_infer(trained, tmp_path, capsys):
    d, ann, exp, model = trained
    store = tmp_path / "damaged.zarr"
    _toy_cache(store, "detA")
    meta = json.loads((store / "videos/1/frame_queries/zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "blosc", "crc32c"]
    chunks = _chunks(store, 1, "frame_queries")
    assert len(chunks) == 7
    for chunk in chunks:            # every frame of video 1: whichever clip train samples
        _flip_byte(chunk)
    capsys.readouterr()
    assert main(["train", "--cache", str(store), "--annotations", str(ann), "--config", str(exp),
                 "--out", str(tmp_path / "m.pt"), "--iterations", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "damaged.zarr" in err and "frame_queries of video 1" in err
    assert "checksum" in err and not (tmp_path / "m.pt").exists()
    assert main(["infer", "--cache", str(store), "--annotations", str(ann), "--model", str(model),
                 "--out", str(tmp_path / "r.json"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "frame_queries of video 1" in err and "checksum" in err
    assert not (tmp_path / "r.json").exists()
    reader = CacheReader(store)
    with pytest.raises(InputError, match=r"damaged.zarr: damaged chunk in cached frame_queries of video 1 "
                                         r"\(frames 3..3\)"):
        reader.read_clip(1, 3, 4)
    with pytest.raises(InputError, match=r"damaged chunk in cached frame_queries of video 1 \(frames \[1, 3\]\)"):
        reader.read_frames(1, [1, 3, 3])                                     # a sparse training sample
    assert reader.read_clip(2, 0, 7)["frame_queries"].shape == (7, 2, 4, 32)   # the other video reads


def test_old_stores_without_checksums_still_read_and_resume(tmp_path):
    """A store of format version 1 (written before checksums) reads; an extraction that
    resumes it writes its videos in version 1 too; an unknown newer version is refused."""
    store = tmp_path / "old.zarr"
    _toy_cache(store, "detA", layout_version=1)
    assert json.loads((store / "zarr.json").read_text())["attributes"]["layout_version"] == 1
    meta = json.loads((store / "videos/1/frame_queries/zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "blosc"]
    reader = CacheReader(store)
    assert reader.layout_version == 1 and reader.read_clip(1, 0, 7)["frame_queries"].shape == (7, 2, 4, 32)
    new = CacheWriter(store, layout.make_provenance("detA", "toy", 16, 32, 2, num_queries=4, hidden_dim=32,
                                                    num_classes=2))
    assert new.layout_version == 1
    shapes = layout.FrameShapes(2, 4, 32, 2, (4, 4))
    new.write_video(9, {f: np.zeros((2, *shapes.shape(f)), np.float32) for f in layout.FIELDS})
    meta = json.loads((store / "videos/9/frame_queries/zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "blosc"]
    doc = json.loads((store / "zarr.json").read_text())
    doc["attributes"]["layout_version"] = 99
    (store / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="format version 99"):
        CacheReader(store)


# ---------------------------------------------------------------- row 5: provenance
def test_infer_refuses_a_cache_of_another_detector(trained, tmp_path, capsys):
    d, ann, exp, model = trained
    other = tmp_path / "b.zarr"
    _toy_cache(other, "detB")
    capsys.readouterr()
    out = tmp_path / "r.json"
    args = ["infer", "--cache", str(other), "--annotations", str(ann), "--model", str(model),
            "--out", str(out), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(model) in err and "b.zarr" in err
    assert "detector_fingerprint: model='detA' now='detB'" in err and "--allow-other-detector" in err
    assert not out.exists()
    assert main(args + ["--allow-other-detector"]) == 0
    assert "warning" in capsys.readouterr().err and out.is_file()
    # the same detector, re-extracted in another format version: accepted
    v1 = tmp_path / "v1.zarr"
    _toy_cache(v1, "detA", layout_version=1)
    assert main(["infer", "--cache", str(v1), "--annotations", str(ann), "--model", str(model),
                 "--out", str(tmp_path / "r1.json"), "--no-progress"]) == 0
    assert (tmp_path / "r1.json").read_bytes() == out.read_bytes()


def test_infer_results_do_not_depend_on_videos_at_once(trained, tmp_path, capsys):
    d, ann, exp, model = trained
    base = ["infer", "--cache", str(d / "a.zarr"), "--annotations", str(ann), "--model", str(model), "--no-progress"]
    outs = []
    for extra in ([], ["--videos-at-once", "1"], ["--videos-at-once", "1", "--no-resume"]):
        outs.append(tmp_path / f"r{len(outs)}.json")
        assert main(base + ["--out", str(outs[-1])] + extra) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes() == outs[2].read_bytes()
    assert len(json.loads(outs[0].read_text())) > 0
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "bad.json"), "--videos-at-once", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--videos-at-once" in err and not (tmp_path / "bad.json").exists()


def test_demo_refuses_another_detector_than_the_models(tmp_path, capsys):
    from genvis.cache.extract import cache_provenance
    from genvis.model.checkpoint import save_model
    from genvis.model.genvis import GenVIS

    cfg = dict(TINY, num_classes=3)
    torch.manual_seed(0)
    det_a = FrameDetector(DetectorConfig(**cfg))
    det_a.save(tmp_path / "a.pt")
    torch.manual_seed(1)
    FrameDetector(DetectorConfig(**cfg)).save(tmp_path / "b.pt")
    exp = ExperimentConfig.from_dict({"model": {"num_queries": 4, "num_heads": 4, "dim_feedforward": 32,
                                                "enc_layers": 1, "dec_layers": 1}})
    save_model(tmp_path / "model.pt", GenVIS(exp.model_config(3, 32, 5, 32)), exp.to_dict(),
               {"provenance": cache_provenance(det_a, 32, 64)})
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 56, 3), 60 * i, np.uint8)).save(frames / f"{i:05d}.jpg")
    base = ["demo", "--video", str(frames), "--model", str(tmp_path / "model.pt"), "--no-progress"]
    capsys.readouterr()
    assert main(base + ["--detector", str(tmp_path / "b.pt"), "--out-dir", str(tmp_path / "ob")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "detector_fingerprint" in err and "b.pt" in err
    assert not (tmp_path / "ob").exists()
    assert main(base + ["--detector", str(tmp_path / "a.pt"), "--out-dir", str(tmp_path / "oa")]) == 0
    assert main(base + ["--detector", str(tmp_path / "b.pt"), "--out-dir", str(tmp_path / "ob"),
                        "--allow-other-detector"]) == 0
    assert (tmp_path / "ob" / "results.json").is_file()


# ---------------------------------------------------------------- rows 6, 7: annotations
def _ann_with(split_json: Path, out: Path, video_id: int = 4, **video_changes) -> Path:
    doc = json.loads(split_json.read_text())
    next(v for v in doc["videos"] if v["id"] == video_id).update(video_changes)
    out.write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize("name", ["../secret.png", "v4/../../secret.png", "/etc/passwd", "v4\\..\\..\\x.png",
                                  "C:\\frames\\x.png", ""])
def test_file_names_outside_the_image_root_are_refused(split, tmp_path, name, capsys):
    root, ann, _ = split
    doc = json.loads(ann.read_text())
    names = list(doc["videos"][0]["file_names"])
    names[1] = name
    bad = _ann_with(ann, tmp_path / "bad.json", file_names=names)
    with pytest.raises(InputError, match=r"bad.json: video 4: file_names\[1\] = .* leaves the image root"):
        load_vis_json(bad)
    capsys.readouterr()
    assert main(["extract", "--annotations", str(bad), "--image-root", str(root / "frames"), "--detector",
                 str(root / "det.pt"), "--out", str(tmp_path / "c.zarr"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.json" in err and "file_names[1]" in err
    assert not (tmp_path / "c.zarr").exists()
    res = tmp_path / "res.json"
    res.write_text("[]")
    assert main(["evaluate", "--gt", str(bad), "--results", str(res), "--out", str(tmp_path / "m.json")]) == 2
    assert "leaves the image root" in capsys.readouterr().err


def test_video_without_frames_is_refused(split, tmp_path, capsys):
    root, ann, _ = split
    bad = _ann_with(ann, tmp_path / "empty.json", file_names=[], length=0)
    with pytest.raises(InputError, match=r"empty.json: video 4 has no frames"):
        load_vis_json(bad)
    capsys.readouterr()
    assert main(["extract", "--annotations", str(bad), "--image-root", str(root / "frames"), "--detector",
                 str(root / "det.pt"), "--out", str(tmp_path / "c.zarr"), "--no-progress"]) == 2
    assert "video 4 has no frames" in capsys.readouterr().err
    assert not (tmp_path / "c.zarr").exists()
    res = tmp_path / "res.json"
    res.write_text("[]")
    assert main(["evaluate", "--gt", str(bad), "--results", str(res), "--out", str(tmp_path / "m.json")]) == 2
    assert "video 4 has no frames" in capsys.readouterr().err


# ---------------------------------------------------------------- row 13: no empty store
def test_failed_extraction_leaves_no_store_behind(split, tmp_path, capsys):
    root, ann, det = split
    ds = load_vis_json(ann)
    frames = tmp_path / "frames"
    for v in ds.videos:
        for name in v.file_names:
            (frames / name).parent.mkdir(parents=True, exist_ok=True)
            (frames / name).write_bytes((root / "frames" / name).read_bytes())
    first = frames / ds.video(2).file_names[1]          # the first video extracted is 2
    good = first.read_bytes()
    first.write_bytes(good[:60])                          # truncated
    out = tmp_path / "new" / "deeper" / "c.zarr"
    capsys.readouterr()
    assert main(["extract", "--annotations", str(ann), "--image-root", str(frames), "--detector",
                 str(root / "det.pt"), "--out", str(out), "--no-progress"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()               # neither the store nor its new parents
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
    first.write_bytes(good)
    capsys.readouterr()
    absurd = _ann_with(ann, tmp_path / "absurd.json", video_id=2, height=10 ** 9, width=10 ** 9)
    assert main(["extract", "--annotations", str(absurd), "--image-root", str(frames), "--detector",
                 str(root / "det.pt"), "--out", str(tmp_path / "a.zarr"), "--no-progress"]) == 2
    assert "absurd.json: video 2" in capsys.readouterr().err and not (tmp_path / "a.zarr").exists()
    huge = _ann_with(ann, tmp_path / "huge.json", video_id=2, height=40000, width=40000)
    with pytest.raises(InputError, match="frame size 20x28 differs from the 40000x40000"):
        extract(load_vis_json(huge), frames, det, tmp_path / "h.zarr", progress=False)
    assert not (tmp_path / "h.zarr").exists()
    # a store that already held videos stays, with them
    extract(load_vis_json(ann).subset([2]), frames, det, tmp_path / "kept.zarr", progress=False)
    first = frames / ds.video(4).file_names[0]
    first.write_bytes(b"garbage")
    with pytest.raises(InputError, match="v4/000.png"):
        extract(load_vis_json(ann), frames, det, tmp_path / "kept.zarr", progress=False)
    assert CacheReader(tmp_path / "kept.zarr").video_ids == [2]


# ---------------------------------------------------------------- row 14: no orphans
def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_genvis_job_dies_with_its_parent(tmp_path):
    """The shape of a Snakemake job: a thread of the parent runs the rule's shell command
    (``set -euo pipefail; exec genvis synth ... > log 2>&1``, as rule synth_dataset). The
    job would run for hours (100,000 videos); the parent is killed with SIGKILL while it
    writes frames; genvis must end too instead of running on as an orphan."""
    out = tmp_path / "synth"
    cmd = (f"set -euo pipefail; exec genvis synth --out {out} --videos 100000 --height 32 --width 32 "
           f"--no-progress > {tmp_path / 'log'} 2>&1")
    # a launcher started normally: SIGHUP at its default even when pytest runs under nohup
    # (which ignores it, and an ignored SIGHUP is inherited: genvis then arms nothing)
    parent_code = textwrap.dedent(f"""
        import signal, subprocess, threading, time
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        def job():
            p = subprocess.Popen({cmd!r}, shell=True, executable="/bin/bash")
            print(p.pid, flush=True)
            p.wait()
        threading.Thread(target=job).start()
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code], env=child_env(), stdout=subprocess.PIPE,
                              text=True)
    child = int(parent.stdout.readline())
    try:
        deadline = time.time() + 120
        while not (out / "frames").is_dir() and time.time() < deadline:   # genvis is at work
            time.sleep(0.05)
        assert (out / "frames").is_dir() and _alive(child), (tmp_path / "log").read_text()[-2000:]
        assert b"\x00synth\x00" in Path(f"/proc/{child}/cmdline").read_bytes()   # bash exec'd genvis
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 20
        while _alive(child) and time.time() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "genvis kept running after its parent was killed"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()


def test_workflow_rules_exec_genvis(tmp_path):
    """Every rule's genvis command replaces the job's shell (`exec genvis`), so genvis is
    Snakemake's own child and dies with it. Only the visualize rule runs two genvis commands
    in one job; its first cannot be exec'd (a short report step)."""
    import re

    from test_workflow import placeholder_config, run_snakemake

    proc = run_snakemake(tmp_path, "-n", "-p", "quickstart", "diagnose", config=placeholder_config(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    commands = [line for line in proc.stdout.splitlines() if re.search(r"\bgenvis [a-z-]+ --", line)]
    kinds = {re.search(r"\bgenvis ([a-z-]+) --", c).group(1) for c in commands}
    assert {"synth", "train-detector", "extract", "train", "infer", "evaluate", "diagnose"} <= kinds
    bare = [c for c in commands if re.search(r"(?<!exec )\bgenvis (?!visualize)[a-z-]+ --", c)]
    assert not bare, bare[:3]
