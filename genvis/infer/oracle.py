"""Oracle inter-clip association: how far perfect linking could take a model's clips.

A diagnostic, not a method of the paper. GenVIS (Sec. 3) claims to beat the N_v = 1
baseline by *associating* clips better (query propagation, UVLA, the memory). Whether a
benchmark leaves room for that is measurable: link each clip's outputs to the ground-truth
instances and score the result with the same top-k, the same video scores and the same
evaluator. The gap between the oracle and a real association is all that association can
add on top of those clips; the gap between two models under the oracle is what their
per-clip segmentation differs by.

Per clip (after the model decoded it with fresh instance queries, as the MinVIS baseline
does) the linker permutes the N_q outputs into N_q *slots*, the video-level identities:

1. video IoU (sum of intersections / sum of unions over the clip's frames, at the original
   resolution, class-agnostic) between each query's hard masks and each ground-truth
   instance visible in the clip; Hungarian matching (scipy) maximises the total IoU, pairs
   of IoU 0 are dropped;
2. a matched instance seen for the first time gets the lowest slot no instance owns; the
   query matched to it goes to that slot for this clip. A video with more instances than
   N_q slots: an instance that finds every slot owned gets none (a warning names the video)
   and its queries are linked in step 4, like false positives;
3. slots of owned instances that no query matched in this clip (the instance is absent or
   missed) receive the unmatched queries with the highest no-object probability, so an
   absent instance's track stays as empty as the clip allows;
4. the remaining queries fill the remaining slots by MinVIS association (cosine similarity
   of instance prototypes with the previous clip's prototypes in those slots, Hungarian),
   so false positives are linked as the baseline links them.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import torch
from torch.nn import functional as F

from genvis.data.masks import encode_masks, to_rle
from genvis.data.ytvis import VISDataset
from genvis.errors import InputError
from genvis.evaluate.ytvis_eval import video_ious
from genvis.utils.matching import hungarian


class OracleLinker:
    """Slot bookkeeping of the oracle association for one video.

    Args:
        dataset: the annotated split (gives the ground-truth masks of ``video_id``).
        video_id: the video.
        num_queries: N_q (the number of slots).

    Raises:
        InputError: the split has no ground-truth annotations (named by its path).
    """

    def __init__(self, dataset: VISDataset, video_id: int, num_queries: int):
        if not dataset.has_annotations:
            raise InputError(getattr(dataset, "path", None), "oracle association needs ground-truth "
                             "annotations, and this file has none")
        self.video = dataset.video(video_id)
        self.gts = dataset.annotations_of(video_id)
        self.num_queries = int(num_queries)
        self.slot_of: dict[int, int] = {}          # ground-truth index -> slot
        self.unslotted: set[int] = set()           # ground-truth indices that found every slot owned
        self.previous: torch.Tensor | None = None  # float [N_q, C] prototypes in slot order

    def _gt_rles(self, start: int, stop: int) -> list[SimpleNamespace]:
        h, w = self.video.height, self.video.width
        return [SimpleNamespace(rles=[None if s is None else to_rle(s, h, w) for s in a.segmentations[start:stop]])
                for a in self.gts]

    def permutation(self, start: int, stop: int, hard: torch.Tensor, no_object: torch.Tensor,
                    prototypes: torch.Tensor) -> torch.Tensor:
        """Slot order of one clip's outputs.

        Args:
            start, stop: the clip's frames [start, stop) of the video.
            hard: bool [N_q, t, H, W] hard masks of every query at the original size.
            no_object: float [N_q] no-object probability of every query in this clip.
            prototypes: float [N_q, C] instance prototypes of this clip.

        Returns:
            long [N_q] ``perm`` such that ``output[perm][slot]`` is the query placed in ``slot``.

        Warns:
            UserWarning: the first time an instance finds every slot owned (more instances
            than N_q in the video).
        """
        n = self.num_queries
        preds = [SimpleNamespace(rles=encode_masks(m)) for m in hard.cpu().numpy()]
        ious = video_ious(preds, self._gt_rles(start, stop), stop - start)   # [N_q, G]
        placed: dict[int, int] = {}                                          # slot -> query
        if ious.size:
            rows, cols = hungarian(-ious)
            for q, g in zip(rows.tolist(), cols.tolist()):
                if ious[q, g] <= 0.0:
                    continue
                if g not in self.slot_of:
                    owned = set(self.slot_of.values())
                    free = [s for s in range(n) if s not in owned]
                    if not free:
                        if not self.unslotted:
                            warnings.warn(f"video {self.video.id}: more ground-truth instances than the "
                                          f"{n} query slots of the oracle association; instances beyond "
                                          "them are linked like false positives", stacklevel=2)
                        self.unslotted.add(g)
                        continue
                    self.slot_of[g] = free[0]
                placed[self.slot_of[g]] = q
        left = [q for q in range(n) if q not in placed.values()]
        # Owned slots whose instance no query matched here: the emptiest remaining queries.
        waiting = sorted(s for s in self.slot_of.values() if s not in placed)
        left.sort(key=lambda q: -float(no_object[q]))
        for s, q in zip(waiting, left):
            placed[s] = q
        left = left[len(waiting):]
        open_slots = [s for s in range(n) if s not in placed]
        if left:
            if self.previous is None:
                order = sorted(left)
            else:
                prev = F.normalize(self.previous[open_slots].to(prototypes.device), dim=-1)
                cur = F.normalize(prototypes[left], dim=-1)
                r, c = hungarian(-(prev @ cur.T))
                order = [left[j] for _, j in sorted(zip(r.tolist(), c.tolist()))]
            for s, q in zip(open_slots, order):
                placed[s] = q
        perm = torch.tensor([placed[s] for s in range(n)], dtype=torch.long)
        self.previous = prototypes[perm.to(prototypes.device)].detach().cpu()
        return perm.to(prototypes.device)
