"""IDOL association: OT selection, contrastive losses, temporally weighted memory, tracker, CLI."""

import json
import math

import numpy as np
import pytest
import torch

from genvis.errors import ConfigError
from genvis.infer.idol import IDOLTracker, bisoftmax, summarise_tracks, temporal_weights
from genvis.train.config import ExperimentConfig
from genvis.train.idol_config import IDOLSettings
from genvis.train.idol_loss import aux_cosine_loss, contrastive_loss, id_cross_entropy
from genvis.train.idol_selection import hungarian_select, iou_select, ot_constants, ot_select
from genvis.utils.matching import mask_iou

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cols(mask, g):
    return sorted(torch.nonzero(mask[:, g]).flatten().tolist())


def test_ot_constants_are_the_papers_at_300_queries_and_scaled_below():
    assert ot_constants(300) == (10, 100)
    assert ot_constants(16) == (3, 5)      # the synthetic detector: m1 window kept at 3
    assert ot_constants(2) == (2, 2)
    with pytest.raises(ValueError):
        ot_constants(0)


def test_ot_selection_on_a_hand_made_iou_matrix():
    iou = torch.tensor([[0.9, 0.0],
                        [0.8, 0.1],
                        [0.6, 0.7],
                        [0.0, 0.9],
                        [0.0, 0.0]])
    cost = 1.0 - iou
    pos, neg = ot_select(cost, iou, top_pos=3, top_neg=4)
    # g0: m1 = floor(0.9 + 0.8 + 0.6) = 2 -> the two cheapest; g1: floor(0.9 + 0.7 + 0.1) = 1
    assert cols(pos, 0) == [0, 1] and cols(pos, 1) == [3]
    # g0: m2 = floor(2.3) = 2 -> 5 - 2 = 3 negatives of highest cost; g1: m2 = 1 -> 4 negatives
    assert cols(neg, 0) == [2, 3, 4] and cols(neg, 1) == [0, 1, 2, 4]
    assert not (pos & neg).any()
    # the IoU thresholds of the supplement take q0, q1 (> 0.7 only q0) and call q2 neither for g0
    p, n = iou_select(iou)
    assert cols(p, 0) == [0, 1] and cols(p, 1) == [3]   # 0.8 > 0.7
    assert cols(n, 0) == [3, 4] and 2 not in cols(n, 0)


def test_ot_selection_gives_a_shared_query_to_the_instance_it_costs_least():
    iou = torch.tensor([[0.9, 0.8],
                        [0.5, 0.0],
                        [0.0, 0.6]])
    pos, neg = ot_select(1.0 - iou, iou, top_pos=2, top_neg=2)
    # both instances want q0 (m1 = 1 each); it stays with g0 (cost 0.1 < 0.2)
    assert cols(pos, 0) == [0] and cols(pos, 1) == []
    # g1: m2 = floor(0.8 + 0.6) = 1 -> 2 negatives of highest cost among all three: q1 (1.0), q2 (0.4)
    assert cols(neg, 1) == [1, 2]
    # an instance nobody overlaps gets no positive
    pos, _ = ot_select(torch.ones(3, 1), torch.zeros(3, 1), 2, 2)
    assert not pos.any()


def test_hungarian_selection_and_mask_iou():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2] = True           # top half
    a[1, :, :1] = True        # left column
    b = torch.zeros(1, 4, 4, dtype=torch.bool)
    b[0, :1] = True           # top row
    iou = mask_iou(a, b)
    assert iou[:, 0].tolist() == pytest.approx([4 / 8, 1 / 7])
    pos, neg = hungarian_select(1 - iou, iou)
    assert cols(pos, 0) == [0] and cols(neg, 0) == [1]


def test_contrastive_and_auxiliary_loss_by_hand():
    v = torch.tensor([1.0, 0.0])
    pos = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    neg = torch.tensor([[0.0, 1.0]])
    # log(1 + sum_{k+, k-} exp(v.k- - v.k+)) = log(1 + e^{0-1} + e^{0-0.5})
    assert float(contrastive_loss(v, pos, neg)) == pytest.approx(math.log(1 + math.exp(-1) + math.exp(-0.5)), abs=1e-6)
    # cosines 1, 1/sqrt(2) (targets 1) and 0 (target 0)
    assert float(aux_cosine_loss(v, pos, neg)) == pytest.approx((1 / math.sqrt(2) - 1) ** 2 / 3, abs=1e-6)
    assert float(contrastive_loss(v, pos[:0], neg)) == 0.0
    # a better separated negative lowers the loss
    assert float(contrastive_loss(v, pos, -neg - torch.tensor([[1.0, 0.0]]))) < float(contrastive_loss(v, pos, neg))
    # ID head: logits [0 (new), 2, 0] with class 1
    ref, keys = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    expected = -math.log(math.exp(2) / (1 + math.exp(2) + 1))
    assert float(id_cross_entropy(ref, keys, torch.tensor([0]))) == pytest.approx(expected, abs=1e-6)
    assert float(id_cross_entropy(ref, keys, torch.tensor([-1]))) == pytest.approx(
        -math.log(1 / (2 + math.exp(2))), abs=1e-6)


def settings(**kw):
    base = dict(score_threshold=0.1, nms_threshold=0.7, match_threshold=0.5, new_track_threshold=0.5,
                init_threshold=0.2, max_absence=10, temporal=True, tau=0.5, memory_frames=3)
    base.update(kw)
    return IDOLSettings(**base).validate()


def frame(dets, size=8):
    """dets: list of (embedding, score, label, (y0, x0)) -> tensors for IDOLTracker.step."""
    e = torch.stack([torch.tensor(d[0], dtype=torch.float32) for d in dets])
    s = torch.tensor([d[1] for d in dets])
    lab = torch.tensor([d[2] for d in dets])
    m = torch.zeros(len(dets), size, size, dtype=torch.bool)
    for i, d in enumerate(dets):
        y, x = d[3]
        m[i, y:y + 2, x:x + 2] = True
    return e, s, lab, m


def test_temporally_weighted_memory_against_a_hand_computation():
    assert temporal_weights(3, 0.5).tolist() == pytest.approx([0.5 + 1 / 3, 0.5 + 2 / 3, 1.5])
    tr = IDOLTracker(settings())
    seq = [[1.0, 0.0], [3.0, 0.0], [0.0, 3.0], [0.0, 6.0]]
    for e in seq:
        # one detection a frame: the tracker keeps it in track 0 (bi-softmax of one pair is 1)
        assert tr.step(*frame([(e, 0.9, 0, (0, 0))])) == [0]
    tracks, memory = tr.memory()
    w = [0.5 + 1 / 3, 0.5 + 2 / 3, 1.5]        # the last T = 3 embeddings, oldest first
    last = seq[1:]
    expected = [sum(wi * e[d] for wi, e in zip(w, last)) / sum(w) for d in range(2)]
    assert memory[0].tolist() == pytest.approx(expected, abs=1e-6)
    # without temporal weighting: momentum 0.5 average of every embedding
    tr = IDOLTracker(settings(temporal=False, momentum=0.5))
    for e in seq:
        tr.step(*frame([(e, 0.9, 0, (0, 0))]))
    m = torch.tensor(seq[0])
    for e in seq[1:]:
        m = 0.5 * m + 0.5 * torch.tensor(e)
    assert tr.memory()[1][0].tolist() == pytest.approx(m.tolist())


def test_bisoftmax_by_hand():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    m = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    sim = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    expected = (sim.softmax(1) + sim.softmax(0)) / 2
    assert torch.allclose(bisoftmax(e, m), expected)
    assert float(expected[0, 0]) == pytest.approx((math.exp(2) / (math.exp(2) + 1) + math.exp(2) / (math.exp(2) + 1)) / 2)


A, B, C = [4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]


def occlusion_sequence():
    """A and B in frames 0-2, A hidden in 3-5 (B moves onto A's place), A back in 6-7."""
    seq = []
    for t in range(8):
        dets = [(B, 0.9, 1, (4, 4 if t < 3 else 0))]
        if t < 3 or t >= 6:
            dets.insert(0, (A, 0.8, 0, (0, 0) if t < 3 else (2, 2)))
        seq.append(dets)
    return seq


def test_a_reentering_instance_keeps_its_identity():
    tr = IDOLTracker(settings())
    ids = [tr.step(*frame(d)) for d in occlusion_sequence()]
    a0, b0 = ids[0]
    assert a0 != b0
    assert all(f[-1] == b0 for f in ids)          # B tracked throughout
    assert ids[6][0] == a0 and ids[7][0] == a0    # A comes back under its old id
    assert tr.next_id == 2                        # no spurious track
    # a memory shorter than the occlusion loses it: A gets a new identity
    short = IDOLTracker(settings(max_absence=2))
    ids = [short.step(*frame(d)) for d in occlusion_sequence()]
    assert ids[6][0] not in (a0, b0) and short.next_id == 3
    # multi-cue matching (embedding + IoU + class) also re-links A
    mc = IDOLTracker(settings(matching="multi_cue"))
    ids = [mc.step(*frame(d)) for d in occlusion_sequence()]
    assert ids[6][0] == ids[0][0] and mc.next_id == 2


def test_duplicates_and_weak_detections_do_not_start_tracks():
    tr = IDOLTracker(settings())
    # two copies of A (same mask): the weaker is removed; C below the init threshold
    ids = tr.step(*frame([(A, 0.9, 0, (0, 0)), (A, 0.6, 0, (0, 0)), (C, 0.15, 0, (5, 5))]))
    assert ids == [0, -1, -1]
    # later, an unmatched detection needs the new-track threshold (0.5)
    ids = tr.step(*frame([(A, 0.9, 0, (0, 0)), (C, 0.4, 0, (5, 5))]))
    assert ids == [0, -1]
    ids = tr.step(*frame([(A, 0.9, 0, (0, 0)), (C, 0.6, 0, (5, 5))]))
    assert ids == [0, 1]


def test_track_summary_scores_and_classes():
    frames = [[(0, 3, 0.8, 1), (1, 0, 0.6, 0)], [(0, 3, 0.4, 2)], [(1, 2, 0.9, 0)]]
    got = summarise_tracks(frames, num_classes=3, top_k=5)
    assert got == [(1, 0, pytest.approx(0.75)), (0, 1, pytest.approx(0.6))]
    assert summarise_tracks(frames, 3, top_k=1)[0][0] == 1


def test_experiment_idol_section_is_validated():
    cfg = ExperimentConfig.from_dict({"idol": {"selection": "iou"}, "inference": {"association": "idol"}})
    assert cfg.idol.selection == "iou" and cfg.to_dict()["idol"]["tau"] == 0.5
    assert "idol" not in ExperimentConfig.from_dict({}).to_dict()
    with pytest.raises(ConfigError, match="association"):
        ExperimentConfig.from_dict({"idol": {}})
    with pytest.raises(ConfigError, match="association"):
        ExperimentConfig.from_dict({"inference": {"association": "idol"}})
    with pytest.raises(ConfigError, match="selection"):
        ExperimentConfig.from_dict({"idol": {"selection": "sinkhorn"}, "inference": {"association": "idol"}})
    with pytest.raises(ConfigError, match="unknown"):
        ExperimentConfig.from_dict({"idol": {"tua": 0.5}, "inference": {"association": "idol"}})


# --------------------------------------------------------------------------- end to end


def toy_idol_cache(tmp_path, num_videos=3, length=8, q=5, c=32, grid=4, seed=0):
    """A Zarr cache whose detector 'sees' two instances per video in shuffled query slots, an
    identity code in the frame queries, one-hot mask features (mask embedding = mask logits)."""
    from genvis.cache.writer import CacheWriter
    from genvis.data.masks import encode_masks_or_none, rle_areas, rle_bboxes
    from genvis.data.ytvis import AnnotationRecord, CategoryRecord, VideoRecord, VISDataset, save_vis_json

    g = np.random.default_rng(seed)
    cells, cell = grid * grid, 4
    size = grid * cell
    writer = CacheWriter(tmp_path / "c.zarr", {"detector": "toy", "min_size": size})
    videos, anns = [], []
    for v in range(1, num_videos + 1):
        fq = 0.05 * g.standard_normal((length, 1, q, c)).astype(np.float32)
        mf = np.zeros((length, c, grid, grid), np.float32)
        for i in range(cells):
            mf[:, i, i // grid, i % grid] = 1.0
        me = np.full((length, q, c), -4.0, np.float32)
        me[:, :, cells:] = 0.0
        logits = np.zeros((length, q, 3), np.float32)
        logits[:, :, 2] = 3.0                                   # no-object by default
        codes = g.standard_normal((2, c)).astype(np.float32)
        masks = np.zeros((2, length, size, size), bool)
        for t in range(length):
            slots = g.permutation(q)[:2]
            for k in range(2):
                pos = (k * 9 + t) % cells
                y, x = divmod(pos, grid)
                masks[k, t, y * cell:(y + 1) * cell, x * cell:(x + 1) * cell] = True
                fq[t, 0, slots[k]] += codes[k]
                me[t, slots[k], pos] = 4.0
                logits[t, slots[k], k] = 5.0
        writer.write_video(v, {"frame_queries": fq, "mask_features": mf, "class_logits": logits,
                               "mask_embeddings": me},
                           {"file_names": [f"v{v}/{t}.jpg" for t in range(length)], "original_size": [size, size],
                            "resized_size": [size, size], "padded_size": [size, size]})
        videos.append(VideoRecord(id=v, file_names=[f"v{v}/{t}.jpg" for t in range(length)], length=length,
                                  width=size, height=size))
        for k in range(2):
            rles = encode_masks_or_none(masks[k])
            anns.append(AnnotationRecord(id=len(anns) + 1, video_id=v, category_id=k + 1, segmentations=rles,
                                         areas=rle_areas(rles), bboxes=rle_bboxes(rles), iscrowd=0))
    ds = VISDataset(videos, anns, [CategoryRecord(id=1, name="a"), CategoryRecord(id=2, name="b")])
    save_vis_json(ds, tmp_path / "ann.json")
    return tmp_path / "c.zarr", tmp_path / "ann.json", ds


def identity_detector(path, c=32, q=5):
    from genvis.detector.config import DetectorConfig
    from genvis.detector.model import FrameDetector

    det = FrameDetector(DetectorConfig(backbone="tiny_resnet", num_classes=2, hidden_dim=c, num_queries=q,
                                       decoder_layers=4, encoder_layers=1, num_heads=4, dim_feedforward=32,
                                       encoder_feedforward_dim=32, min_size=16, max_size=16))
    proj = det.m2f.model.pixel_level_module.decoder.mask_projection
    with torch.no_grad():
        proj.weight.copy_(torch.eye(c)[:, :, None, None])
        proj.bias.zero_()
    det.save(path)
    return path


def test_cli_trains_resumes_and_infers_idol_from_a_cache(tmp_path):
    import yaml

    from genvis.cli import main
    from genvis.data.results import read_results
    from genvis.evaluate.ytvis_eval import evaluate

    store, ann, ds = toy_idol_cache(tmp_path)
    det = identity_detector(tmp_path / "det.pt")
    exp = tmp_path / "idol.yaml"
    exp.write_text(yaml.safe_dump({"name": "idol_toy", "idol": {"frame_range": 2, "selection": "ot"},
                                   "train": {"batch_videos": 2, "iterations": 16, "lr": 2e-2, "decay_steps": [],
                                             "clip_grad_norm": 0.0, "checkpoint_every": 8},
                                   "inference": {"association": "idol", "top_k": 5}}))
    common = ["train", "--cache", str(store), "--annotations", str(ann), "--config", str(exp), "--no-progress"]
    # the mask projection comes from the detector: without it, a named error (exit code 2)
    assert main(common + ["--out", str(tmp_path / "x" / "m.pt")]) == 2
    a = tmp_path / "a" / "m.pt"
    assert main(common + ["--out", str(a), "--init-heads", str(det)]) == 0
    rows = (tmp_path / "a" / "m.losses.csv").read_text().splitlines()
    assert len(rows) == 17 and rows[0].startswith("iteration,lr,loss,loss_embed,loss_aux")
    losses = [float(r.split(",")[2]) for r in rows[1:]]
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
    # interrupted after 8 iterations and resumed: the same weights as one run
    b = tmp_path / "b" / "m.pt"
    assert main(common + ["--out", str(b), "--init-heads", str(det), "--iterations", "8"]) == 0
    assert main(common + ["--out", str(b), "--init-heads", str(det), "--resume"]) == 0
    from genvis.model.idol_head import load_idol_model
    ma, meta = load_idol_model(a)
    mb, _ = load_idol_model(b)
    assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))
    assert meta["ot_windows"] == [3, 3]                 # ot_constants(5)
    # inference: every video, every frame, ids linked across shuffled query slots
    res = tmp_path / "res.json"
    assert main(["infer", "--cache", str(store), "--annotations", str(ann), "--model", str(a), "--out", str(res),
                 "--association", "idol", "--no-progress"]) == 0
    results = read_results(res, ds)
    assert all(len(r.segmentations) == 8 for r in results)
    assert evaluate(ds, results)["AP50"] == pytest.approx(100.0)   # identities right in every frame
    res2 = tmp_path / "res2.json"
    assert main(["infer", "--cache", str(store), "--annotations", str(ann), "--model", str(a), "--out", str(res2),
                 "--idol-matching", "multi_cue", "--idol-temporal", "off", "--no-progress"]) == 0
    assert len(json.loads(res2.read_text())) >= len(ds.videos)
    # a GenVIS-only association on an IDOL model is refused
    assert main(["infer", "--cache", str(store), "--annotations", str(ann), "--model", str(a), "--out",
                 str(tmp_path / "r3.json"), "--association", "minvis", "--no-progress"]) == 2


def test_demo_runs_idol_with_the_detector_in_the_loop(tmp_path):
    import av
    from PIL import Image

    from genvis.cli import main
    from genvis.detector.config import DetectorConfig
    from genvis.detector.model import FrameDetector
    from genvis.model.idol_head import IDOLConfig, IDOLModel, init_mask_projection_from_detector, save_idol_model

    torch.manual_seed(0)
    FrameDetector(DetectorConfig(backbone="tiny_resnet", num_classes=3, hidden_dim=32, num_queries=5,
                                 decoder_layers=4, encoder_layers=1, num_heads=4, dim_feedforward=64,
                                 encoder_feedforward_dim=64, min_size=32, max_size=64)).save(tmp_path / "det.pt")
    model = IDOLModel(IDOLConfig(num_classes=3, hidden_dim=32, mask_feature_dim=32, num_frame_queries=5))
    init_mask_projection_from_detector(model, tmp_path / "det.pt")
    exp = ExperimentConfig.from_dict({"idol": {"score_threshold": 0.0, "init_threshold": 0.0,
                                               "new_track_threshold": 0.0, "nms_threshold": 1.0},
                                      "inference": {"association": "idol", "top_k": 4}})
    save_idol_model(tmp_path / "idol.pt", model, exp.to_dict(),
                    {"categories": [{"id": 7, "name": "a"}, {"id": 8, "name": "b"}, {"id": 9, "name": "c"}]})
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (45, 61, 3), dtype=np.uint8)).save(frames / f"{i:05d}.jpg")
    out = tmp_path / "out"
    assert main(["demo", "--video", str(frames), "--detector", str(tmp_path / "det.pt"), "--model",
                 str(tmp_path / "idol.pt"), "--out-dir", str(out), "--score-threshold", "0", "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert 1 <= len(res) <= 4
    assert all(len(r["segmentations"]) == 5 and r["segmentations"][0]["size"] == [45, 61] for r in res)
    assert {r["category_id"] for r in res} <= {7, 8, 9}
    with av.open(str(out / "overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5
