"""Atomic file output and content hashing, shared by every stage.

Nothing genvis writes is ever left half-written: files are written to a temporary
sibling and renamed into place only when complete (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: permissions of a newly created file / directory under this process's umask (read once,
#: at import: reading the umask means setting it, which is not thread-safe)
_UMASK = _umask()
_FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The parent directory is created. On any exception the temporary file is removed and
    ``path`` is left untouched (absent, or its previous content). The file gets the
    permissions of any new file under the process's umask (e.g. rw-r--r--), not the
    owner-only mode of the temporary file.

    Raises:
        OSError: the directory cannot be created or written (e.g. read-only or full disk).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    """Serialise ``obj`` as JSON to ``path`` atomically. NaN/Infinity are refused (ValueError)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False))


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file's bytes, read in chunks of ``chunk_bytes``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()


def run_origin(dataset: Any, cache: Any = None, **init: str | os.PathLike | None) -> dict[str, Any]:
    """What a training run starts from besides its experiment: the initialisation files
    (``init``, e.g. ``heads=DET.pt``; None: not used), the SHA-256 of the annotation file (``dataset.path``;
    None for data held in memory) and the clip source's provenance (the cache's detector
    fingerprint, sizes and layout; None without one). Saved in the resumable training states of
    ``genvis train`` and ``train-detector``; their ``--resume-interrupted`` continues only a
    state of an equal origin (:func:`genvis.train.loop.load_resume`)."""
    path = getattr(dataset, "path", None)
    digest = sha256_file(path) if path is not None and Path(path).is_file() else None
    provenance = getattr(cache, "provenance", None)
    return {"init": {k: None if v is None else str(v) for k, v in sorted(init.items())},
            "annotations_sha256": digest, "provenance": None if provenance is None else dict(provenance)}


def csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """CSV text of ``rows`` with a header of ``columns`` (floats as ``%.6g``, missing
    values empty, ``\n`` line ends): the loss logs (``losses.csv``) of the training loops."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: (f"{row[c]:.6g}" if isinstance(row.get(c), float) else row.get(c, "")) for c in columns})
    return buf.getvalue()
