"""Codecs: which zarr v2 pipelines the C path decodes, and numcodecs codecs with HDF5 semantics.

The C path (``chunkview._decode.decode_batch``) covers what HDF5 archives mostly hold: zlib
(numcodecs ``zlib``), gzip (``gzip``), HDF5 shuffle (``shuffle`` and ``hdf5_shuffle``),
Fletcher-32 (``fletcher32`` and ``hdf5_fletcher32``) and no compression.  Any other pipeline is
decoded per chunk by its numcodecs codecs (correct, slower) and then copied into place by the
same C path.

Two codecs are registered under the ``numcodecs.codecs`` entry point for what numcodecs lacks
or does differently from HDF5:

* ``hdf5_shuffle``: HDF5's shuffle (trailing ``len % elementsize`` bytes copied through, 1-byte
  elements untouched), where numcodecs' ``Shuffle`` raises;
* ``hdf5_fletcher32``: verifies HDF5's Fletcher-32 trailer, also in the byte order HDF5 wrote
  before 1.6.3, which numcodecs' ``Fletcher32`` rejects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numcodecs.abc import Codec

from chunkview import _decode
from chunkview.errors import DecodeError


def _as_bytes(buf) -> memoryview:
    if isinstance(buf, np.ndarray):
        buf = np.ascontiguousarray(buf).view("u1").reshape(-1)
    return memoryview(buf).cast("B")


class HDF5Shuffle(Codec):
    """HDF5's byte shuffle filter, with HDF5's edge rules."""

    codec_id = "hdf5_shuffle"

    def __init__(self, elementsize: int = 4):
        if int(elementsize) < 1:
            raise ValueError("elementsize must be >= 1")
        self.elementsize = int(elementsize)

    def encode(self, buf):
        return bytes(_decode.shuffle(_as_bytes(buf), self.elementsize))

    def decode(self, buf, out=None):
        data = _as_bytes(buf)
        if out is not None:
            dst = _as_bytes(out)
            _decode.unshuffle(data, self.elementsize, out=dst)
            return out
        return bytes(_decode.unshuffle(data, self.elementsize))

    def get_config(self):
        return {"id": self.codec_id, "elementsize": self.elementsize}

    def __repr__(self):
        return f"HDF5Shuffle(elementsize={self.elementsize})"


class HDF5Fletcher32(Codec):
    """HDF5's Fletcher-32: encode appends the 4-byte checksum, decode verifies and strips it
    (raising :class:`chunkview.DecodeError` on a mismatch)."""

    codec_id = "hdf5_fletcher32"

    def encode(self, buf):
        data = bytes(_as_bytes(buf))
        return data + int(_decode.fletcher32(data)).to_bytes(4, "little")

    def decode(self, buf, out=None):
        data = _as_bytes(buf)
        n = _decode.fletcher32_verify(data)
        if out is not None:
            _as_bytes(out)[:n] = data[:n]
            return out
        return bytes(data[:n])

    def get_config(self):
        return {"id": self.codec_id}

    def __repr__(self):
        return "HDF5Fletcher32()"


# ------------------------------------------------------------------ pipelines

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
        ``max_bytes`` (the decoded chunk size from the metadata) bounds every step: zlib and
        gzip stop inflating past it, and a step whose output exceeds it fails."""
        out = data
        codecs = self.codecs()
        limit = None if max_bytes is None else int(max_bytes) + 64
        for bit in range(len(codecs) - 1, -1, -1):
            if mask >> bit & 1:
                continue
            cid = self.configs[bit].get("id")
            if limit is not None and cid in ("zlib", "gzip"):
                out = _inflate_bounded(out, limit, gzip=cid == "gzip")
            else:
                out = codecs[bit].decode(out)
            if limit is not None and memoryview(out).nbytes > limit:
                raise DecodeError(f"step {cid!r} produced {memoryview(out).nbytes} bytes, more "
                                  f"than the chunk's {max_bytes}")
        if isinstance(out, np.ndarray):
            return np.ascontiguousarray(out).view("u1").reshape(-1)
        return out


def _inflate_bounded(data, limit: int, gzip: bool = False) -> bytes:
    import zlib

    d = zlib.decompressobj(31 if gzip else 15)
    out = d.decompress(bytes(data), limit + 1)
    if len(out) > limit:
        raise DecodeError(f"inflates to more than {limit} bytes")
    if not d.eof:
        raise DecodeError("truncated deflate stream")
    return out


def pipeline_from_zarray(meta: dict) -> Pipeline:
    """The pipeline of a zarr v2 ``.zarray`` dict."""
    configs = [dict(f) for f in (meta.get("filters") or [])]
    if meta.get("compressor") is not None:
        configs.append(dict(meta["compressor"]))
    steps = []
    for bit in range(len(configs) - 1, -1, -1):  # decode order
        cfg = configs[bit]
        cid = cfg.get("id")
        if cid in _INFLATE:
            steps.append((_INFLATE[cid], bit, 0))
        elif cid in _SHUFFLE:
            es = int(cfg.get("elementsize", 4) or 4)
            if es < 1:
                raise DecodeError(f"invalid shuffle elementsize {es}")
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


class HDF5StrPad(Codec):
    """What the HDF5 library does to fixed-length strings when it reads them: a
    null-terminated string ends at its first NUL (bytes after it read as NUL) and a
    space-padded one loses its trailing spaces.  ``regions`` lists ``[offset, size, pad]`` of
    every string within an element of ``itemsize`` bytes (pad 0: null-terminated, 2:
    space-padded).  Decode only; encode passes bytes through."""

    codec_id = "hdf5_strpad"

    def __init__(self, itemsize: int, regions=()):
        self.itemsize = int(itemsize)
        self.regions = [[int(o), int(s), int(p)] for o, s, p in regions]
        if self.itemsize < 1 or any(o < 0 or s < 1 or o + s > self.itemsize
                                    for o, s, _ in self.regions):
            raise ValueError("invalid string regions")

    def encode(self, buf):
        return bytes(_as_bytes(buf))

    def decode(self, buf, out=None):
        data = np.frombuffer(_as_bytes(buf), np.uint8)
        if len(data) % self.itemsize:
            raise DecodeError(f"hdf5_strpad: {len(data)} bytes is not a whole number of "
                              f"{self.itemsize}-byte elements")
        arr = data.reshape(-1, self.itemsize).copy()
        for off, size, pad in self.regions:
            sub = arr[:, off:off + size]
            if pad == 0:
                sub[np.cumsum(sub == 0, axis=1) > 0] = 0
            elif pad == 2:
                trailing = np.cumprod((sub == 32)[:, ::-1], axis=1)[:, ::-1].astype(bool)
                sub[trailing] = 0
        res = arr.reshape(-1)
        if out is not None:
            _as_bytes(out)[: len(res)] = res.tobytes()
            return out
        return res.tobytes()

    def get_config(self):
        return {"id": self.codec_id, "itemsize": self.itemsize, "regions": self.regions}

    def __repr__(self):
        return f"HDF5StrPad(itemsize={self.itemsize}, regions={self.regions})"
