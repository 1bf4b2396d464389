"""train.carry_state: masked memory, sequential slots, and equivalence with one long sample."""

import pytest
import torch

from genvis.model.checkpoint import load_model
from genvis.errors import ConfigError
from genvis.model.genvis import GenVIS
from genvis.model.memory import InstancePrototypeMemory, MemoryState
from genvis.train.carry import CarrySampler, SlotState
from genvis.train.config import ExperimentConfig
from genvis.train.criterion import SetCriterion
from genvis.clip_source import probe_sizes
from genvis.train.loop import sample_losses, train
from genvis.train.sampler import ClipSampler
from genvis.train.targets import DatasetTargets
from tests.helpers.toy import make_toy_problem

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL = {"num_queries": 6, "num_heads": 4, "dim_feedforward": 64, "enc_layers": 1, "dec_layers": 2}


def config(**train_kw):
    t = {"n_v": 2, "n_f": 1, "batch_videos": 2, "iterations": 4, "lr": 1e-3, "num_points": 32,
         "clip_grad_norm": 1.0, "checkpoint_every": 100, "decay_steps": [1000], "carry_state": True}
    t.update(train_kw)
    return ExperimentConfig.from_dict({"name": "t", "model": dict(MODEL), "train": t}).validate()


@pytest.mark.parametrize("mode", ["index", "global"])
def test_padding_entries_are_never_read(mode):
    torch.manual_seed(0)
    mem = InstancePrototypeMemory(8, mode)
    protos = [torch.randn(2, 3, 8) for _ in range(3)]
    out = torch.randn(2, 3, 8)
    # sequence 0 has 3 past clips, sequence 1 only the last 2 (entry 0 is padding: garbage)
    padded = [p.clone() for p in protos]
    padded[0][1] = 1000 * torch.randn(3, 8)
    valid = [torch.tensor([True, False]), torch.tensor([True, True]), torch.tensor([True, True])]
    got = mem.read(out, mem.rebuild(padded, valid))
    full = mem.read(out, mem.rebuild(protos))
    short = mem.read(out[1:], mem.rebuild([p[1:] for p in protos[1:]]))
    assert torch.allclose(got[0], full[0], atol=1e-5)
    assert torch.allclose(got[1], short[0], atol=1e-5)
    # a sequence with no valid entry reads z = 0 (as at its first clip), without NaN
    none = mem.read(out, mem.rebuild(padded, [torch.tensor([True, False])] * 3))
    assert torch.isfinite(none).all()
    assert torch.allclose(none[1], mem.read(out[1:], MemoryState())[0], atol=1e-6)


def test_rebuild_equals_writing_one_by_one():
    torch.manual_seed(1)
    mem = InstancePrototypeMemory(8, "index")
    protos = [torch.randn(1, 4, 8) for _ in range(4)]
    state = MemoryState()
    for p in protos:
        state = mem.write(p, state)
    out = torch.randn(1, 4, 8)
    assert torch.allclose(mem.read(out, state), mem.read(out, mem.rebuild(protos)), atol=1e-6)
    assert len(state.prototypes) == 4 and state.valid is None


def test_slots_play_each_video_from_the_start_to_the_end():
    with pytest.warns(UserWarning, match="shorter than 4 frames"):
        sampler = ClipSampler({1: 7, 2: 4, 3: 2}, n_v=2, n_f=2)   # window 4; video 3 too short
    carry = CarrySampler(sampler, batch=1)
    gen = torch.Generator().manual_seed(0)
    seen = []
    for _ in range(12):
        batch, carried = carry.next_batch(gen)
        vid, frames = batch[0]
        start = frames[0]
        assert frames == tuple(range(start, start + 4))
        prev = carry.slots[0]
        assert (carried[0] is None) == (start == 0)
        if carried[0] is not None:
            assert carried[0] is prev and prev.video_id == vid and prev.next_start == start
        seen.append((vid, start))
        carry.update([SlotState(vid, start + 4, torch.zeros(1, 2, 2), [], [[{}]])])
    assert {v for v, _ in seen} == {1, 2}
    # video 1 (7 frames): windows at 0 and 4 would overrun -> only 0; video 2: only 0
    assert all(s == 0 for _, s in seen)
    sampler = ClipSampler({1: 13}, n_v=2, n_f=2)
    carry = CarrySampler(sampler, batch=1)
    starts = []
    for _ in range(7):
        batch, _ = carry.next_batch(gen)
        starts.append(batch[0][1][0])
        carry.update([SlotState(1, batch[0][1][0] + 4, torch.zeros(1, 2, 2), [], [[{}]])])
    assert starts == [0, 4, 8, 0, 4, 8, 0]


def test_two_carried_iterations_equal_one_sample_of_twice_the_clips():
    """With fixed weights, N_v clips twice with the state carried = 2 N_v clips in one sample:
    same losses (summed) and the same assignment, memory length and output at the end."""
    src, ds = make_toy_problem(num_videos=1, length=8, num_instances=3, absent_prob=0.3, seed=3)
    vid = ds.videos[0].id
    sizes = probe_sizes(src, vid)
    targets = DatasetTargets(ds, src)
    results = {}
    for mode in ("carry", "single"):
        cfg = config(n_v=4 if mode == "single" else 2, n_f=2)
        cfg.model["memory"] = "index"
        torch.manual_seed(0)
        model = GenVIS(cfg.model_config(ds.num_classes, sizes["hidden_dim"], sizes["num_frame_queries"],
                                        sizes["mask_feature_dim"])).eval()
        crit = SetCriterion(cfg.train, model.cfg.num_classes)
        gen = torch.Generator().manual_seed(5)
        layers = sizes["layers"]
        with torch.no_grad():
            if mode == "single":
                loss, parts, _ = sample_losses(model, crit, cfg, src, targets, [(vid, tuple(range(8)))], layers, gen)
                results[mode] = (float(loss), parts)
            else:
                carry = CarrySampler(ClipSampler({vid: 8}, 2, 2), 1)
                total, parts_sum = 0.0, {}
                for it in range(2):
                    batch, carried = carry.next_batch(torch.Generator().manual_seed(0))
                    assert batch == [(vid, tuple(range(4 * it, 4 * it + 4)))]
                    loss, parts, reached = sample_losses(model, crit, cfg, src, targets, batch, layers, gen, carried)
                    carry.update(reached)
                    total += float(loss)
                    for k, v in parts.items():
                        parts_sum[k] = parts_sum.get(k, 0.0) + v
                results[mode] = (total, parts_sum)
                slot = carry.slots[0]
                assert len(slot.prototypes) == 4 and slot.next_start == 8   # 4 clips of 2 frames played
                assert slot.output.shape == (layers, model.cfg.num_queries, model.cfg.hidden_dim)
                # every instance of the video got a query, distinct per sequence
                for layer in slot.assignments[-1]:
                    assert sorted(layer) == list(range(len(targets(vid).labels)))
                    assert len(set(layer.values())) == len(layer)
    assert results["carry"][0] == pytest.approx(results["single"][0], rel=1e-5)
    for k, v in results["single"][1].items():
        assert results["carry"][1][k] == pytest.approx(v, rel=1e-4, abs=1e-6), k


def test_carry_state_changes_training(tmp_path):
    """Exact resume with carry_state is tested in test_train.test_exact_resume."""
    src, ds = make_toy_problem(num_videos=3, length=9)
    carried = train(config(iterations=6), src, ds, tmp_path / "a" / "m.pt", progress=False)
    plain = train(config(iterations=6, carry_state=False), src, ds, tmp_path / "c" / "m.pt", progress=False)
    a, meta = load_model(carried)
    c, _ = load_model(plain)
    assert meta["experiment"]["train"]["carry_state"] is True
    assert not torch.equal(a.state_dict()["heads.class_embed.weight"], c.state_dict()["heads.class_embed.weight"])


def test_carry_state_needs_uvla():
    with pytest.raises(ConfigError, match="carry_state"):
        config(assignment="cl")
    with pytest.raises(ConfigError, match="carry_state"):
        config(carry_state="yes")
