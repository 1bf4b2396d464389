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
