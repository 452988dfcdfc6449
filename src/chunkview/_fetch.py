"""Fetching the stored bytes of many chunks at once, for the batch decoder.

Local files are memory-mapped once and handed to the decoder in place (no copy, no read call
per chunk).  Remote URLs are read through fsspec with nearby ranges of one URL merged into one
request (``max_gap``, ``max_block``).  The result is a segment table: buffers plus, per chunk,
a buffer index, an offset and a length, which is what ``_decode.decode_batch`` takes.
"""

from __future__ import annotations

import mmap
import os
import threading
from dataclasses import dataclass

import fsspec
import fsspec.implementations.local
import numpy as np
from fsspec.core import split_protocol

from chunkview._index import INLINE, WHOLE
from chunkview.errors import FetchError

_LOCAL = (None, "file", "local")


@dataclass
class Segments:
    bufs: list
    buf_index: np.ndarray  # int32, -1: missing chunk
    offsets: np.ndarray  # int64
    lengths: np.ndarray  # int64
    ids: np.ndarray  # per chunk: url id, INLINE or MISSING
    url_text: dict  # url id -> URL as read
    starts: np.ndarray  # int64 byte offset in the URL (for error messages)

    def url_of(self, i: int) -> str:
        return self.url_text.get(int(self.ids[i]), "")


def merge_ranges(starts, ends, max_gap, max_block):
    """Group byte ranges [starts[i], ends[i]) of one file into blocks: a range within
    ``max_gap`` of the block before joins it while the block stays within ``max_block`` bytes
    (``max_gap`` None or negative: no merging).  Returns ``[(start, end, [i, ...]), ...]``."""
    order = sorted(range(len(starts)), key=lambda i: (starts[i], ends[i]))
    merge = max_gap is not None and max_gap >= 0
    blocks: list = []
    for i in order:
        s, e = starts[i], ends[i]
        if blocks and merge:
            b = blocks[-1]
            if s - b[1] <= max_gap and max(e, b[1]) - b[0] <= max_block:
                b[1] = max(b[1], e)
                b[2].append(i)
                continue
        blocks.append([s, e, [i]])
    return [tuple(b) for b in blocks]


def local_path(url: str) -> str:
    protocol, path = split_protocol(url)
    if protocol in ("file", "local"):
        return fsspec.implementations.local.make_path_posix(path)
    return url


def filesystems(fs, remote_protocol):
    """``fs`` as fsspec's ``ReferenceFileSystem`` takes it (a filesystem, or a ``{protocol:
    filesystem or options}`` dict) -> ``({protocol: filesystem}, remote_protocol)``; a single
    filesystem also becomes the remote protocol when none is given."""
    fss: dict = {}
    if isinstance(fs, dict):
        for k, opts in fs.items():
            proto = None if k is None else k.split(":", 1)[0]
            fss[proto] = fsspec.filesystem(proto, **opts) if isinstance(opts, dict) else opts
    elif fs is not None:
        proto = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
        fss[proto] = fs
        if remote_protocol is None:
            remote_protocol = proto
    return fss, remote_protocol


class Source:
    """Where chunk bytes come from: the URLs of a reference set, read locally or via fsspec.

    ``remote_protocol`` / ``remote_options`` configure the filesystem of remote URLs, ``fs`` a
    filesystem or a ``{protocol: filesystem or options}`` dict, ``target`` the URL of
    references without one.
    """

    def __init__(self, refs, *, remote_protocol=None, remote_options=None, fs=None, target=None,
                 max_gap: int = 64_000, max_block: int = 256_000_000):
        self.refs = refs
        self.remote_options = dict(remote_options or {})
        self.target = target
        self.max_gap = max_gap
        self.max_block = max_block
        self._fss, self.remote_protocol = filesystems(fs, remote_protocol)
        self._maps: dict[str, object] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- filesystems

    def _url(self, url: str) -> str:
        if url == "" and self.target is not None:
            return self.target
        return url

    def fs_for(self, url: str):
        """The fsspec filesystem reading ``url``, or None for a local file read in place."""
        protocol, _ = split_protocol(url)
        if protocol is None and self.remote_protocol not in _LOCAL and url and "://" not in url \
                and self.remote_protocol is not None and not os.path.isabs(url):
            protocol = self.remote_protocol
        if protocol in self._fss:
            return self._fss[protocol]
        if protocol in _LOCAL:
            return self._fss.get(None) or self._fss.get("file")
        with self._lock:
            if protocol not in self._fss:
                opts = self.remote_options if self.remote_protocol in (None, protocol) else {}
                self._fss[protocol] = fsspec.filesystem(protocol, **opts)
            return self._fss[protocol]

    def _local_map(self, key: str, url: str):
        """The whole local file at url, memory-mapped (b"" when empty); cached."""
        m = self._maps.get(url)
        if m is not None:
            return m
        path = local_path(url)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        except OSError as e:
            raise FetchError(key, url, cause=e) from e
        with self._lock:
            self._maps.setdefault(url, m)
        return self._maps[url]

    def close(self):
        for m in self._maps.values():
            if isinstance(m, mmap.mmap):
                try:
                    m.close()
                except BufferError:  # still exported to a live buffer; the GC will close it
                    pass
        self._maps.clear()

    # ----------------------------------------------------------------- fetching

    def fetch(self, keys, ids, offs, lens) -> Segments:
        """The bytes of chunks ``keys`` whose references were looked up as (ids, offs, lens)."""
        n = len(ids)
        ids = np.asarray(ids)
        bufs: list = []
        buf_index = np.full(n, -1, dtype=np.int32)
        offsets = np.zeros(n, dtype=np.int64)
        lengths = np.zeros(n, dtype=np.int64)
        starts = np.zeros(n, dtype=np.int64)
        url_names = self.refs.urls
        url_text: dict = {}
        whole = np.uint64(WHOLE)
        present = ids >= 0
        if present.any():
            lens_u = np.asarray(lens, dtype=np.uint64)
            is_whole = present & (lens_u == whole)
            offs_i = np.asarray(offs, dtype=np.uint64).astype(np.int64)
            lens_i = np.where(is_whole, 0, lens_u).astype(np.int64)
            uids = np.unique(ids[present])
            present_idx = np.flatnonzero(present)
            for uid in uids.tolist():
                sel = present_idx[ids[present_idx] == uid] if len(uids) > 1 else present_idx
                url = self._url(url_names[uid])
                if url == "":
                    k = keys[int(sel[0])]
                    raise FetchError(k, "", cause=ValueError("reference has no URL and no target"))
                fs = self.fs_for(url)
                if fs is None:
                    m = self._local_map(keys[int(sel[0])], url)
                    bi = len(bufs)
                    bufs.append(m)
                    buf_index[sel] = bi
                    offsets[sel] = offs_i[sel]
                    wl = is_whole[sel]
                    lengths[sel] = np.where(wl, len(m), lens_i[sel])
                else:
                    self._fetch_remote(fs, url, keys, sel, offs_i, lens_i, is_whole, bufs,
                                       buf_index, offsets, lengths)
                starts[sel] = offs_i[sel]
                url_text[uid] = url
        inline = np.flatnonzero(ids == INLINE)
        for i in inline.tolist():
            data = self.refs[keys[i]]
            buf_index[i] = len(bufs)
            bufs.append(data)
            lengths[i] = len(data)
        return Segments(bufs, buf_index, offsets, lengths, ids, url_text, starts)

    def _fetch_remote(self, fs, url, keys, sel, offs_i, lens_i, is_whole, bufs, buf_index,
                      offsets, lengths):
        whole_sel = sel[is_whole[sel]]
        part_sel = sel[~is_whole[sel]]
        for i in whole_sel.tolist():
            try:
                data = fs.cat_file(url)
            except Exception as e:  # noqa: BLE001 - one error naming key, url, range
                raise FetchError(keys[i], url, cause=e) from e
            buf_index[i] = len(bufs)
            bufs.append(data)
            lengths[i] = len(data)
        if not len(part_sel):
            return
        s = offs_i[part_sel].tolist()
        e = (offs_i[part_sel] + lens_i[part_sel]).tolist()
        blocks = merge_ranges(s, e, self.max_gap, self.max_block)
        try:
            datas = fs.cat_ranges([url] * len(blocks), [b[0] for b in blocks],
                                  [b[1] for b in blocks], on_error="return")
        except Exception as exc:  # noqa: BLE001
            datas = [exc] * len(blocks)
        for (bs, be, members), data in zip(blocks, datas):
            if isinstance(data, Exception) or len(data) != be - bs:
                i = int(part_sel[members[0]])
                cause = data if isinstance(data, Exception) else ValueError(
                    f"short read: got {len(data)} of {be - bs} bytes")
                raise FetchError(keys[i], url, int(offs_i[i]), int(offs_i[i] + lens_i[i]),
                                 cause=cause) from (cause if isinstance(cause, Exception) else None)
            bi = len(bufs)
            bufs.append(data)
            idx = part_sel[members]
            buf_index[idx] = bi
            offsets[idx] = offs_i[idx] - bs
            lengths[idx] = lens_i[idx]


__all__ = ["Source", "Segments", "filesystems", "local_path", "merge_ranges"]
