"""Tie a genvis process's life to its parent's (no orphans after a hard kill of a workflow).

When Snakemake (or any launcher) is killed with ``kill -9``, it cannot stop its jobs, and a
``genvis`` job would keep running as an orphan, writing into outputs that the next
workflow run is about to redo. :func:`die_with_parent` asks the Linux kernel to send the
process ``SIGHUP`` as soon as its parent exits (``prctl(PR_SET_PDEATHSIG)``). The default
action of SIGHUP ends the process at once, which every genvis output survives: writes are
atomic and resumable (the same guarantee as after ``kill -9``).

The workflow's rules start genvis with ``exec`` so that genvis, not an intermediate shell,
is Snakemake's child. ``nohup genvis ...`` still outlives its shell: nohup ignores SIGHUP,
and then nothing is set up.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> bool:
    """Ask the kernel to send this process SIGHUP when its parent process exits (Linux).

    Returns:
        True when armed; False on other systems, when SIGHUP is ignored (``nohup``), or when
        ``prctl`` fails. If the parent already died during the call, SIGHUP is raised now.
    """
    if not sys.platform.startswith("linux") or signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        return False
    import ctypes

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGHUP), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    if armed and os.getppid() != parent:  # the parent exited before the kernel was asked
        os.kill(os.getpid(), signal.SIGHUP)
    return armed
