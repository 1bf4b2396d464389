"""genvis.utils.forked: work in forked children gives this process's answers and errors."""

from __future__ import annotations

import os

import pytest

from genvis.utils.forked import ForkedCall, map_forked

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only (POSIX)")


def _square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def _fails(_job) -> None:
    raise ValueError("no good: 7")


def test_forked_call_runs_in_a_child_while_the_parent_goes_on():
    call = ForkedCall(_square_and_pid, 12)
    parent_side = sum(range(1000))   # the parent works meanwhile
    value, pid = call.result()
    assert value == 144 and pid != os.getpid() and parent_side == 499500


def test_forked_call_reraises_the_childs_error():
    call = ForkedCall(_fails, None)
    with pytest.raises(ValueError, match="no good: 7"):
        call.result()


def test_map_forked_unites_the_shares_in_key_order():
    out = map_forked(lambda share, job, _p: {k: k * job for k in share}, [5, 1, 4, 2, 3], 10, 2, False)
    assert list(out.items()) == [(1, 10), (2, 20), (3, 30), (4, 40), (5, 50)]
