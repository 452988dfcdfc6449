"""HDF5 chunk indexes for datasets with unlimited dimensions, parsed natively.

* :func:`read_earray` -- the extensible array (chunk index type 4, one unlimited dimension):
  header ``EAHD``, index block ``EAIB``, secondary (super) blocks ``EASB``, data blocks ``EADB``
  and data block pages.
* :func:`read_btree2` -- the version 2 B-tree (chunk index type 5, several unlimited
  dimensions): header ``BTHD``, internal nodes ``BTIN``, leaves ``BTLF``; records of type 10
  (unfiltered chunks) and 11 (filtered chunks).

References: HDF5 File Format Specification version 3 ("Extensible Array", "Version 2
B-trees"), and the HDF5 library's H5EA*.c / H5B2*.c / H5Dearray.c / H5Dbtree2.c for the
derived quantities the specification leaves implicit (the super block table, which blocks are
paged and where pages lie, the per-depth record limits and field widths of B-tree nodes, how a
chunk's linear index is formed with the unlimited dimension moved to the front).

Nothing read from the file is trusted: every signature, version, class and back-pointer is
checked, every count and size is bounded by the structure that holds it or by the file, B-tree
nodes are visited level by level with each address at most once (no cycles, no exponential
blow-up through shared children), and every block's Jenkins lookup3 checksum is verified (in
numpy, a batch of blocks at a time).  Anything malformed raises
:class:`~chunkview.errors.ScanError`.  The work is vectorised per block or per B-tree level, so
a 200,000-chunk index costs a few hundred numpy calls, not 200,000 Python iterations.
"""

from __future__ import annotations

import numpy as np

from chunkview.scan.hdf5.checksums import ChecksumBatch
from chunkview.scan.hdf5.chunks import Chunks, _filtered_entry, _read_uint_le
from chunkview.scan.hdf5.format import MAX_DEPTH, UNDEF

__all__ = ["read_earray", "read_btree2"]

_INT63 = 1 << 63


# ---------------------------------------------------------------------- checksums


def _log2_exact(v):
    return v.bit_length() - 1 if v > 0 and v & (v - 1) == 0 else None


def _enc_size(v):
    """H5VM_limit_enc_size: bytes needed to encode ``v`` (at least one)."""
    return (max(v, 1).bit_length() - 1) // 8 + 1


def _unlimited_dim(maxshape, rank):
    dims = []
    for i, m in enumerate(maxshape):
        if m is None or int(m) < 0 or int(m) >= _INT63:
            dims.append(i)
    if len(maxshape) != rank or len(dims) != 1:
        got = tuple(None if m is None else int(m) for m in maxshape)
        raise ValueError(f"read_earray needs the dataset's maximum shape with exactly one "
                         f"unlimited dimension (None), got {got!r} for rank {rank}")
    return dims[0]


def _record_dtype(osz, csize, rank=0):
    """numpy dtype of a packed chunk record: address, [chunk size, filter mask], [scaled
    offsets]; a chunk size of an odd width is left as raw bytes."""
    names, formats, offsets = ["addr"], [f"<u{osz}"], [0]
    pos = osz
    if csize:
        names += ["size", "mask"]
        formats += [f"<u{csize}" if csize in (1, 2, 4, 8) else ("u1", (csize,)), "<u4"]
        offsets += [pos, pos + csize]
        pos += csize + 4
    if rank:
        names.append("scaled")
        formats.append(("<u8", (rank,)))
        offsets.append(pos)
        pos += 8 * rank
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": pos})


def _fields(recs, csize):
    """(addrs, sizes|None, masks|None) of structured chunk records, as uint64 / uint32."""
    addrs = recs["addr"].astype(np.uint64)
    if not csize:
        return addrs, None, None
    size = recs["size"]
    sizes = size.astype(np.uint64) if size.ndim == 1 else _read_uint_le(size, csize)
    return addrs, sizes, recs["mask"].astype(np.uint32)


def _to_coords(f, vals: np.ndarray, what, path):
    if len(vals) and int(vals.max()) >= _INT63:
        raise f.err(f"{what}: chunk coordinate out of range", None, path)
    return vals.astype(np.int64)


# ---------------------------------------------------------------------- extensible array


def read_earray(f, lay, shape, maxshape, nfilters, path=None, *, verify=None) -> Chunks:
    """All allocated chunks of a dataset indexed by an extensible array.

    ``maxshape`` must mark the unlimited dimension (``None``, a negative number or
    H5S_UNLIMITED); the other entries are the fixed maximum extents, which (with the chunk
    shape) fix how a chunk's linear index in the array maps to its grid coordinates.  ``shape``
    is not needed: chunks beyond the current extent (left by a shrink) are returned too.
    ``verify``: see :class:`ChecksumBatch` (None: the fixed-count blocks; True: every block)."""
    rank = len(lay.chunk)
    unlim = _unlimited_dim(maxshape, rank)
    osz, lsz = f.O, f.L
    undef = f._undef
    haddr = lay.address
    if haddr == undef or haddr == UNDEF:
        return Chunks.empty(rank)  # no chunk written yet
    hat = f.abs(haddr)
    cks = ChecksumBatch(f, path, verify)

    def bad(msg, addr=None):
        return f.err(f"extensible array: {msg}", None if addr is None else f.abs(addr), path)

    hsize = 12 + 6 * lsz + osz + 4
    h = bytes(f.read(haddr, hsize, "extensible array header", path))
    if h[:4] != b"EAHD":
        raise f.err("bad extensible array header signature", hat, path)
    if h[4] != 0:
        raise bad(f"unknown header version {h[4]}", haddr)
    client, esize, max_bits, iblk_n, min_elmts, min_ptrs, page_bits = h[5:12]
    cks.add(h, "extensible array header", haddr)
    if (client == 1) != (nfilters > 0):
        raise bad(f"array client {client} does not match the dataset's {nfilters} filter(s)",
                  haddr)
    csize = _filtered_entry(f, client, esize, path)
    lg_min_elmts = _log2_exact(min_elmts)
    lg_min_ptrs = _log2_exact(min_ptrs)
    if not 1 <= max_bits <= 64 or lg_min_elmts is None or lg_min_ptrs is None or \
            min_ptrs < 2 or lg_min_elmts > max_bits or page_bits > 63:
        raise bad(f"invalid parameters (max bits {max_bits}, data block elements {min_elmts}, "
                  f"super block pointers {min_ptrs}, page bits {page_bits})", haddr)
    p = lay.params
    for key, val in (("max_bits", max_bits), ("idx_blk_elmts", iblk_n), ("min_ptrs", min_ptrs),
                     ("min_elmts", min_elmts), ("page_bits", page_bits)):
        if key in p and p[key] != val:
            raise bad(f"header parameter {key} = {val} differs from the layout message's "
                      f"{p[key]}", haddr)
    cks.verify()
    iblk_addr = int.from_bytes(h[12 + 6 * lsz:12 + 6 * lsz + osz], "little")
    if iblk_addr == undef:
        return Chunks.empty(rank)

    # super block table (H5EA__hdr_init)
    nsblks = 1 + max_bits - lg_min_elmts
    s_ndblks, s_nelmts, s_start, s_dstart = [], [], [], []
    start = dstart = 0
    for u in range(nsblks):
        nd, ne = 1 << (u // 2), (1 << ((u + 1) // 2)) * min_elmts
        s_ndblks.append(nd)
        s_nelmts.append(ne)
        s_start.append(start)
        s_dstart.append(dstart)
        start += nd * ne
        dstart += nd
    ib_nsblks = 2 * lg_min_ptrs
    ib_ndblk = 2 * (min_ptrs - 1)
    ib_nsblk = nsblks - ib_nsblks
    if ib_nsblk < 0:
        raise bad(f"{nsblks} super blocks in all, fewer than the {ib_nsblks} whose data "
                  f"blocks the index block lists", haddr)
    aos = (max_bits + 7) // 8  # bytes of a block's offset in the array
    page_n = 1 << page_bits
    dpre = 10 + osz + aos  # data block prefix, checksum included

    # index block
    isize = 6 + osz + iblk_n * esize + (ib_ndblk + ib_nsblk) * osz + 4
    ib = f.read(iblk_addr, isize, "extensible array index block", path)
    if bytes(ib[:4]) != b"EAIB":
        raise f.err("bad extensible array index block signature", f.abs(iblk_addr), path)
    if ib[4] != 0 or ib[5] != client:
        raise bad(f"index block version {ib[4]} / client {ib[5]}", iblk_addr)
    if int.from_bytes(ib[6:6 + osz], "little") != haddr:
        raise bad("index block does not point back to its header", iblk_addr)
    cks.add(ib, "extensible array index block", iblk_addr)
    cks.verify()
    pos = 6 + osz
    raws = [np.frombuffer(ib, np.uint8, count=iblk_n * esize, offset=pos).reshape(iblk_n, esize)]
    starts = [0]
    pos += iblk_n * esize
    ib_d = _read_uint_le(np.frombuffer(ib, np.uint8, count=ib_ndblk * osz, offset=pos)
                         .reshape(ib_ndblk, osz), osz).tolist()
    pos += ib_ndblk * osz
    ib_s = _read_uint_le(np.frombuffer(ib, np.uint8, count=ib_nsblk * osz, offset=pos)
                         .reshape(ib_nsblk, osz), osz).tolist()
    seen = {haddr, iblk_addr}

    def claim(addr, what):
        if addr in seen:
            raise bad(f"{what} at address {addr} is referenced twice", addr)
        seen.add(addr)

    def data_block(addr, nelmts, first, block_off, page_init):
        """Elements of the data block at ``addr`` holding array elements ``first``... (after
        the index block's); ``block_off``: the values its offset field may hold;
        ``page_init`` (bool array, one per page) for paged blocks."""
        claim(addr, "data block")
        if iblk_n + first + nelmts > 1 << 64:
            raise bad("data block beyond the largest array index", addr)
        npages = nelmts // page_n if nelmts > page_n else 0
        if npages and page_init is None:
            raise bad("a data block of the index block would be paged", addr)
        n = dpre + (0 if npages else nelmts * esize)
        d = f.read(addr, n, "extensible array data block", path)
        if bytes(d[:4]) != b"EADB":
            raise f.err("bad extensible array data block signature", f.abs(addr), path)
        if d[4] != 0 or d[5] != client:
            raise bad(f"data block version {d[4]} / client {d[5]}", addr)
        if int.from_bytes(d[6:6 + osz], "little") != haddr:
            raise bad("data block does not point back to its header", addr)
        if int.from_bytes(d[6 + osz:6 + osz + aos], "little") not in block_off:
            raise bad("data block offset does not match its place in the array", addr)
        cks.add(d, "extensible array data block", addr, True)
        first += iblk_n
        if not npages:
            raws.append(np.frombuffer(d, np.uint8, count=nelmts * esize, offset=dpre - 4)
                        .reshape(nelmts, esize))
            starts.append(first)
            return
        init = np.nonzero(page_init)[0]
        if not len(init):
            return
        psize = page_n * esize + 4
        last = int(init[-1]) + 1
        span = f.read(addr + dpre, last * psize, "extensible array data block page", path)
        pages = np.frombuffer(span, np.uint8).reshape(last, psize)
        for i in init.tolist():
            cks.add(span[i * psize:(i + 1) * psize], "extensible array data block page",
                    addr + dpre + i * psize, True)
            raws.append(pages[i, :page_n * esize].reshape(page_n, esize))
            starts.append(first + i * page_n)

    # data blocks whose addresses are in the index block
    for u in range(min(ib_nsblks, nsblks)):
        for j in range(s_ndblks[u]):
            a = ib_d[s_dstart[u] + j]
            if a != undef:
                # the library writes the offset of a data block listed in the index block
                # as start + (its index among all such blocks) * size (H5EA__lookup_elmt)
                first = s_start[u] + j * s_nelmts[u]
                data_block(a, s_nelmts[u], first,
                           (first, s_start[u] + (s_dstart[u] + j) * s_nelmts[u]), None)

    # super blocks
    for s in range(ib_nsblk):
        saddr = ib_s[s]
        if saddr == undef:
            continue
        u = ib_nsblks + s
        claim(saddr, "super block")
        nd, ne = s_ndblks[u], s_nelmts[u]
        npages = ne // page_n if ne > page_n else 0
        pinit = nd * ((npages + 7) // 8) if npages else 0
        ssize = 6 + osz + aos + pinit + nd * osz + 4
        sb = f.read(saddr, ssize, "extensible array super block", path)
        if bytes(sb[:4]) != b"EASB":
            raise f.err("bad extensible array super block signature", f.abs(saddr), path)
        if sb[4] != 0 or sb[5] != client:
            raise bad(f"super block version {sb[4]} / client {sb[5]}", saddr)
        if int.from_bytes(sb[6:6 + osz], "little") != haddr:
            raise bad("super block does not point back to its header", saddr)
        if int.from_bytes(sb[6 + osz:6 + osz + aos], "little") != s_start[u]:
            raise bad("super block offset does not match its place in the array", saddr)
        cks.add(sb, "extensible array super block", saddr)
        pos = 6 + osz + aos
        bits = None
        if npages:
            # one bit per page, data block after data block (H5EA__lookup_elmt indexes the
            # bitmap as a flat bit string), first bit in the high bit of the first byte
            bits = np.unpackbits(np.frombuffer(sb, np.uint8, count=pinit, offset=pos),
                                 bitorder="big")
            pos += pinit
        addrs = _read_uint_le(np.frombuffer(sb, np.uint8, count=nd * osz, offset=pos)
                              .reshape(nd, osz), osz)
        for j in np.nonzero(addrs != np.uint64(undef))[0].tolist():
            first = s_start[u] + j * ne
            data_block(int(addrs[j]), ne, first, (first,),
                       None if bits is None else bits[j * npages:(j + 1) * npages])
    cks.verify()

    raw = np.concatenate(raws) if len(raws) > 1 else np.ascontiguousarray(raws[0])
    counts = np.array([len(r) for r in raws], np.int64)
    # linear index of each element: its block's first index + its place in the block
    shift = np.array(starts, np.uint64) - np.concatenate([[0], np.cumsum(counts)[:-1]]) \
        .astype(np.uint64)
    lin = np.repeat(shift, counts) + np.arange(len(raw), dtype=np.uint64)
    recs = raw.view(_record_dtype(osz, csize or 0)).reshape(-1)
    addrs, sizes, masks = _fields(recs, csize)
    ok = addrs != np.uint64(undef)
    lin, addrs = lin[ok], addrs[ok]
    if sizes is None:
        chunk_bytes = int(np.prod(lay.chunk, dtype=np.int64)) * lay.elem_size
        sizes = np.full(len(addrs), chunk_bytes, np.uint64)
        masks = np.zeros(len(addrs), np.uint32)
    else:
        sizes, masks = sizes[ok], masks[ok]
    # linear index -> grid coordinates: row-major over the dimensions with the unlimited one
    # moved to the front (H5Dearray.c, H5VM_swizzle_coords), fixed dimensions at their
    # maximum number of chunks
    order = [unlim] + [d for d in range(rank) if d != unlim]
    coords = np.zeros((len(lin), rank), np.uint64)
    rem = lin
    for d in reversed(order[1:]):
        n = -(-int(maxshape[d]) // int(lay.chunk[d]))
        if n <= 0:
            if len(rem):
                raise bad(f"chunk stored in dimension {d} of maximum extent 0")
            break
        if n >= 1 << 64:  # every index fits in this dimension alone
            coords[:, d] = rem
            rem = np.zeros_like(rem)
            continue
        coords[:, d] = rem % np.uint64(n)
        rem = rem // np.uint64(n)
    coords[:, unlim] = rem
    coords = _to_coords(f, coords, "extensible array", path)
    return Chunks(coords, addrs + np.uint64(f.base), sizes.astype(np.uint64),
                  masks.astype(np.uint32))


# ---------------------------------------------------------------------- version 2 B-tree


def read_btree2(f, lay, chunk_bytes, nfilters, path=None, *, verify=None) -> Chunks:
    """All allocated chunks of a dataset indexed by a version 2 B-tree (records of type 10,
    unfiltered, or 11, filtered).  ``chunk_bytes`` is the size of an unfiltered chunk;
    ``verify``: see :class:`ChecksumBatch` (None: the header; True: every node too)."""
    rank = len(lay.chunk)
    osz, lsz = f.O, f.L
    undef = f._undef
    haddr = lay.address
    if haddr == undef or haddr == UNDEF:
        return Chunks.empty(rank)  # no chunk written yet
    cks = ChecksumBatch(f, path, verify)

    def bad(msg, addr=None):
        return f.err(f"chunk B-tree (v2): {msg}", None if addr is None else f.abs(addr), path)

    hsize = 16 + osz + 2 + lsz + 4
    h = bytes(f.read(haddr, hsize, "v2 B-tree header", path))
    if h[:4] != b"BTHD":
        raise f.err("bad v2 B-tree header signature", f.abs(haddr), path)
    if h[4] != 0:
        raise bad(f"unknown header version {h[4]}", haddr)
    btype = h[5]
    node_size = int.from_bytes(h[6:10], "little")
    rsize = int.from_bytes(h[10:12], "little")
    depth = int.from_bytes(h[12:14], "little")
    root = int.from_bytes(h[16:16 + osz], "little")
    root_nrec = int.from_bytes(h[16 + osz:18 + osz], "little")
    total = int.from_bytes(h[18 + osz:18 + osz + lsz], "little")
    cks.add(h, "v2 B-tree header", haddr)
    cks.verify()
    if btype not in (10, 11):
        raise bad(f"record type {btype} is not a chunk record (10 or 11)", haddr)
    if (btype == 11) != (nfilters > 0):
        raise bad(f"record type {btype} does not match the dataset's {nfilters} filter(s)",
                  haddr)
    if rank < 1:
        raise bad("dataset of rank 0", haddr)
    csize = rsize - osz - 4 - 8 * rank if btype == 11 else 0
    if btype == 10 and rsize != osz + 8 * rank or btype == 11 and not 1 <= csize <= 8:
        raise bad(f"record size {rsize} does not fit a rank-{rank} chunk record of type "
                  f"{btype}", haddr)
    if root == undef or total == 0:
        if total or (root != undef and root_nrec):
            raise bad(f"header holds {total} records but no root node", haddr)
        return Chunks.empty(rank)
    if depth > MAX_DEPTH:
        raise bad(f"depth {depth} is corrupt", haddr)
    if total * rsize > f.reader.size:
        raise bad(f"{total} records of {rsize} bytes cannot fit in the file", haddr)

    # per-depth record limits and child-pointer widths (H5B2__hdr_init)
    leaf_max = (node_size - 10) // rsize if node_size > 10 else 0
    if leaf_max < 1:
        raise bad(f"node size {node_size} holds no record", haddr)
    nrec_w = _enc_size(leaf_max)  # width of "number of records" in a child pointer
    max_nrec, cum_max, cum_w, ptr_size = [leaf_max], [leaf_max], [0], [0]
    for d in range(1, depth + 1):
        ps = osz + nrec_w + (cum_w[d - 1] if d > 1 else 0)
        m = (node_size - (10 + ps)) // (rsize + ps) if node_size > 10 + ps else 0
        if m < 1:
            raise bad(f"node size {node_size} holds no record at depth {d}", haddr)
        cm = (m + 1) * cum_max[d - 1] + m
        max_nrec.append(m)
        cum_max.append(cm)
        cum_w.append(_enc_size(cm))
        ptr_size.append(ps)
        if cum_w[d] > 8:
            raise bad(f"depth {depth} is corrupt", haddr)
    if root_nrec > max_nrec[depth] or total > cum_max[depth]:
        raise bad(f"root node with {root_nrec} records, tree with {total}: more than a tree of "
                  f"depth {depth} holds", haddr)

    sig_int, sig_leaf = b"BTIN", b"BTLF"
    rec_parts = []
    nodes = [root]
    nrecs = np.array([root_nrec], np.uint64)
    alls = np.array([total], np.uint64)
    for d in range(depth, -1, -1):
        nr_list = nrecs.tolist()
        if max(nr_list) > max_nrec[d]:
            raise bad(f"a node at depth {d} claims more than {max_nrec[d]} records")
        if d == 0:
            if not np.array_equal(nrecs, alls):
                raise bad("leaf record counts disagree with their parents")
            for a, nr in zip(nodes, nr_list, strict=True):
                n = nr * rsize
                mv = f.read(a, 10 + n, "v2 B-tree leaf", path)
                if mv[:4] != sig_leaf:
                    raise f.err("bad v2 B-tree leaf signature", f.abs(a), path)
                if mv[4] != 0 or mv[5] != btype:
                    raise bad(f"leaf version {mv[4]} / type {mv[5]}", a)
                cks.add(mv, "v2 B-tree leaf", a, True)
                rec_parts.append(mv[6:6 + n])
            cks.verify()
            break
        ps = ptr_size[d]
        ptr_parts = []
        for a, nr in zip(nodes, nr_list, strict=True):
            n = nr * rsize
            mv = f.read(a, 10 + n + (nr + 1) * ps, "v2 B-tree internal node", path)
            if mv[:4] != sig_int:
                raise f.err("bad v2 B-tree internal node signature", f.abs(a), path)
            if mv[4] != 0 or mv[5] != btype:
                raise bad(f"internal node version {mv[4]} / type {mv[5]}", a)
            cks.add(mv, "v2 B-tree internal node", a, True)
            rec_parts.append(mv[6:6 + n])
            ptr_parts.append(mv[6 + n:6 + n + (nr + 1) * ps])
        cks.verify()
        ptrs = np.frombuffer(b"".join(ptr_parts), np.uint8).reshape(-1, ps)
        caddr = _read_uint_le(ptrs[:, :osz], osz)
        cnrec = _read_uint_le(ptrs[:, osz:osz + nrec_w], nrec_w)
        call = _read_uint_le(ptrs[:, osz + nrec_w:], cum_w[d - 1]) if d > 1 else cnrec
        # each node's total = its records + its children's totals
        first = np.concatenate([[0], np.cumsum(nrecs + np.uint64(1))[:-1]]).astype(np.int64)
        with np.errstate(over="ignore"):
            below = np.add.reduceat(call, first)
            if not np.array_equal(below + nrecs, alls) or \
                    (len(call) and int(call.max()) > cum_max[d - 1]):
                raise bad(f"record counts of the nodes at depth {d} do not add up")
        if np.any(caddr == np.uint64(undef)):
            raise bad(f"undefined child node address at depth {d}")
        if len(np.unique(caddr)) != len(caddr):
            raise bad(f"a node at depth {d - 1} is referenced twice (cycle or shared child)")
        nodes, nrecs, alls = caddr.tolist(), cnrec, call

    joined = b"".join(rec_parts)
    n = len(joined) // rsize
    if n != total:
        raise bad(f"header says {total} records, the nodes hold {n}", haddr)
    recs = np.frombuffer(joined, _record_dtype(osz, csize, rank), count=n)
    addrs, sizes, masks = _fields(recs, csize)
    if sizes is None:
        sizes = np.full(n, chunk_bytes, np.uint64)
        masks = np.zeros(n, np.uint32)
    scaled = recs["scaled"]
    ok = addrs != np.uint64(undef)
    if not ok.all():
        addrs, sizes, masks, scaled = addrs[ok], sizes[ok], masks[ok], scaled[ok]
    coords = _to_coords(f, scaled, "v2 B-tree", path)
    return Chunks(coords, addrs + np.uint64(f.base), sizes, masks)
