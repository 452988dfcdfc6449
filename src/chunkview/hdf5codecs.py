"""numcodecs codecs that decode HDF5 filters numcodecs does not decode in HDF5's format.

Each codec decodes the bytes one HDF5 filter wrote for one chunk (``codecs_for`` in
:mod:`chunkview.scan.filters` builds their configs from a dataset's filter pipeline):

============================  ===================================================================
``hdf5_lzf``        (32000)   h5py's LZF filter (raw LZF, no header), via imagecodecs
``hdf5_szip``           (4)   HDF5's szip filter (4-byte LE size + szip stream), via imagecodecs
``hdf5_blosc``      (32001)   the hdf5-blosc filter (one blosc1 frame), via numcodecs' blosc
``hdf5_zstd``       (32015)   the zstd filter (one zstd frame), via numcodecs' zstd
``hdf5_lz4``        (32004)   the HDF5 lz4 filter's block container, blocks via numcodecs' lz4
``hdf5_bitshuffle`` (32008)   bitshuffle (plain, +lz4, +zstd); transpose via imagecodecs/numpy
``hdf5_bzip2``        (307)   the bzip2 filter (one bzip2 stream), via the standard library
``hdf5_scaleoffset``    (6)   H5Zscaleoffset.c (integer and float D-scale), numpy
``hdf5_nbit``           (5)   H5Znbit.c (integer, float, array and compound types), numpy
============================  ===================================================================

Decoding returns the chunk's bytes in the dataset's dtype and byte order.  Corrupt or
truncated input raises :class:`chunkview.errors.DecodeError`: sizes read from headers are
checked against the input before anything is allocated or handed to a C library.

Two formats depend on the writer's machine: scaleoffset stores values (and full-precision
chunks) in the writer's native byte order, which is assumed little-endian (every platform HDF5
builds on today).  nbit with a reduced-precision type decodes to the *values* HDF5 converts
to when reading (integers sign-extended and shifted down by their bit offset; reduced floats
converted to IEEE with their HDF5 field layout, given as ``float_fields``), which is what
h5py returns for the dataset's numpy dtype.
"""

from __future__ import annotations

import bz2
import struct

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ndarray_copy

from chunkview.errors import DecodeError, missing_extra

__all__ = [
    "HDF5LZF",
    "HDF5SZIP",
    "HDF5Blosc",
    "HDF5Zstd",
    "HDF5LZ4",
    "HDF5Bitshuffle",
    "HDF5BZip2",
    "HDF5ScaleOffset",
    "HDF5NBit",
    "dtype_to_json",
    "dtype_from_json",
]

#: HDF5 chunks are smaller than 4 GiB: any decoded size claimed above this is corrupt.
MAX_CHUNK_BYTES = (1 << 32) - 1


# ------------------------------------------------------------------ helpers


def _u8(buf) -> np.ndarray:
    """A 1-D uint8 view of any contiguous buffer (a copy only if it is not contiguous)."""
    if isinstance(buf, np.ndarray):
        a = np.ascontiguousarray(buf)
        return a.reshape(-1).view(np.uint8)
    mv = memoryview(buf)
    if not mv.c_contiguous:
        mv = memoryview(mv.tobytes())
    return np.frombuffer(mv.cast("B"), dtype=np.uint8)


def _finish(result, out):
    if out is not None:
        return ndarray_copy(result, out)
    return result


def _need_imagecodecs():
    try:
        import imagecodecs
    except ImportError:  # pragma: no cover - depends on the environment
        raise missing_extra("imagecodecs", "codecs") from None
    return imagecodecs


def _fail(codec: str, msg: str, cause: BaseException | None = None) -> DecodeError:
    err = DecodeError(f"{codec}: {msg}")
    if cause is not None:
        err.__cause__ = cause
    return err


def _call(codec: str, fn, *args, **kw):
    """Run a third-party decoder, turning its failures into DecodeError."""
    try:
        return fn(*args, **kw)
    except (DecodeError, ImportError, MemoryError):
        raise
    except Exception as e:
        raise _fail(codec, f"corrupt data ({type(e).__name__}: {e})", e) from e


def _extract(payload: np.ndarray, starts: np.ndarray, nbits: int) -> np.ndarray:
    """The ``nbits``-bit (1..64) big-endian bit fields of ``payload`` starting at bit offsets
    ``starts`` (most significant bit first), as uint64.  The caller checks the bounds."""
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    out = np.zeros(starts.size, dtype=np.uint64)
    if nbits == 0 or starts.size == 0:
        return out
    padded = np.zeros(payload.size + 16, dtype=np.uint8)
    padded[: payload.size] = payload
    windows = np.lib.stride_tricks.sliding_window_view(padded, 8)
    drop = np.uint64(64 - nbits)
    step = 1 << 16  # bounded temporaries, cache-sized blocks
    for lo in range(0, starts.size, step):
        s = starts[lo:lo + step]
        byte = s >> 3
        shift = (s & 7).astype(np.uint64)
        word = np.ascontiguousarray(windows[byte]).view(">u8").reshape(-1).astype(np.uint64)
        word <<= shift
        word |= padded[byte + 8].astype(np.uint64) >> (np.uint64(8) - shift)
        word >>= drop
        out[lo:lo + step] = word
    return out


def _pack(columns: list[tuple[np.ndarray, int]], n: int) -> np.ndarray:
    """Pack per element, in order, each (values (n, k) uint64, nbits) column MSB first."""
    parts = []
    for values, nbits in columns:
        v = np.asarray(values, dtype=np.uint64).reshape(n, -1)
        if nbits == 0 or v.shape[1] == 0:
            continue
        sh = np.arange(nbits - 1, -1, -1, dtype=np.uint64)
        bits = ((v[:, :, None] >> sh) & np.uint64(1)).astype(np.uint8)
        parts.append(bits.reshape(n, -1))
    if not parts:
        return np.zeros(0, dtype=np.uint8)
    return np.packbits(np.concatenate(parts, axis=1).reshape(-1))


def _ratio_check(codec: str, claimed: int, have: int, ratio: int) -> None:
    if claimed > MAX_CHUNK_BYTES:
        raise _fail(codec, f"header claims {claimed} decoded bytes (HDF5 chunks are < 4 GiB)")
    if claimed > have * ratio + (1 << 16):
        raise _fail(codec, f"header claims {claimed} decoded bytes from {have} input bytes")


# ------------------------------------------------------------------ dtype <-> JSON


def dtype_to_json(dt):
    """A JSON-able description of a numpy dtype (structured and subarray dtypes included)."""
    dt = np.dtype(dt)
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return {"base": dtype_to_json(base), "shape": list(shape)}
    if dt.names is not None:
        return {
            "names": list(dt.names),
            "formats": [dtype_to_json(dt.fields[n][0]) for n in dt.names],
            "offsets": [int(dt.fields[n][1]) for n in dt.names],
            "itemsize": int(dt.itemsize),
        }
    return dt.str


def dtype_from_json(obj) -> np.dtype:
    if obj is None:
        return None
    if isinstance(obj, str):
        return np.dtype(obj)
    if isinstance(obj, (list, tuple)):
        return np.dtype([tuple(x) for x in obj])
    if "base" in obj:
        return np.dtype((dtype_from_json(obj["base"]), tuple(obj["shape"])))
    return np.dtype(
        {
            "names": list(obj["names"]),
            "formats": [dtype_from_json(f) for f in obj["formats"]],
            "offsets": list(obj["offsets"]),
            "itemsize": int(obj["itemsize"]),
        }
    )


# ------------------------------------------------------------------ LZF


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
        cap = min(MAX_CHUNK_BYTES, max(self.nbytes, data.size * 128 + 1024))
        size = self.nbytes if self.nbytes > 0 else min(cap, max(64, data.size * 4))
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


class HDF5SZIP(Codec):
    """HDF5's szip filter (4): a 4-byte little-endian decoded size, then the szip stream.
    The parameters are the filter's ``cd_values`` (options mask with HDF5's RAW/LSB/MSB bits,
    pixels per block, bits per pixel, pixels per scanline)."""

    codec_id = "hdf5_szip"

    def __init__(self, options_mask=141, pixels_per_block=32, bits_per_pixel=8,
                 pixels_per_scanline=1):
        self.options_mask = int(options_mask)
        self.pixels_per_block = int(pixels_per_block)
        self.bits_per_pixel = int(bits_per_pixel)
        self.pixels_per_scanline = int(pixels_per_scanline)

    def _params(self):
        ppb, bpp, pps = self.pixels_per_block, self.bits_per_pixel, self.pixels_per_scanline
        if not (2 <= ppb <= 32 and ppb % 2 == 0):
            raise _fail(self.codec_id, f"invalid pixels_per_block {ppb}")
        if not (1 <= bpp <= 32 or bpp == 64):
            raise _fail(self.codec_id, f"invalid bits_per_pixel {bpp}")
        if not (1 <= pps <= ppb * 128):
            raise _fail(self.codec_id, f"invalid pixels_per_scanline {pps}")
        return self.options_mask, ppb, bpp, pps

    def encode(self, buf):
        ic = _need_imagecodecs()
        return ic.szip_encode(_u8(buf).tobytes(), *self._params(), header=True)

    def decode(self, buf, out=None):
        ic = _need_imagecodecs()
        params = self._params()
        data = _u8(buf)
        if data.size < 4:
            raise _fail(self.codec_id, f"{data.size} bytes, shorter than the 4-byte header")
        size = int.from_bytes(data[:4].tobytes(), "little")
        if size == 0:
            return _finish(b"", out)
        if data.size == 4:
            raise _fail(self.codec_id, "no compressed data after the header")
        # zero-block runs compress a reference sample interval to a few dozen bits
        _ratio_check(self.codec_id, size, data.size, 1 << 14)
        # (decoding without imagecodecs' header handling: it reports the header's size even
        # when the stream ran out early)
        res = _call(self.codec_id, ic.szip_decode, data[4:], *params, header=False, out=size)
        if len(res) != size:
            raise _fail(self.codec_id, f"truncated: decoded {len(res)} bytes, header says "
                                       f"{size}")
        return _finish(res, out)

    def get_config(self):
        return {
            "id": self.codec_id,
            "options_mask": self.options_mask,
            "pixels_per_block": self.pixels_per_block,
            "bits_per_pixel": self.bits_per_pixel,
            "pixels_per_scanline": self.pixels_per_scanline,
        }

    def __repr__(self):
        return (f"HDF5SZIP(options_mask={self.options_mask}, pixels_per_block="
                f"{self.pixels_per_block}, bits_per_pixel={self.bits_per_pixel}, "
                f"pixels_per_scanline={self.pixels_per_scanline})")


# ------------------------------------------------------------------ Blosc (1)

_BLOSC_CNAMES = {0: "blosclz", 1: "lz4", 2: "lz4hc", 3: "snappy", 4: "zlib", 5: "zstd"}


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

_BSHUF_COMPRESSION = {0: "none", 2: "lz4", 3: "zstd"}


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
        try:
            res = d.decompress(data, max_length=MAX_CHUNK_BYTES + 1)
        except (MemoryError, ImportError):
            raise
        except Exception as e:
            raise _fail(self.codec_id, f"corrupt data ({e})", e) from e
        if not d.eof:
            raise _fail(self.codec_id, "truncated bzip2 stream")
        return _finish(res, out)

    def get_config(self):
        return {"id": self.codec_id, "level": self.level}

    def __repr__(self):
        return f"HDF5BZip2(level={self.level})"


# ------------------------------------------------------------------ scaleoffset

_SO_FLOAT_DSCALE, _SO_FLOAT_ESCALE, _SO_INT = 0, 1, 2
_SO_HEADER = 21


def _pow10(ftype, d: int):
    """10**d as HDF5 computes it: powf for float, pow for double."""
    if ftype is np.float64:
        return np.float64(10.0 ** d)
    return np.float32(np.power(np.float32(10), np.float32(d)))


def _lround(x):
    """C lround: halves away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _so_fill_bytes(cd: list[int], size: int) -> bytes:
    """The fill value HDF5 stored in cd_values[8:] (native = little-endian byte order)."""
    raw = b"".join((c & 0xFFFFFFFF).to_bytes(4, "little") for c in cd[8:20])
    return raw[:size]


class HDF5ScaleOffset(Codec):
    """HDF5's scale-offset filter (6), H5Zscaleoffset.c.  ``cd_values`` are the filter's 20
    stored parameters: scale type, scale factor, elements per chunk, class (0 integer,
    1 float), size, sign, byte order, fill-value flag and the fill value.

    A chunk is a 21-byte header (minimum bits as a 32-bit LE integer, the byte count of the
    minimum value, the minimum value LE) and each element's ``minbits`` low bits, most
    significant first.  Integers decode to ``v + min`` (all-ones: the fill value), floats
    (D-scale) to ``v / 10**D + min`` in the float's own precision, as HDF5 computes it."""

    codec_id = "hdf5_scaleoffset"

    def __init__(self, cd_values):
        cd = [int(c) & 0xFFFFFFFF for c in cd_values]
        if len(cd) != 20:
            raise ValueError(f"scaleoffset takes 20 cd_values, got {len(cd)}")
        self.cd_values = cd
        self.scale_type = cd[0]
        sf = cd[1]
        self.scale_factor = sf - (1 << 32) if sf >= 1 << 31 else sf
        self.nelmts = cd[2]
        self.cls = cd[3]
        self.size = cd[4]
        self.signed = cd[5] == 1
        self.order = "<" if cd[6] == 0 else ">"
        self.filavail = cd[7] == 1
        if self.cls == 0:
            if self.size not in (1, 2, 4, 8):
                raise ValueError(f"scaleoffset: unsupported integer size {self.size}")
            self.dtype = np.dtype(f"{self.order}{'i' if self.signed else 'u'}{self.size}")
        elif self.cls == 1:
            if self.size not in (4, 8):
                raise ValueError(f"scaleoffset: unsupported float size {self.size}")
            self.dtype = np.dtype(f"{self.order}f{self.size}")
        else:
            raise ValueError(f"scaleoffset: unsupported datatype class {self.cls}")

    # -- decode

    def _mode(self):
        """'int', 'float' or 'copy' (integer with minbits = full precision: no processing)."""
        name = self.codec_id
        if self.cls == 1:
            if self.scale_type == _SO_FLOAT_ESCALE:
                raise _fail(name, "E-scale (fixed minimum bits) is not supported by HDF5")
            if self.scale_type != _SO_FLOAT_DSCALE:
                raise _fail(name, f"invalid scale type {self.scale_type} for a float type")
            return "float"
        if self.scale_type != _SO_INT:
            raise _fail(name, f"invalid scale type {self.scale_type} for an integer type")
        sf = max(self.scale_factor, 0)
        if sf > self.size * 8:
            raise _fail(name, f"minimum bits {sf} exceed the type's {self.size * 8}")
        return "copy" if sf == self.size * 8 else "int"

    def decode(self, buf, out=None):
        name = self.codec_id
        mode = self._mode()
        data = _u8(buf)
        if mode == "copy":
            return _finish(data, out)
        n, size = self.nelmts, self.size
        if data.size < _SO_HEADER:
            raise _fail(name, f"{data.size} bytes, shorter than the 21-byte header")
        minbits = int.from_bytes(data[:4].tobytes(), "little")
        if minbits > size * 8:
            raise _fail(name, f"minimum bits {minbits} exceed the type's {size * 8}")
        mvsize = min(8, int(data[4]))
        minval = int.from_bytes(data[5:5 + mvsize].tobytes(), "little")
        payload = data[_SO_HEADER:]
        native = self.dtype.newbyteorder("<")
        if minbits == size * 8:  # stored as is, in the writer's (little-endian) order
            if payload.size < n * size:
                raise _fail(name, f"truncated: {payload.size} bytes for {n} full-size values")
            vals = payload[: n * size].view(native)
            return _finish(vals.astype(self.dtype).view(np.uint8), out)
        if payload.size * 8 < n * minbits:
            raise _fail(name, f"truncated: {payload.size} bytes for {n} values of "
                              f"{minbits} bits")
        v = _extract(payload, np.arange(n, dtype=np.int64) * minbits, minbits)
        fill_marker = np.uint64((1 << minbits) - 1)
        fill = np.frombuffer(_so_fill_bytes(self.cd_values, size), native)[0]
        if self.cls == 0:
            mask = np.uint64((1 << (size * 8)) - 1)
            res = ((v + np.uint64(minval)) & mask).astype(f"<u{size}").view(native)
            if self.filavail:
                res = np.where(v == fill_marker, fill, res).astype(native)
        else:
            ftype = np.float32 if size == 4 else np.float64
            itype = np.int32 if size == 4 else np.int64
            fmin = np.frombuffer(minval.to_bytes(8, "little")[:size], native)[0]
            scale = _pow10(ftype, self.scale_factor)
            with np.errstate(all="ignore"):
                res = (v.astype(itype).astype(ftype) / scale + ftype(fmin)).astype(ftype)
            if self.filavail:
                res = np.where(v == fill_marker, ftype(fill), res).astype(ftype)
        return _finish(np.ascontiguousarray(res.astype(self.dtype)).view(np.uint8), out)

    # -- encode (as H5Zscaleoffset.c computes it)

    def encode(self, buf):
        mode = self._mode()
        data = _u8(buf)
        if mode == "copy":
            return data.tobytes()
        n, size = self.nelmts, self.size
        vals = data.view(self.dtype).astype(self.dtype.newbyteorder("="))
        if vals.size != n:
            raise ValueError(f"expected {n} elements, got {vals.size}")
        fill = np.frombuffer(_so_fill_bytes(self.cd_values, size),
                             self.dtype.newbyteorder("<"))[0]
        if self.cls == 0:
            minbits, minval, packed = self._encode_int(vals, fill)
        else:
            minbits, minval, packed = self._encode_float(vals, fill)
        header = struct.pack("<IB", minbits, 8) + (minval & (2**64 - 1)).to_bytes(8, "little")
        header += bytes(8)
        if minbits == size * 8:
            body = vals.astype(self.dtype.newbyteorder("<")).tobytes()
        else:
            body = packed.tobytes() + b"\0"
        return header + body

    @staticmethod
    def _log2ceil(x: int) -> int:
        return 0 if x <= 1 else (x - 1).bit_length()

    def _encode_int(self, vals, fill):
        size = self.size
        keep = vals != fill if self.filavail else np.ones(vals.shape, bool)
        sel = vals[keep]
        lo = int(sel.min()) if sel.size else 0
        hi = int(sel.max()) if sel.size else 0
        user = max(self.scale_factor, 0)
        if user == 0:
            if hi - lo > 2 ** (size * 8) - 3:
                return size * 8, 0, None
            span = hi - lo + 1
            minbits = self._log2ceil(span + 1 if self.filavail else span)
        else:
            minbits = user
        bits = vals.astype(f"=u{size}" if vals.dtype.kind == "u" else f"=i{size}")
        u = bits.view(f"=u{size}").astype(np.uint64)
        v = (u - np.uint64(lo % (1 << 64))) & np.uint64((1 << (size * 8)) - 1)
        if self.filavail:
            v[~keep] = (1 << minbits) - 1
        packed = _pack([(v, minbits)], vals.size) if minbits else np.zeros(0, np.uint8)
        return minbits, lo % (1 << 64), packed

    def _encode_float(self, vals, fill):
        size = self.size
        ftype = np.float32 if size == 4 else np.float64
        p = _pow10(ftype, self.scale_factor)
        with np.errstate(all="ignore"):
            if self.filavail:
                keep = ~(np.abs(vals - ftype(fill)) < _pow10(ftype, -self.scale_factor))
            else:
                keep = np.ones(vals.shape, bool)
            sel = vals[keep]
            lo = ftype(sel.min()) if sel.size else ftype(0)
            hi = ftype(sel.max()) if sel.size else ftype(0)
            if _lround(ftype(hi * p - lo * p)) > ftype(2.0) ** (size * 8 - 1):
                return size * 8, 0, None
            span = int(_lround(ftype(hi * p - lo * p))) + 1
            minbits = self._log2ceil(span + 1 if self.filavail else span)
            if minbits == size * 8:
                return size * 8, 0, None
            q = _lround((vals * p - lo * p).astype(ftype)).astype(np.int64)
        v = q.astype(np.uint64)
        if self.filavail:
            v[~keep] = (1 << minbits) - 1
        packed = _pack([(v, minbits)], vals.size) if minbits else np.zeros(0, np.uint8)
        minval = int.from_bytes(np.array(lo, dtype=f"<f{size}").tobytes(), "little")
        return minbits, minval, packed

    def get_config(self):
        return {"id": self.codec_id, "cd_values": list(self.cd_values)}

    def __repr__(self):
        return f"HDF5ScaleOffset(cd_values={self.cd_values})"


# ------------------------------------------------------------------ nbit

_NBIT_ATOMIC, _NBIT_ARRAY, _NBIT_COMPOUND, _NBIT_NOOP = 1, 2, 3, 4
_NBIT_MAX_DEPTH = 32
_NBIT_MAX_LEAVES = 1 << 16

# (sign pos, exponent pos, exponent size, mantissa pos, mantissa size, bias) of IEEE floats
_IEEE = {2: (15, 10, 5, 0, 10, 15), 4: (31, 23, 8, 0, 23, 127), 8: (63, 52, 11, 0, 52, 1023)}


class _NBitError(ValueError):
    pass


class _Atomic:
    __slots__ = ("idx", "size", "order", "prec", "off")

    def __init__(self, idx, size, order, prec, off):
        if size == 0:
            raise _NBitError("atomic type of size 0")
        if order not in (0, 1):
            raise _NBitError(f"invalid byte order {order}")
        if prec == 0 or prec > size * 8 or prec + off > size * 8:
            raise _NBitError(f"invalid precision/offset {prec}/{off} for size {size}")
        self.idx, self.size, self.order, self.prec, self.off = idx, size, order, prec, off


class _Array:
    __slots__ = ("size", "count", "base")

    def __init__(self, size, count, base):
        self.size, self.count, self.base = size, count, base


class _Compound:
    __slots__ = ("size", "members")

    def __init__(self, size, members):
        self.size, self.members = size, members


class _Noop:
    __slots__ = ("size",)

    def __init__(self, size):
        self.size = size


def nbit_parse(cd: list[int]):
    """Parse nbit cd_values into a type tree, with the checks H5Znbit.c makes.  Returns
    (need_not_compress, nelmts, tree)."""
    n = len(cd)
    if n < 5:
        raise _NBitError(f"nbit takes at least 5 cd_values, got {n}")
    if cd[0] != n:
        raise _NBitError(f"cd_values[0] = {cd[0]} but there are {n} values")
    if cd[1]:
        return True, cd[2], None
    if cd[4] == 0:
        raise _NBitError("datatype size 0")

    def need(i, k):
        if i + k > n:
            raise _NBitError("parameter list is shorter than the datatype it describes")

    def array(i, depth):
        if depth > _NBIT_MAX_DEPTH:
            raise _NBitError("datatype nested too deeply")
        need(i, 2)
        total, cls = cd[i], cd[i + 1]
        i += 2
        if cls == _NBIT_ATOMIC:
            need(i, 4)
            base = _Atomic(i, *cd[i:i + 4])
            i += 4
            bsize = base.size
        elif cls == _NBIT_ARRAY:
            need(i, 1)
            bsize = cd[i]
            base, i = array(i, depth + 1)
        elif cls == _NBIT_COMPOUND:
            need(i, 1)
            bsize = cd[i]
            base, i = compound(i, depth + 1)
        elif cls == _NBIT_NOOP:
            need(i, 1)
            i += 1
            return _Noop(total), i
        else:
            raise _NBitError(f"unknown datatype class {cls}")
        if bsize == 0:
            raise _NBitError("array base type of size 0")
        return _Array(total, total // bsize, base), i

    def compound(i, depth):
        if depth > _NBIT_MAX_DEPTH:
            raise _NBitError("datatype nested too deeply")
        need(i, 2)
        size, nmembers = cd[i], cd[i + 1]
        i += 2
        members, used = [], 0
        for _ in range(nmembers):
            need(i, 3)
            moff, mcls, msize = cd[i], cd[i + 1], cd[i + 2]
            i += 2
            if msize == 0 or used + msize > size or moff + msize > size:
                raise _NBitError("compound member overflows the compound size")
            used += msize
            if mcls == _NBIT_ATOMIC:
                need(i, 4)
                node = _Atomic(i, msize, cd[i + 1], cd[i + 2], cd[i + 3])
                i += 4
            elif mcls == _NBIT_ARRAY:
                node, i = array(i, depth + 1)
            elif mcls == _NBIT_COMPOUND:
                node, i = compound(i, depth + 1)
            elif mcls == _NBIT_NOOP:
                i += 1
                node = _Noop(msize)
            else:
                raise _NBitError(f"unknown datatype class {mcls}")
            members.append((moff, node))
        return _Compound(size, members), i

    cls = cd[3]
    if cls == _NBIT_ATOMIC:
        need(4, 4)
        tree = _Atomic(4, *cd[4:8])
    elif cls == _NBIT_ARRAY:
        tree, _ = array(4, 0)
    elif cls == _NBIT_COMPOUND:
        tree, _ = compound(4, 0)
    else:
        raise _NBitError(f"unknown datatype class {cls}")
    return False, cd[2], tree


class _Leaf:
    """``count`` consecutive values of one atomic (or raw byte) type in each element:
    byte offset, bit offset in the element's packed bits."""

    __slots__ = ("kind", "node", "byte", "count", "bit", "nbits", "fields")

    def __init__(self, kind, node, byte, count, bit, nbits, fields=None):
        self.kind, self.node, self.byte, self.count = kind, node, byte, count
        self.bit, self.nbits, self.fields = bit, nbits, fields


def _np_base(dt):
    while dt is not None and dt.subdtype is not None:
        dt = dt.subdtype[0]
    return dt


def _member_dtype(dt, moff, msize):
    if dt is None or dt.names is None:
        return None
    for name in dt.names:
        fdt, foff = dt.fields[name][:2]
        if foff == moff and fdt.itemsize == msize:
            return fdt
    return None


def _nbit_layout(tree, dtype, float_fields):
    """Flatten a type tree into leaves.  Returns (leaves, bits per element)."""
    leaves: list[_Leaf] = []
    bit = 0

    def add(leaf):
        nonlocal bit
        leaves.append(leaf)
        bit += leaf.count * leaf.nbits
        if len(leaves) > _NBIT_MAX_LEAVES:
            raise _NBitError("datatype has too many members")

    def atomic(node, dt, byte, count):
        base = _np_base(dt)
        kind = base.kind if base is not None and base.kind in "iuf" else "x"
        fields = float_fields.get(node.idx) if kind == "f" else None
        if node.size > 8:
            if node.prec != node.size * 8 or node.off != 0:
                raise _NBitError(f"reduced-precision {node.size}-byte types are not supported")
            add(_Leaf("wide", node, byte, count * node.size, bit, 8))
            return
        # a reduced float without its field layout is read as a truncated IEEE float (sign
        # and exponent in place, low mantissa bits dropped)
        add(_Leaf(kind, node, byte, count, bit, node.prec, fields))

    def walk(node, dt, byte, depth):
        if depth > _NBIT_MAX_DEPTH:
            raise _NBitError("datatype nested too deeply")
        if isinstance(node, _Atomic):
            atomic(node, dt, byte, 1)
        elif isinstance(node, _Noop):
            add(_Leaf("raw", node, byte, node.size, bit, 8))
        elif isinstance(node, _Array):
            bdt = dt.subdtype[0] if dt is not None and dt.subdtype is not None else dt
            if isinstance(node.base, _Atomic):
                atomic(node.base, bdt, byte, node.count)
            else:
                bsize = node.base.size
                if node.count > _NBIT_MAX_LEAVES:
                    raise _NBitError("datatype has too many members")
                for k in range(node.count):
                    walk(node.base, bdt, byte + k * bsize, depth + 1)
        else:
            for moff, child in node.members:
                size = child.size
                walk(child, _member_dtype(dt, moff, size), byte + moff, depth + 1)

    walk(tree, dtype, 0, 0)
    return leaves, bit


def _leaf_values_to_bytes(leaf: _Leaf, field: np.ndarray) -> np.ndarray:
    """The bytes (m, size) of ``field`` (m uint64 values of ``leaf.nbits`` bits)."""
    node = leaf.node
    size, prec, off = node.size, node.prec, node.off
    order = "<" if node.order == 0 else ">"
    if leaf.kind == "i" and prec < 64:
        sign = np.uint64(1 << (prec - 1))
        word = (field ^ sign) - sign
    elif leaf.kind == "f":
        if leaf.fields is not None:
            word = _float_from_fields(field << np.uint64(off), leaf.fields, size, order)
            return word.reshape(-1, size)
        word = field << np.uint64(off)
    elif leaf.kind in ("i", "u"):
        word = field
    else:  # not a numpy number: the raw bits in place
        word = field << np.uint64(off)
    b = word.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :size]
    return b[:, ::-1] if order == ">" else b


def _float_from_fields(raw: np.ndarray, fields, size: int, order: str) -> np.ndarray:
    """IEEE floats (as bytes) of HDF5 floats with the given bit fields (H5T_conv_f_f)."""
    spos, epos, esize, mpos, msize, ebias, norm = fields
    if (spos, epos, esize, mpos, msize, ebias) == _IEEE.get(size) and norm == 0:
        out = raw.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :size]
        return np.ascontiguousarray(out[:, ::-1] if order == ">" else out).reshape(-1)
    one = np.uint64(1)
    s = (raw >> np.uint64(spos)) & one
    e = ((raw >> np.uint64(epos)) & np.uint64((1 << esize) - 1)).astype(np.int64)
    m = (raw >> np.uint64(mpos)) & np.uint64((1 << msize) - 1)
    emax = (1 << esize) - 1
    mf = m.astype(np.float64)
    with np.errstate(all="ignore"):
        if norm == 0:  # implied leading 1
            normal = np.ldexp(mf + float(1 << msize), (e - ebias - msize).astype(np.int32))
            sub = np.ldexp(mf, np.full(e.shape, 1 - ebias - msize, np.int32))
            val = np.where(e == 0, sub, normal)
        elif norm == 1:  # leading 1 stored
            val = np.ldexp(mf, (e - ebias - (msize - 1)).astype(np.int32))
        else:
            val = np.ldexp(mf, (e - ebias - msize).astype(np.int32))
        val = np.where(e == emax, np.where(m == 0, np.inf, np.nan), val)
        val = np.where(s == one, -val, val)
        res = val.astype(f"{order}f{size}")
    return res.view(np.uint8)


class HDF5NBit(Codec):
    """HDF5's N-bit filter (5), H5Znbit.c.  ``cd_values`` are the filter's stored parameters
    (count, no-op flag, elements per chunk, then the datatype description: class, size, byte
    order, precision and bit offset of each atomic member, member offsets of compounds, ...).
    ``dtype`` (a :func:`dtype_to_json` description) tells signed from unsigned integers and
    integers from floats; ``float_fields`` lists, for reduced-precision floats, ``[cd index,
    sign pos, exponent pos, exponent size, mantissa pos, mantissa size, exponent bias, norm]``
    (the HDF5 float layout, from ``H5Tget_fields``).

    The packed stream holds each element's significant bits (``precision`` bits at
    ``offset``) member by member, most significant bit first, with no padding; no-op members
    (strings, enums, opaque, ...) are copied whole."""

    codec_id = "hdf5_nbit"

    def __init__(self, cd_values, dtype=None, float_fields=None):
        self.cd_values = [int(c) & 0xFFFFFFFF for c in cd_values]
        self.dtype = dtype
        self.float_fields = [list(map(int, f)) for f in float_fields] if float_fields else None
        self._np_dtype = dtype_from_json(dtype) if dtype is not None else None
        try:
            self._passthrough, self.nelmts, tree = nbit_parse(self.cd_values)
        except _NBitError as e:
            raise ValueError(f"invalid nbit parameters: {e}") from None
        if self._passthrough:
            self._leaves, self._ebits, self._esize = [], 0, 0
            return
        ff = {f[0]: tuple(f[1:8]) for f in (self.float_fields or [])}
        try:
            self._leaves, self._ebits = _nbit_layout(tree, self._np_dtype, ff)
        except _NBitError as e:
            raise ValueError(f"unsupported nbit datatype: {e}") from None
        self._esize = tree.size
        for leaf in self._leaves:
            width = 1 if leaf.kind in ("raw", "wide") else leaf.node.size
            if leaf.byte + leaf.count * width > self._esize:
                raise ValueError("invalid nbit parameters: a member lies outside its element")

    def decode(self, buf, out=None):
        name = self.codec_id
        data = _u8(buf)
        if self._passthrough:
            return _finish(data, out)
        n, E, esize = self.nelmts, self._ebits, self._esize
        if data.size * 8 < n * E:
            raise _fail(name, f"truncated: {data.size} bytes for {n} elements of {E} bits")
        res = np.zeros((n, esize), dtype=np.uint8)
        base = np.arange(n, dtype=np.int64) * E
        for leaf in self._leaves:
            c = leaf.count
            starts = (base[:, None] + (leaf.bit + np.arange(c, dtype=np.int64)
                                       * leaf.nbits)[None, :]).reshape(-1)
            field = _extract(data, starts, leaf.nbits)
            if leaf.kind in ("raw", "wide"):
                b = field.astype(np.uint8).reshape(n, c)
                if leaf.kind == "wide" and leaf.node.order == 0:
                    sz = leaf.node.size
                    b = b.reshape(n, c // sz, sz)[:, :, ::-1].reshape(n, c)
                res[:, leaf.byte:leaf.byte + c] = b
                continue
            size = leaf.node.size
            b = _leaf_values_to_bytes(leaf, field).reshape(n, c * size)
            res[:, leaf.byte:leaf.byte + c * size] = b
        return _finish(res.reshape(-1), out)

    def encode(self, buf):
        data = _u8(buf)
        if self._passthrough:
            return data.tobytes()
        n, esize = self.nelmts, self._esize
        if data.size != n * esize:
            raise ValueError(f"expected {n * esize} bytes, got {data.size}")
        elems = data.reshape(n, esize)
        cols = []
        for leaf in self._leaves:
            c = leaf.count
            if leaf.kind in ("raw", "wide"):
                b = elems[:, leaf.byte:leaf.byte + c]
                if leaf.kind == "wide" and leaf.node.order == 0:
                    sz = leaf.node.size
                    b = b.reshape(n, c // sz, sz)[:, :, ::-1].reshape(n, c)
                cols.append((b.astype(np.uint64), 8))
                continue
            node = leaf.node
            if leaf.kind == "f" and leaf.fields is not None and \
                    tuple(leaf.fields[:6]) != _IEEE.get(node.size):
                raise NotImplementedError("nbit encode of non-IEEE float layouts")
            size = node.size
            b = elems[:, leaf.byte:leaf.byte + c * size].reshape(n * c, size)
            if node.order == 1:
                b = b[:, ::-1]
            word = np.zeros((n * c, 8), np.uint8)
            word[:, :size] = b
            w = word.view("<u8").reshape(-1)
            mask = np.uint64((1 << node.prec) - 1) if node.prec < 64 else np.uint64(2**64 - 1)
            if leaf.kind in ("i", "u"):
                field = w & mask
            elif leaf.kind == "f" and leaf.fields is not None and node.prec == node.size * 8:
                field = w
            else:
                field = (w >> np.uint64(node.off)) & mask
            cols.append((field.reshape(n, c), node.prec))
        return (_pack(cols, n).tobytes() + b"\0") if cols else b""

    def get_config(self):
        cfg = {"id": self.codec_id, "cd_values": list(self.cd_values), "dtype": self.dtype}
        if self.float_fields:
            cfg["float_fields"] = [list(f) for f in self.float_fields]
        return cfg

    def __repr__(self):
        return f"HDF5NBit(cd_values={self.cd_values}, dtype={self.dtype!r})"
