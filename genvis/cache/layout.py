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

Every array holds one frame per chunk, compressed with Blosc (zstd, byte shuffle), so a
clip ``[start, stop)`` reads exactly ``stop - start`` chunks per array.

Provenance is a flat dict of JSON scalars recorded in the root attrs. Two provenances match
when every key except :data:`INFORMATIONAL_KEYS` is equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from genvis import __version__

LAYOUT_VERSION = 1
VIDEOS_GROUP = "videos"
PARTIAL_DIR = ".partial"
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

#: Blosc compression level used for every array (zstd, byte shuffle on 2-byte elements).
CLEVEL = 3


def video_key(video_id: int) -> str:
    """Name of a video's group under ``videos/``: the decimal video id (``7`` -> ``"7"``)."""
    return str(int(video_id))


def compressors() -> tuple[Any, ...]:
    """Zarr 3 codecs compressing one chunk (one frame of one float16 array): Blosc zstd at
    :data:`CLEVEL` with byte shuffle (typesize 2 for float16)."""
    from zarr.codecs import BloscCodec

    return (BloscCodec(cname="zstd", clevel=CLEVEL, shuffle="shuffle", typesize=2),)


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


def provenance_differences(stored: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Keys on which two provenances differ, ignoring :data:`INFORMATIONAL_KEYS`.

    Only keys present in ``expected`` are compared, and a key of ``expected`` missing from
    ``stored`` counts as a difference. Returns a sorted list of human-readable items
    ``"key: stored=... expected=..."`` (empty when they match).
    """
    diffs = []
    for key in sorted(expected):
        if key in INFORMATIONAL_KEYS:
            continue
        if key not in stored:
            diffs.append(f"{key}: stored=<missing> expected={expected[key]!r}")
        elif stored[key] != expected[key]:
            diffs.append(f"{key}: stored={stored[key]!r} expected={expected[key]!r}")
    return diffs
