"""What the scanner settles once the whole file is walked: netCDF-4's unlimited dimensions and
default fills, and the per-chunk filter masks written so that every zarr reader sees them."""

from __future__ import annotations

import json

import numpy as np

from chunkview.codecs.masked import CODEC_ID, chunk_nbytes, digest, table, wrapper
from chunkview.keys import ERROR_KEY, MASK_KEY
from chunkview.scan.hdf5.meta import _json, _k

#: never-written chunks of netCDF variables without a _FillValue are written out (encoded
#: with the variable's codecs) up to this many bytes per file; beyond it they stay missing,
#: and zarr readers other than chunkview's see zeros there
FILL_CHUNK_BYTES = 16 << 20
#: grids with more chunks than this are not searched for missing chunks
FILL_GRID_CHUNKS = 4 << 20


DIM_ONLY = b"This is a netCDF dimension but not a netCDF variable"


def is_netcdf4(f) -> bool:
    """Whether the open h5py file ``f`` was written as netCDF-4 (by netCDF-C or h5netcdf)."""
    try:
        attrs = f.attrs
        if "_NCProperties" in attrs or "_nc3_strict" in attrs:
            return True
        for i, name in enumerate(f):  # files from before netCDF-C 4.4.1 lack _NCProperties
            if i >= 64:
                break
            obj = f.get(name)
            if obj is None:
                continue
            if "_Netcdf4Dimid" in obj.attrs or "_Netcdf4Coordinates" in obj.attrs:
                return True
            if is_dimension_only(obj):
                return True
    except Exception:  # noqa: BLE001 - unreadable: not netCDF as far as the scan can tell
        return False
    return False


def is_dimension_only(obj) -> bool:
    """Whether h5py object ``obj`` is netCDF-4's stand-in for a dimension without a variable
    (a dimension scale whose NAME says so)."""
    try:
        if obj.attrs.get("CLASS") not in (b"DIMENSION_SCALE", "DIMENSION_SCALE"):
            return False
        name = obj.attrs.get("NAME")
    except Exception:  # noqa: BLE001 - unreadable attributes are reported by the scanner
        return False
    if isinstance(name, str):
        name = name.encode()
    return isinstance(name, bytes) and name.startswith(DIM_ONLY)


def chunks_by_array(out) -> dict:
    """``{array path: (chunk sets, inline chunk keys)}`` of a scan's output, in one pass."""
    index: dict = {}
    for c in out.chunks:
        index.setdefault(c.prefix, ([], []))[0].append(c)
    for k in out.inline:
        path, _, last = k.rpartition("/")
        if path and not last.startswith("."):
            index.setdefault(path, ([], []))[1].append(k)
    return index


def _key(row) -> str:
    return ".".join(str(int(x)) for x in row) if len(row) else "0"


class NetCDFDims:
    """netCDF-C's view of a netCDF-4 file's variables, gathered while the scanner walks it:
    an unlimited dimension is as long as the longest variable along it (a variable written to
    fewer records reads fill values beyond its HDF5 extent), and a variable without a
    _FillValue reads netCDF's default fill where nothing was written."""

    def __init__(self):
        self.arrays: dict[str, tuple] = {}  # path -> (scale ids, shape, unlimited flags)
        self.extent: dict[tuple, int] = {}  # scale id -> longest extent on it
        self.fills: dict[str, object] = {}  # path -> HDF5's implicit fill (zarr JSON)

    def axes(self, path, ids, shape, unlimited, array=True) -> None:
        """Dataset ``path``'s extents along the dimension scales ``ids``; ``array=False``
        for a dimension without a variable, which only counts towards the lengths."""
        for ident, n in zip(ids, shape):
            if ident is not None:
                self.extent[ident] = max(self.extent.get(ident, 0), int(n))
        if array:
            self.arrays[path] = (tuple(ids), tuple(int(n) for n in shape), tuple(unlimited))

    def implicit_fill(self, path, fill) -> None:
        self.fills[path] = fill

    def finish(self, out, index: dict) -> None:
        """Grow variables along unlimited dimensions and write the never-written chunks of
        those with an implicit fill; ``index``: :func:`chunks_by_array` of ``out``."""
        for path, (ids, shape, unlimited) in self.arrays.items():
            zkey = _k(path, ".zarray")
            raw = out.inline.get(zkey)
            if raw is None:
                continue
            grown = [max(n, self.extent.get(i, 0)) if u and i is not None else n
                     for i, n, u in zip(ids, shape, unlimited)]
            if grown != list(shape):
                meta = json.loads(raw)
                meta["shape"] = grown + meta["shape"][len(shape):]
                out.inline[zkey] = _json(meta)
        budget = FILL_CHUNK_BYTES
        for path, fill in self.fills.items():
            budget -= _write_fill_chunks(out, path, fill, budget, index.get(path, ([], [])))


def _write_fill_chunks(out, path: str, fill, budget: int, present) -> int:
    """Write array ``path``'s missing chunks holding ``fill``, encoded with its codecs, if they
    fit ``budget`` bytes; the bytes written.  ``present``: its (chunk sets, inline keys)."""
    import numcodecs

    from chunkview.read.meta import dtype_of, fill_bytes

    raw = out.inline.get(_k(path, ".zarray"))
    if raw is None or _k(path, MASK_KEY) in out.inline:
        return 0
    meta = json.loads(raw)
    shape, chunks = meta["shape"], meta["chunks"]
    if not shape:  # a scalar: one chunk, "0"
        shape = chunks = [1]
    grid = [-(-int(s) // int(c)) for s, c in zip(shape, chunks)]
    total = int(np.prod(grid, dtype=np.int64))
    if total == 0 or total > FILL_GRID_CHUNKS or (chunk_nbytes(meta) or 0) > FILL_CHUNK_BYTES:
        return 0  # (one decoded chunk is built to encode it)
    sets, keys = present
    have = np.zeros(grid, bool)
    for c in sets:
        have[tuple(c.coords.T)] = True
    pre = len(path) + 1
    for k in keys:
        idx = tuple(int(x) for x in k[pre:].split("."))
        have[idx if meta["shape"] else (0,)] = True
    n_missing = total - int(np.count_nonzero(have))
    if not n_missing:
        return 0
    try:
        dtype = dtype_of(meta["dtype"])
        one = fill_bytes(fill, dtype)
        if one is None:
            return 0
        data = np.frombuffer(one * int(np.prod(chunks, dtype=np.int64)), dtype)
        configs = list(meta.get("filters") or [])
        if meta.get("compressor"):
            configs.append(meta["compressor"])
        enc = data
        for cfg in configs:
            enc = numcodecs.get_codec(dict(cfg)).encode(enc)
        enc = bytes(memoryview(enc).cast("B")) if not isinstance(enc, bytes) else enc
    except Exception:  # noqa: BLE001 - a codec without an encoder: the chunks stay missing
        return 0
    if len(enc) * n_missing > budget:  # checked before the missing keys are listed
        return 0
    base = path + "/" if path else ""
    for row in np.argwhere(~have):
        out.inline[base + (_key(row) if meta["shape"] else "0")] = enc
    return len(enc) * n_missing


def finish_masks(out, readers: dict, index: dict) -> None:
    """For each array with per-chunk filter masks (``.cvmask``), wrap its codecs in
    ``hdf5_masked`` (:mod:`chunkview.codecs.masked`), telling masked chunks apart by stored
    length, or by a digest of the bytes (read through ``readers``: url -> reader) where
    chunks with different masks share a length."""
    for mkey in [k for k in out.inline if k == MASK_KEY or k.endswith("/" + MASK_KEY)]:
        path = mkey[:-len(MASK_KEY)].rstrip("/")
        _wrap_masks(out, path, mkey, readers, index.get(path, ([], [])))


def _wrap_masks(out, path: str, mkey: str, readers: dict, chunks) -> None:
    zkey = _k(path, ".zarray")
    if zkey not in out.inline:
        return
    masks = json.loads(out.inline[mkey])
    meta = json.loads(out.inline[zkey])
    configs = list(meta.get("filters") or [])
    if meta.get("compressor"):
        configs.append(meta["compressor"])
    if not configs or any(c.get("id") == CODEC_ID for c in configs):
        return
    sets, keys = chunks
    sizes, where = {}, {}
    pre = len(path) + 1 if path else 0
    for c in sets:
        for row, a, n in zip(c.coords, c.addrs, c.sizes):
            k = _key(row)
            sizes[k] = int(n)
            where[k] = (c.url, int(a), int(n))
    for k in keys:
        sizes[k[pre:]] = len(out.inline[k])
    lengths, digests, shared = table(masks, sizes)
    seen: dict[str, int] = {}
    for k in shared:
        if k in where:
            url, a, n = where[k]
            data = bytes(readers[url].read(a, n))
        else:
            data = bytes(out.inline[_k(path, k)])
        h = digest(data)
        m = int(masks.get(k, 0))
        if seen.setdefault(h, m) != m:
            why = (f"chunks with identical bytes have different HDF5 filter masks (chunk {k}): "
                   "zarr readers cannot tell them apart")
            for suffix in (".zarray", ".zattrs", MASK_KEY):
                out.inline.pop(_k(path, suffix), None)
            out.chunks = [c for c in out.chunks if c.prefix != path]
            out.inline[_k(path, ERROR_KEY)] = _json({"error": why})
            out.unsupported[path] = why
            return
        if m:
            digests[str(len(data))][h] = m
    meta["filters"] = [wrapper(configs, lengths, digests, chunk_nbytes(meta))]
    meta["compressor"] = None
    out.inline[zkey] = _json(meta)


__all__ = ["FILL_CHUNK_BYTES", "NetCDFDims", "chunks_by_array", "finish_masks",
           "is_dimension_only", "is_netcdf4"]
