"""ChunkviewFileSystem as a drop-in for fsspec's ReferenceFileSystem.

Each test does what a user of ``ReferenceFileSystem`` does, on both filesystems, and asserts
the same answer (fsspec's own ``test_reference.py`` passes against ChunkviewFileSystem except
where noted in the issue notes: tests of fsspec's internals, the internet, and templates that
would run code, which chunkview refuses with a clear error).
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

fsspec = pytest.importorskip("fsspec")
from fsspec.implementations.reference import (  # noqa: E402
    LazyReferenceMapper,
    ReferenceFileSystem,
    ReferenceNotReachable,
)

import chunkview  # noqa: E402
from chunkview.errors import ChunkviewError, FetchError, ReferenceFormatError  # noqa: E402
from chunkview.filesystem import ChunkviewFileSystem, ReferenceNotReachableError  # noqa: E402

BOTH = [ReferenceFileSystem, ChunkviewFileSystem]


@pytest.fixture
def mem():
    m = fsspec.filesystem("memory")
    m.store.clear()
    m.pseudo_dirs.clear()
    m.pseudo_dirs.append("")
    yield m
    m.store.clear()


def _fs(cls, **kw):
    return cls(skip_instance_cache=True, **kw)


@pytest.mark.parametrize("cls", BOTH)
def test_walk_glob_find_and_get(cls, tmp_path):
    refs = {"a": b"A", "d/b": b"B", "d/e/c": b"C", "d/e/f": b"F"}
    fs = _fs(cls, fo=refs)
    assert fs.find("", withdirs=True) == ["a", "d", "d/b", "d/e", "d/e/c", "d/e/f"]
    if cls is ChunkviewFileSystem:  # (fsspec's ReferenceFileSystem ignores maxdepth)
        assert fs.find("", maxdepth=1) == ["a"]
        assert fs.find("", maxdepth=2, withdirs=True) == ["a", "d", "d/b", "d/e"]
    assert sorted(fs.glob("d/*")) == ["d/b", "d/e"]
    assert sorted(fs.glob("**/c")) == ["d/e/c"]
    walked = [(root, sorted(dirs), sorted(files)) for root, dirs, files in fs.walk("")]
    assert walked == [("", ["d"], ["a"]), ("d", ["e"], ["b"]), ("d/e", [], ["c", "f"])]
    if cls is ChunkviewFileSystem:  # (fsspec's ReferenceFileSystem.cat does not glob)
        assert fs.cat("d/*") == {"d/b": b"B"}
    fs.get("d", str(tmp_path / "out"), recursive=True)
    assert (tmp_path / "out" / "e" / "c").read_bytes() == b"C"


@pytest.mark.parametrize("cls", BOTH)
def test_ranges_of_whole_file_references(cls, mem):
    other = b"other test data"
    mem.pipe("/b", other)
    fs = _fs(cls, fo={"c": ["memory://b"], "d": ["memory://b", 4, 6]})
    assert fs.cat_file("c") == other
    assert fs.cat_file("c", start=1) == other[1:]
    assert fs.cat_file("c", start=-5) == other[-5:]
    assert fs.cat_file("c", 1, -5) == other[1:-5]
    assert fs.cat_file("d", 1, -3) == other[4:10][1:-3]
    assert fs.cat_ranges(["c", "d", "c"], [1, 0, -4], [-5, 3, None]) == \
        [other[1:-5], other[4:7], other[-4:]]


@pytest.mark.parametrize("cls", BOTH)
def test_urls_without_protocol(cls, mem):
    mem.pipe("/data/x", b"0123456789")
    # remote_protocol names the protocol
    assert _fs(cls, fo={"k": ["data/x", 2, 3]}, remote_protocol="memory").cat("k") == b"234"
    # so does a filesystem handed in
    assert _fs(cls, fo={"k": ["data/x", 2, 3]}, fs=mem).cat("k") == b"234"
    if cls is ChunkviewFileSystem:  # (fsspec reads this one as a local file)
        assert _fs(cls, fo={"k": ["data/x", 2, 3]}, fs={"memory": mem},
                   remote_protocol="memory").cat("k") == b"234"
    # and, with neither, the first protocol the references use
    assert _fs(cls, fo={"a": ["memory://data/x"], "k": ["data/x", 2, 3]}).cat("k") == b"234"


@pytest.mark.parametrize("cls", BOTH)
@pytest.mark.parametrize("compression", ["gzip", "infer"])
def test_compressed_reference_file(cls, mem, compression):
    mem.pipe("/data/0", b"hello")
    mem.pipe("/refs.json.gz", gzip.compress(json.dumps({"a": ["memory://data/0"]}).encode()))
    fs = _fs(cls, fo="memory://refs.json.gz", target_options={"compression": compression})
    assert fs.cat("a") == b"hello"


def test_errors_are_both_kinds(mem):
    mem.pipe("/b", b"other test data")
    fs = _fs(ChunkviewFileSystem, fo={"c": ["memory://b"], "d": ["memory://unknown", 4, 6]})
    with pytest.raises(ReferenceNotReachable) as e:
        fs.cat("d")
    assert isinstance(e.value, FetchError) and isinstance(e.value, ChunkviewError)
    assert isinstance(e.value, ReferenceNotReachableError)
    assert '"d"' in str(e.value) and "memory://unknown" in str(e.value) and "4-10" in str(e.value)
    assert isinstance(e.value.__cause__, FileNotFoundError)
    assert isinstance(fs.cat("d", on_error="return"), ReferenceNotReachable)
    out = fs.cat(["nothere", "c", "d"], on_error="return")
    assert isinstance(out["nothere"], FileNotFoundError) and out["c"] == b"other test data"
    assert isinstance(out["d"], ReferenceNotReachable)
    m = fs.get_mapper("")
    with pytest.raises(KeyError):
        m["nothere"]
    with pytest.raises(ReferenceNotReachable):
        m["d"]
    assert isinstance(m.getitems(["c", "d"], on_error="return")["d"], ReferenceNotReachable)


@pytest.mark.parametrize("cls", BOTH)
def test_mutable_references(cls, mem, tmp_path):
    mem.pipe("/t", b"0123456789")
    fs = _fs(cls, fo={"a": b"data", "b": ["memory://t", 0, 5]})
    fs.rm("a")
    assert not fs.exists("a")
    fs.pipe("aa", b"bin data")
    fs.references["c"] = ["memory://t", 5, 2]
    (tmp_path / "f").write_bytes(b"from a file")
    fs.put_file(str(tmp_path / "f"), "put/one")
    fs.put(str(tmp_path / "f"), "put/two")
    fs.save_json("memory://saved.json")
    again = _fs(cls, fo="memory://saved.json")
    assert not again.exists("a")
    assert again.cat(["aa", "b", "c", "put/one", "put/two"]) == {
        "aa": b"bin data", "b": b"01234", "c": b"56", "put/one": b"from a file",
        "put/two": b"from a file"}


def test_zarr_written_through_the_filesystem_to_parquet(mem):
    """How kerchunk's MultiZarrToZarr and zarr write parquet references: a LazyReferenceMapper
    set, written through the reference filesystem, flushed, read back by fsspec."""
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("pyarrow")
    LazyReferenceMapper.create("memory://out.parq", fs=mem)
    fs = _fs(ChunkviewFileSystem, fo="memory://out.parq", remote_protocol="memory")
    store = zarr.storage.FsspecStore(fs, read_only=False, path="")
    g = zarr.open_group(store, mode="w", zarr_format=2)
    a = g.create_group("instant").create_array(name="one", shape=(3,), chunks=(2,),
                                               dtype="int64")
    a[:] = [1, 2, 3]
    fs.references.flush()
    theirs = ReferenceFileSystem(fo="memory://out.parq", remote_protocol="memory",
                                 skip_instance_cache=True)
    g2 = zarr.open_group(theirs.get_mapper(""), mode="r", zarr_format=2)
    assert g2["instant"]["one"][:].tolist() == [1, 2, 3]
    lz = LazyReferenceMapper("memory://out.parq", fs=mem)
    assert sorted(x["name"] for x in lz.ls("")) == [".zattrs", ".zgroup", ".zmetadata",
                                                   "instant"]


def test_parquet_sets_serve_zmetadata(mem, tmp_path):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("pyarrow")
    za = {"shape": [3], "chunks": [1], "dtype": "<i8", "compressor": None, "filters": None,
          "fill_value": 0, "order": "C", "zarr_format": 2}
    refs = {".zgroup": '{"zarr_format":2}', "x/.zarray": json.dumps(za),
            "x/0": np.int64(5).tobytes(), "x/1": np.int64(6).tobytes(),
            "x/2": np.int64(7).tobytes()}
    chunkview.References.from_dict(refs).save(str(tmp_path / "p.parq"), format="parquet")
    for cls in BOTH:
        fs = _fs(cls, fo=str(tmp_path / "p.parq"))
        assert ".zmetadata" in fs.find("")
        g = zarr.open_consolidated(fs.get_mapper(""), zarr_format=2)
        assert g["x"][:].tolist() == [5, 6, 7]


@pytest.mark.parametrize("cls", BOTH)
def test_template_calls(cls):
    pytest.importorskip("jinja2")
    doc = {"version": 1, "templates": {"u": "server.domain/path", "f": "{{c}}"},
           "refs": {"k2": ["http://{{u}}", 10, 1], "k3": ["http://{{f(c='text')}}", 10, 1]}}
    fs = _fs(cls, fo=doc, simple_templates=False)
    refs = fs.references
    assert refs["k2"] == ["http://server.domain/path", 10, 1]
    assert refs["k3"] == ["http://text", 10, 1]


def test_templates_that_would_run_code_are_refused():
    doc = {"version": 1, "templates": {}, "refs": {},
           "gen": [{"key": "{{ 1 / 0 }}", "url": "file:///dev/null", "dimensions": {"i": [0]}}]}
    with pytest.raises(ReferenceFormatError, match=r"1 / 0.*division by zero"):
        ChunkviewFileSystem(fo=doc, skip_instance_cache=True)
    doc["gen"][0]["key"] = "{{ __import__('os').getpid() }}"
    with pytest.raises(ChunkviewError, match="__import__|Call"):
        ChunkviewFileSystem(fo=doc, skip_instance_cache=True)


def test_fss(mem):
    fs = _fs(ChunkviewFileSystem, fo={})
    assert None in fs.fss
    fs = _fs(ChunkviewFileSystem, fo={}, remote_protocol="memory")
    assert fs.fss[None].protocol == "memory" and fs.fss["memory"].protocol == "memory"
    fs = _fs(ChunkviewFileSystem, fo={}, fs={"memory": mem})
    assert fs.fss["memory"] is mem and fs.fss[None].protocol == ("file", "local")
    fs = _fs(ChunkviewFileSystem, fo={"key": ["memory://a"], "blah": ["path"]})
    assert fs.fss[None] == fs.fss["memory"]


def test_zarr_buffers_as_values():
    """kerchunk's MultiZarrToZarr(...).out holds zarr Buffers where zarr wrote data."""
    pytest.importorskip("zarr")
    from zarr.core.buffer import default_buffer_prototype

    buf = default_buffer_prototype().buffer.from_bytes(b'{"zarr_format":2}')
    for cls in BOTH:
        fs = _fs(cls, fo={".zgroup": buf, "x": b"raw"})
        assert fs.cat(".zgroup") == b'{"zarr_format":2}'
    assert chunkview.load({".zgroup": buf})[".zgroup"] == b'{"zarr_format":2}'


def test_fss_shows_a_synchronous_filesystem_wrapped(mem):
    fs = _fs(ChunkviewFileSystem, fo={}, fs=mem)
    assert fs.fss[None].sync_fs is mem  # as ReferenceFileSystem shows it
    fs = _fs(ChunkviewFileSystem, fo={}, fs={None: mem})
    assert fs.fss[None] is mem
