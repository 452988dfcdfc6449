"""Scanning in helper processes, so that the HDF5 library cannot take the caller down.

The HDF5 scanner asks libhdf5 (through h5py) about groups, attributes and datatypes.  On a
corrupt file libhdf5 can crash (fuzzing found a segmentation fault reading a fill value) or
loop; neither can be caught in the process it happens in.  So ``scan`` runs each file in a
helper process, kept and reused (one per concurrent scan, started on first use), and turns a
helper that dies or overruns ``timeout`` into a :class:`~chunkview.errors.ScanError`; the
helper is then replaced.  What comes back is the reference set's C index bytes.
"""

from __future__ import annotations

import os
import pickle
import queue
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

from chunkview.errors import ChunkviewError, ScanError, reason
from chunkview.scan.dispatch import scan_file
from chunkview.scan.hdf5.scanner import LIBRARY_FAILED

_lock = threading.Lock()
_idle: list = []  # helpers waiting for work


def _send(f, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(data)) + data)
    f.flush()


def _recv(f):
    head = f.read(8)
    if len(head) < 8:
        raise EOFError
    n = struct.unpack("<Q", head)[0]
    data = f.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)


def _serve() -> None:
    """The helper (``python -m chunkview.scan.isolate``): scan what arrives on stdin, answer
    ("ok", refs, unsupported) or ("err", error) on stdout."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the answer pipe
    while True:
        try:
            source, kw = _recv(inp)
        except EOFError:
            return
        try:
            refs = scan_file(source, **kw)
            reply = ("ok", refs, dict(refs.unsupported))
        except ChunkviewError as e:
            reply = ("err", e)
        except Exception as e:  # noqa: BLE001 - anything else is still a scan failure
            reply = ("err", ScanError(f"{reason(e)}", url=str(source)))
        try:
            _send(out, reply)
        except (pickle.PicklingError, TypeError, AttributeError):  # an error that won't pickle
            _send(out, ("err", ScanError(f"{type(reply[-1]).__name__}: {reply[-1]}",
                                         url=str(source))))


class _Helper:
    def __init__(self):
        # a plain interpreter, not multiprocessing: that would re-run the caller's script
        env = dict(os.environ)
        # the folder holding the chunkview package (src/ in a checkout): chunkview/scan/isolate.py
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        # under tests/sanitize.sh a sanitizer report in the helper must not pass for a libhdf5
        # crash: keep its stderr to look at when it dies
        self.log = tempfile.TemporaryFile() if os.environ.get("CHUNKVIEW_SANITIZED") else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chunkview.scan.isolate"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log or subprocess.DEVNULL, env=env)
        self.answers: queue.SimpleQueue = queue.SimpleQueue()
        self.dead = False
        threading.Thread(target=self._read, daemon=True, name="chunkview-scan-helper").start()

    def _read(self) -> None:
        while True:
            try:
                self.answers.put(_recv(self.proc.stdout))
            except Exception as e:  # noqa: BLE001 - EOF: the helper died
                self.answers.put(e)
                return

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None

    def kill(self) -> None:
        self.dead = True
        try:
            self.proc.kill()
            self.proc.wait(5)
        except Exception:  # noqa: BLE001
            pass

    def run(self, source, kw: dict, timeout: float | None):
        t0 = time.monotonic()
        try:
            _send(self.proc.stdin, (source, kw))
            answer = self.answers.get(timeout=timeout)
            # measured from the request: this thread may have waited to run after sending
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise queue.Empty
        except queue.Empty:
            self.kill()
            raise ScanError(f"the scan did not finish in {timeout:g} s (a corrupt file can make "
                            "the HDF5 library loop; pass timeout= for a longer scan)",
                            url=str(source)) from None
        except OSError:  # the helper is gone (broken pipe)
            answer = EOFError()
        if isinstance(answer, BaseException):
            try:
                code = self.proc.wait(5)
            except subprocess.TimeoutExpired:
                code = None
            self.kill()
            why = (f"signal {signal.Signals(-code).name}" if code is not None and code < 0
                   else f"exit status {code}")
            _own_bug(self.log, why)
            raise ScanError(f"the HDF5 library crashed reading this file ({why}): the file is "
                            "corrupt or not one the library can read", url=str(source))
        if answer[0] == "err":
            # libhdf5 failed on this file: its heap may be damaged, so the helper is not
            # trusted with another file (one scan then passes, the next fails, or worse)
            self.kill()
            raise answer[1]
        refs, unsupported = answer[1], answer[2]
        if any(why.startswith(LIBRARY_FAILED) for why in unsupported.values()):
            self.kill()  # libhdf5 raised inside the scan: the same caution
        refs.unsupported = unsupported
        return refs


_OURS = re.compile(r"#\d+ .*(chunkview[/\\]_\w+\.|csrc[/\\])")


def _own_bug(log, why: str) -> None:
    """A sanitizer report whose stack passes through chunkview's extensions is a bug of ours,
    not a corrupt file: raise it as such (only with ``CHUNKVIEW_SANITIZED`` set)."""
    if log is None:
        return
    with log:
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    if "Sanitizer" in text and _OURS.search(text):
        raise RuntimeError(f"sanitizer report in the scan helper ({why}):\n{text[-8000:]}")


def scan_isolated(source, kw: dict, timeout: float | None):
    """``scan_file(source, **kw)`` in a helper process (see the module's docstring)."""
    with _lock:
        helper = _idle.pop() if _idle else None
    if helper is None or not helper.alive():
        helper = _Helper()
    try:
        # a path, or a Reader (chunkview.io.blocks) that pickles: an obspec store's
        return helper.run(os.fspath(source) if isinstance(source, (str, os.PathLike)) else source,
                          kw, timeout)
    finally:
        if helper.alive():  # not killed: reuse it
            with _lock:
                _idle.append(helper)


if __name__ == "__main__":
    _serve()
