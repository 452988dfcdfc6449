"""Generate HDF5 / NetCDF4 files covering what the scanner must translate, with the HDF5 and
netCDF-C libraries themselves (through h5py and netCDF4).

``python tests/make_scandata.py DIR`` writes them into DIR; the tests call :func:`make_all`.
Each file is small; together they cover every chunk index, layout, filter that h5py ships
(deflate, shuffle, fletcher32, scaleoffset, lzf), per-chunk filter masks, fill values, the
datatypes, attributes, dimension scales, links, external raw storage and a virtual dataset.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

INTS = ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8"]
FLOATS = ["f2", "f4", "f8"]


def _create(g, name, shape, dtype, chunks=None, dcpl_fn=None, **kw):
    """A dataset through the low-level API when a property h5py's high-level API lacks is
    needed (layout, allocation time, chunk options)."""
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    if chunks:
        dcpl.set_chunk(chunks)
    if dcpl_fn:
        dcpl_fn(dcpl)
    maxshape = kw.pop("maxshape", shape)
    sp = h5py.h5s.create_simple(shape, tuple(h5py.h5s.UNLIMITED if m is None else m
                                             for m in maxshape))
    tid = h5py.h5t.py_create(np.dtype(dtype), logical=True)
    h5py.h5d.create(g.id, name.encode(), tid, sp, dcpl=dcpl)
    return g[name]


def make_layouts(path: Path, libver: str) -> Path:
    """Every layout and chunk index the library writes for ``libver``."""
    import h5py

    rng = np.random.default_rng(1)
    with h5py.File(path, "w", libver=libver) as f:
        f.create_dataset("contig", data=np.arange(6000, dtype=">f8").reshape(100, 60))
        f.create_dataset("contig_3d", data=rng.integers(0, 99, (7, 5, 3), dtype="i2"))
        f.create_dataset("scalar", data=np.float32(3.5))
        f.create_dataset("empty", shape=(0, 4), dtype="i4")
        f.create_dataset("unwritten", shape=(10, 10), dtype="f4", fillvalue=-1.5)
        d = _create(f, "compact", (4, 5), "<i2",
                    dcpl_fn=lambda p: p.set_layout(h5py.h5d.COMPACT))
        d[...] = np.arange(20).reshape(4, 5)
        f.create_dataset("chunked", data=np.arange(1000 * 10, dtype="i4").reshape(1000, 10),
                         chunks=(7, 3))
        f.create_dataset("chunked_z", data=rng.random((200, 30)), chunks=(16, 7),
                         compression="gzip", shuffle=True, fletcher32=True)
        f.create_dataset("paged", data=np.arange(30000, dtype="i2"), chunks=(10,),
                         compression="gzip")
        f.create_dataset("ea", data=np.arange(500 * 6, dtype="i4").reshape(500, 6),
                         chunks=(7, 4), maxshape=(None, 6), compression="gzip")
        f.create_dataset("ea_dim1", data=np.arange(50 * 600, dtype="i4").reshape(50, 600),
                         chunks=(7, 4), maxshape=(50, None))
        f.create_dataset("bt2", data=np.arange(50 * 60, dtype="f4").reshape(50, 60),
                         chunks=(7, 4), maxshape=(None, None), compression="gzip")
        f.create_dataset("single", data=np.arange(100, dtype="u8"), chunks=(100,))
        f.create_dataset("single_z", data=np.arange(100, dtype="i4"), chunks=(100,),
                         compression="gzip", fletcher32=True)
        s = f.create_dataset("sparse", shape=(100, 100), dtype="f4", chunks=(10, 10),
                             fillvalue=np.nan)
        s[5:15, 20:22] = 1
        d = _create(f, "implicit", (95,), "i4", chunks=(10,),
                    dcpl_fn=lambda p: p.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY))
        d[...] = np.arange(95)
        grown = f.create_dataset("grown", shape=(3, 4), maxshape=(None, None), chunks=(2, 2),
                                 dtype="i8", compression="gzip")
        grown[...] = 7
        grown.resize((9, 5))
        grown[5:, :] = np.arange(20).reshape(4, 5)
        f.create_dataset("lzf", data=np.arange(5000, dtype="i4"), chunks=(300,),
                         compression="lzf")
        f.create_dataset("scaleoffset_int", data=np.arange(3000, dtype="i4") % 77,
                         chunks=(256,), scaleoffset=0)
        f.create_dataset("scaleoffset_float", data=np.linspace(0, 10, 2000), chunks=(256,),
                         scaleoffset=3)
    return path


def _libhdf5():
    """The HDF5 library h5py is linked with (for calls h5py does not wrap)."""
    import ctypes
    import glob
    import os

    import h5py

    here = os.path.dirname(h5py.__file__)
    libs = sorted(glob.glob(os.path.join(here, "..", "h5py.libs", "libhdf5-*")) +
                  glob.glob(os.path.join(here, ".dylibs", "libhdf5.*")) +
                  glob.glob(os.path.join(here, "..", "h5py.libs", "libhdf5.*")))
    libs = [p for p in libs if "hl" not in os.path.basename(p)]
    return ctypes.CDLL(libs[0]) if libs else ctypes.CDLL(None)


def make_cache_image(path: Path) -> Path:
    """A file closed with a metadata cache image (``H5Pset_mdc_image_config``): libhdf5 keeps
    object headers and other metadata in the image instead of at their addresses."""
    import ctypes

    import h5py

    class Config(ctypes.Structure):  # H5AC_cache_image_config_t
        _fields_ = [("version", ctypes.c_int), ("generate_image", ctypes.c_bool),
                    ("save_resize_status", ctypes.c_bool), ("entry_ageout", ctypes.c_int)]

    fn = _libhdf5().H5Pset_mdc_image_config
    fn.argtypes = [ctypes.c_int64, ctypes.POINTER(Config)]
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    if fn(fapl.id, ctypes.byref(Config(1, True, False, -1))) < 0:
        raise RuntimeError("H5Pset_mdc_image_config failed")
    fid = h5py.h5f.create(str(path).encode(), h5py.h5f.ACC_TRUNC, fapl=fapl)
    with h5py.File(fid) as f:
        f.create_dataset("x", data=np.arange(10.0))
        f.create_dataset("y", data=np.arange(100).reshape(10, 10), chunks=(5, 5),
                         compression="gzip")
        g = f.create_group("g")
        g.attrs["a"] = 1
        g.create_dataset("z", data=np.arange(5, dtype="i2"))
    return path


def _dont_filter_partial(dcpl):
    """``H5Pset_chunk_opts(dcpl, H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS)``: h5py does not wrap
    it, so call the HDF5 library h5py is linked with."""
    import ctypes
    import glob
    import os

    import h5py

    here = os.path.dirname(h5py.__file__)
    libs = sorted(glob.glob(os.path.join(here, "..", "h5py.libs", "libhdf5-*")) +
                  glob.glob(os.path.join(here, ".dylibs", "libhdf5.*")) +
                  glob.glob(os.path.join(here, "..", "h5py.libs", "libhdf5.*")))
    libs = [p for p in libs if "hl" not in os.path.basename(p)]
    lib = ctypes.CDLL(libs[0]) if libs else ctypes.CDLL(None)
    fn = lib.H5Pset_chunk_opts
    fn.argtypes = [ctypes.c_int64, ctypes.c_uint]
    if fn(dcpl.id, 0x0002) < 0:
        raise RuntimeError("H5Pset_chunk_opts failed")


def make_masks(path: Path) -> Path:
    """Chunks stored raw among compressed ones (per-chunk filter masks), and unfiltered
    partial edge chunks (the layout's DONT_FILTER_PARTIAL_BOUND_CHUNKS flag)."""
    import zlib

    import h5py

    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset("masked", shape=(40,), chunks=(10,), dtype="<i4",
                             compression="gzip")
        for i in range(4):
            block = np.arange(i * 10, i * 10 + 10, dtype="<i4")
            if i % 2:
                d.id.write_direct_chunk((i * 10,), block.tobytes(), filter_mask=1)
            else:
                d.id.write_direct_chunk((i * 10,), zlib.compress(block.tobytes()))
        d = _create(f, "edges", (25, 7), "<f8", chunks=(10, 4),
                    dcpl_fn=lambda p: (p.set_deflate(4), _dont_filter_partial(p)))
        d[...] = np.arange(175, dtype="f8").reshape(25, 7)
    return path


def make_types(path: Path) -> Path:
    """Every datatype the scanner maps, in chunked and contiguous datasets, and attributes
    of every type."""
    import h5py

    with h5py.File(path, "w") as f:
        for t in INTS + FLOATS:
            for order in "<>":
                dt = np.dtype(order + t)
                data = (np.arange(60) - 20).astype(dt).reshape(6, 10)
                f.create_dataset(f"{t}{'le' if order == '<' else 'be'}", data=data,
                                 chunks=(4, 4), compression="gzip", shuffle=True)
                f.create_dataset(f"{t}{'le' if order == '<' else 'be'}_contig", data=data)
        f.create_dataset("bool", data=np.arange(30) % 3 == 0, chunks=(7,))
        f.create_dataset("c8", data=(np.arange(20) + 1j * np.arange(20)).astype("c8"),
                         chunks=(6,))
        f.create_dataset("c16", data=(np.arange(20) - 2j).astype(">c16"))
        f.create_dataset("fixed_str", data=np.array([b"alpha", b"be", b"", b"gamma!"], "S6"),
                         chunks=(3,))
        for pad, name in ((h5py.h5t.STR_NULLTERM, "nullterm"),
                          (h5py.h5t.STR_SPACEPAD, "spacepad")):
            tid = h5py.h5t.C_S1.copy()
            tid.set_size(8)
            tid.set_strpad(pad)
            sp = h5py.h5s.create_simple((4,))
            ds = h5py.h5d.create(f.id, f"str_{name}".encode(), tid, sp)
            raw = [b"ab cd   ", b"x\0yz    ", b"full8chr", b"        "]
            ds.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(raw, "S8"), mtype=tid)
        vs = h5py.string_dtype("utf-8")
        f.create_dataset("vlen_utf8", data=np.array(["héllo", "", "wörld ✓", "x"], object),
                         dtype=vs)
        f.create_dataset("vlen_ascii", data=np.array([b"a", b"bcd"], object),
                         dtype=h5py.string_dtype("ascii"), chunks=(1,))
        comp = np.dtype({"names": ["a", "b", "c"], "formats": ["<i2", ">f8", "S3"],
                         "offsets": [0, 4, 16], "itemsize": 24})
        data = np.zeros(12, comp)
        data["a"], data["b"], data["c"] = np.arange(12), np.arange(12) / 4, b"xyz"
        f.create_dataset("compound", data=data, chunks=(5,), compression="gzip")
        nested = np.dtype([("pos", [("x", "<f4"), ("y", "<f4")]), ("id", "<u2"),
                           ("v", "<i4", (3,))])
        nd = np.zeros(7, nested)
        nd["pos"]["x"], nd["id"], nd["v"] = np.arange(7), np.arange(7) * 2, 5
        f.create_dataset("nested", data=nd)
        et = h5py.enum_dtype({"RED": 0, "GREEN": 1, "BLUE": 42}, basetype="i2")
        f.create_dataset("enum", data=np.array([0, 1, 42, 1], "i2"), dtype=et, chunks=(2,))
        f.create_dataset("opaque", data=np.frombuffer(bytes(range(48)), "V6"), chunks=(4,))
        at = f.create_dataset("array_t", shape=(8,), dtype=np.dtype(("<i4", (3,))),
                              chunks=(3,))
        at[...] = np.arange(24, dtype="<i4").reshape(8, 3)
        ac = f.create_dataset("array_contig", shape=(4,), dtype=np.dtype(("<f8", (2, 3))))
        ac[...] = np.arange(24, dtype="<f8").reshape(4, 2, 3)
        f.create_dataset("fill_custom", shape=(20,), chunks=(5,), dtype="i4", fillvalue=-7)
        f["fill_custom"][5:10] = 3
        a = f["i4le"].attrs
        a["int"] = np.int64(-5)
        a["float"] = 2.5
        a["nan"] = np.float32(np.nan)
        a["inf"] = -np.inf
        a["text"] = "héllo"
        a["bytes"] = np.bytes_(b"raw")
        a["array"] = np.arange(4, dtype="u2")
        a["strings"] = np.array([b"a", b"bc"])
        a["vlen_strings"] = np.array(["x", "yz"], dtype=h5py.string_dtype())
        a["bool"] = np.bool_(True)
        a["complex"] = np.complex64(1 + 2j)
        a["compound"] = np.array((1, 2.0), dtype=[("p", "i4"), ("q", "f8")])
        a["empty"] = h5py.Empty("f4")
    return path


def make_structure(path: Path, other: Path, raw: Path) -> Path:
    """Groups, dimension scales, soft / hard / external links, external raw storage, a
    virtual dataset, a vlen sequence (unsupported) and a null dataspace."""
    import h5py

    with h5py.File(other, "w") as o:
        o.create_dataset("target", data=np.arange(12, dtype="i2").reshape(3, 4), chunks=(2, 2))
    np.arange(50, dtype=">i4").tofile(raw)
    with h5py.File(path, "w") as f:
        g = f.create_group("grp/sub")
        g.attrs["title"] = "nested"
        x = f.create_dataset("x", data=np.arange(10.0))
        y = f.create_dataset("y", data=np.arange(5.0))
        x.make_scale("x")
        y.make_scale("y")
        v = f.create_dataset("grp/v", data=np.arange(50.0).reshape(5, 10), chunks=(2, 5))
        v.dims[0].attach_scale(y)
        v.dims[1].attach_scale(x)
        f.create_dataset("grp/nodims", data=np.zeros((3, 3)))
        f["hard"] = v
        f["soft"] = h5py.SoftLink("/grp/v")
        f["dangling"] = h5py.SoftLink("/nowhere")
        f["ext"] = h5py.ExternalLink(other.name, "/target")
        f.create_dataset("external_raw", shape=(5, 10), dtype=">i4",
                         external=[(raw.name, 0, h5py.h5f.UNLIMITED)])
        layout = h5py.VirtualLayout(shape=(2, 12), dtype="i2")
        layout[0] = h5py.VirtualSource(other.name, "target", shape=(12,))
        f.create_virtual_dataset("vds", layout, fillvalue=0)  # reshapes its source: no map
        layout = h5py.VirtualLayout(shape=(3, 3, 4), dtype="i2")  # whole sources, aligned
        for i in range(3):
            layout[i] = h5py.VirtualSource(other.name, "target", shape=(3, 4))
        f.create_virtual_dataset("vds_stack", layout, fillvalue=0)
        layout = h5py.VirtualLayout(shape=(7, 4), dtype="i2")  # rows 0-3 unmapped: fill
        layout[4:7] = h5py.VirtualSource(other.name, "target", shape=(3, 4))
        f.create_virtual_dataset("vds_partial", layout, fillvalue=0)
        layout = h5py.VirtualLayout(shape=(8, 4), dtype="i2")
        layout[1:4] = h5py.VirtualSource(other.name, "target", shape=(3, 4))
        f.create_virtual_dataset("vds_misaligned", layout, fillvalue=0)
        f.create_dataset("vlen_seq", data=np.array([np.arange(3), np.arange(1)], object),
                         dtype=h5py.vlen_dtype("i4"))
        f.create_dataset("null", data=h5py.Empty("f8"))
    return path


def make_netcdf4(path: Path) -> Path:
    import netCDF4

    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.title = "test"
        ds.createDimension("time", None)
        ds.createDimension("lat", 6)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        lat = ds.createVariable("lat", "f4", ("lat",))
        lat[:] = np.linspace(-50, 50, 6)
        v = ds.createVariable("temp", "f4", ("time", "lat"), zlib=True, fill_value=-999.0,
                              chunksizes=(2, 3))
        v.long_name = "temperature"
        t[:] = np.arange(5)
        v[:4] = np.arange(24, dtype="f4").reshape(4, 6)
        g = ds.createGroup("forecast")
        g.createDimension("step", 3)
        s = g.createVariable("step", "i4", ("step",))
        s[:] = [1, 2, 3]
        st = ds.createVariable("names", str, ("lat",))
        st[:] = np.array(["a", "bb", "ccc", "", "é", "f"], object)
    return path


def make_netcdf_suite(folder: Path) -> dict:
    """netCDF files written by netCDF-C (through netCDF4-python) that exercise what references
    must carry for every reader: fill values defined, default and off; unlimited dimensions
    written to different lengths; dimensions without variables; strings; attributes of every
    kind; packing; times; groups; big-endian data; compression, shuffle and Fletcher-32; and
    the three NetCDF3 formats.  ``{name: path}``."""
    import netCDF4

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}

    p = out["nc4_fills"] = folder / "nc4_fills.nc"
    with netCDF4.Dataset(p, "w", format="NETCDF4") as ds:
        ds.createDimension("t", None)
        ds.createDimension("x", 3)
        ds.createDimension("n", None)  # unlimited, no variable
        ds.createDimension("free", 4)  # fixed, no variable
        a = ds.createVariable("default_fill", "f4", ("t", "x"))  # netCDF's default fill
        b = ds.createVariable("no_fill", "i4", ("t", "x"), fill_value=False)
        c = ds.createVariable("own_fill", "i2", ("t", "x"), fill_value=-1)
        d = ds.createVariable("zeros", "i4", ("x",), fill_value=False)
        e = ds.createVariable("on_n", "f8", ("n",))
        f = ds.createVariable("on_free", "u1", ("free",))
        g = ds.createVariable("scalar", "i8")
        a[0:2] = [[0, 1, 2], [3, 4, 5]]
        b[0:4] = np.arange(12).reshape(4, 3)
        c[0:1] = [[0, 7, 0]]
        d[:] = [0, 1, 2]
        e[0:7] = np.arange(7.0)
        f[:] = [0, 255, 1, 2]
        ds.createVariable("never", "f8", ("t",), chunksizes=(1,))  # nothing written

    p = out["nc4_attrs"] = folder / "nc4_attrs.nc"
    with netCDF4.Dataset(p, "w", format="NETCDF4") as ds:
        ds.createDimension("x", 4)
        ds.title = "attributes"
        ds.setncattr_string("string_attr", "hello")
        ds.setncattr_string("strings_attr", ["a", "bc"])
        ds.one_int = np.int32(3)
        ds.one_float = np.float64(1.25)
        ds.ints = np.array([1, 2, 3], "i2")
        ds.floats = np.array([0.5, 1.5], "f4")
        ds.bytes_attr = np.int8(-3)
        ds.unsigned = np.array([7], "u4")
        ds.nan_attr = np.float64("nan")
        v = ds.createVariable("packed", "i2", ("x",), fill_value=np.int16(-32767))
        v.scale_factor = np.float32(0.5)
        v.add_offset = np.float32(10.0)
        v.units = "K"
        v[:] = np.ma.masked_invalid([10.0, 11.0, 12.5, np.nan])
        w = ds.createVariable("packed64", "i2", ("x",))
        w.scale_factor = 0.25
        w[:] = [0.0, 0.25, 0.5, 0.75]
        ds.createDimension("time", None)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        t.calendar = "standard"
        t[0:3] = [0.0, 1.0, 2.5]
        t2 = ds.createVariable("time_noleap", "i4", ("time",))
        t2.units = "hours since 1900-01-01"
        t2.calendar = "noleap"
        t2[0:3] = [0, 1, 2]

    p = out["nc4_strings"] = folder / "nc4_strings.nc"
    with netCDF4.Dataset(p, "w", format="NETCDF4") as ds:
        ds.createDimension("x", 3)
        ds.createDimension("nchar", 4)
        s = ds.createVariable("vlen", str, ("x",))
        s[:] = np.array(["a", "bb", "ccc"], object)
        c = ds.createVariable("chars", "S1", ("x", "nchar"))
        c[:] = netCDF4.stringtochar(np.array(["ab", "cdef", ""], "S4"))
        c.long_name = "char array"
        ds.createVariable("one_string", str, ())[...] = "single"

    p = out["nc4_groups"] = folder / "nc4_groups.nc"
    with netCDF4.Dataset(p, "w", format="NETCDF4") as ds:
        ds.createDimension("x", 5)
        x = ds.createVariable("x", "f4", ("x",))
        x[:] = np.arange(5)
        g = ds.createGroup("sub")
        g.kind = "child"
        g.createDimension("y", 2)
        v = g.createVariable("v", "i4", ("x", "y"))
        v[:] = np.arange(10).reshape(5, 2)
        g2 = g.createGroup("deeper")
        w = g2.createVariable("w", "f8", ("y",), fill_value=np.nan)
        w[0] = 1.0

    p = out["nc4_storage"] = folder / "nc4_storage.nc"
    with netCDF4.Dataset(p, "w", format="NETCDF4") as ds:
        ds.createDimension("x", 40)
        ds.createDimension("y", 30)
        data = np.arange(1200, dtype="f8").reshape(40, 30) % 17
        for name, kw in (("zlib", {"zlib": True, "complevel": 4}),
                         ("shuffled", {"zlib": True, "shuffle": True}),
                         ("fletcher", {"zlib": True, "shuffle": True, "fletcher32": True}),
                         ("contiguous", {"contiguous": True}),
                         ("chunked", {"chunksizes": (7, 9)})):
            v = ds.createVariable(name, "f8", ("x", "y"), **kw)
            v[:] = data
        be = ds.createVariable("big_endian", ">i4", ("x",), endian="big", zlib=True)
        be[:] = np.arange(40) - 20

    for fmt in ("NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"):
        name = "nc3_" + fmt.rsplit("_", 1)[-1].lower()
        p = out[name] = folder / f"{name}.nc"
        with netCDF4.Dataset(p, "w", format=fmt) as ds:
            ds.title = fmt
            ds.one = np.int32(1)
            ds.createDimension("t", None)
            ds.createDimension("x", 3)
            ds.createDimension("nchar", 5)
            t = ds.createVariable("t", "f8", ("t",))
            t.units = "days since 2001-01-01"
            t[0:4] = np.arange(4.0)
            v = ds.createVariable("v", "f4", ("t", "x"), fill_value=np.float32(-9.5))
            v[0:3] = np.arange(9.0).reshape(3, 3)
            w = ds.createVariable("w", "i2", ("t", "x"))  # default fill, written short
            w[0:2] = [[0, 1, 2], [3, 4, 5]]
            c = ds.createVariable("name", "S1", ("x", "nchar"), fill_value=b"?")
            c[0] = netCDF4.stringtochar(np.array(["abc"], "S5"))[0]
            s = ds.createVariable("scaled", "i2", ("x",))
            s.scale_factor = np.float32(0.1)
            s[:] = [0.0, 0.1, 0.2]
    return out


def make_dimension_scales(path: Path) -> Path:
    """Plain HDF5 (h5py) with dimension scales attached, as xarray's h5netcdf-less users write
    them: compared with h5py, not netCDF."""
    import h5py

    with h5py.File(path, "w") as f:
        x = f.create_dataset("x", data=np.arange(4.0))
        y = f.create_dataset("y", data=np.arange(3, dtype="i4"))
        x.make_scale("x")
        y.make_scale("y")
        d = f.create_dataset("data", data=np.arange(12.0).reshape(4, 3), chunks=(2, 3),
                             compression="gzip", fillvalue=-1.0)
        d.dims[0].attach_scale(x)
        d.dims[1].attach_scale(y)
        d.attrs["units"] = "m"
        d.attrs["valid"] = np.array([0.0, 100.0])
        f.create_dataset("sparse", shape=(10,), chunks=(2,), dtype="i2", fillvalue=5)[0:2] = 1
    return path


def make_all(folder: Path) -> dict:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "earliest": make_layouts(folder / "layouts_earliest.h5", "earliest"),
        "latest": make_layouts(folder / "layouts_latest.h5", "latest"),
        "masks": make_masks(folder / "masks.h5"),
        "types": make_types(folder / "types.h5"),
        "structure": make_structure(folder / "structure.h5", folder / "other.h5",
                                    folder / "raw.bin"),
        "netcdf4": make_netcdf4(folder / "nc4.nc"),
    }


if __name__ == "__main__":
    for name, p in make_all(Path(sys.argv[1] if len(sys.argv) > 1 else "scandata")).items():
        print(name, p)
