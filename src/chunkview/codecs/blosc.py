"""``hdf5_blosc`` (32001): the hdf5-blosc filter (one blosc1 frame), via numcodecs' blosc.
"""


from __future__ import annotations

import struct

from numcodecs.abc import Codec

from chunkview.codecs.common import (
    _call,
    _fail,
    _finish,
    _need_imagecodecs,
    _ratio_check,
    _u8,
)

BLOSC_CNAMES = {0: "blosclz", 1: "lz4", 2: "lz4hc", 3: "snappy", 4: "zlib", 5: "zstd"}


class HDF5Blosc(Codec):
    """The hdf5-blosc filter (32001): each chunk is one blosc1 frame.  The parameters only
    matter for encoding; decoding reads the frame's header, checked against the input size."""

    codec_id = "hdf5_blosc"

    def __init__(self, typesize: int = 1, clevel: int = 5, shuffle: int = 1,
                 cname: str = "blosclz"):
        self.typesize = int(typesize)
        self.clevel = int(clevel)
        self.shuffle = int(shuffle)
        self.cname = str(cname)

    def encode(self, buf):
        from numcodecs import blosc

        data = _u8(buf)
        ts = self.typesize
        arr = data.view(f"u{ts}") if ts in (1, 2, 4, 8) and data.size % ts == 0 else data
        return blosc.compress(arr, self.cname.encode(), self.clevel, self.shuffle)

    def decode(self, buf, out=None):
        data = _u8(buf)
        if data.size < 16:
            raise _fail(self.codec_id, f"{data.size} bytes, shorter than a blosc header")
        nbytes, blocksize, cbytes = struct.unpack("<III", data[4:16].tobytes())
        if data[0] == 0:
            raise _fail(self.codec_id, "not a blosc frame (format version 0)")
        if cbytes < 16 or cbytes > data.size:
            raise _fail(self.codec_id, f"header says {cbytes} compressed bytes, have {data.size}")
        flags = int(data[2])
        if flags & 0x02:  # memcpyed: the data follows the header uncompressed
            if cbytes != nbytes + 16:
                raise _fail(self.codec_id, "inconsistent sizes in an uncompressed blosc frame")
        elif nbytes and blocksize == 0:
            raise _fail(self.codec_id, "zero block size")
        _ratio_check(self.codec_id, nbytes, cbytes, 1 << 16)
        src = data[:cbytes]
        try:
            from numcodecs import blosc

            fn = blosc.decompress
        except ImportError:  # pragma: no cover - numcodecs is always built with blosc
            fn = _need_imagecodecs().blosc_decode
        res = _call(self.codec_id, fn, src)
        if len(res) != nbytes:
            raise _fail(self.codec_id, f"decoded {len(res)} bytes, header says {nbytes}")
        return _finish(res, out)

    def get_config(self):
        return {"id": self.codec_id, "typesize": self.typesize, "clevel": self.clevel,
                "shuffle": self.shuffle, "cname": self.cname}

    def __repr__(self):
        return (f"HDF5Blosc(typesize={self.typesize}, clevel={self.clevel}, "
                f"shuffle={self.shuffle}, cname={self.cname!r})")


# ------------------------------------------------------------------ Zstd


