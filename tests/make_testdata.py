"""Generate the test files with the HDF5 and netCDF-C libraries (through h5py and netCDF4).

Used by the test fixtures; also runnable by hand: ``python tests/make_testdata.py OUTDIR``.
Deterministic: the same files every run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def make_hdf5(path) -> Path:
    """A small HDF5 file with the layouts and filters kerchunk can translate."""
    import h5py

    path = Path(path)
    rng = np.random.default_rng(42)
    with h5py.File(path, "w") as f:
        f.attrs["title"] = "chunkview test file"
        t = (273.15 + rng.normal(0, 5, size=(6, 40, 50))).round(2).astype("f4")
        f.create_dataset("t2m", data=t, chunks=(2, 16, 20), compression="gzip",
                         compression_opts=4, shuffle=True)
        f["t2m"].attrs["units"] = "K"
        f.create_dataset("counts", data=np.arange(1000, dtype="<i8").reshape(10, 100),
                         chunks=(3, 33), compression="gzip", compression_opts=1)
        f.create_dataset("plain", data=np.linspace(0, 1, 500, dtype=">f8"))  # contiguous
        f.create_dataset("raw_chunks", data=np.arange(300, dtype="u2"), chunks=(64,))
        sparse = f.create_dataset("sparse", shape=(100,), chunks=(10,), dtype="i4",
                                  fillvalue=-9, compression="gzip")
        sparse[20:30] = np.arange(10)  # only one chunk written
        f.create_dataset("scalar", data=np.float64(3.5))
        g = f.create_group("group")
        g.create_dataset("inner", data=np.arange(64, dtype="i2").reshape(8, 8), chunks=(4, 4),
                         compression="gzip")
    return path


def make_many_chunks(path, n=5000) -> Path:
    """One dataset of n small gzip chunks (for batch paths)."""
    import h5py

    path = Path(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("obs", data=(np.arange(n * 16, dtype="i4") // 7), chunks=(16,),
                         compression="gzip", compression_opts=1, shuffle=True)
    return path


def kerchunk_refs(path, inline_threshold=100) -> dict:
    """kerchunk's references (spec v1 dict) for an HDF5 file."""
    from kerchunk.hdf import SingleHdf5ToZarr

    return SingleHdf5ToZarr(str(path), inline_threshold=inline_threshold).translate()


def h5_refs(path, names) -> dict:
    """kerchunk v1 references of the h5py datasets ``names`` made by ``chunkview.scan``
    (fletcher32 and per-chunk filter masks kept)."""
    import chunkview

    refs = chunkview.scan(str(path)).to_dict()
    keep = tuple(f"{n}/" for n in names)
    refs["refs"] = {k: v for k, v in refs["refs"].items()
                    if k in (".zgroup", ".zattrs") or k.startswith(keep)}
    return refs


def make_filters(path) -> Path:
    """Datasets with fletcher32, odd shapes, big-endian types and chunks written with a filter
    mask (stored raw although the pipeline has deflate), all by the HDF5 library."""
    import h5py

    path = Path(path)
    rng = np.random.default_rng(7)
    with h5py.File(path, "w") as f:
        f.create_dataset("f32", data=rng.normal(size=(37, 23)).astype(">f4"), chunks=(10, 7),
                         compression="gzip", shuffle=True, fletcher32=True)
        f.create_dataset("i16", data=rng.integers(-999, 999, size=(5, 9, 11), dtype="<i2"),
                         chunks=(2, 4, 5), fletcher32=True)
        f.create_dataset("c16", data=(rng.normal(size=50) + 1j * rng.normal(size=50)),
                         chunks=(8,), compression="gzip", shuffle=True)
        d = f.create_dataset("masked", shape=(40,), chunks=(10,), dtype="<i4",
                             compression="gzip", shuffle=True)
        d[:20] = np.arange(20)
        import zlib as _zlib

        raw = np.arange(100, 110, dtype="<i4")
        # chunk 2: only shuffled (deflate skipped: mask bit 1); chunk 3: stored raw (bits 0, 1)
        shuffled = np.frombuffer(raw.tobytes(), "u1").reshape(10, 4).T.copy().tobytes()
        d.id.write_direct_chunk((20,), shuffled, filter_mask=0b10)
        d.id.write_direct_chunk((30,), (raw * 2).tobytes(), filter_mask=0b11)
        assert _zlib  # (kept for readers adding compressed chunks)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    print(make_hdf5(out / "small.h5"))
    print(make_many_chunks(out / "many.h5"))


def make_monthly(folder, n=24, days=3, epoch_per_file=True, names="t2m_{y}{m:02d}.nc"):
    """``n`` monthly netCDF4 files written by netCDF-C (through netCDF4-python): ``time``
    (unlimited, "days since" the first of each file's month when ``epoch_per_file``, so the
    raw values repeat and only decoded times order the files), ``lat``, ``lon``, a packed
    int16 ``t2m`` (gzip + shuffle, scale_factor/add_offset/_FillValue) and a float32
    ``precip`` chunked differently.  Returns the paths in time order."""
    import netCDF4

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    files = []
    for k in range(n):
        y, m = 2000 + k // 12, k % 12 + 1
        path = folder / names.format(y=y, m=m, k=k)
        with netCDF4.Dataset(path, "w") as ds:
            ds.title = "monthly test data"
            ds.createDimension("time", None)
            ds.createDimension("lat", 6)
            ds.createDimension("lon", 8)
            t = ds.createVariable("time", "f8", ("time",))
            t.units = f"days since {y}-{m:02d}-01" if epoch_per_file else "days since 2000-01-01"
            t.calendar = "standard"
            start = 0 if epoch_per_file else k * 31
            t[:] = np.arange(days) + start
            la = ds.createVariable("lat", "f4", ("lat",))
            la.units = "degrees_north"
            la[:] = np.linspace(-50, 50, 6)
            lo = ds.createVariable("lon", "f4", ("lon",))
            lo[:] = np.arange(8) * 45.0
            v = ds.createVariable("t2m", "i2", ("time", "lat", "lon"), zlib=True, shuffle=True,
                                  chunksizes=(1, 3, 8), fill_value=-999)
            v.scale_factor = 0.01
            v.add_offset = 280.0
            v.units = "K"
            data = rng.integers(-2000, 2000, (days, 6, 8)).astype(np.int16)
            data[0, 0, 0] = -999  # one missing value
            v[:] = data
            p = ds.createVariable("precip", "f4", ("time", "lat", "lon"), zlib=True,
                                  chunksizes=(1, 6, 8))
            p[:] = rng.random((days, 6, 8)).astype(np.float32)
        files.append(str(path))
    return files
