"""The NetCDF3 scanner (chunkview.scan.netcdf3) against netCDF4: classic, 64-bit offset and
CDF-5 files of every type, fixed-size and record variables, attributes, fill values; virtual
chunks; streaming numrecs; truncated and corrupt headers; the third-party corpus."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chunkview
from chunkview.errors import ScanError
from chunkview.io.blocks import BytesReader, open_reader
from chunkview.scan.netcdf3 import is_netcdf3, scan_netcdf3

netCDF4 = pytest.importorskip("netCDF4")

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
FORMATS = ["NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"]
BASE_TYPES = ["i1", "i2", "i4", "f4", "f8"]
CDF5_TYPES = ["u1", "u2", "u4", "i8", "u8"]
CB = 1000  # chunk_bytes forcing many virtual chunks


def types_for(fmt):
    return BASE_TYPES + (CDF5_TYPES if fmt == "NETCDF3_64BIT_DATA" else [])


def sample(dt, shape, rng):
    dt = np.dtype(dt)
    if dt.kind == "f":
        a = rng.standard_normal(shape).astype(dt) * 1000
        flat = a.reshape(-1)
        if flat.size > 3:
            flat[:3] = [np.nan, np.inf, -np.inf]
        return a
    if dt.kind == "S":
        return rng.choice(np.array(list(b"abcxyz \0"), "u1"), shape).astype("u1").view("S1")
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)


def attr_values(dt, rng, n=3):
    a = sample(dt, (n,), rng)
    if np.dtype(dt).kind == "f":
        a[:] = [1.5, -2.25, 0.1][:n] + [7.0] * (n - 3)
        if n >= 3:
            a[1] = np.nan
    return a


# ------------------------------------------------------------------ test files


def make_full(path, fmt, seed=0):
    """Every type: fixed-size (multi-dim, larger than CB), scalar and record variables
    (partially written: default fills), char arrays, attributes of every type."""
    rng = np.random.default_rng(seed)
    ds = netCDF4.Dataset(path, "w", format=fmt)
    for name, n in [("t", None), ("x", 53), ("y", 7), ("z", 3), ("w", 40), ("n", 5),
                    ("strlen", 6), ("one", 1)]:
        ds.createDimension(name, n)
    ds.title = "full test file"
    ds.empty = ""
    ds.setncattr("special_f8", np.array([np.nan, np.inf, -np.inf, 0.5]))
    ds.setncattr("special_f4", np.array([np.nan, np.inf, -np.inf, 0.1], "f4"))
    for t in types_for(fmt):
        ds.setncattr(f"g_{t}", attr_values(t, rng))
        ds.setncattr(f"g_{t}_scalar", attr_values(t, rng, 1)[0])
    for i, t in enumerate(types_for(fmt)):
        fill = {} if i % 2 else {"fill_value": sample(t, (1,), rng)[0]}
        if t.startswith("f") and i % 4 == 0:
            fill = {"fill_value": np.nan}
        v = ds.createVariable(f"fix_{t}", t, ("x", "y", "z"), **fill)
        v[:] = sample(t, (53, 7, 3), rng)
        v.units = "m s-1"
        v.valid_range = attr_values(t, rng, 2)
        v.scale_factor = np.float32(0.1)
        s = ds.createVariable(f"scalar_{t}", t, ())
        s.assignValue(sample(t, (1,), rng)[0])
        r = ds.createVariable(f"rec_{t}", t, ("t", "z"), **fill)
        r.long_name = f"record variable of {t}"
        r[: 2 + i % 3] = sample(t, (2 + i % 3, 3), rng)
    big = ds.createVariable("big_row", "f8", ("n", "w", "y"))  # one row > CB: split on axis 1
    big[:] = sample("f8", (5, 40, 7), rng)
    ch = ds.createVariable("names", "S1", ("x", "strlen"))
    ch[:] = sample("S1", (53, 6), rng)
    chf = ds.createVariable("chars_fill", "S1", ("n",), fill_value=b"#")
    chf[:3] = np.array([b"a", b"b", b"c"])
    rc = ds.createVariable("rec_chars", "S1", ("t", "strlen"))
    rc[:2] = sample("S1", (2, 6), rng)
    u = ds.createVariable("température", "f4", ("one",))
    u[:] = [21.5]
    u.description = "unicode name, attr: ünïcödé"
    ds.close()
    return path


def make_fixed_eof(path, fmt):
    """Only fixed-size variables: the last one's partial last chunk reaches past the end of
    the file (odd-sized so the data is padded)."""
    rng = np.random.default_rng(1)
    ds = netCDF4.Dataset(path, "w", format=fmt)
    ds.createDimension("x", 53)
    ds.createDimension("y", 7)
    ds.createDimension("z", 3)
    ds.createDimension("odd", 13)
    a = ds.createVariable("first", "f8", ("x", "y", "z"))
    a[:] = sample("f8", (53, 7, 3), rng)
    b = ds.createVariable("odd_i1", "i1", ("odd", "x"))
    b[:] = sample("i1", (13, 53), rng)
    c = ds.createVariable("tail", "i2", ("x", "y", "z"))
    c[:] = sample("i2", (53, 7, 3), rng)
    ds.close()
    return path


def make_one_rec(path, fmt, dtype="i1", width=3, nrec=5):
    """Exactly one record variable: records are not padded to 4 bytes."""
    rng = np.random.default_rng(2)
    ds = netCDF4.Dataset(path, "w", format=fmt)
    ds.createDimension("t", None)
    ds.createDimension("x", width or 1)
    ds.createDimension("c", 9)
    f = ds.createVariable("coord", "f8", ("c",))
    f[:] = np.arange(9.0)
    dims = ("t", "x") if width else ("t",)
    v = ds.createVariable("rec", dtype, dims)
    v[:nrec] = sample(dtype, (nrec, width) if width else (nrec,), rng)
    ds.close()
    return path


def make_multi_rec(path, fmt):
    """Several record variables of odd sizes (padding inside each record)."""
    rng = np.random.default_rng(3)
    ds = netCDF4.Dataset(path, "w", format=fmt)
    ds.createDimension("time", None)
    ds.createDimension("x", 3)
    ds.createDimension("s", 5)
    time = ds.createVariable("time", "f8", ("time",))
    time.units = "days since 2000-01-01"
    a = ds.createVariable("a", "i1", ("time", "x"))
    b = ds.createVariable("b", "i2", ("time",))
    c = ds.createVariable("c", "f4", ("time", "x"))
    d = ds.createVariable("d", "S1", ("time", "s"))
    n = 7
    time[:n] = np.arange(n)
    a[:n] = sample("i1", (n, 3), rng)
    b[: n - 2] = sample("i2", (n - 2,), rng)  # the last two records: fill
    c[:n] = sample("f4", (n, 3), rng)
    d[:n] = sample("S1", (n, 5), rng)
    ds.close()
    return path


def make_big_record(path, fmt):
    """One record variable whose records are larger than CB: split inside each record, the
    last chunk of the last record reaches past the end of the file."""
    rng = np.random.default_rng(4)
    ds = netCDF4.Dataset(path, "w", format=fmt)
    ds.createDimension("t", None)
    ds.createDimension("x", 2500)
    v = ds.createVariable("big", "i1", ("t", "x"))
    v[:3] = sample("i1", (3, 2500), rng)
    w = ds.createVariable("big2", "i2", ("t", "x"))  # records of 2 variables, padded
    w[:3] = sample("i2", (3, 2500), rng)
    ds.close()
    return path


def make_zero_rec(path, fmt):
    ds = netCDF4.Dataset(path, "w", format=fmt)
    ds.createDimension("t", None)
    ds.createDimension("x", 4)
    ds.createVariable("empty", "f4", ("t", "x"))
    ds.createVariable("empty1d", "i2", ("t",))
    v = ds.createVariable("fixed", "i4", ("x",))
    v[:] = [1, 2, 3, 4]
    ds.close()
    return path


def make_empty(path, fmt):
    ds = netCDF4.Dataset(path, "w", format=fmt)
    ds.close()
    return path


MAKERS = {
    "full": make_full,
    "fixed_eof": make_fixed_eof,
    "one_rec": make_one_rec,
    "one_rec_i2_1d": lambda p, f: make_one_rec(p, f, dtype="i2", width=0, nrec=5),
    "one_rec_f8": lambda p, f: make_one_rec(p, f, dtype="f8", width=3, nrec=4),
    "multi_rec": make_multi_rec,
    "big_record": make_big_record,
    "zero_rec": make_zero_rec,
    "empty": make_empty,
}


@pytest.fixture(scope="module")
def ncfiles(tmp_path_factory):
    d = tmp_path_factory.mktemp("nc3")
    out = {}
    for fmt in FORMATS:
        for kind, make in MAKERS.items():
            out[kind, fmt] = make(str(d / f"{kind}_{fmt}.nc"), fmt)
    return out


# ------------------------------------------------------------------ comparison


def _from_json(v):
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}.get(v, v) \
        if isinstance(v, str) else v


def assert_same_attr(got, want, where):
    if isinstance(want, bytes):  # netCDF4 gives a char _FillValue as bytes
        want = want.decode("utf-8", "replace").replace("\x00", "")
    if isinstance(want, str):
        assert got == want, where
        return
    want = np.asarray(want)
    if want.ndim == 0 or want.size == 1 and not isinstance(got, list):
        assert not isinstance(got, list), where
    else:
        assert isinstance(got, list), where
    g = np.asarray(_from_json(got), dtype=want.dtype).reshape(want.shape)
    np.testing.assert_array_equal(g, want, err_msg=where)


def assert_same_attrs(zattrs, obj, where):
    want = {k: obj.getncattr(k) for k in obj.ncattrs()}
    got = {k: v for k, v in zattrs.items() if k != "_ARRAY_DIMENSIONS"}
    assert set(got) == set(want), where
    for k in want:
        assert_same_attr(got[k], want[k], f"{where} attribute {k!r}")


def expected_fill(v):
    dt = v.dtype
    key = "S1" if dt.kind == "S" else dt.str[1:]
    if "_FillValue" in v.ncattrs():
        f = v.getncattr("_FillValue")
    elif dt.kind == "S":
        return None
    else:
        f = netCDF4.default_fillvals[key]
    if dt.kind == "S":
        import base64

        return base64.b64encode(bytes(f)[:1]).decode()
    return np.asarray(f, dtype=dt)[()]


def check_against_netcdf4(path, refs, *, names=None):
    """Every variable and attribute of refs equals what netCDF4 reads.  Returns the number
    of variables compared."""
    json.dumps(refs, default=lambda b: "bytes")  # JSON-safe metadata
    g = chunkview.open({"version": 1, "refs": refs})
    assert json.loads(refs[".zgroup"]) == {"zarr_format": 2}
    n = 0
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_maskandscale(False)
        ds.set_auto_chartostring(False)
        assert set(g) == set(ds.variables)
        assert_same_attrs(json.loads(refs[".zattrs"]), ds, f"{path} global")
        for name, v in ds.variables.items():
            if names is not None and name not in names:
                continue
            where = f"{path} variable {name!r}"
            zarray = json.loads(refs[f"{name}/.zarray"])
            zattrs = json.loads(refs[f"{name}/.zattrs"])
            want = np.asarray(v[...])
            if want.dtype.kind == "S":
                want = want.astype("S1")
            a = g[name]
            assert a.shape == want.shape == tuple(zarray["shape"]), where
            assert a.dtype.str[1:] == want.dtype.str[1:], where
            assert zarray["dtype"][0] in "|>", where  # big-endian, as stored
            for k in ("compressor", "filters"):
                assert zarray[k] is None
            assert zarray["order"] == "C" and zarray["zarr_format"] == 2
            assert zarray["dimension_separator"] == "."
            assert zattrs["_ARRAY_DIMENSIONS"] == list(v.dimensions), where
            assert_same_attrs(zattrs, v, where)
            fill = _from_json(zarray["fill_value"])
            ef = expected_fill(v)
            if ef is None or isinstance(ef, str):
                assert fill == ef, where
            else:
                np.testing.assert_array_equal(np.asarray(fill, dtype=v.dtype), ef,
                                              err_msg=where)
            got = a[...]
            np.testing.assert_array_equal(got, want, err_msg=where)
            # references are well-formed and lie inside the file
            for k, ref in refs.items():
                if k.startswith(name + "/") and not k.rsplit("/", 1)[1].startswith("."):
                    if isinstance(ref, list):
                        url, off, length = ref
                        assert 0 <= off and off + length <= os.path.getsize(path)
            n += 1
    return n


def scan(path, **kw):
    with open_reader(path) as r:
        return scan_netcdf3(r, **kw)


# ------------------------------------------------------------------ tests


def test_is_netcdf3():
    assert is_netcdf3(b"CDF\x01") and is_netcdf3(b"CDF\x02\x00\x00") and is_netcdf3(b"CDF\x05")
    assert not is_netcdf3(b"CDF\x03") and not is_netcdf3(b"\x89HDF\r\n") and not is_netcdf3(b"")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize("inline", [0, 500])
def test_against_netcdf4(ncfiles, kind, fmt, inline):
    path = ncfiles[kind, fmt]
    refs = scan(path, chunk_bytes=CB, inline_threshold=inline)
    check_against_netcdf4(path, refs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_default_chunking(ncfiles, fmt):
    """The default chunk_bytes (4 MiB): small variables are one chunk."""
    path = ncfiles["full", fmt]
    refs = scan(path)
    check_against_netcdf4(path, refs)
    z = json.loads(refs["fix_f8/.zarray"])
    assert z["chunks"] == [53, 7, 3] and z["dtype"] == ">f8"
    assert isinstance(refs["fix_f8/0.0.0"], list)
    assert isinstance(refs["scalar_i4/0"], bytes)  # inlined (4 bytes <= 500)


@pytest.mark.parametrize("fmt", FORMATS)
def test_fixed_chunks(ncfiles, fmt):
    path = ncfiles["full", fmt]
    size = os.path.getsize(path)
    refs = scan(path, chunk_bytes=CB, inline_threshold=0)
    z = json.loads(refs["fix_f8/.zarray"])
    # rows of 7*3*8 = 168 bytes: 5 rows per chunk, 11 chunks, the last partial
    assert z["chunks"] == [5, 7, 3] and z["shape"] == [53, 7, 3]
    keys = sorted((k for k in refs if k.startswith("fix_f8/") and "/." not in k),
                  key=lambda k: int(k.split("/")[1].split(".")[0]))
    assert keys == [f"fix_f8/{i}.0.0" for i in range(11)]
    begin = refs[keys[0]][1]
    for i, k in enumerate(keys):
        url, off, length = refs[k]
        assert url == Path(path).resolve().as_uri()
        assert off == begin + i * 840 and length == 840  # full length, even the last
    assert off + length <= size
    # dtypes as stored
    assert json.loads(refs["fix_i1/.zarray"])["dtype"] == "|i1"
    assert json.loads(refs["names/.zarray"])["dtype"] == "|S1"
    assert json.loads(refs["fix_i2/.zarray"])["dtype"] == ">i2"
    # a row larger than chunk_bytes: split along the next axis
    zb = json.loads(refs["big_row/.zarray"])
    assert zb["chunks"] == [1, 17, 7]
    assert {k for k in refs if k.startswith("big_row/") and "/." not in k} == {
        f"big_row/{i}.{j}.0" for i in range(5) for j in range(3)}
    # scalars: one chunk "0"
    zs = json.loads(refs["scalar_f8/.zarray"])
    assert zs["shape"] == [] and zs["chunks"] == []
    assert refs["scalar_f8/0"][2] == 8


@pytest.mark.parametrize("fmt", FORMATS)
def test_partial_chunk_at_end_of_file(ncfiles, fmt):
    path = ncfiles["fixed_eof", fmt]
    size = os.path.getsize(path)
    refs = scan(path, chunk_bytes=CB, inline_threshold=0)
    # tail: i2 rows of 42 bytes, 23 rows per chunk (966 bytes), 3 chunks, the last partial
    assert json.loads(refs["tail/.zarray"])["chunks"] == [23, 7, 3]
    last = refs["tail/2.0.0"]
    assert isinstance(last, bytes) and len(last) == 966
    assert last[7 * 42:] == b"\0" * (966 - 7 * 42)
    for k in ("tail/0.0.0", "tail/1.0.0"):
        assert isinstance(refs[k], list) and refs[k][2] == 966
    # the partial last chunk of "first" is referenced in full (its tail lies in odd_i1)
    z = json.loads(refs["first/.zarray"])
    n = -(-53 // z["chunks"][0])
    ref = refs[f"first/{n - 1}.0.0"]
    assert isinstance(ref, list) and ref[1] + ref[2] <= size
    check_against_netcdf4(path, refs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_record_variables(ncfiles, fmt):
    path = ncfiles["multi_rec", fmt]
    refs = scan(path, chunk_bytes=CB, inline_threshold=0)
    # recsize: time 8 + a 3->4 + b 2->4 + c 12 + d 5->8 = 36
    offs = {n: [refs[f"{n}/{r}" if n in ("time", "b") else f"{n}/{r}.0"][1]
                for r in range(7)] for n in ("time", "a", "b", "c", "d")}
    for n, o in offs.items():
        assert np.all(np.diff(o) == 36), n
    assert [o[0] for o in offs.values()] == [offs["time"][0] + x for x in (0, 8, 12, 16, 28)]
    assert json.loads(refs["a/.zarray"])["chunks"] == [1, 3]
    assert json.loads(refs["time/.zarray"])["chunks"] == [1]
    assert refs["a/3.0"][2] == 3 and refs["d/0.0"][2] == 5
    check_against_netcdf4(path, refs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_record_variable_unpadded(ncfiles, fmt):
    path = ncfiles["one_rec", fmt]
    refs = scan(path, chunk_bytes=CB, inline_threshold=0)
    offs = [refs[f"rec/{r}.0"][1] for r in range(5)]
    assert np.all(np.diff(offs) == 3)  # not padded to 4
    check_against_netcdf4(path, refs)
    path = ncfiles["one_rec_i2_1d", fmt]
    refs = scan(path, chunk_bytes=CB, inline_threshold=0)
    assert np.all(np.diff([refs[f"rec/{r}"][1] for r in range(5)]) == 2)
    check_against_netcdf4(path, refs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_big_records(ncfiles, fmt):
    path = ncfiles["big_record", fmt]
    refs = scan(path, chunk_bytes=CB, inline_threshold=0)
    assert json.loads(refs["big/.zarray"])["chunks"] == [1, 1000]
    assert json.loads(refs["big2/.zarray"])["chunks"] == [1, 500]
    assert {k for k in refs if k.startswith("big2/") and "/." not in k} == {
        f"big2/{r}.{j}" for r in range(3) for j in range(5)}
    assert isinstance(refs["big/2.2"], list)  # the padding is followed by big2's data
    check_against_netcdf4(path, refs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_zero_records(ncfiles, fmt):
    path = ncfiles["zero_rec", fmt]
    refs = scan(path, chunk_bytes=CB, inline_threshold=0)
    z = json.loads(refs["empty/.zarray"])
    assert z["shape"] == [0, 4] and z["chunks"] == [1, 4]
    assert json.loads(refs["empty1d/.zarray"])["shape"] == [0]
    assert not [k for k in refs if k.startswith("empty") and "/." not in k]
    assert check_against_netcdf4(path, refs) == 3


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_file(ncfiles, fmt):
    refs = scan(ncfiles["empty", fmt])
    assert set(refs) == {".zgroup", ".zattrs"} and json.loads(refs[".zattrs"]) == {}


@pytest.mark.parametrize("fmt", FORMATS)
def test_fill_values(ncfiles, fmt):
    refs = scan(ncfiles["full", fmt])
    with netCDF4.Dataset(ncfiles["full", fmt]) as ds:
        for t in types_for(fmt):
            fv = json.loads(refs[f"rec_{t}/.zarray"])["fill_value"]
            if "_FillValue" not in ds[f"rec_{t}"].ncattrs():
                want = netCDF4.default_fillvals[t]
                assert fv == want or (np.float32(fv) == np.float32(want)), t
    assert json.loads(refs["fix_i4/.zarray"])["fill_value"] != -2147483647  # _FillValue set
    assert json.loads(refs["rec_f8/.zarray"])["fill_value"] == "NaN"
    assert json.loads(refs["fix_i2/.zarray"])["fill_value"] == -32767
    assert json.loads(refs["chars_fill/.zarray"])["fill_value"] == "Iw=="  # b"#"
    refs = scan(ncfiles["full", fmt], default_fill=False)
    assert json.loads(refs["fix_i2/.zarray"])["fill_value"] is None
    assert json.loads(refs["rec_f8/.zarray"])["fill_value"] == "NaN"


@pytest.mark.parametrize("fmt", FORMATS)
def test_attributes(ncfiles, fmt):
    refs = scan(ncfiles["full", fmt])
    g = json.loads(refs[".zattrs"])
    assert g["title"] == "full test file" and g["empty"] == ""
    # as zarr writes attributes: JSON's NaN / Infinity tokens
    assert math.isnan(g["special_f8"][0]) and g["special_f8"][1:] == [math.inf, -math.inf, 0.5]
    assert math.isnan(g["special_f4"][0]) and g["special_f4"][1:3] == [math.inf, -math.inf]
    assert isinstance(g["g_i4_scalar"], int) and isinstance(g["g_i4"], list)
    a = json.loads(refs["température/.zattrs"])
    assert a == {"description": "unicode name, attr: ünïcödé", "_ARRAY_DIMENSIONS": ["one"]}
    assert json.loads(refs["scalar_i1/.zattrs"]) == {"_ARRAY_DIMENSIONS": []}


@pytest.mark.parametrize("fmt", FORMATS)
def test_streaming_numrecs(ncfiles, tmp_path, fmt):
    data = bytearray(Path(ncfiles["multi_rec", fmt]).read_bytes())
    w = 8 if fmt == "NETCDF3_64BIT_DATA" else 4
    assert int.from_bytes(data[4:4 + w], "big") == 7
    data[4:4 + w] = b"\xff" * w
    p = tmp_path / "streaming.nc"
    p.write_bytes(data)
    refs = scan(str(p), chunk_bytes=CB, inline_threshold=0)
    ref7 = scan(ncfiles["multi_rec", fmt], chunk_bytes=CB, inline_threshold=0)
    assert json.loads(refs["a/.zarray"])["shape"] == [7, 3]
    g, g7 = chunkview.open({"version": 1, "refs": refs}), chunkview.open(
        {"version": 1, "refs": ref7})
    for name in ("time", "a", "b", "c", "d"):
        np.testing.assert_array_equal(g[name][...], g7[name][...])
    # a streamed file cut inside the last record: only the complete records
    p2 = tmp_path / "streaming_cut.nc"
    p2.write_bytes(data[:-10])
    refs = scan(str(p2), chunk_bytes=CB, inline_threshold=0)
    assert json.loads(refs["a/.zarray"])["shape"] == [6, 3]
    g6 = chunkview.open({"version": 1, "refs": refs})
    np.testing.assert_array_equal(g6["c"][...], g7["c"][:6])


def test_fsspec_reference_filesystem_and_zarr(ncfiles):
    """The references work in fsspec's own reference filesystem and zarr."""
    fsspec = pytest.importorskip("fsspec")
    zarr = pytest.importorskip("zarr")
    from zarr.storage import FsspecStore

    path = ncfiles["full", "NETCDF3_64BIT_DATA"]
    refs = scan(path, chunk_bytes=CB)
    fs = fsspec.filesystem("reference", fo={"version": 1, "refs": refs}, asynchronous=True)
    store = FsspecStore(fs, read_only=True, path="")
    grp = zarr.open_group(store=store, mode="r", zarr_format=2)
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_maskandscale(False)
        ds.set_auto_chartostring(False)
        for name in ("fix_f8", "fix_u8", "rec_i2", "big_row", "names", "scalar_f4", "rec_chars"):
            np.testing.assert_array_equal(grp[name][...], np.asarray(ds[name][...]), name)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("default_fill", [True, False])
def test_xarray(ncfiles, fmt, default_fill):
    """xarray through fsspec's reference filesystem and zarr reads what it reads from the
    file with netCDF4 (raw values: JSON attributes lose float32 scale_factor types)."""
    xr = pytest.importorskip("xarray")
    path = ncfiles["full", fmt]
    refs = scan(path, chunk_bytes=CB, default_fill=default_fill)
    ds = xr.open_dataset("reference://", engine="zarr", mask_and_scale=False,
                         backend_kwargs={"consolidated": False, "zarr_format": 2,
                                         "storage_options": {"fo": {"version": 1,
                                                                    "refs": refs}}})
    with xr.open_dataset(path, engine="netcdf4", mask_and_scale=False) as want:
        xr.testing.assert_equal(ds, want)
        for name in want.variables:
            assert ds[name].dtype == want[name].dtype, name
            assert ds[name].dims == want[name].dims, name


@pytest.mark.parametrize("fmt", FORMATS[:2])
@pytest.mark.parametrize("kind", ["multi_rec", "fixed_eof", "zero_rec", "big_record"])
def test_same_offsets_as_kerchunk(ncfiles, fmt, kind):
    """With one chunk per fixed-size variable, the references are kerchunk's (scipy's)."""
    pytest.importorskip("scipy")
    kc = pytest.importorskip("kerchunk.netCDF3")
    path = ncfiles[kind, fmt]
    want = kc.NetCDF3ToZarr(path, inline_threshold=0).translate()["refs"]
    got = scan(path, inline_threshold=0, chunk_bytes=1 << 40)
    assert set(got) == set(want)
    for k, v in want.items():
        if isinstance(v, list):
            assert got[k][1:] == v[1:], k
        elif k.endswith(".zarray"):
            a, b = json.loads(got[k]), json.loads(v)
            a.pop("fill_value")
            b.pop("fill_value")
            assert a == b, k


def test_file_url_and_memory_reader(ncfiles):
    path = ncfiles["multi_rec", "NETCDF3_CLASSIC"]
    data = Path(path).read_bytes()
    refs = scan_netcdf3(BytesReader(data, url="s3://bucket/x.nc"), inline_threshold=0)
    assert refs["a/0.0"][0] == "s3://bucket/x.nc"


def test_fsspec_reader(ncfiles):
    """Through an fsspec filesystem (block-cached reads): the same references."""
    import fsspec

    path = ncfiles["full", "NETCDF3_64BIT_DATA"]
    fs = fsspec.filesystem("memory")
    fs.pipe("/nc3/full.nc", Path(path).read_bytes())
    try:
        with open_reader("memory://nc3/full.nc", block_size=4096) as r:
            got = scan_netcdf3(r, chunk_bytes=CB)
    finally:
        fs.rm("/nc3/full.nc")
    want = scan(path, chunk_bytes=CB)
    assert got.keys() == want.keys()
    for k, v in want.items():
        if isinstance(v, list):
            assert got[k][0] == "memory://nc3/full.nc" and got[k][1:] == v[1:], k
        else:
            assert got[k] == v, k


# ------------------------------------------------------------------ corruption


def header_end(data: bytes) -> int:
    """Where the header ends: the first variable's begin (an upper bound of the header)."""
    refs = scan_netcdf3(BytesReader(data), inline_threshold=0, chunk_bytes=1 << 40)
    offs = [v[1] for v in refs.values() if isinstance(v, list)]
    return min(offs) if offs else len(data)


def _read_all(refs, data, tmp_dir, tag):
    """Write data to a file named in refs and read every variable through chunkview."""
    p = Path(tmp_dir) / f"{tag}.nc"
    p.write_bytes(data)
    out = {}
    g = chunkview.open({"version": 1, "refs": refs})
    for name in g:
        out[name] = g[name][...]
    return out


@pytest.mark.parametrize("kind,fmt", [("multi_rec", f) for f in FORMATS] +
                         [("fixed_eof", "NETCDF3_CLASSIC"), ("zero_rec", "NETCDF3_64BIT_DATA"),
                          ("one_rec", "NETCDF3_64BIT_OFFSET"),
                          ("big_record", "NETCDF3_CLASSIC")])
def test_truncated(ncfiles, tmp_path, kind, fmt):
    """Every cut point: a ScanError naming the URL, or (when only padding was cut off) the
    same data as the whole file."""
    data = Path(ncfiles[kind, fmt]).read_bytes()
    hend = header_end(data)
    url = str(tmp_path / "cut.nc")
    full = _read_all(scan_netcdf3(BytesReader(data, url=url), chunk_bytes=CB,
                                  inline_threshold=0), data, tmp_path, "cut")
    step = max(1, len(data) // 1500)
    cuts = sorted(set(range(0, len(data), step)) | set(range(max(0, len(data) - 64),
                                                             len(data))))
    ok = 0
    for cut in cuts:
        short = data[:cut]
        u = str(tmp_path / f"cut{cut}.nc")
        try:
            refs = scan_netcdf3(BytesReader(short, url=u), chunk_bytes=CB, inline_threshold=0)
        except ScanError as e:
            assert e.url == u and str(u) in str(e)
            continue
        assert cut >= hend, cut
        got = _read_all(refs, short, tmp_path, f"cut{cut}")
        assert got.keys() == full.keys()
        for k in full:
            np.testing.assert_array_equal(got[k], full[k])
        ok += 1
    assert ok <= 4  # at most the padding at the end


def test_truncated_error_names_variable(ncfiles):
    data = Path(ncfiles["fixed_eof", "NETCDF3_CLASSIC"]).read_bytes()
    with pytest.raises(ScanError) as ei:
        scan_netcdf3(BytesReader(data[:-400], url="mem://f.nc"))
    e = ei.value
    assert e.url == "mem://f.nc" and e.path == "tail" and e.offset is not None
    assert "tail" in str(e) and "truncated" in str(e)
    data = Path(ncfiles["multi_rec", "NETCDF3_CLASSIC"]).read_bytes()
    with pytest.raises(ScanError) as ei:
        scan_netcdf3(BytesReader(data[:-40], url="mem://g.nc"))
    assert ei.value.path == "d"


def _nc3_bytes(fmt, ncfiles, kind):
    return Path(ncfiles[kind, fmt]).read_bytes()


@pytest.fixture(scope="module")
def corrupt_inputs(ncfiles):
    out = []
    for fmt in FORMATS:
        for kind in ("multi_rec", "full", "zero_rec"):
            data = _nc3_bytes(fmt, ncfiles, kind)
            out.append((f"{kind}_{fmt}", data, header_end(data)))
    return out


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_header_byte_flips(corrupt_inputs, tmp_path_factory, data):
    """Random byte changes in the header: ScanError or references that read (never another
    exception)."""
    name, raw, hend = data.draw(st.sampled_from(corrupt_inputs))
    buf = bytearray(raw)
    n = data.draw(st.integers(1, 4))
    for _ in range(n):
        pos = data.draw(st.integers(0, hend - 1))
        buf[pos] = data.draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, buf[pos] ^ 1,
                                              data.draw(st.integers(0, 255))]))
    d = tmp_path_factory.mktemp("flip")
    url = str(d / "f.nc")
    try:
        refs = scan_netcdf3(BytesReader(bytes(buf), url=url), chunk_bytes=CB)
    except ScanError:
        return
    json.dumps(refs, default=lambda b: "bytes")
    for k, v in refs.items():
        if isinstance(v, list):
            assert v[0] == url and v[1] >= 0 and v[1] + v[2] <= len(buf), k
    _read_all(refs, bytes(buf), d, "f")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"CDF\x01", b"CDF\x02", b"CDF\x05"]), st.binary(max_size=300))
def test_random_headers(magic, rest):
    try:
        scan_netcdf3(BytesReader(magic + rest, url="mem://r.nc"))
    except ScanError:
        pass


@pytest.mark.parametrize("version", [1, 2, 5])
def test_huge_counts(version):
    """Huge counts and lengths are refused at once, without allocating or looping."""
    w = 8 if version == 5 else 4

    def u(n):
        return n.to_bytes(w, "big")

    magic = b"CDF" + bytes([version])
    big = (1 << (8 * w)) - 2 if version != 5 else (1 << 62)
    cases = [
        magic + u(0) + (10).to_bytes(4, "big") + u(big),  # dimension count
        magic + u(0) + (10).to_bytes(4, "big") + u(1) + u(big),  # name length
        magic + u(0) + b"\0" * (4 + w) + (12).to_bytes(4, "big") + u(1) + u(1) + b"a\0\0\0"
        + (4).to_bytes(4, "big") + u(big),  # attribute length
        magic + u(0) + b"\0" * (4 + w) * 2 + (11).to_bytes(4, "big") + u(big),  # var count
        magic + u(0) + b"\0" * (4 + w) * 2 + (11).to_bytes(4, "big") + u(1) + u(1)
        + b"v\0\0\0" + u(big),  # ndims of a variable
        magic + u(big) + (10).to_bytes(4, "big") + u(1) + u(1) + b"x\0\0\0" + u(0)
        + b"\0" * (4 + w) + (11).to_bytes(4, "big") + u(1) + u(1) + b"v\0\0\0" + u(1) + u(0)
        + b"\0" * (4 + w) + (5).to_bytes(4, "big") + u(4) + (200).to_bytes(
            4 if version == 1 else 8, "big"),  # numrecs (not streaming) past the file
    ]
    for c in cases:
        with pytest.raises(ScanError):
            scan_netcdf3(BytesReader(c + b"\0" * 64, url="mem://h.nc"))


def test_invalid_headers():
    def hdr(body, v=1):
        return b"CDF" + bytes([v]) + body

    z = (0).to_bytes(4, "big")
    with pytest.raises(ScanError, match="not a NetCDF3"):
        scan_netcdf3(BytesReader(b"\x89HDF\r\n\x1a\n" + b"\0" * 100))
    with pytest.raises(ScanError, match="not a NetCDF3"):
        scan_netcdf3(BytesReader(b"CD"))
    with pytest.raises(ScanError, match="list tag"):
        scan_netcdf3(BytesReader(hdr(z + (7).to_bytes(4, "big") + z + z * 4)))
    with pytest.raises(ScanError, match="ABSENT"):
        scan_netcdf3(BytesReader(hdr(z + z + (3).to_bytes(4, "big") + z * 8)))
    # a CDF-5 type in a classic file
    body = z + z + z + (12).to_bytes(4, "big") + (1).to_bytes(4, "big") + (1).to_bytes(
        4, "big") + b"a\0\0\0" + (7).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\1\0\0\0"
    with pytest.raises(ScanError, match="nc_type"):
        scan_netcdf3(BytesReader(hdr(body + z + z)))
    # the smallest valid headers
    assert set(scan_netcdf3(BytesReader(hdr(z * 7)))) == {".zgroup", ".zattrs"}
    assert set(scan_netcdf3(BytesReader(hdr(z * 11, v=5)))) == {".zgroup", ".zattrs"}
    with pytest.raises(ScanError, match="truncated"):
        scan_netcdf3(BytesReader(hdr(z * 10, v=5)))


def build_header(version, dims=(), variables=(), gatts=(), numrecs=0, pad_to=0):
    """A hand-made NetCDF3 file: dims [(name, length)], variables [(name, dimids, nc_type,
    begin, attrs)], attributes [(name, nc_type, nelems, raw values)]."""
    w = 8 if version == 5 else 4
    ow = 4 if version == 1 else 8

    def u(n):
        return n.to_bytes(w, "big")

    def t4(n):
        return n.to_bytes(4, "big")

    def name(s):
        b = s.encode()
        return u(len(b)) + b + b"\0" * (-len(b) % 4)

    def atts(lst):
        if not lst:
            return t4(0) + u(0)
        return t4(12) + u(len(lst)) + b"".join(
            name(k) + t4(t) + u(n) + raw + b"\0" * (-len(raw) % 4) for k, t, n, raw in lst)

    out = b"CDF" + bytes([version]) + u(numrecs)
    out += (t4(10) + u(len(dims)) + b"".join(name(k) + u(n) for k, n in dims)) if dims \
        else t4(0) + u(0)
    out += atts(gatts)
    if variables:
        out += t4(11) + u(len(variables))
        for vname, ids, t, begin, vatts in variables:
            out += name(vname) + u(len(ids)) + b"".join(u(i) for i in ids) + atts(vatts)
            out += t4(t) + u(0) + begin.to_bytes(ow, "big")
    else:
        out += t4(0) + u(0)
    return out + b"\0" * max(0, pad_to - len(out))


@pytest.mark.parametrize("version", [1, 2, 5])
def test_semantic_header_errors(version):
    ok = build_header(version, [("t", 0), ("x", 4)],
                      [("a", [1], 4, 400, []), ("r", [0, 1], 3, 416, [])], numrecs=2,
                      pad_to=432)
    refs = scan_netcdf3(BytesReader(ok, url="mem://ok.nc"), inline_threshold=0)
    assert refs["a/0"] == ["mem://ok.nc", 400, 16]
    assert refs["r/1.0"] == ["mem://ok.nc", 424, 8]  # one record variable: 8-byte records
    cases = {
        "not the first dimension": build_header(
            version, [("t", 0), ("x", 4)], [("a", [1, 0], 4, 400, [])], pad_to=500),
        "second unlimited": build_header(version, [("t", 0), ("u", 0)], pad_to=500),
        "out of range": build_header(version, [("x", 4)], [("a", [1], 4, 400, [])],
                                     pad_to=500),
        "duplicate variable": build_header(
            version, [("x", 4)], [("a", [0], 4, 400, []), ("a", [0], 4, 416, [])],
            pad_to=500),
        "invalid variable name": build_header(version, [("x", 4)],
                                              [("a/b", [0], 4, 400, [])], pad_to=500),
        "invalid dimension name": build_header(version, [(".zarray", 4)], pad_to=500),
        "empty attribute name": build_header(version, gatts=[("\0", 2, 1, b"x")]),
        "not UTF-8": build_header(version, [("x", 4)], [("caf\xe9", [0], 4, 400, [])],
                                  pad_to=500).replace("caf\xe9".encode(), b"caf\xe9"),
        "nc_type": build_header(version, [("x", 4)], [("a", [0], 13, 400, [])], pad_to=500),
        "truncated file": build_header(version, [("x", 1 << 30)],
                                       [("a", [0], 6, 400, [])], pad_to=500),
        "records": build_header(version, [("t", 0), ("x", 4)], [("r", [0, 1], 3, 400, [])],
                                numrecs=1000, pad_to=500),
        "inside the header": build_header(version, [("x", 4)], [("a", [0], 4, 8, [])],
                                          pad_to=500),
    }
    for what, data in cases.items():
        with pytest.raises(ScanError) as ei:
            scan_netcdf3(BytesReader(data, url="mem://bad.nc"))
        assert ei.value.url == "mem://bad.nc", what
        if what not in ("not UTF-8", "records", "truncated file", "empty attribute name"):
            assert what in str(ei.value), (what, str(ei.value))
    # a name padded with NULs is the C string before them (as netCDF-C reads it)
    data = build_header(version, [("x\0\0\0\0", 4)], [("a", [0], 4, 400, [])],
                        pad_to=500)
    assert json.loads(scan_netcdf3(BytesReader(data))["a/.zattrs"]) == {
        "_ARRAY_DIMENSIONS": ["x"]}


def test_classic_begin_is_signed():
    data = build_header(1, [("x", 4)], [("a", [0], 4, 0x80000000, [])], pad_to=300)
    with pytest.raises(ScanError, match="negative"):
        scan_netcdf3(BytesReader(data))


def test_cdf5_large_dimension_and_attribute_types():
    """CDF-5: 64-bit dimension lengths (checked against the file size) and the unsigned and
    64-bit attribute types."""
    data = build_header(5, [("x", 1 << 40)], [("a", [0], 11, 200, [])], pad_to=300)
    with pytest.raises(ScanError, match="truncated file"):
        scan_netcdf3(BytesReader(data))
    vals = np.array([2**64 - 1, 0], ">u8").tobytes()
    data = build_header(5, gatts=[("u8", 11, 2, vals), ("i8", 10, 1, b"\xff" * 8),
                                  ("u1", 7, 3, b"\xff\x00\x01"),
                                  ("u2", 8, 1, b"\xff\xfe"), ("u4", 9, 1, b"\xff" * 4),
                                  ("empty", 4, 0, b""), ("txt", 2, 4, b"ab\0\0")])
    assert json.loads(scan_netcdf3(BytesReader(data))[".zattrs"]) == {
        "u8": [2**64 - 1, 0], "i8": -1, "u1": [255, 0, 1], "u2": 65534, "u4": 2**32 - 1,
        "empty": [], "txt": "ab"}


def _patched(data, old, new):
    assert data.count(old) == 1
    return data.replace(old, new)


def test_overlapping_and_misplaced_data(ncfiles):
    """Variables whose data lies in the header or overlaps another's are refused, as
    netCDF-C does."""
    data = Path(ncfiles["fixed_eof", "NETCDF3_64BIT_OFFSET"]).read_bytes()
    refs = scan_netcdf3(BytesReader(data), inline_threshold=0, chunk_bytes=1 << 30)
    b_first, b_odd = refs["first/0.0.0"][1], refs["odd_i1/0.0"][1]
    for new in (b_first - 8, b_odd - 4, 4):
        bad = _patched(data, b_odd.to_bytes(8, "big"), new.to_bytes(8, "big"))
        with pytest.raises(ScanError, match="begins at byte"):
            scan_netcdf3(BytesReader(bad))
    bad = _patched(data, b_first.to_bytes(8, "big"), (16).to_bytes(8, "big"))
    with pytest.raises(ScanError, match="header"):
        scan_netcdf3(BytesReader(bad))


# ------------------------------------------------------------------ third-party corpus


def _corpus_nc3():
    if not CORPUS.is_dir():
        return []
    out = []
    for root, _, files in os.walk(CORPUS):
        for f in sorted(files):
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                if is_netcdf3(fh.read(4)):
                    out.append(p)
    return sorted(out)


CORPUS_FILES = _corpus_nc3()


@pytest.mark.skipif(not CORPUS_FILES, reason="no NetCDF3 files in ../shared/corpus")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: os.path.relpath(p, CORPUS))
@pytest.mark.parametrize("chunk_bytes", [4 << 20, 64])
def test_corpus(path, chunk_bytes):
    try:
        netCDF4.Dataset(path).close()
    except OSError:
        with pytest.raises(ScanError):
            scan(path, chunk_bytes=chunk_bytes)
        return
    refs = scan(path, chunk_bytes=chunk_bytes, inline_threshold=0 if chunk_bytes == 64 else 500)
    n = check_against_netcdf4(path, refs)
    with netCDF4.Dataset(path) as ds:
        assert n == len(ds.variables)


def test_corpus_counts():
    """Summary over the corpus (printed with -s): files and variables identical."""
    if not CORPUS_FILES:
        pytest.skip("no corpus")
    files = same_files = nvars = 0
    for p in CORPUS_FILES:
        try:
            ds = netCDF4.Dataset(p)
        except OSError:
            continue
        files += 1
        ds.close()
        nvars += check_against_netcdf4(p, scan(p))
        same_files += 1
    print(f"\nNetCDF3 corpus: {len(CORPUS_FILES)} files, {files} readable by netCDF4, "
          f"{same_files} identical, {nvars} variables identical")
    assert files == same_files


def test_math_of_chunk_sizes():
    """chunk_bytes smaller than one element: one element per chunk."""
    from chunkview.scan.common import contiguous_chunking as _chunking

    assert _chunking((10, 3), 8, 1) == ((1, 1), 1, 8)
    assert _chunking((10, 3), 8, 48) == ((2, 3), 0, 24)
    assert _chunking((), 8, 1) == ((), 0, 8)
    assert math.prod(_chunking((4, 5, 6), 2, 60)[0]) * 2 <= 60
