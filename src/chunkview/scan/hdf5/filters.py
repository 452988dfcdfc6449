"""HDF5 filter pipelines -> numcodecs configs for ``.zarray["filters"]``.

One config per HDF5 filter, in HDF5's pipeline order (the compressor stays null), because bit
``i`` of a chunk's filter mask refers to filter ``i``: a reader decodes the list in reverse,
skipping the masked positions.

=========  ===========  ==================================================================
filter     HDF5 id      config
=========  ===========  ==================================================================
deflate    1            ``{"id": "zlib", "level": n}``
shuffle    2            ``{"id": "hdf5_shuffle", "elementsize": cd[0] or itemsize}``
fletcher   3            ``{"id": "hdf5_fletcher32"}``
szip       4            ``{"id": "hdf5_szip", options_mask, pixels_per_block, ...}``
nbit       5            ``{"id": "hdf5_nbit", "cd_values": [...], "dtype": ..., ...}``
scaleoff.  6            ``{"id": "hdf5_scaleoffset", "cd_values": [20 values]}``
bzip2      307          ``{"id": "hdf5_bzip2", "level": n}``
lzf        32000        ``{"id": "hdf5_lzf", "nbytes": cd[2]}``
blosc      32001        ``{"id": "hdf5_blosc", typesize, clevel, shuffle, cname}``
lz4        32004        ``{"id": "hdf5_lz4", "blocksize": cd[0]}``
bitshuf.   32008        ``{"id": "hdf5_bitshuffle", elementsize, blocksize, compression, level}``
zstd       32015        ``{"id": "hdf5_zstd", "level": n}``
=========  ===========  ==================================================================

Anything else (blosc2's super-chunk frames, ZFP, JPEG, MAFISC, user filters, scaleoffset's
E-scale) raises :class:`chunkview.errors.UnsupportedError` naming the filter and the dataset.
"""

from __future__ import annotations

import numpy as np

from chunkview.codecs.bitshuffle import BSHUF_COMPRESSION
from chunkview.codecs.blosc import BLOSC_CNAMES
from chunkview.codecs.common import dtype_to_json
from chunkview.codecs.nbit import (
    IEEE_FIELDS,
    HDF5NBit,
    NBitArray,
    NBitAtomic,
    NBitCompound,
    NBitError,
    nbit_parse,
)
from chunkview.errors import UnsupportedError

__all__ = ["codecs_for", "layout_problem", "FILTER_NAMES"]

FILTER_NAMES = {
    1: "deflate",
    2: "shuffle",
    3: "fletcher32",
    4: "szip",
    5: "nbit",
    6: "scaleoffset",
    307: "bzip2",
    32000: "lzf",
    32001: "blosc",
    32004: "lz4",
    32008: "bitshuffle",
    32013: "zfp",
    32015: "zstd",
    32026: "blosc2",
}

# H5T class codes (H5Tpublic.h) and float normalisations
_H5T_INTEGER, _H5T_FLOAT, _H5T_BITFIELD, _H5T_COMPOUND, _H5T_ENUM, _H5T_ARRAY = 0, 1, 4, 6, 8, 10


def layout_problem(tid) -> str | None:
    """Why the numbers of HDF5 type ``tid`` (h5py's TypeID) are not stored as numpy reads
    them, or None.  libhdf5 converts an integer of reduced precision or at a bit offset, and a
    float whose layout is not IEEE's, when it reads; read as stored, its values would be
    silently wrong.  (nbit-filtered data is checked against the nbit parameters instead.)
    Floats wider than 8 bytes (x87 long doubles) are numpy's own layout and let through when
    they are as wide as numpy's long double (h5py reads any of them as one); a bitfield is its
    stored bits, read as an unsigned integer as h5py does (h5py cannot tell its precision, and
    libhdf5 reads only full-precision bitfields into numpy)."""
    cls = tid.get_class()
    if cls == _H5T_BITFIELD:
        return None
    if cls in (_H5T_INTEGER, _H5T_FLOAT):
        size, prec, off = tid.get_size(), tid.get_precision(), tid.get_offset()
        if cls == _H5T_FLOAT and size > 8:
            wide = np.dtype(np.longdouble).itemsize
            if size != wide:
                return f"{size}-byte floats (numpy's long double has {wide} bytes)"
            return None
        if prec != size * 8 or off != 0:
            return f"{prec}-bit numbers at bit offset {off} of {size}-byte elements"
        if cls == _H5T_FLOAT:
            layout = (*map(int, tid.get_fields()), int(tid.get_ebias()))
            if layout != IEEE_FIELDS.get(size) or tid.get_norm() != 0:
                return f"{size}-byte floats of a non-IEEE layout {layout}"
    elif cls == _H5T_COMPOUND:
        for i in range(tid.get_nmembers()):
            why = layout_problem(tid.get_member_type(i))
            if why:
                return why
    elif cls in (_H5T_ARRAY, _H5T_ENUM):
        return layout_problem(tid.get_super())
    return None


def _text(name) -> str:
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    return "" if name is None else str(name)


def _where(path) -> str:
    return f" (dataset {path!r})" if path is not None else ""


def codecs_for(filters, dtype, *, path=None, h5type=None) -> list[dict]:
    """numcodecs configs, one per HDF5 filter, in pipeline order.

    ``filters``: ``(filter_id, flags, cd_values, name)`` tuples as h5py's
    ``dcpl.get_filter(i)`` returns them.  ``dtype``: the dataset's numpy dtype.  ``path``
    names the dataset in error messages.  ``h5type`` (h5py's ``dset.id.get_type()``) is only
    needed for nbit on reduced-precision floats, whose bit layout numpy dtypes cannot express.
    """
    dtype = np.dtype(dtype)
    out = []
    for entry in filters:
        fid, _flags, cd, name = (tuple(entry) + (None,))[:4]
        fid = int(fid)
        cd = [int(c) & 0xFFFFFFFF for c in (cd or ())]
        label = _text(name) or FILTER_NAMES.get(fid, "unknown")
        out.append(_config(fid, cd, label, dtype, path, h5type))
    return out


def _config(fid, cd, label, dtype, path, h5type) -> dict:
    def get(i, default):
        return cd[i] if len(cd) > i else default

    if fid == 1:
        return {"id": "zlib", "level": min(max(get(0, 6), 0), 9)}
    if fid == 2:
        es = get(0, 0) or dtype.itemsize
        return {"id": "hdf5_shuffle", "elementsize": int(es)}
    if fid == 3:
        return {"id": "hdf5_fletcher32"}
    if fid == 4:
        if len(cd) < 4:
            raise UnsupportedError(f"szip filter with {len(cd)} parameters (HDF5 stores 4)"
                                   + _where(path))
        return {"id": "hdf5_szip", "options_mask": cd[0], "pixels_per_block": cd[1],
                "bits_per_pixel": cd[2], "pixels_per_scanline": cd[3]}
    if fid == 5:
        return _nbit_config(cd, dtype, path, h5type)
    if fid == 6:
        return _scaleoffset_config(cd, dtype, path)
    if fid == 307:
        return {"id": "hdf5_bzip2", "level": get(0, 9)}
    if fid == 32000:
        return {"id": "hdf5_lzf", "nbytes": get(2, 0)}
    if fid == 32001:
        code = get(6, 0)
        if code not in BLOSC_CNAMES:
            raise UnsupportedError(f"blosc compressor code {code}" + _where(path))
        return {"id": "hdf5_blosc", "typesize": get(2, 0) or dtype.itemsize,
                "clevel": get(4, 5), "shuffle": get(5, 1), "cname": BLOSC_CNAMES[code]}
    if fid == 32004:
        return {"id": "hdf5_lz4", "blocksize": get(0, 0)}
    if fid == 32008:
        comp = get(4, 0)
        if comp not in BSHUF_COMPRESSION:
            raise UnsupportedError(f"bitshuffle compression code {comp}" + _where(path))
        block = get(3, 0)
        if block % 8:
            raise UnsupportedError(f"bitshuffle block size {block} (not a multiple of 8)"
                                   + _where(path))
        return {"id": "hdf5_bitshuffle", "elementsize": get(2, 0) or dtype.itemsize,
                "blocksize": block, "compression": BSHUF_COMPRESSION[comp],
                "level": get(5, 0)}
    if fid == 32015:
        return {"id": "hdf5_zstd", "level": get(0, 3)}
    if fid == 32026:
        raise UnsupportedError(
            "HDF5 filter 32026 (blosc2) is not supported: its chunks are Blosc2 super-chunk "
            "frames (B2ND for multidimensional chunks), which need the python-blosc2 "
            "library" + _where(path))
    raise UnsupportedError(f"HDF5 filter {fid} ({label}) is not supported" + _where(path))


def _scaleoffset_config(cd, dtype, path) -> dict:
    if len(cd) != 20:
        raise UnsupportedError(f"scaleoffset filter with {len(cd)} parameters (HDF5 stores 20)"
                               + _where(path))
    scale_type, cls, size = cd[0], cd[3], cd[4]
    if cls == 1 and scale_type == 1:
        raise UnsupportedError("scaleoffset E-scale (fixed minimum bits) is not supported; "
                               "HDF5 itself cannot decode it" + _where(path))
    if cls not in (0, 1) or (cls == 0 and size not in (1, 2, 4, 8)) or \
            (cls == 1 and size not in (4, 8)):
        raise UnsupportedError(f"scaleoffset on a class {cls}, size {size} type" + _where(path))
    if (cls == 0 and scale_type != 2) or (cls == 1 and scale_type != 0):
        raise UnsupportedError(f"scaleoffset scale type {scale_type} for a "
                               f"{'float' if cls else 'integer'} type" + _where(path))
    kind_ok = dtype.kind == "f" if cls == 1 else dtype.kind in "iu"
    if dtype.itemsize != size or not kind_ok:
        raise UnsupportedError(f"scaleoffset parameters (class {cls}, size {size}) do not "
                               f"match the dtype {dtype}" + _where(path))
    return {"id": "hdf5_scaleoffset", "cd_values": list(cd)}


def _nbit_config(cd, dtype, path, h5type) -> dict:
    try:
        passthrough, _n, tree = nbit_parse(cd)
    except NBitError as e:
        raise UnsupportedError(f"invalid nbit parameters: {e}" + _where(path)) from None
    cfg = {"id": "hdf5_nbit", "cd_values": list(cd), "dtype": dtype_to_json(dtype)}
    if passthrough:
        return cfg
    reduced = _reduced_floats(tree, dtype)
    if reduced and h5type is None:
        raise UnsupportedError(
            "nbit on a reduced-precision float needs the HDF5 float layout: pass "
            "h5type=dset.id.get_type() to codecs_for" + _where(path))
    if h5type is not None:
        fields = []
        _float_fields(tree, h5type, fields, path)
        for f in fields:
            if f[7] not in (0, 1):
                raise UnsupportedError(f"nbit float with normalisation {f[7]}" + _where(path))
            if f[0] in reduced and reduced[f[0]] > 8:
                raise UnsupportedError("nbit on a reduced-precision float wider than 8 bytes"
                                       + _where(path))
        if fields:
            cfg["float_fields"] = fields
    # building the codec validates the layout against the dtype
    try:
        HDF5NBit(**{k: v for k, v in cfg.items() if k != "id"})
    except ValueError as e:
        raise UnsupportedError(f"{e}" + _where(path)) from None
    return cfg


def _walk_atomics(node, dt, acc):
    """(atomic node, numpy base dtype) pairs of a nbit type tree."""
    if isinstance(node, NBitAtomic):
        while dt is not None and dt.subdtype is not None:
            dt = dt.subdtype[0]
        acc.append((node, dt))
    elif isinstance(node, NBitArray):
        base = dt.subdtype[0] if dt is not None and dt.subdtype is not None else dt
        _walk_atomics(node.base, base, acc)
    elif isinstance(node, NBitCompound):
        for moff, child in node.members:
            mdt = None
            if dt is not None and dt.names is not None:
                for name in dt.names:
                    fdt, foff = dt.fields[name][:2]
                    if foff == moff and fdt.itemsize == child.size:
                        mdt = fdt
            _walk_atomics(child, mdt, acc)


def _reduced_floats(tree, dtype) -> dict:
    """cd index -> size of float members whose layout is not plain IEEE at full precision."""
    acc = []
    _walk_atomics(tree, dtype, acc)
    return {node.idx: node.size for node, dt in acc
            if dt is not None and dt.kind == "f"
            and (node.prec < node.size * 8 or node.off != 0 or node.size not in IEEE_FIELDS)}


def _float_fields(node, tid, acc, path):
    """Append [cd index, spos, epos, esize, mpos, msize, ebias, norm] for each float atomic,
    walking the h5py TypeID alongside the nbit type tree, whose atomics must describe the
    type's: libhdf5 decodes with the nbit parameters and converts with the type, so where
    they disagree its values are neither's."""
    cls = tid.get_class()
    if isinstance(node, NBitAtomic):
        atomic = tid.get_super() if cls == _H5T_ENUM else tid
        got = (atomic.get_size(), atomic.get_precision(), atomic.get_offset())
        if got != (node.size, node.prec, node.off):
            raise UnsupportedError(
                f"nbit parameters (size, precision, offset) {(node.size, node.prec, node.off)} "
                f"do not match the HDF5 type's {got}" + _where(path))
        if cls == _H5T_FLOAT:
            acc.append([node.idx, *map(int, tid.get_fields()), int(tid.get_ebias()),
                        int(tid.get_norm())])
    elif isinstance(node, NBitArray):
        if cls != _H5T_ARRAY:
            raise UnsupportedError("nbit parameters do not match the HDF5 type" + _where(path))
        _float_fields(node.base, tid.get_super(), acc, path)
    elif isinstance(node, NBitCompound):
        if cls != _H5T_COMPOUND or tid.get_nmembers() != len(node.members):
            raise UnsupportedError("nbit parameters do not match the HDF5 type" + _where(path))
        for i, (_moff, child) in enumerate(node.members):
            _float_fields(child, tid.get_member_type(i), acc, path)
