"""Shared machinery of the fuzz targets (tests/test_fuzz.py) and their regression set
(tests/fuzz_regressions/, replayed by tests/test_fuzz_regressions.py).

How long the fuzzers run is set from the environment, so the same targets serve as a quick
check in every test run and as a long fuzzing campaign (docs/hardening.md):

    CHUNKVIEW_FUZZ_EXAMPLES   hypothesis examples per target (default 40)
    CHUNKVIEW_FUZZ_SEED       fixed seed (default: derandomized, the same inputs every run;
                              "random" for fresh inputs each run)
    CHUNKVIEW_FUZZ_TIMEOUT    seconds one example may take before the process is killed as a
                              hang, with every thread's traceback (default 300)

A mutation is a list of operations on a byte string, each a list that JSON can hold:

    ["flip", pos, bit]         xor one bit
    ["set", pos, "hex"]        overwrite bytes (clipped at the end)
    ["insert", pos, "hex"]     insert bytes
    ["delete", pos, n]         remove n bytes
    ["splice", src, dst, n]    copy n bytes from src over dst (clipped)
    ["truncate", n]            keep the first n bytes

Positions are taken modulo the current length, so a recipe applies to any input.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("CHUNKVIEW_FUZZ_EXAMPLES", "40"))
TIMEOUT = float(os.environ.get("CHUNKVIEW_FUZZ_TIMEOUT", "300"))
_SEED = os.environ.get("CHUNKVIEW_FUZZ_SEED", "")
REGRESSIONS = Path(__file__).parent / "fuzz_regressions"


def fuzz_settings(scale: float = 1.0):
    """hypothesis settings of a fuzz target: EXAMPLES * scale examples, no deadline (the
    sanitizer build is 5-20x slower), no example database (runs are reproducible from the
    seed alone)."""
    kw = dict(max_examples=max(1, int(EXAMPLES * scale)), deadline=None, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    if _SEED == "":
        kw["derandomize"] = True
    return settings(**kw)


def fuzz_seed(fn):
    """Apply CHUNKVIEW_FUZZ_SEED (an integer) to a @given test."""
    from hypothesis import seed

    if _SEED and _SEED != "random":
        return seed(int(_SEED))(fn)
    return fn


CURRENT = Path(os.environ.get("CHUNKVIEW_FUZZ_LOG") or tempfile.gettempdir()) / \
    f"chunkview-fuzz-input-{os.getpid()}.json"
_announced = False
_stderr = None  # a file on the real stderr (pytest captures fd 2 while a test runs)


def set_stderr_fd(fd: int) -> None:
    global _stderr
    _stderr = os.fdopen(os.dup(fd), "w")


@contextlib.contextmanager
def watchdog(seconds: float = TIMEOUT, what=None):
    """Kill the process (printing every thread's stack on the real stderr) if the block runs
    longer than ``seconds``: a hang in C code holding the GIL cannot be interrupted from
    Python, so this is the only reliable way to turn one into a failure.  ``what`` (JSON: the
    target and its input) is written to CURRENT first, so a hang can be replayed."""
    if what is not None:
        CURRENT.write_text(json.dumps(what))
    global _announced
    out = _stderr or sys.stderr
    if what is not None and not _announced:
        _announced = True
        print(f"\n[fuzz] each input is written to {CURRENT} before it runs: after a hang "
              "(a stack dump and exit 1) it holds the input that hung", file=out, flush=True)
    faulthandler.dump_traceback_later(seconds, exit=True, file=out)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# ------------------------------------------------------------------ mutations


def apply_ops(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op in ops:
        kind = op[0]
        if kind == "truncate":
            del b[int(op[1]):]
            continue
        if not b and kind != "insert":
            continue
        n = max(len(b), 1)
        if kind == "flip":
            b[op[1] % n] ^= 1 << (op[2] & 7)
        elif kind == "set":
            p, v = op[1] % n, bytes.fromhex(op[2])
            v = v[: len(b) - p]
            b[p:p + len(v)] = v
        elif kind == "insert":
            p = op[1] % (len(b) + 1)
            b[p:p] = bytes.fromhex(op[2])
        elif kind == "delete":
            p = op[1] % n
            del b[p:p + int(op[2])]
        elif kind == "splice":
            s, d, k = op[1] % n, op[2] % n, int(op[3])
            chunk = bytes(b[s:s + k])
            chunk = chunk[: len(b) - d]
            b[d:d + len(chunk)] = chunk
        else:
            raise ValueError(f"unknown mutation {kind!r}")
    return bytes(b)


_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x01", b"\x00\x00\x00\x00",
                b"\xff\xff\xff\xff", b"\xff\xff\xff\xff\xff\xff\xff\xff",
                b"\x00\x00\x00\x80", b"\x00\x00\x00\x00\x00\x00\x00\x80",
                b"\xff\xff\xff\x7f", b"\x10\x00", b"\x00\x10", b"\x02", b"\x03", b"\x08"]


def positions(size: int, hot=()):
    """Positions in [0, size): uniform, or near one of the ``hot`` offsets (structures)."""
    uniform = st.integers(0, max(size - 1, 0))
    if not hot:
        return uniform
    near = st.tuples(st.sampled_from(sorted(hot)), st.integers(-8, 160)).map(
        lambda t: min(max(t[0] + t[1], 0), max(size - 1, 0)))
    return st.one_of(near, near, uniform)


def mutation_ops(size: int, hot=(), max_ops: int = 4, truncate: bool = True):
    """A strategy of mutation lists for an input of ``size`` bytes."""
    pos = positions(size, hot)
    value = st.one_of(st.sampled_from(_INTERESTING).map(bytes.hex),
                      st.binary(min_size=1, max_size=8).map(bytes.hex))
    op = st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("set"), pos, value),
        st.tuples(st.just("set"), pos, value),
        st.tuples(st.just("insert"), pos, value),
        st.tuples(st.just("delete"), pos, st.integers(1, 16)),
        st.tuples(st.just("splice"), pos, pos, st.integers(1, 64)),
    ).map(list)
    ops = st.one_of(op.map(lambda o: [o]), st.lists(op, min_size=1, max_size=max_ops))
    if truncate:
        cut = st.tuples(st.just("truncate"), pos).map(list)
        ops = st.one_of(ops, ops, ops, ops, ops, ops,
                        st.tuples(ops, cut).map(lambda t: t[0] + [t[1]]), cut.map(lambda c: [c]))
    return ops


class Bases(dict):
    """Base inputs by name (a dict with a short repr: hypothesis prints a failing test's
    arguments, fixtures included)."""

    def __repr__(self):
        return f"<{len(self)} fuzz bases: {', '.join(sorted(self))[:200]}>"


# ------------------------------------------------------------------ the contract


def chunkview_errors():
    from chunkview.errors import ChunkviewError

    return ChunkviewError


def clean(fn, *args, **kw):
    """Run fn: its result, or None when it raised a chunkview exception.  Any other exception
    propagates (and fails the fuzz target): the contract is that every failure on bad input is
    a :class:`chunkview.ChunkviewError`."""
    try:
        return fn(*args, **kw)
    except chunkview_errors():
        return None


# ------------------------------------------------------------------ reference readers


_ORACLE = r"""
import os, pickle, struct, sys
import numpy as np
out = sys.stdout.buffer
def reply(obj):
    b = pickle.dumps(obj, protocol=5)
    out.write(struct.pack("<Q", len(b)) + b)
    out.flush()
def h5(path, names, limit):
    import h5py
    res = {}
    here = os.getcwd()
    os.chdir(os.path.dirname(path))
    try:
        with h5py.File(path, "r") as f:
            for n in names:
                try:
                    d = f[n]
                    if d.size * d.dtype.itemsize > limit:
                        continue
                    res[n] = d[()]
                except Exception as e:
                    res[n] = e.__class__.__name__
    finally:
        os.chdir(here)
    return res
def nc(path, names, limit):
    import netCDF4
    res = {}
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_maskandscale(False)
        ds.set_auto_chartostring(False)
        for n in names:
            try:
                v = ds.variables[n]
                if v.size * v.dtype.itemsize > limit:
                    continue
                a = np.asarray(v[...])
                res[n] = a.astype("S1") if a.dtype.kind == "S" else a
            except Exception as e:
                res[n] = e.__class__.__name__
    return res
KINDS = {"h5": h5, "nc": nc}
inp = sys.stdin.buffer
while True:
    head = inp.read(8)
    if len(head) < 8:
        break
    kind, path, names, limit = pickle.loads(inp.read(struct.unpack("<Q", head)[0]))
    try:
        reply(KINDS[kind](path, names, limit))
    except Exception as e:
        reply(e.__class__.__name__)
"""


class Oracle:
    """h5py / netCDF4 reading a (possibly corrupt) file in a child process, so a crash or hang
    of the HDF5 or netCDF-C library on a fuzzed file cannot take the test run down: it only
    means there is no reference answer for that input.  The child runs without the sanitizer
    runtimes (the libraries are not ours)."""

    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        self.proc = None

    def _start(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("LD_PRELOAD", "PYTHONMALLOC", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
        self.proc = subprocess.Popen([sys.executable, "-c", _ORACLE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)

    def close(self):
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def read(self, kind: str, path, names=(), limit: int = 32 << 20, timeout=None):
        """``{name: array}`` (or ``{name: "ExceptionName"}``) of what the library reads, or
        None when the child crashed or hung."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        msg = pickle.dumps((kind, str(path), list(names), limit), protocol=5)
        result = []

        def talk():
            try:
                self.proc.stdin.write(struct.pack("<Q", len(msg)) + msg)
                self.proc.stdin.flush()
                head = self.proc.stdout.read(8)
                if len(head) == 8:
                    body = self.proc.stdout.read(struct.unpack("<Q", head)[0])
                    result.append(pickle.loads(body))
            except Exception:  # noqa: BLE001 - a dead child: no answer
                pass

        t = threading.Thread(target=talk, daemon=True)
        t.start()
        t.join(timeout or self.timeout)
        if t.is_alive() or not result:
            self.close()
            t.join(5)
            return None
        # the library raised: an answer too ({} names nothing read)
        return result[0] if isinstance(result[0], dict) else {}


_fresh = iter(range(1 << 62))


def fresh_path(folder, suffix: str) -> Path:
    """A new file name in folder for each input (the HDF5 library keeps files it has seen
    open in a cache keyed by name: a reused name could be answered from a previous input),
    removing the previous input's file."""
    folder = Path(folder)
    for old in folder.glob("fuzz-input-*"):
        with contextlib.suppress(OSError):
            old.unlink()
    return folder / f"fuzz-input-{os.getpid()}-{next(_fresh)}{suffix}"


# ------------------------------------------------------------------ regression set


def load_regressions():
    """The committed cases: ``[(name, case dict)]``."""
    return [(p.stem, json.loads(p.read_text())) for p in sorted(REGRESSIONS.glob("*.json"))]
