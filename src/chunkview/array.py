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

import os
from collections.abc import Iterator, Mapping

import numpy as np

from chunkview.errors import ReferenceFormatError, UnsupportedError
from chunkview.io.fetch import Source
from chunkview.keys import ERROR_KEY, ZMETADATA_KEY
from chunkview.options import ReadOptions
from chunkview.read.engine import decode_chunks
from chunkview.read.layout import ChunkLayout
from chunkview.read.meta import json_of, reads_with_zarr, zarr_only_error
from chunkview.read.plan import (
    chunk_space_view,
    normalize_selection,
    plan_selection,
)
from chunkview.refs.load import load
from chunkview.refs.memory import References
from chunkview.refs.zarr3 import V2_META, ZARR_JSON, v2_meta


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
        if reads_with_zarr(self.dtype):
            raise zarr_only_error(self.path)
        dims = normalize_selection(selection, self.shape)
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
        keys = self.layout.chunk_keys(coords)
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
            zm = json_of(refs, ZMETADATA_KEY, refs.source) if ZMETADATA_KEY in refs else None
            self._zmeta = (zm or {}).get("metadata") if isinstance(zm, dict) else None
            if zm is not None and not isinstance(self._zmeta, dict):
                raise ReferenceFormatError("consolidated metadata must be a JSON object with a "
                                           "'metadata' object", key=ZMETADATA_KEY,
                                           source=refs.source)
        self._v3 = ZARR_JSON in refs
        self.attrs = self._meta(self._join(".zattrs")) or {}

    def _join(self, name: str) -> str:
        return f"{self.path}/{name}" if self.path else name

    def _meta(self, key: str):
        if self._v3 and key.endswith(V2_META):  # a Zarr v3 set: zarr.json seen as v2's
            return v2_meta(self._meta, key)
        # the key itself wins over consolidated metadata, which may predate a change
        if key in self._refs:
            return json_of(self._refs, key, self._refs.source)
        if self._zmeta is not None and key in self._zmeta:
            return self._zmeta[key]
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
                if self._meta(d + "/" + ZARR_JSON) is not None if self._v3 else (
                        self._meta(d + "/.zarray") is not None
                        or self._meta(d + "/.zgroup") is not None) \
                        or self._meta(d + "/" + ERROR_KEY) is not None:
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


def open(refs_or_path, *, remote_protocol=None, remote_options=None, fs=None, target=None,
         threads: int | None = None, **options) -> Group:
    """Open a reference set (anything :func:`chunkview.load` takes, or a
    :class:`chunkview.References`) as a :class:`Group` of numpy-indexable arrays.

    ``remote_protocol`` / ``remote_options`` / ``fs`` / ``target`` say how to read the
    referenced files (:class:`chunkview.io.resolve.Resolver`), ``threads`` how many threads
    decode (default: all cores).  Other keywords are :class:`chunkview.options.ReadOptions`
    (how ranges merge, requests, retries, timeouts, source checks, allowed protocols) or go to
    :func:`chunkview.load`.
    """
    read = ReadOptions.from_kwargs(options)
    refs = load(refs_or_path, **options)
    source = Source.of(refs, remote_protocol=remote_protocol, remote_options=remote_options,
                       fs=fs, target=target, **read.as_kwargs())
    return Group(refs, source, threads=threads)
