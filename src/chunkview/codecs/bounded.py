"""Decoding bounded by the chunk's decoded size: a decompression bomb fails before it allocates.

Every chunk chunkview decodes off its C path (the direct API, the zarr store, the xarray
engine) goes one codec step at a time through :func:`decode_step`, with ``limit`` the most
bytes the step may produce (the chunk's decoded size from its metadata).  How each codec is
held to it:

=====================================  ========================================================
``zlib``, ``gzip``, ``bz2``, ``lzma``   streaming decoders that stop one byte past the limit
``zstd``, ``hdf5_zstd``                 frame and block headers: the content size and an upper
                                        bound of what the blocks can produce (a frame without a
                                        content size is decoded by a streaming decoder); the
                                        numcodecs codec through ``hdf5_zstd`` (the same frames)
``blosc``, ``hdf5_blosc``, ``lz4``,     the decoded size in the header, before the library
``hdf5_lz4``, ``hdf5_bitshuffle``,      allocates it (``blosc`` through ``hdf5_blosc``)
``hdf5_szip``, ``hdf5_lzf``,
``hdf5_scaleoffset``, ``hdf5_nbit``
filters (``shuffle``, ``delta``, ...)  output proportional to the input, checked after
``hdf5_bzip2``                          its own streaming decoder, bounded like bz2
``vlen-*``                              the item count in the header against the chunk's
``pickle``                              refused: decoding it runs code the file chose
any other codec                         checked after the step (its own allocation is not
                                        bounded: see docs/hardening.md)
=====================================  ========================================================
"""

from __future__ import annotations

import numpy as np

from chunkview.codecs.blosc import HDF5Blosc
from chunkview.codecs.common import _u8, output_limit
from chunkview.codecs.zstd import HDF5Zstd
from chunkview.errors import DecodeError, reason

#: object (variable-length) chunks have no decoded size in their metadata: the most bytes a
#: codec step of one may produce
MAX_VLEN_CHUNK_BYTES = 1 << 28

_VLEN = frozenset({"vlen-utf8", "vlen-bytes", "vlen-array"})


def _nbytes(out) -> int:
    if isinstance(out, np.ndarray):
        return out.nbytes
    return memoryview(out).nbytes


def _stream(cid: str, make, data, limit: int, multi: bool = True) -> bytes:
    """Decode with streaming decompressors made by ``make`` (one per stream; ``multi``: of
    concatenated streams, else of the first one), stopping one byte past ``limit``."""
    rest = memoryview(_u8(data))
    out = bytearray()
    while True:
        d = make()
        try:
            out += d.decompress(rest, max_length=limit + 1 - len(out))
        except (MemoryError, DecodeError):
            raise
        except Exception as e:
            raise DecodeError(f"{cid}: corrupt data ({reason(e)})") from e
        if len(out) > limit:
            raise DecodeError(f"{cid}: decodes to more than {limit} bytes (the chunk's size)")
        if not d.eof:
            raise DecodeError(f"{cid}: truncated stream ({len(out)} bytes decoded)")
        rest = memoryview(d.unused_data)
        if not multi or not rest.nbytes:
            return bytes(out)


def _lzma_maker(cfg: dict, limit: int):
    import lzma

    fmt = cfg.get("format", lzma.FORMAT_XZ)
    filters = cfg.get("filters")
    if fmt == lzma.FORMAT_RAW:
        return lambda: lzma.LZMADecompressor(format=fmt, filters=filters)
    # the dictionary a stream's header asks for is allocated too: bounded by liblzma's memlimit
    mem = 2 * limit + (64 << 20)
    return lambda: lzma.LZMADecompressor(format=fmt, memlimit=mem)


def _lz4_size(data, limit: int) -> None:
    """Fail when the decoded size a numcodecs-lz4 header declares (a little-endian int32 before
    one LZ4 block, allocated by the library before decoding) passes ``limit``."""
    u = _u8(data)
    if u.size < 4:
        raise DecodeError(f"lz4: {u.size} bytes, shorter than its 4-byte size header")
    nbytes = int.from_bytes(u[:4].tobytes(), "little", signed=True)
    if not 0 <= nbytes <= limit:
        raise DecodeError(f"lz4: header claims {nbytes} decoded bytes, the chunk has {limit}")


#: numcodecs codecs whose frames are the ones chunkview's HDF5 codecs decode with their headers
#: checked (against :func:`~chunkview.codecs.common.output_limit`) before allocating
_SAME_FRAME = {"blosc": HDF5Blosc, "zstd": HDF5Zstd}


def decode_step(cfg: dict, codec, data, limit: int, items: int | None = None):
    """``codec`` (configured by ``cfg``) decoding ``data`` into at most ``limit`` bytes, or a
    :class:`DecodeError` before more is allocated.  ``items``: the chunk's element count, for
    the variable-length codecs."""
    cid = cfg.get("id")
    if cid == "pickle":
        raise DecodeError("the pickle codec is refused: decoding it runs code the data chose")
    if cid in ("zlib", "gzip"):
        import zlib

        wbits = 31 if cid == "gzip" else 15
        return _stream(cid, lambda: zlib.decompressobj(wbits), data, limit, multi=False)
    if cid == "bz2":
        import bz2

        return _stream(cid, bz2.BZ2Decompressor, data, limit)
    if cid == "lzma":
        return _stream(cid, _lzma_maker(cfg, limit), data, limit)
    if cid in _SAME_FRAME:
        codec = _SAME_FRAME[cid]()
    elif cid == "lz4":
        _lz4_size(data, limit)
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


def decode_all(steps, data, limit: int, items: int | None = None):
    """``data`` through ``steps``, ``(config, codec)`` pairs in decoding order, each bounded by
    :func:`decode_step`: what the last step returns."""
    out = data
    for cfg, codec in steps:
        out = decode_step(cfg, codec, out, limit, items)
    return out
