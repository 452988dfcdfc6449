"""No leaks: the C core's memory is visible to tracemalloc (its own domain) and returns to zero
when the objects holding it go; opening and reading a 1M-reference set 100 times keeps both the
traced memory and the process's resident size flat.

The reference set is made in memory through chunkview's own API (the C index formats the
million keys: a second or two), with raw 8-byte chunks in one local file, so every cycle does
what a user does: open the references (the native format, memory-mapped), look up chunks in
batches, fetch their bytes and decode them into an array, and close.
"""

from __future__ import annotations

import gc
import json
import os
import tracemalloc

import numpy as np
import pytest

import chunkview
from chunkview import _index
from chunkview.refs.memory import References

N_REFS = 1_000_000
CHUNK = 2  # int32 elements per chunk: 8 bytes
DOMAIN = _index.TRACEMALLOC_DOMAIN
SANITIZED = os.environ.get("CHUNKVIEW_SANITIZED") == "1"


def domain_bytes() -> int:
    """Bytes the C core holds now, as tracemalloc sees them."""
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.DomainFilter(True, DOMAIN)])
    return sum(t.size for t in snap.traces)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def traced():
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def million_refs(data_url: str) -> References:
    """N_REFS chunk references ``v/0`` .. ``v/999999`` to consecutive 8-byte ranges of one
    file, plus the array's metadata: built by the C index (keys formatted in C)."""
    idx = _index.ChunkIndex()
    idx.set_inline(".zgroup", json.dumps({"zarr_format": 2}).encode())
    idx.set_inline("v/.zarray", json.dumps({
        "zarr_format": 2, "shape": [N_REFS * CHUNK], "chunks": [CHUNK], "dtype": "<i4",
        "order": "C", "compressor": None, "filters": None, "fill_value": 0}).encode())
    n = N_REFS
    idx.add_grid("v/", np.arange(n, dtype=np.int64).reshape(n, 1), np.zeros(n, np.int64),
                 np.arange(n, dtype=np.uint64) * 8, np.full(n, 8, np.uint64), [data_url])
    return References(idx)


@pytest.fixture(scope="module")
def million(tmp_path_factory):
    """(native reference file, expected values) of the million-chunk array."""
    d = tmp_path_factory.mktemp("leaks")
    data = d / "data.bin"
    values = np.arange(N_REFS * CHUNK, dtype="<i4") * 3
    values.tofile(data)
    refs = million_refs(data.as_uri())
    native = d / "million.cvref"
    refs.save(str(native))
    return native, values


def test_c_memory_is_traced_and_freed(traced):
    """The index's C memory shows up in chunkview's tracemalloc domain, byte for byte what the
    index reports, and is all given back when the index is freed."""
    gc.collect()
    base = domain_bytes()
    refs = million_refs("file:///nonexistent")
    held = domain_bytes() - base
    assert len(refs) == N_REFS + 2
    assert held == refs.index.nbytes > 10 * N_REFS  # every block of the C index is traced
    data = refs.index.tobytes()
    del refs
    gc.collect()
    assert domain_bytes() == base
    # an index opened from bytes (copied) and the JSON parser's tables: the same
    idx = _index.ChunkIndex.frombytes(data, copy=True)
    assert domain_bytes() - base == idx.nbytes
    del idx
    text = json.dumps({"version": 1, "refs": {f"k/{i}": ["u", i, 8] for i in range(50_000)}})
    refs = chunkview.load(text.encode())
    assert domain_bytes() - base == refs.index.nbytes > 0
    del refs
    gc.collect()
    assert domain_bytes() == base


def test_decoder_memory_is_traced(traced):
    """The decoders allocate through the same hooks: an inflater's state (with stock zlib,
    zlib's own inflate state of several KiB) is in the domain while it lives and gone after."""
    import zlib

    from chunkview import _decode

    gc.collect()
    base = domain_bytes()
    z = _decode.Inflater()
    out = bytearray(1 << 16)
    assert z.inflate(zlib.compress(bytes(1 << 16)), out) == 1 << 16
    held = domain_bytes() - base
    assert held >= (4 << 10 if _decode.build_info()["inflate"] == "zlib" else 8)
    del z
    gc.collect()
    assert domain_bytes() == base


def cycle(native, values, i, probe=None):
    """Open the million references, read a few thousand chunks in a batch and some single
    ones, close.  Checks the values (a leak test that reads garbage proves nothing).  Returns
    what ``probe()`` gives while the set is open."""
    with chunkview.open(str(native), threads=2) as g:
        a = g["v"]
        lo = (i * 97_003) % (N_REFS * CHUNK - 20_000)
        got = a[lo:lo + 20_000]  # 10,000 chunks: one batch lookup, fetch, decode
        np.testing.assert_array_equal(got, values[lo:lo + 20_000])
        assert int(a[N_REFS * CHUNK - 1 - i]) == int(values[N_REFS * CHUNK - 1 - i])
        return probe() if probe else None


def test_open_and_read_a_million_references_100_times(million, traced):
    """100 cycles of open + read + close of a 1M-reference set: the C memory returns to where
    it started after each cycle, and Python's traced memory does not grow."""
    native, values = million
    for i in range(5):  # warm-up: imports, caches, the thread pool
        cycle(native, values, i)
    gc.collect()
    c_base = domain_bytes()
    py_base, _ = tracemalloc.get_traced_memory()
    c_open = []
    for i in range(100):
        # while open, the C index of the mapped file is in the domain (its header and URL
        # table; the records stay in the mapped file)
        c_open.append(cycle(native, values, i, domain_bytes if i % 10 == 0 else None))
        if i % 10 == 9:
            gc.collect()
            c_now = domain_bytes()
            assert c_now == c_base, f"cycle {i}: C memory {c_now - c_base:+d} bytes"
    assert min(x for x in c_open if x is not None) > c_base
    gc.collect()
    py_now, _ = tracemalloc.get_traced_memory()
    print(f"C memory: {c_base} -> {domain_bytes()} bytes; Python traced memory: {py_base} -> "
          f"{py_now} bytes ({py_now - py_base:+d})")
    # 100 cycles each allocate tens of MB: a leak of even one small object per cycle shows
    assert py_now - py_base < 256 << 10


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.skipif(SANITIZED, reason="ASan keeps freed memory in quarantine: RSS grows there")
def test_resident_memory_flat_over_100_cycles(million):
    """The process's resident size after 100 open + read cycles of the 1M-reference set is
    where it was after a warm-up (no tracemalloc: its own tables would grow the RSS)."""
    native, values = million
    for i in range(10):
        cycle(native, values, i)
    gc.collect()
    before = rss()
    for i in range(100):
        cycle(native, values, i)
    gc.collect()
    after = rss()
    print(f"RSS after warm-up {before / 2**20:.1f} MiB, after 100 cycles "
          f"{after / 2**20:.1f} MiB ({(after - before) / 2**20:+.1f} MiB)")
    # one cycle maps the 37 MB reference file and allocates ~1 MB: a leak of either per
    # cycle would add 100 MB or more; allocator slack stays far below 16 MiB
    assert after - before < 16 << 20
