"""UVLA (GenVIS Eq. 2-3), CL and per-clip assignment on hand-built costs."""

import pytest
import torch

from genvis.train.uvla import AssignmentError, assign, supervised_pairs, uvla_assign


def cost_preferring(n_q, prefs):
    """Cost [n_q, len(prefs)]: instance k costs 0 on query prefs[k][0], 1 on prefs[k][1], ... 10 elsewhere."""
    c = torch.full((n_q, len(prefs)), 10.0)
    for k, order in enumerate(prefs):
        for rank, q in enumerate(order):
            c[q, k] = float(rank)
    return c


def test_new_instance_matched_to_cheapest_free_query():
    cost = cost_preferring(4, [[2, 0], [1, 3]])
    state = uvla_assign(cost, [True, False], {})
    assert state == {0: 2}                         # instance 1 not visible yet: not matched
    state = uvla_assign(cost, [True, True], state)
    assert state == {0: 2, 1: 1}


def test_occupied_query_never_reassigned_even_when_cheapest():
    # instance 1 appears in clip 2 and prefers query 2, which instance 0 occupies
    cost = cost_preferring(3, [[2], [2, 0]])
    state = uvla_assign(cost, [True, False], {})
    assert state == {0: 2}
    state = uvla_assign(cost, [True, True], state)
    assert state == {0: 2, 1: 0}
    # also while the owner is absent (paper: Omega excludes every occupied query)
    cost2 = cost_preferring(3, [[2], [1], [2, 1, 0]])
    state = uvla_assign(cost2, [True, True, False], {})
    assert state == {0: 2, 1: 1}
    state = uvla_assign(cost2, [False, False, True], state)
    assert state == {0: 2, 1: 1, 2: 0}


def test_absent_then_back_keeps_query_and_is_no_object_while_absent():
    cost = cost_preferring(4, [[1], [3]])
    state = uvla_assign(cost, [True, True], {})
    assert state == {0: 1, 1: 3}
    # clip 2: instance 0 absent -> its query is not supervised with it (no-object)
    state2 = uvla_assign(torch.zeros(4, 2), [False, True], state)
    assert state2 == state
    assert supervised_pairs(state2, [False, True]) == ([3], [1])
    # clip 3: back; the assignment cost now prefers query 0, but the query is kept
    state3 = uvla_assign(cost_preferring(4, [[0], [0]]), [True, True], state2)
    assert state3 == {0: 1, 1: 3}
    assert supervised_pairs(state3, [True, True]) == ([1, 3], [0, 1])


def test_more_instances_than_free_queries_is_a_clear_error():
    with pytest.raises(AssignmentError, match="unoccupied"):
        uvla_assign(torch.zeros(2, 3), [True, True, True], {})
    state = uvla_assign(torch.zeros(2, 2), [True, False], {})
    uvla_assign(torch.zeros(2, 2), [False, True], state)  # one free left: fine
    with pytest.raises(AssignmentError, match="num_queries"):
        assign("cl", 0, torch.zeros(2, 3), [True, True, True], {})


def test_cl_keeps_first_clip_assignment_and_per_clip_rematches():
    c1 = cost_preferring(3, [[0], [1]])
    c2 = cost_preferring(3, [[1], [0]])
    s = assign("cl", 0, c1, [True, False], {})
    assert s == {0: 0, 1: 1}                      # CL: every instance of the sample, first clip
    assert assign("cl", 1, c2, [True, True], s) == {0: 0, 1: 1}
    assert assign("per_clip", 1, c2, [True, True], s) == {0: 1, 1: 0}
    assert assign("per_clip", 0, c1, [True, False], {}) == {0: 0}
