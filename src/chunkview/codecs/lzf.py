"""``hdf5_lzf`` (32000): h5py's LZF filter (raw LZF, no header), via imagecodecs.
"""


from __future__ import annotations

from numcodecs.abc import Codec

from chunkview.codecs.common import (
    _fail,
    _finish,
    _need_imagecodecs,
    _u8,
    decode_limit,
)


class HDF5LZF(Codec):
    """h5py's LZF filter (32000): raw LZF data.  ``nbytes`` is ``cd_values[2]`` (the chunk's
    size in bytes, 0 if unknown)."""

    codec_id = "hdf5_lzf"

    def __init__(self, nbytes: int = 0):
        self.nbytes = int(nbytes)

    def encode(self, buf):
        ic = _need_imagecodecs()
        return ic.lzf_encode(_u8(buf).tobytes())

    def decode(self, buf, out=None):
        ic = _need_imagecodecs()
        data = _u8(buf)
        if data.size == 0:
            raise _fail(self.codec_id, "empty input")
        # LZF expands at most ~90x (a 3-byte back reference copies 264 bytes)
        cap = min(decode_limit(), max(self.nbytes, data.size * 128 + 1024))
        size = min(cap, self.nbytes) if self.nbytes > 0 else min(cap, max(64, data.size * 4))
        while True:
            try:
                res = ic.lzf_decode(data, out=size)
                break
            except (ImportError, MemoryError):
                raise
            except Exception as e:
                if "not large enough" in str(e) and size < cap:
                    size = min(cap, size * 2)
                    continue
                raise _fail(self.codec_id, f"corrupt data ({e})", e) from e
        return _finish(res, out)

    def get_config(self):
        return {"id": self.codec_id, "nbytes": self.nbytes}

    def __repr__(self):
        return f"HDF5LZF(nbytes={self.nbytes})"


# ------------------------------------------------------------------ SZIP


