"""Thread stress: 16 threads released together by a ``threading.Barrier`` read overlapping
selections of one array through one opened object, and every result equals a single-threaded
read of the same selection (and h5py's data).

Covered: ``chunkview.open`` arrays (each read itself decoding on several threads of the shared
decode pool), the zarr store (``chunkview.open_zarr``, chunkview's codec pipeline), the fsspec
filesystem (``cat``, ``cat_file`` and ``cat_ranges`` with overlapping ranges), one C index under
concurrent batch and single lookups, and all of them at once on one reference set opened from
the memory-mapped native format.  tests/test_read.py has the 8-thread read of a kerchunk JSON
set and tests/test_parquet.py the lazy parquet reader under threads; these add the other entry
points, more threads and mixed use.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import chunkview

h5py = pytest.importorskip("h5py")
sys.path.insert(0, str(Path(__file__).parent))
import make_testdata  # noqa: E402

NTHREADS = 16
ROUNDS = 25


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A file with gzip + shuffle + fletcher32 and plain chunked arrays, its references as the
    native format (opened memory-mapped), and h5py's data."""
    d = tmp_path_factory.mktemp("threads")
    path = make_testdata.make_filters(d / "filters.h5")
    small = make_testdata.make_hdf5(d / "small.h5")
    refs = chunkview.scan(str(path))
    native = d / "filters.cvref"
    refs.save(str(native))
    with h5py.File(path) as f:
        truth = {n: f[n][()] for n in ("f32", "i16", "c16", "masked")}
    with h5py.File(small) as f:
        truth["t2m"] = f["t2m"][()]
    small_refs = chunkview.scan(str(small))
    return native, small_refs, truth


def selections(shape, n=24, seed=0):
    """Overlapping selections: slices with steps (negative too), integers, whole axes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        sel = []
        for s in shape:
            kind = rng.integers(4)
            a = int(rng.integers(0, s))
            b = int(rng.integers(a, s)) + 1
            if kind == 0:
                sel.append(slice(None))
            elif kind == 1:
                sel.append(slice(a, b, int(rng.integers(1, 4))))
            elif kind == 2:
                sel.append(slice(b - 1, a - 1 if a else None, -int(rng.integers(1, 3))))
            else:
                sel.append(a)
        out.append(tuple(sel))
    return out


def hammer(work, n=NTHREADS):
    """Run work(t) in n threads released together by a barrier; re-raise the first error."""
    barrier = threading.Barrier(n)
    errors = []

    def run(t):
        try:
            barrier.wait()
            work(t)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(600)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("name", ["f32", "i16", "c16", "masked"])
def test_array_reads(dataset, name):
    native, _, truth = dataset
    g = chunkview.open(str(native), threads=3)
    arr = g[name]
    sels = selections(arr.shape, seed=len(name))
    want = [arr.read(s, threads=1) for s in sels]
    for s, w in zip(sels, want):
        np.testing.assert_array_equal(w, truth[name][s])

    def work(t):
        for r in range(ROUNDS):
            i = (t * 7 + r) % len(sels)
            got = arr.read(sels[i], threads=1 + (t + r) % 3)
            np.testing.assert_array_equal(got, want[i])
            if r % 4 == 0:  # into a caller's buffer too
                out = np.empty_like(want[i]) if np.ndim(want[i]) else None
                if out is not None:
                    arr.read(sels[i], out=out)
                    np.testing.assert_array_equal(out, want[i])

    hammer(work)
    g.close()


def test_zarr_store(dataset):
    pytest.importorskip("zarr")
    native, small_refs, truth = dataset
    z = chunkview.open_zarr(small_refs)
    arr = z["t2m"]
    sels = [s for s in selections(arr.shape, seed=3)
            if all(not isinstance(x, slice) or (x.step or 1) > 0 for x in s)]  # zarr: no negative steps
    want = [np.asarray(arr[s]) for s in sels]
    for s, w in zip(sels, want):
        np.testing.assert_array_equal(w, truth["t2m"][s])

    def work(t):
        for r in range(ROUNDS):
            i = (t * 5 + r) % len(sels)
            np.testing.assert_array_equal(np.asarray(arr[sels[i]]), want[i])

    hammer(work)


def test_filesystem_cat(dataset):
    native, _, _ = dataset
    fs = chunkview.ChunkviewFileSystem(str(native))
    keys = sorted(k for k in fs.references if k.startswith(("f32/", "i16/")) and
                  not k.rsplit("/", 1)[1].startswith("."))
    assert len(keys) > 20
    whole = {k: fs.cat_file(k) for k in keys}
    rng = np.random.default_rng(5)
    ranges = []
    for _ in range(64):  # overlapping ranges, some open-ended or from the end
        k = keys[int(rng.integers(len(keys)))]
        n = len(whole[k])
        a = int(rng.integers(0, n))
        b = int(rng.integers(a, n + 1))
        ranges.append((k, a, b))

    def work(t):
        for r in range(ROUNDS):
            batch = [ranges[(t * 11 + r * 3 + j) % len(ranges)] for j in range(8)]
            got = fs.cat_ranges([k for k, _, _ in batch], [a for _, a, _ in batch],
                                [b for _, _, b in batch])
            for (k, a, b), g in zip(batch, got):
                assert g == whole[k][a:b], (k, a, b)
            some = keys[(t + r) % len(keys):][:5]
            assert fs.cat(some) == {k: whole[k] for k in some}
            k = keys[(t * 3 + r) % len(keys)]
            assert fs.cat_file(k, start=-7) == whole[k][-7:]

    hammer(work)


def test_index_lookups(dataset):
    """One C index, 16 threads: batch lookups (the GIL released inside) and single ones."""
    native, _, _ = dataset
    refs = chunkview.load(str(native))
    keys = list(refs)
    want = {k: refs[k] for k in keys}
    ids, offs, lens = refs.lookup_many(keys)

    def work(t):
        rng = np.random.default_rng(t)
        for _ in range(ROUNDS):
            pick = rng.integers(0, len(keys), 200)
            batch = [keys[i] for i in pick] + [f"missing/{t}"]
            bi, bo, bl = refs.lookup_many(batch)
            np.testing.assert_array_equal(bi[:-1], ids[pick])
            np.testing.assert_array_equal(bo[:-1], offs[pick])
            np.testing.assert_array_equal(bl[:-1], lens[pick])
            assert bi[-1] == chunkview.refs.memory.MISSING
            for i in pick[:20]:
                assert refs[keys[i]] == want[keys[i]]

    hammer(work)


def test_everything_at_once(dataset):
    """Arrays, zarr, the filesystem and index lookups on one memory-mapped reference set, each
    thread taking its turn at each."""
    pytest.importorskip("zarr")
    native, _, truth = dataset
    refs = chunkview.load(str(native))
    g = chunkview.open(refs, threads=2)
    z = chunkview.open_zarr(refs)
    fs = chunkview.ChunkviewFileSystem(refs)
    keys = [k for k in refs if k.startswith("f32/") and not k.rsplit("/", 1)[1].startswith(".")]
    whole = {k: fs.cat_file(k) for k in keys}
    sels = selections(truth["f32"].shape, n=12, seed=9)
    pos = [s for s in sels if all(not isinstance(x, slice) or (x.step or 1) > 0 for x in s)]

    def work(t):
        for r in range(ROUNDS):
            turn = (t + r) % 4
            if turn == 0:
                s = sels[(t + r) % len(sels)]
                np.testing.assert_array_equal(g["f32"][s], truth["f32"][s])
            elif turn == 1:
                s = pos[(t + r) % len(pos)]
                np.testing.assert_array_equal(np.asarray(z["f32"][s]), truth["f32"][s])
            elif turn == 2:
                k = keys[(t * 13 + r) % len(keys)]
                assert fs.cat_file(k, 3, 40) == whole[k][3:40]
            else:
                ids, _, _ = refs.lookup_many(keys)
                assert (ids >= 0).all()

    hammer(work)
    g.close()
