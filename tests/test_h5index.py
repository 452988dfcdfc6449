"""Native extensible-array and version-2 B-tree chunk indexes (chunkview.scan.hdf5.index2),
checked against the data itself: every chunk found is read from the file at the address and
size the index gives, decoded, and compared with what h5py reads for that chunk's region.
(HDF5 2.0's own chunk_iter reports swizzled coordinates for extensible arrays whose unlimited
dimension is not the first, so it is used only as a second oracle elsewhere.)"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from chunkview.errors import ScanError  # noqa: E402
from chunkview.io.blocks import BytesReader, open_reader  # noqa: E402
from chunkview.scan.hdf5.checksums import lookup3  # noqa: E402
from chunkview.scan.hdf5.format import BTREE2, EARRAY, H5File  # noqa: E402
from chunkview.scan.hdf5.index2 import read_btree2, read_earray  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


# ---------------------------------------------------------------------- helpers


def _layout(F, dset):
    addr = h5py.h5o.get_info(dset.id).addr
    return F.layout(addr, dset.ndim)


def _nfilters(dset):
    return dset.id.get_create_plist().get_nfilters()


def _read_index(F, dset, lay, verify=None):
    nf = _nfilters(dset)
    if lay.index == EARRAY:
        return read_earray(F, lay, dset.shape, dset.maxshape, nf, dset.name, verify=verify)
    assert lay.index == BTREE2
    chunk_bytes = int(np.prod(lay.chunk, dtype=np.int64)) * lay.elem_size
    return read_btree2(F, lay, chunk_bytes, nf, dset.name, verify=verify)


def _unshuffle(raw, size):
    n = len(raw) // size
    body = np.frombuffer(raw, np.uint8, count=n * size).reshape(size, n).T.tobytes()
    return body + raw[n * size:]


def _decode(raw, filters, mask, itemsize):
    for i in reversed(range(len(filters))):
        if mask >> i & 1:
            continue
        code = filters[i]
        if code == 1:
            raw = zlib.decompress(raw)
        elif code == 2:
            raw = _unshuffle(raw, itemsize)
        elif code == 3:
            raw = raw[:-4]
        else:
            raise NotImplementedError(f"filter {code}")
    return raw


def _blocks(x, chunk):
    """(g0*c0, g1*c1, ...) -> (g0, g1, ..., c0, c1, ...)."""
    r = len(chunk)
    grid = [s // c for s, c in zip(x.shape, chunk, strict=True)]
    y = x.reshape(sum(([g, c] for g, c in zip(grid, chunk, strict=True)), []))
    return y.transpose(list(range(0, 2 * r, 2)) + list(range(1, 2 * r, 2)))


def check_data(fn, dset, lay, ch, *, inside_only=False):
    """Every chunk in ``ch`` holds, at (addr, size), the data h5py reads for its region."""
    n = len(ch.addrs)
    rank = dset.ndim
    chunk = tuple(lay.chunk)
    assert ch.coords.shape == (n, rank) and ch.coords.dtype == np.int64
    assert ch.addrs.dtype == np.uint64 and ch.sizes.dtype == np.uint64
    assert ch.masks.dtype == np.uint32
    if n:
        assert len(np.unique(ch.coords, axis=0)) == n, "duplicate chunk coordinates"
        assert (ch.coords >= 0).all()
    grid = [-(-s // c) for s, c in zip(dset.shape, chunk, strict=True)]
    inside = np.all(ch.coords < np.array(grid, np.int64), axis=1) if n else np.zeros(0, bool)
    if inside_only:
        coords, addrs, sizes, masks = (ch.coords[inside], ch.addrs[inside], ch.sizes[inside],
                                       ch.masks[inside])
    else:
        assert inside.all(), "chunk outside the dataset's extent"
        coords, addrs, sizes, masks = ch.coords, ch.addrs, ch.sizes, ch.masks
    n = len(addrs)
    if n == 0:
        return
    dtype = dset.dtype
    if dtype.kind == "osz" or dtype.itemsize != lay.elem_size:
        return  # variable-length or repacked data: not comparable byte for byte
    data = np.fromfile(fn, np.uint8)
    assert int((addrs + sizes).max()) <= len(data)
    arr = dset[...]
    padded = tuple(g * c for g, c in zip(grid, chunk, strict=True))
    region = tuple(slice(0, s) for s in dset.shape)
    P = np.zeros(padded, dtype)
    P[region] = arr
    V = np.zeros(padded, bool)
    V[region] = True
    sel = tuple(coords.T)
    expect, valid = _blocks(P, chunk)[sel], _blocks(V, chunk)[sel]
    nbytes = int(np.prod(chunk)) * dtype.itemsize
    dcpl = dset.id.get_create_plist()
    filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
    if not filters:
        assert (sizes == nbytes).all()
        idx = addrs.astype(np.int64)[:, None] + np.arange(nbytes)
        got = np.ascontiguousarray(data[idx]).view(dtype).reshape((n,) + chunk)
    else:
        got = np.empty((n,) + chunk, dtype)
        triples = zip(addrs.tolist(), sizes.tolist(), masks.tolist(), strict=True)
        for i, (a, s, m) in enumerate(triples):
            raw = _decode(data[a:a + s].tobytes(), filters, m, dtype.itemsize)
            assert len(raw) == nbytes
            got[i] = np.frombuffer(raw, dtype).reshape(chunk)
    assert np.array_equal(got[valid], expect[valid]), "chunk bytes differ from the data"


def chunk_iter_map(dset, chunk):
    out = {}

    def cb(s):
        key = tuple(o // c for o, c in zip(s.chunk_offset, chunk, strict=True))
        out[key] = (s.byte_offset, s.size, s.filter_mask)

    dset.id.chunk_iter(cb)
    return out


def as_map(ch):
    return {tuple(c): (int(a), int(s), int(m))
            for c, a, s, m in zip(ch.coords.tolist(), ch.addrs, ch.sizes, ch.masks,
                                  strict=True)}


def verify_file(fn, names=None, verify=True):
    """Check every EA / BT2 dataset of ``fn`` against its data; returns {name: Chunks}."""
    out = {}
    with h5py.File(fn, "r") as h, open_reader(str(fn)) as r:
        F = H5File(r)
        dsets = []
        h.visititems(lambda k, v: dsets.append(v) if isinstance(v, h5py.Dataset) else None)
        for d in dsets:
            if names is not None and d.name not in names:
                continue
            if d.chunks is None:
                continue
            lay = _layout(F, d)
            if lay.index not in (EARRAY, BTREE2):
                continue
            ch = _read_index(F, d, lay, verify=verify)
            check_data(fn, d, lay, ch)
            assert len(ch.addrs) == d.id.get_num_chunks()
            unlim = [i for i, m in enumerate(d.maxshape) if m is None]
            if lay.index == BTREE2 or unlim == [0]:
                assert as_map(ch) == chunk_iter_map(d, lay.chunk)
            out[d.name] = (lay, ch)
    return out


def _ds(h, name, data, maxshape, chunks, **kw):
    d = h.create_dataset(name, data=data, maxshape=maxshape, chunks=chunks, **kw)
    return d


FILTERS = {"plain": {}, "gzip": dict(compression="gzip", shuffle=True, fletcher32=True)}


# ---------------------------------------------------------------------- generated files


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """EA datasets with the unlimited dimension in every position, rank 1-4, filtered and
    not; BT2 datasets of rank 2-4; extended and sparse variants."""
    fn = tmp_path_factory.mktemp("h5index") / "small.h5"
    rng = np.random.default_rng(1)
    with h5py.File(fn, "w", libver="latest") as h:
        base = {1: (37,), 2: (13, 11), 3: (7, 6, 5), 4: (5, 4, 3, 6)}
        chunks = {1: (4,), 2: (3, 2), 3: (2, 3, 2), 4: (2, 1, 2, 4)}
        for rank in (1, 2, 3, 4):
            shape = base[rank]
            data = np.arange(int(np.prod(shape)), dtype="<i4").reshape(shape)
            for pos in range(rank):
                ms = tuple(None if i == pos else s + (i % 2) * 3 for i, s in enumerate(shape))
                for fk, fkw in FILTERS.items():
                    _ds(h, f"ea_r{rank}_u{pos}_{fk}", data, ms, chunks[rank], **fkw)
            if rank >= 2:
                for fk, fkw in FILTERS.items():
                    _ds(h, f"bt_r{rank}_{fk}", data.astype("<f8"), (None,) * rank,
                        chunks[rank], **fkw)
                    _ds(h, f"bt_r{rank}_mixed_{fk}", data, (None, None) + shape[2:],
                        chunks[rank], **fkw)
        # extended after creation
        for fk, fkw in FILTERS.items():
            d = h.create_dataset(f"ea_ext_{fk}", shape=(6, 10), maxshape=(6, None),
                                 chunks=(4, 3), dtype="<i2", **fkw)
            d[:] = rng.integers(0, 1000, d.shape)
            d.resize((6, 500))
            d[:, 400:] = rng.integers(0, 1000, (6, 100))
            d = h.create_dataset(f"bt_ext_{fk}", shape=(5, 5), maxshape=(None, None),
                                 chunks=(2, 2), dtype="<u8", **fkw)
            d[:] = rng.integers(0, 1 << 40, d.shape)
            d.resize((300, 40))
            d[250:, 30:] = rng.integers(0, 1 << 40, (50, 10))
        # sparse: chunks left unallocated
        d = h.create_dataset("ea_sparse", shape=(3, 2000), maxshape=(3, None), chunks=(3, 4),
                             dtype="<f4")
        for j in range(0, 2000, 37):
            d[:, j] = j
        d = h.create_dataset("bt_sparse", shape=(200, 300), maxshape=(None, None),
                             chunks=(4, 5), dtype="<i4", compression="gzip")
        for i in range(0, 200, 9):
            d[i, (i * 7) % 300] = i + 1
        # empty (no chunk written)
        h.create_dataset("ea_empty", shape=(10,), maxshape=(None,), chunks=(2,), dtype="<i4")
        h.create_dataset("bt_empty", shape=(10, 10), maxshape=(None, None), chunks=(2, 2),
                         dtype="<i4")
        # big-endian, compound
        _ds(h, "ea_be", np.arange(100, dtype=">i8"), (None,), (3,))
        ct = np.dtype([("a", "<i4"), ("b", "<f8")])
        comp = np.zeros(60, ct)
        comp["a"] = np.arange(60)
        comp["b"] = np.arange(60) / 7
        _ds(h, "bt_compound", comp.reshape(6, 10), (None, None), (4, 3), **FILTERS["gzip"])
    return fn


def test_small_file(small_file):
    got = verify_file(small_file)
    kinds = {name: lay.index for name, (lay, _ch) in got.items()}
    assert sum(k == EARRAY for k in kinds.values()) == 2 * 10 + 2 + 1 + 1 + 1
    assert sum(k == BTREE2 for k in kinds.values()) >= 12
    assert len(got["/ea_empty"][1].addrs) == 0 and len(got["/bt_empty"][1].addrs) == 0
    assert 0 < len(got["/ea_sparse"][1].addrs) < 500
    # the swizzle matters: a 2-D array with the unlimited dimension second
    lay, ch = got["/ea_r2_u1_plain"]
    assert set(map(tuple, ch.coords.tolist())) == {(i, j) for i in range(5) for j in range(6)}


def test_verify_modes_agree(small_file):
    with h5py.File(small_file) as h, open_reader(str(small_file)) as r:
        F = H5File(r)
        for name in ("ea_sparse", "bt_sparse", "ea_ext_gzip", "bt_ext_plain"):
            d = h[name]
            lay = _layout(F, d)
            ref = as_map(_read_index(F, d, lay, verify=True))
            for v in (None, False):
                assert as_map(_read_index(F, d, lay, verify=v)) == ref


def test_small_offsets_and_userblock(tmp_path):
    """4-byte addresses, and a user block (addresses relative to the base)."""
    fn = tmp_path / "sizes.h5"
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_sizes(4, 8)  # 4-byte lengths break unlimited dims in HDF5 itself
    fcpl.set_userblock(512)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    fid = h5py.h5f.create(str(fn).encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl)
    with h5py.File(fid) as h:
        for fk, fkw in FILTERS.items():
            _ds(h, f"ea_{fk}", np.arange(5000, dtype="<i4").reshape(50, 100), (50, None),
                (3, 1), **fkw)
            _ds(h, f"bt_{fk}", np.arange(5000, dtype="<i4").reshape(50, 100), (None, None),
                (1, 2), **fkw)
    with open_reader(str(fn)) as r:
        F = H5File(r)
        assert (F.O, F.L) == (4, 8) and F.base == 512
    got = verify_file(fn)
    assert len(got) == 4


# ---------------------------------------------------------------------- large indexes


@pytest.fixture(scope="module")
def large_file(tmp_path_factory):
    """Indexes big enough for super blocks, paged data blocks (> 131,076 entries with the
    library's parameters) and B-trees of depth 2."""
    fn = tmp_path_factory.mktemp("h5index") / "large.h5"
    with h5py.File(fn, "w", libver="latest") as h:
        _ds(h, "ea_200k", np.arange(200_000, dtype="<i4"), (None,), (1,))
        _ds(h, "ea_gzip_140k", np.arange(140_000, dtype="<i2"), (None,), (1,),
            **FILTERS["gzip"])
        _ds(h, "ea_2d_u1", np.arange(3 * 60_000, dtype="<i4").reshape(3, 60_000),
            (3, None), (2, 1))
        # paged data blocks with pages left uninitialised
        d = h.create_dataset("ea_paged_sparse", shape=(300_000,), maxshape=(None,), chunks=(1,),
                             dtype="<i4")
        idx = np.arange(300_000)
        keep = idx[((idx // 1024) % 3 == 0) | ((idx // 700) % 11 == 5)]
        for lo in range(0, len(keep), 5000):
            part = keep[lo:lo + 5000]
            d[part] = part.astype("<i4")
        _ds(h, "bt_200k", np.arange(200_000, dtype="<i4").reshape(400, 500), (None, None),
            (1, 1))
        _ds(h, "bt_gzip_20k", np.arange(20_000, dtype="<i4").reshape(100, 200), (None, None),
            (1, 1), **FILTERS["gzip"])
        _ds(h, "bt_3d", np.arange(60 * 50 * 40, dtype="<u2").reshape(60, 50, 40),
            (None, 50, None), (1, 5, 2))
    return fn


def test_large_file(large_file):
    got = verify_file(large_file)
    assert len(got["/ea_200k"][1].addrs) == 200_000
    assert len(got["/bt_200k"][1].addrs) == 200_000
    n = len(got["/ea_paged_sparse"][1].addrs)
    assert 100_000 < n < 200_000


def test_btree_depth(large_file):
    with h5py.File(large_file) as h, open_reader(str(large_file)) as r:
        F = H5File(r)
        for name in ("bt_200k", "bt_gzip_20k"):
            lay = _layout(F, h[name])
            head = bytes(F.read(lay.address, 16))
            assert int.from_bytes(head[12:14], "little") >= 2, name


def test_timing(large_file):
    """A 200,000-chunk index parses in well under 100 ms (generous bound against noise)."""
    with h5py.File(large_file) as h, open_reader(str(large_file)) as r:
        F = H5File(r)
        for name in ("ea_200k", "bt_200k"):
            d = h[name]
            lay = _layout(F, d)
            _read_index(F, d, lay)
            best = min(_timed(F, d, lay) for _ in range(3))
            assert best < 0.25, (name, best)


def _timed(F, d, lay, verify=None):
    t = time.perf_counter()
    _read_index(F, d, lay, verify=verify)
    return time.perf_counter() - t


# ---------------------------------------------------------------------- argument checks


def test_earray_needs_unlimited_dim(small_file):
    with h5py.File(small_file) as h, open_reader(str(small_file)) as r:
        F = H5File(r)
        d = h["ea_r2_u1_plain"]
        lay = _layout(F, d)
        with pytest.raises(ValueError):
            read_earray(F, lay, d.shape, d.shape, 0)
        # -1 and H5S_UNLIMITED mark the unlimited dimension too
        a = as_map(read_earray(F, lay, d.shape, (d.maxshape[0], -1), 0))
        b = as_map(read_earray(F, lay, d.shape, (d.maxshape[0], (1 << 64) - 1), 0))
        assert a == b == as_map(read_earray(F, lay, d.shape, d.maxshape, 0))
        with pytest.raises(ScanError):  # client 0 array for a filtered dataset
            read_earray(F, lay, d.shape, d.maxshape, 1)


def test_lookup3_vectors():
    assert int(lookup3([b"Four score and seven years ago"])[0]) == 0x17770551
    rng = np.random.default_rng(3)
    bufs = [rng.integers(0, 256, int(n), np.uint8).tobytes()
            for n in rng.integers(1, 400, 300)]
    many = lookup3(bufs)  # numpy lock-step path
    one = np.array([int(lookup3([b])[0]) for b in bufs], np.uint32)  # scalar path
    assert np.array_equal(many, one)


# ---------------------------------------------------------------------- corruption


def _structures(data: bytes):
    """(start, end) of every EA / BT2 structure in ``data`` (signature to a generous end)."""
    out = []
    for sig in (b"EAHD", b"EAIB", b"EASB", b"EADB", b"BTHD", b"BTIN", b"BTLF"):
        i = data.find(sig)
        while i >= 0:
            out.append((i, min(len(data), i + 600)))
            i = data.find(sig, i + 1)
    return out


NAMES = ("ea", "bt", "ea_paged")


@pytest.fixture(scope="module")
def corrupt_base(tmp_path_factory):
    fn = tmp_path_factory.mktemp("h5index") / "corrupt.h5"
    with h5py.File(fn, "w", libver="latest") as h:
        _ds(h, "ea", np.arange(3000, dtype="<i4").reshape(3, 1000), (3, None), (3, 2),
            **FILTERS["gzip"])
        _ds(h, "bt", np.arange(12000, dtype="<i4").reshape(120, 100), (None, None), (2, 3))
        # paged data blocks (> 131,076 entries), some pages never written
        d = h.create_dataset("ea_paged", shape=(140_000,), maxshape=(None,), chunks=(1,),
                             dtype="<i2")
        d[:40_000] = 1
        d[133_000:136_000] = 2
    data = fn.read_bytes()
    info = {}
    with h5py.File(fn) as h, open_reader(str(fn)) as r:
        F = H5File(r)
        for name in NAMES:
            d = h[name]
            lay = _layout(F, d)
            info[name] = (lay, d.shape, d.maxshape, _nfilters(d),
                          _read_index(F, d, lay, verify=True))
    return data, info


def _run(data, info, name, verify):
    lay, shape, maxshape, nf, _ref = info[name]
    F = H5File(BytesReader(data))
    t = time.perf_counter()
    try:
        if lay.index == EARRAY:
            ch = read_earray(F, lay, shape, maxshape, nf, name, verify=verify)
        else:
            cb = int(np.prod(lay.chunk)) * lay.elem_size
            ch = read_btree2(F, lay, cb, nf, name, verify=verify)
        return ch
    except ScanError:
        return None
    finally:
        assert time.perf_counter() - t < 5, "index parse took too long on corrupt data"


def test_corrupt_bytes(corrupt_base):
    """Random byte flips in the index structures: ScanError or a result, never another
    exception or a hang; with every checksum verified, ScanError or the unchanged result."""
    data, info = corrupt_base
    regions = _structures(data)
    assert len(regions) > 10
    rng = np.random.default_rng(7)
    detected = 0
    for _ in range(200):
        buf = bytearray(data)
        lo, hi = regions[rng.integers(len(regions))]
        for _ in range(int(rng.integers(1, 4))):
            p = int(rng.integers(lo, hi))
            buf[p] ^= int(rng.integers(1, 256))
        detected += _check_mutant(bytes(buf), info)
    assert detected > 60


def _same(a, b):
    return a is not None and all(np.array_equal(getattr(a, k), getattr(b, k))
                                 for k in ("coords", "addrs", "sizes", "masks"))


def _check_mutant(buf, info):
    """ScanError or a result for every mode; with every checksum verified, ScanError or the
    unchanged result.  Returns how many strict parses failed."""
    detected = 0
    for name in NAMES:
        ref = info[name][-1]
        strict = _run(buf, info, name, True)
        assert strict is None or _same(strict, ref)
        detected += strict is None
        _run(buf, info, name, None)
        _run(buf, info, name, False)
    return detected


def test_corrupt_bytes_hypothesis(corrupt_base):
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies
    data, info = corrupt_base
    regions = _structures(data)

    @hyp.settings(max_examples=150, deadline=None, derandomize=True,
                  suppress_health_check=list(hyp.HealthCheck))
    @hyp.given(st.integers(0, len(regions) - 1), st.integers(0, 599), st.integers(1, 255),
               st.integers(0, 64), st.booleans())
    def flip(region, off, xor, cut, truncate):
        lo, hi = regions[region]
        p = min(lo + off, hi - 1)
        buf = bytearray(data)
        buf[p] ^= xor
        if truncate:
            del buf[p + cut:]
        _check_mutant(bytes(buf), info)

    flip()


def test_truncated(corrupt_base):
    data, info = corrupt_base
    regions = _structures(data)
    cuts = sorted({s + k for s, _e in regions for k in (0, 3, 7, 20, 100)})
    rng = np.random.default_rng(11)
    cuts = sorted(set(cuts[:40]) | set(cuts[-40:]) | set(rng.choice(cuts, 80).tolist()))
    for cut in cuts:
        for name in NAMES:
            for verify in (True, None, False):
                got = _run(data[:cut], info, name, verify)
                assert got is None or _same(got, info[name][-1])


def _patch(data, at, value: bytes):
    b = bytearray(data)
    b[at:at + len(value)] = value
    return bytes(b)


def test_btree_cycles(corrupt_base):
    """Child pointers made to point at a sibling, the node itself or the root: ScanError, no
    hang, even with node checksums unchecked."""
    data, info = corrupt_base
    lay = info["bt"][0]
    F = H5File(BytesReader(data))
    osz = F.O
    head = bytes(F.read(lay.address, 16 + osz + 2 + F.L + 4))
    depth = int.from_bytes(head[12:14], "little")
    rsize = int.from_bytes(head[10:12], "little")
    root = int.from_bytes(head[16:16 + osz], "little")
    nrec = int.from_bytes(head[16 + osz:18 + osz], "little")
    assert depth >= 1
    node = bytes(F.read(root, 6 + nrec * rsize + 64))
    assert node[:4] == b"BTIN"
    ptr0 = F.base + root + 6 + nrec * rsize
    leaf_max = (int.from_bytes(head[6:10], "little") - 10) // rsize
    ps = osz + ((leaf_max.bit_length() - 1) // 8 + 1) + (0 if depth == 1 else 0)
    if depth > 1:
        pytest.skip("fixture tree deeper than expected")
    child0 = data[ptr0:ptr0 + osz]
    for target in (child0, root.to_bytes(osz, "little"), lay.address.to_bytes(osz, "little")):
        bad = _patch(data, ptr0 + ps, target)  # second child pointer
        for verify in (None, False):
            assert _run(bad, info, "bt", verify) is None


def test_earray_shared_block(corrupt_base):
    """A super block listing the same data block twice: ScanError."""
    data, info = corrupt_base
    F = H5File(BytesReader(data))
    i = data.find(b"EASB")
    assert i > 0
    osz = F.O
    aos = 4  # (32 max bits + 7) // 8
    # the first super block (u = 4) has 4 data blocks and no page bitmap
    p = i + 6 + osz + aos
    first = data[p:p + osz]
    bad = _patch(data, p + osz, first)
    for verify in (None, False):
        assert _run(bad, info, "ea", verify) is None


# ---------------------------------------------------------------------- third-party corpus


def _corpus_entries():
    inv = CORPUS / "INVENTORY.json"
    if not inv.exists():
        return []
    out = []
    for rec in json.loads(inv.read_text()):
        for d in rec.get("datasets", []):
            ci = (d.get("raw_layout") or {}).get("chunk_index")
            if ci in ("extensible_array", "btree_v2") and d.get("read") == "ok":
                out.append((rec["file"], d["path"], ci))
    return out


@pytest.mark.skipif(not (CORPUS / "INVENTORY.json").exists(), reason="no shared corpus")
def test_corpus():
    entries = _corpus_entries()
    assert entries
    counts = {"extensible_array": 0, "btree_v2": 0}
    for file, path, ci in entries:
        fn = CORPUS / file
        with h5py.File(fn) as h, open_reader(str(fn)) as r:
            F = H5File(r)
            d = h[path]
            lay = _layout(F, d)
            assert lay.index == (EARRAY if ci == "extensible_array" else BTREE2)
            ch = _read_index(F, d, lay, verify=True)
            check_data(fn, d, lay, ch, inside_only=True)
            assert len(ch.addrs) == d.id.get_num_chunks(), (file, path)
            unlim = [i for i, m in enumerate(d.maxshape) if m is None]
            if lay.index == BTREE2 or unlim == [0]:
                assert as_map(ch) == chunk_iter_map(d, lay.chunk), (file, path)
            counts[ci] += 1
    print("corpus:", counts)
