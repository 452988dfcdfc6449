"""``LazyParquetReferences``: a parquet reference set read on demand, records kept in an LRU."""


from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping

import numpy as np

from chunkview._index import INLINE, MISSING, ChunkIndex
from chunkview.errors import ReferenceFormatError, ReferenceNotFound, reason
from chunkview.keys import is_reserved
from chunkview.refs.memory import References
from chunkview.refs.parquet.layout import (
    _COLUMNS,
    ZMETADATA,
    _decode_record,
    _Field,
    _fields_of,
    _groups,
    _pyarrow,
    _Record,
    _record_path,
    _split_keys,
    _take,
    key_text,
)
from chunkview.refs.protocol import ItemsViewOf, same_references, sources_of


class LazyParquetReferences(Mapping):
    """A parquet reference set read lazily, with the reading interface of
    :class:`chunkview.References`.

    ``root`` is the set's directory (a path or URL; with ``fs`` given, a path on that filesystem).
    ``.zmetadata`` is read at once; the records of chunk references are read when a key needs
    them and kept in an LRU of ``cache_size`` records.  Values follow fsspec's
    ``ReferenceFileSystem`` over the same store: metadata keys give ``json.dumps(obj).encode()``,
    inline rows bytes, others ``[url]`` or ``[url, offset, length]``.  Unlike fsspec, the store's
    own ``.zmetadata`` file is not a key, and only canonical chunk keys on an array's grid exist.
    """

    templates: dict

    def __init__(self, root, fs=None, cache_size: int = 128, source: str | None = None):
        _pyarrow()
        import fsspec

        root_text = str(root)
        if fs is None:
            fs, path = fsspec.core.url_to_fs(root_text)
        else:
            path = root_text
        self.fs = fs
        self.root = path.rstrip("/") or path
        self.cache_size = max(0, int(cache_size))
        self.source = source if source is not None else root_text
        proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self.remote_origin = proto not in ("file", "local", "memory")
        self.templates = {}
        self._lock = threading.Lock()
        self._cache: OrderedDict = OrderedDict()
        self._counts: dict = {}
        self._urls: list[str] = []
        self._url_ids: dict[str, int] = {}
        self._listing = None
        self._read_zmetadata()

    # ----------------------------------------------------------------- setup

    def _read_zmetadata(self) -> None:
        path = f"{self.root}/{ZMETADATA}"
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            if not self.fs.exists(self.root):
                raise FileNotFoundError(f"no parquet reference set at {self.source!r}") from None
            raise ReferenceFormatError("not a parquet reference set: .zmetadata is missing",
                                       source=path) from None
        try:
            met = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ReferenceFormatError(f"invalid JSON in .zmetadata: {e}", source=path) from None
        if not isinstance(met, dict):
            raise ReferenceFormatError(".zmetadata must hold a JSON object", source=path)
        metadata, rs = met.get("metadata"), met.get("record_size")
        if not isinstance(metadata, dict):
            raise ReferenceFormatError(".zmetadata has no 'metadata' object", source=path)
        if not isinstance(rs, int) or isinstance(rs, bool) or rs < 1:
            raise ReferenceFormatError(f".zmetadata 'record_size' must be a positive integer, "
                                       f"not {rs!r}", source=path)
        self.record_size = rs
        self.metadata = metadata
        self._meta = {k: json.dumps(v).encode() for k, v in metadata.items()}
        self._meta[ZMETADATA] = bytes(data)  # served as fsspec serves it: the file's bytes
        extra = met.get("chunkview")  # top-level chunkview keys (zarr reads no others there)
        if isinstance(extra, dict):
            for k, v in extra.items():
                if isinstance(k, str) and (is_reserved(k.rsplit("/", 1)[-1]) or
                                           k.rsplit("/", 1)[-1] in (".zarray", ".zattrs")):
                    self._meta[k] = (v if isinstance(v, str) else json.dumps(v)).encode()
        # arrays zarr-python cannot parse are kept beside "metadata" (see write_parquet)
        arrays = {k: v for k, v in (extra or {}).items() if isinstance(k, str)
                  and k.endswith(".zarray")} if isinstance(extra, dict) else {}
        self._fields = _fields_of({**metadata, **arrays}, rs, path)
        # metadata keys that look like chunk keys win over the chunk (as in fsspec)
        self._shadow = {k for k in metadata if self._locate(k) is not None}

    # ----------------------------------------------------------------- records

    def _intern(self, urls: list) -> np.ndarray:
        with self._lock:
            out = np.empty(len(urls), dtype=np.int64)
            for i, u in enumerate(urls):
                uid = self._url_ids.get(u)
                if uid is None:
                    uid = self._url_ids[u] = len(self._urls)
                    self._urls.append(u)
                out[i] = uid
        return out

    def _read_record(self, field: _Field, record: int) -> _Record:
        pa, pq = _pyarrow()
        path = _record_path(self.root, field.name, record)
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return _Record.empty(field.rows_in(record))  # fsspec: a missing record is absent
        try:
            pf = pq.ParquetFile(pa.BufferReader(data))
            names = pf.schema_arrow.names
            table = pf.read(columns=[c for c in names if c in _COLUMNS], use_threads=False)
        except (pa.ArrowException, OSError, ValueError, TypeError, IndexError) as e:
            raise ReferenceFormatError(f"cannot read parquet record: {reason(e)}",
                                       source=path) from None
        try:
            return _decode_record(table, field, record, path, self._intern)
        except ReferenceFormatError:
            raise
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as e:
            raise ReferenceFormatError(f"cannot decode parquet record: {reason(e)}",
                                       source=path) from None

    def _record(self, field: _Field, record: int, keep: bool = True) -> _Record:
        key = (field.name, record)
        with self._lock:
            r = self._cache.get(key)
            if r is not None:
                self._cache.move_to_end(key)
                return r
        r = self._read_record(field, record)
        with self._lock:
            self._counts[key] = r.count
            if keep and self.cache_size:
                self._cache[key] = r
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return r

    def _locate(self, key: str):
        """``(field, chunk number)`` of a chunk key, or None."""
        name, sep, chunk = key.rpartition("/")
        if not sep:
            return None
        f = self._fields.get(name)
        if f is None:
            return None
        num = f.number_of(chunk)
        return None if num is None else (f, num)

    # ----------------------------------------------------------------- mapping

    @property
    def urls(self) -> list[str]:
        """URLs seen so far; ids from :meth:`lookup_many` index this list (append-only)."""
        with self._lock:
            return list(self._urls)

    _key = staticmethod(key_text)

    def _value(self, key):
        key = self._key(key)
        v = self._meta.get(key)
        if v is not None:
            return v
        loc = self._locate(key)
        if loc is None:
            return None
        f, num = loc
        rec, row = divmod(num, self.record_size)
        return self._record(f, rec).value(row, self._urls)

    def __getitem__(self, key):
        v = self._value(key)
        if v is None:
            raise ReferenceNotFound(key)
        return v

    def get(self, key, default=None):
        v = self._value(key)
        return default if v is None else v

    def __contains__(self, key) -> bool:
        try:
            return self._value(key) is not None
        except TypeError:
            return False

    def _chunk_rows(self):
        """``(field, record, base chunk number, rows with a reference, record)`` for every
        record, in key order."""
        for f in self._fields.values():
            for rec in range(f.nrecords):
                r = self._record(f, rec)
                yield f, rec, rec * self.record_size, np.flatnonzero(r.ids != MISSING), r

    def __iter__(self) -> Iterator[str]:
        yield from self._meta
        shadow = self._shadow
        for f, _, base, rows, _ in self._chunk_rows():
            for k in f.keys_of(base + rows):
                if k not in shadow:
                    yield k

    def __len__(self) -> int:
        total = len(self._meta)
        for f in self._fields.values():
            for rec in range(f.nrecords):
                c = self._counts.get((f.name, rec))
                total += self._record(f, rec).count if c is None else c
        for k in self._shadow:
            f, num = self._locate(k)
            rec, row = divmod(num, self.record_size)
            if self._record(f, rec).ids[row] != MISSING:
                total -= 1  # counted as metadata already
        return total

    def items(self):
        return ItemsViewOf(self)

    def _iter_items(self):
        yield from self._meta.items()
        shadow, urls = self._shadow, self._urls
        for f, _, base, rows, r in self._chunk_rows():
            for k, row in zip(f.keys_of(base + rows), rows.tolist(), strict=True):
                if k not in shadow:
                    yield k, r.value(row, urls)

    def __eq__(self, other) -> bool:
        return same_references(self, self._iter_items(), other)

    __hash__ = None

    def __repr__(self) -> str:
        return (f"<chunkview.LazyParquetReferences: {len(self._meta)} metadata keys, "
                f"{len(self._fields)} arrays, record_size {self.record_size}, "
                f"{len(self._cache)} records cached, from {self.source!r}>")

    def __reduce__(self):
        return (type(self), (self.root, self.fs, self.cache_size, self.source))

    @property
    def sources(self) -> dict:
        """What the scan recorded of each referenced file (see ``References.sources``)."""
        return sources_of(self)

    # ----------------------------------------------------------------- batch lookup

    def lookup_many(self, keys, threads=None):
        """Batch lookup: ``(url_ids int64, offsets uint64, lengths uint64)`` like
        :meth:`chunkview.ChunkIndex.lookup_many`: url id ``INLINE`` (-1) for inline data (length
        is its byte count; fetch it with ``self[key]``), ``MISSING`` (-2) for an absent key,
        length ``WHOLE`` for a whole file.  Keys are grouped by (array, record); each group is
        one gather from the record's arrays, in this thread (``threads`` is accepted for
        ChunkIndex's signature)."""
        n = len(keys)
        ids = np.full(n, MISSING, dtype=np.int64)
        offs = np.zeros(n, dtype=np.uint64)
        lens = np.zeros(n, dtype=np.uint64)
        if n == 0:
            return ids, offs, lens
        fields = list(self._fields.values())
        keys, codes, chunks = _split_keys(keys, [f.name for f in fields])
        rs = self.record_size
        for code, where in _groups(codes):
            f = fields[code]
            nums, ok = f.numbers_of(_take(chunks, where))
            where, nums = where[ok], nums[ok]
            if not len(nums):
                continue
            recs = nums // rs
            if recs[0] != recs[-1] or (recs != recs[0]).any():
                order = np.argsort(recs, kind="stable")
                recs, nums, where = recs[order], nums[order], where[order]
            starts = np.flatnonzero(np.r_[True, recs[1:] != recs[:-1]])
            ends = np.r_[starts[1:], len(recs)]
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                rec = int(recs[s])
                r = self._record(f, rec)
                rows = nums[s:e] - rec * rs
                dst = where[s:e]
                ids[dst] = r.ids[rows]
                offs[dst] = r.offs[rows]
                lens[dst] = r.lens[rows]
        # metadata: never a chunk key, except the odd ones that shadow one
        meta = self._meta
        check = range(n) if self._shadow else np.flatnonzero(ids == MISSING).tolist()
        for i in check:
            v = meta.get(keys[i])
            if v is not None:
                ids[i], offs[i], lens[i] = INLINE, 0, len(v)
        return ids, offs, lens

    def size_of(self, key: str) -> int | None:
        """Byte size of a reference (None for a whole file, whose size the target knows)."""
        v = self[key]
        if isinstance(v, bytes):
            return len(v)
        return None if len(v) == 1 else int(v[2])

    # ----------------------------------------------------------------- directories

    def listing(self) -> Mapping:
        """``{dir: {"dirs": set, "files": list}}`` for every directory ("" is the root), like
        :meth:`chunkview.References.listing`.  Directories come from the metadata; the chunk
        files of an array are read (its records loaded) when its entry is first asked for."""
        if self._listing is None:
            self._listing = _Listing(self)
        return self._listing

    # ----------------------------------------------------------------- bulk load

    def to_references(self):
        """Everything loaded into an in-memory :class:`chunkview.References` (records are read
        once each, without going through the LRU)."""
        index = ChunkIndex()
        for k, v in self._meta.items():
            index.set_inline(k, v)
        shadow = self._shadow
        rs = self.record_size
        for f in self._fields.values():
            for rec in range(f.nrecords):
                r = self._record(f, rec, keep=False)
                base = rec * rs
                rows = np.flatnonzero(r.ids >= 0)
                if len(rows):
                    uniq, local = np.unique(r.ids[rows], return_inverse=True)
                    keys = f.keys_of(base + rows)
                    if shadow:
                        keep = np.array([k not in shadow for k in keys], dtype=bool)
                        rows, local = rows[keep], local[keep]
                        keys = [k for k in keys if k not in shadow]
                    urls = [self._urls[u] for u in uniq.tolist()]
                    index.add_many(keys, local.reshape(-1), r.offs[rows], r.lens[rows], urls)
                if r.raw:
                    inl = sorted(r.raw)
                    keys = f.keys_of(base + np.array(inl, dtype=np.int64))
                    for k, row in zip(keys, inl, strict=True):
                        if k not in shadow:
                            index.set_inline(k, r.raw[row])
        refs = References(index, templates={}, source=self.source)
        refs.remote_origin = self.remote_origin
        opts = dict(getattr(self.fs, "storage_options", None) or {})
        refs.parquet = (self.source if "://" in str(self.source) else self.root, opts,
                        self.record_size)
        return refs


class _Listing(Mapping):
    """The directory listing of a :class:`LazyParquetReferences`.  Directories and metadata files
    are known from ``.zmetadata``; an array's chunk files are added on first access."""

    def __init__(self, refs: LazyParquetReferences):
        self._refs = refs
        self._lock = threading.Lock()
        dirs: dict[str, dict] = {"": {"dirs": set(), "files": []}}

        def add_dir(d):
            while d not in dirs:
                dirs[d] = {"dirs": set(), "files": []}
                up = d.rsplit("/", 1)[0] if "/" in d else ""
                known = up in dirs
                dirs.setdefault(up, {"dirs": set(), "files": []})["dirs"].add(d)
                if known:
                    break
                d = up

        for key in refs._meta:
            parent = key.rsplit("/", 1)[0] if "/" in key else ""
            add_dir(parent)
            dirs[parent]["files"].append(key)
        for name in refs._fields:
            add_dir(name)
        self._dirs = dirs
        self._pending = set(refs._fields)

    def __getitem__(self, d):
        entry = self._dirs[d]
        if d in self._pending:
            with self._lock:
                if d in self._pending:
                    refs = self._refs
                    f = refs._fields[d]
                    shadow = refs._shadow
                    files = []
                    for rec in range(f.nrecords):
                        r = refs._record(f, rec)
                        rows = np.flatnonzero(r.ids != MISSING)
                        files += [k for k in f.keys_of(rec * refs.record_size + rows)
                                  if k not in shadow]
                    entry["files"].extend(files)
                    self._pending.discard(d)
        return entry

    def __contains__(self, d) -> bool:
        return d in self._dirs

    def __iter__(self):
        return iter(self._dirs)

    def __len__(self) -> int:
        return len(self._dirs)


__all__ = ["LazyParquetReferences"]
