"""ChunkviewFileSystem against fsspec's ReferenceFileSystem, h5py and zarr."""

import asyncio
import json
import pickle

import fsspec
import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.reference import ReferenceFileSystem

import chunkview
from chunkview.filesystem import ChunkviewFileSystem

h5py = pytest.importorskip("h5py")
zarr = pytest.importorskip("zarr")


class CountingFileSystem(LocalFileSystem):
    """The local filesystem, counting the reads that reach it."""

    protocol = "countfile"
    root_marker = "/"
    reads = 0

    @classmethod
    def _strip_protocol(cls, path):
        if path.startswith("countfile://"):
            path = path[len("countfile://"):]
        return LocalFileSystem._strip_protocol(path)

    def cat_file(self, path, start=None, end=None, **kwargs):
        type(self).reads += 1
        return super().cat_file(path, start=start, end=end, **kwargs)


fsspec.register_implementation("countfile", CountingFileSystem, clobber=True)


def test_entry_point_registration():
    assert fsspec.get_filesystem_class("chunkview") is ChunkviewFileSystem


def h5_datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        f.visititems(visit)
    return out


@pytest.mark.parametrize("form", ["dict", "json", "parquet", "native"])
def test_zarr_reads_identical_to_h5py(form, kc_refs, h5file, tmp_path):
    if form == "dict":
        fo = kc_refs
    else:
        if form == "parquet":
            pytest.importorskip("pyarrow")
        refs = chunkview.load(kc_refs)
        fo = str(tmp_path / {"json": "r.json", "parquet": "r.parq", "native": "r.cvref"}[form])
        refs.save(fo)
    fs = fsspec.filesystem("chunkview", fo=fo)
    g = zarr.open_group(fs.get_mapper(""), mode="r", zarr_format=2)
    expected = h5_datasets(h5file)
    assert expected
    for name, data in expected.items():
        got = g[name][...]
        assert got.dtype == data.dtype, name
        np.testing.assert_array_equal(got, data, err_msg=name)


def test_every_key_equals_fsspec(kc_refs):
    keys = list(kc_refs["refs"])
    ref_fs = ReferenceFileSystem(kc_refs)
    fs = ChunkviewFileSystem(kc_refs)
    want = ref_fs.cat(keys)
    assert fs.cat(keys) == want
    for k in keys:
        assert fs.cat_file(k) == want[k]
        assert fs.cat_file(k, start=1, end=-1) == ref_fs.cat_file(k, start=1, end=-1)
        assert fs.cat_file(k, start=-3) == ref_fs.cat_file(k, start=-3)
    starts = [1] * len(keys)
    ends = [5] * len(keys)
    assert fs.cat_ranges(keys, starts, ends) == [want[k][1:5] for k in keys]


def test_cat_merges_nearby_ranges(kc_many_refs, many_h5):
    refs = chunkview.load(kc_many_refs)
    url = refs.urls[0]
    countfile = "countfile://" + fsspec.implementations.local.make_path_posix(
        url.replace("file://", ""))
    refs.index.replace_urls([countfile if u == url else u for u in refs.urls])
    fs = ChunkviewFileSystem(refs)
    keys = [k for k in refs if k.startswith("obs/") and not k.endswith((".zarray", ".zattrs"))]
    assert len(keys) > 1000
    CountingFileSystem.reads = 0
    data = fs.cat(keys)
    assert len(data) == len(keys)
    assert 0 < CountingFileSystem.reads < len(keys) / 50
    plain = ReferenceFileSystem(kc_many_refs)
    assert data == plain.cat(keys)
    # no merging when max_gap < 0
    fs2 = ChunkviewFileSystem(refs, max_gap=-1)
    CountingFileSystem.reads = 0
    fs2.cat(keys[:50])
    assert CountingFileSystem.reads == 50


def test_missing_key_and_unreachable_target(kc_refs, tmp_path):
    doc = json.loads(json.dumps(kc_refs))
    key = next(k for k, v in doc["refs"].items() if isinstance(v, list))
    doc["refs"][key] = [str(tmp_path / "gone.h5"), 100, 50]
    fs = ChunkviewFileSystem(doc)
    with pytest.raises(FileNotFoundError, match="no/such/key"):
        fs.cat_file("no/such/key")
    with pytest.raises(FileNotFoundError, match="no/such/key"):
        fs.cat(["no/such/key"])
    with pytest.raises(chunkview.FetchError) as exc:
        fs.cat_file(key)
    msg = str(exc.value)
    assert key in msg and "gone.h5" in msg and "100-150" in msg
    assert not isinstance(exc.value, FileNotFoundError)  # zarr must not read fill values
    other = next(k for k, v in doc["refs"].items() if isinstance(v, list) and k != key)
    out = fs.cat([key, other], on_error="return")
    assert isinstance(out[key], chunkview.FetchError) and isinstance(out[other], bytes)
    assert list(fs.cat([key, other, "nope"], on_error="omit")) == [other]
    with pytest.raises(chunkview.FetchError):
        fs.cat([key, other])
    # zarr surfaces the error instead of returning fill values
    g = zarr.open_group(fs.get_mapper(""), mode="r", zarr_format=2)
    with pytest.raises(Exception) as zexc:
        g[key.split("/")[0]][...]
    assert "gone.h5" in repr(zexc.value) or "gone.h5" in repr(zexc.value.__cause__)


def test_truncated_target_is_an_error(kc_refs, h5file, tmp_path):
    short = tmp_path / "short.h5"
    data = h5file.read_bytes()
    short.write_bytes(data[: len(data) // 2])
    doc = json.loads(json.dumps(kc_refs).replace(str(h5file), str(short)))
    fs = ChunkviewFileSystem(doc)
    last = max((v[1], k) for k, v in doc["refs"].items() if isinstance(v, list) and len(v) == 3)
    with pytest.raises(chunkview.FetchError, match="short read"):
        fs.cat_file(last[1])


def test_listing_info_find(kc_refs):
    fs = ChunkviewFileSystem(kc_refs)
    ref_fs = ReferenceFileSystem(kc_refs)
    assert fs.ls("", detail=False) == sorted(ref_fs.ls("", detail=False))
    assert fs.ls("group", detail=False) == sorted(ref_fs.ls("group", detail=False))
    assert fs.isdir("group") and fs.isdir("group/inner") and not fs.isdir("t2m/.zarray")
    assert fs.exists("t2m/.zarray") and fs.exists("t2m") and not fs.exists("nope")
    assert fs.isfile("t2m/.zarray") and not fs.isfile("t2m")
    assert fs.find("t2m") == sorted(k for k in kc_refs["refs"] if k.startswith("t2m/"))
    assert fs.find("") == sorted(kc_refs["refs"])
    for k in ("t2m/0.0.0", ".zgroup"):
        assert fs.info(k) == ref_fs.info(k)
    assert fs.info("group")["type"] == "directory"
    with pytest.raises(FileNotFoundError):
        fs.info("nope")
    with pytest.raises(FileNotFoundError):
        fs.ls("nope")
    with fs.open("t2m/0.0.0", "rb") as f:
        assert f.read() == ref_fs.cat_file("t2m/0.0.0")
    with fs.open(".zgroup") as f:
        assert json.loads(f.read())["zarr_format"] == 2


def test_whole_file_reference(h5file):
    fs = ChunkviewFileSystem({"whole": [str(h5file)], "part": [str(h5file), 8, 8]})
    data = h5file.read_bytes()
    assert fs.cat_file("whole") == data
    assert fs.cat_file("whole", start=10, end=20) == data[10:20]
    assert fs.info("whole")["size"] == len(data)
    assert fs.cat(["whole", "part"]) == {"whole": data, "part": data[8:16]}
    with fs.open("whole") as f:
        f.seek(100)
        assert f.read(10) == data[100:110]


def test_target_and_remote_options(kc_refs, h5file):
    doc = json.loads(json.dumps(kc_refs))
    for v in doc["refs"].values():
        if isinstance(v, list):
            v[0] = None
    fs = ChunkviewFileSystem(doc, target=str(h5file))
    ref_fs = ReferenceFileSystem(kc_refs)
    assert fs.cat_file("t2m/0.0.0") == ref_fs.cat_file("t2m/0.0.0")
    # an explicit per-protocol filesystem dict
    fs2 = ChunkviewFileSystem(kc_refs, fs={"file": LocalFileSystem()})
    assert fs2.cat_file("t2m/0.0.0") == ref_fs.cat_file("t2m/0.0.0")


def test_pickle_and_json_round_trip(kc_refs, tmp_path):
    fs = ChunkviewFileSystem(kc_refs)
    fs2 = pickle.loads(pickle.dumps(fs))
    assert fs2.cat_file("t2m/0.0.0") == fs.cat_file("t2m/0.0.0")
    fs3 = fsspec.AbstractFileSystem.from_json(fs.to_json())
    assert fs3.cat_file("t2m/0.0.0") == fs.cat_file("t2m/0.0.0")
    p = tmp_path / "r.json"
    chunkview.load(kc_refs).save(p)
    fs4 = fsspec.AbstractFileSystem.from_json(ChunkviewFileSystem(str(p)).to_json())
    assert fs4.cat_file("t2m/0.0.0") == fs.cat_file("t2m/0.0.0")


def test_asynchronous_instance(kc_refs):
    async def main():
        fs = ChunkviewFileSystem(kc_refs, asynchronous=True)
        a = await fs._cat_file("t2m/0.0.0")
        b = await fs._cat_ranges(["t2m/0.0.0", "t2m/0.0.1"], [0, 0], [10, 10])
        info = await fs._info("t2m/0.0.0")
        return a, b, info

    a, b, info = asyncio.run(main())
    ref_fs = ReferenceFileSystem(kc_refs)
    assert a == ref_fs.cat_file("t2m/0.0.0")
    assert b[0] == a[:10] and len(b[1]) == 10
    assert info["size"] == len(a)


def test_url_chained(kc_refs, tmp_path):
    p = tmp_path / "r.json"
    chunkview.load(kc_refs).save(p)
    m = fsspec.get_mapper("chunkview://", fo=str(p))
    assert json.loads(m[".zgroup"])["zarr_format"] == 2
    with fsspec.open("chunkview://t2m/.zarray", fo=str(p)) as f:
        assert json.loads(f.read())["chunks"] == [2, 16, 20]


from fsspec.tests.abstract import AbstractFixtures  # noqa: E402
from fsspec.tests.abstract.pipe import AbstractPipeTests  # noqa: E402


class TestChunkviewPipe(AbstractFixtures, AbstractPipeTests):
    """fsspec's own conformance tests that apply to a read-mostly reference filesystem."""

    @pytest.fixture
    def fs(self, kc_refs):
        return ChunkviewFileSystem(kc_refs)

    @pytest.fixture
    def fs_path(self):
        return "scratch"

    @pytest.fixture
    def fs_join(self):
        return lambda *a: "/".join(a)


def test_relative_urls_go_through_remote_protocol():
    """A URL without a protocol that is not an absolute path is read through
    ``remote_protocol`` by fsspec's ReferenceFileSystem, chunkview.open and (through the one
    resolver, chunkview.io.resolve) the chunkview filesystem alike."""
    mem = fsspec.filesystem("memory")
    data = np.arange(16, dtype="<i4")
    mem.pipe("/cv-relative/a.bin", b"xxxx" + data.tobytes())
    refs = {"version": 1, "refs": {
        ".zgroup": json.dumps({"zarr_format": 2}),
        "a/.zarray": json.dumps({"zarr_format": 2, "shape": [16], "chunks": [16],
                                 "dtype": "<i4", "compressor": None, "filters": None,
                                 "order": "C", "fill_value": 0}),
        "a/0": ["cv-relative/a.bin", 4, 64],
    }}
    want = fsspec.filesystem("reference", fo=refs, remote_protocol="memory").cat_file("a/0")
    assert want == data.tobytes()
    fs = fsspec.filesystem("chunkview", fo=refs, remote_protocol="memory",
                           skip_instance_cache=True)
    assert fs.cat_file("a/0") == want
    assert fs.cat_file("a/0", start=4, end=8) == want[4:8]
    np.testing.assert_array_equal(chunkview.open(refs, remote_protocol="memory")["a"][:], data)
    # without remote_protocol it is a local path (relative to the working directory), as for
    # fsspec: a missing file, reported with the key
    with pytest.raises(chunkview.FetchError, match="a/0"):
        fsspec.filesystem("chunkview", fo=refs, skip_instance_cache=True).cat_file("a/0")


def test_read_options_are_shared():
    """The filesystem, the zarr store and chunkview.open take one ReadOptions: the same
    defaults (max_gap 1 MiB for all) and the same checks of what is passed."""
    from chunkview.options import ReadOptions
    from chunkview.zarr_store import ReferenceStore

    refs = {".zgroup": json.dumps({"zarr_format": 2})}
    fs = ChunkviewFileSystem(refs)
    store = ReferenceStore(refs)
    group = chunkview.open(refs)
    assert fs.read == ReadOptions() == store.source.opts == group._source.opts
    assert fs.read.max_gap == 1 << 20
    fs2 = ChunkviewFileSystem(refs, max_gap=10, retries=0, skip_instance_cache=True)
    assert (fs2.read.max_gap, fs2.read.retries) == (10, 0)
    for make in (lambda **kw: ChunkviewFileSystem(refs, skip_instance_cache=True, **kw),
                 lambda **kw: ReferenceStore(refs, **kw),
                 lambda **kw: chunkview.open(refs, **kw)):
        with pytest.raises(ValueError, match="check_source"):
            make(check_source="sometimes")
