"""The direct array API: ``chunkview.open(refs) -> Group``, arrays that index like numpy.

    g = chunkview.open("refs.json")
    t = g["t2m"]                   # chunkview.Array: .shape .dtype .chunks .attrs
    a = t[0:8, ::2]                # numpy array
    t.read(out=buf)                # into a caller's array

A selection is planned with numpy (which chunks, which part of each, where it goes), the
references are looked up in one batch, the stored bytes fetched in one batch (local files are
memory-mapped, remote ranges merged), and every chunk is decoded straight into the output by
the C batch decoder with the GIL released, on ``threads`` threads.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Iterator, Mapping

import numpy as np

from chunkview import _decode
from chunkview._fetch import Segments, Source
from chunkview._index import MISSING
from chunkview._remote import RemoteOptions
from chunkview.codecs import Pipeline, pipeline_from_zarray
from chunkview.errors import ChunkviewError, DecodeError, ReferenceFormatError, UnsupportedError
from chunkview.references import References, load

MASK_KEY = ".cvmask"
ERROR_KEY = ".cverror"  # a dataset the scanner could not map: why
DIMENSION_KEY = "_ARRAY_DIMENSIONS"  # xarray's dimension names in .zattrs


def _json_of(refs, key: str, source=None):
    raw = refs.get(key)
    if raw is None:
        return None
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ReferenceFormatError(f"metadata key {key!r} is a reference to a file range, "
                                   "not inline JSON", key=key, source=source)
    try:
        return json.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError) as e:
        raise ReferenceFormatError(f"invalid JSON metadata: {e}", key=key, source=source) from None


def _dtype_of(spec) -> np.dtype:
    if isinstance(spec, list):
        return np.dtype([tuple(_field(f)) for f in spec])
    return np.dtype(spec)


def _field(f):
    name, typ = f[0], f[1]
    typ = _dtype_of(typ) if isinstance(typ, list) else typ
    return (name, typ, tuple(f[2])) if len(f) > 2 else (name, typ)


# zarr v2 JSON's spelling of the floats JSON has no literal for
JSON_FLOATS = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}


def _fill_bytes(fill, dtype: np.dtype, bad=None):
    """The fill value as itemsize bytes, or None for zeros (zarr v2 ``null``)."""
    if fill is None:
        return None
    try:
        if dtype.kind in "SV" or dtype.fields is not None:
            if isinstance(fill, str):
                raw = base64.standard_b64decode(fill)
                return raw.ljust(dtype.itemsize, b"\0")[: dtype.itemsize]
            if fill == 0:
                return None
        if isinstance(fill, str):
            fill = JSON_FLOATS.get(fill, fill)
        if dtype.kind == "c" and isinstance(fill, list):
            if len(fill) != 2:
                raise ValueError("a complex fill value is [real, imag]")
            fill = complex(fill[0], fill[1])
        arr = np.array(fill, dtype=dtype)
        if arr.ndim:
            raise ValueError(f"not a single value of shape {arr.shape}")
        return arr.tobytes()
    except (TypeError, ValueError, OverflowError) as e:
        what = f"fill value {fill!r} does not fit dtype {dtype}: {e}"
        if bad is not None:
            raise bad(what) from None
        raise ReferenceFormatError(what) from None


# ------------------------------------------------------------------ selections


def _normalize(selection, shape):
    """Per dimension ``(start, step, count, drop, reverse)`` with step > 0, for integers and
    slices (negative steps become a reversed positive one)."""
    if not isinstance(selection, tuple):
        selection = (selection,)
    n_ell = sum(1 for s in selection if s is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_ell:
        i = next(i for i, s in enumerate(selection) if s is Ellipsis)
        fill = len(shape) - (len(selection) - 1)
        selection = selection[:i] + (slice(None),) * max(fill, 0) + selection[i + 1:]
    if len(selection) > len(shape):
        raise IndexError(f"too many indices: array is {len(shape)}-dimensional, "
                         f"but {len(selection)} were indexed")
    selection = selection + (slice(None),) * (len(shape) - len(selection))
    out = []
    for d, (s, n) in enumerate(zip(selection, shape)):
        if isinstance(s, slice):
            start, stop, step = s.indices(n)
            r = range(start, stop, step)
            if step > 0:
                out.append((start, step, len(r), False, False))
            else:
                out.append((r[-1] if len(r) else 0, -step, len(r), False, True))
        elif isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)):
            i = int(s)
            if i < -n or i >= n:
                raise IndexError(f"index {i} is out of bounds for axis {d} with size {n}")
            out.append((i % n, 1, 1, True, False))
        else:
            raise IndexError("chunkview arrays take integers, slices and '...'; for fancy "
                             "indexing read a slice and index it with numpy, or use zarr "
                             "(chunkview.open_zarr)")
    return out


def _dim_plan(start, step, count, c):
    """Chunks of one dimension touched by the selection: (chunk index, start in chunk,
    count, first output position), numpy arrays."""
    last = start + (count - 1) * step
    k = np.arange(start // c, last // c + 1, dtype=np.int64)
    b = k * c
    first = np.where(b <= start, start, start + (-((start - b) // step)) * step)
    end = np.minimum(b + c - 1, last)
    ok = first <= end
    if not ok.all():
        k, b, first, end = k[ok], b[ok], first[ok], end[ok]
    cnt = (end - first) // step + 1
    return k, first - b, cnt, (first - start) // step


def plan_selection(dims, chunks):
    """Cartesian product of the per-dimension plans: (chunk coords (n, ndim), sel (n, ndim, 3),
    output start positions (n, ndim))."""
    per = [_dim_plan(s, st, cnt, c) for (s, st, cnt, _, _), c in zip(dims, chunks)]
    if not per:
        return (np.zeros((1, 0), np.int64), np.zeros((1, 0, 3), np.int64),
                np.zeros((1, 0), np.int64))
    sizes = [len(p[0]) for p in per]
    total = int(np.prod(sizes))
    nd = len(per)
    coords = np.empty((total, nd), np.int64)
    sel = np.empty((total, nd, 3), np.int64)
    opos = np.empty((total, nd), np.int64)
    for d, (k, s0, cnt, o0) in enumerate(per):
        shape = [1] * nd
        shape[d] = sizes[d]
        full = sizes
        coords[:, d] = np.broadcast_to(k.reshape(shape), full).reshape(-1)
        sel[:, d, 0] = np.broadcast_to(s0.reshape(shape), full).reshape(-1)
        sel[:, d, 1] = dims[d][1]
        sel[:, d, 2] = np.broadcast_to(cnt.reshape(shape), full).reshape(-1)
        opos[:, d] = np.broadcast_to(o0.reshape(shape), full).reshape(-1)
    return coords, sel, opos


def chunk_keys(prefix: str, coords: np.ndarray, sep: str) -> list[str]:
    """zarr v2 chunk keys ``prefix + "i.j.k"`` (``"0"`` for a 0-d array)."""
    n, nd = coords.shape
    if nd == 0:
        return [prefix + "0"] * n
    if nd == 1:
        return [prefix + s for s in map(str, coords[:, 0].tolist())]
    cols = [list(map(str, coords[:, d].tolist())) for d in range(nd)]
    return [prefix + sep.join(t) for t in zip(*cols)]


def chunk_space_view(res: np.ndarray, drop, reverse=None) -> np.ndarray:
    """A view of ``res`` with one dimension per array dimension: length 1 and stride 0 where
    ``drop[d]`` (an integer index removed the dimension), reversed where ``reverse[d]``."""
    from numpy.lib.stride_tricks import as_strided

    shape, strides = [], []
    it = iter(zip(res.shape, res.strides))
    for dropped in drop:
        n, st = (1, 0) if dropped else next(it)
        shape.append(n)
        strides.append(st)
    full = as_strided(res, shape=tuple(shape), strides=tuple(strides), writeable=True)
    if reverse is not None and any(reverse):
        full = full[tuple(slice(None, None, -1) if r else slice(None) for r in reverse)]
    return full


# ------------------------------------------------------------------ the read path


class ChunkLayout:
    """How one array's chunks are stored, from its zarr v2 ``.zarray``: what the read path
    needs (chunk shape, dtype, order, key separator, codecs, fill value, per-chunk HDF5 filter
    masks from ``<array>/.cvmask``).  Metadata that is not valid zarr v2 raises
    :class:`ReferenceFormatError` naming the array and the field."""

    def __init__(self, refs, path: str, meta: dict):
        self.path = path
        self.prefix = f"{path}/" if path else ""
        key = self.prefix + ".zarray"
        source = getattr(refs, "source", None)

        def bad(what):
            return ReferenceFormatError(f"array {path!r}: {what}", key=key, source=source)

        if not isinstance(meta, dict):
            raise bad(f".zarray must be a JSON object, not {type(meta).__name__}")
        if meta.get("zarr_format", 2) != 2:
            raise UnsupportedError(f"array {path!r}: only zarr v2 metadata is read directly")
        self.meta = meta
        self.shape = _int_tuple(meta.get("shape"), "shape", 0, bad)
        self.chunks = _int_tuple(meta.get("chunks"), "chunks", 1, bad)
        if len(self.chunks) != len(self.shape):
            raise bad(f"chunks {list(self.chunks)} do not fit shape {list(self.shape)}")
        if len(self.shape) > _decode.MAX_DIMS:
            raise UnsupportedError(f"array {path!r}: {len(self.shape)} dimensions (at most "
                                   f"{_decode.MAX_DIMS})")
        try:
            self.dtype = _dtype_of(meta.get("dtype"))
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise bad(f"invalid dtype {meta.get('dtype')!r}: {e}") from None
        if self.dtype.itemsize == 0:
            raise bad(f"dtype {meta.get('dtype')!r} has items of 0 bytes")
        # chunk and array sizes in bytes stay far below 2**63 (products checked in Python ints)
        if math.prod(self.chunks) * self.dtype.itemsize >= 1 << 62 or \
                math.prod(self.shape) * self.dtype.itemsize >= 1 << 62:
            raise bad(f"shape {list(self.shape)} / chunks {list(self.chunks)} of "
                      f"{self.dtype.itemsize}-byte items are too large")
        self.order = meta.get("order", "C")
        if self.order not in ("C", "F"):
            raise bad(f"order must be 'C' or 'F', not {self.order!r}")
        self.fill_value = meta.get("fill_value")
        self.fill = _fill_bytes(self.fill_value, self.dtype, bad)
        self.sep = meta.get("dimension_separator") or "."
        if self.sep not in (".", "/"):
            raise bad(f"dimension_separator must be '.' or '/', not {self.sep!r}")
        filters, comp = meta.get("filters"), meta.get("compressor")
        if not (filters is None or isinstance(filters, list) and all(map(_is_codec, filters))):
            raise bad(f"filters must be null or a list of codec objects with a string 'id', "
                      f"not {filters!r}")
        if not (comp is None or _is_codec(comp)):
            raise bad(f"compressor must be null or a codec object with a string 'id', "
                      f"not {comp!r}")
        try:
            self.pipeline: Pipeline = pipeline_from_zarray(meta)
            if not self.pipeline.fast:
                self.pipeline.codecs()  # every codec must exist and accept its configuration
        except ChunkviewError:
            raise
        except Exception as e:  # noqa: BLE001 - numcodecs raises anything on a bad config
            ids = [c.get("id") for c in (meta.get("filters") or []) + [meta.get("compressor")]
                   if c]
            raise UnsupportedError(f"array {path!r}: cannot decode codecs {ids}: "
                                   f"{type(e).__name__}: {e}") from None
        masks = _json_of(refs, self.prefix + MASK_KEY)
        if masks is not None and not (isinstance(masks, dict) and all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32
                for v in masks.values())):
            raise ReferenceFormatError(f"array {path!r}: {MASK_KEY} must map chunk keys to "
                                       "filter masks (integers in [0, 2**32))",
                                       key=self.prefix + MASK_KEY, source=source)
        self.masks = {str(k): int(v) for k, v in (masks or {}).items()}


def _is_codec(cfg) -> bool:
    return isinstance(cfg, dict) and isinstance(cfg.get("id"), str)


def _int_tuple(v, name, lo, bad) -> tuple:
    """A .zarray list of integers >= lo as a tuple."""
    if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                          and lo <= x < 2**62 for x in v):
        raise bad(f"{name} must be a list of integers >= {lo}, not {v!r}")
    return tuple(v)


def decode_chunks(refs, source: Source, layout: ChunkLayout, keys, full, sel, out_offsets,
                  threads: int) -> int:
    """Look up, fetch and decode the chunks ``keys`` of one array into ``full`` (one dimension
    per array dimension): chunk i's part ``sel[i]`` goes to byte ``out_offsets[i]``.  Missing
    chunks get the fill value.  Remote blocks are decoded as they arrive, while the rest are
    still in flight.  Returns how many of the chunks exist; raises DecodeError naming the
    first failing chunk's key, URL and byte range."""
    ids, offs, lens = refs.lookup_many(keys)
    masks = None
    if layout.masks:
        pre = len(layout.prefix)
        masks = np.array([layout.masks.get(k[pre:], 0) for k in keys], dtype=np.uint32)
    chunk = layout.chunks
    if layout.order == "F":  # a Fortran-ordered chunk is the C-ordered transposed chunk
        chunk = chunk[::-1]
        full = full.transpose()
        sel = np.ascontiguousarray(sel[:, ::-1, :])
    pipe = layout.pipeline
    steps = list(pipe.steps) if pipe.fast else []
    n = len(keys)
    for seg, ready in source.fetch_iter(keys, ids, offs, lens):
        if len(ready) == n:
            part, pkeys, psel, poff, pmasks = seg, keys, sel, out_offsets, masks
        else:
            part = seg.subset(ready)
            pkeys = [keys[i] for i in ready.tolist()]
            psel = np.ascontiguousarray(sel[ready])
            poff = np.ascontiguousarray(out_offsets[ready])
            pmasks = None if masks is None else np.ascontiguousarray(masks[ready])
        if not pipe.fast:
            part = _decode_slow(layout, pkeys, part, pmasks)
            pmasks = None
        failed = _decode.decode_batch(
            tuple(chunk), layout.dtype.itemsize, steps, full, poff, psel, part.bufs,
            part.buf_index, part.offsets, part.lengths, pmasks, layout.fill, threads)
        if failed:
            raise _decode_error(pkeys, part, failed, steps)
    return int((np.asarray(ids) != MISSING).sum())


def _decode_slow(layout: ChunkLayout, keys, seg: Segments, masks) -> Segments:
    """Decode every chunk with its numcodecs codecs; returns raw chunks for the C copy."""
    nbytes = int(np.prod(layout.chunks, dtype=np.int64)) * layout.dtype.itemsize
    bufs = []
    buf_index = seg.buf_index.copy()
    lengths = seg.lengths.copy()
    for i, bi in enumerate(seg.buf_index.tolist()):
        if bi < 0:
            continue
        o, n = int(seg.offsets[i]), int(seg.lengths[i])
        src = memoryview(seg.bufs[bi])[o:o + n]
        where = f"chunk {keys[i]!r} of {seg.url_of(i)!r} (bytes {int(seg.starts[i])}-" \
                f"{int(seg.starts[i]) + n})"
        try:
            raw = layout.pipeline.decode_chunk(src, 0 if masks is None else int(masks[i]),
                                               max_bytes=nbytes)
        except Exception as e:  # noqa: BLE001 - one error naming key, url, range
            ids = [c["id"] for c in layout.pipeline.configs]
            raise DecodeError(f"cannot decode {where} with {ids}: {type(e).__name__}: {e}") from e
        mv = memoryview(raw).cast("B")
        if len(mv) != nbytes:
            raise DecodeError(f"{where} decoded to {len(mv)} bytes, expected {nbytes}")
        buf_index[i] = len(bufs)
        bufs.append(mv)
        lengths[i] = nbytes
    return Segments(bufs, buf_index, np.zeros_like(seg.offsets), lengths, seg.ids,
                    seg.url_text, seg.starts)


# ------------------------------------------------------------------ arrays


class Array:
    """One array of a reference set, read with chunkview's batch decoder."""

    def __init__(self, group: Group, path: str, meta: dict, attrs: dict):
        self._group = group
        self.path = path
        self.name = "/" + path
        self._meta = meta
        self.layout = lay = ChunkLayout(group._refs, path, meta)
        self.shape, self.chunks, self.dtype = lay.shape, lay.chunks, lay.dtype
        self.order, self.fill_value, self.pipeline = lay.order, lay.fill_value, lay.pipeline
        self.attrs = attrs

    # ----------------------------------------------------------------- numpy-like

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def nchunks(self) -> int:
        return int(np.prod([-(-s // c) for s, c in zip(self.shape, self.chunks)], dtype=np.int64))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"<chunkview.Array {self.name} shape={self.shape} dtype={self.dtype} "
                f"chunks={self.chunks}>")

    def __getitem__(self, selection):
        return self.read(selection)

    def __array__(self, dtype=None, copy=None):
        a = self.read()
        return a if dtype is None else a.astype(dtype, copy=False)

    # ----------------------------------------------------------------- reading

    def read(self, selection=Ellipsis, *, out=None, threads: int | None = None):
        """Read ``selection`` (integers, slices, ``...``) into a new array or into ``out``."""
        if self.dtype.hasobject:
            raise UnsupportedError(f"array {self.path!r} has object dtype; read it with zarr "
                                   "(chunkview.open_zarr)")
        dims = _normalize(selection, self.shape)
        out_shape = tuple(cnt for (_, _, cnt, drop, _) in dims if not drop)
        if out is None:
            res = np.empty(out_shape, dtype=self.dtype)
        else:
            if not isinstance(out, np.ndarray):
                raise TypeError("out must be a numpy array")
            if out.shape != out_shape or out.dtype != self.dtype:
                raise ValueError(f"out must have shape {out_shape} and dtype {self.dtype}, not "
                                 f"{out.shape} {out.dtype}")
            res = out
        if res.size == 0:
            return res
        full = chunk_space_view(res, [d[3] for d in dims], [d[4] for d in dims])
        coords, sel, opos = plan_selection(dims, self.chunks)
        out_offsets = (opos * np.asarray(full.strides, np.int64)).sum(axis=1) if self.ndim \
            else np.zeros(len(coords), np.int64)
        g = self._group
        keys = chunk_keys(self.layout.prefix, coords, self.layout.sep)
        decode_chunks(g._refs, g._source, self.layout, keys, full, sel, out_offsets,
                      threads or g.threads)
        return res if out is not None or res.ndim else res[()]


class Group(Mapping):
    """A group of a reference set: ``g["name"]`` gives an :class:`Array` or a subgroup."""

    def __init__(self, refs: References, source: Source, *, path: str = "",
                 threads: int | None = None, _parent: Group | None = None):
        self._refs = refs
        self._source = source
        self.path = path
        self.name = "/" + path
        self.threads = threads or os.cpu_count() or 1
        if _parent is not None:  # members and consolidated metadata are shared with the root
            self._cache, self._zmeta = _parent._cache, _parent._zmeta
        else:
            self._cache = {}
            zm = _json_of(refs, ".zmetadata", refs.source) if ".zmetadata" in refs else None
            self._zmeta = (zm or {}).get("metadata") if isinstance(zm, dict) else None
            if zm is not None and not isinstance(self._zmeta, dict):
                raise ReferenceFormatError("consolidated metadata must be a JSON object with a "
                                           "'metadata' object", key=".zmetadata",
                                           source=refs.source)
        self.attrs = self._meta(self._join(".zattrs")) or {}

    def _join(self, name: str) -> str:
        return f"{self.path}/{name}" if self.path else name

    def _meta(self, key: str):
        if self._zmeta is not None and key in self._zmeta:
            return self._zmeta[key]
        if key in self._refs:
            return _json_of(self._refs, key, self._refs.source)
        return None

    def __getitem__(self, name: str):
        path = self._join(name.strip("/"))
        hit = self._cache.get(path)
        if hit is not None:
            return hit
        zarray = self._meta(path + "/.zarray")
        if zarray is not None:
            obj = Array(self, path, zarray, self._meta(path + "/.zattrs") or {})
        elif self._meta(path + "/.zgroup") is not None or (
                self._zmeta is None and any(True for _ in self._children(path))):
            obj = Group(self._refs, self._source, path=path, threads=self.threads, _parent=self)
        else:
            why = self._meta(path + "/" + ERROR_KEY)
            if why is not None:
                raise UnsupportedError(f"{path!r} cannot be read: "
                                       f"{why.get('error', why) if isinstance(why, dict) else why}")
            raise KeyError(name)
        self._cache[path] = obj
        return obj

    def _children(self, path: str):
        listing = self._refs.listing()
        return iter(listing.get(path, {}).get("dirs", ()))

    def __iter__(self) -> Iterator[str]:
        names = set()
        if self._zmeta is not None:
            pre = self._join("")
            for k in self._zmeta:
                if k.startswith(pre) and k.endswith((".zarray", ".zgroup")):
                    rest = k[len(pre):].split("/")
                    if len(rest) == 2:
                        names.add(rest[0])
        else:
            for d in self._children(self.path):
                name = d.rsplit("/", 1)[-1]
                if self._meta(d + "/.zarray") is not None or self._meta(d + "/.zgroup") is not \
                        None or self._meta(d + "/" + ERROR_KEY) is not None:
                    names.add(name)
        return iter(sorted(names))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def arrays(self):
        return [(k, v) for k, v in self.items() if isinstance(v, Array)]

    def groups(self):
        return [(k, v) for k, v in self.items() if isinstance(v, Group)]

    def __repr__(self) -> str:
        return f"<chunkview.Group {self.name} ({len(self)} members)>"

    def close(self) -> None:
        self._source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _decode_error(keys, seg, failed, steps):
    i, status, text, step, detail = failed[0]
    url = seg.url_of(i)
    start = int(seg.starts[i])
    length = int(seg.lengths[i])
    what = f" in step {steps[step][0]}" if 0 <= step < len(steps) else ""
    extra = f" (found {detail} bytes)" if detail >= 0 else ""
    more = f"; {len(failed) - 1} more chunks failed" if len(failed) > 1 else ""
    rng = "inline data" if seg.ids[i] < 0 else f"bytes {start}-{start + length}"
    err = DecodeError(f"cannot decode chunk {keys[i]!r} of {url!r} ({rng}){what}: {text}"
                      f"{extra}{more}")
    err.key, err.url, err.start, err.end = keys[i], url, start, start + length
    err.failures = [(keys[f[0]], f[2]) for f in failed]
    return err


def open(refs_or_path, *, remote_protocol=None, remote_options=None, fs=None, target=None,
         threads: int | None = None, max_gap: int = 1 << 20, max_block: int = 256_000_000,
         **load_options) -> Group:
    """Open a reference set (anything :func:`chunkview.load` takes, or a
    :class:`chunkview.References`) as a :class:`Group` of numpy-indexable arrays.

    ``remote_protocol`` / ``remote_options`` / ``fs`` say how to read the referenced files,
    ``threads`` how many threads decode (default: all cores), ``max_gap`` / ``max_block`` how
    nearby ranges of a remote file are merged into one block (by default ranges less than
    1 MiB apart, as Apache Arrow's ``object_store`` does: on object storage a request's
    latency costs more than reading that gap).

    Remote reads: blocks are at most ``request_bytes`` (4 MiB) long, so each block is one
    request, decoded as soon as it lands; a larger chunk is split into parallel requests, at
    most ``max_requests`` (16) in flight; failed requests (5xx, resets, ``timeout`` seconds,
    short bodies) are retried ``retries`` (3) times with exponential backoff from ``backoff``
    (0.1 s).  ``check_source`` (``"off"``, ``"size"`` (default) or ``"etag"``) compares each
    file with what the scan recorded before its bytes are used and raises
    :class:`chunkview.SourceChangedError` when it changed.  ``allowed_protocols`` limits the
    URLs the references may read; references loaded from a remote location may not read local
    files unless ``"file"`` is allowed.
    """
    remote = RemoteOptions.from_kwargs(load_options).as_kwargs()
    refs = load(refs_or_path, **load_options)
    source = Source(refs, remote_protocol=remote_protocol, remote_options=remote_options, fs=fs,
                    target=target, max_gap=max_gap, max_block=max_block, **remote)
    return Group(refs, source, threads=threads)
