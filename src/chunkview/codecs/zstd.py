"""``hdf5_zstd`` (32015): the zstd filter (one zstd frame), via numcodecs' zstd.
"""


from __future__ import annotations

import numpy as np
from numcodecs.abc import Codec

from chunkview.codecs.common import (
    _call,
    _fail,
    _finish,
    _need_imagecodecs,
    _ratio_check,
    _u8,
    decode_limit,
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


#: the most bytes one zstd block decodes to (the format's Block_Maximum_Size)
_ZSTD_BLOCK = 1 << 17


def zstd_bound(codec: str, data: np.ndarray, limit: int) -> int:
    """An upper bound of what the zstd frames in ``data`` decode to, from their headers and
    block headers alone (raw and RLE blocks exactly, compressed blocks at most 128 KiB each):
    what a decoder can produce before it fails, whatever the frames' content sizes claim.
    Stops counting once past ``limit``."""
    raw = memoryview(np.ascontiguousarray(data, dtype=np.uint8)).cast("B")
    n, pos, bound = data.size, 0, 0
    while pos < n and bound <= limit:
        if n - pos < 5:
            raise _fail(codec, f"{n - pos} bytes at {pos}, shorter than a zstd frame header")
        magic = int.from_bytes(raw[pos:pos + 4], "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame
            if n - pos < 8:
                raise _fail(codec, f"truncated skippable frame at byte {pos}")
            pos += 8 + int.from_bytes(raw[pos + 4:pos + 8], "little")
            continue
        if magic != 0xFD2FB528:
            raise _fail(codec, f"not a zstd frame at byte {pos} (magic {magic:#010x})")
        fhd = raw[pos + 4]
        single, checksum = (fhd >> 5) & 1, (fhd >> 2) & 1
        fcs_size = (1 if single else 0, 2, 4, 8)[fhd >> 6]
        pos += 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs_size
        while True:
            if n - pos < 3:
                raise _fail(codec, f"truncated zstd block header at byte {pos}")
            h = int.from_bytes(raw[pos:pos + 3], "little")
            btype, bsize = (h >> 1) & 3, h >> 3
            pos += 3
            if btype == 3:
                raise _fail(codec, f"reserved zstd block type at byte {pos - 3}")
            if btype == 1:  # RLE: one byte repeated bsize times
                bound += bsize
                pos += 1
            else:
                bound += bsize if btype == 0 else _ZSTD_BLOCK
                pos += bsize
            if pos > n:
                raise _fail(codec, f"a zstd block runs past the end ({pos} of {n} bytes)")
            if h & 1 or bound > limit:
                break
        pos += 4 * checksum
    return bound


def _zstd_decompress(codec: str, data: np.ndarray, expected: int | None = None):
    fcs = _zstd_content_size(codec, data)
    if fcs is not None:
        _ratio_check(codec, fcs, data.size, 1 << 16)
        if expected is not None and fcs != expected:
            raise _fail(codec, f"frame holds {fcs} bytes, expected {expected}")
    # what the decoder may produce whatever the header says: the streaming decoder numcodecs
    # uses for frames without a content size grows its output block by block
    limit = decode_limit() if expected is None else min(expected, decode_limit())
    bound = zstd_bound(codec, data, limit + _ZSTD_BLOCK)
    if bound > limit + _ZSTD_BLOCK:
        raise _fail(codec, f"the frame's blocks decode to more than {limit} bytes")
    try:
        from numcodecs import zstd

        fn = zstd.decompress
    except ImportError:  # pragma: no cover - numcodecs is always built with zstd
        fn = _need_imagecodecs().zstd_decode
    res = _call(codec, fn, data)
    want = fcs if fcs is not None else expected
    if want is not None and len(res) != want:
        raise _fail(codec, f"decoded {len(res)} bytes, expected {want}")
    if len(res) > limit:
        raise _fail(codec, f"decoded {len(res)} bytes, more than {limit}")
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


