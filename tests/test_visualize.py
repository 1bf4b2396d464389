"""genvis visualize: predictions coloured by the ground-truth instance they match; PNG and mp4."""

import json

import numpy as np

from genvis.data.masks import annotation_masks, encode_masks
from genvis.data.results import VideoResult, write_results
from genvis.data.ytvis import load_vis_json
from genvis.report.overlay import PALETTE
from genvis.report.video_figure import video_tracks


def _results(gt):
    v = gt.video(2)
    a1, a2 = gt.annotations_of(2)
    m1, m2 = annotation_masks(a1, v), annotation_masks(a2, v)
    swapped = np.concatenate([m1[:3], m2[3:]])          # follows instance 1, then jumps to instance 2
    elsewhere = np.zeros_like(m1)
    elsewhere[:, -3:, :3] = True                         # bottom-left corner: touches no instance
    assert not (elsewhere & (m1 | m2)).any()
    return [VideoResult(2, 2, 0.9, encode_masks(m2)), VideoResult(2, 1, 0.8, encode_masks(swapped)),
            VideoResult(2, 1, 0.1, encode_masks(m1)), VideoResult(2, 1, 0.5, encode_masks(elsewhere)),
            VideoResult(1, 1, 0.95, encode_masks(np.ones((4, 24, 32), bool)))], (a1, a2, m1, swapped)


def test_predictions_take_the_colour_of_the_instance_they_match(tiny_vis_json):
    gt = load_vis_json(tiny_vis_json)
    results, (a1, a2, m1, swapped) = _results(gt)
    gts, preds = video_tracks(gt, results, 2, score_threshold=0.3, max_instances=10)
    assert [t.label for t in gts] == [f"instance {a1.id} (disc)", f"instance {a2.id} (box)"]
    assert len(preds) == 3                               # 0.1 is under the threshold, video 1 is another video
    # by hand: the swapped track against instance 1, sum of intersections over sum of unions
    iou = (swapped & m1).sum() / (swapped | m1).sum()
    assert preds[0].label == f"0.90 box -> instance {a2.id}, video IoU 1.00"
    assert preds[1].label == f"0.80 disc -> instance {a1.id}, video IoU {iou:.2f}" and 0 < iou < 1
    assert preds[2].label == "0.50 disc, unmatched"
    assert (preds[0].colour == gts[1].colour).all() and (preds[1].colour == gts[0].colour).all()
    assert (preds[2].colour == PALETTE[2]).all()         # a colour no instance uses
    assert len(video_tracks(gt, results, 2, 0.3, max_instances=1)[1]) == 1


def _write_frames(root, gt, video_id, size=None):
    from PIL import Image

    v = gt.video(video_id)
    for i, name in enumerate(v.file_names):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        h, w = size or (v.height, v.width)
        Image.fromarray(np.full((h, w, 3), 40 * i, dtype=np.uint8)).save(p)


def test_cli_writes_contact_sheet_and_side_by_side_mp4(tmp_path, tiny_vis_json, capsys):
    import av

    from genvis.cli import main

    gt = load_vis_json(tiny_vis_json)
    results, _ = _results(gt)
    res = tmp_path / "res.json"
    write_results(results, res)
    frames = tmp_path / "frames"
    _write_frames(frames, gt, 2)
    out = tmp_path / "vis"
    common = ["visualize", "--annotations", str(tiny_vis_json), "--image-root", str(frames), "--results", str(res)]
    assert main(common + ["--out-dir", str(out), "--video-id", "2", "--mp4", "--frames", "3", "--no-progress"]) == 0
    assert "video 2: 2 ground-truth instances, 3 predictions drawn" in capsys.readouterr().out
    assert (out / "video_2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with av.open(str(out / "video_2.mp4")) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == 6 and decoded[0].shape == (24, 2 * 32 + 8, 3)   # GT | 8-px gap | predictions
    assert decoded[0][:, 32:40].min() > 200                                 # the white gap
    # --longest picks by length (video 2 has 6 frames, 3 has 5, 1 has 4); --label titles the figure
    out2 = tmp_path / "vis_longest"
    assert main(common + ["--out-dir", str(out2), "--longest", "1", "--label", "GenVIS s0", "--no-progress"]) == 0
    assert "video 2: 2 ground-truth instances" in capsys.readouterr().out
    assert sorted(p.name for p in out2.iterdir()) == ["video_2.png"]
    assert main(common + ["--out-dir", str(out2), "--longest", "0"]) == 2
    assert "--longest: need at least 1 video, got 0" in capsys.readouterr().err
    # bad input: unknown video, frames of another size -- clear errors, nothing written
    assert main(common + ["--out-dir", str(tmp_path / "x"), "--video-id", "9"]) == 2
    assert "no video with id 9" in capsys.readouterr().err
    _write_frames(frames, gt, 3, size=(20, 32))
    assert main(common + ["--out-dir", str(tmp_path / "y"), "--video-id", "3", "--mp4"]) == 2
    assert "annotation file says 24x32" in capsys.readouterr().err
    assert not (tmp_path / "y").exists() or not any((tmp_path / "y").iterdir())


def test_results_for_another_annotation_file_are_refused(tmp_path, tiny_vis_json):
    from genvis.cli import main

    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"video_id": 77, "category_id": 1, "score": 0.5, "segmentations": [None]}]))
    assert main(["visualize", "--annotations", str(tiny_vis_json), "--image-root", str(tmp_path),
                 "--results", str(res), "--out-dir", str(tmp_path / "o"), "--all"]) == 2


def test_longest_videos_most_frames_first_ties_by_id(tiny_vis_json):
    from types import SimpleNamespace

    from genvis.commands.visualize import longest_videos

    gt = load_vis_json(tiny_vis_json)                      # lengths: video 1: 4, 2: 6, 3: 5
    assert longest_videos(gt, 2) == [2, 3]
    assert longest_videos(gt, 10) == [2, 3, 1]
    lengths = {7: 5, 4: 9, 5: 5, 9: 2}
    stub = SimpleNamespace(video_ids=list(lengths), video=lambda v: SimpleNamespace(length=lengths[v]))
    assert longest_videos(stub, 3) == [4, 5, 7]


def test_overlapping_tracks_show_the_first_listed_on_top():
    from genvis.report.video_figure import Track, draw_tracks

    frame = np.zeros((6, 8, 3), np.uint8)
    full, left = np.ones((1, 6, 8), bool), np.zeros((1, 6, 8), bool)
    left[0, :, :4] = True
    best = Track("0.9", np.array([255, 0, 0]), encode_masks(left))      # listed first: highest score
    other = Track("0.5", np.array([0, 0, 255]), encode_masks(full))
    out = draw_tracks(frame, [best, other], 0)
    assert out[3, 1].tolist() == [127, 0, 63]        # inside both: red blended last, over blue
    assert out[3, 6].tolist() == [0, 0, 127]         # the other track alone
