"""GenVIS modules: shapes, windowed vs. global encoder, query propagation, infer_from_tensors."""

import pytest
import torch

from genvis.errors import ConfigError
from genvis.model.config import GenVISConfig
from genvis.model.genvis import GenVIS


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw):
    base = dict(num_classes=3, hidden_dim=32, num_frame_queries=5, num_queries=6, num_heads=4,
                dim_feedforward=64, enc_layers=2, dec_layers=2)
    base.update(kw)
    torch.manual_seed(0)
    return GenVIS(GenVISConfig(**base))


def test_clip_step_shapes_and_deep_supervision():
    m = tiny()
    out, state = m.clip_step(torch.randn(4, 3, 5, 32), m.initial_state(4), all_layers=True)
    assert out.logits.shape == (2, 4, 6, 4)
    assert out.mask_embed.shape == (2, 4, 6, 32)
    assert out.prototypes.shape == (4, 6, 32) and out.clip_embed.shape == (4, 6, 32)
    assert len(state.memory) == 1 and state.output.shape == (4, 6, 32)
    out1, _ = m.clip_step(torch.randn(4, 3, 5, 32), m.initial_state(4))
    assert out1.logits.shape == (1, 4, 6, 4)


def test_window_covering_the_clip_equals_global_attention():
    # training mode: every layer uses the unshifted windows (as the official code does)
    g = tiny(enc_window=0).train()
    w = tiny(enc_window=4).train()
    w.load_state_dict(g.state_dict())
    fq = torch.randn(2, 3, 5, 32)    # T=3 < W=4: one window with a padded frame
    a, _ = g.clip_step(fq, g.initial_state(2))
    b, _ = w.clip_step(fq, w.initial_state(2))
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    # eval: layer 2 is shifted by ceil(W/2)=2 frames, which splits frames {0,1} from {2}
    w.eval()
    d, _ = w.clip_step(fq, w.initial_state(2))
    assert not torch.allclose(a.logits, d.logits, atol=1e-3)
    w2 = tiny(enc_window=1).train()
    w2.load_state_dict(g.state_dict())
    c, _ = w2.clip_step(fq, w2.initial_state(2))
    assert not torch.allclose(a.logits, c.logits, atol=1e-3)   # per-frame windows differ


def test_previous_clips_change_the_next_clip_only_through_propagation():
    m = tiny().eval()
    fq1, fq2 = torch.randn(1, 1, 5, 32), torch.randn(1, 1, 5, 32)
    _, s1 = m.clip_step(fq1, m.initial_state(1))
    a, _ = m.clip_step(fq2, s1)
    _, s1b = m.clip_step(fq1 * 2, m.initial_state(1))
    b, _ = m.clip_step(fq2, s1b)
    assert not torch.allclose(a.logits, b.logits)


@pytest.mark.parametrize("n_f", range(1, 8))
def test_infer_from_tensors_any_clip_length(n_f):
    m = tiny(memory="index")
    cl, ml = m.infer_from_tensors(torch.randn(7, 5, 32), torch.randn(7, 32, 4, 6), n_f)
    assert cl.shape == (-(-7 // n_f), 6, 4)
    assert ml.shape == (6, 7, 4, 6)
    assert m.training  # mode restored


def test_bad_config_and_inputs():
    with pytest.raises(ConfigError, match="num_heads"):
        GenVISConfig(hidden_dim=30, num_heads=4).validate()
    with pytest.raises(ConfigError, match="memory"):
        GenVISConfig(memory="bogus").validate()
    m = tiny()
    with pytest.raises(ValueError, match="C=32"):
        m.clip_step(torch.randn(1, 1, 5, 16), m.initial_state(1))
    with pytest.raises(ValueError, match="n_f"):
        m.infer_from_tensors(torch.randn(2, 5, 32), torch.randn(2, 32, 2, 2), 0)


@pytest.mark.parametrize("shared_qk,masked", [(True, False), (False, False), (True, True)])
def test_train_attention_equals_multihead_attention(shared_qk, masked):
    """Training's attention (plain matrix products) is nn.MultiheadAttention's function:
    outputs and parameter gradients to 1e-5."""
    from genvis.model.layers import train_attention

    torch.manual_seed(1)
    mha = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    x, mem = torch.randn(3, 7, 32), torch.randn(3, 9, 32)
    q = x + 1.0
    k, v = (q, x) if shared_qk else (mem + 1.0, mem)
    mask = None
    if masked:  # additive float mask as the windowed encoder builds it
        mask = torch.zeros(7, 7)
        mask[:, 5:] = -1.0e4
    want = mha(q, k, v, attn_mask=mask, need_weights=False)[0]
    got = train_attention(mha, q, k, v, mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    g_want = torch.autograd.grad(want.square().sum(), list(mha.parameters()))
    g_got = torch.autograd.grad(got.square().sum(), list(mha.parameters()))
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert float(want.detach().abs().mean()) > 0.1


@pytest.mark.parametrize("window", [0, 2])
def test_encode_clips_equals_encoding_every_clip(window):
    """Training encodes the N_v clips of a sample in one batch: the clip steps are the same
    (train mode) as with each clip encoded inside clip_step."""
    m = tiny(enc_window=window, memory="index").train()
    fq = torch.randn(2, 3 * 4, 5, 32)     # N_v = 4 clips of N_f = 3
    enc = m.encode_clips(fq, 3)
    s1 = s2 = m.initial_state(2)
    for c in range(4):
        sl = slice(3 * c, 3 * c + 3)
        a, s1 = m.clip_step(fq[:, sl], s1, all_layers=True)
        b, s2 = m.clip_step(fq[:, sl], s2, all_layers=True, encoded=enc[:, sl])
        torch.testing.assert_close(b.logits, a.logits, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b.mask_embed, a.mask_embed, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="n_f=5"):
        m.encode_clips(fq, 5)
