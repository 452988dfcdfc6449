"""The parquet reference layout: chunk grids of the arrays, and decoding one record."""


from __future__ import annotations

import json
from itertools import repeat
from operator import itemgetter

import numpy as np

from chunkview._index import INLINE, MISSING, WHOLE
from chunkview.errors import ReferenceFormatError, missing_extra
from chunkview.keys import ZMETADATA_KEY

ZMETADATA = ZMETADATA_KEY
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


class _Codes(dict):
    """Field name -> field number; -1 for anything else (dict lookups in C, no insertion)."""

    def __missing__(self, key):
        return -1


def key_text(key) -> str:
    """A key as text (bytes keys decoded as UTF-8, undecodable bytes kept as surrogates)."""
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        return key.decode("utf-8", "surrogateescape")
    raise TypeError(f"keys must be str or bytes, not {type(key).__name__}")


def _split_keys(keys, names: list[str]):
    """Split keys at their last "/" with C-level loops: ``(keys as a list of str, field number
    per key (-1: not a field of ``names``), chunk names)``."""
    try:
        parts = list(map(str.rpartition, keys, repeat("/")))
    except TypeError:
        keys = [key_text(k) for k in keys]
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
    if len(where) == 0:
        return []
    if len(where) == 1:
        return [items[int(where[0])]]
    return itemgetter(*where.tolist())(items)


# --------------------------------------------------------------------------- the writer



