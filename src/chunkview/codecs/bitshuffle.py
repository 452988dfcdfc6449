"""``hdf5_bitshuffle`` (32008): bitshuffle (plain, +lz4, +zstd); transpose via imagecodecs/numpy.
"""


from __future__ import annotations

import struct

import numpy as np
from numcodecs.abc import Codec

from chunkview.codecs.common import (
    _fail,
    _finish,
    _ratio_check,
    _u8,
)
from chunkview.codecs.lz4 import _lz4_block, _lz4_compress_block, _sized_block
from chunkview.codecs.zstd import _zstd_decompress

BSHUF_COMPRESSION = {0: "none", 2: "lz4", 3: "zstd"}


def _bshuf_default_block(elem: int) -> int:
    return max((8192 // elem) // 8 * 8, 128)


def _bitunshuffle_blocks(src: np.ndarray, nblocks: int, bs: int, elem: int) -> np.ndarray:
    """Undo bitshuffle's bit transpose on ``nblocks`` consecutive blocks of ``bs`` elements
    (``bs % 8 == 0``): a block holds, for each byte j of an element and each bit k (LSB
    first), the bits k of byte j of all its elements, 8 elements per byte, LSB first."""
    s = src.reshape(nblocks, elem, 8, bs // 8)
    bits = np.unpackbits(s, axis=3, bitorder="little")  # (nblocks, elem, 8, bs)
    bits = bits.transpose(0, 3, 1, 2)  # (nblocks, bs, elem, 8)
    return np.packbits(bits, axis=3, bitorder="little").reshape(-1)


def _bitshuffle_blocks(src: np.ndarray, nblocks: int, bs: int, elem: int) -> np.ndarray:
    x = src.reshape(nblocks, bs, elem, 1)
    bits = np.unpackbits(x, axis=3, bitorder="little")  # (nblocks, bs, elem, 8)
    bits = bits.transpose(0, 2, 3, 1)  # (nblocks, elem, 8, bs)
    return np.packbits(bits, axis=3, bitorder="little").reshape(-1)


def _bitunshuffle(data: np.ndarray, elem: int, bs: int) -> np.ndarray:
    """bshuf_bitunshuffle: imagecodecs' C kernel when installed, else numpy."""
    try:
        from imagecodecs import bitshuffle_decode
    except ImportError:
        bitshuffle_decode = None
    if bitshuffle_decode is not None and data.size:
        res = np.empty_like(data)
        # a memoryview: for an ndarray imagecodecs takes the item size from its dtype
        bitshuffle_decode(memoryview(data), itemsize=elem, blocksize=bs, out=memoryview(res))
        return res
    return _bshuf_apply(_bitunshuffle_blocks, data, elem, bs)


def _bshuf_apply(fn, data: np.ndarray, elem: int, bs: int) -> np.ndarray:
    """Apply the per-block transform over bitshuffle's blocking: full blocks of ``bs``
    elements, then one block of the remainder rounded down to 8 elements, then the last
    ``size % 8`` elements copied through."""
    size = data.size // elem
    res = np.empty_like(data)
    nfull = size // bs
    pos = 0
    if nfull:
        n = nfull * bs * elem
        res[:n] = fn(data[:n], nfull, bs, elem)
        pos = n
    last = (size % bs) - (size % bs) % 8
    if last:
        n = last * elem
        res[pos:pos + n] = fn(data[pos:pos + n], 1, last, elem)
        pos += n
    res[pos:] = data[pos:]
    return res


def _block_sizes(size: int, bs: int):
    """Element counts of bitshuffle's blocks: whole blocks of ``bs``, then the remainder
    rounded down to a multiple of 8 (the rest is stored as it is)."""
    yield from [bs] * (size // bs)
    last = (size % bs) - (size % bs) % 8
    if last:
        yield last


class HDF5Bitshuffle(Codec):
    """The bitshuffle filter (32008), plain or with LZ4 / zstd.  Parameters from
    ``cd_values``: element size ([2]), block size in elements ([3], 0 = default), compression
    ([4]: 0 none, 2 lz4, 3 zstd) and the zstd level ([5])."""

    codec_id = "hdf5_bitshuffle"

    def __init__(self, elementsize: int = 1, blocksize: int = 0, compression: str = "none",
                 level: int = 0):
        self.elementsize = int(elementsize)
        self.blocksize = int(blocksize)
        if compression not in ("none", "lz4", "zstd"):
            raise ValueError(f"unknown bitshuffle compression {compression!r}")
        self.compression = compression
        self.level = int(level)
        if self.elementsize < 1:
            raise ValueError("elementsize must be >= 1")

    def _block(self, bs: int) -> int:
        bs = bs if bs > 0 else _bshuf_default_block(self.elementsize)
        if bs % 8:
            raise _fail(self.codec_id, f"block size {bs} is not a multiple of 8")
        return bs

    def encode(self, buf):
        data = _u8(buf)
        elem = self.elementsize
        if data.size % elem:
            raise ValueError("input is not a whole number of elements")
        bs = self._block(self.blocksize)
        if self.compression == "none":
            return _bshuf_apply(_bitshuffle_blocks, data, elem, bs).tobytes()
        size = data.size // elem
        parts = [struct.pack(">QI", data.size, bs * elem)]
        pos = 0

        def block(n):
            nonlocal pos
            chunk = data[pos:pos + n * elem]
            sh = _bitshuffle_blocks(chunk, 1, n, elem)
            if self.compression == "lz4":
                comp = _lz4_compress_block(sh)
            else:
                from numcodecs import zstd

                comp = bytes(zstd.compress(sh, self.level or 3))
            parts.extend([struct.pack(">I", len(comp)), comp])
            pos += n * elem

        for n in _block_sizes(size, bs):
            block(n)
        parts.append(data[pos:].tobytes())
        return b"".join(parts)

    def decode(self, buf, out=None):
        name = self.codec_id
        data = _u8(buf)
        elem = self.elementsize
        if self.compression == "none":
            if data.size % elem:
                raise _fail(name, f"{data.size} bytes is not a whole number of {elem}-byte "
                                  "elements")
            return _finish(_bitunshuffle(data, elem, self._block(self.blocksize)), out)
        if data.size < 12:
            raise _fail(name, f"{data.size} bytes, shorter than the 12-byte header")
        total, block_bytes = struct.unpack(">QI", data[:12].tobytes())
        ratio = 512 if self.compression == "lz4" else 1 << 16
        _ratio_check(name, total, data.size, ratio)
        if total % elem:
            raise _fail(name, f"{total} decoded bytes is not a whole number of elements")
        if block_bytes == 0 or block_bytes % elem:
            raise _fail(name, f"invalid block size {block_bytes} bytes")
        bs = self._block(block_bytes // elem)
        size = total // elem
        shuffled = np.empty(total, dtype=np.uint8)
        pos, done = 12, 0
        for n in _block_sizes(size, bs):
            src, pos = _sized_block(name, data, pos)
            dst = shuffled[done:done + n * elem]
            if self.compression == "lz4":
                _lz4_block(name, src, dst)
            else:
                dst[:] = np.frombuffer(_zstd_decompress(name, src, dst.size), np.uint8)
            done += n * elem
        rest = total - done
        if pos + rest > data.size:
            raise _fail(name, "truncated: the trailing elements are missing")
        shuffled[done:] = data[pos:pos + rest]
        return _finish(_bitunshuffle(shuffled, elem, bs), out)

    def get_config(self):
        return {"id": self.codec_id, "elementsize": self.elementsize,
                "blocksize": self.blocksize, "compression": self.compression,
                "level": self.level}

    def __repr__(self):
        return (f"HDF5Bitshuffle(elementsize={self.elementsize}, blocksize={self.blocksize}, "
                f"compression={self.compression!r}, level={self.level})")


# ------------------------------------------------------------------ bzip2


