"""Combine many reference sets into one virtual dataset.

An archive is thousands of files, one per day or month.  ``combine`` concatenates their
reference sets along a dimension (an existing one such as ``time``, or a new one) into one
reference set whose chunks still point into each original file; ``merge`` puts variables of
different files side by side.  Nothing is copied but the coordinate being concatenated, which
is rewritten inline (its values re-encoded in the first file's units, so files with different
``"days since ..."`` epochs line up).

What a reference set cannot express is refused with a :class:`chunkview.CombineError`
naming the variable and the files: chunking, dtype, codecs or packing that differ between
files, a partial chunk anywhere but at the end of the concatenated dimension, coordinate
values that overlap, variables without the dimension whose values differ between files.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from chunkview._combine_coords import (
    _check_increasing,
    _coord_array,
    _encode_like,
    _new_coord,
    _regex_labels,
)
from chunkview._index import INLINE
from chunkview.codecs.masked import CODEC_ID as MASKED_ID
from chunkview.codecs.masked import chunk_nbytes
from chunkview.codecs.masked import table as mask_table
from chunkview.codecs.masked import wrapper as mask_wrapper
from chunkview.codecs.pipeline import unwrap
from chunkview.errors import CombineError, ReferenceFormatError
from chunkview.keys import (
    DIMENSION_KEY,
    ERROR_KEY,
    MASK_KEY,
    SOURCES_KEY,
    ZARR_JSON,
    ZMETADATA_KEY,
    is_reserved,
)
from chunkview.read.meta import dtype_of, json_of
from chunkview.refs.load import load
from chunkview.refs.memory import References
from chunkview.refs.protocol import sources_of

# attributes that change what the stored numbers mean: they must agree between files
ENCODING_ATTRS = ("scale_factor", "add_offset", "_FillValue", "missing_value", "units",
                  "calendar", "_Unsigned", "_Encoding", "dtype")
# zarr v2 metadata that must agree between files (shape is checked per dimension)
META_FIELDS = ("zarr_format", "dtype", "chunks", "compressor", "filters", "fill_value", "order",
               "dimension_separator")


# ------------------------------------------------------------------ one input


@dataclass
class _Var:
    path: str
    meta: dict
    attrs: dict
    keys: dict = field(default_factory=dict)  # other per-array keys: name -> raw bytes

    @property
    def dims(self) -> list:
        d = self.attrs.get(DIMENSION_KEY)
        if d is None:
            raise CombineError(f"array {self.path!r} has no {DIMENSION_KEY} attribute: its "
                               "dimensions are unknown")
        return list(d)

    @property
    def shape(self) -> tuple:
        return tuple(int(x) for x in self.meta["shape"])

    @property
    def chunks(self) -> tuple:
        return tuple(int(x) for x in self.meta["chunks"])

    @property
    def sep(self) -> str:
        return self.meta.get("dimension_separator") or "."

    @property
    def grid(self) -> tuple:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks))


class _Input:
    """One reference set: its metadata read once, its chunk table looked up per array."""

    def __init__(self, name: str, refs):
        self.name = name
        self.refs = refs
        self.groups: dict[str, dict] = {}  # group path -> attrs
        self.group_keys: dict[str, bytes] = {}  # other group-level keys (.cvnetcdf)
        self.vars: dict[str, _Var] = {}
        self.errors: dict[str, bytes] = {}
        src = name
        meta_keys = []
        zmeta = json_of(refs, ZMETADATA_KEY, src) if ZMETADATA_KEY in refs else None
        zmeta = (zmeta or {}).get("metadata") if isinstance(zmeta, dict) else None
        for k in (zmeta or {}):
            meta_keys.append(k)
        if hasattr(refs, "index"):  # the C index lists them without decoding chunk keys
            keys = refs.index.meta_keys()
        else:
            keys = [k for k in refs if k.rsplit("/", 1)[-1].startswith(".")]
        for k in keys:  # metadata keys: the last component starts with "." (chunks: digits)
            if k != ZMETADATA_KEY and (zmeta is None or k not in zmeta):
                meta_keys.append(k)

        def get(k):  # the key itself wins over consolidated metadata
            if zmeta is not None and k in zmeta and k not in refs:
                return zmeta[k]
            return json_of(refs, k, src)

        arrays = {}
        for k in meta_keys:
            parent, _, last = k.rpartition("/")
            if last == ".zarray":
                arrays.setdefault(parent, {})["meta"] = get(k)
            elif last == ".zgroup":
                self.groups.setdefault(parent, {})
            elif last == ERROR_KEY:
                self.errors[parent] = _raw(refs, k, zmeta)
            elif last == ".zattrs" or (is_reserved(last) and k != SOURCES_KEY):
                arrays.setdefault(parent, {})[last] = k
        for parent, d in arrays.items():
            if "meta" in d:
                attrs = get(d[".zattrs"]) if ".zattrs" in d else {}
                v = _Var(parent, d["meta"], attrs or {})
                for last, k in d.items():
                    if last not in ("meta", ".zattrs"):
                        v.keys[last] = _raw(refs, k, zmeta)
                self.vars[parent] = v
            elif parent in self.groups or parent == "":
                self.groups.setdefault(parent, {})
                if ".zattrs" in d:
                    self.groups[parent] = get(d[".zattrs"]) or {}
                for last, k in d.items():
                    if is_reserved(last):
                        self.group_keys[(parent + "/" if parent else "") + last] = \
                            _raw(refs, k, zmeta)
        if not self.vars and not self.errors:
            if ZARR_JSON in refs:
                raise CombineError(f"{name}: combine reads zarr v2 reference sets, and this "
                                   "one has Zarr v3 metadata: combine the v2 sets, then "
                                   "convert the result (chunkview convert --zarr-format 3)")
            raise CombineError(f"{name}: no arrays in this reference set")
        self.sources = sources_of(refs)

    def entries(self, var: _Var):
        """(url ids into this input's URL table, offsets, lengths) of every chunk of ``var``
        in C order of its chunk grid (url id INLINE (-1) or MISSING (-2) as ChunkIndex says)."""
        pre = var.path + "/" if var.path else ""
        return self.refs.index.get_grid(pre, var.grid, var.sep)

    def inline(self, var: _Var, coords) -> bytes:
        return self.refs.index.inline(_chunk_key(var.path, var.sep, coords))

    def read(self, path: str, options: dict):
        """The decoded values of an array (numpy), through chunkview's read path (or straight
        from the references when it is one inline, uncompressed chunk, as coordinates in
        kerchunk's reference sets often are)."""
        var = self.vars.get(path)
        if var is not None and not var.meta.get("compressor") and not var.meta.get("filters") \
                and len(var.shape) == 1 and var.grid == (1,) and \
                var.meta.get("order", "C") == "C":
            ids, _, _ = self.entries(var)
            dt = dtype_of(var.meta["dtype"])
            if ids[0] == INLINE and not dt.hasobject:
                raw = self.inline(var, (0,))
                n = var.shape[0]
                if len(raw) >= n * dt.itemsize:
                    return np.frombuffer(raw, dt, count=n).copy()
        from chunkview.array import open as cv_open

        g = cv_open(self.refs, **options)
        try:
            arr = g[path]
            if arr.dtype.hasobject:
                from chunkview.zarr_store import open_zarr

                return np.asarray(open_zarr(self.refs, **options)[path][...])
            return np.asarray(arr[...])
        finally:
            g.close()

    def release(self):
        self.refs = None


def _raw(refs, key, zmeta) -> bytes:
    if zmeta is not None and key in zmeta:
        v = zmeta[key]
        return v.encode() if isinstance(v, str) else json.dumps(v).encode()
    v = refs[key]
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise ReferenceFormatError(f"metadata key {key!r} is not inline JSON", key=key)
    return bytes(v)


def _name_of(item, refs) -> str:
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    src = getattr(refs, "source", None)
    if src:
        return str(src)
    urls = getattr(refs, "urls", None) or []
    return urls[0] if urls else "<references>"


def _load_input(item, *, storage_options=None, scan_options=None) -> _Input:
    if isinstance(item, _Input):
        return item
    if isinstance(item, (str, os.PathLike)):
        from chunkview.scan import is_source_file, scan

        path = os.fspath(item)
        if is_source_file(path, storage_options):
            refs = scan(path, storage_options=storage_options, **(scan_options or {}))
        else:
            refs = load(path, target_options=storage_options)
    else:
        refs = load(item)
    if hasattr(refs, "to_references") and not isinstance(refs, References):
        refs = refs.to_references()
    return _Input(_name_of(item, refs), refs)


# ------------------------------------------------------------------ coordinate values


@dataclass
class _Part:
    """The chunk entries of one array of one input, detached from its reference set."""

    grid: tuple  # chunks per dimension; entries are in C order of this grid
    keep: np.ndarray | None  # which grid positions have a byte-range entry (None: all)
    ids: np.ndarray  # uint32 ids into urls
    urls: list  # the input's URLs
    offsets: np.ndarray
    lengths: np.ndarray
    inline: dict  # coordinates -> bytes
    masks: dict  # coordinates -> HDF5 filter mask

    def coords(self) -> np.ndarray:
        rank = len(self.grid)
        c = np.indices(self.grid, dtype=np.int64).reshape(rank, -1).T if rank else \
            np.zeros((1, 0), np.int64)
        return c if self.keep is None else c[self.keep]

def _extract(inp: _Input, var: _Var) -> _Part:
    """The chunk entries of ``var`` in ``inp``, inline chunks and filter masks copied, so
    the input can be released."""
    ids, offs, lens = inp.entries(var)
    grid = var.grid
    rank = len(grid)
    inline = {}
    for i in np.flatnonzero(ids == INLINE):
        c = tuple(int(x) for x in np.unravel_index(i, grid)) if rank else ()
        inline[c] = inp.inline(var, c)
    keep = ids >= 0
    if keep.all():
        keep = None
    else:
        ids, offs, lens = ids[keep], offs[keep], lens[keep]
    masks = {}
    raw = var.keys.get(MASK_KEY)
    if raw:
        for k, m in json.loads(raw).items():
            c = tuple(int(x) for x in k.split(var.sep)) if rank else ()
            masks[c] = m
    return _Part(grid, keep, ids.astype(np.uint32), inp.refs.urls, offs, lens, inline, masks)


class _Out:
    """The combined reference set under construction: metadata and inline bytes, and per
    array the chunk entries as numpy columns (added to the C index in one call each)."""

    def __init__(self):
        self.inline: dict[str, bytes] = {}
        self.remote_origin = False  # any input loaded from a remote location: so is the result
        self.grids: dict[str, list] = {}  # array path -> [(_Part, sep, shift, lead)]
        self.masks: dict[str, dict] = {}
        self.digests: dict[str, dict] = {}  # array path -> the inputs' hdf5_masked digests

    def note_codecs(self, path: str, meta: dict) -> None:
        """Keep the digests an input's ``hdf5_masked`` wrapper of array ``path`` knows."""
        for f in meta.get("filters") or []:
            if isinstance(f, dict) and f.get("id") == MASKED_ID:
                table = self.digests.setdefault(path, {})
                for n, d in (f.get("digests") or {}).items():
                    table.setdefault(str(n), {}).update(d)

    def _rewrap(self, path: str) -> None:
        """Array ``path``'s codecs wrapped in ``hdf5_masked`` for the combined chunks' masks
        (other readers find masks from the chunks' stored lengths), or unwrapped if none."""
        zkey = _k(path, ".zarray")
        raw = self.inline.get(zkey)
        if raw is None:
            return
        meta = json.loads(raw)
        had = any(isinstance(f, dict) and f.get("id") == MASKED_ID
                  for f in meta.get("filters") or [])
        masks = self.masks.get(path)
        if not masks and not had:
            return
        chain = _chain(meta)
        meta["filters"], meta["compressor"] = chain or None, None
        if masks:
            sizes = {}
            for part, sep, shift, lead in self.grids.get(path, []):
                coords = _move(part.coords(), shift, lead)
                for c, n in zip(coords.tolist(), part.lengths.tolist()):
                    sizes[_chunk_key("", sep, c)] = int(n)
            pre = path + "/" if path else ""
            for k, v in self.inline.items():
                if k.startswith(pre) and "/" not in k[len(pre):] and \
                        not k[len(pre):].startswith("."):
                    sizes[k[len(pre):]] = len(v)
            lengths, digests, _ = mask_table(masks, sizes)
            known = self.digests.get(path, {})
            missing = [n for n in digests if not known.get(n)]
            if missing:
                warnings.warn(f"array {path!r}: combined chunks of stored length(s) {missing} "
                              "have different HDF5 filter masks; readers other than "
                              "chunkview cannot tell them apart", stacklevel=3)
            found = {n: known[n] for n in digests if known.get(n)}
            meta["filters"] = [mask_wrapper(chain, lengths, found, chunk_nbytes(meta))]
        self.inline[zkey] = _dumps(meta)

    def place(self, path: str, sep: str, part: _Part, shift=None, lead=None):
        """Add ``part`` to array ``path``, its chunk coordinates moved by ``shift`` (per
        dimension) and prefixed by ``lead`` (a new first dimension)."""
        def moved(c):
            return _move(np.asarray(c, np.int64), shift, lead).tolist()

        for c, data in part.inline.items():
            self.inline[_chunk_key(path, sep, moved(c))] = data
        if part.masks:
            table = self.masks.setdefault(path, {})
            for c, m in part.masks.items():
                table[_chunk_key("", sep, moved(c))] = m
        if len(part.ids):
            self.grids.setdefault(path, []).append((part, sep, shift, lead))

    def references(self, sources: dict) -> References:
        from chunkview._index import ChunkIndex

        for path in set(self.masks) | set(self.digests):
            self._rewrap(path)

        index = ChunkIndex()
        total = sum(len(p[0].ids) for parts in self.grids.values() for p in parts)
        keybytes = sum(len(p[0].ids) * (len(path) + 2 + 6 * len(p[0].grid))
                       for path, parts in self.grids.items() for p in parts)
        index.reserve(total + len(self.inline) + len(self.masks) + 1, keybytes)
        for k, v in self.inline.items():
            index.set_inline(k, v)
        for path, m in self.masks.items():
            index.set_inline((path + "/" if path else "") + MASK_KEY, _dumps(m))
        if sources:
            index.set_inline(SOURCES_KEY, _dumps(sources))
        for path, parts in self.grids.items():
            pre = path + "/" if path else ""
            for part, sep, shift, lead in parts:
                index.add_grid(pre, _move(part.coords(), shift, lead), part.ids, part.offsets,
                               part.lengths, part.urls, sep=sep, shrink=False)
        self.grids.clear()
        index.shrink()
        refs = References(index)
        refs.remote_origin = self.remote_origin  # local files stay refused by default
        return refs


def _move(c: np.ndarray, shift, lead) -> np.ndarray:
    """Chunk coordinates moved by ``shift`` and prefixed by the ``lead`` coordinate."""
    if shift is not None:
        c = c + np.asarray(shift, np.int64)
    if lead is not None:
        c = np.concatenate([np.full(c.shape[:-1] + (1,), lead, np.int64), c], -1)
    return c


def _chunk_key(path: str, sep: str, coords) -> str:
    """zarr v2's key of the chunk at ``coords`` of array ``path`` ("0" for rank 0)."""
    return _k(path, sep.join(map(str, coords)) if len(coords) else "0")


def _dumps(obj) -> bytes:
    # NaN/Infinity tokens only ever come from attributes (zarr writes them so there)
    return json.dumps(obj, separators=(",", ":")).encode()


def _chain(meta: dict) -> list:
    """An array's codecs in writing order, an ``hdf5_masked`` wrapper unwrapped."""
    configs = list(meta.get("filters") or [])
    if meta.get("compressor"):
        configs.append(meta["compressor"])
    return unwrap(configs)


def _k(path, name):
    return f"{path}/{name}" if path else name


# ------------------------------------------------------------------ checks


def _check_meta(var: _Var, first: _Var, name: str, first_name: str, skip_axis=None,
                attrs=True):
    for f in META_FIELDS:
        a, b = var.meta.get(f), first.meta.get(f)
        if f == "dimension_separator":
            a, b = a or ".", b or "."
        elif f == "filters":  # the codecs, whatever masks each input's hdf5_masked knows
            a, b = _chain(var.meta), _chain(first.meta)
        elif f == "compressor":
            continue
        if a != b:
            raise CombineError(f"{var.path!r}: {f} {a!r} in {name} differs from {b!r} in "
                               f"{first_name}")
    if len(var.shape) != len(first.shape):
        raise CombineError(f"{var.path!r}: {len(var.shape)} dimensions in {name}, "
                           f"{len(first.shape)} in {first_name}")
    for i, (a, b) in enumerate(zip(var.shape, first.shape)):
        if i != skip_axis and a != b:
            raise CombineError(f"{var.path!r}: shape {var.shape} in {name} differs from "
                               f"{first.shape} in {first_name}")
    if var.attrs.get(DIMENSION_KEY) != first.attrs.get(DIMENSION_KEY):
        raise CombineError(f"{var.path!r}: dimensions {var.attrs.get(DIMENSION_KEY)} in {name} "
                           f"differ from {first.attrs.get(DIMENSION_KEY)} in {first_name}")
    if attrs:
        for a in ENCODING_ATTRS:
            if var.attrs.get(a) != first.attrs.get(a):
                raise CombineError(f"{var.path!r}: attribute {a}={var.attrs.get(a)!r} in "
                                   f"{name} differs from {first.attrs.get(a)!r} in "
                                   f"{first_name}; the values cannot be decoded alike")


class _Agreement:
    """Checks that an array without the concatenated dimension holds the same values in
    every file (same references, same inline bytes, or the same decoded values)."""

    def __init__(self, options: dict, check_data: bool):
        self.options = options
        self.check_data = check_data
        self._first: dict[str, tuple] = {}

    def first(self, inp: _Input, var: _Var, part: _Part) -> bool:
        """Remember the input ``var`` is compared with; True when ``inp`` must stay open."""
        if self.check_data:
            self._first[var.path] = (inp, var, _signature(part), None)
        return self.check_data

    def close(self):
        self._first.clear()

    def check(self, inp: _Input, var: _Var, first_name: str):
        if not self.check_data:
            return
        finp, fvar, fsig, fvals = self._first[var.path]
        if _signature(_extract(inp, var)) == fsig:
            return
        if fvals is None:
            if finp.refs is None:
                raise CombineError(f"internal: {var.path!r} of {first_name} is gone")
            fvals = finp.read(var.path, self.options)
            self._first[var.path] = (finp, fvar, fsig, fvals)
        vals = inp.read(var.path, self.options)
        equal = vals.shape == fvals.shape and (
            np.array_equal(vals, fvals, equal_nan=True) if vals.dtype.kind in "fc"
            else np.array_equal(vals, fvals))
        if not equal:
            raise CombineError(f"{var.path!r} does not have the concatenated dimension and "
                               f"its values in {inp.name} differ from those in {first_name}")



def _signature(part: _Part):
    """What the chunk entries of an array say, URLs spelled out: equal signatures are equal
    data."""
    urls = [part.urls[i] for i in part.ids.tolist()]
    keep = None if part.keep is None else part.keep.tobytes()
    return (part.grid, keep, tuple(zip(urls, part.offsets.tolist(), part.lengths.tolist())),
            tuple(sorted(part.inline.items())), tuple(sorted(part.masks.items())))


# ------------------------------------------------------------------ public API


def combine(inputs: Sequence, concat_dim: str | None = "time", *, order_by: str = "auto",
            regex: str | None = None, coords: Sequence | None = None,
            identical: Sequence[str] = (), check_data: bool = True,
            storage_options: dict | None = None, scan_options: dict | None = None,
            **open_options) -> References:
    """Combine reference sets into one, concatenating along ``concat_dim``.

    ``inputs``: reference sets (paths or URLs of JSON / parquet / native sets, dicts,
    :class:`chunkview.References`) or HDF5 / NetCDF files, which are scanned.

    ``concat_dim``: an existing dimension (arrays that have it are concatenated along it) or a
    new one (every array except dimension coordinates and those named in ``identical`` gets it
    as a new first dimension).  ``None`` merges instead (see :func:`merge`).

    Order: ``order_by="coord"`` sorts the inputs by the values of the ``concat_dim``
    coordinate read from the data (CF time units decoded, so files written with different
    epochs sort right; overlapping values are refused); ``"regex"`` sorts them by ``regex``'s
    first group (or whole match) on the input names, numerically when every match is a
    number; ``"given"`` keeps the order.  ``"auto"``: ``"regex"`` when a regex is given, else
    ``"coord"`` when the coordinate exists, else ``"given"``.  For a new dimension its
    coordinate is ``coords``, or the regex matches, or none.

    Arrays without ``concat_dim`` must agree between files: same metadata and, with
    ``check_data`` (default), the same values (compared as references first, decoded only when
    the references differ).  ``open_options`` (``remote_protocol``, ``remote_options``...)
    say how to read the data for that check and for the coordinate values.

    Each input is read once and released: memory holds the combined chunk table (as numpy
    columns until the C index is built), not the inputs.
    """
    if concat_dim is None:
        return merge(inputs, check_data=check_data, storage_options=storage_options,
                     scan_options=scan_options, **open_options)
    if isinstance(inputs, (str, os.PathLike, Mapping, References)):
        raise TypeError("combine takes a list of inputs")
    inputs = list(inputs)
    if not inputs:
        raise CombineError("nothing to combine: no inputs")
    if order_by not in ("auto", "coord", "regex", "given"):
        raise ValueError(f"order_by must be 'auto', 'coord', 'regex' or 'given', not "
                         f"{order_by!r}")
    if order_by == "regex" and not regex:
        raise ValueError("order_by='regex' needs regex=")

    def load_one(x):
        return _load_input(x, storage_options=storage_options, scan_options=scan_options)

    out = _Out()
    agree = _Agreement(open_options, check_data)
    first = load_one(inputs[0])
    existing = any(concat_dim in v.dims for v in first.vars.values())
    coord = first.vars.get(concat_dim)
    has_coord = existing and coord is not None and coord.dims == [concat_dim]
    if not existing and concat_dim in first.vars:
        raise CombineError(f"{concat_dim!r} is a variable of {first.name} but not a "
                           "dimension")
    if order_by == "auto":
        order_by = "regex" if regex else ("coord" if has_coord else "given")
    if order_by == "coord" and not has_coord:
        raise CombineError(f"order_by='coord' needs a coordinate variable {concat_dim!r} "
                           f"(none in {first.name})")
    plan = {}
    for path, var in first.vars.items():
        dims = var.dims
        name = path.rsplit("/", 1)[-1]
        if existing:
            if has_coord and path == concat_dim:
                plan[path] = ("coord", 0)
            elif concat_dim in dims:
                plan[path] = ("concat", dims.index(concat_dim))
            else:
                plan[path] = ("same", None)
        elif dims == [name] or name in identical or path in identical:
            plan[path] = ("same", None)
        else:
            plan[path] = ("new", None)
    names = set(first.vars)

    # ---- one pass over the inputs: check, extract, release
    done = []  # per input: (name, {path: _Part}, {path: length along concat_dim}, coord)
    sources = {}
    for n, x in enumerate(inputs):
        inp = first if n == 0 else load_one(x)
        if set(inp.vars) != names:
            extra = sorted(set(inp.vars) - names)
            lack = sorted(names - set(inp.vars))
            raise CombineError(f"{inp.name} has other variables than {first.name}"
                               + (f": no {lack}" if lack else "")
                               + (f"; also {extra}" if extra else "")
                               + " (use merge for different variables)")
        parts, lengths, cvals = {}, {}, None
        for path, (how, axis) in plan.items():
            var, fv = inp.vars[path], first.vars[path]
            out.note_codecs(path, var.meta)
            if how == "same":
                if n == 0:
                    parts[path] = _extract(inp, var)
                    agree.first(inp, var, parts[path])
                else:
                    _check_meta(var, fv, inp.name, first.name)
                    agree.check(inp, var, first.name)
            elif how == "coord":
                _check_meta(var, fv, inp.name, first.name, skip_axis=0, attrs=False)
                cvals = (inp.read(path, open_options), var.attrs)
                lengths[path] = var.shape[0]
            else:
                _check_meta(var, fv, inp.name, first.name,
                            skip_axis=axis if how == "concat" else None)
                parts[path] = _extract(inp, var)
                if how == "concat":
                    lengths[path] = var.shape[axis]
        sources.update(inp.sources)
        out.remote_origin |= bool(getattr(inp.refs, "remote_origin", False))
        done.append((inp.name, parts, lengths, cvals))
        if n:
            inp.release()
    agree.close()

    # ---- order
    labels = None
    order = list(range(len(done)))
    if order_by == "regex":
        labels = _regex_labels([d[0] for d in done], regex)
        order = sorted(order, key=lambda i: labels[i])
        labels = [labels[i] for i in order]
    values = None
    if has_coord:
        ref_attrs = done[0][3][1]
        enc = [_encode_like(d[3][0], d[3][1], ref_attrs, d[0], done[0][0], concat_dim)
               for d in done]
        for e, d in zip(enc, done):
            if e.size == 0:
                raise CombineError(f"{d[0]}: coordinate {concat_dim!r} is empty")
        if order_by == "coord":
            order = sorted(order, key=lambda i: enc[i][0])
        # re-encode in the units of the input that comes first
        ref = done[order[0]]
        values = [_encode_like(done[i][3][0], done[i][3][1], ref[3][1], done[i][0], ref[0],
                               concat_dim) for i in order]
        if order_by == "coord":
            _check_increasing(values, [done[i][0] for i in order], concat_dim)
    done = [done[i] for i in order]
    if not existing:
        if coords is None and labels is not None:
            coords = labels
        if coords is not None and len(coords) != len(done):
            raise CombineError(f"{len(coords)} coordinate values for {len(done)} inputs")

    # ---- chunk offsets along concat_dim; partial chunks only at the end
    offsets = {}
    for path, (how, axis) in plan.items():
        if how != "concat":
            continue
        c = first.vars[path].chunks[axis]
        lens = [d[2][path] for d in done]
        for d, m in zip(done[:-1], lens[:-1]):
            if m % c:
                raise CombineError(
                    f"{path!r}: {d[0]} holds {m} steps of {concat_dim!r} in chunks of {c}: "
                    "its last chunk is partial, and a partial chunk can only end the combined "
                    "array (rechunking is needed; a reference set cannot express this)")
        starts = np.concatenate([[0], np.cumsum(lens)])
        offsets[path] = (starts, int(starts[-1]))

    # ---- the combined chunk tables
    for idx, (_name, parts, _lengths, _) in enumerate(done):
        for path, part in parts.items():
            how, axis = plan[path]
            sep = first.vars[path].sep
            if how == "same":
                out.place(path, sep, part)
            elif how == "concat":
                shift = [0] * len(first.vars[path].shape)
                shift[axis] = int(offsets[path][0][idx]) // first.vars[path].chunks[axis]
                out.place(path, sep, part, shift=shift)
            else:
                out.place(path, sep, part, lead=idx)

    # ---- metadata of the result
    _copy_groups(out, [first])
    for path, (how, axis) in plan.items():
        fv = first.vars[path]
        meta, attrs = dict(fv.meta), dict(fv.attrs)
        if how == "concat":
            shape = list(fv.shape)
            shape[axis] = offsets[path][1]
            meta["shape"] = shape
        elif how == "new":
            meta["shape"] = [len(done)] + list(fv.shape)
            meta["chunks"] = [1] + list(fv.chunks)
            attrs[DIMENSION_KEY] = [concat_dim] + fv.dims
        elif how == "coord":
            attrs = dict(attrs)
            ref_attrs = done[0][3][1]
            for a in ("units", "calendar"):
                if a in ref_attrs:
                    attrs[a] = ref_attrs[a]
            meta, data = _coord_array(meta, np.concatenate(values))
            out.inline[_k(path, "0")] = data
        out.inline[_k(path, ".zarray")] = _dumps(meta)
        out.inline[_k(path, ".zattrs")] = _dumps(attrs)
        for last, raw in fv.keys.items():
            if last != MASK_KEY:
                out.inline[_k(path, last)] = raw
    if not existing and coords is not None:
        meta, data, attrs = _new_coord(concat_dim, coords)
        out.inline[_k(concat_dim, ".zarray")] = _dumps(meta)
        out.inline[_k(concat_dim, ".zattrs")] = _dumps(attrs)
        out.inline[_k(concat_dim, "0")] = data
    first.release()
    return out.references(sources)


def merge(inputs: Sequence, *, check_data: bool = True, storage_options: dict | None = None,
          scan_options: dict | None = None, **open_options) -> References:
    """Merge the variables of several reference sets (for example one file per variable)
    into one.  A variable present in several inputs must agree (metadata and, with
    ``check_data``, values); group attributes come from the first input that has the
    group."""
    if isinstance(inputs, (str, os.PathLike, Mapping, References)):
        raise TypeError("merge takes a list of inputs")
    inputs = list(inputs)
    if not inputs:
        raise CombineError("nothing to merge: no inputs")
    out = _Out()
    agree = _Agreement(open_options, check_data)
    owner: dict[str, tuple] = {}  # path -> (input name, _Var)
    kept = []
    sources = {}
    for x in inputs:
        inp = _load_input(x, storage_options=storage_options, scan_options=scan_options)
        keep = False
        for path, var in inp.vars.items():
            have = owner.get(path)
            if have is None:
                owner[path] = (inp.name, var)
                part = _extract(inp, var)
                out.place(path, var.sep, part)
                out.note_codecs(path, var.meta)
                if agree.first(inp, var, part):
                    keep = True
                out.inline[_k(path, ".zarray")] = _dumps(var.meta)
                out.inline[_k(path, ".zattrs")] = _dumps(var.attrs)
                for last, raw in var.keys.items():
                    if last != MASK_KEY:
                        out.inline[_k(path, last)] = raw
            else:
                _check_meta(var, have[1], inp.name, have[0])
                agree.check(inp, var, have[0])
        _copy_groups(out, [inp])
        sources.update(inp.sources)
        out.remote_origin |= bool(getattr(inp.refs, "remote_origin", False))
        (kept.append(inp) if keep else inp.release())
    agree.close()
    for inp in kept:
        inp.release()
    return out.references(sources)


def _copy_groups(out: _Out, items):
    """Groups, their attributes and chunkview keys, and unsupported arrays' reasons: the
    first input that has each wins."""
    for inp in items:
        for g, attrs in inp.groups.items():
            if _k(g, ".zgroup") not in out.inline:
                out.inline[_k(g, ".zgroup")] = _dumps({"zarr_format": 2})
                out.inline[_k(g, ".zattrs")] = _dumps(attrs)
        for k, raw in inp.group_keys.items():
            out.inline.setdefault(k, raw)
        for path, why in inp.errors.items():
            out.inline.setdefault(_k(path, ERROR_KEY), why)


__all__ = ["combine", "merge"]
