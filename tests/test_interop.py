"""References chunkview writes mean the same to every reader.

A differential suite: files written by netCDF-C and libhdf5 (``make_scandata``) and the
third-party corpus are scanned, saved as JSON and as parquet, and read back by other people's
tools -- fsspec's own ``ReferenceFileSystem`` with zarr-python, and xarray's zarr engine
(consolidated and not) -- and compared with what ``engine="netcdf4"`` (netCDF files) or h5py
(plain HDF5) read from the file itself.  kerchunk's references of the same files go the other
way, through chunkview.

Two differences are allowed and said where they are: JSON attributes carry no width, so a
float32 ``scale_factor`` is a float64 one for zarr readers and xarray decodes packed data to
float64 where netCDF4 decodes to float32 (the values agree to float32 precision); and
variable-length strings, stored inline as fixed-width UTF-8 with ``_Encoding``, decode to
``<U`` strings where netCDF4 gives an object array of the same strings.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("h5py")
pytest.importorskip("netCDF4")
xr = pytest.importorskip("xarray")
fsspec = pytest.importorskip("fsspec")
zarr = pytest.importorskip("zarr")

import chunkview  # noqa: E402
from chunkview.refs.kerchunk import zarr_reads  # noqa: E402

import corpus  # noqa: E402
import make_scandata  # noqa: E402

FORMS = ("json", "parquet")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interop")
    files = make_scandata.make_netcdf_suite(folder / "nc")
    files["scales"] = make_scandata.make_dimension_scales(folder / "scales.h5")
    files.update(make_scandata.make_all(folder / "h5"))
    return files


def _saved(path: Path, form: str, tmp: Path) -> str:
    refs = chunkview.scan(str(path))
    out = tmp / f"{path.stem}.{'json' if form == 'json' else 'parq'}"
    if form == "parquet":
        pytest.importorskip("pyarrow")
        refs.save(str(out), format="parquet")
    else:
        refs.save(str(out))
    return str(out)


def _mapper(refs_path: str):
    return fsspec.filesystem("reference", fo=refs_path, remote_protocol="file").get_mapper("")


def _store(refs_path: str):
    """fsspec's ReferenceFileSystem as a zarr store (what xarray needs to open a group)."""
    return zarr.storage.FsspecStore.from_mapper(_mapper(refs_path), read_only=True)


_TRUTH = r"""
import pickle, sys, warnings
import netCDF4, xarray as xr
warnings.simplefilter("ignore")
out = {}
for path in sys.argv[2:]:
    groups = []
    def walk(g, prefix):
        groups.append(prefix)
        for name, sub in g.groups.items():
            walk(sub, f"{prefix}/{name}" if prefix else name)
    with netCDF4.Dataset(path) as ds:
        walk(ds, "")
    for group in groups:
        with xr.open_dataset(path, engine="netcdf4", group=group or None) as ds:
            out[path, group] = ds.load()
with open(sys.argv[1], "wb") as f:
    pickle.dump(out, f)
"""


def netcdf4_truth(paths, folder: Path) -> dict:
    """``{(path, group): dataset}`` as engine="netcdf4" reads them, for every group, read in
    a child process: netCDF-C built on HDF5 1.14 sometimes crashes (H5T__conv_vlen, from
    H5Dget_create_plist) opening files with string variables once h5py's own libhdf5 shares
    the process, which would take the test run down with it."""
    import pickle
    import subprocess
    import sys

    out = folder / "truth.pkl"
    for _ in range(4):
        r = subprocess.run([sys.executable, "-c", _TRUTH, str(out), *map(str, paths)],
                           capture_output=True, text=True, timeout=300)
        if r.returncode == 0:
            with open(out, "rb") as f:
                return pickle.load(f)
    raise AssertionError(f"engine='netcdf4' failed: {r.stderr[-2000:]}")


@pytest.fixture(scope="module")
def truth(suite, tmp_path_factory):
    return netcdf4_truth([suite[n] for n in NETCDF], tmp_path_factory.mktemp("truth"))


def _groups_of(truth, path) -> list:
    return [g for p, g in truth if p == str(path)]


def _same_attr(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        return bool(np.all((a == b) | (np.isnan(a.astype(float)) & np.isnan(b.astype(float)))))
    return bool(np.array_equal(a, b))


def differences(got, want) -> list:
    """What differs between two decoded xarray datasets (empty when they agree)."""
    out = []
    if set(got.variables) != set(want.variables):
        out.append(f"variables {sorted(got.variables)} != {sorted(want.variables)}")
    for k in set(got.attrs) | set(want.attrs):
        if k not in got.attrs or k not in want.attrs or not _same_attr(got.attrs[k],
                                                                         want.attrs[k]):
            out.append(f"attribute {k!r}: {got.attrs.get(k)!r} != {want.attrs.get(k)!r}")
    for name in sorted(set(got.variables) & set(want.variables)):
        a, b = got[name], want[name]
        if a.dims != b.dims or a.shape != b.shape:
            out.append(f"{name}: dims {dict(a.sizes)} != {dict(b.sizes)}")
            continue
        packed = "scale_factor" in b.encoding or "add_offset" in b.encoding
        strings = {a.dtype.kind, b.dtype.kind} <= {"U", "O"}
        if a.dtype != b.dtype and not strings and \
                not (packed and {a.dtype.kind, b.dtype.kind} == {"f"}):
            out.append(f"{name}: dtype {a.dtype} != {b.dtype}")
            continue
        va, vb = a.values, b.values
        if {va.dtype.kind, vb.dtype.kind} <= {"U", "O"}:  # str as '<U' or as objects
            ok = va.shape == vb.shape and [str(x) for x in va.reshape(-1)] == \
                [str(x) for x in vb.reshape(-1)]
        elif va.dtype.kind in "fc":
            rtol = 1e-6 if a.dtype != b.dtype else 0
            ok = np.allclose(va, vb.astype(va.dtype), rtol=rtol, atol=0, equal_nan=True)
        else:
            ok = np.array_equal(va, vb)
        if not ok:
            out.append(f"{name}: values {va!r} != {vb!r}")
        for k in set(a.attrs) | set(b.attrs):
            if k not in a.attrs or k not in b.attrs or not _same_attr(a.attrs[k], b.attrs[k]):
                out.append(f"{name}: attribute {k!r}: {a.attrs.get(k)!r} != {b.attrs.get(k)!r}")
    return out


NETCDF = ["nc4_fills", "nc4_attrs", "nc4_strings", "nc4_groups", "nc4_storage", "nc3_classic",
          "nc3_offset", "nc3_data", "netcdf4"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("consolidated", [False, True])
@pytest.mark.parametrize("name", NETCDF)
def test_xarray_zarr_engine_reads_like_netcdf4(suite, truth, tmp_path, name, form,
                                               consolidated):
    """xarray's zarr engine over fsspec's ReferenceFileSystem on chunkview's references gives
    what engine="netcdf4" gives: fill values only where the file defines them, unlimited
    dimensions as netCDF-C sizes them, dimensions without variables absent, attributes as
    netCDF-C reports them, strings and times decoded."""
    path = suite[name]
    saved = _saved(path, form, tmp_path)
    for group in _groups_of(truth, path):
        want = truth[str(path), group]
        with warnings.catch_warnings():
            warnings.simplefilter("error", category=UserWarning)  # zarr: "not recognized"
            if consolidated:  # the root's .zmetadata holds the group's metadata
                got = xr.open_dataset(_store(saved), engine="zarr", zarr_format=2,
                                      consolidated=True, group=group or None).load()
            else:  # (zarr's FsspecStore lists nothing under a group of a mapper's root)
                m = fsspec.filesystem("reference", fo=saved, remote_protocol="file")
                got = xr.open_dataset(m.get_mapper(group), engine="zarr", zarr_format=2,
                                      consolidated=False).load()
        assert differences(got, want) == [], (name, group)


@pytest.mark.parametrize("name", NETCDF)
def test_chunkview_engine_reads_like_netcdf4(suite, truth, name):
    path = suite[name]
    for group in _groups_of(truth, path):
        want = truth[str(path), group]
        got = xr.open_dataset(path, engine="chunkview", group=group or None).load()
        assert differences(got, want) == [], (name, group)


def _h5_datasets(path) -> list:
    import h5py

    out = []
    with h5py.File(path) as f:
        f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", ["earliest", "latest", "masks", "types", "structure", "scales",
                                  "nc4_storage", "nc4_fills"])
def test_zarr_python_reads_like_h5py(suite, tmp_path, name, form):
    """zarr-python over fsspec's ReferenceFileSystem reads every dataset chunkview presents as
    h5py reads it (netCDF variables as netCDF-C sizes them), per-chunk filter masks included
    (chunkview's ``hdf5_masked`` codec, found by numcodecs through its entry point)."""
    import h5py

    path = suite[name]
    refs = chunkview.scan(str(path))
    saved = _saved(path, form, tmp_path)
    g = zarr.open_group(_mapper(saved), mode="r", zarr_format=2)
    seen = 0
    with h5py.File(path) as f:
        for ds in _h5_datasets(path):
            if ds in refs.unsupported:
                assert f"{ds}/.zarray" not in refs
                continue
            if corpus.netcdf_dimension_only(f[ds]):
                assert ds not in g
                continue
            if not zarr_reads(json.loads(refs[f"{ds}/.zarray"])):
                # zarr-python has no data type for records with nested records or sub-arrays:
                # not in the consolidated metadata, so the rest of the group still opens
                with pytest.raises((KeyError, ValueError)):
                    g[ds]
                assert corpus.same(chunkview.open(refs)[ds][...], f[ds][()])
                continue
            arr = g[ds]
            got = arr[...]
            here = os.getcwd()
            os.chdir(Path(path).parent)  # libhdf5 finds external raw files from the cwd
            try:
                assert corpus.same(got, f[ds][()]) or corpus.same_variable(got, f[ds]), ds
            finally:
                os.chdir(here)
            seen += 1
    assert seen


def test_parquet_metadata_is_zarr_consolidated_metadata(suite, tmp_path):
    """Every key of a parquet set's .zmetadata "metadata" is a zarr node's metadata (zarr
    refuses anything else); chunkview's own keys live beside it and still reach chunkview."""

    path = suite["nc4_fills"]
    saved = _saved(path, "parquet", tmp_path)
    doc = json.loads((Path(saved) / ".zmetadata").read_bytes())
    odd = [k for k in doc["metadata"] if k.rsplit("/", 1)[-1] not in (".zarray", ".zattrs",
                                                                       ".zgroup")]
    assert doc["metadata"] and not odd
    assert any(k.endswith(".cvnetcdf") for k in doc["chunkview"])
    lazy, refs = chunkview.load(saved), chunkview.scan(str(path))
    for k in doc["chunkview"]:
        assert json.loads(lazy[k]) == json.loads(refs[k]), k
    zarr.open_consolidated(_mapper(saved), zarr_format=2)


def test_json_keeps_chunkview_keys_out_of_listings(suite, tmp_path):
    """Saved JSON has zarr's consolidated metadata, and chunkview's own keys inside it rather
    than at the top where zarr would list them as nodes; loading brings them back."""

    path = suite["nc4_groups"]
    refs = chunkview.scan(str(path))
    saved = _saved(path, "json", tmp_path)
    doc = json.loads(Path(saved).read_text())
    assert not [k for k in doc["refs"] if k.rsplit("/", 1)[-1].startswith(".cv")]
    back = chunkview.load(saved)
    for k in refs:
        if k.rsplit("/", 1)[-1].startswith(".cv"):
            assert json.loads(back[k]) == json.loads(refs[k]), k


def test_fill_value_only_where_defined(suite):
    """fill_value is the file's _FillValue or null: xarray masks nothing else.  Never-written
    chunks of a variable without one still read as netCDF's default fill value."""

    refs = chunkview.scan(str(suite["nc4_fills"]))
    fills = {k: json.loads(refs[f"{k}/.zarray"])["fill_value"]
             for k in ("default_fill", "no_fill", "own_fill", "zeros", "scalar", "never")}
    assert fills == {"default_fill": None, "no_fill": None, "own_fill": -1, "zeros": None,
                     "scalar": None, "never": None}
    assert "n/.zarray" not in refs and "free/.zarray" not in refs  # dimensions, not variables
    assert json.loads(refs["on_n/.zarray"])["shape"] == [7]
    assert json.loads(refs["default_fill/.zarray"])["shape"] == [4, 3]  # t is 4 long
    g = zarr.open_group(_mapper(_saved(suite["nc4_fills"], "json", Path(refs.source).parent)),
                        mode="r", zarr_format=2)
    default = np.float32(netcdf_default_f4())
    assert np.array_equal(g["default_fill"][2:], np.full((2, 3), default))
    assert np.all(g["never"][:] == np.float64(9.969209968386869e36))


def netcdf_default_f4():
    import netCDF4

    return netCDF4.default_fillvals["f4"]


# ------------------------------------------------------------------ kerchunk, the other way


@pytest.mark.parametrize("name", ["nc4_attrs", "nc4_storage", "nc4_groups"])
def test_kerchunk_references_read_through_chunkview(suite, name):
    """kerchunk's references of the same files read through chunkview as through fsspec."""
    kerchunk_hdf = pytest.importorskip("kerchunk.hdf")
    path = str(suite[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kref = kerchunk_hdf.SingleHdf5ToZarr(path, inline_threshold=0).translate()
    theirs = zarr.open_group(fsspec.filesystem("reference", fo=kref).get_mapper(""), mode="r",
                             zarr_format=2)
    ours = chunkview.open(chunkview.References.from_dict(kref))
    n = 0
    for apath, arr in theirs.arrays():
        if arr.dtype.kind == "O":
            continue
        assert corpus.same(ours[apath][...], arr[...]), apath
        n += 1
    for gpath, sub in theirs.groups():
        for apath, arr in sub.arrays():
            if arr.dtype.kind != "O":
                assert corpus.same(ours[f"{gpath}/{apath}"][...], arr[...])
                n += 1
    assert n


# ------------------------------------------------------------------ the corpus


KERCHUNK_MASKED = ["hdf5_mini_blosc.h5", "hdf5_mini_shuffle_blosc.h5", "hdf5_mali_chunk.h5",
                   "hdf5_mali_chunk2.h5"]


@pytest.mark.parametrize("fname", KERCHUNK_MASKED)
def test_kerchunk_masked_files_on_every_path(fname, tmp_path):
    """kerchunk's test files with per-chunk filter masks read as h5py reads them through
    chunkview.open, open_zarr, and fsspec + zarr-python on the saved JSON and parquet."""
    import h5py

    path = corpus.CORPUS / "kerchunk" / "tests" / fname
    if not path.exists():
        pytest.skip("corpus not present")
    refs = chunkview.scan(str(path))
    stores = {"open": chunkview.open(refs), "open_zarr": chunkview.open_zarr(refs)}
    for form in FORMS:
        stores[form] = zarr.open_group(_mapper(_saved(path, form, tmp_path)), mode="r",
                                       zarr_format=2)
    with h5py.File(path) as f:
        names = [n for n in _h5_datasets(path) if n not in refs.unsupported]
        assert names
        for n in names:
            want = f[n][()]
            for how, g in stores.items():
                assert corpus.same(np.asarray(g[n][...]), want), (n, how)


def _corpus_netcdf(limit=40) -> list:
    out = []
    for rec in corpus.inventory():
        p = corpus.CORPUS / rec["file"]
        if p.suffix == ".nc" and rec.get("format") in ("hdf5", "netcdf3") and \
                p.stat().st_size < (8 << 20):
            out.append(p)
    return sorted(out)[:limit]


# files whose netCDF4 reading cannot be matched through zarr, and why
KNOWN = {
    # netCDF-C names a dimension after the first link it meets to the scale ("time_hard"); the
    # scanner names it after the scale's own path
    "air_linked.nc": "dimensions named through hard links",
    # a variable written with NOFILL and never written: netCDF4 returns uninitialised memory
    "f03tst_open_mem.nc": "uninitialised values in the truth",
    # zarr v2 structured dtypes spell padding as fields; netCDF4 gives aligned numpy dtypes and
    # compound attributes as numpy records, zarr as JSON lists
    "ref_hdf5_compat3.nc": "compound dtype spelling",
    "ref_tst_compounds2.nc": "nested compound: no zarr-python data type",
    "ref_tst_compounds3.nc": "compound dtype spelling",
    "ref_tst_compounds4.nc": "compound attribute spelling",
}


def _elements(refs) -> int:
    return max([int(np.prod(json.loads(refs[k])["shape"], dtype=np.int64))
                for k in refs if k.endswith(".zarray")] or [0])


def test_corpus_netcdf_through_zarr_engine(tmp_path):
    """netCDF files of the corpus: chunkview's JSON references read with xarray's zarr engine
    (consolidated) equal engine="netcdf4" wherever both open the file."""
    files = _corpus_netcdf() if corpus.CORPUS.exists() else []
    if not files:
        pytest.skip("corpus not present")
    counts = {"equal": 0, "refused by chunkview": 0, "netcdf4 cannot": 0, "too big": 0}
    bad = []
    scanned = {}
    for p in files:
        try:
            refs = chunkview.scan(str(p))
        except chunkview.ChunkviewError:
            counts["refused by chunkview"] += 1
            continue
        if refs.unsupported:
            counts["refused by chunkview"] += 1
        elif _elements(refs) > 10_000_000:  # declared, never written: too big to load here
            counts["too big"] += 1
        else:
            scanned[p] = refs
    readable = []
    for p in scanned:  # one by one: a file netCDF-C cannot open has no truth
        try:
            netcdf4_truth([p], tmp_path)
            readable.append(p)
        except AssertionError:
            counts["netcdf4 cannot"] += 1
    truths = netcdf4_truth(readable, tmp_path)
    for p in readable:
        want = truths[str(p), ""]
        out = tmp_path / (p.stem + ".json")
        scanned[p].save(str(out))
        try:
            got = xr.open_dataset(_store(str(out)), engine="zarr", zarr_format=2,
                                  consolidated=True).load()
        except Exception as e:  # noqa: BLE001 - reported below
            bad.append(f"{p.name}: {type(e).__name__}: {e}"[:300])
            continue
        d = differences(got, want)
        if not d:
            counts["equal"] += 1
        elif p.name in KNOWN:
            counts["known difference"] = counts.get("known difference", 0) + 1
        else:
            bad.append(f"{p.name}: {d[:3]}"[:400])
    print(counts)
    assert not bad, "\n".join(bad)
    assert counts["equal"] > 0


def test_combined_masks_reach_other_readers(tmp_path):
    """Combining files whose chunks skip filters in different places gives one hdf5_masked
    wrapper for the result: fsspec + zarr-python read the combined set as h5py reads each
    file (an input without masks and inputs with them mix)."""
    import zlib

    import h5py

    def make(name, raw):
        p = tmp_path / name
        with h5py.File(p, "w", libver="latest") as f:
            d = f.create_dataset("v", shape=(40,), chunks=(10,), dtype="<i4",
                                 compression="gzip")
            for i in range(4):
                block = np.arange(i * 10, i * 10 + 10, dtype="<i4") + len(name)
                if i in raw:
                    d.id.write_direct_chunk((i * 10,), block.tobytes(), filter_mask=1)
                else:
                    d.id.write_direct_chunk((i * 10,), zlib.compress(block.tobytes()))
        return str(p)

    files = [make("a.h5", {1}), make("bb.h5", set()), make("ccc.h5", {0, 3})]
    refs = chunkview.combine(files, concat_dim="f")
    (wrapper,) = json.loads(refs["v/.zarray"])["filters"]
    assert wrapper["id"] == "hdf5_masked" and wrapper["lengths"] == {"40": 1}
    refs.save(str(tmp_path / "c.json"))
    g = zarr.open_group(_mapper(str(tmp_path / "c.json")), mode="r", zarr_format=2)
    want = np.stack([h5py.File(f)["v"][:] for f in files])
    np.testing.assert_array_equal(g["v"][:], want)
    np.testing.assert_array_equal(chunkview.open(refs)["v"][:], want)


def test_netcdf3_char_fill_masks_like_netcdf4(tmp_path):
    """A NetCDF3 char variable's _FillValue is bytes in the chunkview engine, as in netCDF4,
    so it masks the same characters (scipy's example_3_maskedvals.nc has one)."""
    import netCDF4

    p = tmp_path / "chars.nc"
    with netCDF4.Dataset(p, "w", format="NETCDF3_CLASSIC") as d:
        d.createDimension("x", 4)
        c = d.createVariable("c", "S1", ("x",), fill_value=b"X")
        c[:] = np.array([b"a", b"X", b"b", b"c"])
    for concat in (True, False):
        want = xr.open_dataset(p, engine="netcdf4", concat_characters=concat).load()
        got = xr.open_dataset(p, engine="chunkview", concat_characters=concat).load()
        assert differences(got, want) == []
        assert got["c"].encoding["_FillValue"] == want["c"].encoding["_FillValue"] == b"X"


def test_scans_are_reproducible(suite, tmp_path):
    """Every scan of a file writes the same bytes: in this process, in a helper, again."""
    for name, path in sorted(suite.items()):
        texts = set()
        for i, isolate in enumerate((False, True, True)):
            out = tmp_path / f"{name}-{i}.json"
            chunkview.scan(str(path), isolate=isolate).save(str(out))
            texts.add(out.read_bytes())
        assert len(texts) == 1, name


def test_masked_codec_bounds_a_decompression_bomb(tmp_path):
    """hdf5_masked decodes through chunkview's bounded slow path: a zlib chunk that would
    inflate to 512 MiB stops at the chunk's size (nbytes) with a DecodeError, quickly and
    without the memory; measured in a child process."""
    import subprocess
    import sys
    import zlib

    comp = zlib.compressobj(9)
    block = bytes(16 << 20)
    bomb = b"".join(comp.compress(block) for _ in range(32)) + comp.flush()
    (tmp_path / "bomb").write_bytes(bomb)
    code = """
import resource, sys, time
import numcodecs
from chunkview.errors import DecodeError
codec = numcodecs.get_codec({"id": "hdf5_masked", "codecs": [{"id": "zlib", "level": 1}],
                              "lengths": {"7": 1}, "nbytes": 4000})
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    codec.decode(data)
except DecodeError as e:
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print("refused", grew, time.perf_counter() - t0, e)
"""
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bomb")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    words = r.stdout.split()
    assert words[0] == "refused", r.stdout
    assert int(words[1]) < 64 << 10  # KiB: the 512 MiB were never made
    assert float(words[2]) < 5


def test_damaged_cache_image_is_a_clear_error(tmp_path):
    """Every length in a metadata cache image is checked before it is used: a damaged count,
    length or address gives a ScanError (naming the image where the image itself is
    inconsistent), never a crash, a read past it or wrong data."""
    p = make_scandata.make_cache_image(tmp_path / "image.h5")
    data = bytearray(p.read_bytes())
    at = data.find(b"MDCI")
    for offset, value in ((6, 0xFFFF), (14, 0xFFFFFF), (14 + 4 + 14 + 16, 0xFFFFFFF)):
        bad = bytearray(data)
        bad[at + offset:at + offset + 4] = value.to_bytes(4, "little")
        q = tmp_path / f"bad{offset}.h5"
        q.write_bytes(bytes(bad))
        for isolate in (False, True):
            try:
                refs = chunkview.scan(str(q), isolate=isolate)
            except chunkview.ChunkviewError as e:  # the image's, or what it left wrong
                assert isinstance(e, chunkview.ScanError) and str(e), e
            else:  # libhdf5 may still read it: then chunkview reads it right
                import h5py

                with h5py.File(q) as f:
                    assert corpus.same(chunkview.open(refs)["y"][...], f["y"][()])
