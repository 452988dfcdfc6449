"""chunkview and Icechunk repositories (``pip install 'chunkview[icechunk]'``).

* :func:`to_icechunk` writes a reference set into an Icechunk session's store: each array's
  ``zarr.json`` and its chunks as virtual chunk references (``set_virtual_refs_arr``, one call
  per array and source file), with what the scan recorded of each file (``.cvsources``) as
  Icechunk's checksum: the ETag, or else the modification time (rounded up to the second,
  Icechunk's resolution).  :func:`virtual_chunk_containers` gives the containers a repository
  needs for the set's URLs.
* :func:`from_icechunk` reads an Icechunk store (a session's ``.store``) as
  :class:`chunkview.References`: ``zarr.json`` documents, virtual chunks as references
  (``array_chunk_iterator``, columnar), inline chunks inline, and native chunks read through
  the store.  Icechunk's meaning is kept: one chunk of every source file is first read through
  Icechunk, which refuses a file whose checksum changed (:class:`SourceChangedError`) or whose
  container the session is not authorized for (:class:`ForbiddenSourceError`).
  ``chunkview.open(store)`` and ``chunkview.open_zarr(store)`` do this.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import math
from urllib.parse import urlsplit

import numpy as np

from chunkview._index import INLINE, ChunkIndex
from chunkview.errors import (
    FetchError,
    ForbiddenSourceError,
    ReferenceFormatError,
    SourceChangedError,
    missing_extra,
    reason,
)
from chunkview.io.remote import describe, local_record
from chunkview.io.resolve import is_remote_url, local_path, url_to_fs
from chunkview.keys import SOURCES_KEY, ZARR_JSON
from chunkview.refs.memory import References
from chunkview.refs.zarr3 import _key_encoding, chunk_key, grid_refs, put_docs, v3_form


def _require():
    try:
        import icechunk
    except ImportError:
        raise missing_extra("icechunk", "icechunk") from None
    return icechunk


def _sync(coro):
    from zarr.core.sync import sync

    return sync(coro)


def _prefix(url: str) -> str:
    """The container prefix of a URL: ``scheme://bucket/`` (the file's folder for file://)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return url.rsplit("/", 1)[0] + "/"
    return f"{parts.scheme}://{parts.netloc}/"


def virtual_chunk_containers(refs) -> list:
    """The Icechunk ``VirtualChunkContainer``s a repository needs to hold ``refs``' chunks (one
    per bucket, host or local folder), to give ``RepositoryConfig.set_virtual_chunk_container``
    (and ``authorize_virtual_chunk_access`` when opening the repository)."""
    icechunk = _require()
    out = {}
    for url in refs.to_references().index.urls:
        prefix = _prefix(url)
        if prefix in out:
            continue
        parts = urlsplit(prefix)
        if parts.scheme == "file":
            store = icechunk.local_filesystem_store(parts.path)
        elif parts.scheme in ("http", "https"):
            store = icechunk.http_store()
        elif parts.scheme in ("s3", "s3a"):
            store = icechunk.s3_store()
        elif parts.scheme in ("gs", "gcs"):
            store = icechunk.gcs_store()
        else:
            raise ValueError(f"no Icechunk container kind for {url!r}")
        out[prefix] = icechunk.VirtualChunkContainer(prefix, store)
    return list(out.values())


def _checksum(record: dict):
    if record.get("etag"):
        return str(record["etag"])
    mtime = record.get("mtime")
    if isinstance(mtime, (int, float)):
        # Icechunk keeps whole seconds: the file's own time, with its fraction, must not be
        # after the recorded one
        return datetime.datetime.fromtimestamp(math.ceil(mtime), tz=datetime.UTC)
    return None


def to_icechunk(refs, store, group: str | None = None, *, checksums: bool = True) -> None:
    """Write the reference set ``refs`` into the Icechunk store ``store`` (a writable
    session's ``.store``), under ``group`` (the root when None), as virtual chunks; commit
    the session afterwards.  ``checksums``: record each file's ETag or modification time from
    the scan, so Icechunk refuses chunks of a file that changed since.  The repository must
    have a virtual chunk container for each URL (:func:`virtual_chunk_containers`)."""
    _require()
    from zarr.core.buffer import cpu

    refs = refs.to_references() if hasattr(refs, "to_references") else refs
    index = refs.index
    base = (group or "").strip("/")
    sources = refs.sources if checksums else {}
    urls = np.array(index.urls + [""], dtype=object)  # the last: no chunk there
    docs, keys, _ = v3_form(refs)  # a v2 set's chunks are read where they are

    def put(key, data: bytes):
        _sync(store.set(f"{base}/{key}" if base else key, cpu.Buffer.from_bytes(data)))

    for path, doc in docs.items():
        doc = {k: v for k, v in doc.items() if k != "consolidated_metadata"}
        put(f"{path}/{ZARR_JSON}" if path else ZARR_JSON, json.dumps(doc).encode())
        if doc.get("node_type") != "array":
            continue
        grid, ids, offs, lens = grid_refs(index, path, doc, keys.get(path))
        at_url = urls[np.where(ids >= 0, ids, len(urls) - 1).reshape(-1)]
        where = f"{base}/{path}" if base else path
        # one call per file: Icechunk takes one checksum per call
        for uid in np.unique(ids[ids >= 0]).tolist():
            url = str(urls[uid])
            locs = np.where(at_url == url, at_url, "").tolist()
            failed = store.set_virtual_refs_arr(
                "/" + where, grid, locs, offs.reshape(-1), lens.reshape(-1),
                checksum=_checksum(sources.get(url) or {}))
            if failed:
                raise ReferenceFormatError(f"Icechunk refused {len(failed)} chunk references "
                                           f"to {url!r} (no virtual chunk container for it?)",
                                           key=path)
        here, there = keys.get(path) or _key_encoding(doc), _key_encoding(doc)
        for flat in np.flatnonzero(ids == INLINE).tolist():  # as the zarr.json keys them
            at = np.unravel_index(flat, grid)
            put(chunk_key(path, there, at), bytes(index.inline(chunk_key(path, here, at))))


async def _array_chunks(store, path: str):
    out = []
    async for batch in store.array_chunk_iterator(path):
        out.append(batch)
    return out


def _verify(store, firsts: dict) -> None:
    """One chunk of each source file read through Icechunk, which checks the file's checksum
    and that the session may read its container."""
    from zarr.core.buffer import default_buffer_prototype

    async def one(key):
        return await store.get(key, default_buffer_prototype())

    async def every():
        return await asyncio.gather(*(one(k) for k in firsts.values()), return_exceptions=True)

    for (url, key), res in zip(firsts.items(), _sync(every())):
        if not isinstance(res, BaseException):
            continue
        text = reason(res).split("\n", 1)[0]
        if "checksum" in text and "changed" in text:
            raise SourceChangedError(f"{url!r} changed since Icechunk recorded it (chunk "
                                     f"{key!r}): {text}")
        if "authoriz" in text or "container" in text:
            raise ForbiddenSourceError(f"Icechunk may not read {url!r} (chunk {key!r}): {text}")
        raise FetchError(key, url, 0, 0, cause=res)


def from_icechunk(store, *, verify: bool = True) -> References:
    """The Icechunk store ``store`` (a session's ``.store``) as :class:`chunkview.References`
    (module docstring).  ``verify``: read one chunk of each source file through Icechunk
    first, keeping its checks of checksums and authorized containers."""
    _require()
    from zarr.core.buffer import default_buffer_prototype

    async def get(key):
        buf = await store.get(key, default_buffer_prototype())
        return None if buf is None else buf.to_bytes()

    async def documents():
        """``{path: zarr.json bytes}``, found from the groups down (never listing chunks)."""
        out, todo = {}, [""]
        while todo:
            path = todo.pop()
            raw = await get(f"{path}/{ZARR_JSON}" if path else ZARR_JSON)
            if raw is None:
                continue
            out[path] = raw
            if b'"group"' in raw:
                async for name in store.list_dir(f"{path}/" if path else ""):
                    name = name.rstrip("/")
                    if name != ZARR_JSON:
                        todo.append(f"{path}/{name}" if path else name)
        return out

    async def gather(keys):
        return await asyncio.gather(*(get(k) for k in keys))

    index = ChunkIndex()
    docs = {}
    firsts: dict = {}
    native: list = []
    for path, raw in sorted(_sync(documents()).items()):
        try:
            docs[path] = doc = json.loads(raw)
        except (TypeError, ValueError) as e:
            raise ReferenceFormatError(f"invalid JSON metadata: {e}",
                                       key=f"{path}/{ZARR_JSON}") from None
        if doc.get("node_type") != "array":
            continue
        enc = _key_encoding(doc)
        ndim = len(doc.get("shape") or ())
        for coords, kinds, paths, offs, lens, inlined in _sync(_array_chunks(store, "/" + path)):
            coords = np.asarray(coords, dtype=np.int64).reshape(len(kinds), ndim)
            kinds = np.asarray(kinds)
            virtual = np.flatnonzero(kinds == 2)
            if virtual.size:
                names, ids = np.unique(np.asarray([paths[i] for i in virtual.tolist()],
                                                  dtype=object), return_inverse=True)
                names = [str(n) for n in names]
                if ndim:
                    index.add_grid(f"{path}/{enc[0]}" if path else enc[0], coords[virtual],
                                   ids.astype(np.int64), np.asarray(offs)[virtual],
                                   np.asarray(lens)[virtual], names, sep=enc[1], shrink=False)
                else:
                    index.set(chunk_key(path, enc, ()), names[0], int(offs[virtual[0]]),
                              int(lens[virtual[0]]))
                for n, first in zip(names, np.unique(ids, return_index=True)[1].tolist()):
                    firsts.setdefault(n, chunk_key(path, enc, coords[virtual[first]]))
            for i, data in inlined.items():
                index.set_inline(chunk_key(path, enc, coords[i]), bytes(data))
            native += [chunk_key(path, enc, coords[i]) for i in np.flatnonzero(kinds == 1)]
    if not docs:
        raise ReferenceFormatError("no zarr.json in the Icechunk store")
    for k, data in zip(native, _sync(gather(native))):  # native chunks: through the store
        index.set_inline(k, data or b"")
    if verify and firsts:
        _verify(store, firsts)
        # what each file is now that Icechunk passed it: a change while the references are
        # open is then caught on read (check_source=), as for a scan's records
        records = {u: r for u in firsts if (r := _record_now(u))}
        if records:
            index.set_inline(SOURCES_KEY, json.dumps(records).encode())
    put_docs(index, docs)
    index.shrink()
    return References(index)


def _record_now(url: str) -> dict:
    """The size (and ETag or modification time) of ``url`` now; ``{}`` where it cannot be
    asked (a store needing credentials fsspec is not given)."""
    try:
        if is_remote_url(url):
            fs, path = url_to_fs(url)
            return describe(fs.info(path))
        return local_record(local_path(url))
    except Exception:  # noqa: BLE001 - then Icechunk's check at open is the only one
        return {}


__all__ = ["to_icechunk", "from_icechunk", "virtual_chunk_containers"]
