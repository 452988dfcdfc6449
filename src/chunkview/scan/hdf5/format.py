"""HDF5's on-disk structures that say where raw data lies, parsed from the file's own bytes.

Everything here reads through a :class:`~chunkview.io.blocks.Reader`, trusts no length or
count from the file (each is checked against what it must fit in) and raises
:class:`~chunkview.errors.ScanError` naming the structure and byte offset on anything
malformed.  Chunk indexes are decoded a node (or block) at a time into numpy arrays, so a
200,000-chunk dataset costs a few thousand vectorised parses, not 200,000 Python calls.

Covered: superblock v0-v3; object headers v1 and v2 with continuation blocks; the data layout
message v1-v5 (compact, contiguous, chunked, virtual); chunk indexes: version 1 B-tree, single
chunk, implicit, fixed array (paged and not), extensible array and version 2 B-tree (records
of types 10 and 11).  The reference is the HDF5 File Format Specification, version 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chunkview.errors import ScanError
from chunkview.scan.hdf5.checksums import lookup3_one

SIGNATURE = b"\x89HDF\r\n\x1a\n"
UNDEF = 0xFFFFFFFFFFFFFFFF

# layout classes
COMPACT, CONTIGUOUS, CHUNKED, VIRTUAL = 0, 1, 2, 3
# chunk index types (layout message v4+); BTREE1 stands for layouts v1-v3
BTREE1, SINGLE, IMPLICIT, FARRAY, EARRAY, BTREE2 = 0, 1, 2, 3, 4, 5
INDEX_NAMES = {BTREE1: "btree_v1", SINGLE: "single_chunk", IMPLICIT: "implicit",
               FARRAY: "fixed_array", EARRAY: "extensible_array", BTREE2: "btree_v2"}

MSG_LAYOUT, MSG_EXTERNAL, MSG_CONT = 0x08, 0x07, 0x10
MAX_DEPTH = 64  # deeper B-trees than this are corrupt (2**64 chunks would not fit)


def find_superblock(reader):
    """Offset of the HDF5 signature (0, 512, 1024, ...), or None."""
    off = 0
    while off + 8 <= reader.size:
        if bytes(reader.read(off, 8)) == SIGNATURE:
            return off
        off = 512 if off == 0 else off * 2
    return None


@dataclass
class Superblock:
    offset: int
    version: int
    sizeof_addr: int
    sizeof_size: int
    base: int


def read_superblock(reader, off: int) -> Superblock:
    head = bytes(reader.read_upto(off, 128))
    if len(head) < 24:
        raise ScanError("truncated HDF5 superblock", url=reader.url, offset=off)
    version = head[8]
    if version in (0, 1):
        so, sl = head[13], head[14]
        pos = 24 + (4 if version == 1 else 0)
    elif version in (2, 3):
        so, sl = head[9], head[10]
        pos = 12
    else:
        raise ScanError(f"unknown HDF5 superblock version {version}", url=reader.url, offset=off)
    if so not in (2, 4, 8) or sl not in (2, 4, 8):
        raise ScanError(f"invalid HDF5 superblock (offset size {so}, length size {sl})",
                        url=reader.url, offset=off)
    if pos + so > len(head):
        raise ScanError("truncated HDF5 superblock", url=reader.url, offset=off)
    base = int.from_bytes(head[pos:pos + so], "little")
    return Superblock(off, version, so, sl, base)


def parse_cache_image(buf: bytes, O: int, L: int, url=None, at: int = 0) -> dict:
    """``{address: bytes}`` of the entries of a metadata cache image ("MDCI": version, flags,
    image length, entry count, then per entry its type, flags, ring, age, three dependency
    counts, LRU rank, address, length, parent addresses and serialized bytes; a checksum
    last).  Every length is checked against the image before it is used."""
    def bad(why):
        return ScanError(f"metadata cache image: {why}", url=url, offset=at)

    if len(buf) < 18 + L or buf[:4] != b"MDCI":
        raise bad("no image signature")
    if buf[4] != 0:
        raise bad(f"unknown version {buf[4]}")
    pos = 6
    length = int.from_bytes(buf[pos:pos + L], "little")
    pos += L
    if length != len(buf):
        raise bad(f"image length {length}, the superblock extension says {len(buf)}")
    count = int.from_bytes(buf[pos:pos + 4], "little")
    pos += 4
    out = {}
    fixed = 14 + O + L
    for _ in range(count):
        if pos + fixed > len(buf) - 4:
            raise bad("entries run past the image")
        nparents = int.from_bytes(buf[pos + 8:pos + 10], "little")
        q = pos + 14
        addr = int.from_bytes(buf[q:q + O], "little")
        size = int.from_bytes(buf[q + O:q + O + L], "little")
        q += O + L + nparents * O
        if q + size > len(buf) - 4:
            raise bad(f"entry at address {addr} ({size} bytes) runs past the image")
        out[addr] = buf[q:q + size]
        pos = q + size
    if pos != len(buf) - 4:
        raise bad(f"{len(buf) - 4 - pos} bytes after the last entry")
    return out


GCOL = b"GCOL"


def check_global_heap(buf, at: int, file_size: int, L: int, url=None) -> int | None:
    """The collection's size (None before its header is read); raise :class:`ScanError` unless ``buf`` (read at file offset ``at``, starting with a
    global heap collection's signature) holds a collection libhdf5 can walk.

    libhdf5 walks a collection object by object, each advancing by its header plus its padded
    size (the free-space object, index 0, by its size alone), with no check that a step moves
    forward or stays inside the collection: a free-space object of size 0 makes it loop
    forever, a huge size wraps its pointer.  The scanner reads the object tree through libhdf5,
    so these bytes are checked here, as they are read, before libhdf5 parses them.  A read
    shorter than the collection (libhdf5's first, 4 KiB, read of a larger one) is let through:
    :class:`GlobalHeapCheck` checks the collection when libhdf5 has read the rest."""
    hdr = 8 + L  # signature, version, 3 reserved, collection size
    if len(buf) < hdr:
        if at + hdr > file_size:
            raise ScanError("truncated global heap collection", url=url, offset=at)
        return None
    if buf[4] != 1:
        raise ScanError(f"unknown global heap collection version {buf[4]}", url=url, offset=at)
    size = int.from_bytes(buf[8:hdr], "little")
    if size < hdr or at + size > file_size:
        raise ScanError(f"global heap collection of {size} bytes does not fit in the file "
                        f"({file_size} bytes)", url=url, offset=at)
    if len(buf) < size:
        return size
    objhdr = 8 + L  # index, reference count, 4 reserved, object size
    p = hdr
    while p < size:
        if p + objhdr > size:  # too little room for an object: free space
            break
        idx = int.from_bytes(buf[p:p + 2], "little")
        n = int.from_bytes(buf[p + 8:p + objhdr], "little")
        step = n if idx == 0 else objhdr + ((n + 7) & ~7)
        if step < objhdr or step > size - p:
            raise ScanError(f"corrupt global heap collection: object {idx} of {n} bytes at "
                            f"+{p} does not fit in the collection's {size} bytes",
                            url=url, offset=at + p)
        p += step
    return size


class GlobalHeapCheck:
    """``check(offset, data)`` for every read libhdf5 makes of one file: checks each global
    heap collection (:func:`check_global_heap`) once its bytes are all read.  libhdf5 reads a
    collection in one piece or, when it is larger than its first 4 KiB read, in two: the rest
    in the read that follows, which is joined to the first here."""

    def __init__(self, file_size: int, L: int, url=None):
        self.file_size, self.L, self.url = file_size, L, url
        self.pending = None  # (offset, bytes) of a collection's first part

    def __call__(self, at: int, data) -> None:
        pending, self.pending = self.pending, None
        if pending is not None and at == pending[0] + len(pending[1]):
            at, data = pending[0], pending[1] + bytes(data)
        elif data[:4] != GCOL:
            return
        size = check_global_heap(data, at, self.file_size, self.L, self.url)
        if size is not None and len(data) < size:
            self.pending = (at, bytes(data))


class Cursor:
    """Little-endian decoding over a bytes-like with bounds checks."""

    __slots__ = ("buf", "pos", "what", "url", "at")

    def __init__(self, buf, pos=0, *, what="", url=None, at=0):
        self.buf, self.pos, self.what, self.url, self.at = buf, pos, what, url, at

    def need(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise ScanError(f"truncated or corrupt {self.what}", url=self.url,
                            offset=self.at + self.pos)

    def u(self, n):
        self.need(n)
        v = int.from_bytes(self.buf[self.pos:self.pos + n], "little")
        self.pos += n
        return v

    def take(self, n):
        self.need(n)
        v = self.buf[self.pos:self.pos + n]
        self.pos += n
        return v

    def skip(self, n):
        self.need(n)
        self.pos += n


class H5File:
    """The structural reader of one HDF5 file."""

    def __init__(self, reader, *, checksums: bool = True):
        self.reader = reader
        self.checksums = checksums  # False: metadata checksums are not verified (fuzz tests)
        self.url = reader.url
        off = find_superblock(reader)
        if off is None:
            raise ScanError("not an HDF5 file (no signature)", url=reader.url)
        self.sb = read_superblock(reader, off)
        self.O = self.sb.sizeof_addr
        self.L = self.sb.sizeof_size
        self.base = self.sb.base
        self._undef = (1 << (8 * self.O)) - 1
        self._msgs = {}  # object header address -> its messages, parsed once
        self._image = {}  # address -> bytes of the metadata held in a cache image
        if self.sb.version >= 2:
            self._read_cache_image(reader, off)

    def _read_cache_image(self, reader, off):
        """A file closed with a metadata cache image (``H5Pset_mdc_image_config``) keeps
        metadata entries (object headers, B-tree nodes...) in the image rather than at their
        addresses: they are read from it, as libhdf5 loads the image when it opens the file.
        The image is named by a message of the superblock extension."""
        head = bytes(reader.read_upto(off, 12 + 2 * self.O))
        if len(head) < 12 + 2 * self.O:
            return
        ext = int.from_bytes(head[12 + self.O:12 + 2 * self.O], "little")
        if ext == self._undef:
            return
        try:
            msgs = self.messages(ext, path="superblock extension")
        except ScanError:  # as before this was read: a damaged extension shows elsewhere
            self._msgs.clear()
            return
        for _mtype, _flags, data in msgs:
            # the cache image message: version, the image's address and length
            if len(data) != 1 + self.O + self.L:
                continue
            addr = int.from_bytes(data[1:1 + self.O], "little")
            size = int.from_bytes(data[1 + self.O:], "little")
            if addr == self._undef or self.base + addr + 4 > reader.size:
                continue
            if bytes(reader.read(self.base + addr, 4)) != b"MDCI":
                continue
            self._image = parse_cache_image(bytes(self.read(addr, size, "metadata cache image")),
                                            self.O, self.L, self.url, self.abs(addr))
            self._msgs.clear()  # the extension itself may be in the image
            return

    def err(self, msg, offset=None, path=None):
        return ScanError(msg, url=self.url, offset=offset, path=path)

    def abs(self, addr):
        return self.base + addr

    def read(self, addr, n, what="structure", path=None):
        """``n`` bytes at file address ``addr`` (relative to the base address)."""
        if self._image:
            hit = self._from_image(addr, n)
            if hit is not None:
                return hit
        a = self.base + addr
        if addr == self._undef or a + n > self.reader.size or n < 0:
            raise self.err(f"{what} at address {addr} (+{n} bytes) lies outside the file "
                           f"({self.reader.size} bytes): truncated or corrupt file", a, path)
        return self.reader.read(a, n)

    def _from_image(self, addr, n):
        """Bytes [addr, addr + n) from the cache image entry holding them, if one does."""
        import bisect

        if not hasattr(self, "_image_starts"):
            self._image_starts = sorted(self._image)
        i = bisect.bisect_right(self._image_starts, addr) - 1
        if i < 0:
            return None
        start = self._image_starts[i]
        data = self._image[start]
        if addr + n <= start + len(data):
            return memoryview(data)[addr - start:addr - start + n]
        return None

    # ------------------------------------------------------------------ object headers

    def messages(self, addr, path=None):
        """``[(type, flags, bytes)]`` of the object header at ``addr``, continuations
        followed (and checksums checked), parsed once per address."""
        hit = self._msgs.get(addr)
        if hit is not None:
            return hit
        head = bytes(self.read(addr, 16, "object header", path))
        if head[:4] == b"OHDR":
            out = self._messages_v2(addr, path)
        elif head[0] == 1:
            out = self._messages_v1(addr, head, path)
        else:
            raise self.err(f"unknown object header version {head[0]}", self.abs(addr), path)
        self._msgs[addr] = out
        return out

    def _messages_v1(self, addr, head, path):
        nmsg = int.from_bytes(head[2:4], "little")
        size = int.from_bytes(head[8:12], "little")
        out = []
        blocks = [(addr + 16, size)]
        seen = set()
        while blocks:
            baddr, bsize = blocks.pop(0)
            if (baddr, bsize) in seen or len(seen) > 4096:
                raise self.err("object header continuation loop", self.abs(baddr), path)
            seen.add((baddr, bsize))
            buf = bytes(self.read(baddr, bsize, "object header", path))
            c = Cursor(buf, what="object header message", url=self.url, at=self.abs(baddr))
            while c.pos + 8 <= len(buf) and len(out) < nmsg + 1:
                mtype, msize, mflags = c.u(2), c.u(2), c.u(1)
                c.skip(3)
                data = c.take(msize)
                if mtype == MSG_CONT:
                    blocks.append(self._continuation(data, path))
                out.append((mtype, mflags, data))
        return out

    def _messages_v2(self, addr, path):
        pre = bytes(self.read(addr, 6, "object header", path))
        flags = pre[5]
        extra = (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        nsz = 1 << (flags & 3)
        h = bytes(self.read(addr, 6 + extra + nsz, "object header", path))
        size0 = int.from_bytes(h[6 + extra:], "little")
        start = addr + 6 + extra + nsz
        self._verify(addr, 6 + extra + nsz + size0, "object header", path)
        out = []
        blocks = [(start, size0, False)]
        seen = set()
        while blocks:
            baddr, bsize, is_cont = blocks.pop(0)
            if (baddr, bsize) in seen or len(seen) > 4096:
                raise self.err("object header continuation loop", self.abs(baddr), path)
            seen.add((baddr, bsize))
            if is_cont:
                buf = bytes(self.read(baddr, bsize, "object header continuation", path))
                if buf[:4] != b"OCHK" or bsize < 8:
                    raise self.err("bad object header continuation signature",
                                   self.abs(baddr), path)
                self._verify(baddr, bsize - 4, "object header continuation", path)
                buf = buf[4:-4]
                at = self.abs(baddr) + 4
            else:
                buf = bytes(self.read(baddr, bsize, "object header", path))
                at = self.abs(baddr)
            c = Cursor(buf, what="object header message", url=self.url, at=at)
            hdr = 4 + (2 if flags & 0x04 else 0)
            while c.pos + hdr <= len(buf):
                mtype, msize, mflags = c.u(1), c.u(2), c.u(1)
                if flags & 0x04:
                    c.skip(2)
                data = c.take(msize)
                if mtype == MSG_CONT:
                    a, n = self._continuation(data, path)
                    blocks.append((a, n, True))
                out.append((mtype, mflags, data))
        return out

    def _verify(self, addr, n, what, path):
        """Check the Jenkins lookup3 checksum stored after ``n`` bytes at ``addr``."""
        if not self.checksums:
            return
        buf = bytes(self.read(addr, n + 4, what, path))
        if lookup3_one(buf[:n]) != int.from_bytes(buf[n:], "little"):
            raise self.err(f"{what} checksum mismatch: corrupt file", self.abs(addr), path)

    def check_object(self, addr, path=None):
        """Parse the object header at ``addr`` (raising ScanError if it is damaged) before
        the HDF5 library is asked to open it: libhdf5 can crash on corrupt headers."""
        self.messages(addr, path)

    def _continuation(self, data, path):
        c = Cursor(data, what="continuation message", url=self.url)
        return c.u(self.O), c.u(self.L)

    def message(self, addr, mtype, path=None):
        for t, _f, data in self.messages(addr, path):
            if t == mtype:
                return data
        return None

    # ------------------------------------------------------------------ layout

    def layout(self, addr, rank, path=None) -> Layout:
        data = self.message(addr, MSG_LAYOUT, path)
        if data is None:
            raise self.err("dataset has no data layout message", self.abs(addr), path)
        return parse_layout(bytes(data), rank, self.O, self.L, url=self.url, path=path)


@dataclass
class Layout:
    version: int
    cls: int
    address: int = UNDEF
    size: int = 0  # contiguous: bytes; single chunk filtered: stored size
    compact: bytes = b""
    chunk: tuple = ()  # chunk shape (without the element-size dimension)
    elem_size: int = 0
    index: int = BTREE1
    flags: int = 0
    filter_mask: int = 0  # single filtered chunk
    params: dict = field(default_factory=dict)


def parse_layout(data: bytes, rank: int, O: int, L: int, *, url=None, path=None) -> Layout:
    c = Cursor(data, what="data layout message", url=url)
    version = c.u(1)
    if version in (1, 2):
        ndims, cls = c.u(1), c.u(1)
        c.skip(5)
        addr = c.u(O) if cls != COMPACT else UNDEF
        dims = [c.u(4) for _ in range(ndims)]
        lay = Layout(version, cls, address=addr)
        if cls == CHUNKED:  # the last dimension is the element size
            if not dims:
                raise ScanError("chunked layout with no dimensions", url=url, path=path)
            lay.chunk, lay.elem_size = tuple(dims[:-1]), dims[-1]
        elif cls == COMPACT:
            n = c.u(4)
            lay.compact = bytes(c.take(n))
            lay.size = n
        else:
            n = 1
            for d in dims:
                n *= d
            lay.size = n  # element count here; the caller multiplies by the item size
            lay.params["v1_elements"] = True
        return lay
    if version not in (3, 4, 5):
        raise ScanError(f"unknown data layout message version {version}", url=url, path=path)
    cls = c.u(1)
    lay = Layout(version, cls)
    if cls == COMPACT:
        n = c.u(2)
        lay.compact = bytes(c.take(n))
        lay.size = n
    elif cls == CONTIGUOUS:
        lay.address = c.u(O)
        lay.size = c.u(L)
    elif cls == CHUNKED and version == 3:
        ndims = c.u(1)
        lay.address = c.u(O)
        dims = [c.u(4) for _ in range(ndims)]
        if ndims < 1:
            raise ScanError("chunked layout with no dimensions", url=url, path=path)
        lay.chunk, lay.elem_size = tuple(dims[:-1]), dims[-1]
        lay.index = BTREE1
    elif cls == CHUNKED:
        lay.flags = c.u(1)
        ndims = c.u(1)
        enc = c.u(1)
        if not 1 <= enc <= 8 or ndims < 1:
            raise ScanError(f"invalid chunked layout (dims {ndims}, size bytes {enc})",
                            url=url, path=path)
        dims = [c.u(enc) for _ in range(ndims)]
        lay.chunk, lay.elem_size = tuple(dims[:-1]), dims[-1]
        lay.index = c.u(1)
        if lay.index == SINGLE:
            if lay.flags & 2:
                lay.size = c.u(L)
                lay.filter_mask = c.u(4)
        elif lay.index == IMPLICIT:
            pass
        elif lay.index == FARRAY:
            lay.params["page_bits"] = c.u(1)
        elif lay.index == EARRAY:
            lay.params.update(max_bits=c.u(1), idx_blk_elmts=c.u(1), min_ptrs=c.u(1),
                              min_elmts=c.u(1), page_bits=c.u(1))
        elif lay.index == BTREE2:
            lay.params.update(node_size=c.u(4), split=c.u(1), merge=c.u(1))
        else:
            raise ScanError(f"unknown chunk index type {lay.index}", url=url, path=path)
        lay.address = c.u(O)
    elif cls == VIRTUAL:
        lay.address = c.u(O)
        lay.params["heap_index"] = c.u(4)
    else:
        raise ScanError(f"unknown layout class {cls}", url=url, path=path)
    if cls == CHUNKED and len(lay.chunk) != rank and not (rank == 0 and len(lay.chunk) == 1):
        raise ScanError(f"chunk rank {len(lay.chunk)} does not match dataset rank {rank}",
                        url=url, path=path)
    if cls == CHUNKED and any(d == 0 for d in lay.chunk):
        raise ScanError("chunk dimension of size 0", url=url, path=path)
    return lay


# ---------------------------------------------------------------------- chunk indexes


