"""The read path: chunkview.open (direct arrays) and the C batch decoder against numpy and h5py;
bad chunks and files; threads."""

import base64
import json
import threading
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chunkview
from chunkview import _decode
from chunkview.errors import ChunkviewError, DecodeError, FetchError

import make_testdata


def inline(data: bytes) -> str:
    return "base64:" + base64.b64encode(data).decode()


def chunked_refs(a: np.ndarray, chunks, *, codec="zlib+shuffle", missing=(), fill=None,
                 order="C", name="a"):
    """An in-memory reference set holding array a cut into chunks (edge chunks padded to the
    full chunk shape, as zarr and HDF5 store them), encoded with stdlib zlib."""
    grid = [-(-s // c) for s, c in zip(a.shape, chunks)]
    filters = None
    compressor = None
    if codec == "zlib+shuffle":
        filters = [{"id": "shuffle", "elementsize": a.dtype.itemsize}]
        compressor = {"id": "zlib", "level": 1}
    elif codec == "gzip":
        compressor = {"id": "gzip", "level": 1}
    elif codec == "bz2":
        compressor = {"id": "bz2", "level": 1}
    refs = {".zgroup": json.dumps({"zarr_format": 2}),
            f"{name}/.zarray": json.dumps({
                "zarr_format": 2, "shape": list(a.shape), "chunks": list(chunks),
                "dtype": a.dtype.str, "order": order, "compressor": compressor,
                "filters": filters, "fill_value": fill}),
            f"{name}/.zattrs": json.dumps({"long_name": "test"})}
    for idx in np.ndindex(*grid):
        if idx in missing:
            continue
        block = np.zeros(chunks, dtype=a.dtype)
        sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, a.shape))
        block[tuple(slice(0, x.stop - x.start) for x in sl)] = a[sl]
        raw = block.tobytes(order=order)
        if codec == "zlib+shuffle":
            data = zlib.compress(bytes(_decode.shuffle(raw, a.dtype.itemsize)), 1)
        elif codec == "gzip":
            import gzip

            data = gzip.compress(raw, 1)
        elif codec == "bz2":
            import bz2

            data = bz2.compress(raw, 1)
        else:
            data = raw
        key = ".".join(map(str, idx)) if idx else "0"
        refs[f"{name}/{key}"] = inline(data)
    return {"version": 1, "refs": refs}


@st.composite
def index_for(draw, shape):
    sel = []
    for n in shape:
        kind = draw(st.sampled_from(["slice", "slice", "int", "neg"]))
        if kind == "int":
            sel.append(draw(st.integers(-n, n - 1)))
        else:
            a = draw(st.integers(-n - 2, n + 2) | st.none())
            b = draw(st.integers(-n - 2, n + 2) | st.none())
            step = draw(st.integers(1, 5))
            sel.append(slice(a, b, -step if kind == "neg" else step))
    return tuple(sel)


@st.composite
def array_case(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 13)) for _ in range(ndim))
    chunks = tuple(draw(st.integers(1, 6)) for _ in range(ndim))
    dtype = draw(st.sampled_from(["<f4", ">i2", "<u8", "|u1", "<c8", ">f8"]))
    codec = draw(st.sampled_from(["zlib+shuffle", "gzip", "none"]))
    order = draw(st.sampled_from(["C", "C", "F"]))
    sel = draw(index_for(shape))
    return shape, chunks, dtype, codec, order, sel


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array_case(), st.integers(1, 3))
def test_selections_match_numpy(case, threads):
    shape, chunks, dtype, codec, order, sel = case
    a = (np.arange(int(np.prod(shape))) * 7 % 251).astype(dtype).reshape(shape)
    g = chunkview.open(chunked_refs(a, chunks, codec=codec, order=order), threads=threads)
    got = g["a"][sel]
    want = a[sel]
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_missing_chunks_get_fill_value():
    a = np.arange(60, dtype="<i4").reshape(6, 10)
    refs = chunked_refs(a, (4, 4), missing={(0, 1), (1, 2)}, fill=-5)
    got = chunkview.open(refs)["a"][...]
    want = a.copy()
    want[0:4, 4:8] = -5
    want[4:6, 8:10] = -5
    np.testing.assert_array_equal(got, want)
    # null fill value: zeros, as zarr reads it
    refs = chunked_refs(a.astype("<f8"), (4, 4), missing={(0, 0)}, fill=None)
    got = chunkview.open(refs)["a"][...]
    assert (got[:4, :4] == 0).all()
    refs = chunked_refs(a.astype("<f8"), (4, 4), missing={(0, 0)}, fill="NaN")
    assert np.isnan(chunkview.open(refs)["a"][:4, :4]).all()


def test_read_into_out_and_scalars():
    a = np.arange(7 * 9, dtype="<f4").reshape(7, 9)
    arr = chunkview.open(chunked_refs(a, (3, 4)))["a"]
    assert arr.shape == (7, 9) and arr.chunks == (3, 4) and arr.dtype == np.dtype("<f4")
    assert arr.attrs == {"long_name": "test"} and arr.nchunks == 9 and len(arr) == 7
    big = np.full((9, 7), -1, dtype="<f4")
    out = big.T  # Fortran-strided view
    assert arr.read(out=out) is out
    np.testing.assert_array_equal(big.T, a)
    np.testing.assert_array_equal(np.asarray(arr), a)
    assert arr[3, 4] == a[3, 4] and isinstance(arr[3, 4], np.floating)
    with pytest.raises(ValueError, match="shape"):
        arr.read(out=np.empty((7, 8), "<f4"))
    with pytest.raises(ValueError, match="dtype"):
        arr.read(out=np.empty((7, 9), "<f8"))
    with pytest.raises(IndexError):
        arr[7, 0]
    with pytest.raises(IndexError, match="fancy"):
        arr[[1, 2]]
    assert arr[2:2].shape == (0, 9)


def test_fallback_codec_matches():
    a = np.arange(1000, dtype="<i8").reshape(10, 100)
    g = chunkview.open(chunked_refs(a, (3, 33), codec="bz2"))
    assert not g["a"].pipeline.fast
    np.testing.assert_array_equal(g["a"][1:9, 5:90:3], a[1:9, 5:90:3])


# ------------------------------------------------------------------ against h5py


def test_h5py_datasets(h5file, kc_refs):
    import h5py

    g = chunkview.open(kc_refs)
    assert set(g) >= {"t2m", "counts", "plain", "raw_chunks", "sparse", "scalar", "group"}
    with h5py.File(h5file) as f:
        for name in ["t2m", "counts", "plain", "raw_chunks", "sparse", "scalar", "group/inner"]:
            np.testing.assert_array_equal(g[name][...], f[name][()])
        t = g["t2m"]
        assert t.attrs["units"] == "K"
        np.testing.assert_array_equal(t[1:5, ::3, 7], f["t2m"][1:5, ::3, 7])
        np.testing.assert_array_equal(t[-1, 30:5:-4, ::7], f["t2m"][()][-1, 30:5:-4, ::7])
        np.testing.assert_array_equal(g["group"]["inner"][2:7, 1], f["group/inner"][2:7, 1])


@pytest.fixture(scope="module")
def filters_file(tmp_path_factory):
    pytest.importorskip("h5py")
    path = make_testdata.make_filters(tmp_path_factory.mktemp("filters") / "filters.h5")
    return path, make_testdata.h5_refs(path, ["f32", "i16", "c16", "masked"])


def test_fletcher32_masks_bigendian_complex(filters_file):
    import h5py

    path, refs = filters_file
    assert "masked/.cvmask" in refs["refs"]
    g = chunkview.open(refs)
    assert g["f32"].pipeline.steps[0][0] == "fletcher32"
    with h5py.File(path) as f:
        for name in ["f32", "i16", "c16", "masked"]:
            got = g[name][...]
            np.testing.assert_array_equal(got, f[name][()])
            assert got.dtype == f[name].dtype
        assert list(g["masked"][20:40:3]) == list(f["masked"][20:40:3])


def _corrupt_copy(path, tmp_path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    out = tmp_path / "corrupt.h5"
    out.write_bytes(bytes(data))
    return out


def test_corrupt_chunk_names_key_url_range(filters_file, tmp_path):
    path, refs = filters_file
    key = "f32/1.2"
    url, off, size = refs["refs"][key]
    bad = _corrupt_copy(path, tmp_path, off + size // 2)
    refs2 = json.loads(json.dumps(refs).replace(path.resolve().as_uri(), bad.resolve().as_uri()))
    g = chunkview.open(refs2)
    with pytest.raises(DecodeError) as ei:
        g["f32"][...]
    msg = str(ei.value)
    assert key in msg and bad.name in msg and f"bytes {off}-{off + size}" in msg
    assert "fletcher32" in msg
    assert ei.value.key == key and ei.value.start == off and ei.value.end == off + size
    # other chunks still read
    np.testing.assert_array_equal(g["f32"][0:10, 0:7], chunkview.open(refs)["f32"][0:10, 0:7])


def test_corrupt_stream_without_checksum(tmp_path):
    a = np.arange(100, dtype="<i4")
    refs = chunked_refs(a, (10,))
    good = base64.b64decode(refs["refs"]["a/3"][7:])
    for bad in (good[:-5], good[:2] + bytes(len(good) - 2), zlib.compress(bytes(1000))):
        refs["refs"]["a/3"] = inline(bad)
        with pytest.raises(DecodeError, match="'a/3'"):
            chunkview.open(refs)["a"][...]


def test_truncated_and_missing_files(h5file, kc_refs, tmp_path):
    cut = tmp_path / "cut.h5"
    data = h5file.read_bytes()
    key = "t2m/2.1.1"
    _, off, size = kc_refs["refs"][key]
    cut.write_bytes(data[: off + size // 2])
    refs = json.loads(json.dumps(kc_refs).replace(str(h5file), str(cut)))
    with pytest.raises(ChunkviewError, match="shorter") as ei:
        chunkview.open(refs)["t2m"][...]
    assert key in str(ei.value) or "t2m/" in str(ei.value)
    gone = json.loads(json.dumps(kc_refs).replace(str(h5file), str(tmp_path / "nope.h5")))
    with pytest.raises(FetchError, match="nope.h5"):
        chunkview.open(gone)["t2m"][...]


def test_thread_stress_same_group(h5file, kc_refs):
    import h5py

    with h5py.File(h5file) as f:
        full = f["t2m"][()]
    g = chunkview.open(kc_refs, threads=2)
    arr = g["t2m"]
    sels = [(slice(i % 6, None), slice(i % 7, 40 - i % 5, 1 + i % 3), slice(None, None, -1 - i % 2))
            for i in range(16)]
    want = [arr.read(s, threads=1) for s in sels]
    for s, w in zip(sels, want):
        np.testing.assert_array_equal(w, full[s])
    n = 8
    barrier = threading.Barrier(n)
    errors = []

    def worker(t):
        try:
            barrier.wait()
            for r in range(20):
                i = (t * 5 + r) % len(sels)
                got = arr.read(sels[i])
                if not np.array_equal(got, want[i]):
                    errors.append((t, i))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ths = [threading.Thread(target=worker, args=(t,)) for t in range(n)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert errors == []


# ------------------------------------------------------------------ the batch call itself


def test_decode_batch_checks_arguments():
    out = np.zeros((4, 4), "<i4")
    sel = np.array([[[0, 1, 4], [0, 1, 4]]], np.int64)
    raw = np.arange(16, dtype="<i4").tobytes()
    args = dict(bufs=[raw], buf_index=np.zeros(1, np.int32), offsets=np.zeros(1, np.int64),
                lengths=np.array([64], np.int64))

    def call(**kw):
        a = {**args, **kw}
        return _decode.decode_batch(kw.get("chunk", (4, 4)), kw.get("itemsize", 4), [], kw.get(
            "out", out), kw.get("out_offsets", np.zeros(1, np.int64)), kw.get("sel", sel),
            a["bufs"], a["buf_index"], a["offsets"], a["lengths"])

    assert call() == []
    np.testing.assert_array_equal(out.ravel(), np.arange(16))
    with pytest.raises(ValueError, match="dimensions"):
        call(out=np.zeros(16, "<i4"))
    with pytest.raises(ValueError, match="read-only"):
        ro = np.zeros((4, 4), "<i4")
        ro.flags.writeable = False
        call(out=ro)
    # a selection outside the chunk or the output, a length past the buffer: per-job errors
    bad_sel = np.array([[[1, 1, 4], [0, 1, 4]]], np.int64)
    assert "outside the chunk" in call(sel=bad_sel)[0][2]
    assert "outside the output" in call(out_offsets=np.array([64], np.int64))[0][2]
    assert "shorter" in call(lengths=np.array([65], np.int64))[0][2]
    assert "decoded size" in call(lengths=np.array([60], np.int64))[0][2]


def test_codecs_registered_and_hdf5_semantics():
    import numcodecs

    sh = numcodecs.get_codec({"id": "hdf5_shuffle", "elementsize": 4})
    data = bytes(range(11))  # 2 elements + 3 trailing bytes
    enc = sh.encode(data)
    assert enc[-3:] == data[-3:] and sh.decode(enc) == data
    fl = numcodecs.get_codec({"id": "hdf5_fletcher32"})
    enc = fl.encode(b"hello world")
    assert fl.decode(enc) == b"hello world"
    from numcodecs.fletcher32 import Fletcher32

    assert enc == bytes(Fletcher32().encode(np.frombuffer(b"hello world", "u1")))
    # the byte order of HDF5 before 1.6.3 is accepted too
    c = int.from_bytes(enc[-4:], "little")
    swapped = ((c & 0x00FF00FF) << 8) | ((c >> 8) & 0x00FF00FF)
    assert fl.decode(b"hello world" + swapped.to_bytes(4, "little")) == b"hello world"
    with pytest.raises(DecodeError):
        fl.decode(b"hello worle" + enc[-4:])


def test_non_local_urls_go_through_fsspec(h5file, kc_refs):
    """URLs of another fsspec protocol (here fsspec's in-memory filesystem) are fetched
    through it, nearby ranges merged into one request; results match h5py, for the direct API
    and zarr."""
    import fsspec
    import h5py

    mem = fsspec.filesystem("memory")
    mem.pipe("/bench/small.h5", h5file.read_bytes())
    text = json.dumps(kc_refs).replace(str(h5file), "memory://bench/small.h5")
    refs = json.loads(text)
    calls = []
    orig = type(mem).cat_file

    def counting(self, path, start=None, end=None, **kw):
        calls.append((start, end))
        return orig(self, path, start=start, end=end, **kw)

    type(mem).cat_file = counting
    try:
        g = chunkview.open(refs, max_gap=1 << 20)
        with h5py.File(h5file) as f:
            np.testing.assert_array_equal(g["t2m"][...], f["t2m"][()])
            assert 0 < len(calls) < g["t2m"].nchunks  # merged into fewer requests
            np.testing.assert_array_equal(chunkview.open_zarr(refs)["counts"][2:9, ::5],
                                          f["counts"][2:9, ::5])
    finally:
        type(mem).cat_file = orig
        mem.rm("/bench", recursive=True)
