"""Parquet reference sets in fsspec's ``LazyReferenceMapper`` layout.

The layout (written by ``kerchunk.df.refs_to_dataframe`` and fsspec's ``LazyReferenceMapper``)::

    root/.zmetadata                  {"metadata": {key: JSON object, ...}, "record_size": N}
    root/<field>/refs.<record>.parq  columns path, offset, size, raw

Every zarr metadata key (``.zgroup``, ``x/.zarray``, ...) lives, parsed, in ``.zmetadata``.  Each
array ``<field>`` (a ``<field>/.zarray`` in the metadata) has one row per position of its chunk
grid, in C order: chunk ``i.j.k`` is row ``ravel(i, j, k) % N`` of record ``ravel(i, j, k) // N``
(a scalar array has the one chunk ``<field>/0``).  A row is inline bytes when ``raw`` is not null,
absent when ``path`` is null, a whole file when ``offset == size == 0``, and
``[path, offset, size]`` otherwise: the reading rules of fsspec's ``ReferenceFileSystem``.

:class:`LazyParquetReferences` reads such a set lazily (records on demand, an LRU of records);
:func:`write_parquet` writes any reference set in the layout.  pyarrow does the parquet work.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import ItemsView, Iterator, Mapping
from itertools import repeat
from operator import itemgetter

import numpy as np

from chunkview._index import INLINE, MISSING, WHOLE, ChunkIndex
from chunkview.errors import ReferenceFormatError, ReferenceNotFound, missing_extra

__all__ = ["LazyParquetReferences", "write_parquet"]

ZMETADATA = ".zmetadata"
_I64_MAX = 2**63 - 1
_MAX_CHUNKS = 10**18  # chunk numbers fit int64, chunk indices 18 digits
_COLUMNS = ("path", "offset", "size", "raw")
_WHOLE = np.uint64(WHOLE)
# pandas' schema note, as fsspec's own writer leaves it: without it, pandas readers (fsspec reads
# records through pandas) turn the integer columns into nullable or float ones
_PANDAS_META = json.dumps({
    "index_columns": [],
    "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                        "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
    "columns": [
        {"name": "path", "field_name": "path", "pandas_type": "unicode", "numpy_type": "object",
         "metadata": None},
        {"name": "offset", "field_name": "offset", "pandas_type": "int64", "numpy_type": "int64",
         "metadata": None},
        {"name": "size", "field_name": "size", "pandas_type": "int64", "numpy_type": "int64",
         "metadata": None},
        {"name": "raw", "field_name": "raw", "pandas_type": "bytes", "numpy_type": "object",
         "metadata": None},
    ],
    "creator": {"library": "chunkview"},
    "partition_columns": [],
}).encode()


def _pyarrow():
    """``(pyarrow, pyarrow.parquet)``, imported on first use."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise missing_extra("pyarrow", "parquet") from None
    return pa, pq


def _record_path(root: str, field: str, record: int) -> str:
    return f"{root}/{field}/refs.{record}.parq"


# --------------------------------------------------------------------------- chunk grids


class _Field:
    """One array of the set: its chunk grid and how it is split into records."""

    __slots__ = ("name", "grid", "ndim", "nchunks", "nrecords", "strides", "record_size")

    def __init__(self, name: str, grid: tuple, record_size: int):
        self.name = name
        self.grid = grid
        self.ndim = len(grid)
        n = 1
        for g in grid:
            n *= g
        self.nchunks = n
        self.record_size = record_size
        self.nrecords = -(-n // record_size)
        strides = []
        s = 1
        for g in reversed(grid):
            strides.append(s)
            s *= g
        self.strides = np.array(strides[::-1], dtype=np.int64)

    def rows_in(self, record: int) -> int:
        return min(self.record_size, self.nchunks - record * self.record_size)

    def keys_of(self, numbers: np.ndarray) -> list[str]:
        """Chunk keys (``field/i.j``) of the given chunk numbers."""
        prefix = self.name + "/"
        if len(numbers) == 0:
            return []
        if self.ndim == 1:
            return [prefix + s for s in map(str, np.asarray(numbers).tolist())]
        coords = np.unravel_index(np.asarray(numbers, dtype=np.intp), self.grid)
        cols = [map(str, c.tolist()) for c in coords]
        return [prefix + ".".join(t) for t in zip(*cols, strict=True)]

    def number_of(self, chunk: str) -> int | None:
        """Chunk number of a chunk name (``"1.2"``), None unless canonical and on the grid."""
        parts = chunk.split(".")
        if len(parts) != self.ndim:
            return None
        num = 0
        for p, g in zip(parts, self.grid, strict=True):
            if not (p.isascii() and p.isdigit()) or (len(p) > 1 and p[0] == "0"):
                return None
            i = int(p)
            if i >= g:
                return None
            num = num * g + i
        return num

    def numbers_of(self, chunks) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`number_of`: ``(numbers int64, ok bool)`` for a sequence of chunk
        names, parsed as one byte buffer with numpy (no Python work per name)."""
        n = len(chunks)
        d = self.ndim
        nums = np.zeros(n, dtype=np.int64)
        ok = np.zeros(n, dtype=bool)
        if n == 0:
            return nums, ok
        text = "/".join(chunks)
        if text.count("/") != n - 1:  # a name holds "/" itself: decide name by name
            for i, c in enumerate(chunks):
                v = self.number_of(c)
                if v is not None:
                    nums[i], ok[i] = v, True
            return nums, ok
        buf = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
        size = len(buf)
        if size == 0:  # one empty name
            return nums, ok
        is_key_sep = buf == 0x2F
        seps = np.flatnonzero(is_key_sep | (buf == 0x2E))
        # tokens (the i, j of "i.j") lie between separators; every name has at least one
        ntok = len(seps) + 1
        starts = np.empty(ntok, dtype=np.int64)
        starts[0] = 0
        starts[1:] = seps + 1
        ends = np.empty(ntok, dtype=np.int64)
        ends[:-1] = seps
        ends[-1] = size
        lengths = ends - starts
        key_of_tok = np.zeros(ntok, dtype=np.int64)
        np.cumsum(is_key_sep[seps], out=key_of_tok[1:])
        ntok_of_key = np.bincount(key_of_tok, minlength=n)
        first_tok = np.zeros(n, dtype=np.int64)
        np.cumsum(ntok_of_key[:-1], out=first_tok[1:])
        dim = np.arange(ntok, dtype=np.int64) - first_tok[key_of_tok]
        # a token is canonical: 1 to 18 ASCII digits, no leading zero; parsed digit by digit
        good = (lengths >= 1) & (lengths <= 18)
        vals = np.zeros(ntok, dtype=np.int64)
        maxlen = int(lengths[good].max()) if good.any() else 0
        last = size - 1
        for k in range(maxlen):
            c = buf[np.minimum(starts + k, last)].astype(np.int64) - 0x30
            active = lengths > k
            good &= ~active | ((c >= 0) & (c <= 9))
            if k == 0:
                good &= (lengths == 1) | (c != 0)
            active &= good
            vals[active] = vals[active] * 10 + c[active]
        in_dim = dim < d
        grid = np.array(self.grid, dtype=np.int64)
        dclip = np.minimum(dim, d - 1)
        good &= in_dim & (vals < grid[dclip])
        part = np.where(good, vals * self.strides[dclip], 0)
        ok = (ntok_of_key == d) & (np.add.reduceat((~good).astype(np.int64), first_tok) == 0)
        nums = np.where(ok, np.add.reduceat(part, first_tok), 0)
        return nums, ok


def _grid_of(zarray, key: str, source) -> tuple:
    """Chunk grid of an array from its ``.zarray`` object (fsspec's rule: a scalar has one)."""
    if not isinstance(zarray, dict):
        raise ReferenceFormatError(f".zarray must be a JSON object, not {type(zarray).__name__}",
                                   key=key, source=source)
    shape, chunks = zarray.get("shape"), zarray.get("chunks")
    for name, v in (("shape", shape), ("chunks", chunks)):
        if not isinstance(v, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise ReferenceFormatError(f".zarray {name!r} must be a list of integers, not {v!r}",
                                       key=key, source=source)
    if len(shape) != len(chunks):
        raise ReferenceFormatError(f".zarray shape {shape} and chunks {chunks} differ in length",
                                   key=key, source=source)
    if any(s < 0 for s in shape) or any(c < 1 for c in chunks):
        raise ReferenceFormatError(f".zarray shape {shape} / chunks {chunks} out of range",
                                   key=key, source=source)
    grid = tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True)) or (1,)
    n = 1
    for g in grid:
        n *= g
    if n >= _MAX_CHUNKS:
        raise ReferenceFormatError(f"chunk grid {grid} is too large", key=key, source=source)
    return grid


def _fields_of(metadata: dict, record_size: int, source) -> dict[str, _Field]:
    fields = {}
    for key, value in metadata.items():
        if key.endswith("/.zarray"):
            name = key[: -len("/.zarray")]
            fields[name] = _Field(name, _grid_of(value, key, source), record_size)
    return fields


# --------------------------------------------------------------------------- records


class _Record:
    """One parquet record, decoded: per row a url id (global, or INLINE / MISSING), offset and
    length (``WHOLE`` for a whole file, the byte count for inline data) and the inline bytes."""

    __slots__ = ("ids", "offs", "lens", "raw", "count")

    def __init__(self, ids, offs, lens, raw):
        self.ids, self.offs, self.lens, self.raw = ids, offs, lens, raw
        self.count = int(np.count_nonzero(ids != MISSING))

    @classmethod
    def empty(cls, n: int) -> _Record:
        return cls(np.full(n, MISSING, dtype=np.int64), np.zeros(n, dtype=np.uint64),
                   np.zeros(n, dtype=np.uint64), {})

    def value(self, row: int, urls: list):
        """The reference of a row in fsspec's form, or None when absent."""
        uid = int(self.ids[row])
        if uid == MISSING:
            return None
        if uid == INLINE:
            return self.raw[row]
        if self.lens[row] == _WHOLE:
            return [urls[uid]]
        return [urls[uid], int(self.offs[row]), int(self.lens[row])]


def _column(table, name: str, path: str):
    idx = table.schema.get_all_field_indices(name)
    if len(idx) > 1:
        raise ReferenceFormatError(f"column {name!r} appears {len(idx)} times", source=path)
    return table.column(idx[0]) if idx else None


def _decode_record(table, field: _Field, record: int, path: str, intern):
    """Check and decode a record's table into a :class:`_Record`; ``intern`` maps a list of URL
    strings to global ids."""
    pa, _ = _pyarrow()
    t = pa.types
    n = field.rows_in(record)
    cols = {c: _column(table, c, path) for c in _COLUMNS}
    present = [c for c in ("path", "offset", "size") if cols[c] is not None]
    if present and len(present) != 3:
        missing = sorted({"path", "offset", "size"} - set(present))
        raise ReferenceFormatError(f"column(s) {', '.join(missing)} missing", source=path)
    if not present and cols["raw"] is None:
        raise ReferenceFormatError(f"no reference columns (expected {', '.join(_COLUMNS)}; found "
                                   f"{', '.join(table.column_names) or 'none'})", source=path)
    if table.num_rows < n:
        raise ReferenceFormatError(
            f"record has {table.num_rows} rows, expected {n} (chunks {record * field.record_size}"
            f" to {record * field.record_size + n - 1} of {field.name!r})", source=path)
    cols = {c: (None if v is None else v.slice(0, n)) for c, v in cols.items()}

    def bad(name, col):
        return ReferenceFormatError(f"column {name!r} has type {col.type}", source=path)

    def key_of(row):
        return field.keys_of(np.array([record * field.record_size + row]))[0]

    # raw: inline bytes where not null
    raw = cols["raw"]
    raw_valid = np.zeros(n, dtype=bool)
    raw_list = None
    raw_lens = None
    if raw is not None and not t.is_null(raw.type):
        if t.is_dictionary(raw.type):
            raw = raw.cast(raw.type.value_type)
        if not (t.is_binary(raw.type) or t.is_large_binary(raw.type) or t.is_string(raw.type)
                or t.is_large_string(raw.type) or _is_view(t, raw.type)):
            raise bad("raw", raw)
        raw_valid = raw.is_valid().to_numpy(zero_copy_only=False)
        if raw_valid.any():
            chosen = raw.filter(pa.array(raw_valid))
            raw_list = [v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v
                        for v in chosen.to_pylist()]
            raw_lens = np.array([len(v) for v in raw_list], dtype=np.uint64)

    # path, offset, size: all three or none (checked above)
    ids = np.full(n, MISSING, dtype=np.int64)
    offs = np.zeros(n, dtype=np.uint64)
    lens = np.zeros(n, dtype=np.uint64)
    if present:
        for name in ("offset", "size"):
            c = cols[name]
            if not (t.is_integer(c.type) or t.is_null(c.type)):
                raise bad(name, c)
    if present and not t.is_null(cols["path"].type):
        col = cols["path"]
        if t.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if _is_view(t, col.type):
            col = col.cast(pa.string())
        if not (t.is_string(col.type) or t.is_large_string(col.type)):
            raise bad("path", col)
        enc = col.combine_chunks().dictionary_encode()
        local = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        ref = (local >= 0) & ~raw_valid
        if ref.any():
            ints = {}
            for name in ("offset", "size"):
                c = cols[name]
                valid = (np.zeros(n, dtype=bool) if t.is_null(c.type)
                         else c.is_valid().to_numpy(zero_copy_only=False))
                if (ref & ~valid).any():
                    row = int(np.flatnonzero(ref & ~valid)[0])
                    raise ReferenceFormatError(f"{name} is null in row {row}", key=key_of(row),
                                               source=path)
                v = c.fill_null(0).to_numpy(zero_copy_only=False)
                if v.dtype.kind == "u":
                    over = ref & (v > _I64_MAX)
                    if over.any():
                        row = int(np.flatnonzero(over)[0])
                        raise ReferenceFormatError(f"{name} {int(v[row])} out of range in row "
                                                   f"{row}", key=key_of(row), source=path)
                v = v.astype(np.int64)
                neg = ref & (v < 0)
                if neg.any():
                    row = int(np.flatnonzero(neg)[0])
                    raise ReferenceFormatError(f"negative {name} {int(v[row])} in row {row}",
                                               key=key_of(row), source=path)
                ints[name] = v
            off, size = ints["offset"], ints["size"]
            over = ref & (off > _I64_MAX - size)
            if over.any():
                row = int(np.flatnonzero(over)[0])
                raise ReferenceFormatError(
                    f"offset + size overflows ({int(off[row])} + {int(size[row])}) in row {row}",
                    key=key_of(row), source=path)
            whole = ref & (off == 0) & (size == 0)
            part = ref & ~whole
            gmap = intern(enc.dictionary.to_pylist())
            ids[ref] = gmap[local[ref]]
            offs[part] = off[part].astype(np.uint64)
            lens[part] = size[part].astype(np.uint64)
            lens[whole] = _WHOLE
    raws = {}
    if raw_list is not None:
        rows = np.flatnonzero(raw_valid)
        ids[rows] = INLINE
        lens[rows] = raw_lens
        raws = dict(zip(rows.tolist(), raw_list, strict=True))
    return _Record(ids, offs, lens, raws)


def _is_view(t, typ) -> bool:
    f = getattr(t, "is_string_view", None)
    g = getattr(t, "is_binary_view", None)
    return bool((f and f(typ)) or (g and g(typ)))


# --------------------------------------------------------------------------- the reader


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
        except (UnicodeDecodeError, ValueError) as e:
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
        extra = met.get("chunkview")  # top-level chunkview keys (zarr reads no others there)
        if isinstance(extra, dict):
            for k, v in extra.items():
                if isinstance(k, str) and k.startswith(".cv") and "/" not in k:
                    self._meta[k] = json.dumps(v).encode()
        self._fields = _fields_of(metadata, rs, path)
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
            raise ReferenceFormatError(f"cannot read parquet record: {type(e).__name__}: {e}",
                                       source=path) from None
        try:
            return _decode_record(table, field, record, path, self._intern)
        except ReferenceFormatError:
            raise
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as e:
            raise ReferenceFormatError(f"cannot decode parquet record: {type(e).__name__}: {e}",
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

    @staticmethod
    def _key(key) -> str:
        if isinstance(key, str):
            return key
        if isinstance(key, bytes):
            return key.decode("utf-8", "surrogateescape")
        raise TypeError(f"keys must be str or bytes, not {type(key).__name__}")

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
        return _ItemsView(self)

    def _iter_items(self):
        yield from self._meta.items()
        shadow, urls = self._shadow, self._urls
        for f, _, base, rows, r in self._chunk_rows():
            for k, row in zip(f.keys_of(base + rows), rows.tolist(), strict=True):
                if k not in shadow:
                    yield k, r.value(row, urls)

    def __eq__(self, other) -> bool:
        from chunkview.references import same_references

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
        from chunkview.references import sources_of

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
        from chunkview.references import References

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
        return References(index, templates={}, source=self.source)


class _ItemsView(ItemsView):
    def __iter__(self):
        return self._mapping._iter_items()


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


class _Codes(dict):
    """Field name -> field number; -1 for anything else (dict lookups in C, no insertion)."""

    def __missing__(self, key):
        return -1


def _split_keys(keys, names: list[str]):
    """Split keys at their last "/" with C-level loops: ``(keys as a list of str, field number
    per key (-1: not a field of ``names``), chunk names)``."""
    try:
        parts = list(map(str.rpartition, keys, repeat("/")))
    except TypeError:
        keys = [LazyParquetReferences._key(k) for k in keys]
        parts = list(map(str.rpartition, keys, repeat("/")))
    if not isinstance(keys, list):
        keys = list(keys)
    codes_of = _Codes((name, i) for i, name in enumerate(names))
    codes = np.fromiter(map(codes_of.__getitem__, map(itemgetter(0), parts)), dtype=np.int64,
                        count=len(parts))
    return keys, codes, list(map(itemgetter(2), parts))


def _groups(codes: np.ndarray):
    """``(code, positions)`` for every code >= 0, positions ascending."""
    if not len(codes):
        return
    lo, hi = int(codes.min()), int(codes.max())
    if lo == hi:
        if lo >= 0:
            yield lo, np.arange(len(codes), dtype=np.intp)
        return
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    uniq, first = np.unique(sorted_codes, return_index=True)
    last = np.r_[first[1:], len(order)]
    for c, a, b in zip(uniq.tolist(), first.tolist(), last.tolist(), strict=True):
        if c >= 0:
            yield c, order[a:b]


def _take(items: list, where: np.ndarray):
    """``[items[i] for i in where]`` without a Python loop."""
    if len(where) == len(items):
        return items  # where is every position, in order (from _groups)
    if len(where) == 1:
        return [items[int(where[0])]]
    return itemgetter(*where.tolist())(items)


# --------------------------------------------------------------------------- the writer


def write_parquet(refs, root, *, storage_options: dict | None = None,
                  record_size: int = 100_000, compression: str = "zstd", **kw) -> None:
    """Write a reference set in fsspec's ``LazyReferenceMapper`` parquet layout.

    ``refs`` is a :class:`chunkview.References`, a :class:`LazyParquetReferences` or a kerchunk
    dict.  ``root`` (a path or URL, opened with ``storage_options``) is removed first, as fsspec's
    ``LazyReferenceMapper.create`` does.  Metadata keys (``.zgroup``, ``x/.zarray``, ...) must
    hold JSON; every other key must be a chunk key ``<array>/<i>.<j>...`` on the grid of an array
    with a ``.zarray``.  Anything the layout cannot hold raises
    :class:`~chunkview.errors.ReferenceFormatError` naming the key, before anything is written.
    A zero-length range at offset 0 (``[url, 0, 0]``, which the layout would read as a whole
    file) is stored as empty inline bytes: the same (no) bytes.  Every record of every array is
    written (all-null ones too, so fsspec never meets a missing file), each with exactly the rows
    of its chunks; ``.zmetadata`` also says ``"zarr_consolidated_format": 1``, so what fsspec
    serves under that key is valid consolidated metadata.  Other keyword arguments go to
    ``pyarrow.parquet.write_table``.
    """
    pa, pq = _pyarrow()
    import fsspec

    from chunkview.references import References

    if isinstance(record_size, bool) or not isinstance(record_size, int) or record_size < 1:
        raise ValueError(f"record_size must be a positive integer, not {record_size!r}")
    if isinstance(refs, LazyParquetReferences):
        refs = refs.to_references()  # also makes writing over the set's own root safe
    elif not isinstance(refs, References):
        if not isinstance(refs, Mapping):
            raise TypeError(f"cannot write {type(refs).__name__} as parquet references")
        refs = References.from_dict(refs)
    source = refs.source
    index = refs.index
    keys, ids, offs, lens = index.to_arrays()
    urls = refs.urls

    # ---- metadata, then chunk keys grouped by array (C-level loops over the keys); metadata
    # is what fsspec's LazyReferenceMapper takes for it: a key starting ".z" or holding "/.z";
    # chunkview's own JSON keys (".cvsources", "<array>/.cvmask", "<array>/.cverror") go
    # there too
    n = len(keys)
    is_meta = np.fromiter(map(str.startswith, keys, repeat(".z")), dtype=bool, count=n)
    is_meta |= np.fromiter(map(str.__contains__, keys, repeat("/.z")), dtype=bool, count=n)
    is_meta |= np.fromiter(map(str.startswith, keys, repeat(".cv")), dtype=bool, count=n)
    is_meta |= np.fromiter(map(str.__contains__, keys, repeat("/.cv")), dtype=bool, count=n)
    metadata: dict = {}
    for i in np.flatnonzero(is_meta).tolist():
        key = keys[i]
        if key == ZMETADATA:
            raise ReferenceFormatError(
                "'.zmetadata' is the parquet layout's own index and cannot hold a reference "
                "(remove it: the layout stores every .z* key itself)", key=key, source=source)
        if ids[i] != INLINE:
            raise ReferenceFormatError("a metadata key must hold inline JSON, not a reference "
                                       "to a file (the parquet layout keeps metadata parsed)",
                                       key=key, source=source)
        try:
            metadata[key] = json.loads(index.inline(key))
        except (UnicodeDecodeError, ValueError) as e:
            raise ReferenceFormatError(f"metadata is not valid JSON: {e}", key=key,
                                       source=source) from None
    fields = _fields_of(metadata, record_size, source)
    field_list = list(fields.values())
    chunk_pos = np.flatnonzero(~is_meta)
    chunk_keys = _take(keys, chunk_pos)
    _, codes, chunks = _split_keys(chunk_keys, [f.name for f in field_list])
    if len(codes) and codes.min() < 0:
        key = chunk_keys[int(np.flatnonzero(codes < 0)[0])]
        name, sep, _ = key.rpartition("/")
        if not sep:
            raise ReferenceFormatError("a top-level key that is not zarr metadata cannot be "
                                       "stored in the parquet layout", key=key, source=source)
        raise ReferenceFormatError(_no_array_message(name, fields), key=key, source=source)

    plans = {}
    for code, where in _groups(codes):
        f = field_list[code]
        nums, ok = f.numbers_of(_take(chunks, where))
        pos = chunk_pos[where]
        if not ok.all():
            key = keys[pos[int(np.flatnonzero(~ok)[0])]]
            raise ReferenceFormatError(
                f"not a chunk key on the grid {list(f.grid)} of array {f.name!r} (the layout "
                f"only holds canonical keys like {f.keys_of(np.array([0]))[0]!r})", key=key,
                source=source)
        if len(nums) > 1 and (nums[1:] < nums[:-1]).any():
            order = np.argsort(nums, kind="stable")
            nums, pos = nums[order], pos[order]
        e_ids, e_offs, e_lens = ids[pos], offs[pos], lens[pos]
        ref = e_ids >= 0
        part = ref & (e_lens != _WHOLE)
        big = part & ((e_offs > _I64_MAX) | (e_lens > _I64_MAX)
                      | (e_offs > _I64_MAX - np.minimum(e_lens, _I64_MAX)))
        if big.any():
            key = keys[pos[int(np.flatnonzero(big)[0])]]
            raise ReferenceFormatError("offset/length too large for the parquet layout (int64)",
                                       key=key, source=source)
        plans[f.name] = (nums, pos, e_ids, e_offs, e_lens)
    try:
        url_array = pa.array(urls, type=pa.string())
    except (pa.ArrowException, UnicodeError) as e:
        raise ReferenceFormatError(f"a URL cannot be stored as UTF-8 text: {e}",
                                   source=source) from None

    # ---- write: remove the old set, then the records, then .zmetadata
    fs, path = fsspec.core.url_to_fs(str(root), **(storage_options or {}))
    path = path.rstrip("/")
    if not path or path in ("/", "."):
        raise ValueError(f"refusing to write parquet references over {root!r}")
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.makedirs(path, exist_ok=True)
    opts = {"compression": compression, "write_statistics": False, **kw}
    inline_of = index.inline
    for name, f in fields.items():
        if not f.nrecords:
            continue
        fs.makedirs(f"{path}/{name}", exist_ok=True)
        nums, pos, e_ids, e_offs, e_lens = plans.get(name, (np.zeros(0, np.int64),) * 5)
        bounds = np.searchsorted(nums, np.arange(f.nrecords + 1, dtype=np.int64) * record_size)
        for rec in range(f.nrecords):
            s, e = int(bounds[rec]), int(bounds[rec + 1])
            table = _record_table(pa, f.rows_in(rec), nums[s:e] - rec * record_size,
                                  e_ids[s:e], e_offs[s:e], e_lens[s:e],
                                  lambda j, _p=pos[s:e]: inline_of(keys[_p[j]]), url_array)
            with fs.open(_record_path(path, name, rec), "wb") as fh:
                pq.write_table(table, fh, **opts)
    # top-level chunkview keys (".cvsources") cannot sit in zarr's consolidated metadata,
    # which zarr parses as "<path>/.<kind>": they get a field of their own
    extra = {k: metadata.pop(k) for k in list(metadata) if k.startswith(".cv")}
    met = {"metadata": metadata, "record_size": record_size, "zarr_consolidated_format": 1}
    if extra:
        met["chunkview"] = extra
    fs.pipe_file(f"{path}/{ZMETADATA}", json.dumps(met).encode())


def _no_array_message(name: str, fields: dict) -> str:
    msg = f"{name!r} is not an array (no '{name}/.zarray'): only chunk keys can be stored"
    up = name
    while "/" in up:
        up = up.rsplit("/", 1)[0]
        if up in fields:
            return (msg + f"; array {up!r} looks like it uses dimension_separator '/', which "
                    "the parquet layout cannot hold")
    return msg


def _record_table(pa, n, rows, ids, offs, lens, inline_at, url_array):
    """The arrow table of one record: ``n`` rows, the given ``rows`` set; ``inline_at(j)`` is
    the inline data of entry ``j``."""
    path_idx = np.full(n, -1, dtype=np.int32)
    offset = np.zeros(n, dtype=np.int64)
    size = np.zeros(n, dtype=np.int64)
    ref = ids >= 0
    whole = ref & (lens == _WHOLE)
    part = ref & ~whole
    empty = part & (offs == 0) & (lens == 0)  # [url, 0, 0] would read back as a whole file
    part &= ~empty
    path_idx[rows[ref & ~empty]] = ids[ref & ~empty]
    offset[rows[part]] = offs[part].astype(np.int64)
    size[rows[part]] = lens[part].astype(np.int64)

    if ref.any():
        used = np.unique(path_idx[path_idx >= 0])
        local = np.full(len(url_array), -1, dtype=np.int32)
        local[used] = np.arange(len(used), dtype=np.int32)
        idx = np.where(path_idx >= 0, local[np.maximum(path_idx, 0)], 0).astype(np.int32)
        dict_arr = pa.DictionaryArray.from_arrays(
            pa.array(idx, mask=path_idx < 0), url_array.take(pa.array(used)))
        path_col = dict_arr.dictionary_decode()
    else:
        path_col = pa.nulls(n, pa.string())

    inl = np.flatnonzero((ids == INLINE) | empty)
    if len(inl):
        datas = [b"" if empty[j] else inline_at(j) for j in inl.tolist()]
        lengths = np.zeros(n, dtype=np.int64)
        lengths[rows[inl]] = [len(d) for d in datas]
        order = np.argsort(rows[inl], kind="stable")
        blob = b"".join(datas[j] for j in order.tolist())
        bounds = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=bounds[1:])
        valid = np.zeros(n, dtype=bool)
        valid[rows[inl]] = True
        large = bounds[-1] >= 2**31
        typ = pa.large_binary() if large else pa.binary()
        raw_col = pa.Array.from_buffers(
            typ, n, [pa.py_buffer(np.packbits(valid, bitorder="little")),
                     pa.py_buffer(bounds if large else bounds.astype(np.int32)),
                     pa.py_buffer(blob)])
    else:
        raw_col = pa.nulls(n, pa.binary())
    schema = pa.schema([pa.field("path", pa.string()),
                        # not nullable: readers (fastparquet) give nullable ints as floats
                        pa.field("offset", pa.int64(), nullable=False),
                        pa.field("size", pa.int64(), nullable=False),
                        pa.field("raw", raw_col.type)],
                       metadata={b"pandas": _PANDAS_META})
    return pa.Table.from_arrays([path_col, pa.array(offset), pa.array(size), raw_col],
                                schema=schema)
