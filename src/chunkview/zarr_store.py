"""zarr-python 3 integration: ``ReferenceStore``, ``CodecPipeline`` and ``open_zarr``.

* :class:`ReferenceStore` is a zarr ``Store`` over a reference set: keys are served from the C
  index, chunk bytes read from their files (local files memory-mapped, remote ranges merged per
  URL in ``get_partial_values``).  It is read-only by default; opened with ``read_only=False``
  it takes writes as inline references (to edit metadata, or build small sets in memory).
* :class:`CodecPipeline` (zarr config ``codec_pipeline.path =
  "chunkview.zarr_store.CodecPipeline"``) reads every chunk of a selection in one batch: one
  lookup, one fetch, one C decode straight into zarr's output array with the GIL released, for
  zarr v2 metadata whose codecs the C path covers.  For any other array or store it builds
  zarr's default ``BatchedCodecPipeline``.
* :func:`open_zarr` returns a ``zarr.Group`` wired to both.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import numpy as np
import zarr
from numcodecs.compat import ensure_ndarray_like
from zarr.abc.codec import BytesBytesCodec
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.codecs._v2 import V2Codec
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.codec_pipeline import BatchedCodecPipeline
from zarr.registry import get_ndbuffer_class

import chunkview.codecs.zarr3  # noqa: F401 - zarr v3 codecs (and numcodecs < 0.16's shuffle)
from chunkview._index import INLINE, MISSING
from chunkview.codecs.bounded import MAX_VLEN_CHUNK_BYTES, decode_all
from chunkview.codecs.pipeline import Pipeline, pipeline_from_zarray
from chunkview.errors import (
    ChunkviewError,
    DecodeError,
    FetchError,
    ReferenceFormatError,
    reason,
)
from chunkview.io.fetch import Source, chunk_view
from chunkview.keys import ZARR_JSON, ZMETADATA_KEY, is_reserved
from chunkview.options import ReadOptions
from chunkview.read.engine import decode_chunks
from chunkview.read.layout import ChunkLayout
from chunkview.read.meta import dtype_of, json_of
from chunkview.read.plan import chunk_space_view, dim_plan
from chunkview.refs.load import load
from chunkview.refs.memory import References
from chunkview.refs.zarr3 import array_meta, endian_of, v2_view

PIPELINE_PATH = "chunkview.zarr_store.CodecPipeline"


def _slice_range(n: int, byte_range: ByteRequest | None) -> tuple[int, int]:
    if byte_range is None:
        return 0, n
    if isinstance(byte_range, RangeByteRequest):
        s, e = byte_range.start, byte_range.end
    elif isinstance(byte_range, OffsetByteRequest):
        s, e = byte_range.offset, n
    elif isinstance(byte_range, SuffixByteRequest):
        s, e = max(n - byte_range.suffix, 0), n
    else:
        raise ValueError(f"Unexpected byte_range, got {byte_range!r}")
    s = min(max(s, 0), n)
    return s, min(max(e, s), n)


_META_NAMES = (".zarray", ".zattrs", ".zgroup", ZMETADATA_KEY, "zarr.json")


def _checked_meta(key: str, buf):
    """Metadata zarr will parse, refused here if ``json.loads`` cannot (JSON nested deeper
    than Python's recursion limit): a ReferenceFormatError naming the key, not zarr's
    RecursionError."""
    if buf is None or not key.endswith(_META_NAMES):
        return buf
    raw = buf.to_bytes()
    if raw.count(b"[") + raw.count(b"{") < 256:
        return buf
    try:
        json.loads(raw)
    except RecursionError:
        raise ReferenceFormatError("invalid JSON metadata: nested too deeply", key=key) from None
    except ValueError:
        pass  # zarr says what is wrong with it
    return buf


class ReferenceStore(Store):
    """A zarr store over a reference set (anything :func:`chunkview.load` accepts).

    ``remote_protocol`` / ``remote_options`` / ``fs`` / ``target`` say how to read the
    referenced files, ``threads`` how many threads the codec pipeline decodes with (default:
    all cores); the :class:`chunkview.options.ReadOptions` keywords how they are read, as for
    :func:`chunkview.open`.
    """

    supports_writes: bool = True
    supports_deletes: bool = True
    supports_listing: bool = True
    supports_partial_writes: bool = False  # abstract in zarr < 3.1.3's Store

    def __init__(self, refs, *, read_only: bool = True, remote_protocol=None,
                 remote_options=None, fs=None, target=None, threads: int | None = None,
                 coalesce: int | None = None, **load_options):
        super().__init__(read_only=read_only)
        read = ReadOptions.from_kwargs(load_options).as_kwargs()
        self.refs: References = load(refs, **load_options)
        self._opts = dict(remote_protocol=remote_protocol, remote_options=remote_options,
                          fs=fs, target=target, **read)
        self.threads = threads or os.cpu_count() or 1
        self.source = Source.of(self.refs, **self._opts)
        self._layouts: dict = {}
        if coalesce is None:
            coalesce = COALESCE_BYTES if read_only else 0
        self.coalesce = int(coalesce) if read_only else 0
        self._virtual: dict = {}

    # ----------------------------------------------------------------- store basics

    def with_read_only(self, read_only: bool = False) -> ReferenceStore:
        new = type(self).__new__(type(self))
        Store.__init__(new, read_only=read_only)
        new.refs, new._opts, new.threads = self.refs, self._opts, self.threads
        new.source, new._layouts = self.source, self._layouts
        new.coalesce = self.coalesce if read_only else 0
        new._virtual = self._virtual if read_only else {}
        return new

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ReferenceStore) and other.read_only == self.read_only
                and other._opts == self._opts
                and (other.refs is self.refs or other.refs == self.refs))

    def __repr__(self) -> str:
        return f"ReferenceStore({self.refs!r})"

    def __str__(self) -> str:
        return f"chunkview://{self.refs.source or hex(id(self.refs))}"

    def __getstate__(self):
        return {"refs": self.refs, "opts": self._opts, "threads": self.threads,
                "read_only": self.read_only, "coalesce": self.coalesce}

    def __setstate__(self, state):
        self.__init__(state["refs"], read_only=state["read_only"], threads=state["threads"],
                      coalesce=state.get("coalesce"), **state["opts"])

    # ----------------------------------------------------------------- reading

    async def get(self, key: str, prototype: BufferPrototype | None = None,
                  byte_range: ByteRequest | None = None) -> Buffer | None:
        res = await self.get_partial_values(prototype or default_buffer_prototype(),
                                            [(key, byte_range)])
        return _checked_meta(key, res[0])

    def get_sync(self, key: str, *, prototype: BufferPrototype | None = None,
                 byte_range: ByteRequest | None = None) -> Buffer | None:
        return _checked_meta(key, self._get_many_sync(prototype or default_buffer_prototype(),
                                                      [(key, byte_range)])[0])

    def _get_many_sync(self, prototype, key_ranges) -> list:
        key_ranges = list(key_ranges)
        if self.coalesce:
            special = {i: self._virtual_get(k) for i, (k, _) in enumerate(key_ranges)}
            special = {i: v for i, v in special.items() if v is not _NOT_VIRTUAL}
            if special:
                rest = [i for i in range(len(key_ranges)) if i not in special]
                got = self._get_many_sync(prototype, [key_ranges[i] for i in rest]) if rest else []
                out = [None] * len(key_ranges)
                for i, g in zip(rest, got):
                    out[i] = g
                for i, data in special.items():
                    if data is not None:
                        s, e = _slice_range(len(data), key_ranges[i][1])
                        out[i] = prototype.buffer.from_bytes(data[s:e])
                return out
        keys = [k for k, _ in key_ranges]
        ids, offs, lens = self.refs.lookup_many(keys)
        seg = self.source.fetch(keys, ids, offs, lens)
        out: list = []
        for i, (key, br) in enumerate(key_ranges):
            bi = int(seg.buf_index[i])
            if bi < 0:
                out.append(None)
                continue
            o, n = int(seg.offsets[i]), int(seg.lengths[i])
            if o + n > len(seg.bufs[bi]):
                raise FetchError(key, seg.url_of(i), int(seg.starts[i]), int(seg.starts[i]) + n,
                                 cause=ValueError("the file is shorter than the reference"))
            s, e = _slice_range(n, br)
            buf = prototype.buffer.from_bytes(bytes(chunk_view(seg, i, keys)[s:e]))
            if ids[i] >= 0:  # where the chunk came from, for the codec's error messages
                start = int(seg.starts[i])
                try:
                    buf._cv_where = (key, seg.url_of(i), start + s, start + e)
                except AttributeError:  # a buffer class with slots
                    pass
            out.append(buf)
        return out

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list:
        key_ranges = list(key_ranges)
        if not key_ranges:
            return []
        if len(key_ranges) == 1 and self._is_inline_or_missing(key_ranges[0][0]):
            return self._get_many_sync(prototype, key_ranges)
        return await asyncio.to_thread(self._get_many_sync, prototype, key_ranges)

    # ----------------------------------------------------------------- virtual chunks

    def virtual_info(self, array_path: str):
        """How an array with tiny stored chunks is presented to zarr: a :class:`_Virtual`
        (``k`` stored chunks along the first dimension make one virtual chunk, served decoded),
        or None when it is presented as stored."""
        hit = self._virtual.get(array_path, _NOT_VIRTUAL)
        if hit is _NOT_VIRTUAL:
            lay = self.layout(array_path) if self.coalesce else None
            doc = None
            if lay is not None and "_cv_chunk_key" in lay.meta:  # Zarr v3
                doc = json_of(self.refs, lay.prefix + ZARR_JSON)
                if lay.meta["_cv_chunk_key"][:2] != ["c/", "/"] or not isinstance(doc, dict):
                    lay = None  # (virtual chunks take the default key encoding)
            hit = _Virtual.make(lay, self.coalesce, doc) if lay is not None else None
            self._virtual[array_path] = hit
        return hit

    def _virtual_get(self, key: str):
        """Bytes to serve for key when it is rewritten by chunk coalescing (None: absent), or
        _NOT_VIRTUAL."""
        path, _, name = key.rpartition("/")
        if ZARR_JSON in self.refs:
            return self._virtual_get_v3(key, path, name)
        if name == ".zarray":
            info = self.virtual_info(path)
            return _NOT_VIRTUAL if info is None else info.meta_bytes
        if name == ZMETADATA_KEY:
            zm = json_of(self.refs, key)
            meta = zm.get("metadata", {}) if isinstance(zm, dict) else {}
            changed = False
            for k in list(meta):
                if k.endswith(".zarray"):
                    info = self.virtual_info(k[:-len("/.zarray")] if "/" in k else "")
                    if info is not None:
                        meta[k] = info.meta
                        changed = True
            return json.dumps(zm).encode() if changed else _NOT_VIRTUAL
        if name.startswith(".") or (f"{path}/.zarray" if path else ".zarray") not in self.refs:
            return _NOT_VIRTUAL  # not a chunk key of an array
        info = self.virtual_info(path)
        if info is None:
            return _NOT_VIRTUAL
        try:
            coords = tuple(int(x) for x in name.split("."))
        except ValueError:
            return None
        return self._virtual_chunk(info, coords)

    def _virtual_get_v3(self, key: str, path: str, name: str):
        """:meth:`_virtual_get` for a Zarr v3 set: zarr.json documents (and the root's
        consolidated metadata) rewritten for virtual chunks, virtual chunks at ``c/i/j``."""
        if name == ZARR_JSON:
            doc = json_of(self.refs, key)
            if not isinstance(doc, dict):
                return _NOT_VIRTUAL
            if doc.get("node_type") == "array":
                info = self.virtual_info(path)
                return _NOT_VIRTUAL if info is None else info.meta_bytes
            cm = (doc.get("consolidated_metadata") or {}).get("metadata")
            changed = False
            for p, sub in (cm.items() if isinstance(cm, dict) else ()):
                if isinstance(sub, dict) and sub.get("node_type") == "array":
                    info = self.virtual_info(f"{path}/{p}" if path else p)
                    if info is not None:
                        cm[p] = info.meta
                        changed = True
            return json.dumps(doc).encode() if changed else _NOT_VIRTUAL
        parts = key.split("/")
        for k in range(len(parts) - 1, -1, -1):  # <array>/c/i/j: the array is before "c"
            if parts[k] == "c":
                break
        else:
            return _NOT_VIRTUAL
        apath, rest = "/".join(parts[:k]), parts[k + 1:]
        if not rest or not all(x.isdigit() for x in rest):
            return _NOT_VIRTUAL
        info = self.virtual_info(apath)
        if info is None:
            return _NOT_VIRTUAL
        return self._virtual_chunk(info, tuple(int(x) for x in rest))

    def _virtual_chunk(self, info, coords):
        """A virtual chunk's decoded bytes (None: outside the grid, or no stored chunk)."""
        if len(coords) != len(info.vgrid) or any(
                c < 0 or c >= g for c, g in zip(coords, info.vgrid)):
            return None
        out = np.empty(info.vchunks, dtype=info.layout.dtype)
        sel = np.array([[[0, 1, c] for c in info.vchunks]], np.int64)
        found = _decode_virtual(self, info, [coords], out, sel, np.zeros(1, np.int64))
        return out.tobytes() if found else None

    def _is_inline_or_missing(self, key: str) -> bool:
        uid = self.refs.index.lookup(key)[0] if key in self.refs else MISSING
        return uid in (INLINE, MISSING)

    async def exists(self, key: str) -> bool:
        return key in self.refs

    async def getsize(self, key: str) -> int:
        if key not in self.refs:
            raise FileNotFoundError(key)
        n = self.refs.size_of(key)
        if n is None:
            buf = await self.get(key)
            return len(buf)
        return n

    # ----------------------------------------------------------------- writing (inline)

    async def set(self, key: str, value: Buffer, byte_range=None) -> None:
        self._check_writable()
        if not isinstance(value, Buffer):
            raise TypeError(f"ReferenceStore.set(): value must be a Buffer, not {type(value)}")
        self.refs[key] = value.to_bytes()

    def set_sync(self, key: str, value: Buffer) -> None:
        self._check_writable()
        self.refs[key] = value.to_bytes()

    def delete_sync(self, key: str) -> None:
        self._check_writable()
        if key in self.refs:
            del self.refs[key]

    async def set_partial_values(self, key_start_values) -> None:
        """Not supported (``supports_partial_writes`` is False): zarr < 3.1.3 requires it."""
        raise NotImplementedError("ReferenceStore does not support partial writes")

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self._check_writable()
        if key not in self.refs:
            await self.set(key, value)

    async def delete(self, key: str) -> None:
        self._check_writable()
        if key in self.refs:
            del self.refs[key]

    async def clear(self) -> None:
        self._check_writable()
        for k in list(self.refs):
            del self.refs[k]

    # ----------------------------------------------------------------- listing

    async def list(self) -> AsyncIterator[str]:
        for key in list(self.refs):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in list(self.refs):
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/")
        entry = self.refs.listing().get(prefix)
        if entry is None:
            return
        names = {d.rsplit("/", 1)[-1] for d in entry["dirs"]}
        names.update(k.rsplit("/", 1)[-1] for k in entry["files"])
        # chunkview's own keys (".cvsources", ".cvmask", ".cvnetcdf"...) are not zarr nodes:
        # listed, zarr would warn that it cannot recognise them
        for name in sorted(n for n in names if not is_reserved(n)):
            yield name

    # ----------------------------------------------------------------- per-array data

    def layout(self, array_path: str) -> ChunkLayout | None:
        """How an array's chunks are stored (from its ``.zarray``; None when it has none or
        the metadata is not zarr v2); cached."""
        hit = self._layouts.get(array_path, _NOT_VIRTUAL)
        if hit is _NOT_VIRTUAL:
            try:
                meta = array_meta(self.refs, array_path)
                hit = ChunkLayout(self.refs, array_path, meta) if isinstance(meta, dict) else None
            except ChunkviewError:
                hit = None
            self._layouts[array_path] = hit
        return hit


# ------------------------------------------------------------------ the codec pipeline


def _codec_configs(metadata) -> dict | None:
    """The ``.zarray``-style dict of an array's metadata (a Zarr v3 array's as
    :func:`chunkview.refs.zarr3.v2_view` sees it), or None when chunkview's decoder does not
    read it."""
    from zarr.core.metadata import ArrayV2Metadata

    if not isinstance(metadata, ArrayV2Metadata):
        try:
            return v2_view(json.loads(json.dumps(metadata.to_dict(), default=str)))[0]
        except (ChunkviewError, TypeError, ValueError, KeyError):
            return None
    filters = [f.get_config() for f in (metadata.filters or ())]
    comp = metadata.compressor.get_config() if metadata.compressor is not None else None
    return {"filters": filters or None, "compressor": comp,
            "dimension_separator": metadata.dimension_separator or "."}


def _key_depth(cfg: dict, ndim: int) -> int:
    """How many ``/``-separated parts a chunk key adds to its array's path."""
    pre, sep, _ = cfg.get("_cv_chunk_key") or ("", cfg.get("dimension_separator") or ".", "0")
    return pre.count("/") + (max(ndim - 1, 0) if sep == "/" else 0) + 1


def _decode_bounded(steps, cdata, limit: int, items, where):
    """``cdata`` through ``steps`` (``(config, codec)`` in decoding order), each bounded by
    ``limit`` bytes (:func:`chunkview.codecs.bounded.decode_all`); a failure is one
    DecodeError naming the chunk's key, URL and bytes (``where``, set by ReferenceStore)."""
    try:
        return decode_all(steps, cdata, limit, items)
    except Exception as e:  # noqa: BLE001 - one error naming key, url, range
        if isinstance(e, MemoryError):
            raise
        what = "a chunk" if where is None else "chunk {!r} of {!r} (bytes {}-{})".format(*where)
        ids = [c.get("id") for c, _ in reversed(steps)]
        raise DecodeError(f"cannot decode {what} with {ids}: {reason(e)}") from e


@dataclass(frozen=True)
class BoundedV2Codec(V2Codec):
    """zarr's ``V2Codec`` decoding through :mod:`chunkview.codecs.bounded`: each step bounded
    by the chunk's size from its metadata, errors naming the chunk's key, URL and bytes."""

    def _decode_sync(self, cdata, chunk_spec, where):
        dtype = chunk_spec.dtype.to_native_dtype()
        items = int(np.prod(chunk_spec.shape, dtype=np.int64))
        limit = MAX_VLEN_CHUNK_BYTES if dtype.hasobject else items * dtype.itemsize
        codecs = list(self.filters or ()) + ([self.compressor] if self.compressor else [])
        steps = [(c.get_config(), c) for c in reversed(codecs)]
        chunk = ensure_ndarray_like(_decode_bounded(steps, cdata, limit + 64, items, where))
        if not dtype.hasobject:
            chunk = chunk.view(dtype)
        elif chunk.dtype != object:
            raise DecodeError("cannot read an object array without an object codec")
        if chunk.size != items:
            raise DecodeError(f"decoded {chunk.size} elements, the chunk has {items}")
        chunk = chunk.reshape(-1, order="A").reshape(chunk_spec.shape, order=chunk_spec.order)
        return get_ndbuffer_class().from_ndarray_like(chunk)

    async def _decode_single(self, chunk_bytes, chunk_spec):
        where = getattr(chunk_bytes, "_cv_where", None)  # set by ReferenceStore
        return await asyncio.to_thread(self._decode_sync, chunk_bytes.as_array_like(),
                                       chunk_spec, where)


@dataclass(frozen=True)
class BoundedBytesCodecs(BytesBytesCodec):
    """A Zarr v3 array's bytes-to-bytes codecs (as numcodecs configs, in writing order) as
    one codec decoding as :class:`BoundedV2Codec` does: each step bounded by the chunk's size,
    errors naming the chunk's key, URL and bytes.  What a :class:`ReferenceStore` gives zarr
    for the v3 arrays chunkview's decoder reads, in place of zarr's own codecs."""

    is_fixed_size = False
    pipeline: Pipeline = None  # type: ignore[assignment]

    def __init__(self, configs) -> None:
        object.__setattr__(self, "pipeline", Pipeline(tuple(dict(c) for c in configs), None))

    def __hash__(self) -> int:
        return hash(json.dumps(self.pipeline.configs, sort_keys=True))

    def _decode_sync(self, cdata, chunk_spec, where):
        dtype = chunk_spec.dtype.to_native_dtype()
        limit = int(np.prod(chunk_spec.shape, dtype=np.int64)) * dtype.itemsize + 64
        pipe = self.pipeline
        steps = list(zip(reversed(pipe.configs), reversed(pipe._instances)))
        out = _decode_bounded(steps, cdata, limit, None, where)
        return np.ascontiguousarray(ensure_ndarray_like(out)).view("u1").reshape(-1)

    async def _decode_single(self, chunk_bytes, chunk_spec):
        where = getattr(chunk_bytes, "_cv_where", None)  # set by ReferenceStore
        raw = await asyncio.to_thread(self._decode_sync, chunk_bytes.as_array_like(),
                                      chunk_spec, where)
        return chunk_spec.prototype.buffer.from_array_like(raw)

    async def _encode_single(self, chunk_bytes, chunk_spec):
        out = chunk_bytes.as_array_like()
        for codec in self.pipeline._instances:
            out = codec.encode(out)
        return chunk_spec.prototype.buffer.from_array_like(
            np.frombuffer(memoryview(ensure_ndarray_like(out)).cast("B"), "u1"))

    def compute_encoded_size(self, input_byte_length, chunk_spec):
        raise NotImplementedError


class CodecPipeline(BatchedCodecPipeline):
    """zarr's default pipeline, with reads from a :class:`ReferenceStore` done in one C batch.

    Built by zarr through ``from_array_metadata_and_store``; for arrays the C path does not
    cover (zarr v3 metadata, other codecs, object dtypes, fancy selections, other stores) it
    behaves exactly as ``BatchedCodecPipeline``.
    """

    _cv_store: ReferenceStore | None = None
    _cv_refs: ReferenceStore | None = None  # any array of a ReferenceStore: errors name chunks
    _cv_steps: tuple | None = None
    _cv_depth: int = 1  # "/"-separated parts of a chunk key below its array's path
    _cv_ndim: int = 0

    @classmethod
    def from_array_metadata_and_store(cls, array_metadata, store) -> CodecPipeline:
        from zarr.core.metadata import ArrayV2Metadata

        cfg = _codec_configs(array_metadata) if isinstance(store, ReferenceStore) else None
        if isinstance(array_metadata, ArrayV2Metadata):
            # chunks from a reference set are decoded within their metadata's size
            v2 = BoundedV2Codec if isinstance(store, ReferenceStore) else V2Codec
            base = cls.from_codecs([v2(filters=array_metadata.filters,
                                       compressor=array_metadata.compressor)])
        elif cfg is not None and cfg.get("filters"):  # v3: the same bounds as v2
            base = cls.from_codecs([c for c in array_metadata.codecs
                                    if not isinstance(c, BytesBytesCodec)]
                                   + [BoundedBytesCodecs(cfg["filters"])])
        else:
            base = cls.from_codecs(array_metadata.codecs)
        if isinstance(store, ReferenceStore):
            object.__setattr__(base, "_cv_refs", store)
        if cfg is not None:
            dtype = array_metadata.dtype.to_native_dtype()
            # zarr gives a Zarr v3 array in native byte order: stored in the other order, its
            # chunks go through the pipeline (bounded codecs, then zarr's bytes codec, which
            # swaps), not copied as stored
            stored = dtype_of(cfg["dtype"]) if "_cv_chunk_key" in cfg else dtype
            if not dtype.hasobject and stored == dtype:
                pipe = pipeline_from_zarray(cfg)
                ndim = len(array_metadata.shape)
                # pipelines the C path does not decode still come here when the array has
                # per-chunk filter masks: decode_chunks applies them by key (read())
                object.__setattr__(base, "_cv_store", store)
                object.__setattr__(base, "_cv_steps", pipe.steps)
                object.__setattr__(base, "_cv_depth", _key_depth(cfg, ndim))
                object.__setattr__(base, "_cv_ndim", ndim)
        return base

    def evolve_from_array_spec(self, array_spec):
        new = super().evolve_from_array_spec(array_spec)
        for name in ("_cv_store", "_cv_refs", "_cv_steps", "_cv_depth", "_cv_ndim"):
            object.__setattr__(new, name, getattr(self, name))
        return new

    async def read(self, batch_info, out, drop_axes: tuple[int, ...] = ()) -> None:
        store = self._cv_store
        batch_info = list(batch_info)
        if store is None:
            return await self._zarr_read(batch_info, out, drop_axes)
        if self._cv_steps is None and not self._masked(batch_info):
            return await self._zarr_read(batch_info, out, drop_axes)
        plan = self._plan(batch_info, out, drop_axes)
        if plan is None:
            return await self._zarr_read(batch_info, out, drop_axes)
        if len(batch_info) <= 2:
            self._run(plan)
        else:
            await asyncio.to_thread(self._run, plan)

    async def _zarr_read(self, batch_info, out, drop_axes) -> None:
        """zarr's own read; from a ReferenceStore, a codec's failure (zarr's codecs decode
        what chunkview's do not: sharding, codecs with no numcodecs form) is a DecodeError
        naming the chunks and where they lie."""
        try:
            return await super().read(batch_info, out, drop_axes)
        except ChunkviewError:
            raise
        except (ValueError, TypeError, RuntimeError, OverflowError, IndexError) as e:
            if self._cv_refs is None:
                raise
            raise DecodeError(f"zarr's codecs cannot decode {_chunks_of(self._cv_refs, batch_info)}"
                              f": {reason(e)}") from e

    def _array_path(self, key: str) -> str:
        return "/".join(key.split("/")[:-self._cv_depth])

    def _masked(self, batch_info) -> bool:
        """Whether the array read has per-chunk filter masks (``.cvmask``)."""
        if not batch_info:
            return False
        layout = self._cv_store.layout(self._array_path(batch_info[0][0].path))
        return layout is not None and bool(layout.masks)

    def _plan(self, batch_info, out, drop_axes):
        """The C batch for this read, or None when some part is not covered."""
        if not batch_info:
            return None
        arr = out.as_numpy_array() if hasattr(out, "as_numpy_array") else None
        if not isinstance(arr, np.ndarray) or not arr.flags.writeable:
            return None
        spec0 = batch_info[0][1]
        chunk = tuple(spec0.shape)
        ndim = len(chunk)
        dtype = spec0.dtype.to_native_dtype()
        if arr.dtype != dtype or ndim != self._cv_ndim or ndim == 0:
            return None
        if arr.ndim != ndim - len(set(drop_axes)):
            return None
        # the output viewed with one dimension per chunk dimension (stride 0 where dropped)
        full = chunk_space_view(arr, [d in drop_axes for d in range(ndim)])
        ostrides = full.strides
        n = len(batch_info)
        sel = np.empty((n, ndim, 3), np.int64)
        out_offsets = np.empty(n, np.int64)
        keys = []
        for i, (getter, spec, csel, osel, _complete) in enumerate(batch_info):
            if tuple(spec.shape) != chunk:
                return None
            if len(csel) != ndim:
                return None
            keys.append(getter.path)
            oi = 0
            off = 0
            for d, s in enumerate(csel):
                if isinstance(s, slice):
                    start, stop, step = s.indices(chunk[d])
                    if step < 1:
                        return None
                    cnt = len(range(start, stop, step))
                elif isinstance(s, (int, np.integer)):
                    start, step, cnt = int(s), 1, 1
                else:
                    return None
                sel[i, d] = (start, step, cnt)
                if d in drop_axes:
                    continue
                if oi >= len(osel):
                    return None
                o = osel[oi]
                oi += 1
                if isinstance(o, slice):
                    ostart, ostop, ostep = o.indices(arr.shape[oi - 1])
                    if ostep != 1 or (ostop - ostart) != cnt:
                        return None
                elif isinstance(o, (int, np.integer)) and cnt == 1:
                    ostart = int(o)
                else:
                    return None
                off += ostart * ostrides[d]
            out_offsets[i] = off
        return keys, full, sel, out_offsets

    def _run(self, plan):
        keys, full, sel, out_offsets = plan
        store = self._cv_store
        array_path = self._array_path(keys[0])
        info = store.virtual_info(array_path)
        if info is not None:  # zarr sees virtual chunks of whole stored chunks
            cut = len(array_path) + 1 if array_path else 0
            v3 = "_cv_chunk_key" in info.layout.meta  # (virtual keys <array>/c/i/j)
            coords = [tuple(int(x) for x in (k[cut + 2:].split("/") if v3 else
                                             k[cut:].split("."))) for k in keys]
            _decode_virtual(store, info, coords, full, sel, out_offsets)
        else:
            decode_chunks(store.refs, store.source, store.layout(array_path), keys, full, sel,
                          out_offsets, store.threads)


def _chunks_of(store: ReferenceStore, batch_info, most: int = 3) -> str:
    """``chunk 'k' of 'url' (bytes a-b)`` for the first chunks of a read, for errors."""
    keys = [getter.path for getter, *_ in batch_info]
    refs = [(k, store.refs.get(k)) for k in keys[:most]]
    return ", ".join(f"chunk {k!r} of {r[0]!r} (bytes {r[1]}-{r[1] + r[2]})" if isinstance(
        r, list) and len(r) == 3 else f"chunk {k!r}" for k, r in refs) + (
        f" (of {len(keys)} chunks)" if len(keys) > most else "")


COALESCE_BYTES = 1 << 20  # decoded size of a virtual chunk made of tiny stored chunks
TINY_CHUNK_BYTES = 64 << 10  # stored chunks below this are coalesced for zarr
_NOT_VIRTUAL = object()


class _Virtual:
    """An array whose tiny stored chunks are presented to zarr as bigger virtual chunks.

    zarr-python spends about 13 us per chunk building its request list before any codec runs,
    so 200,000 chunks of 256 bytes cost seconds however fast the decode is.  The store presents
    such an array with ``k`` stored chunks along the first dimension per virtual chunk,
    uncompressed from zarr's point of view (no codecs): a virtual chunk's bytes are the decoded
    stored chunks, and chunkview's codec pipeline decodes the stored chunks of a selection
    straight into zarr's output.  Virtual chunks are multiples of the stored chunks, so dask
    chunks built on them stay aligned with the storage.
    """

    def __init__(self, layout: ChunkLayout, meta: dict, k: int, doc: dict | None = None):
        self.layout = layout
        self.k = k
        c = layout.chunks
        self.vchunks = (c[0] * k,) + c[1:]
        self.vgrid = tuple(-(-n // v) for n, v in zip(layout.shape, self.vchunks))
        if doc is not None:  # Zarr v3: its zarr.json, with the virtual chunks
            endian = endian_of(layout.dtype)
            self.meta = {**doc, "chunk_grid": {"name": "regular", "configuration": {
                "chunk_shape": list(self.vchunks)}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "codecs": [{"name": "bytes", "configuration": {"endian": endian}} if endian
                           else {"name": "bytes"}]}
            self.meta.pop("consolidated_metadata", None)
        else:
            self.meta = {**meta, "chunks": list(self.vchunks), "compressor": None,
                         "filters": None, "dimension_separator": "."}
        self.meta_bytes = json.dumps(self.meta).encode()

    @classmethod
    def make(cls, layout: ChunkLayout, target: int, doc: dict | None = None):
        if layout.order != "C" or not layout.shape or layout.dtype.hasobject \
                or not layout.pipeline.fast:
            return None
        nbytes = int(np.prod(layout.chunks, dtype=np.int64)) * layout.dtype.itemsize
        if nbytes >= TINY_CHUNK_BYTES or nbytes == 0:
            return None
        grid0 = -(-layout.shape[0] // layout.chunks[0])
        k = min(max(target // nbytes, 1), grid0)
        if k < 2:
            return None
        return cls(layout, layout.meta, k, doc)


def _decode_virtual(store, info: _Virtual, coords, full, sel, out_offsets) -> int:
    """Decode the stored chunks under virtual chunks ``coords`` (selections ``sel`` in
    virtual-chunk coordinates, written at ``out_offsets`` of ``full``); returns how many
    stored chunks exist."""
    lay = info.layout
    c0 = lay.chunks[0]
    ostride0 = full.strides[0]
    all_coords, all_sel, all_off = [], [], []
    for v, s, o in zip(coords, sel, out_offsets.tolist()):
        start, step, count = (int(x) for x in s[0])
        k_idx, in_start, cnt, opos = dim_plan(v[0] * info.vchunks[0] + start, step, count, c0)
        cc = np.empty((len(k_idx), len(v)), np.int64)
        cc[:, 0] = k_idx
        cc[:, 1:] = v[1:]
        ss = np.repeat(s[None], len(k_idx), axis=0)
        ss[:, 0, 0] = in_start
        ss[:, 0, 2] = cnt
        all_coords.append(cc)
        all_sel.append(ss)
        all_off.append(o + opos * ostride0)
    keys = lay.chunk_keys(np.concatenate(all_coords))
    return decode_chunks(store.refs, store.source, lay, keys, full,
                         np.ascontiguousarray(np.concatenate(all_sel)),
                         np.concatenate(all_off).astype(np.int64), store.threads)


def _register() -> None:
    from zarr.registry import register_pipeline

    register_pipeline(CodecPipeline)


_register()


def use_pipeline() -> None:
    """Make chunkview's codec pipeline zarr's pipeline (it defers to zarr's default pipeline
    for every store that is not a :class:`ReferenceStore`)."""
    zarr.config.set({"codec_pipeline.path": PIPELINE_PATH})


def open_zarr(refs_or_path, *, remote_protocol=None, remote_options=None, fs=None, target=None,
              threads: int | None = None, **options) -> zarr.Group:
    """Open a reference set as a read-only ``zarr.Group`` (zarr v2 metadata, as kerchunk and
    chunkview's scanner write it), read through :class:`ReferenceStore` and chunkview's codec
    pipeline.  Sets zarr's ``codec_pipeline.path`` to chunkview's pipeline (see
    :func:`use_pipeline`).  Other keywords are :class:`chunkview.options.ReadOptions` or go to
    :func:`chunkview.load`."""
    store = ReferenceStore(refs_or_path, remote_protocol=remote_protocol,
                           remote_options=remote_options, fs=fs, target=target, threads=threads,
                           **options)
    use_pipeline()
    fmt = 3 if "zarr.json" in store.refs else 2
    return zarr.open_group(store, mode="r", zarr_format=fmt)


__all__ = ["ReferenceStore", "CodecPipeline", "open_zarr", "use_pipeline", "PIPELINE_PATH"]
