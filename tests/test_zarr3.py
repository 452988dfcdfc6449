"""Zarr v3 reference sets (``chunkview.scan(..., zarr_format=3)``): read by fsspec's own
ReferenceFileSystem and zarr-python's default codec pipeline as h5py reads the files, and by
chunkview (``open``, ``open_zarr``, the xarray engine) through its C path as the v2 sets are;
saved as JSON, parquet and native; Zarr v3 sets other tools make read by chunkview."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import fsspec
import h5py
import numpy as np
import pytest
import zarr

import chunkview
from chunkview.errors import UnsupportedError
from chunkview.refs.zarr3 import to_zarr3

sys.path.insert(0, str(Path(__file__).parent))
import corpus  # noqa: E402
import make_scandata  # noqa: E402

DEFAULT = "zarr.core.codec_pipeline.BatchedCodecPipeline"


def _numcodecs_v3_works() -> bool:
    """numcodecs < 0.16's zarr v3 wrappers (numcodecs.shuffle, ...) predate zarr 3.1's data
    types and fail in zarr's own pipeline (``'Float64' object has no attribute 'itemsize'``):
    plain zarr needs numcodecs >= 0.16 to read v3 sets (chunkview's readers do not)."""
    import numcodecs

    return tuple(int(x) for x in numcodecs.__version__.split(".")[:2]) >= (0, 16)


plain_zarr = pytest.mark.skipif(not _numcodecs_v3_works(),
                                reason="zarr's pipeline needs numcodecs >= 0.16 for v3 codecs")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("v3")
    out = make_scandata.make_all(folder)
    out.update(make_scandata.make_netcdf_suite(folder / "nc"))
    return out


def _zarr_default(fo):
    """A group read by fsspec's ReferenceFileSystem and zarr's default pipeline."""
    fs = fsspec.filesystem("reference", fo=fo, remote_protocol="file")
    with zarr.config.set({"codec_pipeline.path": DEFAULT}):
        return zarr.open_group(fs.get_mapper(""), mode="r", zarr_format=3)


def _arrays(g, pre=""):
    with zarr.config.set({"codec_pipeline.path": DEFAULT}):
        for name, node in g.members():
            if isinstance(node, zarr.Group):
                yield from _arrays(node, pre + name + "/")
            else:
                assert not type(node._async_array.codec_pipeline).__module__.startswith(
                    "chunkview")
                yield pre + name, node[...]


def _h5(path, name):
    with h5py.File(path) as f:
        return f[name][()]


_same = corpus._same_v3


@plain_zarr
@pytest.mark.parametrize("form", ["dict", "json", "parquet"])
@pytest.mark.parametrize("which", ["earliest", "latest", "masks", "types", "netcdf4",
                                   "nc4_storage", "nc4_fills", "nc3_classic"])
def test_v3_read_by_fsspec_and_zarr(files, which, form, tmp_path):
    """fsspec's ReferenceFileSystem + zarr.open_group(zarr_format=3) with zarr's default
    pipeline reads every array of a v3 set as h5py reads the dataset (netCDF variables, whose
    shape follows their dimensions, as chunkview reads its v2 set)."""
    path = files[which]
    refs = chunkview.scan(str(path), zarr_format=3)
    assert "zarr.json" in refs and not any(k.endswith((".zarray", ".zgroup")) for k in refs)
    if form == "dict":
        fo = refs.to_dict()
    else:
        fo = str(tmp_path / ("r.json" if form == "json" else "r.parq"))
        refs.save(fo)
    v2 = chunkview.open(chunkview.scan(str(path)))
    seen = 0
    for name, got in _arrays(_zarr_default(fo)):
        # NetCDF3 (not HDF5): as chunkview reads its v2 set, which test_scan_netcdf3 checks
        # against netCDF-C
        want = v2[name][...] if which.startswith("nc3") else _h5(path, name)
        if np.shape(want) != got.shape:  # a netCDF variable shorter than its dimension
            want = v2[name][...]
        assert _same(got, want), name
        seen += 1
    assert seen >= (2 if which in ("masks", "netcdf4") or which.startswith("nc") else 10)


def test_v3_metadata(files):
    """The zarr.json documents: dimension names, byte order, codecs zarr knows where they
    mean the same, chunkview's where none does, v3 chunk keys, and _FillValue as xarray
    writes it."""
    refs = chunkview.scan(str(files["latest"]), zarr_format=3)
    doc = json.loads(refs["chunked_z/zarr.json"])
    assert doc["node_type"] == "array" and doc["data_type"] == "float64"
    assert [c["name"] for c in doc["codecs"]] == ["bytes", "numcodecs.shuffle", "numcodecs.zlib",
                                                   "chunkview.hdf5_fletcher32"]
    assert doc["codecs"][0]["configuration"]["endian"] == "little"
    assert doc["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}
    assert "chunked_z/c/0/0" in refs and "chunked_z/0.0" not in refs
    assert "scalar/c" in refs
    assert json.loads(refs["contig/zarr.json"])["codecs"][0]["configuration"]["endian"] == "big"
    root = json.loads(refs["zarr.json"])
    assert set(root["consolidated_metadata"]["metadata"]) >= {"chunked_z", "contig"}
    nc = chunkview.scan(str(files["netcdf4"]), zarr_format=3)
    temp = json.loads(nc["temp/zarr.json"])
    assert temp["dimension_names"] == ["time", "lat"]
    assert temp["fill_value"] == -999.0
    import base64
    import struct

    assert struct.unpack("<d", base64.b64decode(temp["attributes"]["_FillValue"]))[0] == -999.0
    assert "_FillValue" not in json.loads(nc["time/zarr.json"])["attributes"]


@pytest.mark.parametrize("which", ["earliest", "latest", "masks", "types", "netcdf4",
                                   "structure"])
def test_chunkview_reads_v3_as_v2(files, which, tmp_path):
    """chunkview.open and open_zarr read a v3 set (in memory, JSON, parquet, native) exactly
    as the v2 set, open_zarr through chunkview's C path."""
    path = files[which]
    r2 = chunkview.scan(str(path))
    v2 = chunkview.open(r2)
    v3 = chunkview.scan(str(path), zarr_format=3)
    sets = {"memory": v3}
    for ext in ("json", "parq", "cvref"):
        out = tmp_path / f"r.{ext}"
        v3.save(str(out))
        sets[ext] = str(out)
    names = [n for n in v2 if n not in r2.unsupported and n not in v3.unsupported
             and isinstance(v2[n], chunkview.Array)]
    assert names
    for how, r in sets.items():
        g = chunkview.open(r)
        z = chunkview.open_zarr(r)
        for n in names:
            want = v2[n][...]
            got = g[n][...]
            assert got.dtype == want.dtype and np.array_equal(got, want,
                                                               equal_nan=want.dtype.kind in "fc")
            zgot = z[n][...]
            assert _same(zgot, want), (how, n)
            pipe = z[n]._async_array.codec_pipeline
            if want.dtype.byteorder != ">" and want.ndim:
                assert pipe._cv_store is not None, n  # chunkview's batch decode


def test_v3_unsupported_is_named(files):
    """Arrays Zarr v3 cannot describe (structured types) are listed with the reason and raise
    it when opened; the rest of the file reads."""
    refs = chunkview.scan(str(files["types"]), zarr_format=3)
    assert set(refs.unsupported) >= {"compound", "nested"}
    assert "structured data type" in refs.unsupported["compound"]
    g = chunkview.open(refs)
    with pytest.raises(UnsupportedError, match="structured data type"):
        g["compound"]
    assert "compound" not in json.loads(refs["zarr.json"])["consolidated_metadata"]["metadata"]
    assert g["i4le"][...].sum() == (np.arange(60) - 20).sum()


@plain_zarr
def test_v3_xarray(files):
    """xarray's zarr engine on a v3 set equals engine="netcdf4" on the file; chunkview's engine
    gives the same dataset from the v3 set as from the v2 set."""
    xr = pytest.importorskip("xarray")
    path = str(files["netcdf4"])
    v3 = chunkview.scan(path, zarr_format=3)
    fs = fsspec.filesystem("reference", fo=v3.to_dict(), remote_protocol="file")
    with xr.open_dataset(path, engine="netcdf4") as n:
        for consolidated in (True, False):
            with xr.open_dataset(fs.get_mapper(""), engine="zarr", zarr_format=3,
                                 consolidated=consolidated) as z:
                xr.testing.assert_identical(z.drop_encoding().load(), n.drop_encoding().load())
    with xr.open_dataset(v3, engine="chunkview") as a, \
            xr.open_dataset(chunkview.scan(path), engine="chunkview") as b:
        xr.testing.assert_identical(a.load(), b.load())


@plain_zarr
def test_v3_cli(files, tmp_path):
    """chunkview scan --zarr-format 3 and convert --zarr-format 3 write v3 sets; converting a
    v3 set back to v2 is refused."""
    run = [sys.executable, "-m", "chunkview.cli"]
    out = tmp_path / "s.json"
    subprocess.run(run + ["scan", str(files["latest"]), "-o", str(out), "--zarr-format", "3"],
                   check=True, capture_output=True)
    v2 = tmp_path / "v2.json"
    chunkview.scan(str(files["latest"])).save(str(v2))
    conv = tmp_path / "c.parq"
    subprocess.run(run + ["convert", str(v2), "-o", str(conv), "--zarr-format", "3"],
                   check=True, capture_output=True)
    for p in (out, conv):
        g = _zarr_default(str(p))
        assert np.array_equal(g["chunked_z"][...], _h5(files["latest"], "chunked_z"))
    r = subprocess.run(run + ["convert", str(out), "-o", str(tmp_path / "x.json"),
                              "--zarr-format", "2"], capture_output=True, text=True)
    assert r.returncode == 1 and "Zarr v3" in r.stderr


def test_v3_codecs_found_through_entry_points():
    """zarr finds chunkview's v3 codecs without chunkview being imported (entry points)."""
    code = ("import sys, zarr.registry as r\n"
            "c = r.get_codec_class('chunkview.hdf5_shuffle')\n"
            "assert 'chunkview' not in sys.modules or c.__module__.startswith('chunkview')\n"
            "print(c.__module__, c.from_dict({'name': 'chunkview.hdf5_shuffle', "
            "'configuration': {'elementsize': 4}}).codec_config)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "'id': 'hdf5_shuffle'" in r.stdout and "'elementsize': 4" in r.stdout
    from importlib.metadata import entry_points

    from chunkview.codecs.zarr3 import CODECS, PREFIX

    eps = {e.name: e.value for e in entry_points(group="zarr.codecs")}
    for cid, cls in CODECS.items():  # every codec, each naming its own class
        assert eps[PREFIX + cid] == f"{cls.__module__}:{cls.__name__}"


def _zarr_written_store(tmp_path):
    """A Zarr v3 store written by zarr-python itself, as references to its chunk files."""
    root = tmp_path / "store.zarr"
    g = zarr.open_group(str(root), mode="w", zarr_format=3)
    data = np.arange(40 * 30, dtype="<f4").reshape(40, 30)
    g.create_array("plain", data=data, chunks=(16, 8))  # zstd by default
    g.create_array("gz", data=data.astype("i8"), chunks=(7, 30),
                   serializer=zarr.codecs.BytesCodec(endian="big"),
                   compressors=[zarr.codecs.GzipCodec(level=3)])
    g.create_array("blosc", data=data, chunks=(10, 10),
                   compressors=[zarr.codecs.BloscCodec(cname="lz4", shuffle="shuffle")])
    g.create_array("dotted", data=data[:, :5], chunks=(9, 5),
                   chunk_key_encoding={"name": "default", "separator": "."})
    g.create_array("sharded", data=data, chunks=(4, 10), shards=(8, 30))
    refs = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            key = p.relative_to(root).as_posix()
            refs[key] = p.read_text() if p.name == "zarr.json" else [str(p)]
    return refs, data


def test_chunkview_reads_zarr_written_v3(tmp_path):
    """References to a store zarr-python wrote (zstd, gzip, blosc, a "." key separator, big
    endian, sharding) read by chunkview as zarr reads them: sharded arrays through open_zarr
    (chunkview.open says why it cannot)."""
    refs, data = _zarr_written_store(tmp_path)
    try:  # zarr 3.1.0 cannot read its own shards back (a crc32c mismatch)
        own = zarr.open_group(str(tmp_path / "store.zarr"), mode="r")["sharded"][...]
    except ValueError:
        own = None
    g = chunkview.open(refs)
    z = chunkview.open_zarr(refs)
    for name, want in (("plain", data), ("gz", data.astype(">i8")), ("blosc", data),
                       ("dotted", data[:, :5])):
        got = g[name][...]
        assert np.array_equal(got, want) and got.dtype == want.dtype, name
        assert np.array_equal(z[name][...], want), name
    with pytest.raises(UnsupportedError, match="sharding"):
        g["sharded"]
    if own is None:
        with pytest.raises(ValueError, match="checksum"):
            z["sharded"][...]
    else:
        assert np.array_equal(own, data) and np.array_equal(z["sharded"][...], data)


def test_v3_parquet_layout_for_fsspec(files, tmp_path):
    """In the parquet layout a v3 set's chunk keys take the v2 encoding, which fsspec's
    LazyReferenceMapper can place, and each array has a shape/chunks index; zarr reads the
    zarr.json, and chunkview loads it back to the same arrays."""
    refs = chunkview.scan(str(files["latest"]), zarr_format=3)
    out = tmp_path / "r.parq"
    refs.save(str(out))
    meta = json.loads((out / ".zmetadata").read_text())["metadata"]
    doc = meta["chunked_z/zarr.json"]
    assert doc["chunk_key_encoding"] == {"name": "v2", "configuration": {"separator": "."}}
    assert set(meta["chunked_z/.zarray"]) >= {"shape", "chunks"}
    assert "dtype" not in meta["chunked_z/.zarray"]
    back = chunkview.load(str(out))
    assert np.array_equal(chunkview.open(back)["lzf"][...], _h5(files["latest"], "lzf"))


@plain_zarr
@pytest.mark.skipif(not corpus.CORPUS.is_dir(), reason="../shared/corpus is absent")
def test_corpus_v3_through_zarr():
    """The third-party corpus, scanned as Zarr v3 and read by fsspec + zarr-python's default
    pipeline: every dataset h5py reads is identical, or listed unsupported with its reason
    (structured types have no settled Zarr v3 form); nothing wrong, nothing crashes."""
    from collections import Counter

    totals = Counter()
    bad = []
    for p in corpus.files():
        for name, outcome, detail in corpus.check_file(p, zarr_format=3, reader="zarr"):
            totals[outcome] += 1
            if outcome not in ("identical", "clear-error", "zarr-cannot-name"):
                bad.append(f"{p}: {name}: {outcome} {detail}")
    print(dict(totals))
    assert not bad, "\n".join(bad[:20])
    assert totals["identical"] > 5000


@plain_zarr
def test_to_zarr3_keeps_unread_arrays_out(files):
    """to_zarr3 on a set that is already v3 is the same set; a hand-made v2 set converts."""
    refs = chunkview.scan(str(files["latest"]), zarr_format=3)
    assert to_zarr3(refs) is refs
    hand = {".zgroup": '{"zarr_format":2}',
            "a/.zarray": json.dumps({"zarr_format": 2, "shape": [4], "chunks": [2],
                                     "dtype": "<i2", "compressor": None, "filters": None,
                                     "fill_value": 7, "order": "C"}),
            "a/0": "base64:AQACAA=="}
    v3 = to_zarr3(chunkview.References.from_dict(hand))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = _zarr_default(v3.to_dict())
        assert g["a"][...].tolist() == [1, 2, 7, 7]
    assert chunkview.open(v3)["a"][...].tolist() == [1, 2, 7, 7]


def test_v3_tiny_chunks_coalesced_for_zarr(tmp_path):
    """open_zarr shows a v3 array of tiny chunks with virtual chunks (as for v2: zarr's per-chunk
    cost would dominate), in the array's zarr.json and the root's consolidated metadata; every
    selection reads as h5py reads it."""
    p = tmp_path / "tiny.h5"
    data = np.arange(40_000, dtype="<i4")
    with h5py.File(p, "w") as f:
        f.create_dataset("obs", data=data, chunks=(16,), compression="gzip", shuffle=True)
    refs = chunkview.scan(str(p), zarr_format=3)
    z = chunkview.open_zarr(refs)
    a = z["obs"]
    assert a.chunks[0] > 16 and a.chunks[0] % 16 == 0
    assert np.array_equal(a[...], data)
    assert np.array_equal(a[1001:30017:3], data[1001:30017:3])
    plain = chunkview.open_zarr(refs, coalesce=0)["obs"]
    assert plain.chunks == (16,) and np.array_equal(plain[5:999], data[5:999])


def test_combine_refuses_v3_sets_clearly(files):
    """combine works on zarr v2 sets: a v3 set is refused with what to do instead."""
    r = chunkview.scan(str(files["netcdf4"]), zarr_format=3)
    with pytest.raises(chunkview.CombineError, match="Zarr v3 metadata"):
        chunkview.combine([r, r], concat_dims=["time"])
