"""The reference-set protocol every implementation follows, and what works on any of them.

A reference set maps keys (``"t2m/0.1.2"``, ``".zgroup"``) to references in fsspec's forms:
inline ``bytes``, ``[url]`` (a whole file) or ``[url, offset, length]``.  Two implementations
exist: :class:`chunkview.refs.memory.References` (the C index) and
:class:`chunkview.refs.parquet.lazy.LazyParquetReferences` (parquet records read on demand).
Every reader (the batch fetch, the filesystem, the zarr store, combine) takes a
:class:`ReferenceSet`, never a concrete class.
"""

from __future__ import annotations

import base64
import json
from collections.abc import ItemsView, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from chunkview.errors import ReferenceFormatError
from chunkview.keys import SOURCES_KEY


@runtime_checkable
class ReferenceSet(Protocol):
    """What a reference set offers (a read-mostly ``Mapping[str, bytes | list]``)."""

    source: str | None  # where it was loaded from (for error messages)
    remote_origin: bool  # loaded from a remote location: local URLs are refused by default

    def __getitem__(self, key: str) -> Any: ...
    def get(self, key: str, default=None) -> Any: ...
    def __contains__(self, key) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...
    def items(self) -> ItemsView: ...

    @property
    def urls(self) -> list[str]:
        """The URL table ``lookup_many``'s ids index."""

    @property
    def sources(self) -> dict:
        """What the scan recorded of each referenced file (``.cvsources``)."""

    def lookup_many(self, keys, threads=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(url_ids int64, offsets uint64, lengths uint64)`` for ``keys``: url id INLINE for
        inline data, MISSING for absent keys; length WHOLE for a whole file."""

    def size_of(self, key: str) -> int | None:
        """Stored bytes of ``key`` (None: a whole file, size unknown)."""

    def listing(self) -> Mapping:
        """``{directory: {"dirs": [...], "files": [...]}}`` of the keys."""

    def to_references(self):
        """The set in memory, as :class:`chunkview.refs.memory.References`."""


class ItemsViewOf(ItemsView):
    """An items view whose iteration the set provides (``_iter_items``), so ``dict(refs.items())``
    does not go through ``__getitem__`` key by key."""

    def __iter__(self):
        return self._mapping._iter_items()


def sources_of(refs) -> dict:
    """The ``.cvsources`` record of a reference set (any Mapping of references)."""
    raw = refs.get(SOURCES_KEY) if hasattr(refs, "get") else None
    if raw is None or not isinstance(raw, (bytes, str)):
        return {}
    try:
        d = json.loads(raw)
    except (ValueError, RecursionError):
        raise ReferenceFormatError("invalid JSON", key=SOURCES_KEY,
                                   source=getattr(refs, "source", None)) from None
    if not isinstance(d, dict) or not all(isinstance(v, dict) for v in d.values()):
        raise ReferenceFormatError("must map each URL to an object", key=SOURCES_KEY,
                                   source=getattr(refs, "source", None))
    return d


def same_references(refs, items, other):
    """``refs == other`` for reference mappings: same keys, same references (inline text and
    bytes, ``base64:`` and decoded data, tuples and lists compare equal)."""
    if not isinstance(other, Mapping):
        return NotImplemented
    if len(refs) != len(other):
        return False
    for k, v in items:
        try:
            w = other[k]
        except KeyError:
            return False
        if _normal(v) != _normal(w):
            return False
    return True


def _normal(v):
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes) and v.startswith(b"base64:"):
        v = base64.b64decode(v[7:])
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, list) and len(v) == 3:
        v = [v[0], int(v[1]), int(v[2])]
    return v



__all__ = ["ReferenceSet", "ItemsViewOf", "sources_of", "same_references"]
