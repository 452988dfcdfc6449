"""chunkview inside VirtualiZarr (``chunkview.virtualizarr``), against the real VirtualiZarr:
``ChunkviewParser`` against VirtualiZarr's own ``HDFParser`` / ``NetCDF3Parser``, h5py and
netCDF-C (the truth where the parsers differ), locally and over real HTTP and S3 servers on
127.0.0.1; ``.vz.to_kerchunk()`` / ``.vz.to_icechunk()`` on its datasets; and
``from_virtualizarr`` reading what VirtualiZarr's parsers make with chunkview.

VirtualiZarr 2.x needs Python >= 3.12: on 3.11 these tests skip, unless
CHUNKVIEW_REQUIRE_VIRTUALIZARR=1 (CI's Python 3.13 part) makes a missing VirtualiZarr fail."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from extras import needed  # noqa: E402

vz = needed("virtualizarr")
xr = pytest.importorskip("xarray")
h5py = pytest.importorskip("h5py")
zarr = pytest.importorskip("zarr")

from obspec_utils.registry import ObjectStoreRegistry  # noqa: E402
from obstore.store import LocalStore  # noqa: E402
from virtualizarr import open_virtual_dataset, open_virtual_mfdataset  # noqa: E402
from virtualizarr.parsers import HDFParser, NetCDF3Parser  # noqa: E402

import chunkview  # noqa: E402
from chunkview.errors import ForbiddenSourceError, UnsupportedError  # noqa: E402
from chunkview.virtualizarr import (  # noqa: E402
    ChunkviewParser,
    UnsupportedWarning,
    from_virtualizarr,
    to_manifest_store,
)

import corpus  # noqa: E402
import make_scandata  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]
DEFAULT = "zarr.core.codec_pipeline.BatchedCodecPipeline"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vz")
    out = make_scandata.make_all(folder)
    out.update(make_scandata.make_netcdf_suite(folder / "nc"))
    out["dimscales"] = make_scandata.make_dimension_scales(folder / "dimscales.h5")
    return {k: Path(v).resolve() for k, v in out.items()}


@pytest.fixture
def registry():
    return ObjectStoreRegistry({"file://": LocalStore()})


def _url(path) -> str:
    return Path(path).resolve().as_uri()


def _arrays(store):
    """{path: values} of every array of a store, read by zarr's default pipeline."""
    out = {}
    with zarr.config.set({"codec_pipeline.path": DEFAULT}):
        g = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)

        def walk(grp, pre):
            for name, node in grp.members():
                if isinstance(node, zarr.Group):
                    walk(node, pre + name + "/")
                else:
                    out[pre + name] = node[...]

        walk(g, "")
    return out


def _truth(path, name, which):
    """What the file holds: h5py for HDF5; chunkview's v2 read for NetCDF3 (checked against
    netCDF-C in test_scan_netcdf3) and for netCDF variables shorter than their dimension."""
    if which.startswith("nc3"):
        return chunkview.open(chunkview.scan(str(path)))[name][...]
    with h5py.File(path) as f:
        return f[name][()]


_same = corpus._same_v3


# ------------------------------------------------------------------ the parser, local files


@pytest.mark.parametrize("which", ["earliest", "latest", "masks", "types", "netcdf4",
                                   "nc4_fills", "nc4_strings", "nc4_storage", "nc4_groups",
                                   "nc3_classic", "nc3_offset", "nc3_data"])
def test_parser_store_reads_as_the_file(files, registry, which):
    """The ManifestStore ChunkviewParser gives, read by zarr's default pipeline, holds every
    dataset as h5py (netCDF-C for NetCDF3) reads it: masks, fletcher32, string padding and
    strings included."""
    path = files[which]
    store = ChunkviewParser()(_url(path), registry)
    got = _arrays(store)
    v2 = chunkview.open(chunkview.scan(str(path)))
    assert len(got) >= 2
    for name, values in got.items():
        want = _truth(path, name, which)
        if np.shape(want) != values.shape:  # a netCDF variable shorter than its dimension
            want = v2[name][...]
        assert _same(values, want), name


def _loaded(store):
    with zarr.config.set({"codec_pipeline.path": DEFAULT}):
        return xr.open_zarr(store, consolidated=False, zarr_format=3).load()


@pytest.mark.parametrize("which", ["nc4_fills", "nc4_attrs", "nc4_strings", "nc4_groups",
                                   "nc4_storage", "netcdf4", "nc3_classic", "nc3_offset",
                                   "nc3_data"])
def test_virtual_dataset_against_virtualizarr_and_netcdf(files, registry, which):
    """open_virtual_dataset(parser=ChunkviewParser()) gives the variables, dimensions and
    shapes VirtualiZarr's own parser gives, and the data loaded through its ManifestStore
    equals VirtualiZarr's wherever VirtualiZarr's parser reads the file, and netCDF-C's
    (xarray's netcdf4 engine) always."""
    path = files[which]
    url = _url(path)
    own = HDFParser if not which.startswith("nc3") else NetCDF3Parser
    ours = open_virtual_dataset(url, registry=registry, parser=ChunkviewParser())
    truth = xr.open_dataset(path, engine="netcdf4").load()
    loaded = _loaded(ChunkviewParser()(url, registry))
    xr.testing.assert_equal(loaded, truth)
    raw = xr.open_dataset(path, engine="netcdf4", decode_cf=False)  # chars not joined
    assert set(ours.variables) == set(raw.variables)
    for name, var in ours.variables.items():
        assert var.dims == raw[name].dims and var.shape == raw[name].shape, name
    try:
        theirs = open_virtual_dataset(url, registry=registry, parser=own())
    except ValueError:
        # VirtualiZarr's parser refuses some of these files (an unlimited dimension written
        # to different lengths; a NetCDF3 char variable's fill value): nothing to compare
        return
    assert set(ours.variables) == set(theirs.variables)
    for name, var in ours.variables.items():
        assert (var.dims, var.shape) == (theirs[name].dims, theirs[name].shape), name
    with zarr.config.set({"codec_pipeline.path": DEFAULT}):
        ds = xr.open_zarr(own()(url, registry), consolidated=False, zarr_format=3)
    for name in ds.variables:
        try:
            want = ds[name].load()
        except ValueError:
            continue  # VirtualiZarr cannot read it (shuffle after fletcher32): see above
        xr.testing.assert_equal(loaded[name], want)


def test_parser_options(files, registry):
    """group=, drop_variables= and on_unsupported= as HDFParser takes the first two."""
    url = _url(files["netcdf4"])
    sub = _arrays(ChunkviewParser(group="forecast")(url, registry))
    assert set(sub) == {"step"}
    np.testing.assert_array_equal(sub["step"], [1, 2, 3])
    dropped = open_virtual_dataset(url, registry=registry,
                                   parser=ChunkviewParser(drop_variables=["temp"]))
    assert "temp" not in dropped.variables and "lat" in dropped.variables
    with pytest.raises(ValueError, match="not a group"):
        ChunkviewParser(group="nope")(url, registry)
    types = _url(files["types"])
    with pytest.warns(UnsupportedWarning, match="compound"):
        store = ChunkviewParser()(types, registry)
    assert "compound" not in _arrays(store)
    with pytest.raises(UnsupportedError, match="compound"):
        ChunkviewParser(on_unsupported="raise")(types, registry)


def test_trimmed_chunks_concatenate(tmp_path, registry):
    """A variable along an unlimited dimension has chunks HDF5 sized for growth (512 for 5
    values): trimmed to the array as HDFParser trims them, so open_virtual_mfdataset can
    concatenate files, and the data read through the combined store are the files'."""
    import netCDF4

    paths = []
    for i in range(3):
        p = tmp_path / f"part{i}.nc"
        with netCDF4.Dataset(p, "w") as ds:
            ds.createDimension("time", None)
            ds.createDimension("x", 4)
            t = ds.createVariable("time", "f8", ("time",))
            t.units = "days since 2000-01-01"
            v = ds.createVariable("v", "f4", ("time", "x"))
            t[:] = np.arange(5) + 5 * i
            v[:] = np.arange(20, dtype="f4").reshape(5, 4) + 100 * i
        paths.append(p)
    urls = [_url(p) for p in paths]
    single = open_virtual_dataset(urls[0], registry=registry, parser=ChunkviewParser(),
                                  loadable_variables=[])
    assert single["time"].data.metadata.chunks == (5,)  # HDF5's chunk: 512
    combined = open_virtual_mfdataset(urls, registry=registry, parser=ChunkviewParser(),
                                      combine="nested", concat_dim="time")
    assert combined["v"].shape == (15, 4)
    refs = from_virtualizarr(combined)
    got = chunkview.open(refs)["v"][...]
    want = np.concatenate([xr.open_dataset(p, engine="netcdf4")["v"].values for p in paths])
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ remote


@pytest.fixture
def served(tmp_path, files):
    pytest.importorskip("aiohttp")
    from chunkview.bench.server import RangeServer

    for name in ("latest", "netcdf4", "nc3_classic"):
        shutil.copy(files[name], tmp_path / files[name].name)
    with RangeServer(tmp_path) as srv:
        yield srv


def test_parser_over_http_through_the_registry(served, files):
    """An HTTP file is scanned through the registry's obstore HTTPStore, in a few range
    requests, and VirtualiZarr reads the chunks over HTTP as h5py reads the file."""
    from obstore.store import HTTPStore

    base = served.url("")
    reg = ObjectStoreRegistry({base.rstrip("/"): HTTPStore.from_url(
        base.rstrip("/"), client_options={"allow_http": True})})
    url = served.url(files["latest"].name)
    served.reset_stats()
    store = ChunkviewParser()(url, reg)
    assert served.gets <= 3, served.log  # metadata in 1 MiB blocks: the whole small file
    got = _arrays(store)
    with h5py.File(files["latest"]) as f:
        for name, values in got.items():
            assert _same(values, f[name][()]), name
    nc3 = open_virtual_dataset(served.url(files["nc3_classic"].name), registry=reg,
                               parser=ChunkviewParser())
    assert set(nc3.variables) >= {"t", "v", "w", "name", "scaled"}


def test_parser_falls_back_to_fsspec(served, files):
    """A URL the registry has no store for is scanned through fsspec; the references name
    it, and chunkview reads them (VirtualiZarr itself would need a store for it)."""
    url = served.url(files["netcdf4"].name)
    store = ChunkviewParser(storage_options={"skip_instance_cache": True})(
        url, ObjectStoreRegistry())
    refs = from_virtualizarr(store)
    assert url in refs.index.urls
    g = chunkview.open(refs, remote_options={"skip_instance_cache": True})
    local = chunkview.open(chunkview.scan(str(files["netcdf4"])))
    for name in ("temp", "lat", "time", "names"):
        np.testing.assert_array_equal(g[name][...], local[name][...], err_msg=name)


def test_parser_over_s3(tmp_path, files):
    """S3 (moto's server) through the registry's obstore S3Store."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    from obstore.store import S3Store

    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    try:
        host, port = srv.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="vz-test")
        s3.upload_file(str(files["latest"]), "vz-test", "latest.h5")
        store = S3Store("vz-test", endpoint=endpoint, region="us-east-1",
                        access_key_id="testing", secret_access_key="testing",
                        client_options={"allow_http": True})
        reg = ObjectStoreRegistry({"s3://vz-test": store})
        got = _arrays(ChunkviewParser()("s3://vz-test/latest.h5", reg))
        with h5py.File(files["latest"]) as f:
            assert got and all(_same(v, f[n][()]) for n, v in got.items())
    finally:
        srv.stop()


# ------------------------------------------------------------------ VirtualiZarr's writers


def test_to_kerchunk_and_back(files, registry, tmp_path):
    """.vz.to_kerchunk() on a ChunkviewParser dataset, read by fsspec + zarr and by
    chunkview, as netCDF-C reads the file."""
    import fsspec

    path = files["nc4_storage"]
    vds = open_virtual_dataset(_url(path), registry=registry, parser=ChunkviewParser())
    truth = xr.open_dataset(path, engine="netcdf4").load()
    for fmt in (2, 3):
        refs = vds.vz.to_kerchunk(format="dict", zarr_format=fmt)
        fs = fsspec.filesystem("reference", fo=refs)
        with zarr.config.set({"codec_pipeline.path": DEFAULT}):
            ds = xr.open_zarr(fs.get_mapper(""), consolidated=False, zarr_format=fmt).load()
        xr.testing.assert_equal(ds, truth)
        xr.testing.assert_equal(xr.open_dataset(refs, engine="chunkview").load(), truth)


def test_to_icechunk(files, registry, tmp_path):
    """.vz.to_icechunk() on a ChunkviewParser dataset: Icechunk + zarr read the virtual
    chunks as netCDF-C reads the file."""
    icechunk = pytest.importorskip("icechunk")
    path = files["nc4_storage"]
    vds = open_virtual_dataset(_url(path), registry=registry, parser=ChunkviewParser())
    prefix = path.parent.as_uri() + "/"
    config = icechunk.RepositoryConfig.default()
    config.set_virtual_chunk_container(icechunk.VirtualChunkContainer(
        prefix, icechunk.local_filesystem_store(str(path.parent))))
    repo = icechunk.Repository.create(
        icechunk.local_filesystem_storage(str(tmp_path / "repo")), config,
        authorize_virtual_chunk_access={prefix: None})
    session = repo.writable_session("main")
    vds.vz.to_icechunk(session.store)
    session.commit("virtual")
    read = repo.readonly_session("main")
    with zarr.config.set({"codec_pipeline.path": DEFAULT}):
        ds = xr.open_zarr(read.store, consolidated=False, zarr_format=3).load()
    xr.testing.assert_equal(ds, xr.open_dataset(path, engine="netcdf4").load())


# ------------------------------------------------------------------ from_virtualizarr


def _names(group, pre=""):
    out = [pre + n for n in group.arrays]
    for n, sub in group.groups.items():
        out += _names(sub, pre + n + "/")
    return out


@pytest.mark.parametrize("which", ["dimscales", "nc4_groups", "nc4_attrs", "nc4_storage"])
def test_from_virtualizarr_hdfparser_store(files, registry, which):
    """What VirtualiZarr's HDFParser makes, read by chunkview.open and open_zarr as h5py
    reads the file."""
    path = files[which]
    refs = from_virtualizarr(HDFParser()(_url(path), registry))
    assert "zarr.json" in refs
    g, z = chunkview.open(refs), chunkview.open_zarr(refs)
    names = _names(HDFParser()(_url(path), registry)._group)
    assert names
    with h5py.File(path) as f:
        for name in names:
            if f[name].dtype.kind == "O" or name == "fletcher":
                # vlen strings: inlined by HDFParser as vlen-utf8 (zarr reads them); HDFParser
                # puts fletcher32 where numcodecs' shuffle then fails (zarr cannot read it)
                continue
            want = f[name][()]
            assert _same(g[name][...], want), name
            assert _same(z[name][...], want), name


def test_from_virtualizarr_dataset_with_loaded_variables(files, registry):
    """A virtual dataset with loaded variables (VirtualiZarr's ``loadable_variables``):
    ManifestArrays become chunk references, loaded variables inlined chunks; chunkview's
    xarray engine reads it as h5py reads the file."""
    path = files["dimscales"]
    vds = open_virtual_dataset(_url(path), registry=registry, parser=HDFParser(),
                               loadable_variables=["x", "y"])
    assert not isinstance(vds["x"].data, type(vds["data"].data))
    ds = xr.open_dataset(from_virtualizarr(vds), engine="chunkview").load()
    with h5py.File(path) as f:
        for name in ("data", "x", "y", "sparse"):
            np.testing.assert_array_equal(ds[name].values, f[name][()], err_msg=name)
        assert ds["data"].dims == ("x", "y") and ds["data"].attrs["units"] == "m"


def test_round_trip_through_a_manifest_store(files):
    """chunkview references -> ManifestStore -> chunkview references: the same chunks."""
    refs = chunkview.scan(str(files["masks"]), zarr_format=3)
    back = from_virtualizarr(to_manifest_store(refs))
    a, b = chunkview.open(refs), chunkview.open(back)
    with h5py.File(files["masks"]) as f:
        for name in f:
            np.testing.assert_array_equal(b[name][...], f[name][()], err_msg=name)
            np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=name)


# ------------------------------------------------------------------ bad input


def test_manifest_pointing_outside_allowed_protocols(files, registry):
    refs = from_virtualizarr(HDFParser()(_url(files["nc4_storage"]), registry))
    with pytest.raises(ForbiddenSourceError, match="file"):
        chunkview.open(refs, allowed_protocols=("https",))["zlib"][...]
    with pytest.raises(ForbiddenSourceError, match="file"):
        chunkview.open_zarr(refs, allowed_protocols=("https",))["zlib"][...]


def _with_codecs(store, name, extra):
    """A ManifestStore like ``store`` whose array ``name`` has the codecs ``extra`` added."""
    from virtualizarr.manifests import ManifestGroup, ManifestStore
    from zarr.core.metadata import ArrayV3Metadata

    g = store._group
    arr = g.arrays[name]
    doc = arr.metadata.to_dict()
    doc["codecs"] = list(doc["codecs"]) + list(extra)
    new = type(arr)(metadata=ArrayV3Metadata.from_dict(doc), chunkmanifest=arr.manifest)
    return ManifestStore(ManifestGroup(arrays={**g.arrays, name: new}, groups=g.groups,
                                       attributes=g.metadata.attributes))


def test_manifest_with_a_codec_chunkview_cannot_express(files, registry):
    """A codec chunkview has no decoder for (crc32c): chunkview.open refuses the array by
    name, never reads fill values; open_zarr reads through zarr's own codecs, whose failure
    (the chunks have no checksum) is a chunkview error naming the chunk and its file."""
    store = _with_codecs(HDFParser()(_url(files["nc4_storage"]), registry), "zlib",
                         [{"name": "crc32c"}])
    refs = from_virtualizarr(store)
    with pytest.raises(UnsupportedError, match="'zlib'.*crc32c"):
        chunkview.open(refs)["zlib"][...]
    with pytest.raises(chunkview.DecodeError, match=r"zlib/c/0/0.*nc4_storage\.nc.*checksum"):
        chunkview.open_zarr(refs)["zlib"][...]


def test_manifest_with_changed_source(files, registry, tmp_path):
    """A file cut short after VirtualiZarr recorded it: the read fails naming the chunk key
    and URL, never reads fill values."""
    path = tmp_path / "cut.nc"
    shutil.copy(files["nc4_storage"], path)
    refs = from_virtualizarr(HDFParser()(_url(path), registry))
    with h5py.File(path) as f:
        offset = f["chunked"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.truncate(offset + 1)
    for opener in (chunkview.open, chunkview.open_zarr):
        with pytest.raises(chunkview.ChunkviewError, match="chunked") as e:
            opener(refs)["chunked"][...]
        assert path.name in str(e.value)


@pytest.mark.skipif(not corpus.CORPUS.is_dir(), reason="../shared/corpus is absent")
def test_corpus_against_hdfparser():
    """The third-party corpus (one file in twelve, in the inventory's order: HDFParser takes
    minutes over all of it; ``python tests/corpus.py --virtualizarr`` runs them all): every array ChunkviewParser gives reads
    (zarr's default pipeline over the ManifestStore) as h5py reads it, and wherever
    HDFParser's ManifestStore reads as h5py does, both read the same."""
    reg = ObjectStoreRegistry({"file://": LocalStore()})
    counts = corpus.check_virtualizarr(corpus.files()[::12], reg, ChunkviewParser, HDFParser)
    print(counts)
    assert not counts["WRONG"], counts["WRONG"][:10]
    assert counts["identical"] > 150 and counts["hdfparser-agrees"] > 100


# ------------------------------------------------------------------ hostile input, under limits


def test_bombs_through_a_manifest_store_are_bounded(tmp_path):
    """A ManifestStore whose chunk inflates to 64 MiB where 4,000 bytes are due, plain and
    inside an hdf5_masked pipeline with no .cvmask (the set went through the ManifestStore):
    chunkview.open and open_zarr of from_virtualizarr's references fail with a DecodeError
    naming the key and file, within a time and memory limit."""
    import zlib

    from hostile import run_case

    from chunkview.codecs.masked import wrapper

    data = tmp_path / "bomb.bin"
    bomb = zlib.compress(bytes(64 << 20), 9)
    data.write_bytes(bomb)
    refs = {".zgroup": '{"zarr_format":2}'}
    for name, filters in (("plain", [{"id": "zlib", "level": 9}]),
                          ("masked", [wrapper([{"id": "zlib", "level": 9}], {"7": 1}, None,
                                              4000)])):
        refs[f"{name}/.zarray"] = json.dumps({
            "zarr_format": 2, "shape": [1000], "chunks": [1000], "dtype": "<i4",
            "compressor": None, "filters": filters, "fill_value": 0, "order": "C"})
        refs[f"{name}/0"] = [data.as_uri(), 0, len(bomb)]
    src = """
    def case(refs):
        import warnings
        warnings.simplefilter("ignore")
        import chunkview
        from chunkview.virtualizarr import from_virtualizarr, to_manifest_store
        back = from_virtualizarr(to_manifest_store(chunkview.References.from_dict(refs)))
        out = {}
        for name in ("plain", "masked"):
            for opener in (chunkview.open, chunkview.open_zarr):
                try:
                    opener(back)[name][...]
                    out[f"{name} {opener.__name__}"] = "read"
                except chunkview.ChunkviewError as e:
                    out[f"{name} {opener.__name__}"] = f"{type(e).__name__}: {e}"
        return out
    """
    out = run_case(src, {"version": 1, "refs": refs}, timeout=120, mem_mb=600)
    assert out.kind == "ok", str(out)
    for what, r in out.value.items():
        name = what.split()[0]
        assert r.startswith("DecodeError") and f"{name}/c/0" in r and "bomb.bin" in r, (what, r)


def test_grid_too_big_for_a_manifest_is_refused_without_allocating():
    """An array of 2**40 one-element chunks, one of them stored: a ManifestStore would need
    dense arrays of 2**40 entries; the array is left out with the reason, in little memory
    (strict mode: an UnsupportedError naming it)."""
    from hostile import run_case

    refs = {".zgroup": '{"zarr_format":2}',
            "huge/.zarray": json.dumps({
                "zarr_format": 2, "shape": [2**40], "chunks": [1], "dtype": "<i4",
                "compressor": None, "filters": None, "fill_value": 0, "order": "C"}),
            "huge/7": ["file:///nowhere.bin", 0, 4],
            "small/.zarray": json.dumps({
                "zarr_format": 2, "shape": [4], "chunks": [4], "dtype": "<i4",
                "compressor": None, "filters": None, "fill_value": 0, "order": "C"})}
    src = """
    def case(refs):
        import warnings
        import chunkview
        from chunkview.virtualizarr import to_manifest_store
        r = chunkview.References.from_dict(refs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            store = to_manifest_store(r)
        try:
            to_manifest_store(r, on_unsupported="raise")
            strict = "no error"
        except chunkview.UnsupportedError as e:
            strict = str(e)
        return sorted(store._group.arrays), [str(w.message) for w in caught], strict
    """
    out = run_case(src, {"version": 1, "refs": refs}, timeout=60, mem_mb=600)
    assert out.kind == "ok", str(out)
    arrays, warned, strict = out.value
    assert arrays == ["small"]
    assert any("huge" in w and "1,099,511,627,776" in w for w in warned), warned
    assert "'huge'" in strict and "dense" in strict


@pytest.mark.parametrize("fault", ["short", "shift", "ignore-range"])
def test_lying_server_through_the_registry(tmp_path, fault):
    """An HTTP server that answers a range with half of it, with another range, or with the
    whole file: the scan through the registry's obstore store fails with a ScanError naming
    the URL and bytes, never scans other bytes, within a time and memory limit."""
    pytest.importorskip("aiohttp")
    from hostile import run_case

    from chunkview.bench.server import RangeServer

    with h5py.File(tmp_path / "big.h5", "w") as f:  # over one 1 MiB block: ranges inside it
        f.create_dataset("x", data=np.arange(800_000, dtype="i4"), chunks=(100_000,))
    src = """
    def case(base, url):
        from obspec_utils.registry import ObjectStoreRegistry
        from obstore.store import HTTPStore
        import chunkview
        from chunkview.virtualizarr import ChunkviewParser
        reg = ObjectStoreRegistry({base: HTTPStore.from_url(
            base, client_options={"allow_http": True})})
        try:
            ChunkviewParser()(url, reg)
            return "scanned"
        except chunkview.ChunkviewError as e:
            return f"{type(e).__name__}: {e}"
    """
    with RangeServer(tmp_path) as srv:
        srv.fail(fault)
        url = srv.url("big.h5")
        out = run_case(src, srv.url("").rstrip("/"), url, timeout=120, mem_mb=800)
    assert out.kind == "ok", str(out)
    assert out.value.startswith("ScanError") and url in out.value and "bytes 0-" in out.value, \
        out.value
