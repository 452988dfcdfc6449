"""HDF5's metadata checksums: Jenkins' lookup3 (one block, or a batch of blocks in numpy), and
the batch of blocks a chunk-index reader verifies together."""


from __future__ import annotations

import numpy as np

_U32 = np.uint32
def _rot(x, k):
    return (x << _U32(k)) | (x >> _U32(32 - k))


def _mix(a, b, c):
    a -= c
    a ^= _rot(c, 4)
    c += b
    b -= a
    b ^= _rot(a, 6)
    a += c
    c -= b
    c ^= _rot(b, 8)
    b += a
    a -= c
    a ^= _rot(c, 16)
    c += b
    b -= a
    b ^= _rot(a, 19)
    a += c
    c -= b
    c ^= _rot(b, 4)
    b += a


def _final(a, b, c):
    c ^= b
    c -= _rot(b, 14)
    a ^= c
    a -= _rot(c, 11)
    b ^= a
    b -= _rot(a, 25)
    c ^= b
    c -= _rot(b, 16)
    a ^= c
    a -= _rot(c, 4)
    b ^= a
    b -= _rot(a, 14)
    c ^= b
    c -= _rot(b, 24)


_M = 0xFFFFFFFF


def lookup3_one(buf) -> int:
    """lookup3 of one buffer in plain Python (cheaper than numpy for short or few buffers)."""
    n = len(buf)
    words = np.zeros(-(-max(n, 1) // 12) * 3, "<u4")
    words.view(np.uint8)[:n] = np.frombuffer(buf, np.uint8)
    w = words.tolist()
    a = b = c = (0xDEADBEEF + n) & _M
    i = 0
    for _ in range((n - 1) // 12):
        a = (a + w[i]) & _M
        b = (b + w[i + 1]) & _M
        c = (c + w[i + 2]) & _M
        a = (a - c) & _M
        a ^= ((c << 4) | (c >> 28)) & _M
        c = (c + b) & _M
        b = (b - a) & _M
        b ^= ((a << 6) | (a >> 26)) & _M
        a = (a + c) & _M
        c = (c - b) & _M
        c ^= ((b << 8) | (b >> 24)) & _M
        b = (b + a) & _M
        a = (a - c) & _M
        a ^= ((c << 16) | (c >> 16)) & _M
        c = (c + b) & _M
        b = (b - a) & _M
        b ^= ((a << 19) | (a >> 13)) & _M
        a = (a + c) & _M
        c = (c - b) & _M
        c ^= ((b << 4) | (b >> 28)) & _M
        b = (b + a) & _M
        i += 3
    a = (a + w[i]) & _M
    b = (b + w[i + 1]) & _M
    c = (c + w[i + 2]) & _M
    c ^= b
    c = (c - ((b << 14) | (b >> 18))) & _M
    a ^= c
    a = (a - ((c << 11) | (c >> 21))) & _M
    b ^= a
    b = (b - ((a << 25) | (a >> 7))) & _M
    c ^= b
    c = (c - ((b << 16) | (b >> 16))) & _M
    a ^= c
    a = (a - ((c << 4) | (c >> 28))) & _M
    b ^= a
    b = (b - ((a << 14) | (a >> 18))) & _M
    c ^= b
    c = (c - ((b << 24) | (b >> 8))) & _M
    return c


def lookup3(bufs) -> np.ndarray:
    """Jenkins lookup3 ``hashlittle`` (initval 0: HDF5's metadata checksum) of each buffer in
    ``bufs`` (non-empty bytes-likes), as a uint32 array.  Many buffers are hashed at once in
    numpy, advancing through their 12-byte rounds in lock step (longest first), so the cost in
    numpy calls is that of the longest buffer; a few are hashed in plain Python."""
    n = len(bufs)
    if n == 0:
        return np.zeros(0, _U32)
    lens = np.fromiter((len(b) for b in bufs), np.int64, n)
    if lens.min() < 1:
        raise ValueError("lookup3 of an empty buffer")
    rounds = (lens - 1) // 12  # full rounds of the main loop; 1..12 bytes are left for the tail
    if int(rounds.sum()) <= 24 * int(rounds.max()) + 64:
        return np.array([lookup3_one(b) for b in bufs], _U32)
    order = np.argsort(-rounds, kind="stable")
    width = 12 * (int(rounds.max()) + 1)
    pad = np.zeros((n, width), np.uint8)
    for row, i in enumerate(order.tolist()):
        b = bufs[i]
        pad[row, :len(b)] = np.frombuffer(b, np.uint8)
    words = np.ascontiguousarray(pad.view("<u4").astype(_U32).T)  # (3 * (max rounds + 1), n)
    r_sorted = rounds[order]
    init = (_U32(0xDEADBEEF) + lens[order].astype(_U32))
    a, b, c = init.copy(), init.copy(), init.copy()
    # buffers still in the main loop at round r (rounds > r): a prefix of the sorted order
    nround = int(r_sorted[0])
    active = np.searchsorted(-r_sorted, -np.arange(nround), side="left").tolist()
    with np.errstate(over="ignore"):
        for r in range(nround):
            k = active[r]
            ak, bk, ck = a[:k], b[:k], c[:k]
            ak += words[3 * r, :k]
            bk += words[3 * r + 1, :k]
            ck += words[3 * r + 2, :k]
            _mix(ak, bk, ck)
        cols = np.arange(n)
        base = 3 * r_sorted
        a += words[base, cols]
        b += words[base + 1, cols]
        c += words[base + 2, cols]
        _final(a, b, c)
    out = np.empty(n, _U32)
    out[order] = c
    return out


class ChecksumBatch:
    """Blocks whose stored checksums are verified together (one lookup3 batch).

    ``verify``: True checks every block; None (the default of the readers) only the few
    fixed-count ones (headers, index block, super blocks), whose cost does not grow with the
    number of chunks; False none."""

    def __init__(self, f, path, verify):
        # a file opened with checksums=False (the fuzz tests) verifies nothing
        self.f, self.path = f, path
        self.mode = verify if getattr(f, "checksums", True) else False
        self.bufs, self.stored, self.what = [], [], []

    def add(self, buf, what, addr, bulk=False):
        """``buf``: the checksummed bytes followed by the 4-byte stored checksum; ``bulk``:
        one of the many blocks (nodes, data blocks, pages) checked only when verify is True."""
        if self.mode or (self.mode is None and not bulk):
            self.bufs.append(buf[:-4])
            self.stored.append(int.from_bytes(buf[-4:], "little"))
            self.what.append((what, addr))

    def verify(self):
        if not self.bufs:
            return
        got = lookup3(self.bufs)
        bad = np.nonzero(got != np.array(self.stored, np.uint32))[0]
        what = self.what
        self.bufs, self.stored, self.what = [], [], []
        if len(bad):
            w, addr = what[int(bad[0])]
            raise self.f.err(f"{w} checksum mismatch: corrupt file", self.f.abs(addr), self.path)


# ---------------------------------------------------------------------- helpers



__all__ = ["lookup3", "lookup3_one", "ChecksumBatch"]
