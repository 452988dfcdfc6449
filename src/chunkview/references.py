"""Reference sets: ``chunkview.load`` and ``References``.

A reference set maps keys (``"t2m/0.1.2"``, ``".zgroup"``) to references in fsspec's forms:
inline ``bytes``, ``[url]`` (a whole file) or ``[url, offset, length]``.  In memory it lives in
the C index (:class:`chunkview.ChunkIndex`); parquet reference sets can also stay on disk and be
read lazily (:class:`chunkview.parquet.LazyParquetReferences`).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import ItemsView, Iterator, Mapping
from typing import Any

import numpy as np

from chunkview import _templates
from chunkview._index import INLINE, MISSING, WHOLE, ChunkIndex
from chunkview.errors import ReferenceFormatError

NATIVE_SUFFIXES = (".cvref",)


def _dumps_like_fsspec(obj) -> bytes:
    """Object-valued references become text as fsspec stores them (it uses ujson when
    installed, which writes compact JSON), so both tools serve identical bytes."""
    from fsspec.implementations import reference as _ref

    return _ref.json.dumps(obj).encode()


PARQUET_SUFFIXES = (".parq", ".parquet")
NATIVE_MAGIC = b"\x89CVIDX\r\n"


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
        self._dirs = None

    # ----------------------------------------------------------------- constructors

    @classmethod
    def from_dict(cls, refs: Mapping, *, template_overrides: dict | None = None,
                  source: str | None = None) -> References:
        """Build from a kerchunk dict: spec v1 (``{"version": 1, "refs": ...}``) or v0."""
        if not isinstance(refs, Mapping):
            raise ReferenceFormatError(f"a reference set must be a dict, not {type(refs).__name__}",
                                       source=source)
        version = refs.get("version", None)
        if version is None:
            body, templates, gens = refs, {}, []
        elif version == 1 and not isinstance(version, bool):
            body = refs.get("refs", {})
            templates = refs.get("templates", {})
            gens = refs.get("gen", []) or []
            if not isinstance(body, Mapping):
                raise ReferenceFormatError("'refs' must be an object", source=source)
        else:
            raise ReferenceFormatError(f"unknown reference spec version {version!r}", source=source)
        templates = _templates.check_templates(templates, template_overrides, source=source)
        index = ChunkIndex()
        for key, value in body.items():
            _set_value(index, key, value, source)
        _templates.render_index_urls(index, templates, source=source)
        _templates.expand_gen(index, gens, templates, source=source)
        return cls(index, templates=templates, source=source)

    @classmethod
    def from_json(cls, data: bytes, *, template_overrides: dict | None = None,
                  source: str | None = None) -> References:
        """Parse kerchunk JSON text (spec v0 or v1) with the C parser."""
        try:
            index, info = ChunkIndex.from_json(data)
        except ReferenceFormatError as e:
            raise ReferenceFormatError(f"invalid reference JSON: {e.msg}", pos=e.pos, key=e.key,
                                       source=source) from None
        try:
            templates = json.loads(info["templates"]) if info["templates"] else {}
            gens = json.loads(info["gen"]) if info["gen"] else []
        except json.JSONDecodeError as e:  # pragma: no cover - the C parser validated the text
            raise ReferenceFormatError(f"invalid reference JSON: {e}", source=source) from None
        templates = _templates.check_templates(templates, template_overrides, source=source)
        for raw_key, raw_value in info["deferred"]:
            key = json.loads(raw_key)
            index.set_inline(key, _dumps_like_fsspec(json.loads(raw_value)))
        _templates.render_index_urls(index, templates, source=source)
        _templates.expand_gen(index, gens, templates, source=source)
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
        return _ItemsView(self)

    def __setitem__(self, key: str, value) -> None:
        _set_value(self._index, key, value, self.source, raw_bytes=True)
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

    def to_dict(self, *, templates: bool = True) -> dict:
        """The kerchunk spec v1 dict.  URLs starting with a template's value are written with
        the template (``{{u}}...``) when ``templates`` is true."""
        subs = _templates.reverse_table(self.templates) if templates else []
        url_text = [_templates.apply_reverse(u, subs) for u in self.urls]
        keys, ids, offs, lens = self._index.to_arrays()
        refs: dict[str, Any] = {}
        ids_l, offs_l, lens_l = ids.tolist(), offs.tolist(), lens.tolist()
        whole = int(WHOLE)
        for i, key in enumerate(keys):
            uid = ids_l[i]
            if uid == INLINE:
                refs[key] = _inline_text(self._index.inline(key))
            elif lens_l[i] == whole:
                refs[key] = [url_text[uid]]
            else:
                refs[key] = [url_text[uid], offs_l[i], lens_l[i]]
        out: dict[str, Any] = {"version": 1}
        used = {name for name, _ in subs if any(("{{%s}}" % name) in u for u in url_text)}
        if used:
            out["templates"] = {k: v for k, v in self.templates.items() if k in used}
        out["refs"] = refs
        return out

    def save(self, path, format: str | None = None, *, storage_options: dict | None = None,
             **kwargs) -> None:
        """Write to ``path`` as JSON v1 (``.json``), parquet (``.parq``/``.parquet`` or
        ``format="parquet"``: fsspec's ``LazyReferenceMapper`` layout) or the native format
        (``.cvref`` or ``format="native"``)."""
        import fsspec

        fmt = format or guess_format(str(path))
        if fmt == "json":
            text = json.dumps(self.to_dict(**kwargs), separators=(",", ":")).encode()
            with fsspec.open(str(path), "wb", **(storage_options or {})) as f:
                f.write(text)
        elif fmt == "native":
            data = self._index.tobytes()
            with fsspec.open(str(path), "wb", **(storage_options or {})) as f:
                f.write(data)
        elif fmt == "parquet":
            from chunkview import parquet

            parquet.write_parquet(self, str(path), storage_options=storage_options, **kwargs)
        else:
            raise ValueError(f"unknown reference format {fmt!r} (json, parquet, native)")


class _ItemsView(ItemsView):
    """Items view that iterates the C index directly (``dict(refs.items())`` works)."""

    def __iter__(self):
        return self._mapping._index.items()


def _rebuild(data, templates, source, remote_origin=False):
    refs = References(ChunkIndex.frombytes(data), templates=templates, source=source)
    refs.remote_origin = remote_origin
    return refs


SOURCES_KEY = ".cvsources"
# per array or group: what netCDF readers see that zarr metadata cannot say (attribute dtypes,
# implicit fill values, dimensions without a variable), written by the scanners
NETCDF_KEY = ".cvnetcdf"


def sources_of(refs) -> dict:
    """The ``.cvsources`` record of a reference set (any Mapping of references)."""
    raw = refs.get(SOURCES_KEY) if hasattr(refs, "get") else None
    if raw is None or not isinstance(raw, (bytes, str)):
        return {}
    try:
        d = json.loads(raw)
    except ValueError:
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


def _inline_text(data: bytes) -> str:
    """Inline bytes as kerchunk writes them: text when it is UTF-8, else ``base64:...``."""
    if not data.startswith(b"base64:"):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return "base64:" + base64.b64encode(data).decode("ascii")


def _set_value(index: ChunkIndex, key, value, source, raw_bytes=False) -> None:
    """Insert one reference given in any of fsspec's in-memory forms.  Bytes starting with
    ``base64:`` are decoded as fsspec does, unless ``raw_bytes`` (bytes are the data)."""
    if not isinstance(key, str):
        raise ReferenceFormatError(f"keys must be strings, not {type(key).__name__}",
                                   key=repr(key), source=source)
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ReferenceFormatError("key is not valid UTF-8", key=key, source=source) from None
    if isinstance(value, str):
        if value.startswith("base64:"):
            try:
                data = base64.b64decode(value[7:], validate=True)
            except ValueError as e:
                raise ReferenceFormatError(f"invalid base64 data: {e}", key=key,
                                           source=source) from None
        else:
            data = value.encode("utf-8", "surrogatepass")
        index.set_inline(key, data)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if data.startswith(b"base64:") and not raw_bytes:
            try:
                data = base64.b64decode(data[7:], validate=True)
            except ValueError as e:
                raise ReferenceFormatError(f"invalid base64 data: {e}", key=key,
                                           source=source) from None
        index.set_inline(key, data)
    elif isinstance(value, dict):
        index.set_inline(key, _dumps_like_fsspec(value))
    elif isinstance(value, (list, tuple)):
        if len(value) == 1:
            url = value[0]
            _check_url(url, key, source)
            index.set(key, url if url is not None else "")
        elif len(value) == 3:
            url, off, length = value
            _check_url(url, key, source)
            for name, v in (("offset", off), ("length", length)):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise ReferenceFormatError(f"{name} must be an integer, not {v!r}", key=key,
                                               source=source)
                if v < 0 or v >= 2**63:
                    raise ReferenceFormatError(f"{name} {v} out of range", key=key, source=source)
            if off + length >= 2**63:
                raise ReferenceFormatError(f"offset + length overflows ({off} + {length})",
                                           key=key, source=source)
            index.set(key, url if url is not None else "", int(off), int(length))
        else:
            raise ReferenceFormatError(
                f"a reference list must be [url] or [url, offset, length], got {len(value)} items",
                key=key, source=source)
    else:
        raise ReferenceFormatError(f"invalid reference value of type {type(value).__name__}",
                                   key=key, source=source)


def _check_url(url, key, source):
    if url is not None and not isinstance(url, str):
        raise ReferenceFormatError(f"url must be a string, not {type(url).__name__}", key=key,
                                   source=source)


def guess_format(path: str) -> str:
    p = path.rstrip("/")
    if p.endswith(".json"):
        return "json"
    if p.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if p.endswith(NATIVE_SUFFIXES):
        return "native"
    return "json"


def load(fo, *, target_protocol: str | None = None, target_options: dict | None = None,
         template_overrides: dict | None = None, format: str | None = None,
         lazy: bool | None = None, cache_size: int = 128, **kwargs) -> References:
    """Load a reference set.

    ``fo`` is a kerchunk dict (spec v0/v1), a :class:`References`, or a path/URL (any fsspec
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
    if isinstance(fo, os.PathLike):
        fo = os.fspath(fo)
    if not isinstance(fo, str):
        raise TypeError(f"cannot load references from {type(fo).__name__}")

    import fsspec

    opts = dict(target_options or {})
    if target_protocol:
        opts["protocol"] = target_protocol
    fs, path = fsspec.core.url_to_fs(fo, **opts)
    refs = _load_from(fs, path, fo, format, template_overrides, lazy, cache_size)
    refs.remote_origin = not _is_local(fs) and _protocol(fs) != "memory"
    return refs


def _protocol(fs) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def _load_from(fs, path, fo, format, template_overrides, lazy, cache_size):
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
        from chunkview import parquet

        lazy_refs = parquet.LazyParquetReferences(path, fs=fs, cache_size=cache_size, source=fo)
        return lazy_refs if lazy else lazy_refs.to_references()
    if fmt == "native" and _is_local(fs):
        return _open_native_mmap(path, fo)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise OSError(f"cannot read reference set {fo!r}: {e}") from e
    if fmt == "native" or data.startswith(NATIVE_MAGIC):
        return References.from_native(data, source=fo)
    if fmt != "json":
        raise ValueError(f"unknown reference format {fmt!r}")
    return References.from_json(data, template_overrides=template_overrides, source=fo)


def _is_local(fs) -> bool:
    return _protocol(fs) in ("file", "local")


def _open_native_mmap(path: str, source: str) -> References:
    import mmap

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ReferenceFormatError("empty native index file", source=source)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return References.from_native(mm, source=source)


__all__ = ["References", "load", "INLINE", "MISSING", "WHOLE"]
