"""The decode threads: one shared pool that every GIL-free batch (decode, lookup) runs on.

The compiled modules hand :func:`run` a callable that releases the GIL and claims work from a
shared counter until none is left; ``run`` calls it in ``threads`` threads, this one included
(so a busy pool only slows a batch down, never stalls it).  The pool grows on demand and is
never shrunk.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None
_size = 0
_lock = threading.Lock()


def executor(threads: int) -> ThreadPoolExecutor:
    """The shared pool, with at least ``threads`` workers."""
    global _pool, _size
    with _lock:
        if _pool is None or _size < threads:
            old = _pool
            _size = max(threads, os.cpu_count() or 1)
            _pool = ThreadPoolExecutor(max_workers=_size, thread_name_prefix="chunkview-decode")
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def run(work, threads: int, *, cancel_unstarted: bool = False) -> None:
    """``work()`` in ``threads`` threads at once (this one and ``threads - 1`` of the pool),
    returning when all are done; the first exception is raised.  ``cancel_unstarted``: calls
    the pool has not started yet are dropped (``work`` claims what is left from a shared
    counter, so the calling thread finishes it)."""
    if threads <= 1:
        work()
        return
    pool = executor(threads - 1)
    futures = [pool.submit(work) for _ in range(threads - 1)]
    try:
        work()
    except BaseException:
        for f in futures:  # the workers share the batch: let them finish before unwinding
            if not f.cancel():
                f.exception()
        raise
    for f in futures:
        if not (cancel_unstarted and f.cancel()):
            f.result()


__all__ = ["executor", "run"]
