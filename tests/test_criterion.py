"""Losses, matching cost and point sampling on tiny inputs with known values."""

import math

import pytest
import torch
from torch.nn import functional as F

from genvis.model.genvis import ClipOutput
from genvis.train.config import TrainConfig
from genvis.train.criterion import ClipTargets, SetCriterion, dice_loss, sigmoid_ce_loss, similarity_loss
from genvis.train.matcher import batch_dice, batch_sigmoid_ce, matching_cost
from genvis.train.points import (_smallest_k_on_device, point_sample, point_sample_indexed, smallest_k,
                                 uncertain_point_coords)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_dice_and_bce_known_values():
    logits = torch.zeros(1, 4)
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert dice_loss(logits, target, 1.0).item() == pytest.approx(1 - 3 / 5)
    assert sigmoid_ce_loss(torch.zeros(2, 5), torch.ones(2, 5), 2.0).item() == pytest.approx(math.log(2))
    big = torch.tensor([[20.0, 20.0, -20.0, -20.0]])
    assert dice_loss(big, target, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_batch_costs_equal_pairwise_losses():
    torch.manual_seed(0)
    x = torch.randn(3, 7)
    y = (torch.rand(2, 7) > 0.5).float()
    ce = batch_sigmoid_ce(x, y)
    dc = batch_dice(x, y)
    for i in range(3):
        for j in range(2):
            assert ce[i, j] == pytest.approx(F.binary_cross_entropy_with_logits(x[i], y[j]).item(), rel=1e-5)
            assert dc[i, j] == pytest.approx(dice_loss(x[i:i + 1], y[j:j + 1], 1.0).item(), rel=1e-5)


def test_point_sample_reads_pixel_centres():
    m = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    coords = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.5, 0.5]]])
    assert point_sample(m, coords)[0, 0].tolist() == pytest.approx([1.0, 2.0, 4.0, 2.5])


def test_importance_sampling_prefers_uncertain_region():
    logits = torch.full((1, 1, 8, 8), 10.0)
    logits[..., :, :2] = 0.0                       # left quarter uncertain
    g = torch.Generator().manual_seed(0)
    pts = uncertain_point_coords(logits, 40, 3.0, 0.75, g)
    assert pts.shape == (1, 40, 2)
    important = pts[0, :30, 0]
    assert (important < 0.3).float().mean() > 0.9   # 30 chosen by uncertainty, mostly x < 0.25
    assert (pts >= 0).all() and (pts <= 1).all()


def test_similarity_loss_known_value():
    e = [torch.tensor([[1.0, 0.0], [0.0, 1.0]])]
    ids = [torch.tensor([0, 1])]
    expected = (2 * math.log(1 + math.exp(-1)) + 2 * math.log(2)) / 4
    assert similarity_loss(e, ids).item() == pytest.approx(expected, rel=1e-6)
    assert similarity_loss([torch.zeros(0, 2)], [torch.zeros(0, dtype=torch.long)]) is None


def test_matching_cost_class_term():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    masks = torch.zeros(2, 1, 4, 4)
    cost = matching_cost(logits, masks, torch.tensor([0]), torch.ones(1, 1, 8, 8), 16, 2.0, 0.0, 0.0)
    p = torch.softmax(logits, -1)[:, 0]
    assert cost[:, 0].tolist() == pytest.approx((-2 * p).tolist())


def test_criterion_known_values_and_assignment():
    cfg = TrainConfig(num_points=16, sim_weight=0.0, assignment="uvla")
    crit = SetCriterion(cfg, num_classes=1)
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])[None, None]    # [D=1, E=1, N_q=2, K+1=2]
    out = ClipOutput(logits=logits, mask_embed=torch.zeros(1, 1, 2, 8), prototypes=torch.zeros(1, 2, 8))
    # an all-zero target (points outside a map read 0, so 'all ones' would not be exact)
    targets = [ClipTargets(torch.tensor([0]), torch.zeros(1, 1, 8, 8), torch.tensor([True]))]
    losses, states = crit(out, [torch.randn(1, 8, 4, 4)], [0], targets, 0, [[{}]], torch.Generator().manual_seed(0))
    assert states == [[{0: 0}]]                                    # query 0 has the better class score
    ce = (math.log(1 + math.exp(-2)) + 0.1 * math.log(2)) / 1.1
    assert losses["loss_ce"].item() == pytest.approx(2 * ce, rel=1e-5)
    assert losses["loss_mask"].item() == pytest.approx(5 * math.log(2), rel=1e-5)
    p = 16                                                         # points x 1 frame, sigmoid 0.5
    assert losses["loss_dice"].item() == pytest.approx(5 * (1 - 1 / (0.5 * p + 1)), rel=1e-5)


def test_criterion_absent_instance_query_is_no_object():
    cfg = TrainConfig(num_points=8, sim_weight=0.0)
    crit = SetCriterion(cfg, num_classes=1)
    logits = torch.zeros(1, 1, 2, 2)
    out = ClipOutput(logits=logits, mask_embed=torch.zeros(1, 1, 2, 4), prototypes=torch.zeros(1, 2, 4))
    targets = [ClipTargets(torch.tensor([0]), torch.zeros(1, 1, 4, 4), torch.tensor([False]))]
    losses, states = crit(out, [torch.randn(1, 4, 2, 2)], [0], targets, 1, [[{0: 1}]])
    assert states == [[{0: 1}]]
    assert losses["loss_ce"].item() == pytest.approx(2 * math.log(2), rel=1e-5)  # all no-object
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0


def test_point_sample_indexed_equals_point_sample_of_the_gathered_maps():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 7, 9, generator=g) > 0.5
    index = torch.tensor([4, 0, 0, 2])
    coords = torch.rand(4, 50, 2, generator=g)
    coords[0, :4] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])   # the borders
    want = point_sample(maps[index][:, None].float(), coords)[:, 0]
    got = point_sample_indexed(maps, index, coords)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert got.dtype == torch.float32 and 0 < float(got.mean()) < 1


def test_smallest_k_is_the_stable_sort_selection_with_ties_and_nan():
    g = torch.Generator().manual_seed(0)
    values = torch.rand(6, 40, generator=g)
    values[1, [3, 9, 17, 30]] = values[1].sort().values[4]       # ties at the threshold: earliest kept
    values[2] = 0.5                                                # a constant row: the first k
    values[3, 5] = float("nan")                                    # NaN counts as +inf
    k = 7
    got = smallest_k(values, k)
    want = values.nan_to_num(nan=float("inf")).argsort(dim=1, stable=True)[:, :k].sort(dim=1).values
    assert torch.equal(got, want)
    assert got[2].tolist() == list(range(k)) and 5 not in got[3].tolist()
    assert torch.equal(_smallest_k_on_device(values, k), want)          # the GPU code, run on the CPU
    assert smallest_k(values, 0).shape == (6, 0) and torch.equal(smallest_k(values, 40)[0], torch.arange(40))
    with pytest.raises(ValueError, match="k=41"):
        smallest_k(values, 41)
