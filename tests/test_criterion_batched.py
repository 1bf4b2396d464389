"""The batched criterion equals the per-video criterion of 961377e on the same inputs and points."""

import pytest
import torch

from genvis.model.genvis import ClipOutput
from genvis.train.config import TrainConfig
from genvis.train.criterion import ClipTargets, FixedPoints, SetCriterion

from tests.helpers.criterion_reference import reference_criterion

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D, L, Q, C, K, T, P = 3, 3, 8, 6, 3, 2, 16
# per video: (instances, mask-feature size h = w, target size H = W); video 2 has none,
# video 3 another geometry (its own group)
VIDEOS = [(3, 4, 8), (2, 4, 8), (0, 4, 8), (4, 5, 10)]


def make_clip(g: torch.Generator, clip: int):
    b = len(VIDEOS)
    e = L * b
    out = ClipOutput(logits=torch.randn(D, e, Q, K + 1, generator=g).requires_grad_(),
                     mask_embed=torch.randn(D, e, Q, C, generator=g).requires_grad_(),
                     prototypes=torch.zeros(e, Q, C),
                     clip_embed=torch.randn(e, Q, C, generator=g).requires_grad_())
    mfs, targets = [], []
    for v, (n, h, hp) in enumerate(VIDEOS):
        mfs.append(torch.randn(T, C, h, h, generator=g).requires_grad_())
        masks = torch.rand(n, T, hp, hp, generator=g) > 0.6
        # instance k appears from clip k on (new instances in later clips: UVLA's case);
        # instance 1 of video 0 is absent in clip 2
        for k in range(n):
            if k > clip or (v, k, clip) == (0, 1, 2):
                masks[k] = False
        targets.append(ClipTargets(torch.randint(K, (n,), generator=g), masks, masks.flatten(1).any(1)))
    return out, mfs, [ev % b for ev in range(e)], targets


def fixed_points(g: torch.Generator, cfg: TrainConfig) -> FixedPoints:
    s = int(cfg.num_points * cfg.oversample_ratio)
    u = int(cfg.importance_sample_ratio * cfg.num_points)
    return FixedPoints(torch.rand(D, len(VIDEOS), P, 2, generator=g),
                       torch.rand(len(VIDEOS), T, s, 2, generator=g),
                       torch.rand(len(VIDEOS), T, P - u, 2, generator=g))


@pytest.mark.parametrize("assignment,folded", [("uvla", False), ("uvla", True), ("cl", False), ("per_clip", True)])
def test_batched_criterion_equals_the_per_video_one(assignment, folded):
    """Same losses, gradients and assignments; ``folded``: the batched criterion gets raw mask
    features and applies the 1x1 projection to the embeddings, the reference gets features
    projected by the conv."""
    cfg = TrainConfig(num_points=P, assignment=assignment, sim_weight=0.5)
    crit = SetCriterion(cfg, num_classes=K)
    g = torch.Generator().manual_seed(0)
    states_new = states_ref = [[{} for _ in range(L * len(VIDEOS))] for _ in range(D)]
    assigned = 0
    for clip in range(4):
        out, mfs, elem_video, targets = make_clip(g, clip)
        pts = fixed_points(g, cfg)
        leaves = [out.logits, out.mask_embed, out.clip_embed, *mfs]
        if folded:
            conv = torch.nn.Conv2d(C, C, 1)
            leaves += [conv.weight, conv.bias]
            new, states_new = crit(out, mfs, elem_video, targets, clip, states_new, points=pts,
                                   projection=(conv.weight[:, :, 0, 0], conv.bias))
            ref_mfs = [conv(m) for m in mfs]
        else:
            new, states_new = crit(out, mfs, elem_video, targets, clip, states_new, points=pts)
            ref_mfs = mfs
        grads_new = torch.autograd.grad(sum(new.values()), leaves, allow_unused=True)
        ref, states_ref = reference_criterion(crit, out, ref_mfs, elem_video, targets, clip, states_ref, pts)
        grads_ref = torch.autograd.grad(sum(ref.values()), leaves, allow_unused=True)
        assert states_new == states_ref                     # identical assignments
        assert sorted(new) == sorted(ref)
        for key in ref:
            assert float(new[key].detach()) == pytest.approx(float(ref[key].detach()), rel=1e-5, abs=1e-6), key
        for leaf, a, b in zip(leaves, grads_new, grads_ref):   # None: no gradient (= zeros)
            zero = torch.zeros_like(leaf)
            torch.testing.assert_close(zero if a is None else a, zero if b is None else b, rtol=1e-5, atol=1e-6)
        assigned = sum(len(s) for s in states_new[-1])
    assert assigned > 0 and float(ref["loss_mask"].detach()) > 0 and "loss_sim" in ref


def test_criterion_draws_its_points_from_the_generator():
    cfg = TrainConfig(num_points=P, assignment="uvla")
    crit = SetCriterion(cfg, num_classes=K)
    out, mfs, elem_video, targets = make_clip(torch.Generator().manual_seed(1), 3)
    states = [[{} for _ in range(len(elem_video))] for _ in range(D)]
    a, _ = crit(out, mfs, elem_video, targets, 0, states, torch.Generator().manual_seed(5))
    b, _ = crit(out, mfs, elem_video, targets, 0, states, torch.Generator().manual_seed(5))
    c, _ = crit(out, mfs, elem_video, targets, 0, states, torch.Generator().manual_seed(6))
    assert float(a["loss_mask"].detach()) == float(b["loss_mask"].detach()) != float(c["loss_mask"].detach())


def test_points_are_drawn_once_per_video_and_frame():
    """The RNG stream: per group, the matching points [D', videos, P, 2] first, then one draw of
    [videos, N_f, S + P - U, 2]: S candidates and P - U fill points per (video, frame), shared by
    all the masks of that video and frame (every decoder layer, detector layer and instance)."""
    cfg = TrainConfig(num_points=P, assignment="uvla")
    crit = SetCriterion(cfg, num_classes=K)
    g = torch.Generator().manual_seed(3)
    out = ClipOutput(logits=torch.randn(D, 2 * L, Q, K + 1, generator=g), mask_embed=torch.randn(D, 2 * L, Q, C, generator=g),
                     prototypes=torch.zeros(2 * L, Q, C))
    mfs = [torch.randn(T, C, 4, 4, generator=g) for _ in range(2)]
    targets = []
    for n in (2, 3):
        masks = torch.rand(n, T, 8, 8, generator=g) > 0.5
        targets.append(ClipTargets(torch.randint(K, (n,), generator=g), masks, masks.flatten(1).any(1)))
    states = [[{} for _ in range(2 * L)] for _ in range(D)]
    elem_video = [e % 2 for e in range(2 * L)]
    drawn, _ = crit(out, mfs, elem_video, targets, 0, states, torch.Generator().manual_seed(11))
    rng = torch.Generator().manual_seed(11)
    s, u = int(P * cfg.oversample_ratio), int(P * cfg.importance_sample_ratio)
    matching = torch.rand(D, 2, P, 2, generator=rng)
    mask_points = torch.rand(2, T, s + P - u, 2, generator=rng)
    fixed, _ = crit(out, mfs, elem_video, targets, 0, states,
                    points=FixedPoints(matching, mask_points[:, :, :s], mask_points[:, :, s:]))
    assert sorted(drawn) == sorted(fixed)
    for key in drawn:
        assert float(drawn[key]) == float(fixed[key]), key
    assert float(drawn["loss_mask"]) > 0
