"""DAVIS import: real DAVIS 2016 frames and masks, multi-object palette masks, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from genvis.cli import main
from genvis.data import masks as mask_ops
from genvis.data.davis import import_davis, list_sequences, split_sequences
from genvis.data.results import parse_results
from genvis.data.ytvis import load_vis_json
from genvis.errors import InputError
from genvis.evaluate.ytvis_eval import evaluate

PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [255, 255, 255]


def _fake_davis(root, sizes=None):
    """Two sequences: 'aa' with objects 1 and 2 (2 absent on frame 1, void 255 pixels), 'bb' with 1."""
    sizes = sizes or {}
    for seq, n in (("aa", 3), ("bb", 2)):
        (root / "JPEGImages" / seq).mkdir(parents=True)
        (root / "Annotations" / seq).mkdir(parents=True)
        for t in range(n):
            Image.fromarray(np.full((20, 30, 3), 100, np.uint8)).save(root / "JPEGImages" / seq / f"{t:05d}.jpg")
            mh, mw = sizes.get((seq, t), (20, 30))
            lab = np.zeros((mh, mw), np.uint8)
            lab[2:6, 3:9] = 1
            if seq == "aa" and t != 1:
                lab[10:15, 10:20] = 2
            lab[0, :] = 255
            im = Image.fromarray(lab)  # L; putpalette makes it P
            im.putpalette(PALETTE)
            im.save(root / "Annotations" / seq / f"{t:05d}.png")
    return root


def test_palette_masks_become_instances(tmp_path):
    root = _fake_davis(tmp_path / "davis")
    ds = import_davis(root, category="thing")
    assert [v.id for v in ds.videos] == [1, 2] and [v.name for v in ds.videos] == ["aa", "bb"]
    assert ds.videos[0].file_names[0] == "aa/00000.jpg" and (ds.videos[0].width, ds.videos[0].height) == (30, 20)
    assert [c.name for c in ds.categories] == ["thing"]
    a1, a2 = ds.annotations_of(1)
    assert a1.areas == [24.0, 24.0, 24.0]  # 4 x 6, void row ignored
    assert a2.areas == [50.0, None, 50.0] and a2.segmentations[1] is None
    m = mask_ops.annotation_masks(a2, ds.videos[0])
    assert m[0, 10:15, 10:20].all() and m[0].sum() == 50


def test_mask_size_mismatch_names_mask_and_writes_nothing(tmp_path, capsys):
    root = _fake_davis(tmp_path / "davis", sizes={("bb", 1): (20, 31)})
    with pytest.raises(InputError) as exc:
        import_davis(root)
    assert "bb/00001.png" in str(exc.value) and "differs from its frame" in str(exc.value)
    out = tmp_path / "out.json"
    assert main(["import-davis", "--root", str(root), "--out", str(out)]) == 2
    assert "00001.png" in capsys.readouterr().err and not out.exists()


def test_missing_mask_and_layout_errors(tmp_path):
    root = _fake_davis(tmp_path / "davis")
    (root / "Annotations" / "aa" / "00002.png").unlink()
    with pytest.raises(InputError, match="missing mask"):
        import_davis(root)
    with pytest.raises(InputError, match="no JPEGImages"):
        list_sequences(tmp_path)
    with pytest.raises(InputError, match="no sequence"):
        import_davis(root, sequences=["zz"])


def test_split_is_deterministic_and_partitions():
    names = [f"s{i:02d}" for i in range(20)]
    val = split_sequences(names, "val", 0.25, seed=0)
    train = split_sequences(names, "train", 0.25, seed=0)
    assert len(val) == 5 and len(train) == 15 and sorted(val + train) == names
    assert split_sequences(names, "val", 0.25, seed=0) == val
    assert split_sequences(names, "val", 0.25, seed=1) != val


def test_real_davis2016_import_and_round_trip(shared_data, tmp_path):
    root = shared_data / "davis2016-val-240p"
    out = tmp_path / "davis.json"
    assert main(["import-davis", "--root", str(root), "--out", str(out), "--sequences", "blackswan,dog"]) == 0
    ds = load_vis_json(out)
    assert [v.name for v in ds.videos] == ["blackswan", "dog"]
    n_frames = len(list((root / "JPEGImages" / "blackswan").glob("*.jpg")))
    v = ds.videos[0]
    assert v.length == n_frames and (v.width, v.height) == (427, 240)
    assert all((root / "JPEGImages" / f).is_file() for f in v.file_names)
    ann = ds.annotations_of(v.id)[0]
    png = np.asarray(Image.open(root / "Annotations" / "blackswan" / "00010.png"))
    assert ann.areas[10] == float((png == 1).sum()) > 0
    res = parse_results([{"video_id": a.video_id, "category_id": a.category_id, "score": 1.0,
                          "segmentations": a.segmentations} for a in ds.annotations], "r", ds)
    m = evaluate(ds, res)
    assert m["AP"] == pytest.approx(100.0) and m["AR10"] == pytest.approx(100.0)


def test_real_davis2016_split_cli(shared_data, tmp_path):
    root = shared_data / "davis2016-val-240p"
    assert main(["import-davis", "--root", str(root), "--out", str(tmp_path / "val.json"),
                 "--split", "val", "--category", "object"]) == 0
    va = json.loads((tmp_path / "val.json").read_text())
    names = list_sequences(root)
    assert len(names) == 20 and len(va["videos"]) == 5
    val_names = [v["file_names"][0].split("/")[0] for v in va["videos"]]
    assert val_names == split_sequences(names, "val", 0.25, seed=0)
    assert not set(val_names) & set(split_sequences(names, "train", 0.25, seed=0))
    assert [v["id"] for v in va["videos"]] == [names.index(n) + 1 for n in val_names]
    assert va["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
