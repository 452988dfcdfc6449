"""Scanners: HDF5 / NetCDF4 and NetCDF3 files -> :class:`chunkview.References`.

``scan`` and ``scan_to_files`` here; one file in this process: :mod:`.dispatch`; in a helper
process: :mod:`.isolate`; the contract every format's scanner follows: :mod:`.output`.

``scan(source)`` reads only the bytes it needs (the metadata and chunk indexes, through a
block cache for remote files) and records where every chunk lies.  Local files are
memory-mapped; any fsspec URL works with ``storage_options``.
"""

from __future__ import annotations

import os
import sys
import types
from concurrent.futures import ThreadPoolExecutor

from chunkview.keys import NATIVE_SUFFIX
from chunkview.scan.dispatch import scan_file
from chunkview.scan.output import to_references

DEFAULT_CHUNK_BYTES = 4 << 20
DEFAULT_TIMEOUT = 600.0  # seconds one isolated scan may take
_REF_SUFFIXES = (".json", ".parq", ".parquet", NATIVE_SUFFIX, ".zarr")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def scan(source, *, storage_options: dict | None = None, inline_threshold: int = 0,
         chunk_bytes: int = DEFAULT_CHUNK_BYTES, threads: int | None = None, progress=None,
         isolate: bool = True, timeout: float | None = DEFAULT_TIMEOUT, zarr_format: int = 2,
         _checksums=True):
    """Scan an HDF5, NetCDF4 or NetCDF3 file into :class:`chunkview.References`.

    ``source``: a local path, ``file://`` or any fsspec URL; or a list of them, giving a list
    of reference sets (scanned in ``threads`` threads).  ``inline_threshold``: chunks of at
    most this many stored bytes are copied into the references (0: none; compact data and
    variable-length strings are always inline).  ``chunk_bytes``: contiguous data (HDF5
    contiguous layout, NetCDF3 fixed variables) is presented as virtual chunks of about this
    size along the first dimension, so it can be read in parallel.

    A dataset that cannot be presented faithfully is listed in ``refs.unsupported`` and its
    ``<path>/.cverror`` key says why; opening it raises :class:`chunkview.UnsupportedError`.

    ``isolate`` (the default) scans in a helper process, kept for the next scan: the HDF5
    library, which reads the object tree, can crash or loop on a corrupt file, and this turns
    that into a :class:`ScanError` (so does a scan taking over ``timeout`` seconds).
    ``isolate=False`` scans in this process (``memory://`` files always are).

    ``zarr_format=3`` writes Zarr v3 metadata and chunk keys (:mod:`chunkview.refs.zarr3`)
    instead of zarr v2's: what zarr-python 3 reads with ``zarr_format=3``.
    """
    opts = dict(storage_options=storage_options, inline_threshold=inline_threshold,
                chunk_bytes=chunk_bytes, isolate=isolate, timeout=timeout,
                zarr_format=zarr_format, _checksums=_checksums)
    if isinstance(source, (list, tuple)):
        sources = list(source)
        n = threads or min(len(sources), os.cpu_count() or 1) or 1
        tick = progress or (lambda: None)

        def one(s):
            r = scan_one(s, **opts)
            tick()
            return r

        if n <= 1 or len(sources) <= 1:
            return [one(s) for s in sources]
        with ThreadPoolExecutor(n) as ex:
            return list(ex.map(one, sources))
    return scan_one(source, **opts)


def scan_one(source, *, storage_options=None, inline_threshold=0,
             chunk_bytes=DEFAULT_CHUNK_BYTES, isolate=False, timeout=DEFAULT_TIMEOUT,
             zarr_format=2, _checksums=True):
    """One file (``isolate``: in a helper process).  ``_checksums=False`` skips the HDF5
    metadata checksums: a hook for the fuzz tests, which attack the structures behind them."""
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, not {zarr_format!r}")
    kw = dict(storage_options=storage_options, inline_threshold=inline_threshold,
              chunk_bytes=chunk_bytes, checksums=_checksums)
    if isolate and not str(source).startswith("memory:"):
        # imported here: the helper runs this module as ``python -m chunkview.scan.isolate``
        from chunkview.scan.isolate import scan_isolated

        refs = scan_isolated(source, kw, timeout)
    else:
        refs = scan_file(source, **kw)
    if zarr_format == 3:
        from chunkview.refs.zarr3 import to_zarr3

        refs = to_zarr3(refs)
    return refs


def _scan_save(source, out, format, opts):
    refs = scan_one(source, **{"isolate": True, **opts})
    refs.save(out, format=format)
    return source, len(refs), sorted(refs.unsupported.items())


def scan_to_files(sources, outputs, *, jobs: int | None = None, format: str | None = None,
                  progress=None, **opts):
    """Scan ``sources`` in ``jobs`` processes, each saving its reference sets to the matching
    ``outputs`` (so nothing but a summary comes back).  Yields ``(source, references,
    unsupported [(path, why)])`` as files finish, in completion order."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if len(sources) != len(outputs):
        raise ValueError("one output per source")
    # not fork: the parent may run fsspec's IO thread, which a forked child would lack
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    n = max(1, min(jobs or os.cpu_count() or 1, len(sources)))
    with ProcessPoolExecutor(n, mp_context=mp.get_context(method)) as ex:
        futs = [ex.submit(_scan_save, s, o, format, opts) for s, o in zip(sources, outputs)]
        try:
            for f in as_completed(futs):
                yield f.result()
                if progress is not None:
                    progress()
        except BaseException:
            for f in futs:
                f.cancel()
            raise


def is_source_file(src, storage_options: dict | None = None) -> bool:
    """True for an HDF5 / NetCDF file (to scan), False for a reference set (or anything
    else); reads the first 8 bytes unless the name says it is a reference set."""
    if not isinstance(src, (str, os.PathLike)):
        return False
    path = os.fspath(src)
    if path.rstrip("/").endswith(_REF_SUFFIXES):
        return False
    import fsspec

    try:
        fs, p = fsspec.core.url_to_fs(path, **(storage_options or {}))
        if fs.isdir(p):
            return False
        with fs.open(p, "rb") as f:
            head = f.read(8)
    except (OSError, ValueError):
        return False
    if head[:3] == b"CDF" or head == _HDF5_MAGIC:
        return True
    if head[:1] in (b"{", b"[") or head.startswith(b"\x89CVIDX"):
        return False
    return path.endswith((".nc", ".nc4", ".h5", ".hdf5", ".he5", ".hdf"))


class _ScanModule(types.ModuleType):
    """``chunkview.scan`` is both this package and the function: ``chunkview.scan(path)``."""

    def __call__(self, source, **kw):
        return scan(source, **kw)


sys.modules[__name__].__class__ = _ScanModule

__all__ = ["scan", "scan_one", "scan_to_files", "is_source_file", "to_references",
           "DEFAULT_CHUNK_BYTES", "DEFAULT_TIMEOUT"]
