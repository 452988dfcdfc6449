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
