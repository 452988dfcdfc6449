"""Decoding bounded by the chunk's decoded size: a decompression bomb fails before it allocates.

Every chunk chunkview decodes off its C path (the direct API, the zarr store, the xarray
engine) goes one codec step at a time through :func:`decode_step`, with ``limit`` the most
bytes the step may produce (the chunk's decoded size from its metadata).  How each codec is
held to it:

=====================================  ========================================================
``zlib``, ``gzip``, ``bz2``, ``lzma``,  streaming decoders that stop one byte past the limit
``hdf5_bzip2``
``zstd``, ``hdf5_zstd``                 frame and block headers: the content size and an upper
                                        bound of what the blocks can produce (a frame without a
                                        content size is decoded by a streaming decoder)
``blosc``, ``hdf5_blosc``, ``lz4``,     the decoded size in the header, before the library
``hdf5_lz4``, ``hdf5_bitshuffle``,      allocates it
``hdf5_szip``, ``hdf5_lzf``,
``hdf5_scaleoffset``, ``hdf5_nbit``
filters (``shuffle``, ``delta``, ...)  output proportional to the input, checked after
``vlen-*``                              the item count in the header against the chunk's
``pickle``                              refused: decoding it runs code the file chose
any other codec                         checked after the step (its own allocation is not
                                        bounded: see docs/hardening.md)
=====================================  ========================================================
"""

from __future__ import annotations

import struct

import numpy as np

from chunkview.codecs.common import _u8, output_limit
from chunkview.codecs.zstd import zstd_bound
from chunkview.errors import DecodeError, reason

#: object (variable-length) chunks have no decoded size in their metadata: the most bytes a
#: codec step of one may produce
MAX_VLEN_CHUNK_BYTES = 1 << 28

#: numcodecs filters whose output is at most a few times their input (checked after)
PROPORTIONAL = frozenset({
    "shuffle", "hdf5_shuffle", "delta", "fixedscaleoffset", "quantize", "bitround", "astype",
    "packbits", "categorize", "base64", "crc32", "crc32c", "adler32", "fletcher32",
    "hdf5_fletcher32", "jenkins_lookup3", "hdf5_strpad",
})
_VLEN = frozenset({"vlen-utf8", "vlen-bytes", "vlen-array"})


def _nbytes(out) -> int:
    if isinstance(out, np.ndarray):
        return out.nbytes
    return memoryview(out).nbytes


def _stream(cid: str, make, data, limit: int) -> bytes:
    """Decode concatenated streams with a streaming decompressor made by ``make``, stopping one
    byte past ``limit``."""
    rest = memoryview(_u8(data))
    out = bytearray()
    first = True
    while first or rest.nbytes:
        first = False
        d = make()
        try:
            part = d.decompress(rest, max_length=limit + 1 - len(out))
        except (MemoryError, DecodeError):
            raise
        except Exception as e:
            raise DecodeError(f"{cid}: corrupt data ({reason(e)})") from e
        out += part
        if len(out) > limit:
            raise DecodeError(f"{cid}: decodes to more than {limit} bytes (the chunk's size)")
        if not d.eof:
            raise DecodeError(f"{cid}: truncated stream ({len(out)} bytes decoded)")
        rest = memoryview(d.unused_data)
    return bytes(out)


def _inflate(cid: str, data, limit: int) -> bytes:
    import zlib

    d = zlib.decompressobj(31 if cid == "gzip" else 15)
    try:
        out = d.decompress(_u8(data), limit + 1)
    except zlib.error as e:
        raise DecodeError(f"{cid}: corrupt data ({e})") from e
    if len(out) > limit:
        raise DecodeError(f"{cid}: inflates to more than {limit} bytes (the chunk's size)")
    if not d.eof:
        raise DecodeError(f"{cid}: truncated deflate stream")
    return out


def _lzma_maker(cfg: dict, limit: int):
    import lzma

    fmt = cfg.get("format", lzma.FORMAT_XZ)
    filters = cfg.get("filters")
    if fmt == lzma.FORMAT_RAW:
        return lambda: lzma.LZMADecompressor(format=fmt, filters=filters)
    # the dictionary a stream's header asks for is allocated too: bounded by liblzma's memlimit
    mem = 2 * limit + (64 << 20)
    return lambda: lzma.LZMADecompressor(format=fmt, memlimit=mem)


def _header_size(cid: str, data, limit: int) -> None:
    """Fail when the decoded size a blosc or numcodecs-lz4 header declares passes ``limit``
    (the library allocates that much before decoding)."""
    u = _u8(data)
    if cid == "blosc":
        if u.size < 16:
            raise DecodeError(f"blosc: {u.size} bytes, shorter than a blosc header")
        nbytes, _bs, cbytes = struct.unpack("<III", u[4:16].tobytes())
        if cbytes > u.size:
            raise DecodeError(f"blosc: header says {cbytes} compressed bytes, have {u.size}")
    else:  # lz4: a little-endian int32 decoded size, then one LZ4 block
        if u.size < 4:
            raise DecodeError(f"lz4: {u.size} bytes, shorter than its 4-byte size header")
        nbytes = int.from_bytes(u[:4].tobytes(), "little", signed=True)
        if nbytes < 0:
            raise DecodeError(f"lz4: negative decoded size {nbytes} in the header")
    if nbytes > limit:
        raise DecodeError(f"{cid}: header claims {nbytes} decoded bytes, more than the "
                          f"chunk's {limit}")


def decode_step(cfg: dict, codec, data, limit: int, items: int | None = None):
    """``codec`` (configured by ``cfg``) decoding ``data`` into at most ``limit`` bytes, or a
    :class:`DecodeError` before more is allocated.  ``items``: the chunk's element count, for
    the variable-length codecs."""
    cid = cfg.get("id")
    if cid == "pickle":
        raise DecodeError("the pickle codec is refused: decoding it runs code the data chose")
    if cid in ("zlib", "gzip"):
        return _inflate(cid, data, limit)
    if cid in ("bz2", "hdf5_bzip2"):
        import bz2

        return _stream(cid, bz2.BZ2Decompressor, data, limit)
    if cid == "lzma":
        return _stream(cid, _lzma_maker(cfg, limit), data, limit)
    if cid == "zstd":
        u = _u8(data)
        if zstd_bound(cid, u, limit + (1 << 17)) > limit + (1 << 17):
            raise DecodeError(f"{cid}: the frame's blocks decode to more than {limit} bytes")
    elif cid in ("blosc", "lz4"):
        _header_size(cid, data, limit)
    elif cid in _VLEN and items is not None:
        u = _u8(data)
        n = int.from_bytes(u[:4].tobytes(), "little") if u.size >= 4 else -1
        if n != items:
            raise DecodeError(f"{cid}: header holds {n} items, the chunk has {items}")
    try:
        with output_limit(limit):  # chunkview's own codecs check their headers against it
            out = codec.decode(data)
    except (MemoryError, DecodeError):
        raise
    except Exception as e:  # noqa: BLE001 - a library's own failure on corrupt input
        raise DecodeError(f"{cid}: corrupt data ({reason(e)})") from e
    if isinstance(out, np.ndarray) and out.dtype.hasobject:
        if items is not None and out.size != items:
            raise DecodeError(f"{cid}: decoded {out.size} items, the chunk has {items}")
        return out
    if _nbytes(out) > limit:
        raise DecodeError(f"{cid}: decoded {_nbytes(out)} bytes, more than the chunk's {limit}")
    return out
