"""The batch fetch every reader shares: ``Source``, the stored bytes of many chunks at once.

URLs resolve through :class:`chunkview.io.resolve.Resolver` and are read with
:class:`chunkview.options.ReadOptions`: local files are memory-mapped once and handed to the
decoder in place (no copy, no read call per chunk); remote URLs are read through fsspec with
nearby ranges of one URL merged into one request (``max_gap``, ``max_block``), several blocks
per HTTP request where the server allows, retried and checked by :mod:`chunkview.io.remote`.

Two outputs: :meth:`Source.fetch_iter` gives the decoder a segment table (buffers plus, per
chunk, a buffer index, an offset and a length: what ``_decode.decode_batch`` takes) as blocks
land; :meth:`Source.read_ranges` gives the ``chunkview`` filesystem the bytes of each requested
range, on the caller's event loop.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import queue
import threading
from collections import defaultdict
from dataclasses import dataclass

import fsspec.asyn
import numpy as np

from chunkview._index import INLINE, WHOLE
from chunkview.errors import ChunkviewError, FetchError, SourceChangedError
from chunkview.io.remote import (
    MAX_RANGES,
    SourceChecker,
    call,
    check_allowed,
    multi_range_ok,
    read_block,
    read_multi,
    read_range,
    request,
    with_retries,
)
from chunkview.io.resolve import Resolver, local_path
from chunkview.options import ReadOptions


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

    def subset(self, idx) -> Segments:
        """The chunks ``idx`` (same buffers)."""
        return Segments(self.bufs, self.buf_index[idx], self.offsets[idx], self.lengths[idx],
                        self.ids[idx], self.url_text, self.starts[idx])


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


def chunk_view(seg: Segments, i: int, keys=None):
    """The stored bytes of chunk ``i`` of ``seg`` for Python code: a view of fetched bytes, or
    a copy out of a memory-mapped file made under the SIGBUS guard (a file truncated under the
    reader raises :class:`SourceChangedError` naming key, URL and range, not a crash)."""
    buf = seg.bufs[int(seg.buf_index[i])]
    o, n = int(seg.offsets[i]), int(seg.lengths[i])
    if not isinstance(buf, mmap.mmap):
        return memoryview(buf)[o:o + n]
    from chunkview import _decode

    try:
        return _decode.guarded_copy(buf, o, n)
    except (SourceChangedError, ValueError) as e:
        start = int(seg.starts[i])
        key = keys[i] if keys is not None else None
        raise SourceChangedError(f"cannot read chunk {key!r} of {seg.url_of(i)!r} (bytes "
                                 f"{start}-{start + n}): {e}") from None


@dataclass
class _Job:
    fs: object
    url: str
    members: np.ndarray  # chunk indices
    start: int
    end: int  # -1: the whole file
    parts: list | None = None  # [(start, end, members)]: blocks read in one multi-range request


class Source:
    """Where chunk bytes come from: the URLs of a reference set, resolved by ``resolver``
    (:class:`chunkview.io.resolve.Resolver`) and read with ``opts``
    (:class:`chunkview.options.ReadOptions`): local files memory-mapped, remote ones through
    fsspec with nearby ranges merged."""

    def __init__(self, refs, resolver: Resolver | None = None, opts: ReadOptions | None = None):
        self.refs = refs
        self.resolver = resolver or Resolver()
        self.resolver.adopt(getattr(refs, "urls", ()))
        self.opts = opts or ReadOptions()
        self.remote_origin = bool(getattr(refs, "remote_origin", False))
        self.checker = SourceChecker(refs, self.opts)
        self._maps: dict[str, tuple] = {}  # url -> (mmap or b"", (size, mtime_ns, inode))
        self._retired: list = []  # maps replaced after their file changed (check_source="off")
        self._lock = threading.Lock()

    @classmethod
    def of(cls, refs, *, remote_protocol=None, remote_options=None, fs=None, target=None,
           **options) -> Source:
        """A source over ``refs`` from the keywords of ``chunkview.open``."""
        return cls(refs, Resolver(remote_protocol=remote_protocol,
                                  remote_options=remote_options, fs=fs, target=target),
                   ReadOptions(**options))

    def _local_map(self, key: str, url: str, rng=(None, None)):
        """The whole local file at url, memory-mapped (b"" when empty); cached, and checked
        against the file on disk at every batch: a file that changed since it was mapped
        (size; with ``check_source="etag"`` also its modification time) raises
        :class:`SourceChangedError` (``check_source="off"``: it is mapped afresh).  The scan's
        record is compared too (``check_source``).  Pages that vanish during a batch (the file
        truncated while it is read) are caught by the decoder's SIGBUS guard.  ``rng``: the
        byte range of ``key``, for the errors."""
        path = local_path(url)
        try:
            st = os.stat(path)
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
            raise FetchError(key, url, *rng, cause=e) from e
        self.checker.check_local(url, st.st_size, st.st_mtime_ns / 1e9)
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        cached = self._maps.get(url)
        if cached is not None:
            m, was = cached
            changed = was[0] != stamp[0] or (self.checker.mode == "etag" and was != stamp)
            if not changed:
                return m
            if self.checker.mode != "off":
                raise SourceChangedError(
                    f"{url!r} changed while it was open: size {stamp[0]} bytes, modified "
                    f"{stamp[1] / 1e9:.6f} (it was {was[0]} bytes, modified {was[1] / 1e9:.6f}) "
                    f"(key {key!r}, check_source={self.checker.mode!r})")
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
                m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if st.st_size else b""
        except (OSError, ValueError) as e:
            if isinstance(e, ChunkviewError):
                raise
            raise FetchError(key, url, *rng, cause=e) from e
        with self._lock:
            old = self._maps.get(url)
            self._maps[url] = (m, stamp)
        if old is not None:
            self._retired.append(old[0])  # a batch may still read it; closed with the source
        return m

    def close(self):
        for m in [m for m, _ in self._maps.values()] + self._retired:
            if isinstance(m, mmap.mmap):
                try:
                    m.close()
                except BufferError:  # still exported to a live buffer; the GC will close it
                    pass
        self._maps.clear()
        self._retired.clear()

    # ----------------------------------------------------------------- fetching

    def fetch(self, keys, ids, offs, lens) -> Segments:
        """The bytes of chunks ``keys`` whose references were looked up as (ids, offs, lens)."""
        return list(self.fetch_iter(keys, ids, offs, lens))[-1][0]

    def fetch_iter(self, keys, ids, offs, lens):
        """Fetch like :meth:`fetch`, yielding ``(segments, ready)`` as blocks arrive: local,
        inline and missing chunks first, then each group of remote blocks as it lands, so the
        caller decodes while the rest is still in flight.  ``segments`` is filled in place;
        ``ready`` is an index array of the chunks whose bytes are now there."""
        n = len(ids)
        ids = np.asarray(ids)
        seg = Segments([], np.full(n, -1, dtype=np.int32), np.zeros(n, dtype=np.int64),
                       np.zeros(n, dtype=np.int64), ids, {}, np.zeros(n, dtype=np.int64))
        bufs = seg.bufs
        url_names = self.refs.urls
        whole = np.uint64(WHOLE)
        present = ids >= 0
        ready = [np.flatnonzero(~present)]  # inline and missing
        jobs: list[_Job] = []
        offs_i = lens_i = None
        if present.any():
            lens_u = np.asarray(lens, dtype=np.uint64)
            is_whole = present & (lens_u == whole)
            offs_i = np.asarray(offs, dtype=np.uint64).astype(np.int64)
            lens_i = np.where(is_whole, 0, lens_u).astype(np.int64)
            bad = present & ((offs_i < 0) | (lens_i < 0) | (offs_i + lens_i < offs_i))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise FetchError(keys[i], url_names[int(ids[i])], int(offs[i]),
                                 cause=ValueError("offset or length out of range"))
            uids = np.unique(ids[present])
            present_idx = np.flatnonzero(present)
            for uid in uids.tolist():
                sel = present_idx[ids[present_idx] == uid] if len(uids) > 1 else present_idx
                k0 = keys[int(sel[0])]
                url = self.resolver.url(k0, url_names[uid])
                check_allowed(k0, url, self.opts, self.remote_origin, self.resolver)
                seg.url_text[uid] = url
                seg.starts[sel] = offs_i[sel]
                try:
                    fs = self.resolver.fs_for(url)
                except Exception as e:  # noqa: BLE001 - an unknown protocol, a missing extra,
                    # a filesystem that fails to start: one error naming key and URL
                    raise FetchError(k0, url, cause=e) from e
                if fs is None:
                    i0 = int(sel[0])
                    rng = (None, None) if is_whole[i0] else \
                        (int(offs_i[i0]), int(offs_i[i0] + lens_i[i0]))
                    m = self._local_map(k0, url, rng)
                    seg.buf_index[sel] = len(bufs)
                    bufs.append(m)
                    seg.offsets[sel] = offs_i[sel]
                    seg.lengths[sel] = np.where(is_whole[sel], len(m), lens_i[sel])
                    ready.append(sel)
                    continue
                for i in sel[is_whole[sel]].tolist():
                    jobs.append(_Job(fs, url, np.array([i]), 0, -1))
                part = sel[~is_whole[sel]]
                if len(part):
                    st = offs_i[part].tolist()
                    en = (offs_i[part] + lens_i[part]).tolist()
                    # blocks of at most ~request_bytes: each is one request, decoded as it lands
                    cap = min(self.opts.max_block, self.opts.request_bytes)
                    blocks = [(bs, be, part[m]) for bs, be, m in
                              merge_ranges(st, en, self.opts.max_gap, cap)]
                    if len(blocks) > 1 and multi_range_ok(fs, url, self.opts):
                        jobs.extend(_multi_jobs(fs, url, blocks, self.opts.request_bytes))
                    else:
                        jobs.extend(_Job(fs, url, m, bs, be) for bs, be, m in blocks)
        for i in np.flatnonzero(ids == INLINE).tolist():
            data = self.refs[keys[i]]
            seg.buf_index[i] = len(bufs)
            bufs.append(data)
            seg.lengths[i] = len(data)
        if not jobs:
            yield seg, np.concatenate(ready)
            return
        it = self._remote(jobs, keys, offs_i, lens_i)
        try:
            first = np.concatenate(ready)
            if len(first):
                yield seg, first
            for done in it:
                idx = []
                for job, data in done:
                    bi = len(bufs)
                    bufs.append(data)
                    m = job.members
                    seg.buf_index[m] = bi
                    if job.end < 0:
                        seg.lengths[m] = len(data)
                    else:
                        seg.offsets[m] = offs_i[m] - job.start
                        seg.lengths[m] = lens_i[m]
                    idx.append(m)
                yield seg, np.concatenate(idx)
        finally:
            it.close()

    # ----------------------------------------------------------------- byte ranges
    # (the chunkview filesystem's reads: on the caller's event loop, bytes per item)

    async def read_range(self, key: str, url: str, start, end) -> bytes:
        """Bytes [start, end) of url for key (None: from the start / to the end; negative:
        from the end), with the remote policy: allowed protocols, source check, retries,
        large ranges split; every failure becomes a chunkview error naming key, URL, range."""
        try:
            check_allowed(key, url, self.opts, self.remote_origin, self.resolver)
            fs = self.resolver.fs_for(url)
            path = local_path(url) if fs is None else None
            await self.checker.check(key, fs, url, path)
            if start is None and end is None:  # the whole file: one request, retried
                return await with_retries(lambda: request(fs, url, None, None, path),
                                          self.opts, local=fs is None)
            if start is None or end is None or start < 0 or end < 0:
                # open-ended or from the end: made absolute from the file's size, so the
                # answer is checked as every bounded range is (position and length)
                start, end, _ = slice(start, end).indices(await self._size(fs, url, path))
                if end <= start:
                    return b""
            return await read_block(fs, url, start, end, self.opts, path,
                                    self.checker.expect(url))
        except ChunkviewError:
            raise
        except Exception as e:  # noqa: BLE001 - converted to one error naming key/url/range
            raise FetchError(key, url, start, end, cause=e) from e

    async def _size(self, fs, url, path) -> int:
        if fs is None:
            return await asyncio.to_thread(os.path.getsize, path)
        return int(await with_retries(lambda: call(fs, "size", url), self.opts))

    async def size(self, key: str, url: str) -> int:
        """The size of the file ``url`` (a whole-file reference's), with the remote policy;
        a failure is a :class:`FetchError` naming key and URL."""
        try:
            check_allowed(key, url, self.opts, self.remote_origin, self.resolver)
            fs = self.resolver.fs_for(url)
            return await self._size(fs, url, local_path(url) if fs is None else None)
        except ChunkviewError:
            raise
        except Exception as e:  # noqa: BLE001
            raise FetchError(key, url, cause=e) from e

    async def read_ranges(self, resolved, max_gap=None, max_block=None):
        """Fetch every resolved item; returns a list of bytes or exceptions (one per item)."""
        max_gap = self.opts.max_gap if max_gap is None else max_gap
        max_block = self.opts.max_block if max_block is None else max_block
        results: list = [None] * len(resolved)
        by_url: dict[str, list[int]] = defaultdict(list)
        jobs = []
        for i, item in enumerate(resolved):
            kind = item[0]
            if kind == "missing":
                results[i] = FileNotFoundError(item[1])
            elif kind == "data":
                results[i] = item[2]
            elif item[5]:  # whole file: [start, end) as given (None, or from the end)
                jobs.append(((i,), item[1], item[2], item[3], item[4], True))
            else:
                by_url[item[2]].append(i)
        for url, idxs in by_url.items():
            for bstart, bend, members in merge_ranges(
                    [resolved[i][3] for i in idxs], [resolved[i][4] for i in idxs],
                    max_gap, max_block):
                members = [idxs[j] for j in members]
                jobs.append((tuple(members), resolved[members[0]][1], url, bstart, bend,
                             False))

        async def run(job):
            members, key, url, ms, me, whole = job
            try:
                if ms is not None and me is not None and 0 <= me <= ms:
                    data = b""
                else:  # read_range checks the length of every bounded range
                    data = await self.read_range(key, url, ms, me)
            except FetchError as e:
                for i in members:
                    results[i] = e if resolved[i][1] == key else FetchError(
                        resolved[i][1], url, resolved[i][3], resolved[i][4], cause=e.__cause__)
                return
            except ChunkviewError as e:  # source changed, protocol not allowed
                for i in members:
                    results[i] = e
                return
            except Exception as e:  # noqa: BLE001
                for i in members:
                    results[i] = FetchError(resolved[i][1], url, resolved[i][3],
                                            resolved[i][4], cause=e)
                return
            if isinstance(data, bytearray):  # a large block read in parallel parts
                data = bytes(data)
            for i in members:
                s, e = resolved[i][3], resolved[i][4]
                if whole or ms is None and me is None:
                    results[i] = data
                else:
                    results[i] = data[s - ms:e - ms]

        await asyncio.gather(*(run(j) for j in jobs))
        return results

    # ----------------------------------------------------------------- the remote jobs

    def _remote(self, jobs: list, keys, offs, lens):
        """Run the jobs on fsspec's IO loop; yield lists of ``(job, data)`` as they finish."""
        loop = fsspec.asyn.get_loop()
        if loop is _running_loop():
            raise ChunkviewError("chunkview cannot wait for fsspec's event loop from inside it; "
                                 "read from another thread")
        q: queue.SimpleQueue = queue.SimpleQueue()
        opts = self.opts
        checker = self.checker

        async def main():
            checks = {}
            for j in jobs:
                if j.url not in checks and checker.mode != "off":
                    checks[j.url] = asyncio.ensure_future(
                        checker.check(keys[int(j.members[0])], j.fs, j.url))

            async def parts(j):
                """A multi-range job: each block handed on as its part arrives (after the
                source check, when there is one)."""
                held = []
                check = checks.get(j.url)

                def deliver(i, data):
                    bs, be, m = j.parts[i]
                    held.append((_Job(j.fs, j.url, m, bs, be), data, None))
                    if check is None or (check.done() and check.exception() is None):
                        while held:
                            q.put(held.pop(0))

                blocks = [(bs, be) for bs, be, _ in j.parts]
                expect = checker.expect(j.url)
                rest = await read_multi(j.fs, j.url, blocks, opts, deliver, expect)
                for i in rest:  # the server would not: one range per request
                    deliver(i, await read_block(j.fs, j.url, *blocks[i], opts,
                                                expect=expect))
                if check is not None:
                    await asyncio.shield(check)
                while held:
                    q.put(held.pop(0))

            async def one(j):
                try:
                    if j.parts is not None:
                        return await parts(j)
                    if j.end < 0:
                        data = await read_range(j.fs, j.url, 0, None, opts)
                    else:
                        data = await read_block(j.fs, j.url, j.start, j.end, opts,
                                                expect=checker.expect(j.url))
                    if j.url in checks:
                        await asyncio.shield(checks[j.url])
                    q.put((j, data, None))
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - handed to the reading thread
                    q.put((j, None, e))

            try:
                await asyncio.gather(*(one(j) for j in jobs))
            finally:
                for t in checks.values():
                    t.cancel()

        fut = asyncio.run_coroutine_threadsafe(main(), loop)
        left = sum(len(j.parts) if j.parts is not None else 1 for j in jobs)
        try:
            while left:
                try:
                    items = [q.get(timeout=1.0)]
                except queue.Empty:
                    if fut.done():
                        fut.result()  # raises what stopped the loop's task
                        raise ChunkviewError("internal: remote fetch ended early") from None
                    continue
                while True:
                    try:
                        items.append(q.get_nowait())
                    except queue.Empty:
                        break
                left -= len(items)
                for job, _, err in items:
                    if err is not None:
                        raise self._error(job, keys, err, offs, lens)
                yield [(job, data) for job, data, _ in items]
        finally:
            if not fut.done():
                fut.cancel()

    @staticmethod
    def _error(job: _Job, keys, err, offs, lens):
        """The error of a failed block, naming its first chunk's key and byte range."""
        if isinstance(err, ChunkviewError):
            return err
        i = int(job.members[0])
        if job.end < 0:
            e = FetchError(keys[i], job.url, cause=err)
        else:
            st = int(offs[i])
            e = FetchError(keys[i], job.url, st, st + int(lens[i]), cause=err)
            if job.parts is not None:
                e.args = (e.args[0] + f" [one request for {len(job.parts)} ranges in bytes "
                          f"{job.start}-{job.end}, {len(job.members)} chunks]",)
            elif len(job.members) > 1:
                e.args = (e.args[0] + f" [one request for bytes {job.start}-{job.end}, "
                          f"{len(job.members)} chunks]",)
        e.__cause__ = err
        return e


def _multi_jobs(fs, url, blocks, request_bytes):
    """Blocks ``[(start, end, members)]`` of one URL in file order, packed into multi-range
    requests of at most ``request_bytes`` (and MAX_RANGES ranges) each; a block alone in its
    request is a plain one."""
    groups, cur, size = [], [], 0
    for b in blocks:
        n = b[1] - b[0]
        if cur and (size + n > request_bytes or len(cur) >= MAX_RANGES):
            groups.append(cur)
            cur, size = [], 0
        cur.append(b)
        size += n
    if cur:
        groups.append(cur)
    for g in groups:
        if len(g) == 1:
            yield _Job(fs, url, g[0][2], g[0][0], g[0][1])
        else:
            yield _Job(fs, url, np.concatenate([m for _, _, m in g]), g[0][0], g[-1][1],
                       parts=g)


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


__all__ = ["Source", "Segments", "merge_ranges"]
