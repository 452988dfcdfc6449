"""xarray backend: ``xr.open_dataset(src, engine="chunkview")``.

``src`` is a reference set (kerchunk JSON, parquet, native ``.cvref``, a dict or a
:class:`chunkview.References`) or an HDF5 / NetCDF4 / NetCDF3 file, which is scanned on the
fly.  Variables are lazy: xarray asks for basic (integer and slice) selections and chunkview's
batch decoder reads them; ``chunks={}`` gives dask chunks aligned to the stored chunks.  CF
decoding is left to xarray.

The dataset pickles compactly (the C index's own bytes and the open options, never a dict of
references), so dask's distributed workers can read it; each worker process opens the
references once and decodes with its own GIL-free threads.
"""

from __future__ import annotations

import os
import threading
import uuid
import weakref

import numpy as np

try:
    from xarray.backends import BackendArray, BackendEntrypoint
    from xarray.backends.common import AbstractDataStore
    from xarray.core import indexing
except ImportError as e:  # pragma: no cover - the entry point is only loaded by xarray
    raise ImportError("chunkview's xarray engine needs xarray: pip install 'chunkview[xarray]'"
                      ) from e

from chunkview.errors import ReferenceFormatError
from chunkview.keys import DIMENSION_KEY, ERROR_KEY, NATIVE_SUFFIX, NETCDF_KEY
from chunkview.options import ReadOptions
from chunkview.read.meta import JSON_FLOATS, dtype_of, fill_bytes, reads_with_zarr

_NON_COORD = "_nc4_non_coord_"

# references opened in this process, by token: a worker unpickling many tasks of one dataset
# opens its references once
_OPENED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_OPENED_LOCK = threading.Lock()


class _Handle:
    """The opened references of one dataset, shared by its variables and picklable: the
    references travel as the C index's bytes (or, for lazy parquet sets, their location)
    with the open options, and are reopened once per process."""

    def __init__(self, refs, options: dict, token: str | None = None):
        self.refs = refs
        self.options = options
        self.token = token or uuid.uuid4().hex
        self._group = None
        self._zarr = None
        self._lock = threading.Lock()

    def __reduce__(self):
        return (_restore, (self.token, self.refs, self.options))

    def _once(self, attr, make):
        value = getattr(self, attr)
        if value is None:
            with self._lock:
                value = getattr(self, attr)
                if value is None:
                    value = make(self.refs, **self.options)
                    setattr(self, attr, value)
        return value

    @property
    def group(self):
        """The :class:`chunkview.Group` (numpy reads through the C batch decoder)."""
        from chunkview.array import open as cv_open

        return self._once("_group", cv_open)

    @property
    def zarr(self):
        """The zarr group over the same references (object-dtype arrays: vlen strings)."""
        from chunkview.zarr_store import open_zarr

        return self._once("_zarr", open_zarr)


def _restore(token, refs, options):
    with _OPENED_LOCK:
        h = _OPENED.get(token)
        if h is None:
            h = _OPENED[token] = _Handle(refs, options, token)
        return h


class ChunkviewArray(BackendArray):
    """One variable, read lazily with chunkview (basic indexing: integers and slices)."""

    def __init__(self, handle: _Handle, path: str, shape, dtype):
        self.handle = handle
        self.path = path
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape,
                                                  indexing.IndexingSupport.BASIC, self._read)

    def _read(self, key):
        if reads_with_zarr(self.dtype):
            out = self.handle.zarr[self.path][key]
        else:
            out = self.handle.group[self.path].read(key)
        return np.asarray(out)


def _typed(value, dtype: str | None):
    """A JSON attribute value as netCDF readers give it: numeric attributes in their stored
    dtype, one-element lists as scalars (as netCDF4-python does)."""
    if dtype is not None:
        try:
            arr = np.array(_floats(value), dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            return value
        return arr.reshape(-1)[0] if arr.size == 1 else arr
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (int, float)):
        return value[0]
    return value


def _floats(value):
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return JSON_FLOATS.get(value, value) if isinstance(value, str) else value


def _fill_value(fill, dtype: np.dtype):
    """zarr v2 ``fill_value`` JSON as a numpy scalar of ``dtype`` (None when it has none)."""
    if fill is None or dtype.hasobject or dtype.fields is not None:
        return None
    try:
        raw = fill_bytes(fill, dtype)
    except ReferenceFormatError:
        return None
    return np.zeros((), dtype)[()] if raw is None else np.frombuffer(raw, dtype)[0]


class ChunkviewDataStore(AbstractDataStore):
    """The variables and attributes of one group of a reference set, for xarray."""

    def __init__(self, refs, *, group: str | None = None, options: dict | None = None):
        self.handle = _Handle(refs, dict(options or {}))
        self.refs = self.handle.refs
        self.path = (group or "").strip("/")
        self._source = getattr(self.refs, "source", None)

    def _meta(self, key):
        return self.handle.group._meta(key)

    def _join(self, name):
        return f"{self.path}/{name}" if self.path else name

    def _attrs(self, path_prefix: str) -> dict:
        attrs = dict(self._meta(path_prefix + ".zattrs") or {})
        facts = self._meta(path_prefix + NETCDF_KEY) or {}
        types = facts.get("attrs", {}) if isinstance(facts, dict) else {}
        return {k: _typed(v, types.get(k)) for k, v in attrs.items() if k != DIMENSION_KEY}, \
            facts

    def _group(self):
        from chunkview.array import Group

        g = self.handle.group
        if self.path:
            try:
                g = g[self.path]
            except KeyError:
                g = None
            if not isinstance(g, Group):
                raise OSError(f"group {self.path!r} not found in "
                              f"{self._source or 'the references'}")
        return g

    def get_attrs(self):
        self._group()
        return self._attrs(self._join(""))[0]

    def get_variables(self):
        g = self._group()
        out = {}
        for name in g:
            path = self._join(name)
            meta = self._meta(path + "/.zarray")
            if meta is None:  # a subgroup, or a dataset the scan could not map
                if self._meta(path + "/" + ERROR_KEY) is not None:
                    g[name]  # raises UnsupportedError saying why
                continue
            var = self._variable(path, meta)
            if var is not None:
                # netCDF-C stores a variable named like a dimension it is not the coordinate of
                # as "_nc4_non_coord_<name>"; netCDF readers show its real name
                out[name.removeprefix(_NON_COORD)] = var
        return out

    def _variable(self, path, meta):
        from xarray import Variable

        raw = self._meta(path + "/.zattrs") or {}
        attrs, facts = self._attrs(path + "/")
        if facts.get("dimension_only"):
            return None  # a netCDF dimension without a variable
        shape = tuple(meta["shape"])
        try:
            dtype = dtype_of(meta["dtype"])
        except (TypeError, ValueError) as e:
            raise ReferenceFormatError(f"array {path!r}: bad dtype {meta['dtype']!r}: {e}",
                                       key=path + "/.zarray") from None
        dims = raw.get(DIMENSION_KEY)
        if dims is None:
            dims = [f"phony_dim_{i}" for i in range(len(shape))]
        if len(dims) != len(shape):
            raise ReferenceFormatError(f"array {path!r}: {DIMENSION_KEY} {dims} does not "
                                       f"match its shape {shape}", key=path + "/.zattrs")
        if dtype.kind == "S" and isinstance(attrs.get("_FillValue"), str):
            # a char variable's fill is bytes, as netCDF4 gives it (JSON holds it as text)
            attrs["_FillValue"] = np.bytes_(attrs["_FillValue"].encode("utf-8"))
        # (a Zarr v3 array masks its _FillValue attribute, not its fill_value: _cv_mask_fill)
        if "_FillValue" not in attrs and facts.get("_FillValue", True) and \
                not meta.get("_cv_no_mask"):
            fv = _fill_value(meta.get("_cv_mask_fill", meta.get("fill_value")), dtype)
            if fv is not None:
                attrs["_FillValue"] = fv
        chunks = tuple(int(c) for c in meta["chunks"])
        data = indexing.LazilyIndexedArray(ChunkviewArray(self.handle, path, shape, dtype))
        encoding = {"chunks": chunks, "preferred_chunks": dict(zip(dims, chunks)),
                    "dtype": dtype}
        if self._source:
            encoding["source"] = self._source
        return Variable(tuple(dims), data, attrs, encoding)

    def get_dimensions(self):  # pragma: no cover - xarray reads dims from the variables
        return {d: s for v in self.get_variables().values() for d, s in v.sizes.items()}

    def get_encoding(self):
        return {}

    def close(self):
        if self.handle._group is not None:
            self.handle._group.close()


class ChunkviewBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(src, engine="chunkview")``: reference sets and HDF5 / NetCDF files
    read in place through chunkview."""

    description = "Read HDF5, NetCDF4 and NetCDF3 files and their reference sets with chunkview"
    url = "https://github.com/chunkview/chunkview"
    open_dataset_parameters = ("filename_or_obj", "mask_and_scale", "decode_times",
                               "concat_characters", "decode_coords", "drop_variables",
                               "use_cftime", "decode_timedelta", "group", "storage_options",
                               "remote_protocol", "remote_options", "threads", "scan_options")

    def guess_can_open(self, filename_or_obj) -> bool:
        if isinstance(filename_or_obj, (str, os.PathLike)):
            p = os.fspath(filename_or_obj).rstrip("/")
            return p.endswith(NATIVE_SUFFIX) or p.endswith((".json",)) and _looks_like_refs(p)
        return False

    def open_dataset(self, filename_or_obj, *, mask_and_scale=True, decode_times=True,
                     concat_characters=True, decode_coords=True, drop_variables=None,
                     use_cftime=None, decode_timedelta=None, group=None,
                     storage_options=None, remote_protocol=None, remote_options=None,
                     threads=None, scan_options=None, **open_options):
        """``storage_options``: fsspec options for reading ``filename_or_obj`` (the reference
        set, or the file to scan); ``remote_protocol``/``remote_options``: how to read the
        files the references point to; ``threads``: decode threads per read;
        ``scan_options``: passed to :func:`chunkview.scan` for a file scanned on the fly.
        Other keywords go to :func:`chunkview.open`: the :class:`chunkview.options.ReadOptions`
        (``max_gap``, ``retries``, ...), checked here, before anything is read."""
        from xarray.backends.store import StoreBackendEntrypoint

        from chunkview.refs.load import load
        from chunkview.refs.memory import References
        from chunkview.scan import is_source_file

        ReadOptions.from_kwargs(dict(open_options))  # a bad option fails now, not at first read
        src = filename_or_obj
        if isinstance(src, References) or isinstance(src, dict) or hasattr(src, "to_references"):
            refs = load(src)
        elif is_source_file(src, storage_options):
            from chunkview.scan import scan

            refs = scan(os.fspath(src), storage_options=storage_options,
                        **(scan_options or {}))
        else:
            refs = load(os.fspath(src) if isinstance(src, os.PathLike) else src,
                        target_options=storage_options)
        options = dict(open_options, threads=threads)
        if remote_protocol is not None:
            options["remote_protocol"] = remote_protocol
        if remote_options is not None:
            options["remote_options"] = remote_options
        store = ChunkviewDataStore(refs, group=group, options=options)
        ds = StoreBackendEntrypoint().open_dataset(
            store, mask_and_scale=mask_and_scale, decode_times=decode_times,
            concat_characters=concat_characters, decode_coords=decode_coords,
            drop_variables=drop_variables, use_cftime=use_cftime,
            decode_timedelta=decode_timedelta)
        ds.set_close(store.close)
        return ds


def _looks_like_refs(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b'"refs"' in head or b'".zgroup"' in head


def open_dataset(src, **kwargs):
    """``xarray.open_dataset(src, engine="chunkview", **kwargs)``."""
    import xarray as xr

    return xr.open_dataset(src, engine="chunkview", **kwargs)


__all__ = ["ChunkviewBackendEntrypoint", "ChunkviewDataStore", "ChunkviewArray", "open_dataset"]
