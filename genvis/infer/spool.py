"""Per-prediction RLE spool: inference's masks go to disk clip by clip, not to memory.

Pass 2 of inference (:func:`genvis.infer.inference.video_masks`) encodes the k selected
queries' masks one clip at a time, but a results entry holds all frames of one query, so
the RLEs of a whole video would otherwise accumulate in memory until the results json is
written (143 MiB for 800 frames of 768x576 with noisy masks in ``bench_memory.py``).
The spool keeps each RLE as one json line, per query up to :data:`MEMORY_CHARS` characters
in memory (a short video never touches the disk: no file per query and video to create)
and the rest in an anonymous temporary file per query (deleted when closed, also on a
crash), and reads them back lazily, one at a time, when the entry is written
(:class:`genvis.data.results.ResultsWriter`).
"""

from __future__ import annotations

import json
import tempfile
from typing import IO, TYPE_CHECKING, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    from genvis.data.results import JSONText


#: json characters a prediction keeps in memory before they go to its temporary file
#: (at most k x this per video: 5 MiB for k = 20)
MEMORY_CHARS = 1 << 18


class SegmentationSpool:
    """k append-only lists of RLE dicts (or None): in memory up to :data:`MEMORY_CHARS`
    characters per list, beyond that in temporary files.

    Args:
        k: number of predictions (queries) of the video.
        dir: directory for the temporary files (default: the system's temp dir).

    Use as a context manager (or call :meth:`close`); the files vanish on close.

    Raises:
        OSError: the temporary directory is not writable or the disk is full.
    """

    def __init__(self, k: int, dir: str | None = None):
        self._dir = dir
        self._files: list[IO[bytes] | None] = [None] * int(k)
        self._pending: list[list[str]] = [[] for _ in range(int(k))]
        self._chars = [0] * int(k)
        self._lengths = [0] * int(k)

    def __len__(self) -> int:
        return len(self._lengths)

    def extend(self, j: int, segmentations: Iterable[dict | None]) -> None:
        """Append RLEs (one per frame, in frame order) to prediction ``j``."""
        self.extend_json(j, [json.dumps(seg) for seg in segmentations])

    def extend_json(self, j: int, texts: Sequence[str]) -> None:
        """Append already-serialised RLEs (json text, one per frame, in frame order; e.g.
        :func:`genvis.data.masks.encode_masks_json`) to prediction ``j``."""
        pending = self._pending[j]
        pending.extend(texts)
        self._lengths[j] += len(texts)
        self._chars[j] += sum(map(len, texts))
        if self._chars[j] > MEMORY_CHARS:
            self._spill(j)

    def _spill(self, j: int) -> None:
        f = self._files[j]
        if f is None:
            f = self._files[j] = tempfile.TemporaryFile("w+b", dir=self._dir)
        f.seek(0, 2)
        f.write(("\n".join(self._pending[j]) + "\n").encode("utf-8"))
        self._pending[j] = []
        self._chars[j] = 0

    def length(self, j: int) -> int:
        """Number of frames appended to prediction ``j``."""
        return self._lengths[j]

    def _lines(self, j: int) -> Iterator[str]:
        f, pending = self._files[j], self._pending[j]
        if f is not None:
            f.flush()
            f.seek(0)
            for line in f:
                yield line[:-1].decode("utf-8")
        yield from list(pending)

    def read(self, j: int) -> Iterator[dict | None]:
        """Prediction ``j``'s RLEs in frame order, parsed one line at a time."""
        for line in self._lines(j):
            yield json.loads(line)

    def read_json(self, j: int) -> Iterator[JSONText]:
        """Prediction ``j``'s RLEs in frame order as their json text, not parsed
        (:class:`genvis.data.results.JSONText`: a results writer copies it verbatim)."""
        from genvis.data.results import JSONText

        for line in self._lines(j):
            yield JSONText(line)

    def lists(self) -> list[list[dict | None]]:
        """All predictions' RLEs in memory (for tests and small videos)."""
        return [list(self.read(j)) for j in range(len(self))]

    def close(self) -> None:
        """Delete the temporary files and drop the lists (idempotent)."""
        for f in self._files:
            if f is not None:
                f.close()
        self._files, self._pending, self._chars = [], [], []

    def __enter__(self) -> "SegmentationSpool":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
