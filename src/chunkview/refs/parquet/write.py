"""``write_parquet``: any reference set in fsspec's ``LazyReferenceMapper`` parquet layout."""


from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import repeat

import numpy as np

from chunkview._index import INLINE
from chunkview.errors import ReferenceFormatError
from chunkview.keys import RESERVED_PREFIX, ZARR_JSON, is_reserved
from chunkview.refs.kerchunk import index_from_dict, set_aside_unreadable
from chunkview.refs.parquet.layout import (
    _I64_MAX,
    _PANDAS_META,
    _WHOLE,
    ZMETADATA,
    _fields_of,
    _groups,
    _pyarrow,
    _record_path,
    _split_keys,
    _take,
)


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

    if isinstance(record_size, bool) or not isinstance(record_size, int) or record_size < 1:
        raise ValueError(f"record_size must be a positive integer, not {record_size!r}")
    if hasattr(refs, "to_references"):  # a reference set
        # a lazy one is read whole first: this also makes writing over its own root safe
        refs = refs.to_references()
        source, index = refs.source, refs.index
    elif isinstance(refs, Mapping):  # a kerchunk dict
        index, _ = index_from_dict(refs)
        source = None
    else:
        raise TypeError(f"cannot write {type(refs).__name__} as parquet references")
    if ZARR_JSON in index:  # Zarr v3: keys and .zarray row indexes the layout can hold
        from chunkview.refs.zarr3 import parquet_index

        index = parquet_index(index)
    keys, ids, offs, lens = index.to_arrays()
    urls = index.urls

    # ---- metadata, then chunk keys grouped by array (C-level loops over the keys); metadata
    # is what fsspec's LazyReferenceMapper takes for it: a key starting ".z" or holding "/.z";
    # chunkview's own JSON keys (".cvsources", "<array>/.cvmask", "<array>/.cverror") go
    # there too
    n = len(keys)
    is_meta = np.fromiter(map(str.startswith, keys, repeat(".z")), dtype=bool, count=n)
    is_meta |= np.fromiter(map(str.__contains__, keys, repeat("/.z")), dtype=bool, count=n)
    is_meta |= np.fromiter(map(str.startswith, keys, repeat(RESERVED_PREFIX)), dtype=bool, count=n)
    is_meta |= np.fromiter(map(str.__contains__, keys, repeat("/.cv")), dtype=bool, count=n)
    is_meta |= np.fromiter(map(str.endswith, keys, repeat(ZARR_JSON)), dtype=bool, count=n)
    metadata: dict = {}
    for i in np.flatnonzero(is_meta).tolist():
        key = keys[i]
        if key == ZMETADATA:  # the layout's own index, written anew below
            continue
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
    # chunkview's own keys (".cvsources", "<array>/.cvmask", ".cvnetcdf"...) cannot sit in
    # zarr's consolidated metadata, which zarr parses as "<path>/.<kind>": they get a field of
    # their own, which fsspec and zarr do not read
    extra = {k: metadata.pop(k) for k in list(metadata) if is_reserved(k.rsplit("/", 1)[-1])}
    # so do arrays zarr-python has no data type for: it would refuse the whole group
    # (in a Zarr v3 set, whose .zarray keys are only the layout's row index, zarr reads the
    # zarr.json documents)
    if ZARR_JSON not in metadata:
        extra.update(set_aside_unreadable(metadata))
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

__all__ = ["write_parquet"]

