"""Carrying the video state across training iterations (``train.carry_state``; NOT in the paper).

GenVIS is trained on samples of N_v clips that start from the initial queries and an empty
memory (paper Sec. 3.2), but at inference it runs for as many clips as the video has. On
small, short training runs the learned propagation does not generalise from 5 clips to 30+
(docs/ARCHITECTURE.md, "Stage two"). With ``carry_state`` each of the ``batch_videos``
slots instead plays one video from frame 0 to its end, N_v clips per iteration, and hands
on to its next iteration (detached, i.e. truncated back-propagation through time):

* the decoder output o of the last clip (the next clip's propagated queries),
* the memory's instance prototypes (re-keyed with the current K_m, V_m weights each
  iteration, :meth:`InstancePrototypeMemory.rebuild`), padded and masked in the batch
  where slots have seen different numbers of clips,
* the UVLA assignment of every decoder layer and sequence (instance -> query), so an
  occupied query keeps its instance for the whole video, exactly as within one sample.

A slot whose video has fewer than N_v x N_f frames left draws a new video (uniformly, with
the sampler's generator) and starts again from frame 0 with a fresh state -- the state
inference starts from. Instances are indexed over the whole video (all instances kept in
every window) so that assignments stay meaningful across iterations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from genvis.model.genvis import GenVIS, VideoState
from genvis.model.memory import MemoryState
from genvis.train.sampler import ClipSampler, Sample


@dataclass
class SlotState:
    """What one batch slot carries to its next iteration.

    Attributes:
        video_id: the slot's video. next_start: first frame of its next window.
        output: float [L, N_q, C], detached decoder output of the slot's L sequences (one
            per detector layer) after its last clip.
        prototypes: list (oldest first) of float [L, N_q, C], detached memory prototypes.
        assignments: per decoder layer (D'), per detector layer (L), the UVLA dict
            {instance index (over the whole video): query index}.
    """

    video_id: int
    next_start: int
    output: torch.Tensor
    prototypes: list[torch.Tensor] = field(default_factory=list)
    assignments: list[list[dict[int, int]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers and tensors only (loadable with ``torch.load(weights_only=True)``)."""
        return {"video_id": self.video_id, "next_start": self.next_start, "output": self.output,
                "prototypes": list(self.prototypes),
                "assignments": [[{int(k): int(v) for k, v in a.items()} for a in layer]
                                for layer in self.assignments]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SlotState":
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["video_id"]), int(data["next_start"]), data["output"], list(data["prototypes"]),
                   [[dict(a) for a in layer] for layer in data["assignments"]])


class CarrySampler:
    """Per-slot sequential sampling over whole videos.

    Args:
        sampler: the :class:`ClipSampler` of the split (its video lengths, window N_v x N_f
            and the list of videos long enough for one window).
        batch: number of slots (``batch_videos``).
    """

    def __init__(self, sampler: ClipSampler, batch: int):
        self.sampler = sampler
        self.slots: list[SlotState | None] = [None] * int(batch)

    def next_batch(self, generator: torch.Generator) -> tuple[list[Sample], list[SlotState | None]]:
        """The windows of this iteration and the state each slot starts from.

        Returns:
            ((video id, the window's N_v x N_f consecutive frames) per slot, the slot's
            carried :class:`SlotState` or None for a slot that starts a new video at frame 0).
        """
        batch, carried = [], []
        for i, slot in enumerate(self.slots):
            if slot is not None and slot.next_start + self.sampler.window <= self.sampler.lengths[slot.video_id]:
                batch.append((slot.video_id, self._frames(slot.next_start)))
                carried.append(slot)
                continue
            pick = int(torch.randint(len(self.sampler.video_ids), (1,), generator=generator))
            batch.append((self.sampler.video_ids[pick], self._frames(0)))
            carried.append(None)
            self.slots[i] = None
        return batch, carried

    def _frames(self, start: int) -> tuple[int, ...]:
        return tuple(range(start, start + self.sampler.window))

    def update(self, slots: list[SlotState]) -> None:
        """Store the states the slots reached in this iteration."""
        self.slots = list(slots)

    def state_dict(self) -> list[dict[str, Any] | None]:
        """The slots as plain containers (for the resume checkpoint)."""
        return [None if s is None else s.to_dict() for s in self.slots]

    def load_state_dict(self, data: list[dict[str, Any] | None]) -> None:
        """Restore :meth:`state_dict`."""
        self.slots = [None if d is None else SlotState.from_dict(d) for d in data]


def batch_state(model: GenVIS, carried: list[SlotState | None], layers: int,
                n_dec: int) -> tuple[VideoState, list[list[dict[int, int]]]]:
    """The model state and assignments of a batch of slots, sequence e = layer * B + slot.

    Fresh slots start from the initial queries (with gradient) and an empty memory; carried
    slots from their detached output and prototypes. Memory entries are right-aligned
    (a slot with fewer past clips is padded at the front, padding masked out).

    Args:
        carried: per slot, a :class:`SlotState` or None. layers: L. n_dec: D' (decoder
            layers with an assignment).

    Returns:
        (:class:`VideoState` for L x B sequences, assignments [D'][L x B]).
    """
    b = len(carried)
    fresh = model.initial_state(layers).output                  # [L, N_q, C]
    outs = [fresh if s is None else s.output.to(fresh) for s in carried]   # fresh's dtype and device
    output = torch.stack(outs, dim=1).reshape(layers * b, *fresh.shape[1:])
    assignments = [[{} for _ in range(layers * b)] for _ in range(n_dec)]
    for j, s in enumerate(carried):
        if s is None:
            continue
        for d in range(n_dec):
            for layer in range(layers):
                assignments[d][layer * b + j] = dict(s.assignments[d][layer])
    m = max((len(s.prototypes) for s in carried if s is not None), default=0)
    if model.memory is None or m == 0:
        return VideoState(output, MemoryState()), assignments
    zeros = torch.zeros_like(fresh).detach()
    protos, valid = [], []
    for k in range(m):
        per_slot, ok = [], []
        for s in carried:
            have = 0 if s is None else len(s.prototypes)
            pad = m - have
            per_slot.append(zeros if k < pad else s.prototypes[k - pad].to(fresh))
            ok.append(k >= pad)
        protos.append(torch.stack(per_slot, dim=1).reshape(layers * b, *fresh.shape[1:]))
        valid.append(torch.tensor(ok, dtype=torch.bool, device=fresh.device).repeat(layers))
    return VideoState(output, model.memory.rebuild(protos, valid)), assignments


def split_state(state: VideoState, assignments: list[list[dict[int, int]]], batch: list[Sample],
                layers: int) -> list[SlotState]:
    """Per-slot :class:`SlotState` after an iteration (tensors detached).

    Args:
        state: the model state after the iteration's last clip (L x B sequences).
        assignments: [D'][L x B] after the last clip. batch: the iteration's (video,
            consecutive frames); a slot's next window starts after the last of them.
    """
    b = len(batch)
    out = state.output.detach().reshape(layers, b, *state.output.shape[1:])
    protos = [p.detach().reshape(layers, b, *p.shape[1:]) for p in state.memory.prototypes]
    valid = state.memory.valid
    slots = []
    for j, (vid, frames) in enumerate(batch):
        kept = [p[:, j] for k, p in enumerate(protos) if valid is None or bool(valid[k][j])]
        slots.append(SlotState(vid, frames[-1] + 1, out[:, j].clone(), [p.clone() for p in kept],
                               [[dict(a[layer * b + j]) for layer in range(layers)] for a in assignments]))
    return slots
