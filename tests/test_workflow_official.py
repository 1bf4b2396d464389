"""`snakemake ovis_eval` with official models: import, extract, infer and the server zip,
no training -- dry runs for the R50 and Swin-L official-format checkpoints, and a real run
on a tiny OVIS-like set with a small official-format Swin checkpoint and no detector yaml."""

from __future__ import annotations

import copy
import json
import zipfile

import pytest

from tests.helpers.official_format import official_keys, write_official_checkpoint
from test_workflow import DEFAULT_CONFIG, REPO, fake_ovis, job_counts, placeholder_config, run_snakemake

OFFICIAL_ONLY_JOBS = {"holdout_split": 1, "detector": 1, "extract": 2, "infer": 2, "infer_submission": 2,
                      "evaluate": 2, "report_spec": 1, "report": 1, "ovis_eval": 1}


def official_ovis(tmp_path, detector: str, ckpt, config) -> dict:
    """The OVIS entries pointed at tiny files, with ``detector`` (r50 / swinl) imported from
    ``ckpt`` (its yaml ``config``, None = inferred) and both experiments official."""
    cfg = fake_ovis(tmp_path, placeholder_config(tmp_path))
    ovis = cfg["datasets"]["ovis"]
    ovis["detector"] = detector
    ovis["detectors"][detector] = {"config": config, "checkpoint": str(ckpt)}
    ovis["official_models"] = {e: str(ckpt) for e in ovis["experiments"]}
    cfg["experiments"] = copy.deepcopy(DEFAULT_CONFIG["experiments"])   # real yamls: N_f is read
    return cfg


@pytest.mark.parametrize("detector, backbone, queries, config", [
    ("r50", "resnet", 100, "config/detectors/r50_ovis.yaml"),
    ("swinl", "swin", 200, None),
])
def test_ovis_eval_with_official_models_does_not_train(tmp_path, detector, backbone, queries, config):
    ckpt = tmp_path / f"genvis_{detector}_ovis.pth"
    ckpt.write_text("{}")   # a dry run only checks that it exists (key lists: see the real run)
    cfg = official_ovis(tmp_path, detector, ckpt, config)
    proc = run_snakemake(tmp_path, "-n", "-p", "ovis_eval", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout) == OFFICIAL_ONLY_JOBS          # no train job, no train-split cache
    out = proc.stdout
    expected = f"--config {REPO / config}" if config else "--dataset ovis"
    assert f"genvis import-checkpoint --checkpoint {ckpt} {expected} --out detectors/ovis/{detector}.pt" in out
    for split in ("holdout", "valid"):
        assert f"--out cache/ovis/{split}/{detector}.zarr" in out
    assert "cache/ovis/train/" not in out
    assert "genvis train " not in out
    # official settings: N_f^eval = LEN_CLIP_WINDOW (1 online, 3 semi-online), top-20 on OVIS
    assert (f"--model {ckpt} --out runs/ovis/genvis_online/valid/submission/results.json "
            f"--zip runs/ovis/genvis_online/valid/submission/results.zip --n-f-eval 1 --top-k 20") in out
    assert "--zip runs/ovis/genvis_semi_online/valid/submission/results.zip --n-f-eval 3 --top-k 20" in out


def test_a_trained_detector_needs_its_yaml(tmp_path):
    cfg = placeholder_config(tmp_path)
    cfg["datasets"]["synth"]["detectors"][cfg["datasets"]["synth"]["detector"]]["config"] = None
    proc = run_snakemake(tmp_path, "-n", "quickstart", config=cfg)
    assert proc.returncode != 0
    assert "config: not set: a detector trained here needs its yaml" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_tiny_ovis_eval_with_one_official_checkpoint(tmp_path, tiny_synth_dir):
    """The real run: 6 synthetic videos standing in for OVIS (25 categories), one small
    official-format GenVIS checkpoint (Swin layout) as detector and both video models."""
    root = tmp_path / "ovis"
    root.mkdir()
    for src, dst in (("train.json", "annotations_train.json"), ("valid.json", "annotations_valid.json")):
        data = json.loads((tiny_synth_dir / src).read_text())
        data["categories"] = [{"id": i, "name": f"c{i}", "supercategory": "x"} for i in range(1, 26)]
        if dst == "annotations_valid.json":
            data.pop("annotations", None)   # the server split has no ground truth
        (root / dst).write_text(json.dumps(data))
    ckpt = root / "genvis_swin_ovis.pth"
    write_official_checkpoint(ckpt, official_keys(
        "swin", 25, 6, swin=dict(embed_dim=32, depths=(2, 2, 2, 2), heads=(1, 2, 4, 8), window=12), hidden=32,
        dec_layers=4, enc_layers=1, ff=64, enc_ff=48, video=dict(num_queries=6, enc_layers=1, dec_layers=2, ff=48)))
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    ovis = cfg["datasets"]["ovis"]
    frames = str(tiny_synth_dir / "frames")
    ovis["splits"]["train_full"] = {"annotations": str(root / "annotations_train.json"), "image_root": frames}
    ovis["splits"]["valid"] = {"annotations": str(root / "annotations_valid.json"), "image_root": frames}
    ovis["splits"]["train"]["holdout"]["fraction"] = ovis["splits"]["holdout"]["holdout"]["fraction"] = 0.5
    ovis["detector"] = "swinl"
    ovis["detectors"]["swinl"] = {"config": None, "checkpoint": str(ckpt), "min_size": 64, "max_size": 96}
    ovis["official_models"] = {e: str(ckpt) for e in ovis["experiments"]}
    cfg["datasets"] = {"ovis": ovis}
    cfg["resources"] = {"threads": 1, "stage_two_threads": 1, "gpu": 0}
    proc = run_snakemake(tmp_path, "--cores", "2", "ovis_eval", config=cfg, timeout=900)
    if proc.returncode != 0:
        logs = "\n".join(f"== {p.relative_to(tmp_path)}\n{p.read_text()[-1500:]}"
                         for p in sorted((tmp_path / "logs").rglob("*.log")))
        pytest.fail(f"ovis_eval failed:\n{proc.stderr[-4000:]}\n{logs}")
    assert not (tmp_path / "runs" / "ovis" / "genvis_online" / "model.pt").exists()
    assert not (tmp_path / "cache" / "ovis" / "train").exists()
    log = (tmp_path / "logs" / "ovis" / "detector" / "swinl.log").read_text()
    assert "8 Swin position index tables used as stored" in log
    for e in ovis["experiments"]:
        with zipfile.ZipFile(tmp_path / "runs" / "ovis" / e / "valid" / "submission" / "results.zip") as z:
            results = json.loads(z.read(z.namelist()[0]))
        n_videos = len(json.loads((root / "annotations_valid.json").read_text())["videos"])
        assert len(results) == 20 * n_videos and all(1 <= r["category_id"] <= 25 for r in results)  # top-20
        metrics = json.loads((tmp_path / "runs" / "ovis" / e / "holdout" / "metrics.json").read_text())
        assert 0.0 <= metrics["AP"] <= 100.0
    assert (tmp_path / "reports" / "ovis" / "summary" / "results.csv").is_file()
