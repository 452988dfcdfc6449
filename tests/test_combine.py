"""combine / merge: many netCDF4 files (written by netCDF-C) into one virtual dataset, checked
against xarray.open_mfdataset on the same files; dask threads and a LocalCluster of
processes; what cannot be expressed is refused."""

import json
import random

import numpy as np
import pytest

import chunkview
from chunkview import CombineError

from make_testdata import make_monthly

xr = pytest.importorskip("xarray")
pytest.importorskip("netCDF4")


@pytest.fixture(scope="module")
def monthly(tmp_path_factory):
    """24 monthly files, each with its own "days since" epoch."""
    return make_monthly(tmp_path_factory.mktemp("monthly"), n=24)


@pytest.fixture(scope="module")
def expected(monthly):
    with xr.open_mfdataset(monthly, combine="by_coords") as ds:
        return ds.load()


@pytest.fixture(scope="module")
def combined(monthly, tmp_path_factory):
    shuffled = monthly[:]
    random.Random(3).shuffle(shuffled)  # the order comes from the decoded times
    refs = chunkview.combine([chunkview.scan(f) for f in shuffled], concat_dim="time")
    path = tmp_path_factory.mktemp("comb") / "combined.cvref"
    refs.save(path)
    return refs, str(path)


def test_combine_equals_open_mfdataset(combined, expected, monthly):
    refs, path = combined
    assert sorted(refs.urls) == sorted("file://" + f for f in monthly)  # each file's URL kept
    meta = json.loads(refs["time/.zarray"])
    assert meta["shape"] == [72]
    assert json.loads(refs["time/.zattrs"])["units"] == "days since 2000-01-01"
    for src in (refs, path):
        got = xr.open_dataset(src, engine="chunkview").load()
        xr.testing.assert_identical(got, expected)


def test_combined_threads_and_zarr(combined, expected):
    pytest.importorskip("dask")
    refs, path = combined
    got = xr.open_dataset(path, engine="chunkview", chunks={})
    assert got["t2m"].chunks[0] == (1,) * 72
    xr.testing.assert_identical(got.compute(scheduler="threads"), expected)
    # the same references through zarr (chunkview's store) and through fsspec + zarr
    g = chunkview.open_zarr(refs)
    np.testing.assert_array_equal(g["precip"][...], expected["precip"].values)


def test_distributed_local_cluster(combined, expected, monthly):
    distributed = pytest.importorskip("distributed")
    _, path = combined
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        ds = xr.open_dataset(path, engine="chunkview", chunks={})
        got = ds.compute()
        xr.testing.assert_identical(got, expected)
        # every variable was read in the workers, not in this process
        pids = client.run(lambda: __import__("os").getpid())
        assert len(pids) == 2
        total = ds["t2m"].sum().compute()
        assert float(total) == pytest.approx(float(expected["t2m"].sum()), rel=1e-6)
        mf = xr.open_mfdataset(monthly, combine="by_coords").compute()
        xr.testing.assert_identical(got, mf)


def test_regex_order_and_cli(monthly, expected, tmp_path):
    refsdir = tmp_path / "refs"
    from chunkview.cli import main

    # scan in 2 processes, one output per file
    assert main(["scan", *monthly, "-o", str(refsdir), "--jobs", "2"]) == 0
    outs = sorted(refsdir.glob("*.json"))
    assert len(outs) == 24
    for f, o in zip(monthly, outs):
        assert chunkview.load(str(o)).to_dict(consolidated=True) == \
            chunkview.scan(f).to_dict(consolidated=True)
    out = tmp_path / "c.json"
    assert main(["combine", *map(str, outs[::-1]), "-o", str(out), "--regex",
                 r"_(\d{6})\.nc"]) == 0
    got = xr.open_dataset(str(out), engine="chunkview").load()
    xr.testing.assert_identical(got, expected)


def test_new_dimension(tmp_path, monthly):
    files = [_one(tmp_path, f"member_{k}.nc", value=k) for k in (10, 2, 1)]
    refs = chunkview.combine(files, concat_dim="member", regex=r"_(\d+)\.nc$")
    ds = xr.open_dataset(refs, engine="chunkview").load()
    assert list(ds["member"].values) == [1, 2, 10]  # numeric order, not the names' order
    assert ds["t2m"].dims == ("member", "time", "lat")
    assert ds["lat"].dims == ("lat",) and ds["time"].dims == ("time",)
    for i, f in enumerate(sorted(files, key=lambda f: int(f.split("_")[-1][:-3]))):
        one = xr.open_dataset(f, engine="netcdf4").load()
        xr.testing.assert_identical(ds["t2m"].isel(member=i, drop=True), one["t2m"])
    # the monthly files' time values differ (each counts from its own month): time is a
    # dimension coordinate, so it must agree, and the combine is refused
    with pytest.raises(CombineError, match="time"):
        chunkview.combine(monthly[:3], concat_dim="member")


def test_merge(tmp_path, monthly, expected):
    import netCDF4

    src = monthly[0]
    parts = []
    for var in ("t2m", "precip"):
        path = tmp_path / f"{var}.nc"
        with netCDF4.Dataset(src) as a, netCDF4.Dataset(path, "w") as b:
            b.setncatts(a.__dict__)
            for name, d in a.dimensions.items():
                b.createDimension(name, None if d.isunlimited() else len(d))
            for name in ("time", "lat", "lon", var):
                v = a[name]
                v.set_auto_maskandscale(False)
                filt = v.filters()
                w = b.createVariable(name, v.dtype, v.dimensions, zlib=filt["zlib"],
                                     shuffle=filt["shuffle"],
                                     chunksizes=v.chunking() if v.chunking() != "contiguous"
                                     else None,
                                     fill_value=getattr(v, "_FillValue", None))
                w.setncatts({k: v.getncattr(k) for k in v.ncattrs() if k != "_FillValue"})
                w.set_auto_maskandscale(False)
                w[:] = v[:]
        parts.append(str(path))
    refs = chunkview.merge(parts)
    got = xr.open_dataset(refs, engine="chunkview").load()
    want = xr.open_dataset(src, engine="netcdf4").load()
    xr.testing.assert_identical(got, want)
    cli_out = tmp_path / "merged.cvref"
    from chunkview.cli import main

    assert main(["combine", *parts, "--merge", "-o", str(cli_out)]) == 0
    xr.testing.assert_identical(xr.open_dataset(str(cli_out), engine="chunkview").load(), want)


def test_inline_chunks_and_masks(monthly, expected):
    refs = [chunkview.scan(f, inline_threshold=1 << 20) for f in monthly[:4]]
    assert refs[0].index.get_grid("t2m/", [3, 2, 1])[0].tolist() == [-1] * 6  # all inline
    c = chunkview.combine(refs)
    got = xr.open_dataset(c, engine="chunkview").load()
    xr.testing.assert_identical(got, expected.isel(time=slice(0, 12)))


# ------------------------------------------------------------------ refusals


def _one(tmp_path, name, *, days=3, chunk=1, scale=0.01, lat_shift=0.0, start=0,
         var_chunk_lat=3, value=1):
    import netCDF4

    path = tmp_path / name
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("lat", 6)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        t[:] = np.arange(days) + start
        la = ds.createVariable("lat", "f4", ("lat",))
        la[:] = np.arange(6) + lat_shift
        v = ds.createVariable("t2m", "i2", ("time", "lat"), zlib=True,
                              chunksizes=(chunk, var_chunk_lat))
        v.scale_factor = scale
        v[:] = np.full((days, 6), value, np.int16)
    return str(path)


def test_refuses_partial_chunk_inside(tmp_path):
    a = _one(tmp_path, "a.nc", days=3, chunk=2, start=0)
    b = _one(tmp_path, "b.nc", days=3, chunk=2, start=3)
    with pytest.raises(CombineError, match="partial"):
        chunkview.combine([a, b])
    # at the end it is fine
    c = _one(tmp_path, "c.nc", days=4, chunk=2, start=0)
    d = _one(tmp_path, "d.nc", days=3, chunk=2, start=4)
    refs = chunkview.combine([d, c])
    assert json.loads(refs["t2m/.zarray"])["shape"] == [7, 6]
    ds = xr.open_dataset(refs, engine="chunkview", decode_times=False).load()
    np.testing.assert_array_equal(ds["time"].values, np.arange(7))
    np.testing.assert_allclose(ds["t2m"].values, np.ones((7, 6)))  # packed on write


def test_refuses_what_differs(tmp_path):
    a = _one(tmp_path, "a.nc", start=0)
    with pytest.raises(CombineError, match="chunks"):
        chunkview.combine([a, _one(tmp_path, "b.nc", start=3, var_chunk_lat=2)])
    with pytest.raises(CombineError, match="scale_factor"):
        chunkview.combine([a, _one(tmp_path, "c.nc", start=3, scale=0.5)])
    with pytest.raises(CombineError, match="lat.*differ"):
        chunkview.combine([a, _one(tmp_path, "d.nc", start=3, lat_shift=0.5)])
    with pytest.raises(CombineError, match="overlapping"):
        chunkview.combine([a, _one(tmp_path, "e.nc", start=2)])
    # the same lat values in another file are fine (compared decoded)
    refs = chunkview.combine([a, _one(tmp_path, "f.nc", start=3)])
    assert json.loads(refs["t2m/.zarray"])["shape"] == [6, 6]
    with pytest.raises(CombineError, match="regex"):
        chunkview.combine([a, _one(tmp_path, "g.nc", start=6)], regex=r"(\d+)")
    with pytest.raises(CombineError, match="no arrays"):
        chunkview.combine([{"version": 1, "refs": {".zgroup": '{"zarr_format":2}'}}])


def test_refuses_other_variables(tmp_path, monthly):
    a = _one(tmp_path, "a.nc")
    with pytest.raises(CombineError, match="other variables"):
        chunkview.combine([a, monthly[0]])
