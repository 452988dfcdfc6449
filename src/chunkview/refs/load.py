"""Loading reference sets: ``chunkview.load``, whatever the format and wherever they are.

Kerchunk JSON (v0/v1), parquet reference directories (fsspec's ``LazyReferenceMapper`` layout)
and native ``.cvref`` files, from a path or any fsspec URL (read through
:mod:`chunkview.io.resolve`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from chunkview.errors import ReferenceFormatError
from chunkview.io.resolve import is_local_fs, protocol_name, url_to_fs
from chunkview.refs.formats import NATIVE_MAGIC, NATIVE_SUFFIXES, PARQUET_SUFFIXES
from chunkview.refs.memory import References
from chunkview.refs.parquet.lazy import LazyParquetReferences


def load(fo, *, target_protocol: str | None = None, target_options: dict | None = None,
         template_overrides: dict | None = None, format: str | None = None,
         lazy: bool | None = None, cache_size: int = 128, **kwargs) -> References:
    """Load a reference set.

    ``fo`` is a kerchunk dict (spec v0/v1), a :class:`References`, an Icechunk store
    (:func:`chunkview.icechunk.from_icechunk`), a VirtualiZarr ManifestStore or virtual dataset
    (:func:`chunkview.virtualizarr.from_virtualizarr`), or a path/URL (any fsspec
    protocol; ``target_protocol`` / ``target_options`` configure it) of kerchunk JSON, a parquet
    reference directory (fsspec's ``LazyReferenceMapper`` layout) or a native ``.cvref`` file.
    Parquet sets are bulk-loaded into the C index unless ``lazy=True``.
    """
    if isinstance(fo, References):
        return fo
    if isinstance(fo, Mapping):
        return References.from_dict(fo, template_overrides=template_overrides)
    if isinstance(fo, (bytes, bytearray, memoryview)):
        data = bytes(fo)
        if data.startswith(NATIVE_MAGIC):
            return References.from_native(data)
        return References.from_json(data, template_overrides=template_overrides)
    kind = type(fo).__module__.split(".")[0]
    if kind == "icechunk":  # an Icechunk session's store
        from chunkview.icechunk import from_icechunk

        return from_icechunk(fo)
    if kind == "virtualizarr" or (kind == "xarray" and hasattr(fo, "vz")):
        from chunkview.virtualizarr import from_virtualizarr

        return from_virtualizarr(fo)
    if isinstance(fo, os.PathLike):
        fo = os.fspath(fo)
    if not isinstance(fo, str):
        raise TypeError(f"cannot load references from {type(fo).__name__}")

    options = dict(target_options or {})
    compression = options.pop("compression", None)  # of fo itself, as fsspec opens it
    fs, path = url_to_fs(fo, target_protocol, options)
    if compression == "infer":
        from fsspec.utils import infer_compression

        compression = infer_compression(path)
    refs = _load_from(fs, path, fo, format, template_overrides, lazy, cache_size, compression)
    refs.remote_origin = not is_local_fs(fs) and protocol_name(fs) != "memory"
    return refs


def _load_from(fs, path, fo, format, template_overrides, lazy, cache_size, compression=None):
    fmt = format
    if fmt is None:
        if path.rstrip("/").endswith(PARQUET_SUFFIXES) or (
            not path.endswith((".json",) + NATIVE_SUFFIXES) and fs.isdir(path)
        ):
            fmt = "parquet"
        elif path.endswith(NATIVE_SUFFIXES):
            fmt = "native"
        else:
            fmt = "json"
    if fmt == "parquet":
        lazy_refs = LazyParquetReferences(path, fs=fs, cache_size=cache_size, source=fo)
        return lazy_refs if lazy else lazy_refs.to_references()
    if fmt == "native" and is_local_fs(fs) and not compression:
        return _open_native_file(path, fo)
    try:
        if compression:
            with fs.open(path, "rb", compression=compression) as f:
                data = f.read()
        else:
            data = fs.cat_file(path)
    except FileNotFoundError:
        raise
    except Exception as e:
        from chunkview.errors import FetchError, fetch_detail

        err = FetchError(None, fo, cause=e)
        err.args = (f"cannot read reference set {fo!r} {fetch_detail(None, None, e)}",)
        raise err from e
    if fmt == "native" or data.startswith(NATIVE_MAGIC):
        return References.from_native(data, source=fo)
    if fmt != "json":
        raise ValueError(f"unknown reference format {fmt!r}")
    return References.from_json(data, template_overrides=template_overrides, source=fo)


def _open_native_file(path: str, source: str) -> References:
    """A local native index, read into memory (one read; not memory-mapped: a mapped file
    truncated under its reader would kill the process with SIGBUS at the next lookup)."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ReferenceFormatError("empty native index file", source=source)
        buf = bytearray(size)
        got = f.readinto(buf)
        if got != size:
            raise ReferenceFormatError(f"native index file shrank while it was read ({got} of "
                                       f"{size} bytes)", source=source)
    return References.from_native(buf, source=source)


__all__ = ["load"]
