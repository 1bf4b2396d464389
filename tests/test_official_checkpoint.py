"""Official GenVIS weights (vita_module.*) <-> genvis model: names, round trip, errors."""

import pytest
import torch
from torch.nn import functional as F

from genvis.model.checkpoint import load_official_genvis, to_official_state_dict
from genvis.errors import ConfigError, InputError
from genvis.model.config import GenVISConfig
from genvis.model.genvis import GenVIS


pytestmark = pytest.mark.usefixtures("one_torch_thread")

OFFICIAL_NAMES = {
    "vita_module.input_proj_dec.weight", "vita_module.enc_self_attn.0.self_attn.in_proj_weight",
    "vita_module.enc_ffn.1.linear2.bias", "vita_module.transformer_cross_attention_layers.0.multihead_attn.out_proj.weight",
    "vita_module.transformer_self_attention_layers.1.norm.weight", "vita_module.transformer_ffn_layers.0.linear1.weight",
    "vita_module.decoder_norm.weight", "vita_module.query_feat.weight", "vita_module.query_embed.weight",
    "vita_module.fq_pos.weight", "vita_module.class_embed.bias", "vita_module.mask_embed.layers.2.weight",
    "vita_module.vita_mask_features.weight", "vita_module.sim_embed_frame.weight", "vita_module.sim_embed_clip.bias",
    "vita_module.pre_query_embed_k.weight", "vita_module.pre_query_embed_v.bias",
    "vita_module.pre_memory_embed_k.weight", "vita_module.pre_memory_embed_v.weight",
}


def model():
    torch.manual_seed(0)
    return GenVIS(GenVISConfig(num_classes=4, hidden_dim=32, num_frame_queries=5, num_queries=6,
                               num_heads=8, dim_feedforward=48, enc_layers=2, dec_layers=2))


def test_round_trip_with_official_names_and_no_unmapped_keys():
    m = model().eval()
    sd = to_official_state_dict(m)
    assert OFFICIAL_NAMES <= set(sd)
    assert all(k.startswith("vita_module.") for k in sd)
    ckpt = {"model": {**sd, "backbone.res2.0.conv1.weight": torch.zeros(1),
                      "sem_seg_head.predictor.query_feat.weight": torch.zeros(1)}}
    loaded = load_official_genvis(ckpt)
    assert loaded.cfg.enc_layers == 2 and loaded.cfg.dec_layers == 2 and loaded.cfg.num_queries == 6
    assert loaded.cfg.memory == "index" and loaded.cfg.num_classes == 4
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    fq, mf = torch.randn(5, 5, 32), torch.randn(5, 32, 3, 3)
    a = m.infer_from_tensors(fq, mf, 2)
    b = loaded.infer_from_tensors(fq, mf, 2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_file_round_trip(tmp_path):
    m = model()
    path = tmp_path / "genvis_official.pth"
    torch.save({"model": to_official_state_dict(m), "iteration": 1}, path)
    assert torch.equal(load_official_genvis(path).heads.class_embed.weight, m.heads.class_embed.weight)


def test_errors_name_the_problem():
    sd = to_official_state_dict(model())
    with pytest.raises(ConfigError, match="4 classes"):
        load_official_genvis(sd, num_classes=40)
    with pytest.raises(ConfigError, match="hidden size 32"):
        load_official_genvis(sd, hidden_dim=256)
    missing = {k: v for k, v in sd.items() if "decoder_norm" not in k}
    with pytest.raises(InputError, match="missing .*decoder_norm"):
        load_official_genvis(missing)
    extra = dict(sd, **{"vita_module.some_new_layer.weight": torch.zeros(2)})
    with pytest.raises(InputError, match="no genvis counterpart.*some_new_layer"):
        load_official_genvis(extra)
    with pytest.raises(InputError, match="vita_module"):
        load_official_genvis({"backbone.x": torch.zeros(1)})
    with pytest.raises(InputError, match="not found"):
        load_official_genvis("/nonexistent/genvis.pth")


def _official_reference(sd, fq, mf, n_f, heads):
    """Independent re-statement of the official GenVIS inference (seq-first tensors, functional
    ops, official parameter names) used to check the genvis modules against it."""
    sd = {k[len("vita_module."):]: v for k, v in sd.items()}
    c = sd["query_feat.weight"].shape[1]

    def lin(x, p):
        return F.linear(x, sd[p + "weight"], sd[p + "bias"])

    def ln(x, p):
        return F.layer_norm(x, (c,), sd[p + "weight"], sd[p + "bias"])

    def mha(q, k, v, p):
        return F.multi_head_attention_forward(
            q, k, v, c, heads, sd[p + "in_proj_weight"], sd[p + "in_proj_bias"], None, None, False, 0.0,
            sd[p + "out_proj.weight"], sd[p + "out_proj.bias"], training=False, need_weights=False)[0]

    n_enc = len({k.split(".")[1] for k in sd if k.startswith("enc_self_attn.")})
    n_dec = len({k.split(".")[1] for k in sd if k.startswith("transformer_ffn_layers.")})
    output = sd["query_feat.weight"][:, None]                  # cQ, 1, C
    qe = sd["query_embed.weight"][:, None]
    mem_k, mem_v, logits, masks = [], [], [], []
    for s in range(0, fq.shape[0], n_f):
        f = fq[s:s + n_f]
        t = f.shape[0]
        x = lin(f, "input_proj_dec.").flatten(0, 1)[:, None]    # T*fQ, 1, C
        for i in range(n_enc):
            x = ln(x + mha(x, x, x, f"enc_self_attn.{i}.self_attn."), f"enc_self_attn.{i}.norm.")
            x = ln(x + lin(F.relu(lin(x, f"enc_ffn.{i}.linear1.")), f"enc_ffn.{i}.linear2."), f"enc_ffn.{i}.norm.")
        pos = sd["fq_pos.weight"].repeat(t, 1)[:, None]
        qk, qv = lin(output, "pre_query_embed_k."), lin(output, "pre_query_embed_v.")
        z = torch.zeros_like(output)
        if mem_k:
            mk, mv = torch.stack(mem_k), torch.stack(mem_v)      # M, cQ, 1, C
            w = torch.einsum("qbc,mqbc->qbm", qk, mk).softmax(-1)
            z = torch.einsum("qbm,mqbc->qbc", w, mv)
        output = output + qv + z
        for i in range(n_dec):
            p = f"transformer_cross_attention_layers.{i}."
            output = ln(output + mha(output + qe, x + pos, x, p + "multihead_attn."), p + "norm.")
            p = f"transformer_self_attention_layers.{i}."
            output = ln(output + mha(output + qe, output + qe, output, p + "self_attn."), p + "norm.")
            p = f"transformer_ffn_layers.{i}."
            output = ln(output + lin(F.relu(lin(output, p + "linear1.")), p + "linear2."), p + "norm.")
        dec = ln(output, "decoder_norm.")[:, 0]                  # cQ, C
        logits.append(lin(dec, "class_embed."))
        e = F.relu(lin(dec, "mask_embed.layers.0."))
        e = lin(F.relu(lin(e, "mask_embed.layers.1.")), "mask_embed.layers.2.")
        proj = F.conv2d(mf[s:s + n_f], sd["vita_mask_features.weight"], sd["vita_mask_features.bias"])
        masks.append(torch.einsum("qc,tchw->qthw", e, proj))
        mem_k.append(lin(dec, "pre_memory_embed_k.")[:, None])
        mem_v.append(lin(dec, "pre_memory_embed_v.")[:, None])
    return torch.stack(logits), torch.cat(masks, dim=1)


@pytest.mark.parametrize("n_f", [1, 3])
def test_outputs_match_an_independent_statement_of_the_official_forward(n_f):
    m = model()
    sd = to_official_state_dict(m)
    torch.manual_seed(1)
    fq, mf = torch.randn(7, 5, 32), torch.randn(7, 32, 3, 4)
    got_cls, got_masks = load_official_genvis(sd).infer_from_tensors(fq, mf, n_f)
    ref_cls, ref_masks = _official_reference(sd, fq, mf, n_f, heads=8)
    assert torch.allclose(got_cls, ref_cls, atol=1e-4)
    assert torch.allclose(got_masks, ref_masks, atol=1e-4)


def test_heads_initialised_from_the_frame_detector(tmp_path):
    from genvis.model.checkpoint import init_heads_from_detector
    from genvis.detector.config import DetectorConfig
    from genvis.detector.model import FrameDetector

    det = FrameDetector(DetectorConfig(backbone="tiny_resnet", num_classes=4, hidden_dim=32, num_queries=5,
                                       decoder_layers=4, encoder_layers=1, num_heads=4, dim_feedforward=64,
                                       encoder_feedforward_dim=64, min_size=32, max_size=64))
    det.save(tmp_path / "det.pt")
    m = model()
    assert len(init_heads_from_detector(m, tmp_path / "det.pt")) == 10
    x = torch.randn(3, 32)
    with torch.no_grad():
        assert torch.allclose(m.heads.class_embed(x), det.m2f.class_predictor(x), atol=1e-6)
        mlp = det.m2f.model.transformer_module.decoder.mask_predictor.mask_embedder
        assert torch.allclose(m.heads.mask_embed(x), mlp(x), atol=1e-6)
    other = GenVIS(GenVISConfig(num_classes=7, hidden_dim=32, num_frame_queries=5, num_queries=6,
                                num_heads=8, dim_feedforward=48, enc_layers=1, dec_layers=1))
    with pytest.raises(ConfigError, match="4 classes"):
        init_heads_from_detector(other, tmp_path / "det.pt")
