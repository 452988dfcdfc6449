"""chunkview inside VirtualiZarr 2.x (``pip install 'chunkview[virtualizarr]'``).

* :class:`ChunkviewParser` is a VirtualiZarr parser (``parser(url, registry) ->
  ManifestStore``) built on chunkview's own scanner: ``virtualizarr.open_virtual_dataset(url,
  registry=registry, parser=ChunkviewParser())`` for HDF5, NetCDF4 and NetCDF3 files.  The
  file is read through the registry's store for ``url`` (obstore's ``head`` and
  ``get_range``, in 1 MiB blocks), or through fsspec where the registry has none.
* :func:`to_manifest_store` presents any chunkview reference set as a ``ManifestStore``.
* :func:`from_virtualizarr` turns a ``ManifestStore``, a ``ManifestGroup`` or a virtual
  dataset (``ManifestArray`` variables) into :class:`chunkview.References`, so what any
  VirtualiZarr parser makes is read by chunkview's readers.

How chunkview's sets map onto VirtualiZarr's model: the array metadata is the Zarr v3 form
chunkview writes (:mod:`chunkview.refs.zarr3`).  What zarr's own codecs cannot say (HDF5
shuffle with trailing bytes, fletcher32, string padding, scale-offset, n-bit, per-chunk filter
masks) is said by chunkview's codecs (``chunkview.hdf5_*``), which zarr finds through its
``zarr.codecs`` entry point wherever chunkview is installed; ``codec_config`` gives their
numcodecs form to VirtualiZarr's kerchunk writer.  Variable-length strings, read at scan time,
are inlined chunks of fixed-width UTF-8 bytes with an ``_Encoding`` attribute (xarray decodes
them to ``str``).  Datasets with no Zarr v3 form (compound types) are left out with a warning,
or an error with ``on_unsupported="raise"``; chunkview's per-URL records (``.cvsources``) have
no place in a ManifestStore and are dropped.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from dataclasses import replace

import numpy as np

from chunkview._index import INLINE, ChunkIndex
from chunkview.errors import ReferenceFormatError, UnsupportedError, missing_extra, reason
from chunkview.io.blocks import ObspecReader
from chunkview.io.resolve import LOCAL_PROTOCOLS, split_protocol
from chunkview.keys import ZARR_JSON
from chunkview.refs.memory import References
from chunkview.refs.zarr3 import (
    _key_encoding,
    _numpy_dtype,
    _parent,
    chunk_key,
    grid_refs,
    group_json,
    put_docs,
    v3_form,
)
from chunkview.scan import scan_one

# what chunkview.scan takes for one file, but the format (a ManifestStore is Zarr v3 whatever
# the set's form) and the fuzz tests' hook
_SCAN_OPTIONS = set(inspect.signature(scan_one).parameters) - {"source", "zarr_format",
                                                                 "_checksums"}


class UnsupportedWarning(UserWarning):
    """Datasets left out of a ManifestStore (``on_unsupported="warn"``), each with why."""


def _require():
    try:
        import virtualizarr  # noqa: F401
    except ImportError:
        raise missing_extra("virtualizarr", "virtualizarr") from None


class ChunkviewParser:
    """A VirtualiZarr parser (``parser(url, registry) -> ManifestStore``) for HDF5, NetCDF4
    and NetCDF3 files, scanning with chunkview.

    ``group``, ``drop_variables``: as VirtualiZarr's ``HDFParser`` takes them.
    ``on_unsupported``: ``"warn"`` (the default) leaves out datasets that have no Zarr v3
    form or no ManifestStore form, warning with why; ``"raise"`` raises
    :class:`chunkview.UnsupportedError` instead.  ``scan_options``: what
    :func:`chunkview.scan` takes (``storage_options`` for fsspec, used where the registry has
    no store for the URL; ``inline_threshold``, ``chunk_bytes``, ``isolate``, ``timeout``).
    """

    def __init__(self, group: str | None = None, drop_variables=None, *,
                 on_unsupported: str = "warn", **scan_options):
        if on_unsupported not in ("warn", "raise"):
            raise ValueError(f"on_unsupported must be 'warn' or 'raise', not {on_unsupported!r}")
        bad = set(scan_options) - _SCAN_OPTIONS
        if bad:
            raise TypeError(f"unknown scan options {sorted(bad)}; chunkview.scan takes "
                            f"{sorted(_SCAN_OPTIONS)}")
        self.group = group
        self.drop_variables = drop_variables
        self.on_unsupported = on_unsupported
        self.scan_options = {"isolate": True, **scan_options}

    def scan(self, url: str, registry=None) -> References:
        """The file's chunkview references (zarr v2 form: :func:`to_manifest_store` presents
        them as Zarr v3 without moving their chunk keys)."""
        return scan_one(self._source(url, registry), **self.scan_options)

    def __call__(self, url: str, registry):
        _require()
        refs = self.scan(url, registry)
        return to_manifest_store(refs, registry=registry, group=self.group,
                                 drop_variables=self.drop_variables,
                                 on_unsupported=self.on_unsupported)

    @staticmethod
    def _source(url: str, registry):
        """What the scanner reads: local files directly (memory-mapped), others through the
        registry's store, or fsspec where the registry has no store for ``url``."""
        protocol, _ = split_protocol(str(url))
        if registry is None or protocol in LOCAL_PROTOCOLS:
            return url
        try:
            store, path = registry.resolve(url)
        except ValueError:
            return url
        return ObspecReader(store, path, url)


# ------------------------------------------------------------------------ references -> VZ


def _norm_url(url: str) -> str:
    from virtualizarr.manifests.manifest import validate_and_normalize_path_to_uri

    return validate_and_normalize_path_to_uri(url)


def _manifest(index: ChunkIndex, path: str, doc: dict, urls: list, keys=None):
    """The ChunkManifest of array ``path`` (chunk references read from the C index as whole
    grids, never one key at a time); ``keys`` as :func:`chunkview.refs.zarr3.grid_refs`
    takes them."""
    from virtualizarr.manifests import ChunkManifest
    from virtualizarr.manifests.manifest import INLINED_CHUNK_PATH, MISSING_CHUNK_PATH

    grid, ids, offs, lens = grid_refs(index, path, doc, keys)
    table = np.array([*urls, MISSING_CHUNK_PATH, INLINED_CHUNK_PATH],
                     dtype=np.dtypes.StringDType())
    pick = np.where(ids >= 0, ids, np.where(ids == INLINE, len(urls) + 1, len(urls)))
    paths = table[pick.reshape(-1)].reshape(grid)
    offs[ids < 0] = 0
    lens[ids < 0] = 0
    inlined = {}
    for flat in np.flatnonzero(ids == INLINE).tolist():
        at = tuple(int(i) for i in np.unravel_index(flat, grid))
        data = bytes(index.inline(chunk_key(path, keys or _key_encoding(doc), at)))
        if data:
            inlined[at] = data
            lens[at] = len(data)
        else:  # an empty inline chunk: read as missing (the fill value)
            paths[at] = MISSING_CHUNK_PATH
    return ChunkManifest.from_arrays(paths=paths, offsets=offs, lengths=lens,
                                     validate_paths=False, inlined=inlined)


def _trimmed(doc: dict, manifest):
    """``(doc, manifest)`` with a chunk longer than its array along the first axis only
    trimmed to the array, as VirtualiZarr's HDFParser does (so that datasets along an
    unlimited dimension, whose chunks HDF5 sizes for growth, can be concatenated).  Only
    possible for a chunk stored raw: the array's part of it is then a prefix of its bytes."""
    shape = doc["shape"]
    chunks = doc["chunk_grid"]["configuration"]["chunk_shape"]
    trimmed = [min(c, max(s, 1)) for c, s in zip(chunks, shape)]
    if trimmed == list(chunks) or trimmed[1:] != list(chunks[1:]) or \
            [c.get("name") for c in doc.get("codecs") or ()] != ["bytes"]:
        return doc, manifest
    from virtualizarr.manifests import ChunkManifest

    length = math.prod(trimmed) * _numpy_dtype(doc["data_type"]).itemsize
    lens = np.asarray(manifest._lengths).copy()
    stored = lens > 0
    if (lens[stored] < length).any():  # a short chunk: keep it as it is, zarr reads it
        return doc, manifest
    lens[stored] = length
    inlined = {at: data[:length] for at, data in manifest._inlined.items()}
    doc = dict(doc, chunk_grid={"name": "regular", "configuration": {"chunk_shape": trimmed}})
    return doc, ChunkManifest.from_arrays(paths=manifest._paths, offsets=manifest._offsets,
                                          lengths=lens, validate_paths=False, inlined=inlined)


def _array(index, path, doc, urls, keys=None):
    from virtualizarr.manifests import ManifestArray
    from zarr.core.metadata import ArrayV3Metadata

    try:
        grid = doc["chunk_grid"]
        if grid.get("name") != "regular":
            raise UnsupportedError(f"array {path!r}: chunk grid {grid.get('name')!r:.40}")
        doc, manifest = _trimmed(doc, _manifest(index, path, doc, urls, keys))
        meta = ArrayV3Metadata.from_dict(dict(doc))
    except (KeyError, TypeError, ValueError) as e:
        raise ReferenceFormatError(f"invalid array metadata: {reason(e)}", key=path) from None
    return ManifestArray(metadata=meta, chunkmanifest=manifest)


def to_manifest_store(refs, registry=None, *, group: str | None = None, drop_variables=None,
                      on_unsupported: str = "warn"):
    """A VirtualiZarr ``ManifestStore`` over the reference set ``refs`` (a v2 set's metadata
    is given in its Zarr v3 form, :func:`chunkview.refs.zarr3.v3_docs`).  ``group`` keeps one group of the hierarchy;
    ``drop_variables`` leaves out those names in it; ``on_unsupported`` as for
    :class:`ChunkviewParser`.  ``registry`` (an ``ObjectStoreRegistry``) is what VirtualiZarr
    reads the chunks through."""
    _require()
    from virtualizarr.manifests import ManifestGroup, ManifestStore

    refs = refs.to_references() if hasattr(refs, "to_references") else refs
    # a v2 set: its metadata in v3 form, its chunks read where they are
    docs, keys, left_out = v3_form(refs)
    if left_out and on_unsupported == "raise":
        p, why = sorted(left_out.items())[0]
        raise UnsupportedError(f"array {p!r}: {why}")
    base = (group or "").strip("/")
    if base and (docs.get(base) or {}).get("node_type") != "group":
        raise ValueError(f"group {group!r} is not a group of {refs.source or 'the references'}")
    drop = set(drop_variables or ())
    index = refs.index
    urls = [_norm_url(u) for u in index.urls]
    children: dict = {}
    for p in docs:
        if p and (not base or p.startswith(base + "/")):
            children.setdefault(_parent(p), []).append(p)

    def build(gpath: str) -> ManifestGroup:
        arrays, groups = {}, {}
        for p in sorted(children.get(gpath, ())):
            name = p.rsplit("/", 1)[-1]
            if gpath == base and name in drop:
                continue
            doc = docs[p]
            if doc.get("node_type") == "array":
                if p in left_out:
                    continue
                try:
                    arrays[name] = _array(index, p, doc, urls, keys.get(p))
                except UnsupportedError as e:
                    if on_unsupported == "raise":
                        raise
                    left_out[p] = str(e)
            else:
                groups[name] = build(p)
        attrs = (docs.get(gpath) or group_json(None)).get("attributes") or {}
        return ManifestGroup(arrays=arrays, groups=groups, attributes=dict(attrs))

    from obspec_utils.registry import ObjectStoreRegistry

    root = build(base)
    if left_out:
        warnings.warn("left out of the ManifestStore: " + "; ".join(
            f"{p}: {w}" for p, w in sorted(left_out.items())), UnsupportedWarning, stacklevel=2)
    return ManifestStore(root, registry=registry or ObjectStoreRegistry())


# ------------------------------------------------------------------------ VZ -> references


def _v3_doc(meta) -> dict:
    from zarr.core.buffer import default_buffer_prototype

    return json.loads(meta.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes())


def _add_manifest(index: ChunkIndex, path: str, doc: dict, manifest) -> None:
    """Put a ManifestArray's chunks (read from its three arrays, not entry by entry) into
    ``index`` under ``path``, keyed by the chunk key encoding of ``doc``, its zarr.json."""
    from virtualizarr.manifests.manifest import INLINED_CHUNK_PATH, MISSING_CHUNK_PATH

    keys = _key_encoding(doc)
    paths = np.asarray(manifest._paths)
    offs = np.asarray(manifest._offsets, dtype=np.uint64)
    lens = np.asarray(manifest._lengths, dtype=np.uint64)
    for at, data in (manifest._inlined or {}).items():
        index.set_inline(chunk_key(path, keys, tuple(at)), bytes(data))
    real = (paths != MISSING_CHUNK_PATH) & (paths != INLINED_CHUNK_PATH)
    if not real.any():
        return
    if paths.ndim == 0:
        index.set(chunk_key(path, keys, ()), str(paths[()]), int(offs[()]), int(lens[()]))
        return
    prefix, sep, _ = keys
    pre = f"{path}/" if path else ""
    flat = np.flatnonzero(real)
    names, ids = np.unique(paths.reshape(-1)[flat], return_inverse=True)
    coords = np.stack(np.unravel_index(flat, paths.shape), axis=1)
    index.add_grid(pre + prefix, coords, ids.astype(np.int64), offs.reshape(-1)[flat],
                   lens.reshape(-1)[flat], [str(n) for n in names], sep=sep, shrink=False)


def _from_group(group, index: ChunkIndex, docs: dict, path: str) -> None:
    docs[path] = group_json(dict(group.metadata.attributes or {}))
    for name, arr in group.arrays.items():
        p = f"{path}/{name}" if path else name
        docs[p] = _v3_doc(arr.metadata)
        _add_manifest(index, p, docs[p], arr.manifest)
    for name, sub in group.groups.items():
        _from_group(sub, index, docs, f"{path}/{name}" if path else name)


def _from_dataset(ds, index: ChunkIndex, docs: dict) -> None:
    """A virtual dataset, written as VirtualiZarr's kerchunk writer writes it with
    ``zarr_format=3``: coordinates encoded, each variable's attributes and encoding as its
    attributes, loaded (numpy) variables as one inlined chunk each."""
    import base64

    from virtualizarr.manifests import ManifestArray
    from virtualizarr.writers.kerchunk import _json_safe, variable_to_kerchunk_arr_refs
    from xarray.conventions import encode_dataset_coordinates

    variables, attrs = encode_dataset_coordinates(ds)
    docs[""] = group_json(_json_safe(attrs))
    for name, var in variables.items():
        name = str(name)
        if isinstance(var.data, ManifestArray):
            marr = var.data
            meta = replace(marr.metadata, attributes=_json_safe({**var.attrs, **var.encoding}),
                           dimension_names=tuple(str(d) for d in var.dims))
            docs[name] = _v3_doc(meta)
            _add_manifest(index, name, docs[name], marr.manifest)
            continue
        for key, value in variable_to_kerchunk_arr_refs(var, name, zarr_format=3).items():
            if key == ZARR_JSON:
                docs[name] = json.loads(value)
            elif isinstance(value, str) and value.startswith("base64:"):
                index.set_inline(f"{name}/{key}", base64.b64decode(value[7:]))
            else:
                raise ReferenceFormatError(f"unexpected reference for a loaded variable: "
                                           f"{value!r:.60}", key=f"{name}/{key}")


def from_virtualizarr(obj) -> References:
    """:class:`chunkview.References` (Zarr v3) holding what ``obj`` holds: a VirtualiZarr
    ``ManifestStore``, ``ManifestGroup`` or virtual ``xarray.Dataset`` (``ManifestArray``
    variables; loaded variables are inlined).  Read it with :func:`chunkview.open`,
    :func:`chunkview.open_zarr` or the xarray engine, or save it."""
    _require()
    from virtualizarr.manifests import ManifestGroup, ManifestStore

    index = ChunkIndex()
    docs: dict = {}
    if isinstance(obj, ManifestStore):
        obj = obj._group
    if isinstance(obj, ManifestGroup):
        _from_group(obj, index, docs, "")
    elif hasattr(obj, "variables") and hasattr(obj, "attrs"):
        _from_dataset(obj, index, docs)
    else:
        raise TypeError(f"from_virtualizarr takes a ManifestStore, ManifestGroup or virtual "
                        f"xarray.Dataset, not {type(obj).__name__}")
    put_docs(index, docs)
    index.shrink()
    return References(index)


__all__ = ["ChunkviewParser", "UnsupportedWarning", "from_virtualizarr", "to_manifest_store"]
