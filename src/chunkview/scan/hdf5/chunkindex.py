"""``chunk_index``: every allocated chunk of a chunked dataset, whatever index type holds them."""


from __future__ import annotations

import math

import numpy as np

from chunkview.errors import ScanError
from chunkview.scan.hdf5.chunks import Chunks, _btree1, _farray
from chunkview.scan.hdf5.format import (
    BTREE1,
    BTREE2,
    EARRAY,
    FARRAY,
    IMPLICIT,
    SINGLE,
    UNDEF,
    H5File,
    Layout,
)
from chunkview.scan.hdf5.index2 import read_btree2, read_earray


def chunk_index(f: H5File, lay: Layout, shape, maxshape, chunk_bytes, nfilters, path=None):
    """All allocated chunks of a chunked dataset, as :class:`Chunks`.  ``maxshape`` as h5py
    gives it (``None`` for an unlimited dimension)."""
    rank = len(lay.chunk)
    if lay.address == f._undef or lay.address == UNDEF:
        return Chunks.empty(rank)
    grid = [-(-int(s) // c) for s, c in zip(shape, lay.chunk)]
    if lay.index == BTREE1:
        return _unique(f, _btree1(f, lay, path), "chunk B-tree", path)
    if lay.index == SINGLE:
        size = lay.size if lay.flags & 2 else chunk_bytes
        return Chunks(np.zeros((1, rank), np.int64), np.array([f.abs(lay.address)], np.uint64),
                      np.array([size], np.uint64), np.array([lay.filter_mask], np.uint32))
    if lay.index == IMPLICIT:
        n = int(np.prod(grid, dtype=np.int64)) if grid else 1
        if n * chunk_bytes > f.reader.size:
            raise f.err(f"implicit chunk index of {n} chunks of {chunk_bytes} bytes does not "
                        "fit in the file: truncated or corrupt", f.abs(lay.address), path)
        coords = np.stack(np.unravel_index(np.arange(n), grid), axis=1) if rank else \
            np.zeros((1, 0), np.int64)
        addrs = np.uint64(f.abs(lay.address)) + np.arange(n, dtype=np.uint64) * np.uint64(chunk_bytes)
        return Chunks(coords.astype(np.int64), addrs, np.full(n, chunk_bytes, np.uint64),
                      np.zeros(n, np.uint32))
    if lay.index == FARRAY:
        return _farray(f, lay, shape, maxshape, nfilters, path)
    if lay.index == EARRAY:
        return _earray(f, lay, shape, maxshape, nfilters, path)
    if lay.index == BTREE2:
        return _unique(f, _btree2(f, lay, chunk_bytes, nfilters, path), "v2 B-tree", path)
    raise ScanError(f"unknown chunk index type {lay.index}", url=f.url, path=path)


def _unique(f, ch: Chunks, what, path) -> Chunks:
    """A B-tree names each chunk once (the linear indexes cannot repeat one): a repeated
    chunk means a corrupt key, and picking either record could read the wrong bytes."""
    c = ch.coords
    if len(c) < 2:
        return ch
    # one integer per chunk (C order over the coordinates' own extent): B-trees list chunks in
    # that order, so one pass usually settles it; np.unique(axis=0) took 0.1 s for 200k chunks
    if not c.shape[1]:
        raise f.err(f"{what} lists the chunk of a scalar more than once: corrupt file", None,
                    path)
    top = c.max(axis=0).tolist()
    if c.min() >= 0 and math.prod(t + 1 for t in top) < 2**62:
        lin = np.zeros(len(c), np.int64)
        for d, t in enumerate(top):
            lin = lin * (t + 1) + c[:, d]
        if (lin[1:] > lin[:-1]).all():
            return ch
        s = np.sort(lin)
        rep = np.flatnonzero(s[1:] == s[:-1])
        if not len(rep):
            return ch
        dup = tuple(int(x) for x in c[int(np.flatnonzero(lin == s[rep[0]])[0])])
    else:
        u, counts = np.unique(c, axis=0, return_counts=True)
        if (counts == 1).all():
            return ch
        dup = tuple(int(x) for x in u[int(np.argmax(counts > 1))])
    raise f.err(f"{what} lists chunk {dup} more than once: corrupt file", None, path)


def _earray(f, lay, shape, maxshape, nfilters, path):
    return read_earray(f, lay, shape, maxshape, nfilters, path)


def _btree2(f, lay, chunk_bytes, nfilters, path):
    return read_btree2(f, lay, chunk_bytes, nfilters, path)


__all__ = ["chunk_index"]
