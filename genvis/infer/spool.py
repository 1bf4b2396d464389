"""Per-prediction RLE spool: inference's masks go to disk clip by clip, not to memory.

Pass 2 of inference (:func:`genvis.infer.inference.video_masks`) encodes the k selected
queries' masks one clip at a time, but a results entry holds all frames of one query, so
the RLEs of a whole video would otherwise accumulate in memory until the results json is
written (143 MiB for 800 frames of 768x576 with noisy masks in ``bench_memory.py``).
The spool appends each RLE as one json line to an anonymous temporary file per query
(deleted when closed, also on a crash) and reads them back lazily, one at a time, when
the entry is written (:class:`genvis.data.results.ResultsWriter`).
"""

from __future__ import annotations

import json
import tempfile
from typing import IO, TYPE_CHECKING, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    from genvis.data.results import JSONText


class SegmentationSpool:
    """k append-only lists of RLE dicts (or None) kept in temporary files.

    Args:
        k: number of predictions (queries) of the video.
        dir: directory for the temporary files (default: the system's temp dir).

    Use as a context manager (or call :meth:`close`); the files vanish on close.

    Raises:
        OSError: the temporary directory is not writable or the disk is full.
    """

    def __init__(self, k: int, dir: str | None = None):
        self._files: list[IO[str]] = []
        self._lengths = [0] * int(k)
        try:
            for _ in range(int(k)):
                self._files.append(tempfile.TemporaryFile("w+", encoding="utf-8", dir=dir))
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self._lengths)

    def extend(self, j: int, segmentations: Iterable[dict | None]) -> None:
        """Append RLEs (one per frame, in frame order) to prediction ``j``."""
        f = self._files[j]
        f.seek(0, 2)
        for seg in segmentations:
            f.write(json.dumps(seg) + "\n")
            self._lengths[j] += 1

    def extend_json(self, j: int, texts: Sequence[str]) -> None:
        """Append already-serialised RLEs (json text, one per frame, in frame order; e.g.
        :func:`genvis.data.masks.encode_masks_json`) to prediction ``j``."""
        if texts:
            f = self._files[j]
            f.seek(0, 2)
            f.write("\n".join(texts) + "\n")
            self._lengths[j] += len(texts)

    def length(self, j: int) -> int:
        """Number of frames appended to prediction ``j``."""
        return self._lengths[j]

    def read(self, j: int) -> Iterator[dict | None]:
        """Prediction ``j``'s RLEs in frame order, parsed one line at a time."""
        f = self._files[j]
        f.flush()
        f.seek(0)
        for line in f:
            yield json.loads(line)

    def read_json(self, j: int) -> Iterator[JSONText]:
        """Prediction ``j``'s RLEs in frame order as their json text, not parsed
        (:class:`genvis.data.results.JSONText`: a results writer copies it verbatim)."""
        from genvis.data.results import JSONText

        f = self._files[j]
        f.flush()
        f.seek(0)
        for line in f:
            yield JSONText(line[:-1])

    def lists(self) -> list[list[dict | None]]:
        """All predictions' RLEs in memory (for tests and small videos)."""
        return [list(self.read(j)) for j in range(len(self))]

    def close(self) -> None:
        """Delete the temporary files (idempotent)."""
        for f in self._files:
            f.close()
        self._files = []

    def __enter__(self) -> "SegmentationSpool":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
