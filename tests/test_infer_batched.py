"""Inference speed-ups that must not change a byte (issue 19): pass 1 of several videos as one
batch, block reads, RLE json text written verbatim, cheap non-finite checks."""

import json

import numpy as np
import pytest
import torch

from genvis.clip_source import check_finite
from genvis.data.masks import encode_masks, encode_masks_json
from genvis.data.results import JSONText, ResultsWriter, VideoResult
from genvis.data.ytvis import VISDataset
from genvis.errors import InputError
from genvis.infer.inference import clip_predictions, clip_predictions_many, run_inference, write_inference
from genvis.infer.spool import SegmentationSpool
from genvis.model.config import GenVISConfig
from genvis.model.genvis import GenVIS
from tests.helpers.clip_source import InMemoryClipSource
from tests.helpers.toy import make_toy_problem

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LENGTHS = (11, 4, 9, 10, 1)   # with N_f = 1 the memory passes 7 entries (where a batched read rounds otherwise)


@pytest.fixture(scope="module")
def uneven():
    """Five videos of different lengths (cut from a toy problem) and a seeded GenVIS with memory."""
    src, ds = make_toy_problem(num_videos=len(LENGTHS), length=max(LENGTHS), seed=5)
    videos = {}
    records = []
    for v, n in zip(ds.videos, LENGTHS):
        data = dict(src._videos[v.id])
        data["frame_queries"] = data["frame_queries"][:n]
        data["mask_features"] = data["mask_features"][:n]
        videos[v.id] = data
        records.append(type(v)(**{**v.__dict__, "length": n, "file_names": v.file_names[:n]}))
    cut = VISDataset(videos=records, annotations=None, categories=ds.categories, path=None)
    torch.manual_seed(0)
    model = GenVIS(GenVISConfig(hidden_dim=32, num_classes=ds.num_classes, num_frame_queries=4, num_queries=6,
                                num_heads=4, dim_feedforward=64, enc_layers=1, dec_layers=2,
                                mask_feature_dim=32)).eval()
    return InMemoryClipSource(videos), cut, model


@pytest.mark.parametrize("n_f,association", [(1, "propagate"), (3, "propagate"), (2, "minvis"), (1, "minvis")])
def test_batched_pass_one_equals_one_video_at_a_time_bit_for_bit(uneven, n_f, association):
    src, ds, model = uneven
    ids = [v.id for v in ds.videos]
    many = clip_predictions_many(model, src, ids, n_f, association)
    for vid, n, (logits, embeds) in zip(ids, LENGTHS, many):
        one_logits, one_embeds = clip_predictions(model, src, vid, n_f, association)
        assert logits.shape == (-(-n // n_f), 6, ds.num_classes + 1)
        assert torch.equal(logits, one_logits) and torch.equal(embeds, one_embeds)


def test_results_do_not_depend_on_videos_at_once(uneven, tmp_path):
    src, ds, model = uneven
    texts = []
    for g in (1, 2, 5):
        out = tmp_path / f"res{g}.json"
        assert write_inference(model, src, ds, 3, out, top_k=4, progress=False, videos_at_once=g) == 4 * len(LENGTHS)
        texts.append(out.read_bytes())
    assert texts[0] == texts[1] == texts[2]
    in_memory = run_inference(model, src, ds, 3, top_k=4, progress=False, videos_at_once=3)
    assert texts[0].decode() == json.dumps([r.to_json() for r in in_memory])
    with pytest.raises(ValueError, match="videos_at_once"):
        run_inference(model, src, ds, 3, top_k=4, progress=False, videos_at_once=0)


def test_non_finite_frame_queries_are_named_by_clip_in_a_batch(uneven):
    src, ds, model = uneven
    videos = {v: dict(src._videos[v]) for v in src.video_ids}
    vid = ds.videos[2].id
    bad = videos[vid]["frame_queries"].clone()
    bad[7, -1, 0, 0] = float("-inf")
    videos[vid]["frame_queries"] = bad
    with pytest.raises(InputError, match=f"frame_queries of video {vid}, frames 6..8"):
        clip_predictions_many(model, InMemoryClipSource(videos), [v.id for v in ds.videos], 3)


def test_check_finite_finds_nan_and_inf_but_not_an_overflowing_sum():
    src = InMemoryClipSource({})
    huge = torch.full((4, 3), 3e38)          # finite values whose sum overflows to inf
    check_finite(src, 1, "mask_features", huge, 0, 4)
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = huge.clone()
        x[2, 1] = bad
        with pytest.raises(InputError, match="non-finite values .* video 1, frames 0..3"):
            check_finite(src, 1, "mask_features", x, 0, 4)


def test_rle_json_text_equals_json_dumps_of_the_rle_dicts():
    rng = np.random.default_rng(0)
    backslashes = 0
    for _ in range(200):
        n, h, w = rng.integers(1, 5), rng.integers(1, 40), rng.integers(1, 40)
        masks = rng.random((n, h, w)) < rng.random()
        got = encode_masks_json(masks)
        assert got == [json.dumps(r) for r in encode_masks(masks)]
        assert encode_masks_json(masks.astype(np.uint8)) == got
        # a [N, W, H] C-ordered array transposed (what inference passes): same text
        assert encode_masks_json(np.ascontiguousarray(masks.transpose(0, 2, 1)).transpose(0, 2, 1)) == got
        backslashes += sum("\\\\" in t for t in got)
    assert backslashes > 0        # the one character json escapes in compressed counts was exercised
    assert encode_masks_json(np.zeros((0, 3, 3), bool)) == []
    with pytest.raises(ValueError, match="expected masks"):
        encode_masks_json(np.zeros((3, 3), bool))


def test_spooled_json_text_is_written_verbatim(tmp_path):
    masks = np.random.default_rng(1).random((3, 5, 7)) < 0.5
    rles = encode_masks(masks)
    with SegmentationSpool(2) as spool:
        spool.extend_json(0, encode_masks_json(masks))
        spool.extend_json(1, [])
        spool.extend(1, rles[:1])
        assert spool.length(0) == 3 and spool.length(1) == 1
        assert spool.lists() == [rles, rles[:1]]
        texts = list(spool.read_json(0))
        assert all(type(t) is JSONText for t in texts)
        with ResultsWriter(tmp_path / "a.json") as w:
            w.add(VideoResult(1, 2, 0.5, spool.read_json(0)))
    with ResultsWriter(tmp_path / "b.json") as w:
        w.add(VideoResult(1, 2, 0.5, rles))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert json.loads((tmp_path / "a.json").read_text())[0]["segmentations"] == rles


@pytest.mark.parametrize("grid,sizes,queries", [
    (None, None, [4, 0, 4, 2]),
    (None, {"padded_size": [16, 16], "resized_size": [14, 12], "original_size": [21, 18]}, [4, 0, 4, 2]),
    # 5 x 3 grid, 5 predictions: the sigmoid's scalar tail falls inside the last prediction's mask
    ((5, 3), None, [4, 0, 4, 2, 0]),
    ((5, 3), None, [1, 1]),
    ((5, 3), {"padded_size": [20, 12], "resized_size": [19, 11], "original_size": [19, 11]}, [3, 5, 3]),
])
def test_pass_two_equals_the_plain_formula_bit_for_bit(uneven, grid, sizes, queries):
    """Masks and score factor of video_masks against the direct computation it replaced:
    soft = sigmoid(upsampled logits cropped to the resized size), factor = sum(soft * (soft > 0.5))
    / (count(soft > 0.5) + 1e-6) over the clips, masks = (logits resized to the original size) > 0;
    repeated queries (one query selected with two classes) included."""
    from torch.nn import functional as F

    from genvis.data.masks import decode_rle
    from genvis.infer.inference import video_masks

    src, ds, model = uneven
    vid = ds.videos[0].id
    data = dict(src._videos[vid])
    if grid:
        data["mask_features"] = torch.randn(LENGTHS[0], 32, *grid, generator=torch.Generator().manual_seed(2))
        data.pop("attrs")
    one = InMemoryClipSource({vid: data})
    if sizes:
        one._videos[vid]["attrs"].update(sizes)
    data = one._videos[vid]
    logits, embeds = clip_predictions(model, one, vid, 3)
    k = len(queries)
    queries = torch.tensor(queries)
    spool, factor = video_masks(model, one, vid, 3, embeds, queries)
    with spool:
        got = spool.lists()
    attrs = data["attrs"]
    num, den = torch.zeros(k), torch.zeros(k)
    for i, s in enumerate(range(0, LENGTHS[0], 3)):
        raw = data["mask_features"][s:s + 3]
        lg = GenVIS.mask_logits(embeds[i, queries], model.project_mask_features(raw))
        lg = F.interpolate(lg, size=tuple(attrs["padded_size"]), mode="bilinear", align_corners=False)
        lg = lg[:, :, :attrs["resized_size"][0], :attrs["resized_size"][1]]
        soft = lg.sigmoid()
        hard = soft > 0.5
        num += (soft * hard).flatten(1).sum(1)
        den += hard.flatten(1).sum(1)
        full = F.interpolate(lg, size=tuple(attrs["original_size"]), mode="bilinear", align_corners=False) > 0
        for j in range(k):
            for f in range(full.shape[1]):
                assert np.array_equal(decode_rle(got[j][s + f], *attrs["original_size"]), full[j, f].numpy())
    assert torch.equal(factor, num / (den + 1e-6))
    assert [len(g) for g in got] == [LENGTHS[0]] * k


def _plain_factor(model, data, embeds, queries, n_f):
    """Score factor by the formula inference used before issue 19 (one row per prediction)."""
    from torch.nn import functional as F

    attrs = data["attrs"]
    k = len(queries)
    num, den = torch.zeros(k), torch.zeros(k)
    length = data["mask_features"].shape[0]
    for i, s in enumerate(range(0, length, n_f)):
        lg = GenVIS.mask_logits(embeds[i, queries], model.project_mask_features(data["mask_features"][s:s + n_f]))
        lg = F.interpolate(lg, size=tuple(attrs["padded_size"]), mode="bilinear", align_corners=False)
        soft = lg[:, :, :attrs["resized_size"][0], :attrs["resized_size"][1]].sigmoid()
        hard = soft > 0.5
        num += (soft * hard).flatten(1).sum(1)
        den += hard.flatten(1).sum(1)
    return num / (den + 1e-6)


def test_pass_two_score_factor_is_the_plain_formula_on_many_shapes(uneven):
    """Many small odd shapes and repeated queries, so that the sigmoid's scalar tail (it rounds
    differently from the vectorised body) lands in a repeated query's mask now and then."""
    from genvis.infer.inference import video_masks

    src, ds, model = uneven
    g = torch.Generator().manual_seed(7)
    for trial in range(40):
        h, w = (int(x) for x in torch.randint(2, 8, (2,), generator=g))
        n = int(torch.randint(3, 10, (1,), generator=g))
        mf = torch.randn(n, 32, h, w, generator=g) * 3
        vid = 1
        one = InMemoryClipSource({vid: {"frame_queries": torch.randn(n, 1, 4, 32, generator=g), "mask_features": mf}})
        _, embeds = clip_predictions(model, one, vid, 3)
        queries = torch.randint(0, 6, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g)
        spool, factor = video_masks(model, one, vid, 3, embeds, queries)
        spool.close()
        assert torch.equal(factor, _plain_factor(model, one._videos[vid], embeds, queries, 3)), (trial, h, w, queries)
