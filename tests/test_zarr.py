"""zarr-python 3 integration: ReferenceStore (zarr's own store conformance tests), the codec
pipeline and open_zarr against h5py."""

import json

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
from zarr.core.buffer import cpu, default_buffer_prototype  # noqa: E402
from zarr.testing.store import StoreTests  # noqa: E402

import chunkview  # noqa: E402
from chunkview.errors import DecodeError  # noqa: E402
from chunkview.zarr_store import CodecPipeline, ReferenceStore  # noqa: E402

import make_testdata  # noqa: E402
from test_read import chunked_refs  # noqa: E402


class TestReferenceStore(StoreTests[ReferenceStore, cpu.Buffer]):
    store_cls = ReferenceStore
    buffer_cls = cpu.Buffer

    async def set(self, store, key, value):
        store.refs[key] = value.to_bytes()

    async def get(self, store, key):
        return self.buffer_cls.from_bytes(store.refs[key])

    @pytest.fixture
    def store_kwargs(self):
        return {"refs": {"version": 1, "refs": {}}, "read_only": False}

    def test_store_repr(self, store):
        assert "ReferenceStore" in repr(store)

    def test_store_supports_writes(self, store):
        assert store.supports_writes

    def test_store_supports_listing(self, store):
        assert store.supports_listing


async def test_store_serves_ranges_of_files(h5file, kc_refs):
    store = ReferenceStore(kc_refs, coalesce=0)  # chunks as stored, not virtual
    assert store.read_only
    _, off, size = kc_refs["refs"]["t2m/0.0.0"]
    raw = h5file.read_bytes()[off:off + size]
    proto = default_buffer_prototype()
    got = await store.get("t2m/0.0.0", proto)
    assert got.to_bytes() == raw
    from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest

    res = await store.get_partial_values(proto, [
        ("t2m/0.0.0", RangeByteRequest(3, 10)), ("t2m/0.0.0", OffsetByteRequest(5)),
        ("t2m/0.0.0", SuffixByteRequest(4)), ("nope", None), (".zgroup", None)])
    assert res[0].to_bytes() == raw[3:10] and res[1].to_bytes() == raw[5:]
    assert res[2].to_bytes() == raw[-4:] and res[3] is None
    assert json.loads(res[4].to_bytes()) == {"zarr_format": 2}
    assert await store.getsize("t2m/0.0.0") == size
    with pytest.raises(ValueError):
        await store.set("x", cpu.Buffer.from_bytes(b"1"))
    assert sorted([k async for k in store.list_dir("")])[:3] == [".zattrs", ".zgroup", "counts"]


def _async(a):
    """The AsyncArray behind a zarr Array (``async_array`` since zarr 3.1.3, ``_async_array``
    before)."""
    return getattr(a, "async_array", None) or a._async_array


def test_open_zarr_matches_h5py(h5file, kc_refs):
    import h5py

    g = chunkview.open_zarr(kc_refs)
    assert isinstance(g, zarr.Group)
    with h5py.File(h5file) as f:
        for name in ["t2m", "counts", "plain", "raw_chunks", "sparse", "scalar", "group/inner"]:
            a = g[name]
            assert isinstance(_async(a).codec_pipeline, CodecPipeline)
            np.testing.assert_array_equal(a[...], f[name][()])
        t = g["t2m"]
        assert _async(t).codec_pipeline._cv_steps is not None  # the C path
        np.testing.assert_array_equal(t[1:5, ::3, 7], f["t2m"][1:5, ::3, 7])
        np.testing.assert_array_equal(t[2, 5:33:4], f["t2m"][2, 5:33:4])
        # fancy selections go through zarr's own pipeline, still correct
        np.testing.assert_array_equal(t.oindex[[0, 2, 5], :, [1, 3]],
                                      f["t2m"][()][[0, 2, 5]][:, :, [1, 3]])
        np.testing.assert_array_equal(t.vindex[[0, 1], [2, 3], [4, 5]],
                                      f["t2m"][()][[0, 1], [2, 3], [4, 5]])


def test_open_zarr_fletcher32_masks(tmp_path):
    pytest.importorskip("h5py")
    import h5py

    path = make_testdata.make_filters(tmp_path / "filters.h5")
    refs = make_testdata.h5_refs(path, ["f32", "i16", "c16", "masked"])
    g = chunkview.open_zarr(refs)
    with h5py.File(path) as f:
        for name in ["f32", "i16", "c16", "masked"]:
            np.testing.assert_array_equal(g[name][...], f[name][()])
    # a corrupt chunk raises DecodeError naming key, URL and range through zarr as well
    url, off, size = refs["refs"]["f32/2.1"]
    data = bytearray(path.read_bytes())
    data[off + 3] ^= 1
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(data))
    refs2 = json.loads(json.dumps(refs).replace(path.resolve().as_uri(), bad.resolve().as_uri()))
    with pytest.raises(DecodeError, match=r"f32/2\.1.*bad\.h5.*bytes %d-%d" % (off, off + size)):
        chunkview.open_zarr(refs2)["f32"][...]


def test_pipeline_defers_for_other_codecs_and_stores():
    a = np.arange(300, dtype="<i8").reshape(10, 30)
    g = chunkview.open_zarr(chunked_refs(a, (3, 7), codec="bz2"))
    assert _async(g["a"]).codec_pipeline._cv_steps is None
    np.testing.assert_array_equal(g["a"][2:9, 1::4], a[2:9, 1::4])
    # with chunkview's pipeline configured, a plain MemoryStore array behaves as ever
    m = zarr.open_array(zarr.storage.MemoryStore(), mode="w", shape=(5, 5), chunks=(2, 2),
                        dtype="i4", zarr_format=2)
    m[...] = np.arange(25).reshape(5, 5)
    np.testing.assert_array_equal(m[1:4, ::2], np.arange(25).reshape(5, 5)[1:4, ::2])


def test_open_zarr_fill_and_edges():
    a = np.arange(11 * 13, dtype=">f8").reshape(11, 13)
    refs = chunked_refs(a, (4, 5), missing={(1, 1)}, fill=-1.5)
    g = chunkview.open_zarr(refs)
    want = a.copy()
    want[4:8, 5:10] = -1.5
    np.testing.assert_array_equal(g["a"][...], want)
    np.testing.assert_array_equal(g["a"][10, 3:], want[10, 3:])
    f = chunked_refs(a, (4, 5), order="F")
    np.testing.assert_array_equal(chunkview.open_zarr(f)["a"][1:10:2, 2:], a[1:10:2, 2:])


def test_tiny_chunks_are_coalesced_for_zarr(many_h5, kc_many_refs):
    import h5py

    with h5py.File(many_h5) as f:
        want = f["obs"][()]
    g = chunkview.open_zarr(kc_many_refs)
    a = g["obs"]
    assert a.chunks[0] % 16 == 0 and a.chunks[0] > 16  # virtual chunks of whole stored chunks
    np.testing.assert_array_equal(a[...], want)
    np.testing.assert_array_equal(a[17:70001:13], want[17:70001:13])
    np.testing.assert_array_equal(a.oindex[[0, 15, 16, 79999]], want[[0, 15, 16, 79999]])
    # the store serves a virtual chunk as its decoded stored chunks
    store = a.store_path.store if hasattr(a, "store_path") else a.store
    raw = store.get_sync("obs/0", prototype=default_buffer_prototype())
    assert np.array_equal(np.frombuffer(raw.to_bytes(), "<i4"), want[: a.chunks[0]])
    # a fresh store (as in a dask worker, which never reads .zarray) serves the same bytes
    fresh = ReferenceStore(kc_many_refs)
    assert fresh.get_sync("obs/0", prototype=default_buffer_prototype()) == raw
    # coalesce=0 presents the stored chunks
    g0 = zarr.open_group(ReferenceStore(kc_many_refs, coalesce=0), mode="r", zarr_format=2)
    assert g0["obs"].chunks == (16,)
    np.testing.assert_array_equal(g0["obs"][100:300], want[100:300])


def test_coalesced_fill_and_errors():
    a = np.arange(5000, dtype="<i2")
    refs = chunked_refs(a, (10,), missing={(3,), (4,)} | {(i,) for i in range(100, 500)},
                       fill=-7)
    want = a.copy()
    want[30:50] = -7
    want[1000:] = -7
    g = chunkview.open_zarr(refs)
    assert g["a"].chunks[0] > 10
    np.testing.assert_array_equal(g["a"][...], want)
    store = ReferenceStore(refs)
    vk = g["a"].chunks[0]
    last = (5000 - 1) // vk
    assert store.get_sync(f"a/{last}", prototype=default_buffer_prototype()) is None or \
        vk * last < 1000
    import base64

    refs["refs"]["a/7"] = "base64:" + base64.b64encode(b"\x78\x9c garbage").decode()
    with pytest.raises(DecodeError, match="'a/7'"):
        chunkview.open_zarr(refs)["a"][...]
