"""``hdf5_fletcher32``: verifies HDF5's Fletcher-32 trailer, also in the byte order HDF5 wrote
before 1.6.3, which numcodecs' ``Fletcher32`` rejects."""


from __future__ import annotations

from numcodecs.abc import Codec

from chunkview import _decode
from chunkview.codecs.common import _as_bytes


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

