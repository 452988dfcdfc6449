"""NetCDF3 files (classic CDF-1, 64-bit offset CDF-2, 64-bit data CDF-5) -> kerchunk references.

The header is parsed here, without scipy, following the NetCDF file format specification::

    header    = magic numrecs dim_list gatt_list var_list
    dim_list  = ABSENT | NC_DIMENSION nelems [dim ...]          dim  = name dim_length
    att_list  = ABSENT | NC_ATTRIBUTE nelems [attr ...]         attr = name nc_type nelems values
    var_list  = ABSENT | NC_VARIABLE  nelems [var ...]
    var       = name nelems [dimid ...] vatt_list nc_type vsize begin

Counts, lengths, dimension ids and sizes are 4 bytes (CDF-1/2) or 8 bytes (CDF-5), ``begin``
is 4 bytes (CDF-1) or 8 bytes (CDF-2/5), names and attribute values are padded to 4 bytes and
everything is big-endian.  No length read from the file is trusted: each is checked against the
bytes left before it is used, and the variables' data against the file size and each other (as
netCDF-C does), so a truncated or corrupt file raises :class:`~chunkview.errors.ScanError`.

The result is a kerchunk v1 ``refs`` body of zarr v2 metadata: fixed-size variables (stored
contiguously) are cut into virtual chunks of about ``chunk_bytes`` along their leading
dimension(s); record variables (leading dimension the unlimited one) get one chunk per record
(split further only if a record is larger than ``chunk_bytes``).
"""

from __future__ import annotations

import base64
import json
import math
import unicodedata

import numpy as np

from chunkview.errors import ScanError
from chunkview.keys import DIMENSION_KEY, NETCDF_KEY
from chunkview.scan.common import contiguous_chunking, contiguous_chunks, json_value
from chunkview.scan.output import ChunkSet, ScanOutput

__all__ = ["is_netcdf3", "scan_netcdf3"]

_MAGICS = (b"CDF\x01", b"CDF\x02", b"CDF\x05")

ABSENT, NC_DIMENSION, NC_VARIABLE, NC_ATTRIBUTE = 0, 10, 11, 12

# nc_type -> (name, numpy dtype of the stored, big-endian values)
_TYPES = {
    1: ("NC_BYTE", np.dtype("i1")),
    2: ("NC_CHAR", np.dtype("S1")),
    3: ("NC_SHORT", np.dtype(">i2")),
    4: ("NC_INT", np.dtype(">i4")),
    5: ("NC_FLOAT", np.dtype(">f4")),
    6: ("NC_DOUBLE", np.dtype(">f8")),
    7: ("NC_UBYTE", np.dtype("u1")),
    8: ("NC_USHORT", np.dtype(">u2")),
    9: ("NC_UINT", np.dtype(">u4")),
    10: ("NC_INT64", np.dtype(">i8")),
    11: ("NC_UINT64", np.dtype(">u8")),
}
_CDF5_ONLY = frozenset(range(7, 12))

# netCDF-C's default fill values (netcdf.h NC_FILL_*)
_DEFAULT_FILL = {
    1: -127,
    2: b"\0",
    3: -32767,
    4: -2147483647,
    5: 9.9692099683868690e36,
    6: 9.9692099683868690e36,
    7: 255,
    8: 65535,
    9: 4294967295,
    10: -9223372036854775806,
    11: 18446744073709551614,
}

def is_netcdf3(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts like a NetCDF3 file."""
    return bytes(head[:4]) in _MAGICS


def _pad4(n: int) -> int:
    return n + (-n % 4)


def _dumps(obj) -> str:
    return json.dumps(obj, allow_nan=False)


def _dumps_attrs(obj) -> str:
    """Attributes as zarr writes them: NaN and infinities as JSON's NaN/Infinity tokens."""
    return json.dumps(obj)


class _Var:
    __slots__ = ("name", "dimids", "attrs", "nc_type", "vsize", "begin", "offset",
                 "shape", "dims", "is_record", "rowbytes", "vlen", "dtype")


class _Header:
    """A bounds-checked cursor over the header of one file."""

    def __init__(self, reader, version: int):
        self.reader = reader
        self.url = reader.url
        self.size = reader.size
        self.pos = 0
        self.version = version
        self.nsize = 8 if version == 5 else 4  # counts, lengths, dim ids, vsize
        self.osize = 4 if version == 1 else 8  # begin
        self.where = None  # the object being parsed, for error messages

    def error(self, msg, offset=None, path=None):
        return ScanError(msg, url=self.url, path=path if path is not None else self.where,
                         offset=self.pos if offset is None else offset)

    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int, what: str):
        if n > self.size - self.pos:
            raise self.error(f"truncated header: {what} needs {n} bytes, only "
                             f"{self.size - self.pos} left in the file")
        data = bytes(self.reader.read(self.pos, n))  # no views of the file outlive the scan
        self.pos += n
        return data

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "big")

    def count(self, what: str) -> int:
        """A NON_NEG: 4 bytes (CDF-1/2, read unsigned as netCDF-C does) or 8 bytes (CDF-5)."""
        at = self.pos
        v = int.from_bytes(self.take(self.nsize, what), "big")
        if self.nsize == 8 and v >= 1 << 63:
            raise self.error(f"corrupt header: negative {what} ({v - (1 << 64)})", offset=at)
        return v

    def n_items(self, what: str, min_item: int) -> int:
        """A list length, checked against the bytes left (each item takes >= min_item)."""
        at = self.pos
        n = self.count(f"number of {what}")
        if n * min_item > self.left():
            raise self.error(f"corrupt header: {n} {what} cannot fit in the "
                             f"{self.left()} bytes left in the file", offset=at)
        return n

    def name(self, what: str) -> str:
        at = self.pos
        n = self.count(f"length of {what} name")
        if n == 0:
            raise self.error(f"corrupt header: empty {what} name", offset=at)
        if _pad4(n) > self.left():
            raise self.error(f"truncated header: {what} name of {n} bytes does not fit in the "
                             f"{self.left()} bytes left in the file", offset=at)
        raw = self.take(_pad4(n), f"{what} name")[:n]
        raw = raw.split(b"\0", 1)[0]  # netCDF-C uses names as C strings
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"corrupt header: {what} name {raw!r} is not UTF-8",
                             offset=at) from None
        s = unicodedata.normalize("NFC", s)
        if not s or "/" in s or s.startswith("."):
            raise self.error(f"corrupt header: invalid {what} name {s!r}", offset=at)
        return s

    def list_len(self, expected: int, what: str, min_item: int) -> int:
        """The ABSENT / NC_DIMENSION / NC_VARIABLE / NC_ATTRIBUTE tag and the list's length,
        checked against the bytes left (each item takes at least ``min_item``)."""
        at = self.pos
        tag = self.u32(f"{what} list tag")
        if tag not in (ABSENT, expected):
            raise self.error(f"corrupt header: expected the {what} list tag {expected} or "
                             f"ABSENT, found {tag:#x}", offset=at)
        n = self.count(f"number of {what}s")
        if tag == ABSENT and n:
            raise self.error(f"corrupt header: ABSENT {what} list with {n} elements",
                             offset=at)
        if n * min_item > self.left():
            raise self.error(f"corrupt header: {n} {what}s cannot fit in the "
                             f"{self.left()} bytes left in the file", offset=at + 4)
        return n

    def nc_type(self) -> int:
        at = self.pos
        t = self.u32("nc_type")
        if t not in _TYPES or (t in _CDF5_ONLY and self.version != 5):
            raise self.error(f"corrupt header: invalid nc_type {t} for CDF-{self.version}",
                             offset=at)
        return t

    # ---------------------------------------------------------------- lists

    def attrs(self) -> dict:
        # name (length + >= 4 bytes) + nc_type + nelems
        n = self.list_len(NC_ATTRIBUTE, "attribute", self.nsize + 4 + 4 + self.nsize)
        out = {}
        for _ in range(n):
            name = self.name("attribute")
            t = self.nc_type()
            nat = self.pos
            nelems = self.count(f"length of attribute {name!r}")
            dt = _TYPES[t][1]
            nbytes = nelems * dt.itemsize
            if _pad4(nbytes) > self.left():
                raise self.error(f"truncated header: attribute {name!r} of {nelems} values "
                                 f"({nbytes} bytes) does not fit in the {self.left()} bytes "
                                 "left in the file", offset=nat)
            raw = self.take(_pad4(nbytes), f"values of attribute {name!r}")
            out[name] = (t, np.frombuffer(raw, dtype=dt, count=nelems))
        return out


def _attr_types(refs: dict, prefix: str, attrs: dict) -> None:
    """Numeric attributes' netCDF types, which JSON loses, under ``.cvnetcdf`` (read by
    chunkview's xarray engine)."""
    types = {k: a.dtype.newbyteorder("=").str for k, (t, a) in attrs.items() if t != 2}
    if types:
        refs[prefix + NETCDF_KEY] = _dumps({"attrs": types})


def _attr_json(t: int, values: np.ndarray):
    """An attribute as netCDF4-python presents it, JSON-safe."""
    if t == 2:
        return values.tobytes().decode("utf-8", "replace").replace("\x00", "")
    if values.dtype.kind == "f":
        out = [json_value(x, text_floats=False) for x in values.tolist()]
    else:
        out = [int(x) for x in values.tolist()]
    return out[0] if len(out) == 1 else out


def _fill_json(var: _Var, default_fill: bool):
    """The zarr v2 ``fill_value`` of a variable: its ``_FillValue`` or netCDF's default."""
    dt = var.dtype
    fv = var.attrs.get("_FillValue")
    value = None
    if fv is not None and len(fv[1]):
        t, vals = fv
        if var.nc_type == 2:
            if t == 2:
                return base64.standard_b64encode(vals[:1].tobytes()).decode("ascii")
        elif t != 2:
            try:
                with np.errstate(all="ignore"):
                    cand = np.asarray(vals[:1]).astype(dt)
                if cand[0] == vals[0] or (cand[0] != cand[0] and vals[0] != vals[0]):
                    value = cand[0]
            except (TypeError, ValueError, OverflowError):
                value = None
    if value is None:
        if not default_fill or var.nc_type == 2:
            return None  # NC_FILL_CHAR is a zero byte: zarr's null (zeros)
        value = np.array(_DEFAULT_FILL[var.nc_type], dtype=dt)[()]
    if dt.kind == "f":
        return json_value(value)
    return int(value)


def _inline(data: bytes) -> bytes:
    # bytes starting with "base64:" are decoded by fsspec and chunkview: encode those
    if data.startswith(b"base64:"):
        return b"base64:" + base64.b64encode(data)
    return data


def scan_netcdf3(reader, *, inline_threshold: int = 500, chunk_bytes: int = 4 << 20,
                 default_fill: bool = True) -> dict:
    """:func:`_scan_netcdf3` with the records' references in the dict too."""
    refs, sets = _scan_netcdf3(reader, inline_threshold=inline_threshold,
                               chunk_bytes=chunk_bytes, default_fill=default_fill)
    for c in sets:
        for xy, a, n in zip(c.coords.tolist(), c.addrs.tolist(), c.sizes.tolist()):
            refs[c.prefix + "/" + ".".join(map(str, xy))] = [c.url, a, n]
    return refs


def _scan_netcdf3(reader, *, inline_threshold: int = 500, chunk_bytes: int = 4 << 20,
                  default_fill: bool = True) -> tuple[dict, list]:
    """Scan a NetCDF3 file (a :class:`chunkview.io.blocks.Reader`) and return the body
    (``refs``) of a kerchunk v1 reference set: zarr v2 metadata as JSON text, chunks as
    ``[url, offset, length]`` or inline ``bytes``; and the chunks of record variables as
    :class:`ChunkSet` arrays (a file of millions of tiny records costs a few bytes per record
    on the way to the index, not a Python list each).

    ``inline_threshold``: variables whose whole data is at most this many bytes are stored
    inline as one chunk.  ``chunk_bytes``: the target size of the virtual chunks of
    fixed-size variables (and of records larger than it).  ``default_fill``: without a
    ``_FillValue`` attribute, a variable's zarr ``fill_value`` is netCDF's default fill for
    its type (``False``: ``null``).
    """
    chunk_bytes = max(1, int(chunk_bytes))
    url = reader.url
    size = reader.size
    if size < 4:
        raise ScanError(f"not a NetCDF3 file: only {size} bytes", url=url, offset=0)
    magic = bytes(reader.read(0, 4))
    if magic not in _MAGICS:
        raise ScanError(f"not a NetCDF3 file (magic {magic!r})", url=url, offset=0)
    version = magic[3]
    h = _Header(reader, version)
    h.pos = 4

    # ---------------------------------------------------------------- numrecs
    nrec_at = h.pos
    numrecs = int.from_bytes(h.take(h.nsize, "numrecs"), "big")
    streaming = numrecs == (1 << (8 * h.nsize)) - 1
    if version == 5 and numrecs >= 1 << 63 and not streaming:
        raise h.error(f"corrupt header: negative numrecs ({numrecs - (1 << 64)})", nrec_at)

    # ---------------------------------------------------------------- dimensions
    n = h.list_len(NC_DIMENSION, "dimension", h.nsize + 4 + h.nsize)
    dims: list[tuple[str, int]] = []
    unlimited = None
    for i in range(n):
        at = h.pos
        name = h.name("dimension")
        length = h.count(f"length of dimension {name!r}")
        if length == 0:
            if unlimited is not None:
                raise h.error(f"corrupt header: a second unlimited dimension {name!r} "
                              f"(the first is {dims[unlimited][0]!r})", at)
            unlimited = i
        dims.append((name, length))

    # ---------------------------------------------------------------- global attributes
    h.where = "/"
    gattrs = h.attrs()
    h.where = None

    # ---------------------------------------------------------------- variables
    # name + ndims + ABSENT attrs + nc_type + vsize + begin
    n = h.list_len(NC_VARIABLE, "variable",
                   h.nsize + 4 + h.nsize + 4 + h.nsize + 4 + h.nsize + h.osize)
    variables: list[_Var] = []
    seen = set()
    for _ in range(n):
        v = _Var()
        v.offset = h.pos
        v.name = h.name("variable")
        h.where = v.name
        if v.name in seen:
            raise h.error(f"corrupt header: duplicate variable name {v.name!r}", v.offset)
        seen.add(v.name)
        nd_at = h.pos
        nd = h.n_items("dimensions of the variable", h.nsize)
        raw = h.take(nd * h.nsize, "dimension ids")
        ids = np.frombuffer(raw, dtype=">u8" if h.nsize == 8 else ">u4").tolist()
        for j, d in enumerate(ids):
            if d >= len(dims):
                raise h.error(f"corrupt header: dimension id {d} out of range "
                              f"({len(dims)} dimensions)", nd_at + h.nsize * (j + 1))
            if d == unlimited and j > 0:
                raise h.error("corrupt header: the unlimited dimension "
                              f"{dims[d][0]!r} is not the first dimension", nd_at)
        v.dimids = ids
        v.attrs = h.attrs()
        v.nc_type = h.nc_type()
        v.dtype = _TYPES[v.nc_type][1]
        v.vsize = h.count("vsize")
        bat = h.pos
        v.begin = int.from_bytes(h.take(h.osize, "begin"), "big")
        if v.begin >= 1 << (8 * h.osize - 1):  # a signed off_t in netCDF-C
            raise h.error(f"corrupt header: begin offset {v.begin} of the variable is "
                          "negative as a signed offset", bat)
        h.where = None
        variables.append(v)
    header_end = h.pos

    # ---------------------------------------------------------------- layout
    for v in variables:
        v.dims = [dims[d][0] for d in v.dimids]
        v.is_record = bool(v.dimids) and v.dimids[0] == unlimited
        fixed = [dims[d][1] for d in v.dimids[1 if v.is_record else 0:]]
        v.rowbytes = math.prod(fixed) * v.dtype.itemsize
        v.vlen = _pad4(v.rowbytes)

    fixed_vars = [v for v in variables if not v.is_record]
    rec_vars = [v for v in variables if v.is_record]

    # offsets as netCDF-C checks them (NC_computeshapes, NC_check_voffs): in order, after
    # the header, not overlapping, record variables after the fixed-size ones
    prev, prev_name = header_end, None
    for v in fixed_vars:
        if v.begin < prev:
            what = f"the data of {prev_name!r}" if prev_name else "the header"
            raise ScanError(f"corrupt header: variable begins at byte {v.begin}, inside "
                            f"{what} (which ends at byte {prev})", url=url, path=v.name,
                            offset=v.offset)
        prev, prev_name = v.begin + v.vlen, v.name
    for v in rec_vars:
        if v.begin < prev:
            what = f"the data of {prev_name!r}" if prev_name else "the header"
            raise ScanError(f"corrupt header: record variable begins at byte {v.begin}, "
                            f"inside {what} (which ends at byte {prev})", url=url,
                            path=v.name, offset=v.offset)
        prev, prev_name = v.begin + v.vlen, v.name

    for v in fixed_vars:
        if v.begin + v.rowbytes > size:
            raise ScanError(f"truncated file: the data of the variable (bytes {v.begin}-"
                            f"{v.begin + v.rowbytes}) ends past the end of the file "
                            f"({size} bytes)", url=url, path=v.name, offset=v.begin)

    recsize = 0
    if rec_vars:
        # exactly one record variable: records are not padded (netCDF spec, NC_computeshapes)
        recsize = rec_vars[0].rowbytes if len(rec_vars) == 1 else sum(v.vlen for v in rec_vars)
        begin_rec = rec_vars[0].begin
        extent = max(v.begin - begin_rec + v.rowbytes for v in rec_vars)
        if streaming:
            avail = size - begin_rec - extent
            numrecs = 0 if avail < 0 else avail // recsize + 1
        elif numrecs:
            end = begin_rec + (numrecs - 1) * recsize + extent
            if end > size:
                last = max(rec_vars, key=lambda v: v.begin - begin_rec + v.rowbytes)
                raise ScanError(f"truncated file: {numrecs} records of {recsize} bytes from "
                                f"byte {begin_rec} end at byte {end}, past the end of the "
                                f"file ({size} bytes)", url=url, path=last.name,
                                offset=begin_rec)
    elif streaming:
        numrecs = 0

    # ---------------------------------------------------------------- references
    sets: list = []
    refs: dict = {
        ".zgroup": _dumps({"zarr_format": 2}),
        ".zattrs": _dumps_attrs({k: _attr_json(t, a) for k, (t, a) in gattrs.items()}),
    }
    _attr_types(refs, "", gattrs)
    for v in variables:
        shape = tuple(numrecs if (v.is_record and j == 0) else dims[d][1]
                      for j, d in enumerate(v.dimids))
        itemsize = v.dtype.itemsize
        total = math.prod(shape) * itemsize
        # a record is a block of shape[1:]; a fixed-size variable is one block
        block = shape[1:] if v.is_record else shape
        sub, d, step = contiguous_chunking(block, itemsize, chunk_bytes)
        inline_all = 0 < total <= inline_threshold
        if inline_all:
            chunks = shape
        elif v.is_record:
            chunks = (1, *sub)
        else:
            chunks = sub
        zarray = {
            "zarr_format": 2,
            "shape": list(shape),
            "chunks": [max(1, c) for c in chunks],
            "dtype": v.dtype.str,
            "compressor": None,
            "filters": None,
            "order": "C",
            "fill_value": _fill_json(v, default_fill),
            "dimension_separator": ".",
        }
        attrs = {k: _attr_json(t, a) for k, (t, a) in v.attrs.items()}
        attrs[DIMENSION_KEY] = v.dims
        refs[f"{v.name}/.zarray"] = _dumps(zarray)
        refs[f"{v.name}/.zattrs"] = _dumps_attrs(attrs)
        _attr_types(refs, v.name + "/", v.attrs)
        if total == 0:
            continue
        prefix = v.name + "/"
        if inline_all:
            if v.is_record:
                data = b"".join(bytes(reader.read(v.begin + r * recsize, v.rowbytes))
                                for r in range(numrecs))
            else:
                data = bytes(reader.read(v.begin, v.rowbytes))
            key = ".".join("0" * len(shape)) if shape else "0"
            refs[prefix + key] = _inline(data)
            continue
        clen = math.prod(sub) * itemsize
        parts = list(contiguous_chunks(block, sub, d, step))  # (index, offset, bytes)
        if v.is_record:
            sets.append(_record_chunks(reader, v, parts, numrecs, recsize, clen, refs))
        else:
            for idx, off, nbytes in parts:
                refs[prefix + (".".join(map(str, idx)) or "0")] = \
                    _chunk_ref(reader, v.begin + off, nbytes, clen)
    return refs, sets


def _record_chunks(reader, v, parts, numrecs: int, recsize: int, clen: int,
                   refs: dict) -> ChunkSet:
    """The chunks of a record variable as arrays: record ``r``, part ``p`` at ``v.begin + r *
    recsize + offset of p``.  The chunks that run past the end of the file go to ``refs``,
    inline.
    About 24 bytes per chunk on the way to the index."""
    nparts = len(parts)
    offs = np.array([off for _, off, _ in parts], np.int64) + v.begin
    idx = np.array([p[0] for p in parts], np.int64).reshape(nparts, -1)
    rec = np.arange(numrecs, dtype=np.int64)
    if nparts == 1 and idx.shape[1] == 0:
        coords = rec[:, None]
        addrs = rec * recsize
        addrs += offs[0]
    else:
        coords = np.empty((numrecs * nparts, 1 + idx.shape[1]), np.int64)
        coords[:, 0] = np.repeat(rec, nparts)
        coords[:, 1:] = np.tile(idx, (numrecs, 1))
        del rec
        addrs = coords[:, 0] * recsize
        addrs += np.tile(offs, numrecs)
    inside = addrs <= reader.size - clen
    if not inside.all():  # the last records, or any of a header whose sizes overlap
        for i in np.flatnonzero(~inside).tolist():
            key = v.name + "/" + ".".join(map(str, coords[i].tolist()))
            refs[key] = _chunk_ref(reader, int(addrs[i]), parts[i % nparts][2], clen)
        coords, addrs = coords[inside], addrs[inside]
    return ChunkSet(v.name, reader.url, coords, addrs.view(np.uint64),
                    np.full(len(addrs), clen, np.uint64))


def _chunk_ref(reader, offset: int, nbytes: int, clen: int):
    """A reference to a full chunk of ``clen`` bytes of which the first ``nbytes`` are the
    array's: past the end of the file the chunk is stored inline, padded with zeros."""
    if offset + clen <= reader.size:
        return [reader.url, offset, clen]
    data = bytes(reader.read(offset, nbytes))
    return _inline(data + b"\0" * (clen - nbytes))


def scan(reader, *, inline_threshold: int = 0, chunk_bytes: int = 4 << 20,
         checksums: bool = True) -> ScanOutput:
    """Scan the NetCDF3 file behind ``reader`` (the :class:`chunkview.scan.output.Scanner`
    contract; NetCDF3 has no checksums).  Without a ``_FillValue`` attribute a variable's zarr
    ``fill_value`` is ``null``."""
    body, sets = _scan_netcdf3(reader, inline_threshold=inline_threshold,
                               chunk_bytes=chunk_bytes, default_fill=False)
    return ScanOutput(refs=body, chunks=sets)
