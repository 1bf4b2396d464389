"""One file, no YAML: the detector config read from official checkpoints' keys and shapes,
``genvis import-checkpoint`` without ``--config`` and ``genvis demo --checkpoint``."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genvis.detector.config import DetectorConfig, load_detector_yaml
from genvis.detector.official_config import detector_config_from_official
from genvis.errors import ConfigError, InputError
from tests.helpers.official_format import official_keys, write_official_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DETECTORS = ROOT / "config" / "detectors"

# small official-format models (same layouts, fewer/narrower layers) for the runs
SMALL_HEAD = dict(hidden=32, dec_layers=4, enc_layers=1, ff=64, enc_ff=48)
SMALL_VIDEO = dict(num_queries=6, enc_layers=1, dec_layers=2, ff=48)
SMALL_SWIN = dict(embed_dim=32, depths=(2, 2, 2, 2), heads=(1, 2, 4, 8), window=12)
SMALL_RESNET = dict(depths=(1, 1, 1, 1), stem=16, widths=(64, 128, 256, 512))


def shapes(keys):
    """Key list -> {name: object with .shape} (no weights needed to infer a config)."""
    return {n: SimpleNamespace(shape=tuple(s)) for n, s in keys}


def test_helper_key_list_is_the_official_swinl_list(shared_fixtures):
    """The test helper writes exactly the official GenVIS Swin-L OVIS names and shapes."""
    spec = json.loads((shared_fixtures / "official_swinl" / "keys.json").read_text())
    official = {n: tuple(s) for n, s in spec["keys"]}
    assert dict(official_keys("swin", 25, 200)) == official
    assert detector_config_from_official(shapes(spec["keys"])).to_dict() == \
        load_detector_yaml(DETECTORS / "swinl_ovis.yaml")[0].to_dict()


@pytest.mark.parametrize("yaml_name, backbone, classes, queries, dataset", [
    ("swinl_ovis.yaml", "swin", 25, 200, None),
    ("r50_ovis.yaml", "resnet", 25, 100, None),
    ("r50_ytvis19.yaml", "resnet", 40, 100, "ytvis19"),
    ("r50_ytvis21.yaml", "resnet", 40, 100, "ytvis21"),
    ("swinl_ytvis19.yaml", "swin", 40, 200, "ytvis19"),
    ("swinl_ytvis21.yaml", "swin", 40, 200, "ytvis21"),
])
def test_inferred_config_equals_the_config_file(yaml_name, backbone, classes, queries, dataset):
    cfg = detector_config_from_official(shapes(official_keys(backbone, classes, queries)), dataset=dataset)
    assert cfg.to_dict() == load_detector_yaml(DETECTORS / yaml_name)[0].to_dict()


def test_inference_reads_every_size_from_the_shapes():
    keys = official_keys("resnet", 80, 50, genvis=False, dec_layers=7, enc_layers=3, ff=1024, enc_ff=512,
                         resnet=dict(depths=(3, 4, 23, 3)))
    cfg = detector_config_from_official(shapes(keys))
    assert cfg.name == "r101-coco" and cfg.backbone_options == {"depths": [3, 4, 23, 3]}
    assert (cfg.num_classes, cfg.num_queries, cfg.decoder_layers, cfg.encoder_layers) == (80, 50, 7, 3)
    assert (cfg.dim_feedforward, cfg.encoder_feedforward_dim, cfg.min_size, cfg.max_size) == (1024, 512, 800, 1333)
    small = official_keys("swin", 40, 6, swin=SMALL_SWIN, **SMALL_HEAD, video=SMALL_VIDEO)
    cfg = detector_config_from_official(shapes(small))
    assert cfg.name == "swin32-ytvis" and cfg.hidden_dim == 32 and (cfg.min_size, cfg.max_size) == (448, 1333)
    assert cfg.backbone_options == {"embed_dim": 32, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 4, 8],
                                    "window_size": 12}
    cfg = detector_config_from_official(shapes(small), dataset="ytvis21", min_size=300)
    assert cfg.name == "swin32-ytvis21" and (cfg.min_size, cfg.max_size) == (300, 1333)


def test_what_cannot_be_inferred_is_named():
    keys = shapes(official_keys("resnet", 7, 10, genvis=False, resnet=SMALL_RESNET, **SMALL_HEAD))
    with pytest.raises(ConfigError, match=r"cannot infer the input size: 7 classes .* --min-size and --max-size"):
        detector_config_from_official(keys)
    cfg = detector_config_from_official(keys, min_size=200, max_size=400)
    assert cfg.name.endswith("-custom") and (cfg.min_size, cfg.max_size) == (200, 400)
    with pytest.raises(ConfigError, match="has 7 classes but ovis has 25"):
        detector_config_from_official(keys, dataset="ovis", min_size=200)
    missing = {k: v for k, v in keys.items() if "query_feat" not in k}
    with pytest.raises(InputError, match="sem_seg_head.predictor.query_feat.weight is missing"):
        detector_config_from_official(missing, min_size=200)
    with pytest.raises(InputError, match="neither Swin .* nor ResNet"):
        detector_config_from_official({k: v for k, v in keys.items() if not k.startswith("backbone.stem")},
                                      min_size=200)
    with pytest.raises(InputError, match="no detector weights"):
        detector_config_from_official({"vita_module.query_feat.weight": SimpleNamespace(shape=(3, 32))})


def test_import_checkpoint_without_yaml_pkl_and_pth(tmp_path, capsys):
    """A Mask2Former .pkl (numpy arrays, COCO classes) and a GenVIS .pth import with no YAML;
    the result equals the import with the inferred config given explicitly as a YAML."""
    import yaml

    from genvis.cli import main
    from genvis.detector.model import FrameDetector

    keys = official_keys("resnet", 80, 10, genvis=False, resnet=SMALL_RESNET, **SMALL_HEAD)
    weights = {k: v.numpy() for k, v in write_official_checkpoint(tmp_path / "unused.pth", keys, seed=1).items()}
    pkl = tmp_path / "model_final.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"model": weights, "__author__": "test", "matching_heuristics": True}, f)
    assert main(["import-checkpoint", "--checkpoint", str(pkl), "--out", str(tmp_path / "a.pt")]) == 0
    out = capsys.readouterr().out
    assert "inferred from the checkpoint: resnet14-coco: resnet depths=[1, 1, 1, 1]" in out and "input 800/1333" in out
    a = FrameDetector.load(tmp_path / "a.pt")
    assert a.cfg.num_classes == 80 and a.cfg.backbone_options["depths"] == [1, 1, 1, 1]
    (tmp_path / "det.yaml").write_text(yaml.safe_dump(a.cfg.to_dict()))
    assert main(["import-checkpoint", "--checkpoint", str(pkl), "--config", str(tmp_path / "det.yaml"),
                 "--out", str(tmp_path / "b.pt")]) == 0
    assert a.fingerprint() == FrameDetector.load(tmp_path / "b.pt").fingerprint()
    pth = tmp_path / "genvis_swin.pth"
    write_official_checkpoint(pth, official_keys("swin", 25, 6, swin=SMALL_SWIN, **SMALL_HEAD, video=SMALL_VIDEO))
    assert main(["import-checkpoint", "--checkpoint", str(pth), "--min-size", "224", "--out", str(tmp_path / "c.pt")]) == 0
    out = capsys.readouterr().out
    assert "swin32-ovis: swin embed_dim=32" in out and "input 224/1333" in out
    assert "8 Swin position index tables used as stored" in out and "differ" not in out
    c = FrameDetector.load(tmp_path / "c.pt")
    assert c.cfg.backbone == "swin" and c.cfg.min_size == 224 and c.cfg.num_queries == 6


def _demo(tmp_path, args):
    from genvis.cli import main

    out = tmp_path / args[0]
    assert main(["demo", "--video", str(args[1]), "--out-dir", str(out), "--max-frames", "3",
                 "--no-progress", *args[2:]]) == 0
    return json.loads((out / "results.json").read_text()), out


@pytest.mark.parametrize("backbone", ["swin", "resnet"])
def test_demo_with_one_official_checkpoint_on_davis_frames(backbone, shared_data, tmp_path, capsys):
    """`genvis demo --checkpoint OFFICIAL.pth` on a real DAVIS frame folder with no YAML and no
    DET.pt gives what import-checkpoint + demo --detector --model give."""
    from genvis.cli import main

    frames = shared_data / "davis2016-val-240p" / "JPEGImages" / "camel"
    opts = dict(swin=SMALL_SWIN) if backbone == "swin" else dict(resnet=SMALL_RESNET)
    ckpt = tmp_path / "official.pth"
    write_official_checkpoint(ckpt, official_keys(backbone, 25, 6, **opts, **SMALL_HEAD, video=SMALL_VIDEO), seed=2)
    size = ["--min-size", "160", "--max-size", "320"]
    one, out = _demo(tmp_path, ["one", frames, "--checkpoint", str(ckpt), *size, "--top-k", "5",
                                "--score-threshold", "0"])
    assert "detector inferred from" in capsys.readouterr().out
    assert len(one) == 5 and all(len(r["segmentations"]) == 3 for r in one)
    assert (out / "overlay.mp4").stat().st_size > 0
    assert main(["import-checkpoint", "--checkpoint", str(ckpt), *size, "--out", str(tmp_path / "det.pt")]) == 0
    two, _ = _demo(tmp_path, ["two", frames, "--detector", str(tmp_path / "det.pt"), "--model", str(ckpt),
                              "--top-k", "5", "--score-threshold", "0"])
    assert [r["score"] for r in one] == [r["score"] for r in two]
    assert [r["segmentations"] for r in one] == [r["segmentations"] for r in two]
    with pytest.raises(ConfigError, match="--checkpoint"):
        from genvis.commands.demo import run
        from argparse import Namespace

        run(Namespace(video=str(frames), checkpoint=None, detector=None, model=str(ckpt), out_dir=str(tmp_path),
                      dataset=None, min_size=None, max_size=None, n_f_eval=None, top_k=None, score_threshold=0.3,
                      max_frames=1, device="cpu", threads=None, no_progress=True))


def test_model_zoo_names_config_files_that_exist():
    """docs/model_zoo.md: every detector config it names is in config/detectors/ and every
    experiment it names is configured in config/config.yaml."""
    import re

    import yaml

    text = (ROOT / "docs" / "model_zoo.md").read_text()
    configs = set(re.findall(r"`(config/detectors/[\w.]+\.yaml)`", text))
    assert len(configs) == 6
    for c in configs:
        load_detector_yaml(ROOT / c)
    experiments = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["experiments"]
    named = set(re.findall(r"\| `(genvis_\w+)` \|", text))
    assert named == {"genvis_online", "genvis_semi_online"} and named <= set(experiments)
