"""Kerchunk reference dicts and JSON (spec v0 and v1) in and out of the C index.

``index_from_dict`` / ``index_from_json`` build a :class:`chunkview.ChunkIndex` (templates
rendered, ``gen`` expanded) from what kerchunk writes; ``inline_text`` writes inline bytes back
as kerchunk does.  Everything that holds references in memory builds on these.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import numpy as np

from chunkview._index import ChunkIndex
from chunkview.errors import ReferenceFormatError
from chunkview.keys import ZMETADATA_KEY, is_reserved
from chunkview.refs import templates as _templates


def index_from_dict(refs: Mapping, template_overrides: dict | None = None,
                    source: str | None = None) -> tuple[ChunkIndex, dict]:
    """A kerchunk dict, spec v1 (``{"version": 1, "refs": ...}``) or v0 -> ``(index,
    templates)``."""
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
        set_value(index, key, value, source)
    _templates.render_index_urls(index, templates, source=source)
    _templates.expand_gen(index, gens, templates, source=source)
    lift_reserved(index)
    return index, templates


_ZARR_META = (".zarray", ".zattrs", ".zgroup")


def consolidate(refs: dict, meta_keys=None) -> dict:
    """A kerchunk ``refs`` body made readable as consolidated zarr: ``.zmetadata`` holds every
    ``.zarray``/``.zattrs``/``.zgroup`` parsed (what zarr and xarray read with
    ``consolidated=True``), and chunkview's own keys (``.cv*``) move into its ``"chunkview"``
    object, where zarr does not look (zarr reads ``.zmetadata``'s ``"metadata"`` as
    ``<path>/.<kind>`` and lists other keys as nodes).  :func:`lift_reserved` moves them back
    on load.  The body is returned unchanged when some metadata is not inline JSON.
    ``meta_keys``: the keys whose last part starts with "." (the C index lists them without
    a pass over every chunk key)."""
    meta, extra = {}, {}
    for key in (refs if meta_keys is None else meta_keys):
        value = refs.get(key)
        last = key.rsplit("/", 1)[-1]
        if last in _ZARR_META or is_reserved(last):
            if not isinstance(value, str) or value.startswith("base64:"):
                return refs
            try:
                parsed = json.loads(value)
            except (ValueError, RecursionError):
                return refs
            if last in _ZARR_META:
                meta[key] = parsed
            else:  # kept as its text: loading gives back the same bytes
                extra[key] = value
    if not meta:
        return refs
    # an array zarr-python has no data type for would make it refuse the whole group: left
    # out, it is still a key and fails alone, as without consolidated metadata
    set_aside_unreadable(meta)
    out = {k: v for k, v in refs.items() if k not in extra and k != ZMETADATA_KEY}
    doc: dict = {"zarr_consolidated_format": 1, "metadata": meta}
    if extra:
        doc["chunkview"] = extra
    out[ZMETADATA_KEY] = json.dumps(doc, separators=(",", ":"))
    return out


def set_aside_unreadable(meta: dict) -> dict:
    """Remove from consolidated ``meta`` the arrays zarr-python cannot parse (their
    ``.zarray`` and ``.zattrs``), which would make zarr refuse the whole group; return them."""
    out = {}
    for key in [k for k in meta if k.endswith(".zarray") and not zarr_reads(meta[k])]:
        out[key] = meta.pop(key)
        attrs = key[:-len(".zarray")] + ".zattrs"
        if attrs in meta:
            out[attrs] = meta.pop(attrs)
    return out


def zarr_reads(zarray) -> bool:
    """Whether zarr-python accepts this ``.zarray`` (it has no data type for records with
    nested records or sub-arrays, for one)."""
    try:
        from zarr.core.metadata.v2 import ArrayV2Metadata
    except ImportError:  # pragma: no cover - another zarr: nothing to check against
        return True
    try:
        ArrayV2Metadata.from_dict(dict(zarray))
    except Exception:  # noqa: BLE001 - whatever zarr refuses
        return False
    return True


def lift_reserved(index: ChunkIndex) -> None:
    """chunkview's own keys kept in ``.zmetadata``'s ``"chunkview"`` object (see
    :func:`consolidate`) made keys again; keys already present win."""
    if ZMETADATA_KEY not in index:
        return
    try:
        raw = index.inline(ZMETADATA_KEY)
    except (KeyError, ValueError, TypeError):
        return  # a reference to a file, not inline JSON: nothing of chunkview's there
    if raw is None or b'"chunkview"' not in raw:
        return
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return  # not chunkview's: zarr reports bad consolidated metadata itself
    extra = doc.get("chunkview") if isinstance(doc, dict) else None
    if not isinstance(extra, dict):
        return
    for key, value in extra.items():
        if isinstance(key, str) and is_reserved(key.rsplit("/", 1)[-1]) and key not in index:
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            index.set_inline(key, text.encode())


def index_from_json(data: bytes, template_overrides: dict | None = None,
                    source: str | None = None) -> tuple[ChunkIndex, dict]:
    """Kerchunk JSON text (spec v0 or v1), parsed by the C parser -> ``(index, templates)``."""
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
    except RecursionError:
        raise ReferenceFormatError("invalid reference JSON: 'templates' or 'gen' nests too "
                                   "deeply", source=source) from None
    templates = _templates.check_templates(templates, template_overrides, source=source)
    for raw_key, raw_value in info["deferred"]:
        key = json.loads(raw_key)
        try:
            value = _dumps_like_fsspec(json.loads(raw_value))
        except RecursionError:
            raise ReferenceFormatError("invalid reference JSON: the value nests too deeply",
                                       key=key, source=source) from None
        index.set_inline(key, value)
    _templates.render_index_urls(index, templates, source=source)
    _templates.expand_gen(index, gens, templates, source=source)
    lift_reserved(index)
    return index, templates


def _dumps_like_fsspec(obj) -> bytes:
    """Object-valued references become text as fsspec stores them (it uses ujson when
    installed, which writes compact JSON), so both tools serve identical bytes."""
    from fsspec.implementations import reference as _ref

    return _ref.json.dumps(obj).encode()




def inline_text(data: bytes) -> str:
    """Inline bytes as kerchunk writes them: text when it is UTF-8, else ``base64:...``."""
    if not data.startswith(b"base64:"):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return "base64:" + base64.b64encode(data).decode("ascii")


def set_value(index: ChunkIndex, key, value, source, raw_bytes=False) -> None:
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
    elif callable(getattr(value, "to_bytes", None)) and not isinstance(value, int):
        # a zarr Buffer (what kerchunk's MultiZarrToZarr(...).out holds after zarr wrote it)
        index.set_inline(key, bytes(value.to_bytes()))
    else:
        raise ReferenceFormatError(f"invalid reference value of type {type(value).__name__}",
                                   key=key, source=source)


def _check_url(url, key, source):
    if url is not None and not isinstance(url, str):
        raise ReferenceFormatError(f"url must be a string, not {type(url).__name__}", key=key,
                                   source=source)




__all__ = ["index_from_dict", "index_from_json", "inline_text", "set_value"]
