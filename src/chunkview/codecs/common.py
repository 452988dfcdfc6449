"""What the HDF5 filter codecs share: checked failures, size limits, optional libraries and
the JSON form of numpy dtypes."""


from __future__ import annotations

import contextlib
import contextvars

import numpy as np
from numcodecs.compat import ndarray_copy

from chunkview.errors import DecodeError, missing_extra, reason

#: HDF5 chunks are smaller than 4 GiB: any decoded size claimed above this is corrupt.
MAX_CHUNK_BYTES = (1 << 32) - 1

#: the decoded size of the chunk being decoded, when the caller knows it (set by
#: :func:`output_limit`): every codec here checks the sizes it would allocate against it
_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar("chunkview_decode_limit",
                                                                   default=None)


def decode_limit() -> int:
    """The most bytes a decode step may produce now: the chunk's size from its metadata inside
    :func:`output_limit`, else :data:`MAX_CHUNK_BYTES`."""
    limit = _LIMIT.get()
    return MAX_CHUNK_BYTES if limit is None else min(limit, MAX_CHUNK_BYTES)


@contextlib.contextmanager
def output_limit(nbytes: int | None):
    """Bound every decode step run inside to ``nbytes`` of output (None: no bound beyond
    :data:`MAX_CHUNK_BYTES`)."""
    token = _LIMIT.set(None if nbytes is None else int(nbytes))
    try:
        yield
    finally:
        _LIMIT.reset(token)


def _output_check(codec: str, nbytes: int) -> None:
    """Fail before allocating ``nbytes`` of output past the current limit."""
    limit = decode_limit()
    if nbytes > limit:
        raise _fail(codec, f"would decode to {nbytes} bytes, more than the chunk's {limit}"
                    if limit < MAX_CHUNK_BYTES else
                    f"would decode to {nbytes} bytes (HDF5 chunks are < 4 GiB)")


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
        raise _fail(codec, f"corrupt data ({reason(e)})", e) from e


def _ratio_check(codec: str, claimed: int, have: int, ratio: int) -> None:
    """A decoded size a header claims: within the limit, and within ``ratio`` of the input."""
    _output_check(codec, claimed)
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




def _as_bytes(buf) -> memoryview:
    if isinstance(buf, np.ndarray):
        buf = np.ascontiguousarray(buf).view("u1").reshape(-1)
    return memoryview(buf).cast("B")


