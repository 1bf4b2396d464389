"""Frame chunks of a cache array written straight to their files, bytes as Zarr writes them.

Every cached array holds one frame per chunk (``chunks=(1, *frame_shape)``). Writing them with
``array[start:stop] = data`` goes through Zarr 3's asynchronous codec pipeline: per chunk a
hop to Zarr's event-loop thread, one to a pool thread for the Blosc codec and one for the
file write. For the small chunks of stage one that plumbing cost more CPU than the
compression itself: 2.5-3.0 CPU ms per frame (4 arrays) against 0.7 ms for the same bytes
encoded and written here in the calling thread (``/tmp``, 480 frames of the tiny detector's
shapes; see docs/scaleout.md). With two dask workers on two cores every CPU millisecond
outside the detector is taken from the other worker.

:class:`FrameChunkWriter` encodes a frame with the array's own codec chain, read from the
array's metadata (Zarr v3 spec: ``bytes`` little-endian, then ``blosc``, then optionally
``crc32c``, the checksum appended little-endian), and writes it to the chunk key the array's
chunk key encoding names. Chunks equal to the fill value bit for bit are not written, as
Zarr does with ``write_empty_chunks=False``. The files are byte-identical to Zarr's
(tests/test_cache_chunks.py), and Zarr reads them as its own. Arrays with another codec
chain are refused (:meth:`FrameChunkWriter.supports`), and the caller writes through Zarr.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np


class FrameChunkWriter:
    """Writes frames ``[start, start + n)`` of one Zarr 3 array with one frame per chunk.

    Args:
        array: a ``zarr.Array`` on a local directory store, chunked ``(1, *frame_shape)``,
            with the codecs ``bytes`` (little-endian) + ``blosc`` (+ ``crc32c``).
        directory: the array's folder (its ``zarr.json`` lies there).

    Raises:
        ValueError: the array is chunked otherwise or has other codecs (see :meth:`supports`).
    """

    def __init__(self, array: Any, directory: str | os.PathLike):
        reason = self._unsupported(array)
        if reason:
            raise ValueError(f"FrameChunkWriter: {reason}")
        from numcodecs import Blosc

        meta = array.metadata
        self.directory = Path(directory)
        self.frame_shape = tuple(int(s) for s in array.shape[1:])
        self.dtype = np.dtype(array.dtype).newbyteorder("<")
        self._encode_key = meta.chunk_key_encoding.encode_chunk_key
        self._zeros = (0,) * len(self.frame_shape)
        blosc = meta.codecs[1]
        shuffle = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}
        options = {"cname": blosc.cname.value, "clevel": int(blosc.clevel),
                   "shuffle": shuffle[blosc.shuffle.value], "blocksize": int(blosc.blocksize)}
        if "typesize" in inspect.signature(Blosc).parameters:
            # numcodecs >= 0.16 takes the element size from the codec config, as zarr then passes
            # it; older ones see the bytes as 1-byte elements, in zarr's hands as in ours
            options["typesize"] = int(blosc.typesize)
        self._blosc = Blosc(**options)
        self._crc = len(meta.codecs) == 3
        fill = np.asarray(meta.fill_value, dtype=self.dtype)
        self._fill_bits = fill.tobytes()
        self._skip_empty = not array.async_array.config.write_empty_chunks
        self._made: set[Path] = set()

    @classmethod
    def supports(cls, array: Any) -> bool:
        """Whether ``array`` can be written by this class (else write through Zarr)."""
        return not cls._unsupported(array)

    @staticmethod
    def _unsupported(array: Any) -> str:
        from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec

        meta = getattr(array, "metadata", None)
        if getattr(meta, "zarr_format", None) != 3:
            return "not a Zarr v3 array"
        chunks = tuple(getattr(meta.chunk_grid, "chunk_shape", ()))
        if chunks != (1, *array.shape[1:]):
            return f"chunks {chunks} are not one frame {(1, *array.shape[1:])}"
        codecs = tuple(meta.codecs)
        if not (2 <= len(codecs) <= 3 and isinstance(codecs[0], BytesCodec) and isinstance(codecs[1], BloscCodec)
                and (len(codecs) == 2 or isinstance(codecs[2], Crc32cCodec))):
            return f"codecs {[type(c).__name__ for c in codecs]} are not bytes + blosc (+ crc32c)"
        if codecs[0].endian is not None and codecs[0].endian.value != "little":
            return "big-endian bytes codec"
        if np.dtype(array.dtype).kind not in "fiu":
            return f"dtype {array.dtype} is not numeric"
        return ""

    def encode(self, frame: np.ndarray) -> bytes | None:
        """The chunk file's bytes of one frame (``frame_shape``, the array's dtype), or None
        when the frame equals the fill value bit for bit (no file is written)."""
        data = np.ascontiguousarray(frame, dtype=self.dtype)
        raw = data.tobytes()
        if self._skip_empty and raw == self._fill_bits * data.size:
            return None
        body = self._blosc.encode(raw)
        if self._crc:
            import google_crc32c

            body = bytes(body) + int(google_crc32c.value(body)).to_bytes(4, "little")
        return bytes(body)

    def _make_parents(self, folder: Path) -> None:
        """Create ``folder`` and its missing parents below the array's folder: one ``mkdir``
        per new folder (a frame's chunk key ``c/<t>/0/0`` makes a few), none for known ones."""
        missing = []
        while folder not in self._made and folder != self.directory:
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                pass
            self._made.add(folder)

    def write(self, start: int, frames: np.ndarray) -> None:
        """Write ``frames`` ``[n, *frame_shape]`` as chunks ``start .. start + n - 1``.

        Raises:
            ValueError: wrong frame shape. OSError: the disk write failed.
        """
        frames = np.asarray(frames)
        if tuple(frames.shape[1:]) != self.frame_shape:
            raise ValueError(f"frames of shape {frames.shape[1:]}, expected {self.frame_shape}")
        for i in range(frames.shape[0]):
            body = self.encode(frames[i])
            path = self.directory / self._encode_key((start + i, *self._zeros))
            if body is None:   # as Zarr: an empty chunk has no file (one written before goes)
                path.unlink(missing_ok=True)
                continue
            self._make_parents(path.parent)
            with open(path, "wb") as f:
                f.write(body)
