"""Layout of the stage-one feature cache (one Zarr 3 store per dataset split and detector).

The contract (docs/ARCHITECTURE.md "Stage one: cache")::

    STORE.zarr/                    root group; attrs: provenance, layout_version
      videos/                      group
        <video_id>/                group, one per video; attrs: video_id, length, file_names,
                                   original_size, resized_size, padded_size, complete=True
          frame_queries    float16 [T, L, Q_f, C]     chunk (1, L, Q_f, C)
          mask_features    float16 [T, C, h, w]       chunk (1, C, h, w)   (h, w = padded / 4)
          class_logits     float16 [T, Q_f, K+1]      chunk (1, Q_f, K+1)
          mask_embeddings  float16 [T, Q_f, C]        chunk (1, Q_f, C)
      .partial/                    plain directory (not part of the Zarr hierarchy): videos
                                   being written, renamed into ``videos/`` when complete
      .locks/                      plain directory: ``<video_id>.lock``, empty files a writer
                                   holds an OS lock (flock) on while it writes that video

Every array holds one frame per chunk, compressed with Blosc (zstd, byte shuffle), so a
clip ``[start, stop)`` reads exactly ``stop - start`` chunks per array.

Format versions (``layout_version`` in the root attrs and the provenance):

* 1: as above, no checksums.
* 2 (current): every chunk also carries a CRC-32C checksum (Zarr's ``crc32c`` codec after
  Blosc), so a damaged chunk is refused on read instead of decoding to wrong numbers.

Stores of every version in :data:`READABLE_LAYOUT_VERSIONS` are read; an extraction that
resumes an older store keeps writing in that store's version.

Provenance is a flat dict of JSON scalars recorded in the root attrs. Two provenances match
when every key except :data:`INFORMATIONAL_KEYS` is equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from genvis import __version__

#: Format version of new stores (see the module docstring).
LAYOUT_VERSION = 2
#: Format versions this code reads (and resumes writing in).
READABLE_LAYOUT_VERSIONS: frozenset[int] = frozenset({1, 2})
VIDEOS_GROUP = "videos"
PARTIAL_DIR = ".partial"
LOCKS_DIR = ".locks"
COMPLETE_ATTR = "complete"
CACHE_DTYPE = np.dtype("float16")

#: The cached arrays, in the order they are documented; ``frame_queries`` and
#: ``mask_features`` are what stage two reads.
FIELDS: tuple[str, ...] = ("frame_queries", "mask_features", "class_logits", "mask_embeddings")

#: Number of dimensions of each cached array (frame axis first).
FIELD_NDIM: dict[str, int] = {
    "frame_queries": 4,
    "mask_features": 4,
    "class_logits": 3,
    "mask_embeddings": 3,
}

#: Provenance keys recorded for information only; they do not make two stores differ.
INFORMATIONAL_KEYS: frozenset[str] = frozenset({"genvis_version"})

#: Provenance keys that describe how a cache is stored rather than what it holds: a model
#: trained on a cache may run on another cache that differs only in these.
STORAGE_KEYS: frozenset[str] = frozenset({"layout_version"})

#: Blosc compression level used for every array (zstd, byte shuffle on 2-byte elements).
CLEVEL = 3


def video_key(video_id: int) -> str:
    """Name of a video's group under ``videos/``: the decimal video id (``7`` -> ``"7"``)."""
    return str(int(video_id))


def compressors(layout_version: int = LAYOUT_VERSION) -> tuple[Any, ...]:
    """Zarr 3 bytes-to-bytes codecs of one chunk (one frame of one float16 array) in the given
    format version.

    Blosc zstd at :data:`CLEVEL` with byte shuffle (typesize 2 for float16); from version 2
    on followed by a CRC-32C checksum of the compressed bytes (checked by Zarr on every read).

    Raises:
        ValueError: a version outside :data:`READABLE_LAYOUT_VERSIONS`.
    """
    from zarr.codecs import BloscCodec, Crc32cCodec

    if layout_version not in READABLE_LAYOUT_VERSIONS:
        raise ValueError(f"unknown cache layout version {layout_version!r}")
    blosc = BloscCodec(cname="zstd", clevel=CLEVEL, shuffle="shuffle", typesize=2)
    return (blosc,) if layout_version < 2 else (blosc, Crc32cCodec())


@dataclass(frozen=True)
class FrameShapes:
    """Per-frame shapes of the cached arrays (the frame axis T is not included).

    Attributes:
        num_layers: L, decoder layers whose frame queries are kept.
        num_queries: Q_f, detector (frame) queries.
        hidden_dim: C, detector hidden size (also the mask-feature channels).
        num_classes: K, object classes; class logits have K + 1 entries (last = no-object).
        feature_size: (h, w) of the mask features, the padded input size divided by 4.
    """

    num_layers: int
    num_queries: int
    hidden_dim: int
    num_classes: int
    feature_size: tuple[int, int]

    def shape(self, field: str) -> tuple[int, ...]:
        """Per-frame shape of ``field`` (one of :data:`FIELDS`); stored as :data:`CACHE_DTYPE` (float16).

        Returns:
            ``frame_queries`` (L, Q_f, C), ``mask_features`` (C, h, w), ``class_logits``
            (Q_f, K+1), ``mask_embeddings`` (Q_f, C).

        Raises:
            KeyError: an unknown field.
        """
        h, w = self.feature_size
        return {
            "frame_queries": (self.num_layers, self.num_queries, self.hidden_dim),
            "mask_features": (self.hidden_dim, h, w),
            "class_logits": (self.num_queries, self.num_classes + 1),
            "mask_embeddings": (self.num_queries, self.hidden_dim),
        }[field]


def make_provenance(
    detector_fingerprint: str,
    detector_name: str,
    min_size: int,
    max_size: int,
    keep_layers: int,
    **extra: Any,
) -> dict[str, Any]:
    """Build the provenance dict stored in the root attrs of a cache.

    Args:
        detector_fingerprint: hash of the detector weights and config
            (``FrameDetector.fingerprint()``).
        detector_name: human-readable detector name (e.g. the config's ``name``).
        min_size, max_size: input resolution (shortest side, longest-side cap) in pixels.
        keep_layers: L, decoder layers of frame queries kept.
        **extra: further JSON scalars that must match (e.g. ``num_queries``).

    Returns:
        dict of JSON scalars, including ``genvis_version`` and ``layout_version``.
    """
    prov = {
        "detector_fingerprint": str(detector_fingerprint),
        "detector_name": str(detector_name),
        "min_size": int(min_size),
        "max_size": int(max_size),
        "keep_layers": int(keep_layers),
        "layout_version": LAYOUT_VERSION,
        "genvis_version": __version__,
    }
    prov.update(extra)
    return prov


def provenance_differences(stored: Mapping[str, Any], expected: Mapping[str, Any],
                           ignore: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Keys on which two provenances differ, ignoring :data:`INFORMATIONAL_KEYS` and ``ignore``.

    Only keys present in ``expected`` are compared, and a key of ``expected`` missing from
    ``stored`` counts as a difference.

    Args:
        stored, expected: provenance dicts of JSON scalars (:func:`make_provenance`).
        ignore: further keys not compared (e.g. :data:`STORAGE_KEYS`).

    Returns:
        sorted list of human-readable items ``"key: stored=... expected=..."`` (empty when
        they match).
    """
    diffs = []
    for key in sorted(expected):
        if key in INFORMATIONAL_KEYS or key in ignore:
            continue
        if key not in stored:
            diffs.append(f"{key}: stored=<missing> expected={expected[key]!r}")
        elif stored[key] != expected[key]:
            diffs.append(f"{key}: stored={stored[key]!r} expected={expected[key]!r}")
    return diffs


def features_differences(recorded: Mapping[str, Any] | None, actual: Mapping[str, Any]) -> list[str] | None:
    """How a model's recorded cache provenance differs from the provenance of its input now.

    Compares the keys that decide the features' content (detector fingerprint and name,
    resolution, kept layers, sizes); :data:`INFORMATIONAL_KEYS` and :data:`STORAGE_KEYS`
    (e.g. a cache re-extracted with checksums) are ignored.

    Args:
        recorded: the ``provenance`` a ``MODEL.pt`` recorded when it was trained.
        actual: the provenance of the cache (``CacheReader.provenance``) or of the detector
            in the loop (``DetectorClipSource.provenance``).

    Returns:
        ``None`` when ``recorded`` does not identify a detector (no ``detector_fingerprint``:
        official weights, or a model trained from in-memory clips), so nothing can be
        compared; else a sorted list of ``"key: model=... now=..."`` items (empty when they
        match).
    """
    if not recorded or "detector_fingerprint" not in recorded:
        return None
    diffs = []
    for key in sorted(recorded):
        if key in INFORMATIONAL_KEYS or key in STORAGE_KEYS:
            continue
        now = actual.get(key, "<missing>")
        if now != recorded[key]:
            diffs.append(f"{key}: model={recorded[key]!r} now={now!r}")
    return diffs
