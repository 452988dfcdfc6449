"""What the scanners share: JSON values as zarr v2 writes them, and how contiguous data is
presented as virtual chunks."""

from __future__ import annotations

import base64
import math

import numpy as np


def json_value(v, text_floats: bool = True):
    """An attribute or fill value as JSON-safe Python (NaN/inf as zarr v2's strings, bytes as
    text, arrays as lists, compound as lists of fields).  ``text_floats=False`` keeps NaN and
    infinities as floats, as zarr writes them in attributes (JSON's NaN/Infinity tokens)."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "fcOSUV" or v.dtype.fields is not None:
            return [json_value(x, text_floats) for x in v.tolist()] if v.ndim else json_value(v[()], text_floats)
        return v.tolist()
    if isinstance(v, np.void):
        if v.dtype.fields is not None:
            return [json_value(v[n], text_floats) for n in v.dtype.names]
        return "base64:" + base64.b64encode(v.tobytes()).decode()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        if not text_floats:
            return v
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, complex):
        return [json_value(v.real, text_floats), json_value(v.imag, text_floats)]
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(v).decode()
    if isinstance(v, (list, tuple)):
        return [json_value(x, text_floats) for x in v]
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if type(v).__name__ == "Empty":  # h5py.Empty: an attribute with a null dataspace
        return None
    return str(v)


def contiguous_chunking(block_shape: tuple, itemsize: int, chunk_bytes: int):
    """Chunk shape for a C-ordered contiguous block: ``(1, ..., 1, k, *block_shape[d+1:])``
    with ``d`` the first axis whose trailing rows fit in ``chunk_bytes``.  Returns
    ``(chunks, d, trailing_bytes_of_d)``."""
    n = len(block_shape)
    if n == 0:
        return (), 0, itemsize
    tb = [itemsize] * n  # bytes of one index step along axis i
    for i in range(n - 2, -1, -1):
        tb[i] = tb[i + 1] * block_shape[i + 1]
    d = next((i for i in range(n) if tb[i] <= chunk_bytes), n - 1)
    # tb[d] is 0 when a later axis has length 0: an empty block, one (empty) chunk per axis
    k = min(max(1, chunk_bytes // tb[d]), max(1, block_shape[d])) if tb[d] else \
        max(1, block_shape[d])
    chunks = (1,) * d + (k,) + tuple(max(1, s) for s in block_shape[d + 1:])
    return chunks, d, tb[d]


def contiguous_chunks(block_shape: tuple, chunks: tuple, d: int, step: int):
    """``(chunk index tuple, byte offset in the block, data bytes)`` of every chunk."""
    n = len(block_shape)
    if n == 0:
        yield (), 0, step
        return
    if any(s == 0 for s in block_shape):
        return
    k = chunks[d]
    nd = block_shape[d]
    nj = -(-nd // k)
    tail = (0,) * (n - d - 1)
    lead = block_shape[:d]
    for li, lidx in enumerate(np.ndindex(*lead) if d else [()]):
        base = li * nd
        for j in range(nj):
            rows = min(k, nd - j * k)
            yield (*lidx, j, *tail), (base + j * k) * step, rows * step
