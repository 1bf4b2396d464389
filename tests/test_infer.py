"""Clip-by-clip inference: top-k scoring, any N_f^eval, streaming masks, MinVIS association, CLI."""

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torch.nn import functional as F

from genvis.clip_source import ClipSource
from genvis.model.checkpoint import load_model
from genvis.errors import ConfigError, InputError
from genvis.infer.inference import infer_video, run_inference, select_topk, write_inference
from genvis.infer.minvis import associate
from genvis.train.config import ExperimentConfig
from genvis.train.loop import train
from tests.helpers.toy import make_toy_problem


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(n_f, **model):
    m = {"num_queries": 6, "num_heads": 4, "dim_feedforward": 64, "enc_layers": 1, "dec_layers": 2}
    m.update(model)
    return ExperimentConfig.from_dict({"model": m, "train": {
        "n_v": 2, "n_f": n_f, "batch_videos": 2, "iterations": 2, "lr": 1e-3, "num_points": 16,
        "checkpoint_every": 100, "decay_steps": [1000]}})


@pytest.fixture(scope="module")
def toy():
    return make_toy_problem(num_videos=2, length=7, seed=3)


@pytest.fixture(scope="module")
def models(toy, tmp_path_factory):
    torch.set_num_threads(1)
    src, ds = toy
    out = {}
    for name, n_f in (("online", 1), ("semi_online", 3)):
        path = train(config(n_f), src, ds, tmp_path_factory.mktemp(name) / "m.pt", progress=False)
        out[name] = load_model(path)[0]
    return out


def test_select_topk_by_hand():
    logits = torch.log(torch.tensor([
        [[0.6, 0.1, 0.3], [0.2, 0.2, 0.6]],     # clip 1: query 0, query 1 (K=2 + no-object)
        [[0.1, 0.1, 0.8], [0.1, 0.7, 0.2]],     # clip 2
    ]))
    scores, queries, labels = select_topk(logits, 3)
    # per query max over clips: q0 -> (0.6, 0.1), q1 -> (0.2, 0.7)
    got = sorted(zip(scores.tolist(), queries.tolist(), labels.tolist()), reverse=True)
    assert [(q, c) for _, q, c in got] == [(1, 1), (0, 0), (1, 0)]
    assert [s for s, _, _ in got] == pytest.approx([0.7, 0.6, 0.2])
    assert select_topk(logits, 100)[0].numel() == 4


@pytest.mark.parametrize("name", ["online", "semi_online"])
def test_every_n_f_eval_works(models, toy, name):
    src, ds = toy
    for n_f in range(1, 8):
        res = run_inference(models[name], src, ds, n_f, top_k=5, progress=False)
        assert len(res) == 5 * len(ds.videos)
        for r in res:
            assert 0.0 <= r.score <= 1.0
            assert len(r.segmentations) == 7
            assert r.segmentations[0]["size"] == [16, 16]
            assert r.category_id in (1, 2)


def test_streamed_masks_and_scores_match_whole_video_computation(models, toy):
    src, ds = toy
    model = models["semi_online"]
    vid = ds.videos[0].id
    clip = src.read_clip(vid, 0, 7, fields=("frame_queries", "mask_features"))
    class_logits, mask_logits = model.infer_from_tensors(clip["frame_queries"][:, -1], clip["mask_features"], 3)
    preds = infer_video(model, src, vid, 3, top_k=4, dataset=ds)
    for p in preds:
        up = F.interpolate(mask_logits[p["query"]][None], size=(16, 16), mode="bilinear", align_corners=False)[0]
        expected = (up > 0).numpy()
        got = np.stack([mask_utils.decode(r) for r in p["segmentations"]]).astype(bool)
        assert (got == expected).all()
        prob = class_logits.softmax(-1)[:, p["query"], p["label"]].max().item()
        soft = up.sigmoid()
        hard = soft > 0.5
        factor = (soft * hard).sum().item() / (hard.sum().item() + 1e-6)
        assert p["score"] == pytest.approx(prob * factor, rel=1e-4, abs=1e-7)


def test_write_inference_streams_the_same_results_and_leaves_nothing_on_error(models, toy, tmp_path):
    from tests.helpers.clip_source import InMemoryClipSource

    src, ds = toy
    model = models["semi_online"]
    out = tmp_path / "res.json"
    assert isinstance(src, ClipSource)
    count = write_inference(model, src, ds, 2, out, top_k=4, progress=False)
    expected = run_inference(model, src, ds, 2, top_k=4, progress=False)
    assert count == len(expected) == 8
    assert out.read_text() == json.dumps([r.to_json() for r in expected])
    # NaN in the second video's mask features: an error naming it, and no results file
    videos = {v: dict(src._videos[v]) for v in src.video_ids}
    last = ds.videos[-1].id
    bad_mf = videos[last]["mask_features"].clone()
    bad_mf[5, 0, 0, 0] = float("nan")
    videos[last]["mask_features"] = bad_mf
    bad = tmp_path / "bad.json"
    with pytest.raises(InputError, match=f"mask_features of video {last}, frames 4..5"):
        write_inference(model, InMemoryClipSource(videos), ds, 2, bad, top_k=4, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.json"]


def test_interrupted_inference_resumes_without_redoing_finished_videos(models, toy, tmp_path):
    from tests.helpers.clip_source import InMemoryClipSource

    class Counting(InMemoryClipSource):
        def __init__(self, videos):
            super().__init__(videos)
            self.reads = {}

        def read_clip(self, video_id, start, stop, **kw):
            self.reads[video_id] = self.reads.get(video_id, 0) + 1
            return super().read_clip(video_id, start, stop, **kw)

    src, ds = toy
    model = models["online"]
    first, last = ds.videos[0].id, ds.videos[-1].id
    videos = {v: dict(src._videos[v]) for v in src.video_ids}
    broken = {v: dict(x) for v, x in videos.items()}
    broken[last]["mask_features"] = broken[last]["mask_features"].clone()
    broken[last]["mask_features"][3, 0, 0, 0] = float("inf")
    out = tmp_path / "res.json"
    key = {"model": "m1", "n_f_eval": 3, "top_k": 4}
    with pytest.raises(InputError, match=f"video {last}"):
        write_inference(model, Counting(broken), ds, 3, out, top_k=4, progress=False, resume_key=key)
    parts = tmp_path / ".res.json.parts"
    assert not out.exists()
    assert sorted(p.name for p in parts.iterdir()) == [f"{first}.4.json", "key.json"]
    again = Counting(videos)
    assert write_inference(model, again, ds, 3, out, top_k=4, progress=False, resume_key=key) == 8
    # the finished video is not redone (one read: the input check's size probe); the other is
    # read in full once per pass, its 3 clips of N_f = 3 as one block
    assert again.reads == {first: 1, last: 2}
    one_pass = tmp_path / "one_pass.json"
    write_inference(model, src, ds, 3, one_pass, top_k=4, progress=False)
    assert out.read_bytes() == one_pass.read_bytes()                 # joined parts = one pass, byte for byte
    assert not parts.exists()
    # parts of another run (another key) are discarded, not mixed in
    with pytest.raises(InputError):
        write_inference(model, Counting(broken), ds, 3, out, top_k=4, progress=False, resume_key=key)
    other = Counting(videos)
    write_inference(model, other, ds, 2, out, top_k=4, progress=False, resume_key=dict(key, n_f_eval=2))
    assert other.reads == {first: 3, last: 2} and not parts.exists()   # 1 block x 2 passes (+ probe)
    assert out.read_text() == json.dumps([r.to_json() for r in run_inference(model, src, ds, 2, top_k=4, progress=False)])


def test_minvis_association_recovers_permutation():
    torch.manual_seed(0)
    prev = torch.randn(5, 8)
    perm = torch.tensor([3, 0, 4, 1, 2])
    cur = torch.empty_like(prev)
    cur[perm] = prev + 0.01 * torch.randn(5, 8)
    assert associate(prev, cur).tolist() == perm.tolist()


def test_minvis_inference_runs(models, toy):
    src, ds = toy
    res = run_inference(models["semi_online"], src, ds, 2, top_k=3, association="minvis", progress=False)
    assert len(res) == 6


def test_oracle_association_on_one_clip_only_reorders_the_queries(models, toy):
    """With the whole video as one clip there is nothing to link: the oracle and MinVIS
    associations must give the same predictions (the oracle's permutation is only a relabelling)."""
    src, ds = toy

    def key(r):
        return (r.video_id, r.category_id, round(r.score, 6), json.dumps(r.segmentations))

    mv = run_inference(models["online"], src, ds, 7, top_k=4, association="minvis", progress=False)
    orc = run_inference(models["online"], src, ds, 7, top_k=4, association="oracle", progress=False)
    assert sorted(map(key, mv)) == sorted(map(key, orc))
    # over several clips it links differently (and needs the annotations)
    orc2 = run_inference(models["online"], src, ds, 2, top_k=4, association="oracle", progress=False)
    assert len(orc2) == 8 and all(len(r.segmentations) == 7 for r in orc2)
    with pytest.raises(ValueError, match="association must be one of"):
        run_inference(models["online"], src, ds, 2, association="nearest", progress=False)


def test_bad_inference_input(models, toy):
    src, ds = toy
    with pytest.raises(ValueError, match="N_f"):
        run_inference(models["online"], src, ds, 0, progress=False)
    _, other = make_toy_problem(num_videos=3, length=7)
    with pytest.raises(InputError, match="missing: 3"):
        run_inference(models["online"], src, other, 1, progress=False)
    wide_src, wide_ds = make_toy_problem(num_videos=2, length=7, hidden_dim=40)
    with pytest.raises(ConfigError, match="hidden_dim model=32 features=40"):
        run_inference(models["online"], wide_src, wide_ds, 1, progress=False)


def test_cli_train_and_infer_through_a_zarr_cache(tmp_path, toy):
    from genvis.cache.writer import CacheWriter
    from genvis.cli import main
    from genvis.data.results import read_results
    from genvis.data.ytvis import save_vis_json
    import yaml

    src, ds = toy
    store = tmp_path / "train.zarr"
    writer = CacheWriter(store, {"detector": "toy", "min_size": 16})
    for vid in src.video_ids:
        c = src.read_clip(vid, 0, 7, fields=("frame_queries", "mask_features"))
        t, _, q, ch = c["frame_queries"].shape
        arrays = {"frame_queries": c["frame_queries"].numpy(), "mask_features": c["mask_features"].numpy(),
                  "class_logits": np.zeros((t, q, 3), np.float32), "mask_embeddings": np.zeros((t, q, ch), np.float32)}
        attrs = {"file_names": ds.video(vid).file_names, **{k: v for k, v in src.video_attrs(vid).items()
                                                            if k.endswith("_size")}}
        writer.write_video(vid, arrays, attrs)
    ann = tmp_path / "train.json"
    save_vis_json(ds, ann)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(config(1).to_dict()))
    model = tmp_path / "run" / "model.pt"
    assert main(["train", "--cache", str(store), "--annotations", str(ann), "--config", str(exp),
                 "--out", str(model), "--iterations", "2", "--no-progress"]) == 0
    assert (tmp_path / "run" / "model.losses.csv").is_file()
    res = tmp_path / "res.json"
    assert main(["infer", "--cache", str(store), "--annotations", str(ann), "--model", str(model),
                 "--out", str(res), "--n-f-eval", "4", "--top-k", "3", "--no-progress"]) == 0
    assert len(read_results(res, ds)) == 6
    assert len(json.loads(res.read_text())[0]["segmentations"]) == 7
    assert sorted(p.name for p in tmp_path.iterdir() if "res" in p.name) == ["res.json"]   # parts joined, removed
    # --no-resume: one pass, the same bytes, no parts folder
    parts = tmp_path / ".res2.json.parts"
    assert main(["infer", "--cache", str(store), "--annotations", str(ann), "--model", str(model),
                 "--out", str(tmp_path / "res2.json"), "--n-f-eval", "4", "--top-k", "3", "--no-progress",
                 "--no-resume"]) == 0
    assert (tmp_path / "res2.json").read_bytes() == res.read_bytes() and not parts.exists()
    # --association overrides the experiment's: the same results as run_inference with minvis
    from genvis.cache.reader import CacheReader
    from genvis.model.checkpoint import load_model
    res_mv = tmp_path / "res_minvis.json"
    assert main(["infer", "--cache", str(store), "--annotations", str(ann), "--model", str(model),
                 "--out", str(res_mv), "--n-f-eval", "4", "--top-k", "3", "--association", "minvis",
                 "--no-progress"]) == 0
    trained, _ = load_model(model)
    expected = run_inference(trained, CacheReader(store), ds, 4, top_k=3, association="minvis", progress=False)
    got = read_results(res_mv, ds)
    assert [(r.video_id, r.category_id, r.segmentations) for r in got] == \
        [(r.video_id, r.category_id, r.segmentations) for r in expected]
    assert [r.score for r in got] == pytest.approx([r.score for r in expected], abs=1e-6)
    assert [r.score for r in got] != pytest.approx([r.score for r in read_results(res, ds)], abs=1e-6)
    # the oracle association needs ground truth: a file without annotations is refused
    blind = tmp_path / "blind.json"
    blind_data = json.loads(ann.read_text())
    blind_data["annotations"] = None
    blind.write_text(json.dumps(blind_data))
    assert main(["infer", "--cache", str(store), "--annotations", str(blind), "--model", str(model),
                 "--out", str(tmp_path / "oracle.json"), "--association", "oracle", "--no-progress"]) == 2
    assert not (tmp_path / "oracle.json").exists()
    # a cache missing a video of the annotation file: exit code 2, nothing written
    _, bigger = make_toy_problem(num_videos=3, length=7, seed=3)
    ann3 = tmp_path / "three.json"
    save_vis_json(bigger, ann3)
    assert main(["infer", "--cache", str(store), "--annotations", str(ann3), "--model", str(model),
                 "--out", str(tmp_path / "bad.json"), "--no-progress"]) == 2
    assert not (tmp_path / "bad.json").exists()
