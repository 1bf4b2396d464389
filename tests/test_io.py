"""Atomic output: whole or nothing, and readable like any other new file."""

import os
import stat

import pytest

from genvis.utils.io import atomic_path, atomic_write_text


def test_atomic_files_get_the_umask_permissions_not_owner_only(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    out = tmp_path / "sub" / "atomic.txt"
    atomic_write_text(out, "hello")
    assert out.read_text() == "hello"
    # what any new file gets under this umask (rw-r--r-- under the usual 022), not the
    # temporary file's owner-only rw-------
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def test_failed_block_leaves_nothing_and_keeps_the_previous_content(tmp_path):
    out = tmp_path / "a.json"
    out.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
