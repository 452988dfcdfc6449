"""``hdf5_zstd`` (32015): the zstd filter (one zstd frame), via numcodecs' zstd.
"""


from __future__ import annotations

import numpy as np
from numcodecs.abc import Codec

from chunkview.codecs.common import (
    MAX_CHUNK_BYTES,
    _call,
    _fail,
    _finish,
    _need_imagecodecs,
    _ratio_check,
    _u8,
)


def _zstd_content_size(codec: str, data: np.ndarray):
    """The frame content size of a zstd frame header (None when not recorded)."""
    if data.size < 5:
        raise _fail(codec, f"{data.size} bytes, shorter than a zstd frame header")
    magic = int.from_bytes(data[:4].tobytes(), "little")
    if magic != 0xFD2FB528:
        raise _fail(codec, f"not a zstd frame (magic {magic:#010x})")
    fhd = int(data[4])
    fcs_flag, single = fhd >> 6, (fhd >> 5) & 1
    if fhd & 0x08:
        raise _fail(codec, "reserved bit set in the zstd frame header")
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3]
    size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if size == 0:
        return None
    if data.size < pos + size:
        raise _fail(codec, "truncated zstd frame header")
    fcs = int.from_bytes(data[pos:pos + size].tobytes(), "little")
    return fcs + 256 if size == 2 else fcs


def _zstd_decompress(codec: str, data: np.ndarray, expected: int | None = None):
    fcs = _zstd_content_size(codec, data)
    if fcs is not None:
        _ratio_check(codec, fcs, data.size, 1 << 16)
        if expected is not None and fcs != expected:
            raise _fail(codec, f"frame holds {fcs} bytes, expected {expected}")
    try:
        from numcodecs import zstd

        fn = zstd.decompress
    except ImportError:  # pragma: no cover - numcodecs is always built with zstd
        fn = _need_imagecodecs().zstd_decode
    res = _call(codec, fn, data)
    want = fcs if fcs is not None else expected
    if want is not None and len(res) != want:
        raise _fail(codec, f"decoded {len(res)} bytes, expected {want}")
    if len(res) > MAX_CHUNK_BYTES:
        raise _fail(codec, "decoded more than 4 GiB")
    return res


class HDF5Zstd(Codec):
    """The HDF5 zstd filter (32015): each chunk is one zstd frame."""

    codec_id = "hdf5_zstd"

    def __init__(self, level: int = 3):
        self.level = int(level)

    def encode(self, buf):
        from numcodecs import zstd

        return zstd.compress(_u8(buf), self.level)

    def decode(self, buf, out=None):
        return _finish(_zstd_decompress(self.codec_id, _u8(buf)), out)

    def get_config(self):
        return {"id": self.codec_id, "level": self.level}

    def __repr__(self):
        return f"HDF5Zstd(level={self.level})"


# ------------------------------------------------------------------ LZ4


