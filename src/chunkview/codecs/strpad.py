"""``hdf5_strpad``: HDF5 fixed-length strings (null-terminated, null- or space-padded) as numpy
bytes."""


from __future__ import annotations

import numpy as np
from numcodecs.abc import Codec

from chunkview.codecs.common import _as_bytes
from chunkview.errors import DecodeError


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
