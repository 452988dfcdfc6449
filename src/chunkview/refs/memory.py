"""``References``: a reference set in memory, held in the C index (:class:`chunkview.ChunkIndex`).

It follows :class:`chunkview.refs.protocol.ReferenceSet`; kerchunk dicts and JSON become one
here (:meth:`References.from_dict`, :meth:`~References.from_json`) and it saves itself as JSON,
native or (through :mod:`chunkview.refs.parquet.write`) parquet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from chunkview._index import INLINE, MISSING, WHOLE, ChunkIndex
from chunkview.errors import ReferenceFormatError
from chunkview.refs import templates as _templates
from chunkview.refs.formats import guess_format
from chunkview.refs.kerchunk import (
    consolidate,
    index_from_dict,
    index_from_json,
    inline_text,
    set_value,
)
from chunkview.refs.parquet.write import write_parquet
from chunkview.refs.protocol import ItemsViewOf, same_references, sources_of


class References(Mapping):
    """A set of references, held in the C index.

    Behaves as a read-mostly ``Mapping[str, bytes | list]`` in fsspec's reference forms and adds
    batch lookup (:meth:`lookup_many`), saving (:meth:`save`) and the kerchunk v1 dict
    (:meth:`to_dict`).  ``templates`` are only used to shorten URLs on output.
    """

    def __init__(self, index: ChunkIndex | None = None, *, templates: dict | None = None,
                 source: str | None = None):
        self._index = index if index is not None else ChunkIndex()
        self.templates = dict(templates or {})
        self.source = source
        self.unsupported: dict = {}  # path -> why, for datasets a scan could not map
        self.remote_origin = False  # loaded from a remote location: no local files by default
        self.parquet: tuple | None = None  # (URL, storage options, record size) it came from
        self._dirs = None

    # ----------------------------------------------------------------- constructors

    @classmethod
    def from_dict(cls, refs: Mapping, *, template_overrides: dict | None = None,
                  source: str | None = None) -> References:
        """Build from a kerchunk dict: spec v1 (``{"version": 1, "refs": ...}``) or v0."""
        index, templates = index_from_dict(refs, template_overrides, source)
        return cls(index, templates=templates, source=source)

    @classmethod
    def from_json(cls, data: bytes, *, template_overrides: dict | None = None,
                  source: str | None = None) -> References:
        """Parse kerchunk JSON text (spec v0 or v1) with the C parser."""
        index, templates = index_from_json(data, template_overrides, source)
        return cls(index, templates=templates, source=source)

    @classmethod
    def from_native(cls, data, *, copy: bool = False, source: str | None = None) -> References:
        """Open the native format (bytes, memoryview or mmap; read in place unless ``copy``)."""
        try:
            index = ChunkIndex.frombytes(data, copy=copy, verify=True)
        except ReferenceFormatError as e:
            raise type(e)(e.msg, source=source) from None
        return cls(index, source=source)

    # ----------------------------------------------------------------- mapping

    @property
    def index(self) -> ChunkIndex:
        """The C index holding every reference."""
        return self._index

    @property
    def urls(self) -> list[str]:
        """Interned URLs; ``lookup_many`` returns ids into this list."""
        return self._index.urls

    def __getitem__(self, key: str):
        return self._index[key]

    def get(self, key, default=None):
        return self._index.get(key, default)

    def __contains__(self, key) -> bool:
        try:
            return key in self._index
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def items(self):
        return ItemsViewOf(self)

    def _iter_items(self):
        return self._index.items()

    def to_references(self) -> References:
        """This set (already in memory)."""
        return self

    def __setitem__(self, key: str, value) -> None:
        set_value(self._index, key, value, self.source, raw_bytes=True)
        self._dirs = None

    def __delitem__(self, key: str) -> None:
        del self._index[key]
        self._dirs = None

    def __eq__(self, other) -> bool:
        return same_references(self, self.items(), other)

    __hash__ = None  # mutable mapping

    def __repr__(self) -> str:
        src = f" from {self.source!r}" if self.source else ""
        return f"<chunkview.References: {len(self)} references, {len(self.urls)} URLs{src}>"

    def __reduce__(self):
        return (_rebuild, (self._index.tobytes(), self.templates, self.source,
                           self.remote_origin))

    @property
    def sources(self) -> dict:
        """What the scan recorded of each referenced file (``{url: {"size", "etag" or
        "mtime"}}``, from the ``.cvsources`` key), used by ``check_source=``; ``{}`` when
        nothing was recorded."""
        return sources_of(self)

    def lookup_many(self, keys, threads=None):
        """Batch lookup: ``(url_ids, offsets, lengths)`` numpy arrays; url id ``INLINE`` (-1)
        marks inline data (fetch with ``self[key]``), ``MISSING`` (-2) an absent key, length
        ``WHOLE`` a whole file.  A long batch (32,768 keys or more) is looked up in ``threads``
        threads (default: one per CPU)."""
        return self._index.lookup_many(keys, threads=threads)

    def size_of(self, key: str) -> int | None:
        """Byte size of a reference (None for a whole file, whose size the target knows)."""
        uid, off, length = self._index.lookup(key)
        if uid == INLINE:
            return len(self._index.inline(key))
        if length == WHOLE:
            return None
        return int(length)

    # ----------------------------------------------------------------- directories

    def listing(self) -> dict:
        """``{dir: {"dirs": set, "files": list}}`` for every directory ("" is the root)."""
        if self._dirs is None:
            dirs: dict[str, dict] = {"": {"dirs": set(), "files": []}}
            for key in self:
                parent = key.rsplit("/", 1)[0] if "/" in key else ""
                entry = dirs.get(parent)
                if entry is None:
                    # register the new directory and its missing ancestors
                    child = parent
                    while True:
                        up = child.rsplit("/", 1)[0] if "/" in child else ""
                        known = up in dirs
                        dirs.setdefault(child, {"dirs": set(), "files": []})
                        dirs.setdefault(up, {"dirs": set(), "files": []})["dirs"].add(child)
                        if known or not child:
                            break
                        child = up
                    entry = dirs[parent]
                entry["files"].append(key)
            self._dirs = dirs
        return self._dirs

    # ----------------------------------------------------------------- output

    def to_dict(self, *, templates: bool = True, consolidated: bool = False) -> dict:
        """The kerchunk spec v1 dict.  URLs starting with a template's value are written with
        the template (``{{u}}...``) when ``templates`` is true.  ``consolidated``: with zarr's
        consolidated metadata in ``.zmetadata`` and chunkview's own keys moved inside it
        (:func:`chunkview.refs.kerchunk.consolidate`), as :meth:`save` writes JSON."""
        subs = _templates.reverse_table(self.templates) if templates else []
        url_text = [_templates.apply_reverse(u, subs) for u in self.urls]
        keys, ids, offs, lens = self._index.to_arrays()
        refs: dict[str, Any] = {}
        ids_l, offs_l, lens_l = ids.tolist(), offs.tolist(), lens.tolist()
        whole = int(WHOLE)
        for i, key in enumerate(keys):
            uid = ids_l[i]
            if uid == INLINE:
                refs[key] = inline_text(self._index.inline(key))
            elif lens_l[i] == whole:
                refs[key] = [url_text[uid]]
            else:
                refs[key] = [url_text[uid], offs_l[i], lens_l[i]]
        out: dict[str, Any] = {"version": 1}
        used = {name for name, _ in subs if any(("{{%s}}" % name) in u for u in url_text)}
        if used:
            out["templates"] = {k: v for k, v in self.templates.items() if k in used}
        out["refs"] = consolidate(refs, self._index.meta_keys()) if consolidated else refs
        return out

    def save(self, path, format: str | None = None, *, storage_options: dict | None = None,
             **kwargs) -> None:
        """Write to ``path`` as JSON v1 (``.json``), parquet (``.parq``/``.parquet`` or
        ``format="parquet"``: fsspec's ``LazyReferenceMapper`` layout) or the native format
        (``.cvref`` or ``format="native"``).  Local JSON and native files are replaced
        whole (written beside, then renamed), so readers holding the old file keep working."""
        fmt = format or guess_format(str(path))
        if fmt == "json":
            kwargs.setdefault("consolidated", True)
            text = json.dumps(self.to_dict(**kwargs), separators=(",", ":")).encode()
            _write_whole(path, text, storage_options)
        elif fmt == "native":
            _write_whole(path, self._index.tobytes(), storage_options)
        elif fmt == "parquet":
            write_parquet(self, str(path), storage_options=storage_options, **kwargs)
        else:
            raise ValueError(f"unknown reference format {fmt!r} (json, parquet, native)")


    def flush(self, base_url=None, storage_options: dict | None = None) -> None:
        """Write the references back to the parquet reference set they were loaded from (or
        to ``base_url``), as fsspec's ``LazyReferenceMapper.flush`` does: how kerchunk and
        zarr write parquet references through a reference filesystem."""
        if base_url is None:
            if self.parquet is None:
                raise ValueError("these references were not loaded from a parquet reference "
                                 "set: give base_url, or use save()")
            base_url, opts, record_size = self.parquet
            storage_options = opts if storage_options is None else storage_options
        else:
            record_size = self.parquet[2] if self.parquet else 100_000
        write_parquet(self, str(base_url), storage_options=storage_options,
                      record_size=record_size)
        self.parquet = (str(base_url), dict(storage_options or {}), record_size)


def _write_whole(path, data: bytes, storage_options) -> None:
    """Write ``data`` as the file ``path``.  A local file is written beside it and renamed
    over it: a reader that has the old file open or memory-mapped keeps reading the old
    bytes instead of faulting on a file truncated under it."""
    import os
    import tempfile

    import fsspec

    from chunkview.io.resolve import is_local_fs

    fs, fpath = fsspec.core.url_to_fs(str(path), **(storage_options or {}))
    if not is_local_fs(fs):
        with fs.open(fpath, "wb") as f:  # object stores replace an object whole anyway
            f.write(data)
        return
    folder = os.path.dirname(os.path.abspath(fpath)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".chunkview-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:  # the mode the file had, else what open() would give it (mkstemp makes 0600)
            mode = os.stat(fpath).st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, fpath)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:

    try:
        with open("/proc/self/status") as f:  # Linux: read without changing it
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _rebuild(data, templates, source, remote_origin=False):
    refs = References(ChunkIndex.frombytes(data), templates=templates, source=source)
    refs.remote_origin = remote_origin
    return refs


__all__ = ["References", "INLINE", "MISSING", "WHOLE"]
