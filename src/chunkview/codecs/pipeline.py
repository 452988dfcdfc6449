"""The decode plan: which zarr v2 pipelines the C path decodes, and how.

The C path (``chunkview._decode.decode_batch``) covers what HDF5 archives mostly hold: zlib
(numcodecs ``zlib``), gzip (``gzip``), HDF5 shuffle (``shuffle`` and ``hdf5_shuffle``),
Fletcher-32 (``fletcher32`` and ``hdf5_fletcher32``) and no compression.  Any other pipeline is
decoded per chunk by its numcodecs codecs (correct, slower) and then copied into place by the
same C path.

HDF5's own shuffle and Fletcher-32 codecs live in :mod:`chunkview.codecs.shuffle` and
:mod:`chunkview.codecs.fletcher32`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from chunkview import _decode
from chunkview.errors import DecodeError

_INFLATE = {"zlib": "zlib", "gzip": "gzip"}
_SHUFFLE = ("shuffle", "hdf5_shuffle")
_FLETCHER = ("fletcher32", "hdf5_fletcher32")


@dataclass
class Pipeline:
    """A zarr v2 array's codecs in writing order (``filters + [compressor]``), and the C steps
    decoding them (``steps`` is None when some codec is not covered).  The HDF5 filter mask bit
    of a codec is its position in the writing order."""

    configs: tuple
    steps: tuple | None

    @property
    def fast(self) -> bool:
        return self.steps is not None

    def codecs(self):
        import numcodecs

        return [numcodecs.get_codec(dict(c)) for c in self.configs]

    def decode_chunk(self, data, mask: int = 0, max_bytes: int | None = None) -> bytes:
        """Decode one chunk with the numcodecs codecs (the slow path), skipping masked ones.
        ``max_bytes`` (the decoded chunk size from the metadata) bounds every step before it
        allocates (:mod:`chunkview.codecs.bounded`)."""
        out = self.decode_steps(data, mask, max_bytes)
        if isinstance(out, np.ndarray):
            return np.ascontiguousarray(out).view("u1").reshape(-1)
        return out

    def decode_steps(self, data, mask: int = 0, max_bytes: int | None = None,
                     items: int | None = None):
        """What the last codec step returns (bytes or an array, object arrays included), every
        step bounded by ``max_bytes`` (None: :data:`~chunkview.codecs.common.MAX_CHUNK_BYTES`)
        and, for variable-length codecs, ``items`` elements."""
        from chunkview.codecs.bounded import decode_all
        from chunkview.codecs.common import MAX_CHUNK_BYTES

        codecs = self._instances
        steps = [(self.configs[bit], codecs[bit]) for bit in range(len(codecs) - 1, -1, -1)
                 if not mask >> bit & 1]
        limit = MAX_CHUNK_BYTES if max_bytes is None else int(max_bytes) + 64
        return decode_all(steps, data, limit, items)

    @functools.cached_property
    def _instances(self) -> list:
        """The codecs, made once (not per chunk)."""
        return self.codecs()


#: the codec id of :class:`chunkview.codecs.masked.HDF5Masked`
MASKED_ID = "hdf5_masked"


def unwrap(configs: list) -> list:
    """A zarr v2 codec list with an ``hdf5_masked`` wrapper replaced by the codecs it wraps."""
    if len(configs) == 1 and configs[0].get("id") == MASKED_ID:
        return [dict(c) for c in configs[0].get("codecs") or []]
    return configs


def pipeline_from_zarray(meta: dict, masks_by_key: bool = True) -> Pipeline:
    """The pipeline of a zarr v2 ``.zarray`` dict.  ``masks_by_key``: the array's per-chunk
    filter masks are known by key (``.cvmask``), so an ``hdf5_masked`` wrapper is replaced by
    the codecs it wraps; without them (a set that went through a format with no place for
    ``.cvmask``: a VirtualiZarr ManifestStore, Icechunk) the wrapper stays, and finds each
    chunk's mask from its bytes."""
    configs = [dict(f) for f in (meta.get("filters") or [])]
    if meta.get("compressor") is not None:
        configs.append(dict(meta["compressor"]))
    if masks_by_key:
        configs = unwrap(configs)
    steps = []
    for bit in range(len(configs) - 1, -1, -1):  # decode order
        cfg = configs[bit]
        cid = cfg.get("id")
        if cid in _INFLATE:
            steps.append((_INFLATE[cid], bit, 0))
        elif cid in _SHUFFLE:
            es = cfg.get("elementsize", 4) or 4
            if not isinstance(es, int) or isinstance(es, bool) or not 1 <= es <= 1 << 20:
                raise DecodeError(f"invalid shuffle elementsize {es!r:.40} (an integer from 1 "
                                  "to 2**20)")
            steps.append(("shuffle", bit, es))
        elif cid in _FLETCHER:
            steps.append(("fletcher32", bit, 0))
        else:
            steps = None
            break
    if steps is not None:
        if sum(1 for s in steps if s[0] in ("zlib", "gzip")) > 1 or len(steps) > _decode.MAX_STEPS:
            steps = None
    return Pipeline(tuple(configs), None if steps is None else tuple(steps))


