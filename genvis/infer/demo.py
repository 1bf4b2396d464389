"""``genvis demo``: detector in the loop on one video file or frame folder.

Frames are read, preprocessed and run through the frozen frame detector clip by clip
(:class:`genvis.infer.detector_source.DetectorClipSource`, which spills detector outputs
to a temporary float16 file so the detector runs once per frame and memory stays flat),
GenVIS runs clip by clip (:mod:`genvis.infer.inference`), masks are encoded as they are
produced, and an overlay video is written in the same pass: each instance (an instance
query of GenVIS, which keeps its identity for the whole video) is drawn in one colour for
its whole life.

Outputs in ``out_dir``: ``results.json`` (YouTube-VIS results, video id 1) and
``overlay.mp4`` (H.264 via PyAV), both written atomically.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from genvis.errors import ConfigError, InputError
from genvis.report.overlay import Mp4Writer, colour_of, overlay
from genvis.utils.io import atomic_path

def _fps(path: Path, default: float = 6.0) -> float:
    if path.is_dir():
        return default
    try:
        import av

        with av.open(str(path)) as c:
            rate = c.streams.video[0].average_rate
            return float(rate) if rate else default
    except Exception:  # noqa: BLE001 - fps is cosmetic; the frame reader reports real errors
        return default


@contextmanager
def overlay_clips(video: Path, overlay_path: Path, total: int, rows: Sequence[int], colours: Sequence[Any],
                  desc: str, progress: bool) -> Iterator[Callable[[int, int, torch.Tensor], None]]:
    """Write ``overlay.mp4`` clip by clip: yields the ``on_clip(start, stop, masks)`` callback of
    the mask decoders (GenVIS :func:`genvis.infer.inference.video_masks`, IDOL
    :func:`genvis.infer.idol.track_masks`), which draws rows ``rows`` of bool ``masks``
    [k, stop - start, H, W] in ``colours`` over the next frames of ``video``.

    The file appears only when the block ends without an error (:func:`atomic_path`); the
    progress bar counts ``total`` frames.
    """
    from tqdm import tqdm

    from genvis.data.frames import open_frames

    frames = iter(open_frames(video))
    colours = list(colours)
    bar = tqdm(total=total, desc=desc, unit="frame", disable=not progress)
    with atomic_path(overlay_path) as tmp:
        writer = Mp4Writer(tmp, _fps(video))
        try:
            def on_clip(start: int, stop: int, masks: torch.Tensor) -> None:
                m = masks.numpy()
                for i in range(stop - start):
                    writer.add(overlay(next(frames), [m[j, i] for j in rows], colours))
                    bar.update(1)

            yield on_clip
        finally:
            writer.close()
            bar.close()


def run_demo(video: str | os.PathLike, detector_path: Any, model_path: Any,
             out_dir: str | os.PathLike, n_f_eval: int | None = None, top_k: int | None = None,
             score_threshold: float = 0.3, max_frames: int | None = None, device: str = "cpu",
             progress: bool = True, allow_other_detector: bool = False) -> dict[str, Any]:
    """Detector + GenVIS on one video; write results.json and overlay.mp4.

    Args:
        video: a video file or a folder of frames.
        detector_path: DET.pt (``genvis train-detector`` / ``import-checkpoint``), or a
            FrameDetector already built (e.g. from an official checkpoint).
        model_path: MODEL.pt (``genvis train``) or an official GenVIS ``.pth``, or an already
            loaded ``(GenVIS, meta)`` pair (meta as :func:`genvis.model.checkpoint.load_any_model`); an
            IDOL MODEL.pt runs :func:`genvis.infer.idol.run_idol_demo` instead (``n_f_eval`` unused).
        out_dir: output folder (created).
        n_f_eval: N_f^eval. top_k: predictions kept. None: the model's experiment's, or for
            official weights the paper's online setting (:func:`genvis.settings.resolve_inference`).
        score_threshold: instances drawn in the overlay need this class score.
        max_frames: only the first frames of the video.
        device: where the detector and the video modules run (``cpu``, ``cuda``, ``cuda:N``).
        allow_other_detector: run even when the detector (weights, resolution) differs from
            the one whose cache the model was trained on (a warning per differing key).

    A detector given as a file runs at the input resolution the model's training cache was
    extracted at (recorded in MODEL.pt) when the model records one, else at the detector
    config's; a detector object runs at its config's.

    Returns:
        {"results": path, "overlay": path, "frames": T, "instances": drawn, "predictions": k}.

    Raises:
        InputError: unreadable video or model files; the model was trained on another
            detector's features (names the differing provenance keys) and
            ``allow_other_detector`` is False. ConfigError: the model does not fit the
            detector (hidden size, frame queries) or bad settings.
    """
    from genvis.data.results import ResultsWriter, VideoResult
    from genvis.detector.model import FrameDetector
    from genvis.infer.detector_source import DetectorClipSource
    from genvis.infer.inference import clip_predictions, select_topk, video_masks
    from genvis.model.checkpoint import check_model_provenance, load_any_model
    from genvis.settings import resolve_inference

    from genvis.model.idol_head import is_idol_model

    if isinstance(model_path, (str, os.PathLike)) and is_idol_model(model_path):  # IDOL association, frame by frame (genvis.infer.idol)
        from genvis.infer.idol import run_idol_demo

        return run_idol_demo(video, detector_path, model_path, out_dir, top_k, score_threshold, max_frames,
                             device, progress)
    video = Path(video)
    if not video.exists():
        raise InputError(video, "video file or frame folder not found")
    out_dir = Path(out_dir)
    sized_by_caller = isinstance(detector_path, FrameDetector)   # e.g. --checkpoint with --min-size
    detector = detector_path if sized_by_caller else FrameDetector.load(detector_path)
    model, meta = model_path if isinstance(model_path, tuple) else load_any_model(model_path)
    if isinstance(detector_path, FrameDetector):
        detector_path = detector.cfg.name
    if isinstance(model_path, tuple):
        model_path = "the official video modules"
    dc = detector.cfg
    if model.cfg.hidden_dim != dc.hidden_dim or model.cfg.num_frame_queries != dc.num_queries:
        raise ConfigError(str(model_path), f"model expects C={model.cfg.hidden_dim}, "
                          f"Q_f={model.cfg.num_frame_queries} but the detector {detector_path} gives "
                          f"C={dc.hidden_dim}, Q_f={dc.num_queries}")
    settings = resolve_inference(meta.get("experiment"), n_f_eval, top_k, source=str(model_path),
                                 num_classes=model.cfg.num_classes)
    n_f, k = settings.n_f_eval, settings.top_k
    categories = meta.get("categories") or [{"id": i + 1, "name": f"class{i + 1}"}
                                            for i in range(model.cfg.num_classes)]
    recorded = {} if sized_by_caller else meta.get("provenance") or {}
    min_size, max_size = recorded.get("min_size"), recorded.get("max_size")  # None: the config's
    with DetectorClipSource.from_video(detector, video, length=max_frames, spill_dir=True, device=device,
                                       min_size=min_size, max_size=max_size) as source, torch.no_grad():
        for diff in check_model_provenance(model_path, meta, source.provenance, detector_path,
                                           allow_other_detector):
            print(f"genvis demo: warning: detector differs from the model's training cache: {diff}",
                  file=sys.stderr)
        model.to(device).eval()
        out_dir.mkdir(parents=True, exist_ok=True)
        results_path, overlay_path = out_dir / "results.json", out_dir / "overlay.mp4"
        t = source.length(1)
        logits, embeds = clip_predictions(model, source, 1, n_f, settings.association)
        scores, queries, labels = (x.cpu() for x in select_topk(logits, k))
        drawn: dict[int, int] = {}   # query -> index in the top-k list (best class of that query)
        for j, (q, s) in enumerate(zip(queries.tolist(), scores.tolist())):
            if s >= score_threshold and q not in drawn:
                drawn[q] = j
        with overlay_clips(video, overlay_path, t, list(drawn.values()), [colour_of(q) for q in drawn],
                           "demo", progress) as on_clip:
            spool, factor = video_masks(model, source, 1, n_f, embeds, queries, None, on_clip)
    final = (scores * factor).clamp(0, 1).tolist()
    with spool, ResultsWriter(results_path) as results:
        for j, (c, s) in enumerate(zip(labels.tolist(), final)):
            results.add(VideoResult(1, int(categories[c]["id"]), float(s), spool.read(j)))
    return {"results": results_path, "overlay": overlay_path, "frames": t, "instances": len(drawn),
            "predictions": results.count}
