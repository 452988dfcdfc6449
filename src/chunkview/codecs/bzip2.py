"""``hdf5_bzip2`` (307): the bzip2 filter (one bzip2 stream), via the standard library.
"""


from __future__ import annotations

import bz2

from numcodecs.abc import Codec

from chunkview.codecs.common import (
    _fail,
    _finish,
    _u8,
    decode_limit,
)


class HDF5BZip2(Codec):
    """The bzip2 filter (307): each chunk is one bzip2 stream."""

    codec_id = "hdf5_bzip2"

    def __init__(self, level: int = 9):
        self.level = int(level)

    def encode(self, buf):
        return bz2.compress(_u8(buf).tobytes(), min(max(self.level, 1), 9))

    def decode(self, buf, out=None):
        data = _u8(buf)
        d = bz2.BZ2Decompressor()
        limit = decode_limit()
        try:
            res = d.decompress(data, max_length=limit + 1)
        except (MemoryError, ImportError):
            raise
        except Exception as e:
            raise _fail(self.codec_id, f"corrupt data ({e})", e) from e
        if len(res) > limit:
            raise _fail(self.codec_id, f"decodes to more than {limit} bytes")
        if not d.eof:
            raise _fail(self.codec_id, "truncated bzip2 stream")
        return _finish(res, out)

    def get_config(self):
        return {"id": self.codec_id, "level": self.level}

    def __repr__(self):
        return f"HDF5BZip2(level={self.level})"


# ------------------------------------------------------------------ scaleoffset

