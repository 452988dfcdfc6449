"""``hdf5_lz4`` (32004): the HDF5 lz4 filter's block container, blocks via numcodecs' lz4.
"""


from __future__ import annotations

import struct

import numpy as np
from numcodecs.abc import Codec

from chunkview.codecs.common import (
    _call,
    _fail,
    _finish,
    _need_imagecodecs,
    _ratio_check,
    _u8,
)


def _lz4_block(codec: str, src: np.ndarray, dst: np.ndarray) -> None:
    """Decode one raw LZ4 block into exactly ``dst.size`` bytes."""
    try:
        from numcodecs import lz4
    except ImportError:  # pragma: no cover - numcodecs is always built with lz4
        lz4 = None
    if lz4 is None:  # pragma: no cover
        ic = _need_imagecodecs()
        res = _call(codec, ic.lz4_decode, src, out=dst.size)
        if len(res) != dst.size:
            raise _fail(codec, f"LZ4 block decoded to {len(res)} bytes, expected {dst.size}")
        dst[:] = np.frombuffer(res, np.uint8)
        return
    framed = np.empty(src.size + 4, dtype=np.uint8)
    framed[:4] = np.frombuffer(struct.pack("<I", dst.size), np.uint8)
    framed[4:] = src
    _call(codec, lz4.decompress, framed, dst)


def _lz4_compress_block(data: np.ndarray) -> bytes:
    from numcodecs import lz4

    return bytes(lz4.compress(data))[4:]


def _sized_block(name: str, data: np.ndarray, pos: int):
    """The block at ``pos`` of a stream of (4-byte big-endian size, bytes) blocks, as the
    HDF5 LZ4 and bitshuffle filters write them: ``(block, position after it)``."""
    if pos + 4 > data.size:
        raise _fail(name, "truncated block header")
    csize = int.from_bytes(data[pos:pos + 4].tobytes(), "big")
    pos += 4
    if csize == 0 or pos + csize > data.size:
        raise _fail(name, f"block of {csize} bytes overruns the input")
    return data[pos:pos + csize], pos + csize


class HDF5LZ4(Codec):
    """The HDF5 lz4 filter (32004): an 8-byte big-endian decoded size, a 4-byte big-endian
    block size, then per block a 4-byte big-endian compressed size and the LZ4 block (stored
    raw when its compressed size equals its decoded size).  ``blocksize`` is ``cd_values[0]``
    (used for encoding; 0 means the filter's 1 GiB default)."""

    codec_id = "hdf5_lz4"

    def __init__(self, blocksize: int = 0):
        self.blocksize = int(blocksize)

    def encode(self, buf):
        data = _u8(buf)
        bs = self.blocksize if self.blocksize > 0 else 1 << 30
        bs = min(bs, data.size) if data.size else bs
        parts = [struct.pack(">QI", data.size, bs)]
        for start in range(0, data.size, bs):
            block = data[start:start + bs]
            comp = _lz4_compress_block(block)
            if len(comp) >= block.size:
                parts += [struct.pack(">I", block.size), block.tobytes()]
            else:
                parts += [struct.pack(">I", len(comp)), comp]
        return b"".join(parts)

    def decode(self, buf, out=None):
        name = self.codec_id
        data = _u8(buf)
        if data.size < 12:
            raise _fail(name, f"{data.size} bytes, shorter than the 12-byte header")
        total, bs = struct.unpack(">QI", data[:12].tobytes())
        _ratio_check(name, total, data.size, 512)  # LZ4 expands at most ~255x
        if total and bs == 0:
            raise _fail(name, "zero block size")
        bs = min(bs, total) if total else bs
        res = np.empty(total, dtype=np.uint8)
        pos, done = 12, 0
        while done < total:
            n = min(bs, total - done)
            src, pos = _sized_block(name, data, pos)
            if src.size == n:
                res[done:done + n] = src
            else:
                _lz4_block(name, src, res[done:done + n])
            done += n
        return _finish(res, out)

    def get_config(self):
        return {"id": self.codec_id, "blocksize": self.blocksize}

    def __repr__(self):
        return f"HDF5LZ4(blocksize={self.blocksize})"


# ------------------------------------------------------------------ bitshuffle

