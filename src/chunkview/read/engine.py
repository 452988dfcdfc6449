"""The decode engine every front end shares: look up, fetch and decode the chunks of one array
into an output array (the C batch decoder on the fast path, numcodecs codecs on the slow one)."""


from __future__ import annotations

import numpy as np

from chunkview import _decode, _status
from chunkview._index import MISSING
from chunkview.errors import DecodeError, reason
from chunkview.io.fetch import Segments, Source, chunk_view
from chunkview.read.layout import ChunkLayout


def decode_chunks(refs, source: Source, layout: ChunkLayout, keys, full, sel, out_offsets,
                  threads: int) -> int:
    """Look up, fetch and decode the chunks ``keys`` of one array into ``full`` (one dimension
    per array dimension): chunk i's part ``sel[i]`` goes to byte ``out_offsets[i]``.  Missing
    chunks get the fill value.  Remote blocks are decoded as they arrive, while the rest are
    still in flight.  Returns how many of the chunks exist; raises DecodeError naming the
    first failing chunk's key, URL and byte range."""
    ids, offs, lens = refs.lookup_many(keys)
    masks = None
    if layout.masks:
        pre = len(layout.prefix)
        masks = np.array([layout.masks.get(k[pre:], 0) for k in keys], dtype=np.uint32)
    chunk = layout.chunks
    if layout.order == "F":  # a Fortran-ordered chunk is the C-ordered transposed chunk
        chunk = chunk[::-1]
        full = full.transpose()
        sel = np.ascontiguousarray(sel[:, ::-1, :])
    pipe = layout.pipeline
    steps = list(pipe.steps) if pipe.fast else []
    n = len(keys)
    for seg, ready in source.fetch_iter(keys, ids, offs, lens):
        if len(ready) == n:
            part, pkeys, psel, poff, pmasks = seg, keys, sel, out_offsets, masks
        else:
            part = seg.subset(ready)
            pkeys = [keys[i] for i in ready.tolist()]
            psel = np.ascontiguousarray(sel[ready])
            poff = np.ascontiguousarray(out_offsets[ready])
            pmasks = None if masks is None else np.ascontiguousarray(masks[ready])
        if not pipe.fast:
            part = _decode_slow(layout, pkeys, part, pmasks)
            pmasks = None
        failed = _decode.decode_batch(
            tuple(chunk), layout.dtype.itemsize, steps, full, poff, psel, part.bufs,
            part.buf_index, part.offsets, part.lengths, pmasks, layout.fill, threads)
        if failed:
            raise _status.decode_error(pkeys, part, failed, steps)
    return int((np.asarray(ids) != MISSING).sum())


def _decode_slow(layout: ChunkLayout, keys, seg: Segments, masks) -> Segments:
    """Decode every chunk with its numcodecs codecs; returns raw chunks for the C copy."""
    nbytes = int(np.prod(layout.chunks, dtype=np.int64)) * layout.dtype.itemsize
    bufs = []
    buf_index = seg.buf_index.copy()
    lengths = seg.lengths.copy()
    for i, bi in enumerate(seg.buf_index.tolist()):
        if bi < 0:
            continue
        n = int(seg.lengths[i])
        src = chunk_view(seg, i, keys)
        where = f"chunk {keys[i]!r} of {seg.url_of(i)!r} (bytes {int(seg.starts[i])}-" \
                f"{int(seg.starts[i]) + n})"
        try:
            raw = layout.pipeline.decode_chunk(src, 0 if masks is None else int(masks[i]),
                                               max_bytes=nbytes)
        except Exception as e:  # noqa: BLE001 - one error naming key, url, range
            ids = [c["id"] for c in layout.pipeline.configs]
            raise DecodeError(f"cannot decode {where} with {ids}: {reason(e)}") from e
        mv = memoryview(raw).cast("B")
        if len(mv) != nbytes:
            raise DecodeError(f"{where} decoded to {len(mv)} bytes, expected {nbytes}")
        buf_index[i] = len(bufs)
        bufs.append(mv)
        lengths[i] = nbytes
    return Segments(bufs, buf_index, np.zeros_like(seg.offsets), lengths, seg.ids,
                    seg.url_text, seg.starts)


# ------------------------------------------------------------------ arrays


