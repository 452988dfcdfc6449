"""``ChunkLayout``: one array's chunk grid, dtype, fill value, codec pipeline and filter masks,
checked once from its ``.zarray`` and ``.cvmask``."""


from __future__ import annotations

import math

from chunkview import _decode
from chunkview.codecs.pipeline import Pipeline, pipeline_from_zarray
from chunkview.errors import ChunkviewError, ReferenceFormatError, UnsupportedError, reason
from chunkview.keys import MASK_KEY
from chunkview.read.meta import dtype_of, fill_bytes, json_of
from chunkview.read.plan import chunk_keys


class ChunkLayout:
    """How one array's chunks are stored, from its zarr v2 ``.zarray``: what the read path
    needs (chunk shape, dtype, order, key separator, codecs, fill value, per-chunk HDF5 filter
    masks from ``<array>/.cvmask``).  Metadata that is not valid zarr v2 raises
    :class:`ReferenceFormatError` naming the array and the field."""

    def __init__(self, refs, path: str, meta: dict):
        self.path = path
        self.prefix = f"{path}/" if path else ""
        key = self.prefix + ".zarray"
        source = getattr(refs, "source", None)

        def bad(what):
            return ReferenceFormatError(f"array {path!r}: {what}", key=key, source=source)

        if not isinstance(meta, dict):
            raise bad(f".zarray must be a JSON object, not {type(meta).__name__}")
        if meta.get("zarr_format", 2) != 2:
            raise UnsupportedError(f"array {path!r}: only zarr v2 metadata is read directly")
        self.meta = meta
        self.shape = _int_tuple(meta.get("shape"), "shape", 0, bad)
        self.chunks = _int_tuple(meta.get("chunks"), "chunks", 1, bad)
        if len(self.chunks) != len(self.shape):
            raise bad(f"chunks {list(self.chunks)} do not fit shape {list(self.shape)}")
        if len(self.shape) > _decode.MAX_DIMS:
            raise UnsupportedError(f"array {path!r}: {len(self.shape)} dimensions (at most "
                                   f"{_decode.MAX_DIMS})")
        try:
            self.dtype = dtype_of(meta.get("dtype"))
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise bad(f"invalid dtype {meta.get('dtype')!r}: {e}") from None
        if self.dtype.itemsize == 0:
            raise bad(f"dtype {meta.get('dtype')!r} has items of 0 bytes")
        # chunk and array sizes in bytes stay far below 2**63 (products checked in Python ints)
        if math.prod(self.chunks) * self.dtype.itemsize >= 1 << 62 or \
                math.prod(self.shape) * self.dtype.itemsize >= 1 << 62:
            raise bad(f"shape {list(self.shape)} / chunks {list(self.chunks)} of "
                      f"{self.dtype.itemsize}-byte items are too large")
        self.order = meta.get("order", "C")
        if self.order not in ("C", "F"):
            raise bad(f"order must be 'C' or 'F', not {self.order!r}")
        self.fill_value = meta.get("fill_value")
        self.fill = fill_bytes(self.fill_value, self.dtype, bad)
        self.sep = meta.get("dimension_separator") or "."
        if self.sep not in (".", "/"):
            raise bad(f"dimension_separator must be '.' or '/', not {self.sep!r}")
        # where chunk keys lie under the array: zarr v2's "i.j"; a Zarr v3 set's "c/i/j" (its
        # zarr.json seen as a .zarray by chunkview.refs.zarr3.v2_view says so)
        key_pre, _, key0 = meta.get("_cv_chunk_key") or ("", self.sep, "0")
        self.key_prefix = self.prefix + key_pre
        self.key0 = self.prefix + key0
        filters, comp = meta.get("filters"), meta.get("compressor")
        if not (filters is None or isinstance(filters, list) and all(map(_is_codec, filters))):
            raise bad(f"filters must be null or a list of codec objects with a string 'id', "
                      f"not {filters!r}")
        if not (comp is None or _is_codec(comp)):
            raise bad(f"compressor must be null or a codec object with a string 'id', "
                      f"not {comp!r}")
        masks = json_of(refs, self.prefix + MASK_KEY)
        try:
            self.pipeline: Pipeline = pipeline_from_zarray(meta, masks_by_key=masks is not None)
            if not self.pipeline.fast:
                self.pipeline.codecs()  # every codec must exist and accept its configuration
        except ChunkviewError as e:
            raise bad(f"codecs: {reason(e)}") from None
        except Exception as e:  # noqa: BLE001 - numcodecs raises anything on a bad config
            ids = [c.get("id") for c in (meta.get("filters") or []) + [meta.get("compressor")]
                   if c]
            raise UnsupportedError(f"array {path!r}: cannot decode codecs {ids}: "
                                   f"{reason(e)}") from None
        if masks is not None and not (isinstance(masks, dict) and all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32
                for v in masks.values())):
            raise ReferenceFormatError(f"array {path!r}: {MASK_KEY} must map chunk keys to "
                                       "filter masks (integers in [0, 2**32))",
                                       key=self.prefix + MASK_KEY, source=source)
        self.masks = {str(k): int(v) for k, v in (masks or {}).items()}

    def chunk_keys(self, coords) -> list[str]:
        """The keys of the chunks at grid ``coords`` ((n, ndim) integers)."""
        if not self.shape:
            return [self.key0] * len(coords)
        return chunk_keys(self.key_prefix, coords, self.sep)


def _is_codec(cfg) -> bool:
    return isinstance(cfg, dict) and isinstance(cfg.get("id"), str)


def _int_tuple(v, name, lo, bad) -> tuple:
    """A .zarray list of integers >= lo as a tuple."""
    if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                          and lo <= x < 2**62 for x in v):
        raise bad(f"{name} must be a list of integers >= {lo}, not {v!r}")
    return tuple(v)


