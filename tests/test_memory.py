"""Instance prototype memory: index-wise read never reads another index; global read does."""

import pytest
import torch

from genvis.model.memory import InstancePrototypeMemory, MemoryState


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _filled(mem, protos):
    state = MemoryState()
    for p in protos:
        state = mem.write(p, state)
    return state


def test_index_wise_read_ignores_other_indices():
    torch.manual_seed(0)
    mem = InstancePrototypeMemory(16, "index")
    protos = [torch.randn(2, 5, 16) for _ in range(3)]
    out = torch.randn(2, 5, 16)
    ref = mem.read(out, _filled(mem, protos))
    j = 2
    perturbed = [p.clone() for p in protos]
    for p in perturbed:
        others = [i for i in range(5) if i != j]
        p[:, others] = torch.randn(2, 4, 16) * 100
    got = mem.read(out, _filled(mem, perturbed))
    assert torch.allclose(got[:, j], ref[:, j], atol=1e-6)
    assert not torch.allclose(got[:, 0], ref[:, 0])
    # and changing index j's own memory changes query j
    own = [p.clone() for p in protos]
    own[0][:, j] += 5
    assert not torch.allclose(mem.read(out, _filled(mem, own))[:, j], ref[:, j])


def test_index_wise_read_value_by_hand():
    mem = InstancePrototypeMemory(2, "index")
    with torch.no_grad():
        for lin in (mem.query_k, mem.query_v, mem.memory_k, mem.memory_v):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    out = torch.tensor([[[1.0, 0.0]]])                       # B=1, N_q=1
    state = _filled(mem, [torch.tensor([[[2.0, 0.0]]]), torch.tensor([[[0.0, 3.0]]])])
    # logits: 1*2=2 and 0 -> softmax weights (e^2, 1)/(e^2+1)
    w = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    z = w[0] * torch.tensor([2.0, 0.0]) + w[1] * torch.tensor([0.0, 3.0])
    expected = out[0, 0] + out[0, 0] + z
    assert torch.allclose(mem.read(out, state)[0, 0], expected, atol=1e-6)
    # empty memory: o + V_q(o)
    assert torch.allclose(mem.read(out, MemoryState()), 2 * out)


def test_global_read_mixes_indices():
    torch.manual_seed(1)
    mem = InstancePrototypeMemory(16, "global")
    protos = [torch.randn(1, 4, 16) for _ in range(2)]
    out = torch.randn(1, 4, 16)
    ref = mem.read(out, _filled(mem, protos))
    perturbed = [p.clone() for p in protos]
    perturbed[0][:, 1] += 10
    assert not torch.allclose(mem.read(out, _filled(mem, perturbed))[:, 0], ref[:, 0])
