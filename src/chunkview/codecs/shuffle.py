"""``hdf5_shuffle``: HDF5's shuffle filter, which copies the trailing ``len % elementsize``
bytes through and leaves 1-byte elements alone (numcodecs' ``Shuffle`` raises for both)."""


from __future__ import annotations

from numcodecs.abc import Codec

from chunkview import _decode
from chunkview.codecs.common import _as_bytes


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


