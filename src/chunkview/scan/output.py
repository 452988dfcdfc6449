"""The one thing every scanner returns: ``ScanOutput``, and how it becomes a reference set.

A scanner is a module with ``scan(reader, *, inline_threshold, chunk_bytes, checksums) ->
ScanOutput`` (:class:`Scanner`), reading through a :class:`chunkview.io.blocks.Reader`:
:mod:`chunkview.scan.hdf5.scanner` for HDF5 / NetCDF4, :mod:`chunkview.scan.netcdf3`.
:func:`to_references` turns any scanner's output into :class:`chunkview.References`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from chunkview._index import ChunkIndex
from chunkview.keys import SOURCES_KEY
from chunkview.refs.kerchunk import set_value
from chunkview.refs.memory import References


@dataclass
class ChunkSet:
    """Chunk references of one array: key prefix, URL, grid coordinates, byte ranges."""

    prefix: str
    url: str
    coords: np.ndarray
    addrs: np.ndarray
    sizes: np.ndarray


@dataclass
class ScanOutput:
    """What a scanner found: ``inline`` values (metadata JSON text and data bytes), ``chunks``
    (:class:`ChunkSet` arrays, bulk-inserted), ``refs`` (single references in kerchunk's forms:
    ``[url, offset, length]``, or inline text/bytes with ``base64:`` decoded as fsspec does) and
    ``unsupported`` (path -> why, for datasets that could not be presented)."""

    inline: dict = field(default_factory=dict)
    chunks: list = field(default_factory=list)
    refs: dict = field(default_factory=dict)
    unsupported: dict = field(default_factory=dict)


class Scanner(Protocol):
    """What :mod:`chunkview.scan` calls for each file format."""

    def scan(self, reader, *, inline_threshold: int, chunk_bytes: int,
             checksums: bool = True) -> ScanOutput: ...


def to_references(out: ScanOutput, *, source=None, record: dict | None = None) -> References:
    """A :class:`ScanOutput` as References (bulk insert into the C index); ``record``: the
    scanned file's size and ETag or mtime, stored under ``.cvsources`` for ``check_source=``."""
    index = ChunkIndex()
    for key, value in out.inline.items():
        index.set_inline(key, value.encode() if isinstance(value, str) else value)
    for key, value in out.refs.items():
        set_value(index, key, value, source)
    for c in out.chunks:
        pre = f"{c.prefix}/" if c.prefix else ""
        index.add_grid(pre, c.coords, np.zeros(len(c.addrs), np.uint32), c.addrs, c.sizes,
                       [c.url], shrink=False)
    index.shrink()
    refs = References(index, source=source)
    refs.unsupported = dict(out.unsupported)
    if record and source is not None:
        refs[SOURCES_KEY] = json.dumps({source: record}).encode()
    return refs


__all__ = ["ChunkSet", "ScanOutput", "Scanner", "to_references"]
