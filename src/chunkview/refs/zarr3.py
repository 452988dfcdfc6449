"""Zarr v3 reference sets: chunkview's zarr v2 metadata as ``zarr.json`` documents, and back.

:func:`to_zarr3` turns a reference set with zarr v2 metadata (what the scanners write) into
one with Zarr v3 metadata that plain zarr-python 3 reads through fsspec's
``ReferenceFileSystem``:

* one ``zarr.json`` per group and array; every parent of an array is a group;
* chunk keys in v3's default encoding (``<array>/c/i/j``; ``<array>/c`` for a 0-d array);
  per-chunk filter masks (``.cvmask``) keyed the same way;
* ``data_type`` from the v2 dtype, byte order as a ``bytes`` codec (``transpose`` first for
  Fortran order), then the v2 filters and compressor in order: ``numcodecs.zlib``,
  ``gzip``, ``numcodecs.shuffle`` (HDF5's shuffle when the chunk is whole elements, as it
  always is for a plain chunk), other numcodecs codecs as ``numcodecs.<id>``, and chunkview's
  own as ``chunkview.<id>`` (:mod:`chunkview.codecs.zarr3`);
* ``dimension_names`` from ``_ARRAY_DIMENSIONS``; the attributes as they were, with
  ``_FillValue`` written the way xarray reads it from Zarr v3 (xarray masks a v3 array's
  ``_FillValue`` attribute, not its ``fill_value``) where the v2 ``fill_value`` was a
  netCDF ``_FillValue``.

An array v3 cannot describe (structured data types, whose Zarr v3 form is not settled, and
object dtypes) gets no ``zarr.json``: its ``.cverror`` says why and it is listed in
``unsupported``, as a scan does for a dataset it cannot present.

:func:`v2_view` goes the other way for reading: a v3 ``zarr.json`` as the v2-style
``.zarray`` / ``.zattrs`` dicts chunkview's readers use, plus where its chunk keys lie.
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np

from chunkview._index import INLINE, MISSING, ChunkIndex
from chunkview.errors import ReferenceFormatError, UnsupportedError, reason
from chunkview.keys import (
    DIMENSION_KEY,
    ERROR_KEY,
    MASK_KEY,
    NETCDF_KEY,
    ZARR_JSON,
    ZMETADATA_KEY,
    is_reserved,
)
from chunkview.read.meta import JSON_FLOATS, dtype_of, fill_bytes, json_of

V2_META = (".zarray", ".zattrs", ".zgroup")

_NUMERIC = {("b", 1): "bool", ("i", 1): "int8", ("i", 2): "int16", ("i", 4): "int32",
            ("i", 8): "int64", ("u", 1): "uint8", ("u", 2): "uint16", ("u", 4): "uint32",
            ("u", 8): "uint64", ("f", 2): "float16", ("f", 4): "float32", ("f", 8): "float64",
            ("c", 8): "complex64", ("c", 16): "complex128"}
_NUMPY_OF = {v: f"{k[0]}{k[1]}" for k, v in _NUMERIC.items()}
_NUMPY_OF["bool"] = "b1"
_BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
# grid lookups of arrays with at most this many chunk positions go through the C index at once
_GRID_AT_ONCE = 1 << 22


class Inexpressible(Exception):
    """An array Zarr v3 metadata cannot describe (the message says why)."""


# ------------------------------------------------------------------ v2 -> v3


def data_type(dt: np.dtype):
    """The Zarr v3 ``data_type`` of a numpy dtype and its byte order (None for one-byte
    items)."""
    if dt.fields is not None or dt.subdtype is not None:
        raise Inexpressible(f"structured data type {dt} (Zarr v3 has no settled form for it; "
                            "use zarr_format=2)")
    name = _NUMERIC.get((dt.kind, dt.itemsize))
    if name is not None:
        pass
    elif dt.kind == "S":
        name = {"name": "null_terminated_bytes", "configuration": {"length_bytes": dt.itemsize}}
    elif dt.kind == "V":
        name = {"name": "raw_bytes", "configuration": {"length_bytes": dt.itemsize}}
    elif dt.kind == "U":
        name = {"name": "fixed_length_utf32", "configuration": {"length_bytes": dt.itemsize}}
    else:
        raise Inexpressible(f"data type {dt} has no Zarr v3 form here")
    return name, endian_of(dt)


def endian_of(dt: np.dtype):
    """The ``bytes`` codec's ``endian`` for ``dt`` (None for items without a byte order)."""
    return {"<": "little", ">": "big"}.get(dt.str[0])


def _float_json(x: float):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return float(x)


def fill_json(fill, dt: np.dtype):
    """A v2 ``fill_value`` (None: zeros) as Zarr v3's JSON fill value of ``dt``."""
    raw = fill_bytes(fill, dt)
    v = np.frombuffer(raw, dt)[0] if raw is not None else np.zeros((), dt)[()]
    if dt.kind == "b":
        return bool(v)
    if dt.kind in "iu":
        return int(v)
    if dt.kind == "f":
        return _float_json(float(v))
    if dt.kind == "c":
        return [_float_json(float(v.real)), _float_json(float(v.imag))]
    if dt.kind == "U":
        return str(v)
    return base64.standard_b64encode(bytes(v) if dt.kind == "S" else v.tobytes()).decode()


def _implicit_fill(facts: dict, dt: np.dtype):
    """The v3 fill_value of an array without a v2 one: HDF5's fill value where the scanner
    recorded it (``.cvnetcdf``'s ``fill``), else zeros."""
    try:
        return fill_json(facts.get("fill"), dt)
    except (TypeError, ValueError, OverflowError):
        return fill_json(None, dt)


def xarray_fill(fill, dt: np.dtype):
    """``_FillValue`` as xarray writes (and reads) it in a Zarr v3 array's attributes (its
    ``FillValueCoder``): floats as the base64 of a little-endian double, complex numbers as
    two of them; None where xarray cannot read it back (bytes)."""
    v = np.frombuffer(fill_bytes(fill, dt), dt)[0]
    if dt.kind == "f":
        return base64.standard_b64encode(np.float64(v).astype("<f8").tobytes()).decode()
    if dt.kind == "c":
        return [base64.standard_b64encode(np.float64(p).astype("<f8").tobytes()).decode()
                for p in (v.real, v.imag)]
    if dt.kind == "S":
        # xarray writes a bytes _FillValue so but cannot read it back from a Zarr v3 array
        # ("Failed to decode fill_value. Unsupported dtype |S1", xarray 2026.9): left out,
        # so that xarray opens the set (the array's fill_value still holds it)
        return None
    if dt.kind == "b":
        return bool(v)
    if dt.kind in "iu":
        return int(v)
    return None


def codecs_v3(zarray: dict, dt: np.dtype, endian) -> list:
    """The Zarr v3 codec list of a v2 ``.zarray``."""
    from chunkview.codecs.zarr3 import CODECS, PREFIX

    out = []
    ndim = len(zarray.get("shape") or ())
    if zarray.get("order", "C") == "F" and ndim > 1:
        out.append({"name": "transpose", "configuration": {"order": list(range(ndim))[::-1]}})
    out.append({"name": "bytes", "configuration": {"endian": endian}} if endian else
               {"name": "bytes"})
    nbytes = math.prod(zarray.get("chunks") or ()) * dt.itemsize
    configs = list(zarray.get("filters") or [])
    if zarray.get("compressor") is not None:
        configs.append(zarray["compressor"])
    size: int | None = nbytes  # the length the next codec sees, while it is known
    for c in configs:
        cid = c.get("id")
        conf = {k: v for k, v in c.items() if k != "id"}
        if cid in ("shuffle", "hdf5_shuffle") and size is not None and \
                size % (conf.get("elementsize") or 1) == 0:
            # numcodecs' shuffle equals HDF5's only on whole elements: not after fletcher32's
            # checksum (netCDF-C puts fletcher32 first), nor after a compressor
            out.append({"name": "numcodecs.shuffle",
                        "configuration": {"elementsize": conf.get("elementsize") or 4}})
            continue
        size = size + 4 if cid == "hdf5_fletcher32" and size is not None else \
            (size if cid in ("shuffle", "hdf5_shuffle") else None)
        if cid == "gzip":
            out.append({"name": "gzip", "configuration": {"level": conf.get("level", 1)}})
        elif cid in CODECS:
            out.append({"name": PREFIX + cid, "configuration": conf})
        elif isinstance(cid, str):
            out.append({"name": "numcodecs." + cid, "configuration": conf})
        else:
            raise Inexpressible(f"codec {c!r} has no id")
    return out


def array_json(zarray: dict, zattrs: dict | None, facts: dict | None = None) -> dict:
    """A v2 array's ``.zarray`` and ``.zattrs`` (and chunkview's netCDF facts) as one Zarr v3
    ``zarr.json`` document."""
    try:
        dt = dtype_of(zarray.get("dtype"))
    except (TypeError, ValueError) as e:
        raise Inexpressible(f"invalid dtype {zarray.get('dtype')!r}: {e}") from None
    name, endian = data_type(dt)
    attrs = dict(zattrs) if isinstance(zattrs, dict) else {}
    dims = attrs.pop(DIMENSION_KEY, None)
    fill = zarray.get("fill_value")
    facts = facts if isinstance(facts, dict) else {}
    if "_FillValue" in attrs:  # an attribute of the file (NetCDF3): in xarray's v3 form too
        value = attrs.pop("_FillValue")
        if dt.kind in "biufc" and not isinstance(value, (list, dict)):
            try:
                xf = xarray_fill(value, dt)
            except (TypeError, ValueError, OverflowError):
                xf = None
            if xf is not None:
                attrs["_FillValue"] = xf
    elif fill is not None and facts.get("_FillValue", True):
        xf = xarray_fill(fill, dt)
        if xf is not None:
            attrs["_FillValue"] = xf
    shape = list(zarray.get("shape") or [])
    out = {"zarr_format": 3, "node_type": "array", "shape": shape, "data_type": name,
           "chunk_grid": {"name": "regular",
                          "configuration": {"chunk_shape": list(zarray.get("chunks") or [])}},
           "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
           # no v2 fill_value (a netCDF variable without _FillValue): HDF5's fill value,
           # which VirtualiZarr's HDFParser gives too (a writer of zarr v2 from this makes it
           # the value xarray masks, and 0 would mask real zeros)
           "fill_value": fill_json(fill, dt) if fill is not None else _implicit_fill(facts, dt),
           "codecs": codecs_v3(zarray, dt, endian),
           "attributes": attrs}
    if isinstance(dims, list) and len(dims) == len(shape) and \
            all(isinstance(d, str) for d in dims):
        out["dimension_names"] = dims
    return out


def _check_zarray(zarray) -> None:
    """What chunk keys are made from (shape, chunks, separator) is well formed."""
    if not isinstance(zarray, dict):
        raise Inexpressible(".zarray is not a JSON object")
    shape, chunks = zarray.get("shape"), zarray.get("chunks")
    if not (isinstance(shape, list) and isinstance(chunks, list) and len(shape) == len(chunks)
            and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**62
                    for x in shape + chunks) and all(chunks)):
        raise Inexpressible(f"invalid shape {shape!r:.80} / chunks {chunks!r:.80}")
    if (zarray.get("dimension_separator") or ".") not in (".", "/"):
        raise Inexpressible(f"invalid dimension_separator {zarray['dimension_separator']!r:.20}")


def group_json(zattrs: dict | None) -> dict:
    attrs = zattrs if isinstance(zattrs, dict) else {}
    return {"zarr_format": 3, "node_type": "group", "attributes": dict(attrs)}


def _dumps(doc) -> bytes:
    # attributes may hold NaN and infinities, written as v2 attributes are (NaN, Infinity)
    return json.dumps(doc, separators=(",", ":")).encode()


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _nodes(index: ChunkIndex):
    """``(arrays, groups, chunkview's other keys)`` of a v2 set; every parent of an array is
    a group."""
    arrays, groups, other = [], set(), []
    for key in index.meta_keys():
        path, _, last = key.rpartition("/")
        if last == ".zarray":
            arrays.append(path)
        elif last in (".zgroup", ".zattrs"):
            groups.add(path)
        elif last != ZMETADATA_KEY and is_reserved(last):
            other.append(key)
    groups -= set(arrays)
    groups.add("")
    for a in arrays:
        p = a
        while p:
            p = _parent(p)
            groups.add(p)
    return arrays, groups, other


def v3_docs(refs, arrays=None, groups=None):
    """The Zarr v3 documents of a v2 set without moving its chunks: ``(docs {path:
    zarr.json}, keys {array: (prefix, separator, 0-d key) of its v2 chunk keys},
    unsupported {path: why})``."""
    old = refs.index
    if arrays is None:
        arrays, groups, _ = _nodes(old)

    def meta(key):
        return _json(old, key, refs.source)

    unsupported = dict(getattr(refs, "unsupported", {}) or {})
    docs = {g: group_json(meta(_join(g, ".zattrs"))) for g in sorted(groups)}
    keys = {}
    for a in sorted(arrays):
        zarray = meta(_join(a, ".zarray"))
        try:
            _check_zarray(zarray)
            docs[a] = array_json(zarray, meta(_join(a, ".zattrs")), meta(_join(a, NETCDF_KEY)))
        except Inexpressible as e:
            unsupported[a] = f"not expressible as Zarr v3: {e}"
            continue
        keys[a] = ("", zarray.get("dimension_separator") or ".", "0")
    return docs, keys, unsupported


def v3_form(refs):
    """``(docs, keys, unsupported)`` as :func:`v3_docs` gives them, for a set of either form:
    a v3 set's own zarr.json documents (the root's as ``""``; ``keys`` empty: each array's
    chunk keys are as its document says), a v2 set's in v3 form with its v2 chunk keys."""
    index = refs.index
    if ZARR_JSON not in index:
        return v3_docs(refs)
    docs = {key[:-len(ZARR_JSON)].rstrip("/"): _json(index, key, refs.source)
            for key in _zarr_json_keys(index)}
    return docs, {}, dict(getattr(refs, "unsupported", {}) or {})


def to_zarr3(refs):
    """A reference set with zarr v2 metadata (as the scanners write) as one with Zarr v3
    metadata and chunk keys, referencing the same bytes (module docstring).  Sets that
    already have Zarr v3 metadata come back unchanged."""
    refs = refs.to_references()  # (a lazy parquet set is read whole)
    old = refs.index
    if ZARR_JSON in old:
        return refs
    arrays, groups, other = _nodes(old)
    new = ChunkIndex()
    docs, keys, unsupported = v3_docs(refs, arrays, groups)
    urls = old.urls
    for a, why in unsupported.items():
        if a not in refs.unsupported:
            new.set_inline(_join(a, ERROR_KEY), _dumps({"error": why}))
    dropped = set(unsupported)
    for a, src in keys.items():
        doc = docs[a]
        chunks = doc["chunk_grid"]["configuration"]["chunk_shape"]
        _move_chunks(old, new, a, doc["shape"], chunks, urls, src=src)
        _rekey_masks(old, new, a, src, V3_KEYS, len(doc["shape"]))
    put_docs(new, docs)
    for key in other:
        path, _, last = key.rpartition("/")
        if last == MASK_KEY or path in dropped and last != ERROR_KEY:
            continue
        uid = old.lookup(key)[0]
        if uid == INLINE:
            new.set_inline(key, old.inline(key))
        else:
            new[key] = old[key]
    new.shrink()
    out = type(refs)(new, templates=refs.templates, source=refs.source)
    out.unsupported = unsupported
    out.remote_origin = getattr(refs, "remote_origin", False)
    return out


def put_docs(index: ChunkIndex, docs: dict) -> None:
    """Write ``{path: zarr.json document}`` (the root's, ``""``, among them) into ``index``.
    The root also holds every node's metadata (zarr's consolidated metadata): zarr opens the
    hierarchy from one document and does not list keys, chunkview's own among them."""
    for path, doc in docs.items():
        if path:
            index.set_inline(_join(path, ZARR_JSON), _dumps(doc))
    root = dict(docs.get("") or group_json(None))
    root["consolidated_metadata"] = {"kind": "inline", "must_understand": False,
                                     "metadata": {p: d for p, d in docs.items() if p}}
    index.set_inline(ZARR_JSON, _dumps(root))


V2_KEYS = ("", ".", "0")  # chunk keys "i.j" (zarr v2; a 0-d array's "0")
V3_KEYS = ("c/", "/", "c")  # Zarr v3's default encoding "c/i/j" (a 0-d array's "c")


def _rekey(suffix: str, src, dst, ndim: int) -> str:
    """A chunk key's part below its ``ndim``-dimensional array, encoded as ``src``
    (``(prefix, separator, 0-d key)``), encoded as ``dst``."""
    if ndim == 0:
        return dst[2]
    return dst[0] + dst[1].join(suffix[len(src[0]):].split(src[1]))


def _rekey_masks(old, new, path: str, src, dst, ndim: int) -> None:
    """An array's ``.cvmask`` (keyed by chunk key suffixes) with its keys re-encoded."""
    masks = _json(old, _join(path, MASK_KEY))
    if isinstance(masks, dict):
        new.set_inline(_join(path, MASK_KEY),
                       _dumps({_rekey(k, src, dst, ndim): v for k, v in masks.items()}))


def _move_chunks(old: ChunkIndex, new: ChunkIndex, path: str, shape, chunks, urls,
                 src=V2_KEYS, dst=V3_KEYS) -> None:
    """Copy the chunk references of array ``path`` from keys encoded as ``src`` to keys
    encoded as ``dst`` (``(prefix, separator, 0-d key)`` under the array)."""
    pre = f"{path}/" if path else ""
    ndim = len(shape)
    if ndim == 0:
        _copy_one(old, new, pre + src[2], pre + dst[2])
        return
    grid = [-(-s // c) if c else 0 for s, c in zip(shape, chunks)]
    n = math.prod(grid)
    if n <= _GRID_AT_ONCE:
        ids, offs, lens = old.get_grid(pre + src[0], grid, src[1])
        flat = np.flatnonzero(ids >= 0)
        if flat.size:
            coords = np.stack(np.unravel_index(flat, grid), axis=1)
            new.add_grid(pre + dst[0], coords, ids[flat], offs[flat], lens[flat], urls,
                         sep=dst[1], shrink=False)
        for i in np.flatnonzero(ids == INLINE).tolist():
            k = src[0] + src[1].join(str(x) for x in np.unravel_index(i, grid))
            _copy_one(old, new, pre + k, pre + _rekey(k, src, dst, ndim))
        return
    # a sparse grid too large to look up whole: the keys it has
    start = pre + src[0]
    for key in list(old.keys()):
        if key.startswith(start):
            parts = key[len(start):].split(src[1])
            if len(parts) == ndim and all(p.isdigit() for p in parts):
                _copy_one(old, new, key, pre + _rekey(key[len(pre):], src, dst, ndim))


def parquet_index(old: ChunkIndex) -> ChunkIndex:
    """A Zarr v3 reference set as fsspec's parquet layout can hold it: that layout finds a
    chunk's row from a key ``<array>/i.j`` and the ``shape`` and ``chunks`` of
    ``<array>/.zarray``, so chunk keys take v3's ``v2`` encoding (``"i.j"``, which every
    zarr.json then names) and each array gets a ``.zarray`` holding only its shape and chunks
    (an index for the layout, not zarr v2 metadata: it has no dtype, and zarr reads the
    zarr.json).  A set already in that form comes back as it is."""
    docs = {key[: -len(ZARR_JSON)].rstrip("/"): _json(old, key) for key in _zarr_json_keys(old)}
    arrays = {p: d for p, d in docs.items() if isinstance(d, dict)
              and d.get("node_type") == "array"}
    if all(_join(p, ".zarray") in old and _key_encoding(d) == V2_KEYS
           for p, d in arrays.items()):
        return old
    new = ChunkIndex()
    urls = old.urls
    for path, doc in arrays.items():
        src = _key_encoding(doc)
        try:
            shape, chunks = doc["shape"], doc["chunk_grid"]["configuration"]["chunk_shape"]
            _check_zarray({"shape": shape, "chunks": chunks, "dimension_separator": src[1]})
        except (Inexpressible, KeyError, TypeError) as e:
            raise ReferenceFormatError(f"array {path!r}: cannot be stored as parquet: {e}",
                                       key=_join(path, ZARR_JSON)) from None
        dst = V2_KEYS  # (fsspec splits a key at its last "/": "." between coordinates)
        _move_chunks(old, new, path, shape, chunks, urls, src=src, dst=dst)
        _rekey_masks(old, new, path, src, dst, len(shape))
        doc["chunk_key_encoding"] = {"name": "v2", "configuration": {"separator": "."}}
        new.set_inline(_join(path, ".zarray"), _dumps(
            {"shape": shape, "chunks": chunks, "chunkview": "row index for the parquet "
             "layout; the array's metadata is its zarr.json"}))
    root = docs.get("")
    cm = (root.get("consolidated_metadata") or {}).get("metadata") \
        if isinstance(root, dict) else None
    if isinstance(cm, dict):  # the root's copy names the new encodings too
        cm.update({p: d for p, d in arrays.items() if p in cm})
    for path, doc in docs.items():
        new.set_inline(_join(path, ZARR_JSON), _dumps(doc))
    for key in old.meta_keys():
        last = key.rpartition("/")[2]
        if last not in V2_META and key not in new:
            _copy_one(old, new, key, key)
    new.shrink()
    return new


MAX_DENSE_GRID = 1 << 26  # grid positions grid_refs reads (40 B each in a ManifestStore)


def grid_refs(index: ChunkIndex, path: str, doc: dict, keys=None):
    """``(grid, url ids, offsets, lengths)`` of every chunk position of the Zarr v3 array
    ``path`` (``doc``: its zarr.json), read from ``index`` as one grid (ids ``MISSING`` where
    there is no chunk, ``INLINE`` for inline data); ``keys``: how its chunk keys are encoded
    in ``index`` (``(prefix, separator, 0-d key)``; by default as ``doc`` says).  A grid over
    ``MAX_DENSE_GRID`` positions raises UnsupportedError before anything is allocated."""
    prefix, sep, key0 = keys or _key_encoding(doc)
    pre = f"{path}/" if path else ""
    shape = doc["shape"]
    chunks = doc["chunk_grid"]["configuration"]["chunk_shape"]
    grid = tuple(-(-s // c) for s, c in zip(shape, chunks))
    if math.prod(grid) > MAX_DENSE_GRID:
        raise UnsupportedError(
            f"array {path!r}: a grid of {math.prod(grid):,} chunks, over the {MAX_DENSE_GRID:,} "
            f"a dense manifest may hold (VirtualiZarr's and Icechunk's take one entry per "
            f"position; chunkview's own references hold only the chunks there are)")
    if not shape:
        k = pre + key0
        ids, offs, lens = (np.array([v]) for v in (index.lookup(k) if k in index else
                                                    (MISSING, 0, 0)))
    else:
        ids, offs, lens = index.get_grid(pre + prefix, list(grid), sep)
    return (grid, np.asarray(ids).reshape(grid), np.asarray(offs, np.uint64).reshape(grid),
            np.asarray(lens, np.uint64).reshape(grid))


def chunk_key(path: str, keys, at) -> str:
    """The key of the chunk at ``at`` of array ``path`` (``keys``: prefix, separator, 0-d)."""
    prefix, sep, key0 = keys
    pre = f"{path}/" if path else ""
    return pre + (prefix + sep.join(str(int(i)) for i in at) if len(at) else key0)


def _key_encoding(doc: dict):
    """``(prefix, separator, 0-d key)`` of a v3 array's chunk keys."""
    enc = doc.get("chunk_key_encoding") or {"name": "default"}
    conf = enc.get("configuration") if isinstance(enc, dict) else None
    conf = conf if isinstance(conf, dict) else {}
    name = enc.get("name") if isinstance(enc, dict) else None
    if name == "default":
        sep = conf.get("separator", "/")
        return ("c" + sep, sep, "c") if isinstance(sep, str) else ("c/", sep, "c")
    if name == "v2":
        return ("", conf.get("separator", "."), "0")
    raise UnsupportedError(f"chunk key encoding {name!r:.40}")


def _zarr_json_keys(index) -> list:
    """Every ``zarr.json`` key (found from the groups down, without a pass over the chunks)."""
    out, todo = [], [""]
    while todo:
        path = todo.pop()
        key = _join(path, ZARR_JSON)
        doc = _json(index, key)
        if not isinstance(doc, dict):
            continue
        out.append(key)
        if doc.get("node_type") == "group":
            cm = (doc.get("consolidated_metadata") or {}).get("metadata")
            if isinstance(cm, dict) and not path:
                out.extend(_join(p, ZARR_JSON) for p in cm if _join(p, ZARR_JSON) in index)
                return out
            todo.extend(d for d in _dirs_under(index, path))
    return out


def _dirs_under(index, path: str):
    pre = f"{path}/" if path else ""
    seen = set()
    for key in index.keys():
        if key.startswith(pre):
            name = key[len(pre):].split("/", 1)
            if len(name) == 2 and name[0] not in seen:
                seen.add(name[0])
                yield pre + name[0]


def _json(index, key: str, source=None):
    """The JSON inline at ``key`` (None when absent)."""
    if key not in index:
        return None
    try:
        return json.loads(index.inline(key))
    except (ValueError, TypeError, RecursionError) as e:
        raise ReferenceFormatError(f"invalid JSON metadata: {e}", key=key,
                                   source=source) from None


def _copy_one(old: ChunkIndex, new: ChunkIndex, key: str, to: str) -> None:
    if key not in old:  # a chunk never written (a 0-d array's, say): read as the fill value
        return
    uid = old.lookup(key)[0]
    if uid == MISSING:
        return
    if uid == INLINE:
        new.set_inline(to, old.inline(key))
    else:
        new[to] = old[key]


# ------------------------------------------------------------------ v3 -> what readers use


def _numpy_dtype(spec, path: str = "") -> np.dtype:
    if isinstance(spec, str) and spec in _NUMPY_OF:
        return np.dtype(_NUMPY_OF[spec])
    if isinstance(spec, dict):
        name, conf = spec.get("name"), spec.get("configuration") or {}
        n = conf.get("length_bytes") if isinstance(conf, dict) else None
        if isinstance(n, int) and not isinstance(n, bool) and 0 < n < 1 << 31:
            if name == "null_terminated_bytes":
                return np.dtype(f"S{n}")
            if name == "raw_bytes":
                return np.dtype(f"V{n}")
            if name == "fixed_length_utf32" and n % 4 == 0:
                return np.dtype(f"<U{n // 4}")
    try:  # the data types zarr-python itself knows (strings, structs, datetimes...)
        from zarr.core.dtype import get_data_type_from_json

        return get_data_type_from_json(spec, zarr_format=3).to_native_dtype()
    except Exception as e:  # noqa: BLE001 - zarr raises anything on an unknown type
        raise UnsupportedError(f"array {path!r}: unknown Zarr v3 data type {spec!r:.80}: "
                               f"{reason(e)}") from None


def _fill_v2(fill, dt: np.dtype):
    """A v3 JSON fill value as the v2 ``fill_value`` chunkview's readers take."""
    if dt.kind in "SV" and isinstance(fill, str):
        return fill  # both are base64 text
    if dt.kind == "U":
        return fill
    if dt.kind in "SV" and isinstance(fill, list):  # zarr-python < 3.1 wrote byte lists
        return base64.standard_b64encode(bytes(fill)).decode()
    if dt.kind == "f":
        return _float_v2(fill, dt.itemsize)
    if dt.kind == "c" and isinstance(fill, list) and len(fill) == 2:
        return [_float_v2(x, dt.itemsize // 2) for x in fill]
    return fill


def _float_v2(x, nbytes: int):
    """A v3 JSON float (a number, "NaN", "Infinity", "-Infinity" or "0x" + its bytes) as a
    number."""
    if isinstance(x, str):
        if x.startswith("0x"):
            try:
                raw = int(x, 16).to_bytes(nbytes, "big")
            except (ValueError, OverflowError):
                return x  # refused by fill_bytes with the array's name
            return float(np.frombuffer(raw, f">f{nbytes}")[0])
        return JSON_FLOATS.get(x, x)
    return x


def _decode_xarray_fill(value, dt: np.dtype):
    """xarray's ``FillValueCoder`` text of a ``_FillValue`` back to a value."""
    try:
        if dt.kind == "f" and isinstance(value, str):
            return float(np.frombuffer(base64.standard_b64decode(value), "<f8")[0])
        if dt.kind == "c" and isinstance(value, list) and len(value) == 2:
            re, im = (float(np.frombuffer(base64.standard_b64decode(p), "<f8")[0]) for p in value)
            return [re, im]
        if dt.kind == "S" and isinstance(value, str):
            return value  # base64, as a v2 fill value of bytes
    except (ValueError, TypeError):
        return None
    return value


def v2_view(doc: dict, path: str = ""):
    """A Zarr v3 array's ``zarr.json`` as ``(zarray, zattrs)`` in the v2 forms chunkview's
    readers take.  ``zarray`` also holds ``_cv_chunk_key`` (``[prefix, separator, key of a
    0-d array's chunk]``, relative to the array) and ``_cv_no_mask`` (True when the values
    equal to ``fill_value`` are data, not missing: no ``_FillValue`` attribute).  Raises
    :class:`UnsupportedError` for what chunkview's own decoder does not read (sharding, codecs
    without a numcodecs form, irregular grids)."""

    def bad(what):
        return ReferenceFormatError(f"array {path!r}: {what}", key=_join(path, ZARR_JSON))

    if not isinstance(doc, dict) or doc.get("node_type") != "array":
        raise bad("zarr.json is not an array's metadata")
    shape, grid = doc.get("shape"), doc.get("chunk_grid")
    if not isinstance(grid, dict) or grid.get("name") != "regular":
        raise UnsupportedError(f"array {path!r}: chunk grid {grid!r:.80} (only regular grids "
                               "are read directly; open it with chunkview.open_zarr)")
    gconf = grid.get("configuration")
    chunks = gconf.get("chunk_shape") if isinstance(gconf, dict) else None
    dt = _numpy_dtype(doc.get("data_type"), path)
    try:
        key = list(_key_encoding(doc))
    except UnsupportedError as e:
        raise UnsupportedError(f"array {path!r}: {e}") from None
    sep = key[1]
    if sep not in (".", "/"):
        raise bad(f"chunk key separator {sep!r:.20}")
    order, filters = "C", []
    codecs = doc.get("codecs")
    if not isinstance(codecs, list) or not codecs:
        raise bad("codecs must be a non-empty list")
    ndim = len(shape) if isinstance(shape, list) else 0
    seen_bytes = False
    for c in codecs:
        if isinstance(c, str):
            c = {"name": c}
        name = c.get("name") if isinstance(c, dict) else None
        conf = (c.get("configuration") or {}) if isinstance(c, dict) else {}
        if not isinstance(conf, dict):
            raise bad(f"codec {name!r}: configuration must be an object")
        if not seen_bytes:
            if name == "transpose" and conf.get("order") == list(range(ndim))[::-1] \
                    and order == "C":
                order = "F" if ndim > 1 else "C"
                continue
            if name == "bytes":
                seen_bytes = True
                endian = conf.get("endian")
                if dt.itemsize > 1 and dt.kind not in "SVb" and endian in ("big", "little"):
                    dt = dt.newbyteorder(">" if endian == "big" else "<")
                continue
            raise UnsupportedError(f"array {path!r}: codec {name!r} before the bytes codec "
                                   "is not read directly (open it with chunkview.open_zarr)")
        filters.append(_numcodecs_config(name, conf, dt, path))
    if not seen_bytes:
        raise UnsupportedError(f"array {path!r}: no bytes codec (read it with "
                               "chunkview.open_zarr)")
    attrs, mask = _v2_attrs(doc, dt)
    fill = _fill_v2(doc.get("fill_value"), dt)
    zarray = {"zarr_format": 2, "shape": shape, "chunks": chunks, "dtype": _dtype_str(dt),
              "order": order, "filters": filters or None, "compressor": None,
              "fill_value": fill, "dimension_separator": sep, "_cv_chunk_key": key,
              "_cv_no_mask": mask is None}
    if mask is not None:
        zarray["_cv_mask_fill"] = mask
    return zarray, attrs


def _v2_attrs(doc: dict, dt: np.dtype | None = None):
    """A v3 node's attributes as a v2 ``.zattrs`` (``dimension_names`` as
    ``_ARRAY_DIMENSIONS``), and an array's ``_FillValue`` (taken out, decoded; None when it
    has none, or without ``dt``)."""
    attrs = doc.get("attributes")
    attrs = dict(attrs) if isinstance(attrs, dict) else {}
    dims = doc.get("dimension_names")
    if isinstance(dims, list) and all(isinstance(d, str) for d in dims):
        attrs[DIMENSION_KEY] = list(dims)
    mask = None
    if dt is not None and "_FillValue" in attrs:
        mask = _decode_xarray_fill(attrs.pop("_FillValue"), dt)
    return attrs, mask


def _dtype_str(dt: np.dtype):
    return dt.str if dt.fields is None else dt.descr


def _numcodecs_config(name, conf: dict, dt: np.dtype, path: str) -> dict:
    """A Zarr v3 bytes-to-bytes codec as the numcodecs config chunkview's pipeline decodes."""
    from chunkview.codecs.zarr3 import PREFIX

    if not isinstance(name, str):
        raise ReferenceFormatError(f"array {path!r}: a codec without a name")
    if name.startswith(PREFIX):
        return {**conf, "id": name[len(PREFIX):]}
    if name == "numcodecs.shuffle":
        return {"id": "shuffle", "elementsize": conf.get("elementsize") or dt.itemsize}
    if name.startswith("numcodecs."):
        return {**conf, "id": name[len("numcodecs."):]}
    if name == "gzip":
        return {"id": "gzip", "level": conf.get("level", 5)}
    if name == "zstd":
        return {"id": "zstd", "level": conf.get("level", 0),
                "checksum": bool(conf.get("checksum", False))}
    if name == "blosc":
        shuffle = conf.get("shuffle", "noshuffle")
        return {"id": "blosc", "cname": conf.get("cname", "zstd"),
                "clevel": conf.get("clevel", 5),
                "shuffle": _BLOSC_SHUFFLE.get(shuffle, shuffle),
                "blocksize": conf.get("blocksize", 0)}
    raise UnsupportedError(f"array {path!r}: codec {name!r} is not read directly (open it "
                           "with chunkview.open_zarr)")


def array_meta(refs, path: str, source=None):
    """An array's ``.zarray`` (in a Zarr v3 set, its ``zarr.json`` as :func:`v2_view` sees
    it), or None when ``path`` is not an array."""
    key = f"{path}/.zarray" if path else ".zarray"
    if ZARR_JSON in refs:
        return v2_meta(lambda k: json_of(refs, k, source), key)
    return json_of(refs, key, source)


def is_zarr3(refs) -> bool:
    """Whether a reference set has Zarr v3 metadata (a root ``zarr.json``)."""
    return ZARR_JSON in refs


def v2_meta(get, key: str):
    """What a v2 metadata ``key`` (``<path>/.zarray``, ``.zattrs`` or ``.zgroup``) would
    hold in a Zarr v3 set whose ``zarr.json`` documents ``get(key)`` returns (parsed), or
    None.  Raises :class:`UnsupportedError` for an array chunkview's decoder does not read."""
    path, _, last = key.rpartition("/")
    if last not in V2_META:
        return None
    doc = get(_join(path, ZARR_JSON))
    if not isinstance(doc, dict):
        return None
    kind = doc.get("node_type")
    if last == ".zgroup":
        return {"zarr_format": 2} if kind == "group" else None
    if last == ".zattrs":
        if kind == "group":
            return _v2_attrs(doc)[0]
        if kind != "array":
            return None
        try:
            dt = _numpy_dtype(doc.get("data_type"))
        except UnsupportedError:
            dt = None
        return _v2_attrs(doc, dt)[0]
    if kind != "array":
        return None
    return v2_view(doc, path)[0]


__all__ = ["to_zarr3", "array_json", "group_json", "codecs_v3", "data_type", "fill_json",
           "xarray_fill", "v2_view", "v2_meta", "is_zarr3", "parquet_index", "array_meta",
           "Inexpressible"]
