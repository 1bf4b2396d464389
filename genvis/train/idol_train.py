"""Training IDOL's embedding head from the cache (IDOL, Wu et al. ECCV 2022, Sec. 3.1).

Called by :func:`genvis.train.loop.train` when the experiment has an ``idol`` section, so
``genvis train`` keeps its CLI, its outputs (``MODEL.pt``, ``<stem>.losses.csv``,
``<stem>.resume.pt``), its exact resume and its progress bar; the optimiser, schedule and
gradient clipping are the stage-two loop's own (:func:`genvis.train.loop.build_optimizer`,
:func:`genvis.train.loop.learning_rate`).

Per iteration, ``train.batch_videos`` key/reference pairs: a video is drawn uniformly, the key
frame uniformly in it, the reference frame uniformly among the other frames within
``idol.frame_range`` of the key (IDOL samples its pairs within a frame range; the key itself
only in one-frame videos). The detector is frozen, so its frame predictions come from the
cache: masks ``mask_embeddings . mask_projection(mask features)`` (upsampled to the padded
input grid of the ground truth), class probabilities from the cached class logits.

* key frame: each ground-truth instance visible there is matched one-to-one to a query
  (Hungarian on :func:`~genvis.train.idol_selection.selection_cost`; pairs of IoU 0 dropped);
  that query's embedding is the instance's key ``v``;
* reference frame: positives and negatives per instance by ``idol.selection``;
* loss: ``embed_weight * L_embed + aux_weight * L_aux`` averaged over the (instance, pair)
  terms (``idol.loss: contrastive``), or the ID-head cross-entropy (``id_head``), where the
  reference queries matched one-to-one are classified among the key instances + "new".

Only the embedding head learns; the mask projection (copied from the detector with
``--init-heads DET.pt``, which is therefore required) stays frozen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn import functional as F
from tqdm import tqdm

from genvis.errors import ConfigError, InputError
from genvis.model.idol_head import IDOLConfig, IDOLModel, init_mask_projection_from_detector, save_idol_model
from genvis.train.idol_loss import aux_cosine_loss, contrastive_loss, id_cross_entropy
from genvis.train.idol_selection import hungarian_select, iou_select, ot_constants, ot_select, selection_cost
from genvis.utils.matching import mask_iou
from genvis.utils.io import atomic_path, atomic_write_text, csv_text

CSV_COLUMNS = ("iteration", "lr", "loss", "loss_embed", "loss_aux", "loss_id", "instances")
FIELDS = ("frame_queries", "class_logits", "mask_embeddings", "mask_features")


def sample_pair(lengths: dict[int, int], frame_range: int, generator: torch.Generator) -> tuple[int, int, int]:
    """One (video id, key frame, reference frame) draw (see the module docstring).

    Args:
        lengths: video id -> number of frames (>= 1). frame_range: R >= 1.

    Returns:
        (video id, key index, reference index), ``|key - ref| <= R``, ``key != ref`` unless the
        video has one frame.
    """
    ids = sorted(lengths)
    vid = ids[int(torch.randint(len(ids), (1,), generator=generator))]
    n = lengths[vid]
    key = int(torch.randint(n, (1,), generator=generator))
    lo, hi = max(0, key - frame_range), min(n - 1, key + frame_range)
    choices = [f for f in range(lo, hi + 1) if f != key] or [key]
    ref = choices[int(torch.randint(len(choices), (1,), generator=generator))]
    return vid, key, ref


def frame_predictions(model: IDOLModel, source: Any, video_id: int, frame: int,
                      padded: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The frozen detector's predictions of one frame, from the cache.

    Returns:
        {"embed": float [Q_f, D] (with graph), "prob": float [Q_f, K+1] class probabilities,
        "masks": bool [Q_f, Hp, Wp] hard masks on the padded input grid}, on the model's device.

    Raises:
        InputError: non-finite cached values (names the video and frame).
    """
    from genvis.clip_source import check_finite

    clip = source.read_clip(video_id, frame, frame + 1, fields=FIELDS, layers=slice(-1, None))
    for name in FIELDS:
        check_finite(source, video_id, name, clip[name], frame, frame + 1)
    device = model.device
    fq = clip["frame_queries"][0, -1].to(device)                       # [Q_f, C]
    with torch.no_grad():
        logits = model.frame_mask_logits(clip["mask_embeddings"].to(device), clip["mask_features"].to(device))
        logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)[0]
        prob = clip["class_logits"][0].to(device).softmax(-1)
    return {"embed": model(fq), "prob": prob, "masks": logits > 0}


def pair_losses(model: IDOLModel, settings: Any, source: Any, targets: Callable[[int], Any],
                vid: int, key: int, ref: int, windows: tuple[int, int]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Loss terms of one key/reference pair: (contrastive terms, auxiliary terms, ID terms),
    one per ground-truth instance that is matched in the key frame and visible in the
    reference frame (ID terms: one per matched reference query)."""
    vt = targets(vid)
    padded = tuple(vt.masks.shape[-2:])
    device = model.device
    labels = vt.labels.to(device)
    k = frame_predictions(model, source, vid, key, padded)
    r = frame_predictions(model, source, vid, ref, padded)
    gk, gr = vt.masks[:, key].to(device), vt.masks[:, ref].to(device)
    iou_k = mask_iou(k["masks"], gk)
    pos_k, _ = hungarian_select(selection_cost(k["prob"], labels, iou_k), iou_k)
    key_of = {int(g): int(q) for q, g in torch.nonzero(pos_k, as_tuple=False).tolist()}
    iou_r = mask_iou(r["masks"], gr)
    cost_r = selection_cost(r["prob"], labels, iou_r)
    visible = gr.flatten(1).any(1)
    embeds, auxes, ids = [], [], []
    if settings.loss == "id_head":
        pos_r, _ = hungarian_select(cost_r, iou_r)
        keys = sorted(key_of)
        if not keys:
            return embeds, auxes, ids
        key_embed = k["embed"][[key_of[g] for g in keys]]
        rq, rg = [], []
        for q, g in torch.nonzero(pos_r, as_tuple=False).tolist():
            rq.append(q)
            rg.append(keys.index(g) if g in key_of else -1)
        if rq:
            ids.append(id_cross_entropy(r["embed"][rq], key_embed, torch.tensor(rg, device=device)))
        return embeds, auxes, ids
    if settings.selection == "ot":
        pos, neg = ot_select(cost_r, iou_r, *windows)
    elif settings.selection == "iou":
        pos, neg = iou_select(iou_r, settings.iou_positive, settings.iou_negative)
    else:
        pos, neg = hungarian_select(cost_r, iou_r)
    for g, q in key_of.items():
        if not bool(visible[g]) or not bool(pos[:, g].any()):
            continue
        v = k["embed"][q]
        p, n = r["embed"][pos[:, g]], r["embed"][neg[:, g]]
        embeds.append(contrastive_loss(v, p, n))
        auxes.append(aux_cosine_loss(v, p, n))
    return embeds, auxes, ids


def train_idol(cfg: Any, cache: Any, dataset: Any, out: str | os.PathLike, resume: bool | str = False,
               targets: Callable[[int], Any] | None = None, progress: bool = True,
               init_heads: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Path:
    """Train the IDOL embedding head and write MODEL.pt (format ``genvis-idol``).

    Args:
        cfg: validated ExperimentConfig with ``cfg.idol`` set (iterations / seed overrides
            already applied by :func:`genvis.train.loop.train`).
        cache: clip source (CacheReader interface) with the fields ``frame_queries``,
            ``class_logits``, ``mask_embeddings``, ``mask_features``.
        dataset: the annotated training split. out: MODEL.pt.
        resume: continue from ``<stem>.resume.pt`` (bit-exact; True or ``"interrupted"``:
            :func:`genvis.train.loop.load_resume`).
        targets: video id -> VideoTargets (default: decoded from ``dataset``).
        init_heads: the frame detector DET.pt whose mask projection the model copies (required).
        device: torch device; sampling RNGs stay on the CPU.

    Returns:
        the path of MODEL.pt.

    Raises:
        ConfigError: no ``init_heads``; resume checkpoint of another experiment.
        InputError: videos missing from the cache, NaN features, no annotations, loss not finite.
    """
    from genvis.clip_source import check_covers, probe_sizes, source_name
    from genvis.train.loop import build_optimizer, learning_rate, load_resume, optimizer_step, side_paths
    from genvis.train.targets import DatasetTargets
    from genvis.utils.device import resolve_device
    from genvis.utils.io import run_origin

    out = Path(out)
    tc, settings = cfg.train, cfg.idol
    if init_heads is None:
        raise ConfigError("--init-heads", "IDOL needs the frame detector (DET.pt) whose cache it reads: "
                          "its mask projection turns the cached mask embeddings into frame masks")
    device = resolve_device(device)
    check_covers(cache, dataset)
    if not dataset.videos:
        raise InputError(getattr(dataset, "path", None), "the annotation file has no videos")
    targets = targets or DatasetTargets(dataset, cache)
    sizes = probe_sizes(cache, dataset.videos[0].id)
    mcfg = IDOLConfig(num_classes=dataset.num_classes, hidden_dim=sizes["hidden_dim"],
                      mask_feature_dim=sizes["mask_feature_dim"], num_frame_queries=sizes["num_frame_queries"],
                      embed_dim=settings.embed_dim, mlp_layers=settings.mlp_layers).validate()
    auto = ot_constants(mcfg.num_frame_queries)
    windows = (settings.ot_top_pos or auto[0], settings.ot_top_neg or auto[1])
    torch.manual_seed(tc.seed)
    model = IDOLModel(mcfg)
    init_mask_projection_from_detector(model, init_heads)
    model.to(device).train()
    optimizer = build_optimizer(model, tc.lr, tc.weight_decay)
    sample_gen = torch.Generator().manual_seed(tc.seed + 1)
    lengths = {v.id: cache.length(v.id) for v in dataset.videos}
    paths = side_paths(out)
    rows: list[dict[str, float]] = []
    start = 0
    experiment = cfg.to_dict()
    origin = run_origin(dataset, cache, heads=init_heads)
    state = load_resume(paths["resume"], experiment, resume, origin)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        sample_gen.set_state(state["sample_rng"])
        rows = list(state["rows"])
        start = int(state["iteration"])

    def checkpoint(it: int) -> None:
        payload = {"iteration": it, "experiment": experiment, "model": model.state_dict(),
                   "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                   "sample_rng": sample_gen.get_state(), "rows": rows, "origin": origin}
        with atomic_path(paths["resume"]) as tmp:
            torch.save(payload, tmp)
        atomic_write_text(paths["losses"], csv_text(rows, CSV_COLUMNS))

    bar = tqdm(range(start, tc.iterations), initial=start, total=tc.iterations, disable=not progress,
               desc=f"train {cfg.name}", unit="it", dynamic_ncols=True)
    for it in bar:
        lr = learning_rate(it, tc.lr, tc.decay_steps, tc.decay_gamma, tc.warmup_iters)
        for g in optimizer.param_groups:
            g["lr"] = lr
        embeds, auxes, ids = [], [], []
        pairs = [sample_pair(lengths, settings.frame_range, sample_gen) for _ in range(tc.batch_videos)]
        for vid, key, ref in pairs:
            e, a, i = pair_losses(model, settings, cache, targets, vid, key, ref, windows)
            embeds += e
            auxes += a
            ids += i
        zero = next(model.embed.parameters()).sum().abs() * 0.0
        l_embed = torch.stack(embeds).mean() if embeds else zero
        l_aux = torch.stack(auxes).mean() if auxes else zero
        l_id = torch.stack(ids).mean() if ids else zero
        loss = settings.embed_weight * l_embed + settings.aux_weight * l_aux + l_id
        loss_value = optimizer_step(loss, model, optimizer, tc.clip_grad_norm, source_name(cache), it,
                                    [p[0] for p in pairs])
        rows.append({"iteration": it + 1, "lr": lr, "loss": loss_value,
                     "loss_embed": float(l_embed.detach()), "loss_aux": float(l_aux.detach()),
                     "loss_id": float(l_id.detach()) + 0.0, "instances": max(len(embeds), len(ids))})
        bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}")
        if (it + 1) % tc.checkpoint_every == 0 or it + 1 == tc.iterations:
            checkpoint(it + 1)
    bar.close()
    atomic_write_text(paths["losses"], csv_text(rows, CSV_COLUMNS))
    categories = [{"id": c.id, "name": c.name} for c in getattr(dataset, "categories", [])]
    model.cpu()
    save_idol_model(out, model, experiment, extra={
        "iterations": tc.iterations, "categories": categories,
        "provenance": dict(getattr(cache, "provenance", None) or {}),
        "init_heads": str(init_heads), "ot_windows": list(windows)})
    return out
