"""Chunk index records as numpy arrays (``Chunks``), and the indexes of fixed-size datasets: the
version 1 B-tree (layouts v1-v4) and the fixed array (paged and not)."""


from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chunkview.scan.hdf5.format import (
    MAX_DEPTH,
    H5File,
    Layout,
)


@dataclass
class Chunks:
    """A chunk index's allocated chunks: ``coords`` (n, rank) chunk-grid indices, ``addrs``
    (absolute file offsets), ``sizes`` (stored bytes) and ``masks`` (filter masks)."""

    coords: np.ndarray
    addrs: np.ndarray
    sizes: np.ndarray
    masks: np.ndarray

    @classmethod
    def empty(cls, rank):
        return cls(np.zeros((0, rank), np.int64), np.zeros(0, np.uint64),
                   np.zeros(0, np.uint64), np.zeros(0, np.uint32))


def _uint_dtype(n):
    return {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}.get(n)


def _read_uint_le(buf: np.ndarray, nbytes: int) -> np.ndarray:
    """(n, nbytes) uint8 -> uint64, little-endian, any width 1-8."""
    out = np.zeros(buf.shape[0], np.uint64)
    for i in range(nbytes):
        out |= buf[:, i].astype(np.uint64) << np.uint64(8 * i)
    return out


def _btree1(f: H5File, lay: Layout, path):
    O = f.O
    rank = len(lay.chunk)
    nd = rank + 1
    keysize = 8 + 8 * nd
    ent = np.dtype([("size", "<u4"), ("mask", "<u4"), ("off", "<u8", (nd,)),
                    ("child", _uint_dtype(O))])
    assert ent.itemsize == keysize + O
    level_nodes = [lay.address]
    parts = []
    depth = None
    visited = 0
    while level_nodes:
        next_nodes = []
        for addr in level_nodes:
            visited += 1
            # one read per node: HDF5's default B-tree K of 32 gives at most 64 entries
            if addr == f._undef or f.base + addr >= f.reader.size:
                raise f.err("chunk B-tree node address outside the file", f.abs(addr), path)
            head = f.reader.read_upto(f.base + addr, 8 + 2 * O + 64 * ent.itemsize + keysize)
            if len(head) < 8 + 2 * O or bytes(head[:5]) != b"TREE\x01":
                raise f.err("bad chunk B-tree node signature", f.abs(addr), path)
            level = head[5]
            n = int.from_bytes(head[6:8], "little")
            if depth is None:
                depth = level
                if depth > MAX_DEPTH:
                    raise f.err(f"chunk B-tree depth {depth} is corrupt", f.abs(addr), path)
            need = 8 + 2 * O + n * ent.itemsize + keysize
            body = head[8 + 2 * O:need] if need <= len(head) else \
                f.read(addr + 8 + 2 * O, n * ent.itemsize + keysize, "chunk B-tree node", path)
            if level == 0:
                parts.append(bytes(body[:n * ent.itemsize]))
            else:
                recs = np.frombuffer(body, ent, count=n)
                next_nodes.extend(recs["child"].tolist())
        if depth is not None:
            depth -= 1
            if depth < -1:
                raise f.err("chunk B-tree deeper than its root says", None, path)
        level_nodes = next_nodes
        if visited > 1 << 26:
            raise f.err("chunk B-tree too large (corrupt?)", None, path)
    if not parts:
        return Chunks.empty(rank)
    recs = np.frombuffer(b"".join(parts), ent)
    chunk = np.array(lay.chunk, np.uint64)
    off = recs["off"][:, :rank]
    if rank and np.any(off % chunk):
        raise f.err("chunk B-tree key is not on a chunk boundary", None, path)
    if np.any(recs["off"][:, rank]):  # the datatype's dimension: always offset 0
        raise f.err("chunk B-tree key has a non-zero offset in its element dimension: corrupt "
                    "file", None, path)
    coords = (off // chunk).astype(np.int64) if rank else np.zeros((len(recs), 0), np.int64)
    if rank and len(coords) > 1:
        # leaves are read left to right, so their keys ascend (HDF5 finds a chunk by binary
        # search on them: a key out of order hides chunks from the library, and means the key
        # was damaged)
        step = np.diff(coords, axis=0)
        lead = np.argmax(step != 0, axis=1)
        up = step[np.arange(len(step)), lead] > 0
        if not up.all():
            i = int(np.argmin(up))
            a, b = tuple(coords[i].tolist()), tuple(coords[i + 1].tolist())
            what = f"repeat chunk {a}" if a == b else f"out of order ({a} before {b})"
            raise f.err(f"chunk B-tree keys {what}: corrupt file", None, path)
    return Chunks(coords, recs["child"].astype(np.uint64) + np.uint64(f.base),
                  recs["size"].astype(np.uint64), recs["mask"].astype(np.uint32))


def _filtered_entry(f, client, esize, path):
    """numpy dtype of a fixed/extensible array element (client 0: address; 1: address,
    chunk size, filter mask)."""
    O = f.O
    if client == 0:
        if esize != O:
            raise f.err(f"array index element size {esize} != address size {O}", None, path)
        return None
    csize = esize - O - 4
    if client != 1 or not 1 <= csize <= 8:
        raise f.err(f"unknown array index client {client} / element size {esize}", None, path)
    return csize


def _decode_elements(f, raw: np.ndarray, client, csize):
    """(n, esize) uint8 elements -> (addrs, sizes|None, masks|None)."""
    O = f.O
    addrs = _read_uint_le(raw[:, :O], O)
    if client == 0:
        return addrs, None, None
    sizes = _read_uint_le(raw[:, O:O + csize], csize)
    masks = _read_uint_le(raw[:, O + csize:O + csize + 4], 4).astype(np.uint32)
    return addrs, sizes, masks


def _finish_linear(f, lay, grid_dims, lin, addrs, sizes, masks, chunk_bytes_default, path):
    """Allocated entries of a linear (row-major over ``grid_dims``) chunk array."""
    undef = np.uint64(f._undef)
    ok = addrs != undef
    lin, addrs = lin[ok], addrs[ok]
    rank = len(lay.chunk)
    if sizes is None:
        sizes = np.full(len(addrs), chunk_bytes_default, np.uint64)
        masks = np.zeros(len(addrs), np.uint32)
    else:
        sizes, masks = sizes[ok], masks[ok]
    coords = np.stack(np.unravel_index(lin, grid_dims), axis=1).astype(np.int64) if rank else \
        np.zeros((len(lin), 0), np.int64)
    return Chunks(coords, addrs + np.uint64(f.base), sizes.astype(np.uint64), masks)


def _farray(f: H5File, lay: Layout, shape, maxshape, nfilters, path):
    O, L = f.O, f.L
    hsize = 4 + 1 + 1 + 1 + 1 + L + O + 4
    h = bytes(f.read(lay.address, hsize, "fixed array header", path))
    if h[:4] != b"FAHD":
        raise f.err("bad fixed array header signature", f.abs(lay.address), path)
    client, esize, page_bits = h[5], h[6], h[7]
    n = int.from_bytes(h[8:8 + L], "little")
    dblk = int.from_bytes(h[8 + L:8 + L + O], "little")
    grid = [-(-int(m if m is not None else s) // c)
            for s, m, c in zip(shape, maxshape, lay.chunk)]
    expect = int(np.prod(grid, dtype=np.int64)) if grid else 1
    if n != expect:
        raise f.err(f"fixed array holds {n} entries, the chunk grid {expect}", f.abs(lay.address),
                    path)
    csize = _filtered_entry(f, client, esize, path)
    if dblk == f._undef:
        return Chunks.empty(len(lay.chunk))
    pre = 4 + 1 + 1 + O
    if page_bits > 40:
        raise f.err(f"fixed array page bits {page_bits} is corrupt", f.abs(lay.address), path)
    page = 1 << page_bits
    if n <= page:
        d = f.read(dblk, pre + n * esize + 4, "fixed array data block", path)
        if bytes(d[:4]) != b"FADB":
            raise f.err("bad fixed array data block signature", f.abs(dblk), path)
        raw = np.frombuffer(d, np.uint8, count=n * esize, offset=pre).reshape(n, esize)
    else:
        npages = -(-n // page)
        nbm = -(-npages // 8)
        d = f.read(dblk, pre + nbm + 4, "fixed array data block", path)
        if bytes(d[:4]) != b"FADB":
            raise f.err("bad fixed array data block signature", f.abs(dblk), path)
        bitmap = np.unpackbits(np.frombuffer(d, np.uint8, count=nbm, offset=pre),
                               bitorder="big")[:npages]
        raw = np.full((n, esize), 0xFF, np.uint8)
        pos = dblk + pre + nbm + 4
        for p in range(npages):
            cnt = min(page, n - p * page)
            if bitmap[p]:
                pd = f.read(pos, cnt * esize, "fixed array page", path)
                raw[p * page:p * page + cnt] = np.frombuffer(pd, np.uint8).reshape(cnt, esize)
            pos += cnt * esize + 4
    addrs, sizes, masks = _decode_elements(f, raw, client, csize)
    return _finish_linear(f, lay, grid, np.arange(n), addrs, sizes, masks,
                          int(np.prod(lay.chunk)) * lay.elem_size, path)


