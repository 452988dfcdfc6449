"""Parquet reference sets (fsspec's LazyReferenceMapper layout): read lazily and in bulk, written
by chunkview; every key checked against fsspec's own ReferenceFileSystem / LazyReferenceMapper
on the same store, and the arrays against h5py reading the HDF5 file itself."""

import contextlib
import json
import pickle
import threading
import warnings

import fsspec
import numpy as np
import pytest
from fsspec.implementations.reference import LazyReferenceMapper, ReferenceFileSystem

import chunkview
from chunkview import References
from chunkview._index import INLINE, MISSING, WHOLE
from chunkview.errors import ReferenceFormatError, ReferenceNotFound
from chunkview.refs.parquet.lazy import LazyParquetReferences
from chunkview.refs.parquet.write import write_parquet

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
h5py = pytest.importorskip("h5py")

pytestmark = [  # upstream noise under pandas 3: fsspec and fastparquet use deprecated pandas parts
    pytest.mark.filterwarnings("ignore:The 'fastparquet' engine is deprecated"),
    pytest.mark.filterwarnings("ignore:The 'future.infer_string' option is deprecated"),
]

H5_ARRAYS = ["chunked", "scalar", "sparse", "contig", "small", "grp/inner", "cube"]


# --------------------------------------------------------------------------- test data


def make_hdf5(path):
    """Datasets of every kind kerchunk translates: chunked + gzip/shuffle, 3-D, scalar, one with
    unwritten chunks, contiguous, tiny (inlined), one in a group."""
    rng = np.random.default_rng(7)
    with h5py.File(path, "w") as f:
        f.create_dataset("chunked", data=rng.normal(size=(60, 40)).astype("f4"), chunks=(10, 10),
                         compression="gzip", shuffle=True)
        f.create_dataset("cube", data=np.arange(9 * 8 * 7, dtype="<i2").reshape(9, 8, 7),
                         chunks=(4, 3, 2), compression="gzip")
        f.create_dataset("scalar", data=np.float64(3.5))
        sparse = f.create_dataset("sparse", shape=(1000,), chunks=(100,), dtype="<i4",
                                  fillvalue=-1, compression="gzip")
        sparse[200:300] = rng.integers(0, 2**31, 100)  # incompressible: a byte range
        sparse[700:800] = rng.integers(0, 2**31, 100)
        sparse[950:960] = 5  # compresses to a few bytes: inline
        f.create_dataset("contig", data=np.arange(1000, dtype="<i8"))
        f.create_dataset("small", data=np.arange(5, dtype="<i2"))
        f.create_group("grp").create_dataset(
            "inner", data=np.arange(20, dtype="u1").reshape(4, 5), chunks=(2, 5))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(h5 path, kerchunk refs dict plus an array of whole-file references, expected arrays)."""
    pytest.importorskip("kerchunk")
    from kerchunk.hdf import SingleHdf5ToZarr

    d = tmp_path_factory.mktemp("pq")
    h5 = make_hdf5(d / "data.h5")
    refs = SingleHdf5ToZarr(str(h5), inline_threshold=100).translate()
    refs = json.loads(json.dumps(refs))
    expected = {}
    with h5py.File(h5) as f:
        for name in H5_ARRAYS:
            expected[name] = f[name][()]
    # "wholes": chunks that are whole files (chunk 2 absent: fill value)
    payload = [bytes([i] * 4) for i in range(3)]
    for i in (0, 1, 3):
        (d / f"whole{i}.bin").write_bytes(bytes([i] * 4))
        refs["refs"][f"wholes/{i}"] = [str(d / f"whole{i}.bin")]
    refs["refs"]["wholes/.zarray"] = json.dumps({
        "shape": [16], "chunks": [4], "dtype": "|u1", "fill_value": 9, "order": "C",
        "filters": None, "compressor": None, "zarr_format": 2})
    refs["refs"]["wholes/.zattrs"] = "{}"
    expected["wholes"] = np.frombuffer(payload[0] + payload[1] + b"\x09" * 4 + b"\x03" * 4,
                                       dtype="u1")
    return h5, refs, expected


def grid_keys(refs):
    """Every chunk key on the grid of every array of a kerchunk dict."""
    out = []
    for k, v in refs["refs"].items():
        if k.endswith("/.zarray"):
            z = json.loads(v)
            field = k[: -len("/.zarray")]
            grid = [-(-s // c) for s, c in zip(z["shape"], z["chunks"], strict=True)] or [1]
            for idx in np.ndindex(*grid):
                out.append(field + "/" + ".".join(map(str, idx)))
    return out


def read_ref(ref):
    """The bytes a reference in fsspec's form stands for (local files)."""
    if isinstance(ref, bytes):
        return ref
    with open(ref[0], "rb") as f:
        if len(ref) == 1:
            return f.read()
        f.seek(ref[1])
        return f.read(ref[2])


def is_meta(key):
    return key.startswith(".z") or "/.z" in key


def same_value(got, want, key=""):
    """A reference equal to kerchunk's dict value (metadata compared as parsed JSON)."""
    if is_meta(key):
        return json.loads(got) == json.loads(want)
    if isinstance(want, str):
        want = want.encode()
    if isinstance(want, bytes) and want.startswith(b"base64:"):
        import base64

        want = base64.b64decode(want[7:])
    if isinstance(got, (bytes, str)) and isinstance(want, bytes):
        return bytes(got) == want
    return [got[0], *map(int, got[1:])] == [want[0], *map(int, want[1:])]


@contextlib.contextmanager
def fsspec_nulls(engine):
    """fsspec's LazyReferenceMapper reads records through pandas and tests ``path is None``;
    pandas 3 turns null strings into NaN, so fsspec serves ``[nan]`` for absent chunks of any
    parquet store (its own too).  Yields True where absent keys can be compared: pandas 2, or
    pandas 3 with the old string inference and the pyarrow engine (fastparquet fixes its string
    mode when imported), False where fsspec cannot tell absent keys."""
    import pandas as pd

    if int(pd.__version__.split(".")[0]) < 3:
        yield True
        return
    if engine != "pyarrow":
        yield False
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ctx = pd.option_context("future.infer_string", False)
            ctx.__enter__()
        except Exception:  # noqa: BLE001 - option removed (pandas 4)
            yield False
            return
    try:
        yield True
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctx.__exit__(None, None, None)


def fsspec_engines():
    out = ["pyarrow"]
    try:
        import fastparquet  # noqa: F401

        out.insert(0, "fastparquet")
    except ImportError:
        pass
    return out


# --------------------------------------------------------------------------- (a) fsspec writes


@pytest.mark.parametrize("record_size", [3, 7, 100_000])
def test_read_fsspec_written_parquet(data, tmp_path, record_size):
    pytest.importorskip("fastparquet")  # refs_to_dataframe writes with fastparquet
    from kerchunk.df import refs_to_dataframe

    _, refs, _ = data
    url = str(tmp_path / "refs.parq")
    refs_to_dataframe(refs, url, record_size=record_size)
    lazy = LazyParquetReferences(url, cache_size=2)
    bulk = lazy.to_references()
    assert isinstance(bulk, References)
    rfs_dict = ReferenceFileSystem(refs)
    rfs_pq = ReferenceFileSystem(url, remote_protocol="file")  # engine fastparquet
    for key, want in refs["refs"].items():
        got = lazy[key]
        assert same_value(got, want, key), key
        assert bulk[key] == got, key
        if is_meta(key):
            assert got == json.dumps(json.loads(want)).encode()
            assert json.loads(rfs_pq.cat(key)) == json.loads(rfs_dict.cat(key))
            continue
        fs_value = rfs_pq.references[key]  # fsspec's own reading of the same store
        assert same_value(got, fs_value if isinstance(fs_value, bytes)
                          else [str(fs_value[0]), *fs_value[1:]]), key
        data_bytes = rfs_dict.cat(key)
        assert rfs_pq.cat(key) == data_bytes, key
        assert read_ref(got) == data_bytes, key
    absent = [k for k in grid_keys(refs) if k not in refs["refs"]]
    assert absent  # sparse and wholes have unwritten chunks
    rfs_pq = ReferenceFileSystem(url, remote_protocol="file")
    rfs_pq.references.engine = "pyarrow"
    with fsspec_nulls("pyarrow") as nulls_ok:
        for key in absent:
            assert key not in lazy and key not in bulk
            assert lazy.get(key) is None
            with pytest.raises(ReferenceNotFound):
                lazy[key]
            with pytest.raises(FileNotFoundError):
                rfs_dict.cat_file(key)
            if nulls_ok:
                assert key not in rfs_pq.references
                with pytest.raises(FileNotFoundError):
                    rfs_pq.cat_file(key)
    # a parquet set serves its .zmetadata file as a key, as fsspec's LazyReferenceMapper does
    assert ".zmetadata" in lazy and ".zmetadata" in bulk
    assert len(lazy) == len(bulk) == len(refs["refs"]) + 1
    assert set(lazy) == set(bulk) == set(refs["refs"]) | {".zmetadata"}
    assert dict(iter(lazy.items())) == dict(iter(bulk.items()))
    assert lazy == bulk and bulk == lazy
    assert lazy.templates == {} and lazy.source == url


def test_fsspec_written_categorical_path_column(data, tmp_path):
    """refs_to_dataframe writes the path column as a pandas categorical (dictionary pages)
    when URLs repeat."""
    pytest.importorskip("fastparquet")
    from kerchunk.df import refs_to_dataframe

    _, refs, _ = data
    url = str(tmp_path / "refs.parq")
    refs_to_dataframe(refs, url, record_size=100_000, categorical_threshold=2)
    lazy = LazyParquetReferences(url)
    for key in ("chunked/0.0", "chunked/5.3", "cube/2.2.3"):
        assert same_value(lazy[key], refs["refs"][key])


# --------------------------------------------------------------------------- (b) we write


@pytest.mark.parametrize("engine", fsspec_engines())
@pytest.mark.parametrize("record_size", [5, 100_000])
def test_written_parquet_read_by_fsspec(data, tmp_path, engine, record_size):
    zarr = pytest.importorskip("zarr")
    _, refs, expected = data
    refs_obj = References.from_dict(refs)
    url = str(tmp_path / "out.parq")
    write_parquet(refs_obj, url, record_size=record_size)
    rfs_dict = ReferenceFileSystem(refs)
    rfs = ReferenceFileSystem(url, remote_protocol="file")
    assert isinstance(rfs.references, LazyReferenceMapper)
    rfs.references.engine = engine
    with fsspec_nulls(engine) as nulls_ok:
        for key in refs["refs"]:
            if is_meta(key):
                assert json.loads(rfs.cat(key)) == json.loads(rfs_dict.cat(key)), key
            else:
                assert rfs.cat_file(key) == rfs_dict.cat_file(key), key
        absent = [k for k in grid_keys(refs) if k not in refs["refs"]]
        if nulls_ok:
            for key in absent:
                assert key not in rfs.references
                with pytest.raises(FileNotFoundError):
                    rfs.cat_file(key)
        g = zarr.open_group(rfs.get_mapper(""), mode="r", zarr_format=2)
        for name, want in expected.items():
            if not nulls_ok and any(k.startswith(name + "/") for k in absent):
                continue  # fsspec cannot read absent chunks here (see fsspec_nulls)
            got = g[name][()]
            assert got.dtype == want.dtype and got.shape == want.shape, name
            np.testing.assert_array_equal(got, want, err_msg=name)
    # and by chunkview itself, lazily and in bulk
    lazy = LazyParquetReferences(url)
    assert set(lazy) == set(refs["refs"]) | {".zmetadata"}
    for key, want in refs["refs"].items():
        assert same_value(lazy[key], want, key), key
    assert lazy.to_references() == lazy


def test_written_records_layout(data, tmp_path):
    """record_size smaller than the chunk count: several records per array, every record
    written (also all-null ones), the last one short, rows in C order of the chunk grid."""
    _, refs, _ = data
    url = tmp_path / "out.parq"
    write_parquet(References.from_dict(refs), str(url), record_size=5)
    met = json.loads((url / ".zmetadata").read_text())
    assert met["record_size"] == 5 and met["zarr_consolidated_format"] == 1
    assert json.loads(refs["refs"]["chunked/.zarray"]) == met["metadata"]["chunked/.zarray"]
    assert sorted(p.name for p in (url / "chunked").iterdir()) == sorted(
        f"refs.{i}.parq" for i in range(5))  # 24 chunks
    last = pq.read_table(url / "chunked" / "refs.4.parq")
    assert last.num_rows == 4
    assert last.schema.field("offset").type == pa.int64()
    assert last.column("path").to_pylist()[3] == refs["refs"]["chunked/5.3"][0]
    assert last.column("offset").to_pylist()[3] == refs["refs"]["chunked/5.3"][1]
    sparse = pq.read_table(url / "sparse" / "refs.0.parq").to_pydict()
    h5url = refs["refs"]["sparse/2"][0]
    assert sparse["path"] == [None, None, h5url, None, None] and sparse["raw"] == [None] * 5
    sparse = pq.read_table(url / "sparse" / "refs.1.parq").to_pydict()
    assert sparse["path"] == [None, None, h5url, None, None]
    assert sparse["raw"][:4] == [None] * 4
    assert same_value(sparse["raw"][4], refs["refs"]["sparse/9"])  # base64 in JSON, bytes here
    assert sorted(p.name for p in (url / "cube").iterdir()) == sorted(
        f"refs.{i}.parq" for i in range(8))  # 3*3*4 = 36 chunks
    whole = pq.read_table(url / "wholes" / "refs.0.parq").to_pydict()
    assert whole["offset"] == [0] * 4 and whole["size"] == [0] * 4
    assert whole["path"][2] is None and whole["path"][3].endswith("whole3.bin")
    write_parquet(References.from_dict(refs), str(url), record_size=2)  # replaces the set
    assert json.loads((url / ".zmetadata").read_text())["record_size"] == 2
    sparse = pq.read_table(url / "sparse" / "refs.0.parq").to_pydict()  # chunks 0, 1: absent
    assert sparse == {"path": [None] * 2, "offset": [0] * 2, "size": [0] * 2, "raw": [None] * 2}


def test_lazy_reads_only_needed_records(data, tmp_path, monkeypatch):
    _, refs, _ = data
    url = str(tmp_path / "out.parq")
    write_parquet(References.from_dict(refs), url, record_size=5)
    lazy = LazyParquetReferences(url, cache_size=2)
    read = []
    real = lazy.fs.cat_file
    monkeypatch.setattr(lazy.fs, "cat_file", lambda p, *a, **k: read.append(p) or real(p, *a, **k))
    assert lazy["chunked/3.1"] == refs["refs"]["chunked/3.1"]  # chunk 13: record 2
    assert [p.rsplit("/", 2)[1:] for p in read] == [["chunked", "refs.2.parq"]]
    lazy["chunked/2.3"]  # chunk 11, same record: cached
    assert len(read) == 1
    listing = lazy.listing()
    assert "cube" in listing and "grp/inner" in listing  # directories without reading records
    assert len(read) == 1
    assert set(listing["grp"]["dirs"]) == {"grp/inner"}
    assert len(read) == 1
    assert sorted(listing["sparse"]["files"]) == ["sparse/.zarray", "sparse/.zattrs", "sparse/2",
                                                  "sparse/7", "sparse/9"]
    assert len(read) == 3  # both records of sparse
    # cache_size=2: reading 3 more records evicts, results stay right
    for key in ("chunked/0.0", "chunked/5.3", "chunked/3.1", "chunked/0.0"):
        assert lazy[key] == refs["refs"][key]


def test_listing_matches_references(data, tmp_path):
    _, refs, _ = data
    url = str(tmp_path / "out.parq")
    bulk = References.from_dict(refs)
    write_parquet(bulk, url, record_size=4)
    lazy = LazyParquetReferences(url)
    a, b = lazy.listing(), bulk.listing()
    assert set(a) == set(b)
    for d in b:
        assert a[d]["dirs"] == b[d]["dirs"], d
        extra = [".zmetadata"] if d == "" else []  # the parquet set's own file, a key
        assert sorted(a[d]["files"]) == sorted(b[d]["files"] + extra), d
    assert a.get("nope") is None


# --------------------------------------------------------------------------- (c) round trips


def test_round_trip_identical(data, tmp_path):
    _, refs, _ = data
    r1 = References.from_dict(refs)
    write_parquet(r1, str(tmp_path / "p1"), record_size=6)
    r2 = LazyParquetReferences(str(tmp_path / "p1")).to_references()
    # metadata comes back as json.dumps of the parsed JSON: equal as JSON, every other key equal
    assert set(r1) | {".zmetadata"} == set(r2)
    for k in r1:
        if is_meta(k):
            assert json.loads(r1[k]) == json.loads(r2[k]), k
        else:
            assert r1[k] == r2[k], k
    write_parquet(r2, str(tmp_path / "p2"), record_size=6)
    r3 = LazyParquetReferences(str(tmp_path / "p2")).to_references()
    assert r2 == r3 and r3 == r2
    write_parquet(r3, str(tmp_path / "p3"), record_size=6)
    # the writer is deterministic: same references, same files
    files2 = sorted(p.relative_to(tmp_path / "p2") for p in (tmp_path / "p2").rglob("*")
                    if p.is_file())
    files3 = sorted(p.relative_to(tmp_path / "p3") for p in (tmp_path / "p3").rglob("*")
                    if p.is_file())
    assert files2 == files3
    for p in files2:
        assert (tmp_path / "p2" / p).read_bytes() == (tmp_path / "p3" / p).read_bytes(), p
    # lazy -> parquet over its own root: loaded first, so nothing is lost
    lazy = LazyParquetReferences(str(tmp_path / "p2"))
    write_parquet(lazy, str(tmp_path / "p2"), record_size=1000)
    again = LazyParquetReferences(str(tmp_path / "p2"))
    assert json.loads(again[".zmetadata"])["record_size"] == 1000  # the layout's own index
    assert _items(again) == _items(r3)


def _items(refs) -> dict:
    """A reference set's items but the parquet layout's own index (.zmetadata)."""
    return {k: v for k, v in refs.items() if k != ".zmetadata"}


def test_save_and_load(data, tmp_path):
    _, refs, _ = data
    r = References.from_dict(refs)
    path = str(tmp_path / "refs.parq")
    r.save(path, record_size=10)
    loaded = chunkview.load(path)
    assert isinstance(loaded, References) and loaded == LazyParquetReferences(path)
    lazy = chunkview.load(path, lazy=True, cache_size=3)
    assert isinstance(lazy, LazyParquetReferences) and lazy.cache_size == 3
    assert lazy == loaded
    write_parquet(refs, str(tmp_path / "from_dict"), record_size=10)  # a kerchunk dict too
    assert LazyParquetReferences(str(tmp_path / "from_dict")) == loaded


def test_memory_filesystem_and_pickle(data):
    _, refs, _ = data
    r = References.from_dict(refs)
    write_parquet(r, "memory://cv-test/refs.parq", record_size=8)
    try:
        lazy = LazyParquetReferences("memory://cv-test/refs.parq")
        assert lazy == lazy.to_references()
        again = pickle.loads(pickle.dumps(lazy))
        assert again == lazy
        fs = fsspec.filesystem("memory")
        lazy2 = LazyParquetReferences("/cv-test/refs.parq", fs=fs, source="memory://x")
        assert lazy2.source == "memory://x" and lazy2 == lazy
    finally:
        fsspec.filesystem("memory").rm("/cv-test", recursive=True)


def test_zero_length_range_and_odd_values(tmp_path):
    """[url, 0, 0] would read back as a whole file: stored as empty inline bytes (the same
    bytes); empty inline data and ranges at offset > 0 with size 0 survive."""
    zarray = {"shape": [4], "chunks": [1], "dtype": "|u1", "compressor": None,
              "fill_value": 0, "filters": None, "order": "C", "zarr_format": 2}
    refs = {".zgroup": '{"zarr_format": 2}', "x/.zarray": json.dumps(zarray),
            "x/0": ["f.bin", 0, 0], "x/1": ["f.bin", 5, 0], "x/2": b"", "x/3": ["", 3, 1]}
    write_parquet(refs, str(tmp_path / "p"), record_size=3)
    lazy = LazyParquetReferences(str(tmp_path / "p"))
    assert lazy["x/0"] == b"" and lazy["x/1"] == ["f.bin", 5, 0] and lazy["x/2"] == b""
    assert lazy["x/3"] == ["", 3, 1]  # no URL (fsspec: the target) stays no URL
    assert lazy.size_of("x/0") == 0 and lazy.size_of("x/1") == 0


# --------------------------------------------------------------------------- (d) lookup_many


def _written(refs, tmp_path, record_size, cache_size):
    """(in-memory references, lazy reader over them written as parquet)."""
    bulk = References.from_dict(refs)
    url = str(tmp_path / "out.parq")
    write_parquet(bulk, url, record_size=record_size)
    return bulk, LazyParquetReferences(url, cache_size=cache_size)


def test_lookup_many_mixed(data, tmp_path):
    _, refs, _ = data
    bulk, lazy = _written(refs, tmp_path, record_size=5, cache_size=1)
    keys = [
        ".zgroup", "chunked/.zarray",  # metadata: inline
        "chunked/0.0", "chunked/5.3", "cube/2.2.3", "contig/0",  # ranges
        "small/0", "scalar/0", "sparse/9", "grp/inner/1.0",  # inline
        "wholes/0", "wholes/3",  # whole files
        "sparse/1", "wholes/2",  # on the grid, absent
        "chunked/6.0", "chunked/0.4", "cube/3.0.0", "sparse/10",  # off the grid
        "chunked/00.0", "chunked/+1.0", "chunked/ 1.0", "chunked/1", "chunked/1.2.3",
        "chunked/-1.0", "chunked/1.", "chunked/", "chunked/1_0.0", "chunked/\u0661.0",
        "scalar/1", "scalar/00", "nope/0", "grp/0", "", "/", "chunked", "x/.zmetadata",
        "chunked/0.0",  # repeated
        "chunked/99999999999999999999999.0",
    ]
    ids, offs, lens = lazy.lookup_many(keys)
    assert ids.dtype == np.int64 and offs.dtype == np.uint64 and lens.dtype == np.uint64
    ref_ids, ref_offs, ref_lens = bulk.lookup_many(keys)
    urls, ref_urls = lazy.urls, bulk.urls
    for i, key in enumerate(keys):
        if ref_ids[i] == MISSING:
            assert ids[i] == MISSING, key
            assert key not in lazy
        elif ref_ids[i] == INLINE:
            assert ids[i] == INLINE and lens[i] == len(lazy[key]), key
            assert same_value(lazy[key], bulk[key], key) and lazy.size_of(key) == lens[i], key
        else:
            assert urls[ids[i]] == ref_urls[ref_ids[i]], key
            assert (offs[i], lens[i]) == (ref_offs[i], ref_lens[i]), key
    by_key = dict(zip(keys, ids.tolist(), strict=True))
    assert by_key["wholes/0"] >= 0 and lens[keys.index("wholes/0")] == WHOLE
    assert lazy.size_of("wholes/0") is None and lazy.size_of("chunked/5.3") == refs["refs"][
        "chunked/5.3"][2]
    assert by_key["chunked/0.0"] >= 0 and by_key["small/0"] == INLINE
    assert by_key["sparse/1"] == MISSING and by_key["chunked/00.0"] == MISSING
    # bytes keys and empty input, like ChunkIndex
    b_ids, _, _ = lazy.lookup_many([b"chunked/0.0", b"sparse/1"])
    assert b_ids[0] >= 0 and b_ids[1] == MISSING
    e = lazy.lookup_many([])
    assert [len(a) for a in e] == [0, 0, 0] and e[0].dtype == np.int64
    with pytest.raises(TypeError):
        lazy.lookup_many([1])


def test_lookup_many_large_batch(data, tmp_path):
    """Every grid key of every array, shuffled, across records, with a one-record cache: the
    same as key-by-key lookups and as the bulk index."""
    _, refs, _ = data
    bulk = References.from_dict(refs)
    url = str(tmp_path / "out.parq")
    write_parquet(bulk, url, record_size=3)
    lazy = LazyParquetReferences(url, cache_size=1)
    keys = grid_keys(refs) + [k for k in refs["refs"] if is_meta(k)]
    rng = np.random.default_rng(0)
    keys = [keys[i] for i in rng.permutation(len(keys))] * 2
    ids, offs, lens = lazy.lookup_many(keys)
    urls = lazy.urls
    for i, key in enumerate(keys):
        v = lazy.get(key)
        if v is None:
            assert ids[i] == MISSING and key not in bulk
        elif isinstance(v, bytes):
            assert ids[i] == INLINE and lens[i] == len(v) and same_value(v, bulk[key], key)
        elif len(v) == 1:
            assert [urls[ids[i]]] == v == bulk[key] and lens[i] == WHOLE
        else:
            assert [urls[ids[i]], int(offs[i]), int(lens[i])] == v == bulk[key]


def test_threads_share_one_reader(data, tmp_path):
    _, refs, _ = data
    bulk, lazy = _written(refs, tmp_path, record_size=2, cache_size=2)
    keys = grid_keys(refs)
    want = {k: bulk.get(k) for k in keys}
    barrier = threading.Barrier(8)
    errors = []

    def work(seed):
        try:
            rng = np.random.default_rng(seed)
            barrier.wait()
            for _ in range(20):
                batch = [keys[i] for i in rng.integers(0, len(keys), 40)]
                ids, offs, lens = lazy.lookup_many(batch)
                urls = lazy.urls
                for k, uid, o, n in zip(batch, ids.tolist(), offs.tolist(), lens.tolist(),
                                        strict=True):
                    w = want[k]
                    if w is None:
                        assert uid == MISSING
                    elif isinstance(w, bytes):
                        assert uid == INLINE and lazy[k] == w
                    elif len(w) == 1:
                        assert [urls[uid]] == w
                    else:
                        assert [urls[uid], o, n] == w
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


# --------------------------------------------------------------------------- (e) bad input


@pytest.fixture
def good_store(data, tmp_path):
    _, refs, _ = data
    url = tmp_path / "good.parq"
    write_parquet(References.from_dict(refs), str(url), record_size=5)
    return url


@pytest.mark.parametrize("text, match", [
    (b"{not json", "invalid JSON in .zmetadata"),
    (b"\xff\xfe\x00", "invalid JSON in .zmetadata"),
    (b"[1, 2]", "JSON object"),
    (b'{"record_size": 5}', "'metadata'"),
    (b'{"metadata": {}, "record_size": 0}', "record_size"),
    (b'{"metadata": {}, "record_size": "5"}', "record_size"),
    (b'{"metadata": {}}', "record_size"),
    (b'{"metadata": {"x/.zarray": {"shape": "big", "chunks": [1]}}, "record_size": 5}',
     "shape"),
    (b'{"metadata": {"x/.zarray": {"shape": [4], "chunks": [0]}}, "record_size": 5}',
     "out of range"),
    (b'{"metadata": {"x/.zarray": [4]}, "record_size": 5}', "JSON object"),
])
def test_bad_zmetadata(tmp_path, text, match):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / ".zmetadata").write_bytes(text)
    with pytest.raises(ReferenceFormatError, match=match) as e:
        LazyParquetReferences(str(tmp_path / "s"))
    assert ".zmetadata" in str(e.value)


def test_missing_zmetadata(tmp_path):
    (tmp_path / "s" / "x").mkdir(parents=True)
    with pytest.raises(ReferenceFormatError, match=".zmetadata is missing"):
        LazyParquetReferences(str(tmp_path / "s"))
    with pytest.raises(FileNotFoundError):
        LazyParquetReferences(str(tmp_path / "nothing-here"))


def _check_bad_record(url, key, match):
    lazy = LazyParquetReferences(str(url))
    with pytest.raises(ReferenceFormatError, match=match) as e:
        lazy[key]
    assert "refs.0.parq" in str(e.value)  # names the file
    with pytest.raises(ReferenceFormatError):
        lazy.to_references()
    with pytest.raises(ReferenceFormatError):
        lazy.lookup_many([key])
    return e.value


def test_truncated_and_garbage_records(good_store):
    f = good_store / "chunked" / "refs.0.parq"
    data = f.read_bytes()
    for cut in (0, 3, 4, 8, len(data) // 2, len(data) - 9, len(data) - 1):
        f.write_bytes(data[:cut])
        _check_bad_record(good_store, "chunked/0.0", "cannot read parquet record")
    f.write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")
    _check_bad_record(good_store, "chunked/0.0", "cannot read parquet record")
    f.write_bytes(b"this is not parquet at all")
    _check_bad_record(good_store, "chunked/0.0", "cannot read parquet record")


def test_corrupt_records_never_crash(good_store):
    """Bytes flipped all over a record: a ReferenceFormatError or a valid reading, nothing
    else."""
    f = good_store / "chunked" / "refs.0.parq"
    data = f.read_bytes()
    rng = np.random.default_rng(1)
    for i in range(300):
        buf = bytearray(data)
        for pos in rng.integers(0, len(buf), 1 + i % 3):
            buf[pos] = int(rng.integers(0, 256))
        f.write_bytes(bytes(buf))
        lazy = LazyParquetReferences(str(good_store))
        try:
            v = lazy.lookup_many(["chunked/0.0", "chunked/0.4"])
        except ReferenceFormatError:
            continue
        assert len(v[0]) == 2


def _write_table(url, field, table, record=0):
    pq.write_table(table, url / field / f"refs.{record}.parq")


@pytest.mark.parametrize("columns, match", [
    ({"path": pa.array([1, 2, 3, 4, 5]), "offset": pa.array([0] * 5), "size": pa.array([1] * 5),
      "raw": pa.nulls(5, pa.binary())}, "column 'path' has type int64"),
    ({"path": pa.array(["a"] * 5), "offset": pa.array(["0"] * 5), "size": pa.array([1] * 5),
      "raw": pa.nulls(5, pa.binary())}, "column 'offset' has type string"),
    ({"path": pa.array(["a"] * 5), "offset": pa.array([0.5] * 5), "size": pa.array([1] * 5),
      "raw": pa.nulls(5, pa.binary())}, "column 'offset' has type double"),
    ({"path": pa.array(["a"] * 5), "offset": pa.array([0] * 5), "size": pa.array([1] * 5),
      "raw": pa.array([1] * 5)}, "column 'raw' has type int64"),
    ({"path": pa.array(["a"] * 5), "offset": pa.array([0, 1, -3, 0, 0]),
      "size": pa.array([1] * 5), "raw": pa.nulls(5, pa.binary())}, "negative offset -3 in row 2"),
    ({"path": pa.array(["a"] * 5), "offset": pa.array([0] * 5),
      "size": pa.array([1, 1, 1, 1, -1]), "raw": pa.nulls(5, pa.binary())},
     "negative size -1 in row 4"),
    ({"path": pa.array(["a"] * 5), "offset": pa.array([0, 2**64 - 1, 0, 0, 0], pa.uint64()),
      "size": pa.array([1] * 5), "raw": pa.nulls(5, pa.binary())}, "offset .* out of range"),
    ({"path": pa.array(["a"] * 5), "offset": pa.array([2**62] * 5),
      "size": pa.array([2**62] * 5), "raw": pa.nulls(5, pa.binary())}, "overflows"),
    ({"path": pa.array(["a"] * 5), "offset": pa.array([0, None, 0, 0, 0]),
      "size": pa.array([1] * 5), "raw": pa.nulls(5, pa.binary())}, "offset is null in row 1"),
    ({"path": pa.array(["a"] * 5), "size": pa.array([1] * 5)}, "offset missing"),
    ({"other": pa.array([1] * 5)}, "no reference columns"),
    ({"path": pa.array(["a"] * 3), "offset": pa.array([0] * 3), "size": pa.array([1] * 3),
      "raw": pa.nulls(3, pa.binary())}, "has 3 rows, expected 5"),
])
def test_bad_record_columns(good_store, columns, match):
    _write_table(good_store, "chunked", pa.table(columns))
    err = _check_bad_record(good_store, "chunked/0.0", match)
    if "row" in match and "rows" not in match:
        assert err.key is not None and err.key.startswith("chunked/")


def test_bad_values_in_unused_rows_are_ignored(good_store):
    """Padding rows (path null) may hold anything in offset/size, as fsspec's writer leaves
    them; a longer record than needed is fine (fsspec pads the last record)."""
    table = pa.table({"path": pa.array(["u", None, "u", None, None, None, None]),
                      "offset": pa.array([1, -5, 2, None, 0, 0, 0]),
                      "size": pa.array([3, -1, 4, 0, 0, 0, 0]),
                      "raw": pa.array([None, None, None, b"x", None, None, None])})
    _write_table(good_store, "chunked", table)
    lazy = LazyParquetReferences(str(good_store))
    assert lazy["chunked/0.0"] == ["u", 1, 3] and lazy["chunked/0.2"] == ["u", 2, 4]
    assert "chunked/0.1" not in lazy and lazy["chunked/0.3"] == b"x"
    assert "chunked/1.0" not in lazy  # row 4; rows 5 and 6 lie beyond the record: ignored


def test_other_column_encodings(good_store):
    """Dictionary, large and view string types, raw as text: all read like fsspec reads them."""
    table = pa.table({
        "path": pa.array(["u", None, "v", "u", None]).dictionary_encode(),
        "offset": pa.array([1, 0, 0, 5, 0], pa.int32()),
        "size": pa.array([2, 0, 0, 6, 0], pa.uint32()),
        "raw": pa.array([None, "text", None, None, None], pa.large_string()),
    })
    _write_table(good_store, "chunked", table)
    lazy = LazyParquetReferences(str(good_store))
    assert [lazy.get(f"chunked/0.{i}") for i in range(4)] == [
        ["u", 1, 2], b"text", ["v"], ["u", 5, 6]]
    assert "chunked/1.0" not in lazy
    table = pa.table({"path": pa.array(["u"] * 5, pa.large_string()),
                      "offset": pa.array([0] * 5), "size": pa.array([1] * 5)})  # no raw column
    _write_table(good_store, "chunked", table)
    assert LazyParquetReferences(str(good_store))["chunked/1.0"] == ["u", 0, 1]
    table = pa.table({"raw": pa.array([b"a", None, b"c", None, b""])})  # only raw
    _write_table(good_store, "chunked", table)
    lazy = LazyParquetReferences(str(good_store))
    assert [lazy.get(f"chunked/0.{i}") for i in range(4)] == [b"a", None, b"c", None]
    assert lazy["chunked/1.0"] == b""


def test_missing_record_file_is_absent(good_store, data):
    _, refs, _ = data
    (good_store / "chunked" / "refs.1.parq").unlink()
    lazy = LazyParquetReferences(str(good_store))
    assert "chunked/1.1" not in lazy and "chunked/2.1" not in lazy  # chunks 5 to 9
    assert lazy["chunked/1.0"] == refs["refs"]["chunked/1.0"]
    assert lazy["chunked/2.2"] == refs["refs"]["chunked/2.2"]
    assert len(lazy) == len(refs["refs"]) - 5 + 1  # and .zmetadata


ZA = json.dumps({"shape": [4, 4], "chunks": [2, 2], "dtype": "<i2", "compressor": None,
                 "fill_value": 0, "filters": None, "order": "C", "zarr_format": 2})


@pytest.mark.parametrize("refs, key, match", [
    ({".zattrs": "not json"}, ".zattrs", "not valid JSON"),
    ({"x/.zarray": ZA, "x/.zattrs": b"\xff"}, "x/.zattrs", "not valid JSON"),
    ({".zattrs": ["file.json"]}, ".zattrs", "inline JSON"),
    ({"foo": "bar"}, "foo", "top-level key"),
    ({"x/.zarray": ZA, "y/0.0": ["f", 0, 1]}, "y/0.0", "not an array"),
    ({"x/.zarray": ZA, "x/0.2": ["f", 0, 1]}, "x/0.2", "not a chunk key on the grid"),
    ({"x/.zarray": ZA, "x/0": ["f", 0, 1]}, "x/0", "not a chunk key"),
    ({"x/.zarray": ZA, "x/00.1": ["f", 0, 1]}, "x/00.1", "not a chunk key"),
    ({"x/.zarray": ZA, "x/a.b": ["f", 0, 1]}, "x/a.b", "not a chunk key"),
    ({"x/.zarray": ZA, "x/0/1": ["f", 0, 1]}, "x/0/1", "dimension_separator"),
    ({"x/.zarray": '{"shape": [4]}'}, "x/.zarray", "chunks"),
])
def test_write_refuses_what_the_layout_cannot_hold(tmp_path, refs, key, match):
    out = tmp_path / "out.parq"
    out.mkdir()
    (out / "keep").write_text("old")
    with pytest.raises(ReferenceFormatError, match=match) as e:
        write_parquet(refs, str(out))
    assert e.value.key == key
    assert (out / "keep").read_text() == "old"  # nothing touched before the error


def test_write_replaces_a_zmetadata_key(tmp_path):
    """A .zmetadata key (what a loaded parquet set serves) is the layout's own index: the
    writer makes it anew from the set's metadata rather than storing it."""
    refs = {".zmetadata": json.dumps({"metadata": {"stale/.zarray": {}}}), ".zgroup": "{}"}
    write_parquet(refs, str(tmp_path / "z"))
    met = json.loads((tmp_path / "z" / ".zmetadata").read_text())
    assert met["metadata"] == {".zgroup": {}}


def test_write_arguments(data, tmp_path):
    _, refs, _ = data
    with pytest.raises(ValueError, match="record_size"):
        write_parquet(refs, str(tmp_path / "x"), record_size=0)
    with pytest.raises(TypeError):
        write_parquet([1, 2], str(tmp_path / "x"))
    write_parquet(refs, str(tmp_path / "x"), compression="snappy", row_group_size=2)
    assert pq.ParquetFile(tmp_path / "x" / "chunked" / "refs.0.parq").metadata.row_group(
        0).column(0).compression == "SNAPPY"
    assert set(LazyParquetReferences(str(tmp_path / "x"))) == set(refs["refs"]) | {".zmetadata"}


def test_pyarrow_missing_is_a_clear_error(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"chunkview\[parquet\]"):
        LazyParquetReferences(str(tmp_path))
    with pytest.raises(ImportError, match=r"chunkview\[parquet\]"):
        write_parquet({}, str(tmp_path / "x"))


# --------------------------------------------------------------------------- key parsing


def test_metadata_shadowing_a_chunk_key(tmp_path):
    """A metadata key that looks like a chunk key wins (fsspec looks at metadata first), and
    is counted and listed once."""
    zarray = {"shape": [2], "chunks": [1], "dtype": "|u1", "compressor": None, "fill_value": 0,
              "filters": None, "order": "C", "zarr_format": 2}
    write_parquet({"x/.zarray": json.dumps(zarray), "x/0": ["f", 1, 2], "x/1": ["f", 3, 4]},
                  str(tmp_path / "p"))
    met = json.loads((tmp_path / "p" / ".zmetadata").read_text())
    met["metadata"]["x/1"] = {"odd": True}
    (tmp_path / "p" / ".zmetadata").write_text(json.dumps(met))
    lazy = LazyParquetReferences(str(tmp_path / "p"))
    assert lazy["x/1"] == b'{"odd": true}' and lazy["x/0"] == ["f", 1, 2]
    assert sorted(lazy) == [".zmetadata", "x/.zarray", "x/0", "x/1"] and len(lazy) == 4
    ids, _, lens = lazy.lookup_many(["x/1", "x/0"])
    assert ids[0] == INLINE and lens[0] == len(b'{"odd": true}') and ids[1] >= 0
    assert lazy.to_references() == lazy
    assert sorted(lazy.listing()["x"]["files"]) == ["x/.zarray", "x/0", "x/1"]


def test_vectorised_chunk_parser_matches_scalar():
    """The numpy chunk-name parser behind lookup_many / write_parquet against the plain one."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    from chunkview.refs.parquet.layout import _Field

    fields = [_Field("x", g, 5) for g in [(1,), (7,), (3, 12), (2, 3, 11), (10**6, 10**9)]]
    pieces = st.sampled_from(["0", "1", "2", "9", "10", "11", "00", "01", ".", "-", "+", " ",
                              "\u0661", "a", "999999999999999999999", "/", "\x00", "\ud800", ""])
    names = st.lists(st.text(alphabet="0123456789.", max_size=8)
                     | st.lists(pieces, max_size=6).map("".join), max_size=40)

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(names)
    def check(chunks):
        for f in fields:
            nums, ok = f.numbers_of(chunks)
            for c, num, good in zip(chunks, nums.tolist(), ok.tolist(), strict=True):
                want = f.number_of(c)
                assert good == (want is not None), (f.grid, c)
                if good:
                    assert num == want, (f.grid, c)

    check()


# --------------------------------------------------------------------------- chunkview's own fs


@pytest.mark.parametrize("lazy", [True, False])
def test_chunkview_filesystem_over_parquet(data, tmp_path, lazy):
    """zarr through chunkview's filesystem on a parquet set (lazy or bulk-loaded) reads what
    h5py reads."""
    zarr = pytest.importorskip("zarr")
    _, refs, expected = data
    url = str(tmp_path / "refs.parq")
    write_parquet(refs, url, record_size=4)
    fs = fsspec.filesystem("chunkview", fo=url, lazy=lazy, cache_size=2, skip_instance_cache=True)
    assert isinstance(fs.references, LazyParquetReferences if lazy else References)
    g = zarr.open_group(fs.get_mapper(""), mode="r", zarr_format=2)
    for name, want in expected.items():
        got = g[name][()]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert sorted(fs.ls("grp", detail=False)) == ["grp/.zattrs", "grp/.zgroup", "grp/inner"]
    assert fs.cat_file("sparse/2") == ReferenceFileSystem(refs).cat_file("sparse/2")
    with pytest.raises(FileNotFoundError):
        fs.cat_file("sparse/1")
