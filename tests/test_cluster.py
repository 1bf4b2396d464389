"""Scale-out with dask (genvis.cluster): extract and infer with videos as tasks on a
LocalCluster of 2 worker processes give the same store and the same results json as a
serial run, and a worker killed mid-run leaves a store that a rerun completes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import torch

from genvis.cache import layout
from genvis.cache.extract import extract
from genvis.cache.reader import CacheReader
from genvis.model.checkpoint import save_model
from genvis.cluster import cluster_client, extract_on_cluster, infer_on_cluster, wants_cluster
from genvis.data.ytvis import load_vis_json
from genvis.detector.config import DetectorConfig
from genvis.detector.model import FrameDetector
from genvis.errors import ConfigError, InputError
from genvis.infer.inference import write_inference
from genvis.model.config import GenVISConfig
from genvis.model.genvis import GenVIS
from test_extract import TINY, make_split, store_contents

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LENGTHS = {3: 3, 5: 5, 8: 2, 11: 4, 12: 3}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)   # as the workers (module fixtures run before one_torch_thread)
    root = tmp_path_factory.mktemp("cluster")
    split = make_split(root, LENGTHS)
    torch.manual_seed(0)
    det = FrameDetector(DetectorConfig(**TINY)).eval()
    det.save(root / "det.pt")
    serial = root / "serial.zarr"
    extract(load_vis_json(split), root / "frames", det, serial, batch_size=2, progress=False)
    torch.manual_seed(1)
    model = GenVIS(GenVISConfig(num_classes=2, hidden_dim=32, num_frame_queries=5, mask_feature_dim=32,
                                num_queries=4, num_heads=4, dim_feedforward=64, enc_layers=1, dec_layers=2))
    save_model(root / "model.pt", model, experiment={})
    return root, split, serial


@pytest.fixture(scope="module")
def client():
    with cluster_client(workers=2, threads_per_worker=1) as c:
        yield c


def test_options_are_checked():
    assert not wants_cluster(None, None)
    assert wants_cluster(2, None) and wants_cluster(None, "tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="--workers"):
        wants_cluster(0, None)
    with pytest.raises(ConfigError, match="not both"):
        wants_cluster(2, "tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="cannot reach the dask scheduler at tcp://127.0.0.1:9"):
        with cluster_client(scheduler="tcp://127.0.0.1:9", connect_timeout=1):
            pass


def test_local_workers_spawn_with_the_malloc_and_thread_settings(client):
    from genvis.cluster import WORKER_MALLOC, WORKER_ZARR

    def environ():
        import zarr

        return {**{k: os.environ.get(k) for k in [*WORKER_MALLOC, "OMP_NUM_THREADS"]},
                "zarr_threads": zarr.config.get("threading.max_workers")}

    want = {**{k: os.environ.get(k, v) for k, v in WORKER_MALLOC.items()}, "OMP_NUM_THREADS": "1",
            # one thread in Zarr's codec pool (unless the caller's environment says otherwise)
            "zarr_threads": int(os.environ.get("ZARR_THREADING__MAX_WORKERS",
                                               WORKER_ZARR["ZARR_THREADING__MAX_WORKERS"]))}
    for got in client.run(environ).values():
        assert got == want
        assert got["MALLOC_TRIM_THRESHOLD_"] != "65536"   # not dask's default (2x slower forward)


def test_extract_on_two_workers_equals_serial(setup, client, tmp_path):
    root, split, serial = setup
    out = tmp_path / "d.zarr"
    stats = extract_on_cluster(client, split, root / "frames", root / "det.pt", out, batch_size=2,
                               progress=False)
    assert stats.videos_written == 5 and stats.frames == sum(LENGTHS.values())
    assert sorted(stats.written_ids) == sorted(LENGTHS)
    # every array equals the serial run's bytes
    assert store_contents(out) == store_contents(serial)
    assert not list((out / layout.PARTIAL_DIR).iterdir())
    again = extract_on_cluster(client, split, root / "frames", root / "det.pt", out, batch_size=2,
                               progress=False)
    assert again.videos_written == 0 and again.videos_skipped == 5


def test_extract_refuses_other_resolution_before_any_task(setup, client, tmp_path):
    root, split, serial = setup
    with pytest.raises(InputError, match="min_size: stored=32 expected=40"):
        extract_on_cluster(client, split, root / "frames", root / "det.pt", serial, min_size=40, progress=False)


def test_a_failing_video_raises_its_named_error_and_keeps_the_others(setup, client, tmp_path):
    root, split, _ = setup
    doc = json.loads(split.read_text())
    doc["videos"][1]["file_names"][2] = "v5/missing.png"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    out = tmp_path / "b.zarr"
    with pytest.raises(InputError, match="missing.png"):
        extract_on_cluster(client, bad, root / "frames", root / "det.pt", out, progress=False)
    assert 5 not in CacheReader(out).video_ids


def test_bad_records_and_a_missing_detector_are_refused_before_the_store_exists(setup, client, tmp_path):
    root, split, _ = setup
    doc = json.loads(split.read_text())
    doc["videos"][2]["length"] += 1            # 8: length != number of file names
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    out = tmp_path / "sub" / "b.zarr"
    with pytest.raises(InputError, match=r"bad.json: video 8: 'length' is 3"):
        extract_on_cluster(client, bad, root / "frames", root / "det.pt", out, progress=False)
    with pytest.raises(InputError, match="nope.pt: detector checkpoint not found"):
        extract_on_cluster(client, split, root / "frames", tmp_path / "nope.pt", out, progress=False)
    assert not (tmp_path / "sub").exists()


def test_killed_worker_leaves_a_store_that_a_rerun_completes(setup, client, tmp_path):
    root, split, serial = setup
    out = tmp_path / "k.zarr"
    errors = []
    c = client   # the nanny restarts the killed worker; registered plugins load again there
    pids = list(c.run(os.getpid).values())

    def run():
        try:
            extract_on_cluster(c, split, root / "frames", root / "det.pt", out, batch_size=2, progress=False)
        except Exception as exc:  # noqa: BLE001 - a lost worker may surface as any dask error
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    partial = out / layout.PARTIAL_DIR
    while time.monotonic() < deadline and not (partial.is_dir() and any(partial.iterdir())):
        time.sleep(0.01)   # a video is being written now
    os.kill(pids[0], signal.SIGKILL)
    t.join(120)
    assert not t.is_alive()
    # whatever dask made of the lost worker (the task retried elsewhere, or an error), the
    # store holds only whole videos, and a rerun completes it to the serial run's bytes
    done = CacheReader(out).video_ids
    assert set(done) <= set(LENGTHS)
    again = extract_on_cluster(c, split, root / "frames", root / "det.pt", out, batch_size=2, progress=False)
    assert again.videos_skipped == len(done) and again.videos_written == 5 - len(done)
    assert store_contents(out) == store_contents(serial)


def test_infer_on_two_workers_is_byte_identical_to_serial(setup, client, tmp_path):
    root, split, serial = setup
    from genvis.model.checkpoint import load_model

    model, _ = load_model(root / "model.pt")
    ds = load_vis_json(split)
    one = tmp_path / "serial.json"
    write_inference(model, CacheReader(serial), ds, 2, one, top_k=3, progress=False)
    two = tmp_path / "dask.json"
    key = {"run": "test", "n_f_eval": 2}
    n = infer_on_cluster(client, root / "model.pt", serial, split, two, 2, 3, "propagate", key, progress=False)
    assert n == 3 * len(LENGTHS)
    assert two.read_bytes() == one.read_bytes()
    assert not (tmp_path / ".dask.json.parts").exists()


def test_serial_cli_runs_do_not_import_dask_distributed(setup, tmp_path):
    """Without --workers / --scheduler, `genvis infer` and `genvis extract` run in-process and
    never import dask.distributed (~0.3-0.5 s of every workflow job's start); the serial
    results equal the library call's."""
    import subprocess
    import sys

    root, split, serial = setup
    from genvis.model.checkpoint import load_model

    model, _ = load_model(root / "model.pt")
    lib = tmp_path / "lib.json"
    write_inference(model, CacheReader(serial), load_vis_json(split), 2, lib, top_k=3, progress=False)
    code = ("import sys; from genvis.cli import main; "
            f"rc = main(['infer', '--cache', {str(serial)!r}, '--annotations', {str(split)!r}, '--model', "
            f"{str(root / 'model.pt')!r}, '--out', {str(tmp_path / 'cli.json')!r}, '--n-f-eval', '2', '--top-k', '3', "
            "'--threads', '1', '--no-progress', '--allow-other-detector']); "
            f"rc2 = main(['extract', '--annotations', {str(split)!r}, '--image-root', {str(root / 'frames')!r}, "
            f"'--detector', {str(root / 'det.pt')!r}, '--out', {str(tmp_path / 'x.zarr')!r}, '--batch-size', '2', "
            "'--threads', '1', '--no-progress']); "
            "print(rc, rc2, 'distributed' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-3:] == ["0", "0", "False"]
    assert (tmp_path / "cli.json").read_bytes() == lib.read_bytes()
    assert store_contents(tmp_path / "x.zarr") == store_contents(serial)


def test_evaluate_on_the_cluster_gives_the_same_numbers(client):
    """40 videos (3 chunks of 16): predictions are the ground truth shifted by 0..3 pixels with
    random scores, plus a false positive per video; dask tasks and one process agree exactly."""
    import numpy as np

    from conftest import make_tiny_vis_dict
    from genvis.data import masks as mask_ops
    from genvis.data.results import VideoResult
    from genvis.data.ytvis import parse_vis_dict
    from genvis.evaluate.ytvis_eval import evaluate

    rng = np.random.default_rng(4)
    videos, anns, preds = [], [], []
    for seed in range(14):
        doc = make_tiny_vis_dict(seed)
        for v in doc["videos"]:
            videos.append(dict(v, id=len(videos) + 1, _old=v["id"]))
        new_id = {v["_old"]: v["id"] for v in videos[-len(doc["videos"]):]}
        for a in doc["annotations"]:
            anns.append(dict(a, id=len(anns) + 1, video_id=new_id[a["video_id"]]))
            v = videos[new_id[a["video_id"]] - 1]
            m = np.stack([mask_ops.decode_rle(s, v["height"], v["width"]).astype(bool)
                          for s in a["segmentations"]])
            shifted = np.roll(m, int(rng.integers(4)), axis=2)
            preds.append(VideoResult(v["id"], a["category_id"], float(rng.random()),
                                     mask_ops.encode_masks_or_none(shifted)))
    for v in videos:
        v.pop("_old")
        fp = np.zeros((v["length"], v["height"], v["width"]), bool)
        fp[:, :5, :5] = True
        preds.append(VideoResult(v["id"], 1, float(rng.random()), mask_ops.encode_masks_or_none(fp)))
    gt = parse_vis_dict({"videos": videos[:40], "annotations": [a for a in anns if a["video_id"] <= 40],
                         "categories": doc["categories"]}, "gt.json")
    preds = [p for p in preds if p.video_id <= 40]
    one = evaluate(gt, preds, workers=1, hota=True)
    on_cluster = evaluate(gt, preds, client=client, hota=True)
    assert one == on_cluster and 0 < one["AP"] < 100 and 0 < one["HOTA"] < 100
