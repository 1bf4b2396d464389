"""Independent pieces of work split over forked processes (``genvis evaluate --workers``).

Videos are independent until the metrics are accumulated (and chunks of RLE strings until
their check is reported), so a function runs on shares of the keys in ``fork``-started
children that inherit the parsed ground truth and results (nothing is pickled on the way
in; each child sends back its share's dict).
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any, Callable, Sequence

#: fewest videos for which forking pays (a fork and the pipe cost a few ms)
MIN_VIDEOS = 32


def can_fork(n_items: int, workers: int, minimum: int = MIN_VIDEOS) -> bool:
    """True when ``workers`` > 1, there are at least ``minimum`` items (default
    :data:`MIN_VIDEOS` videos) and the platform can fork (POSIX)."""
    return workers > 1 and n_items >= minimum and "fork" in mp.get_all_start_methods()


def map_forked(fn: Callable[[Sequence[int], Any, bool], dict], vids: list[int], job: Any, workers: int,
               progress: bool) -> dict:
    """``fn(share, job, progress) -> {key: value}`` over ``workers`` processes (the keys
    ``vids``, e.g. video ids, dealt round-robin; this process takes the first share and shows
    the progress bar).

    Returns:
        the union of the shares' dicts, sorted by key.

    Raises:
        whatever ``fn`` raises in any process (a child's exception is re-raised here; one that
        cannot be pickled as a RuntimeError with its text).
    """
    ctx = mp.get_context("fork")
    shares = [vids[i::workers] for i in range(workers)]
    children = []
    for share in shares[1:]:
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(send, fn, share, job), daemon=True)
        proc.start()
        send.close()
        children.append((proc, recv))
    try:
        out = fn(shares[0], job, progress)
        for proc, recv in children:
            status, value = recv.recv()
            if status != "ok":
                raise value if isinstance(value, BaseException) else RuntimeError(str(value))
            out.update(value)
    finally:
        for proc, recv in children:
            recv.close()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    return dict(sorted(out.items()))


class ForkedCall:
    """``fn(job)`` in a forked child started at construction, while this process goes on;
    :meth:`result` waits for its value. For work that depends only on what this process has
    already built (e.g. the ground truth's checks while the results are read).

    Args:
        fn: function of one argument returning a picklable value.
        job: its argument (inherited by the fork: nothing is pickled on the way in).
    """

    def __init__(self, fn: Callable[[Any], Any], job: Any):
        ctx = mp.get_context("fork")
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_child, args=(send, _call_one, fn, job), daemon=True)
        self._proc.start()
        send.close()

    def result(self) -> Any:
        """The child's return value. Raises what ``fn`` raised (as a RuntimeError with its text
        when it cannot be pickled), or RuntimeError when the child died without an answer."""
        try:
            status, value = self._recv.recv()
        except EOFError:
            raise RuntimeError("forked worker exited without a result") from None
        finally:
            self._recv.close()
            self._proc.join(timeout=5)
            if self._proc.is_alive():
                self._proc.terminate()
        if status != "ok":
            raise value if isinstance(value, BaseException) else RuntimeError(str(value))
        return value


def _call_one(fn: Callable[[Any], Any], job: Any, _progress: bool) -> Any:
    return fn(job)


def _child(send, fn, share: list[int], job: Any) -> None:
    try:
        result = ("ok", fn(share, job, False))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        result = ("error", exc)
    try:
        send.send(result)
    except Exception as exc:  # an unpicklable error: send its text
        send.send(("error", f"{type(result[1]).__name__}: {result[1]}" if result[0] == "error" else str(exc)))
    finally:
        send.close()
