"""Oracle association (diagnostic): hand-built clips whose queries are shuffled every frame."""

import warnings

import numpy as np
import pytest
import torch

from genvis.data.masks import encode_masks
from genvis.data.ytvis import parse_vis_dict
from genvis.infer.oracle import OracleLinker

H = W = 4


def box(r, c):
    m = np.zeros((H, W), bool)
    m[r:r + 2, c:c + 2] = True
    return m


A, B, EMPTY = box(0, 0), box(2, 2), np.zeros((H, W), bool)


def dataset(b_frames=(0, 1, 3)):
    """One 4-frame video: A (top-left) on every frame, B (bottom-right) on ``b_frames``."""
    a_segs = encode_masks(np.stack([A] * 4))
    b_segs = [s if t in b_frames else None for t, s in enumerate(encode_masks(np.stack([B] * 4)))]
    return parse_vis_dict({
        "videos": [{"id": 1, "height": H, "width": W, "length": 4,
                    "file_names": [f"v/{t}.jpg" for t in range(4)]}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": a_segs},
                        {"id": 2, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": b_segs}]})


def step(linker, t, masks, no_object, protos):
    hard = torch.as_tensor(np.stack(masks))[:, None]          # [N_q, 1, H, W]
    return linker.permutation(t, t + 1, hard, torch.tensor(no_object), protos).tolist()


def test_oracle_keeps_each_instance_in_one_slot_and_fills_absences_with_empty_queries():
    linker = OracleLinker(dataset(), 1, num_queries=4)
    p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    other = torch.tensor([0.7, 0.7])
    # frame 0: q1 = B, q2 = A, q0 / q3 = false positives with prototypes p / q
    perm0 = step(linker, 0, [EMPTY, B, A, EMPTY], [0.5, 0.1, 0.1, 0.5], torch.stack([p, other, other, q]))
    slot_a, slot_b = linker.slot_of[0], linker.slot_of[1]
    assert slot_a != slot_b
    assert perm0[slot_a] == 2 and perm0[slot_b] == 1
    fp_slots = [s for s in range(4) if s not in (slot_a, slot_b)]
    assert [perm0[s] for s in fp_slots] == [0, 3]              # first clip: query order
    # frame 1: shuffled; the leftovers' prototypes swap places, so they swap slots too
    perm1 = step(linker, 1, [A, EMPTY, EMPTY, B], [0.1, 0.9, 0.2, 0.1], torch.stack([other, q, p, other]))
    assert perm1[slot_a] == 0 and perm1[slot_b] == 3
    assert [perm1[s] for s in fp_slots] == [2, 1]              # p's slot gets q2, q's slot gets q1
    # frame 2: B is absent; its slot gets the query most sure it is no object (q2, 0.95)
    perm2 = step(linker, 2, [EMPTY, A, EMPTY, EMPTY], [0.3, 0.1, 0.95, 0.5], torch.stack([p, other, q, p]))
    assert perm2[slot_a] == 1 and perm2[slot_b] == 2
    # frame 3: B is back and returns to its own slot, not a new one
    perm3 = step(linker, 3, [B, EMPTY, EMPTY, A], [0.1, 0.5, 0.5, 0.1], torch.stack([other, p, q, other]))
    assert perm3[slot_b] == 0 and perm3[slot_a] == 3
    assert linker.slot_of == {0: slot_a, 1: slot_b}
    for perm in (perm0, perm1, perm2, perm3):
        assert sorted(perm) == [0, 1, 2, 3]


def test_oracle_ignores_queries_that_do_not_overlap_any_instance():
    linker = OracleLinker(dataset(b_frames=()), 1, num_queries=2)
    off = np.zeros((H, W), bool)
    off[0, 3] = True                                            # overlaps neither A nor B
    perm = step(linker, 0, [off, EMPTY], [0.2, 0.9], torch.eye(2))
    assert linker.slot_of == {}                                 # nothing matched, nothing owned
    assert perm == [0, 1]


def test_oracle_with_more_instances_than_slots_links_the_rest_like_false_positives():
    linker = OracleLinker(dataset(), 1, num_queries=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # two instances, two slots: no warning
        step(linker, 2, [EMPTY, A], [0.9, 0.1], torch.eye(2))   # B absent: A takes a slot
        step(linker, 3, [B, A], [0.1, 0.1], torch.eye(2))       # B takes the other one
    assert linker.unslotted == set() and sorted(linker.slot_of) == [0, 1]
    one = OracleLinker(dataset(), 1, num_queries=1)
    assert step(one, 2, [A], [0.1], torch.ones(1, 2)) == [0]    # A takes the only slot
    with pytest.warns(UserWarning, match="video 1: more ground-truth instances than the 1 query slots"):
        assert step(one, 3, [B], [0.1], torch.ones(1, 2)) == [0]   # B gets no slot; the query fills A's
    assert one.slot_of == {0: 0} and one.unslotted == {1}


def test_oracle_errors():
    unannotated = parse_vis_dict({"videos": [{"id": 1, "height": H, "width": W, "length": 4,
                                              "file_names": [f"v/{t}.jpg" for t in range(4)]}],
                                  "categories": [{"id": 1, "name": "thing"}]}, source="test.json")
    with pytest.raises(ValueError, match="test.json: oracle association needs ground-truth"):
        OracleLinker(unannotated, 1, num_queries=4)
