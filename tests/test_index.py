"""The C index against a Python dict, and its native format."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

import chunkview
from chunkview import ChunkIndex
from chunkview._index import INLINE, MISSING, WHOLE

keys = st.one_of(
    st.text(min_size=0, max_size=12),
    st.binary(min_size=0, max_size=8).map(lambda b: b.decode("latin-1")),  # embedded NULs
    st.text(min_size=200, max_size=600),  # long keys
    st.sampled_from(["a", "a\x00", "a\x00b", "\x00", "", "v/0", "v/0.0"]),
)
urls = st.sampled_from(["file:///a.h5", "s3://bucket/b.nc", "", "https://x/ü.h5"])
values = st.one_of(
    st.binary(max_size=64),
    st.tuples(urls).map(list),
    st.tuples(urls, st.integers(0, 2**62), st.integers(0, 2**40)).map(list),
)


class IndexVsDict(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.index = ChunkIndex()
        self.model = {}

    inserted = Bundle("inserted")

    @rule(target=inserted, key=keys, value=values)
    def put(self, key, value):
        self.index[key] = value
        self.model[key] = value
        return key

    @rule(key=inserted)
    def delete(self, key):
        if key in self.model:
            del self.index[key]
            del self.model[key]
        else:
            with pytest.raises(KeyError):
                del self.index[key]

    @rule(key=st.one_of(keys, inserted))
    def lookup(self, key):
        assert (key in self.index) == (key in self.model)
        assert self.index.get(key) == self.model.get(key)

    @rule()
    def roundtrip(self):
        again = ChunkIndex.frombytes(self.index.tobytes())
        assert dict(again.items()) == self.model
        self.index = again  # keep mutating the borrowed copy

    @invariant()
    def same_size(self):
        assert len(self.index) == len(self.model)


TestIndexVsDict = IndexVsDict.TestCase
TestIndexVsDict.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


@given(st.lists(st.tuples(keys, values), max_size=50))
@settings(deadline=None)
def test_iteration_order_and_items(pairs):
    idx = ChunkIndex()
    model = {}
    for k, v in pairs:
        idx[k] = v
        model[k] = v
    assert list(idx) == list(model)
    assert dict(idx.items()) == model


def test_bulk_build_and_batch_lookup():
    n = 10_000
    keys = [f"v/{i}" for i in range(n)]
    idx = ChunkIndex.from_arrays(keys, np.arange(n) % 3, np.arange(n) * 100,
                                 np.full(n, 100), ["a", "b", "c"])
    assert len(idx) == n
    assert idx["v/5"] == ["c", 500, 100]
    idx["inline"] = b"xyz"
    idx["whole"] = ["b"]
    ids, offs, lens = idx.lookup_many(["v/1", "nope", "inline", "whole", "v/9999"])
    assert ids.tolist() == [1, MISSING, INLINE, 1, 0]
    assert offs[0] == 100 and lens[0] == 100
    assert lens[3] == WHOLE
    assert offs[4] == 999_900
    assert idx.lookup("v/2") == (2, 200, 100)


def test_bulk_build_rejects_bad_arrays():
    with pytest.raises(chunkview.ReferenceFormatError):
        ChunkIndex.from_arrays(["a"], [0], [-1], [1], ["u"])
    with pytest.raises(chunkview.ReferenceFormatError):
        ChunkIndex.from_arrays(["a"], [3], [0], [1], ["u"])
    with pytest.raises(ValueError):
        ChunkIndex.from_arrays(["a", "b"], [0], [0], [1], ["u"])


def test_pickle_is_compact_bytes():
    n = 50_000
    idx = ChunkIndex.from_arrays([f"t2m/{i}.0.0" for i in range(n)], np.zeros(n, int),
                                 np.arange(n) * 4096, np.full(n, 4096), ["file:///data.h5"])
    blob = pickle.dumps(idx)
    assert len(blob) < 40 * n  # a dict of lists pickles to ~60 bytes per entry
    again = pickle.loads(blob)
    assert len(again) == n and again["t2m/77.0.0"] == ["file:///data.h5", 77 * 4096, 4096]


def test_native_corruption_is_detected():
    idx = ChunkIndex.from_arrays([f"k{i}" for i in range(1000)], np.zeros(1000, int),
                                 np.arange(1000), np.ones(1000), ["u"])
    data = bytearray(idx.tobytes())
    for pos in range(0, len(data), 53):
        data[pos] ^= 0xFF
        with pytest.raises(chunkview.ReferenceFormatError):
            ChunkIndex.frombytes(bytes(data))
        data[pos] ^= 0xFF
    with pytest.raises(chunkview.ReferenceFormatError, match="truncated"):
        ChunkIndex.frombytes(bytes(data[:-8]))
    with pytest.raises(chunkview.ReferenceFormatError):
        ChunkIndex.frombytes(b"not an index at all")
    with pytest.raises(chunkview.ChecksumError):
        bad = bytearray(data)
        bad[-1] ^= 1  # last body byte: only the body checksum can notice
        ChunkIndex.frombytes(bytes(bad))


def _resign(data: bytearray) -> bytes:
    """Recompute both checksums, as a hostile or buggy writer would."""
    from chunkview._index import xxh64

    data[112:120] = xxh64(bytes(data[128:])).to_bytes(8, "little")
    data[120:128] = xxh64(bytes(data[:120])).to_bytes(8, "little")
    return bytes(data)


def test_native_corruption_with_valid_checksums_fails_cleanly():
    """Checksums only catch accidents: a file with consistent checksums but broken structure must
    still never crash or read out of bounds; check() finds the damage up front."""
    keys = [f"t2m/{i}.0" for i in range(400)] + ["meta/.zarray"]
    idx = ChunkIndex.from_arrays(keys[:-1], np.arange(400) % 3, np.arange(400) * 1000,
                                 np.full(400, 999), ["a.h5", "b.h5", "c.h5"])
    idx["meta/.zarray"] = b'{"chunks": [1]}'
    good = idx.tobytes()
    rng = np.random.default_rng(0)
    flagged = 0
    for _ in range(400):
        data = bytearray(good)
        for pos in rng.integers(128, len(data), size=rng.integers(1, 4)):
            data[pos] ^= int(rng.integers(1, 256))
        try:
            bad = ChunkIndex.frombytes(_resign(data))
        except chunkview.ReferenceFormatError:
            flagged += 1
            continue
        try:
            bad.check()
        except chunkview.ReferenceFormatError:
            flagged += 1
        # whatever check() said, every access either works or raises a chunkview error
        for k in keys:
            try:
                bad.get(k)
            except chunkview.ChunkviewError:
                pass
        try:
            list(bad.items())
            bad.lookup_many(keys)
        except chunkview.ChunkviewError:
            pass
    assert flagged > 200
    ChunkIndex.frombytes(good).check()  # the intact file passes


# A native file written by the development builds before format version 3 (buckets without
# headers): zlib-compressed, base64.  The references it holds are rebuilt below.
_V2_FILE = (
    "eNqNk0toE1EUhm9mpk0aq9gKKlIhLaILJZOZvCNIrYJWERTBdiFobNOkWE1I01AigWwkrXanKPgA6cJBdwoVBReC"
    "ygi68rnRRYU6F9yI1IVu9D9zpi3dOXA495t7z38ec2d634n+/YNrg4oQogFLCH5aPB/0vOb5mMq+3+PepYP/+dwe"
    "3luub5q69ebrxM8Po2/nlt53eL7L8zs9nxGr8wVgRdgrWLdPiGnYO9huNHAR9gy2WV2pk5hiaJ9iaI/ivigcu13l"
    "ONL4hP2Nnv518BW834a1jvV3rO/C18FR2B6s++BnYEew/oP9Ofh52CzWJ+EfwC9Q7fA34V/g3X34NuT8gfUxrBdh"
    "f7EexJl1sK2wPEzFuyfYOw3rxHoX3p2Fr8Gqyso8Q0L1T+oR0QhJvxCPQVU9pcmm0giJqtBAhqnIpgq8xpjUpKUB"
    "pxjTqnQIv7kYjWvSCQD7XIzFILUG2O0KpxVpkfBvDk2oskmh6100IzjbAtzCShFF2n7gL0YTuyR8j4WjSBsEPhJq"
    "YFI3RYOeUPtrN08Smz5sXmbhFPKQ0gIrJdBPG3CGldCeTUrzjHHUSBUfdJUMVe4AeKEGslo0ioeMKYRSA2Ocx0Ao"
    "NXCYMaFJuxX4koUxN4eE7zAittnuNk95oorMU548C0dUadOgcoyoyVGXR2FGoUR5erkf1OhQe0ddJXRnU+/H+WwM"
    "aaiIRT4bgzBN8QYjBmXRKEqM+D4O4QYuEVU0aTIDjPhcNjVg+OjKGD6+QIc4Txq3goq4xEq4QjYpXeVQA7uk1MWI"
    "O2NR7+/dinFlLKr4OTeLsw71/pGF4zjbuvy1zCRKJAwq/s5wLV8uTpQ6LvTUsuXyqZFi+Vy20pMx609dXdyYAzTT"
    "z6yLq2jTEGdZyEQ3NESbC8YHsGgwHIq7R83Q7aJ6MQcqkJ6R0bFcRtf14Wwlq2fDhfh4FHhGHwqfHypUKqVxUEHP"
    "RVajsRpNoPf//QN0sBVY"
)


def test_native_version_2_still_opens():
    """Version 2 files still open (regrouped into version 3 in memory) and read the same."""
    import base64
    import zlib

    data = zlib.decompress(base64.b64decode(_V2_FILE))
    assert data[8:12] == (2).to_bytes(4, "little")
    want = {".zgroup": b'{"zarr_format":2}', "x/0": ["file:///data/a.h5", 4096, 1000],
            "x/1": ["s3://b/c.nc"], "x/2": ["file:///data/a.h5", 2**40, 12]}
    want.update({f"v/{i}": ["https://h/e%d.nc" % (i % 3), 1000 + 4096 * i, 4096]
                 for i in range(50)})
    idx = ChunkIndex.frombytes(data)
    idx.check()
    assert list(idx.keys()) == list(want)  # insertion order kept
    assert {k: idx[k] for k in want} == want
    ids, offs, lens = idx.lookup_many(["v/7", "x/2", "nope"])
    assert list(offs) == [1000 + 4096 * 7, 2**40, 0] and ids[2] == MISSING
    again = idx.tobytes()
    assert again[8:12] == (3).to_bytes(4, "little")
    assert dict(ChunkIndex.frombytes(again).items()) == dict(idx.items())
    bad = bytearray(data)
    bad[8:12] = (9).to_bytes(4, "little")
    with pytest.raises(chunkview.ReferenceFormatError, match="version"):
        ChunkIndex.frombytes(_resign(bad))


def test_checksum_is_xxh64():
    xxhash = pytest.importorskip("xxhash")
    from chunkview._index import xxh64

    for n in (0, 1, 3, 4, 7, 8, 31, 32, 33, 100, 1000):
        data = bytes(range(256)) * 4
        assert xxh64(data[:n]) == xxhash.xxh64_intdigest(data[:n])
        assert xxh64(data[:n], 7) == xxhash.xxh64_intdigest(data[:n], seed=7)


def test_key_types():
    idx = ChunkIndex()
    idx[b"bytes-key"] = b"1"
    assert idx["bytes-key"] == b"1"
    with pytest.raises(TypeError):
        idx[3] = b"x"
    with pytest.raises(chunkview.ReferenceFormatError):
        idx["\udc80"] = b"x"  # lone surrogate: not encodable as UTF-8
    with pytest.raises(chunkview.ReferenceFormatError):
        idx["k"] = ["u", -1, 5]
    with pytest.raises(chunkview.ReferenceFormatError):
        idx["k"] = ["u", 1]


def test_many_urls_widen():
    idx = ChunkIndex()
    for i in range(70_000):
        idx[f"k{i}"] = [f"s3://b/{i}.nc", i, 1]
    assert idx["k69999"] == ["s3://b/69999.nc", 69999, 1]
    assert len(idx.urls) == 70_000
    again = pickle.loads(pickle.dumps(idx))
    assert again["k300"] == ["s3://b/300.nc", 300, 1]


def test_lookup_many_parallel():
    """Batches of PARALLEL_MIN keys or more are looked up by several threads: the result equals
    the one-thread lookup for lists, tuples and numpy string arrays (items made on the fly),
    with found, inline, whole-file and missing keys; a corrupt record still raises."""
    from chunkview._index import PARALLEL_MIN

    n = PARALLEL_MIN + 7_000
    idx = ChunkIndex()
    for i in range(0, n, 2):
        idx.set(f"k/{i}", f"file:///x{i % 3}.bin", i * 10, 10)
    for i in range(1, n, 6):
        idx.set_inline(f"k/{i}", b"x" * (i % 7))
    idx.set("whole", "s3://b/w.nc")
    idx.shrink()
    keys = [f"k/{i}" for i in range(n)] + ["whole", "nope"]
    one = idx.lookup_many(keys, threads=1)
    assert one[0][-1] == MISSING and one[0][-2] == idx.urls.index("s3://b/w.nc")
    assert one[2][-2] == WHOLE and (one[0][1:n:6] == INLINE).all()
    assert one[1][2:n:2].tolist() == list(range(20, n * 10, 20))
    for ks in (keys, tuple(keys), np.array(keys)):
        for threads in (None, 2, 3):
            got = idx.lookup_many(ks, threads=threads)
            assert all((a == b).all() for a, b in zip(got, one)), (type(ks), threads)
    # a record whose URL id is out of range (checksums made consistent): every path raises
    data = bytearray(idx.tobytes())
    at = data.index(bytes([7, 7]) + b"k/12346")  # klen 7, value padded to 7 bytes
    data[at + 2 + 7] = 0x7F
    bad = ChunkIndex.frombytes(_resign(data))
    for threads in (1, 2):
        with pytest.raises(chunkview.ReferenceFormatError, match="batch lookup"):
            bad.lookup_many(keys, threads=threads)


def test_lookup_many_in_slices_matches_single_lookups():
    """Batch lookups longer than one slice handed to C (4096 keys), lists and tuples, present,
    inline and missing keys interleaved, agree with one lookup at a time."""
    idx = ChunkIndex()
    n = 10_000
    for i in range(0, n, 2):
        idx.set(f"k/{i}", "file:///x.bin", i * 10, 10)
    for i in range(1, n, 6):
        idx.set_inline(f"k/{i}", b"x" * (i % 7))
    keys = [f"k/{i}" for i in range(n)]
    for ks in (keys, tuple(keys), keys[::-1]):
        ids, offs, lens = idx.lookup_many(ks)
        for k, u, o, ln in zip(ks, ids.tolist(), offs.tolist(), lens.tolist()):
            v = idx.get(k)
            if v is None:
                assert u == MISSING, k
            elif isinstance(v, bytes):
                assert u == INLINE, k
            else:
                assert (idx.urls[u], o, ln) == tuple(v), k
