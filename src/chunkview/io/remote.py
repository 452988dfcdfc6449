"""Reading byte ranges of remote files: the part every read path shares.

* a merged block larger than ``request_bytes`` is split into parallel requests;
* over HTTP, several blocks of one file go in one multi-range request (``multi_range``), its
  parts handed on as they arrive; a server that answers it otherwise is remembered and read
  one range per request;
* at most ``max_requests`` requests are in flight per reader;
* transient failures (5xx and 429 answers, resets, timeouts, short bodies) are retried with
  exponential backoff and jitter, ``retries`` times; anything else fails at once;
* a body that is not exactly the bytes asked for is never returned as data;
* ``check_source`` compares a file's size (and ETag or mtime) with what the scan recorded,
  once per file, before its first byte is used;
* ``allowed_protocols`` limits which kinds of URL a reference set may make us read.

Filesystems are fsspec's.  Async ones run on their own event loop (``fs.loop``); sync ones in a
worker thread.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random

from fsspec.core import split_protocol

from chunkview.errors import ChunkviewError, FetchError, ForbiddenSourceError, SourceChangedError
from chunkview.io.resolve import LOCAL_PROTOCOLS
from chunkview.options import ReadOptions


class ShortRead(OSError):
    """A response body that is not the requested range."""


# ----------------------------------------------------------------- policy


def protocol_of(url: str) -> str | None:
    return split_protocol(url)[0]


def check_allowed(key: str, url: str, opts: ReadOptions, remote_origin: bool,
                  resolver=None) -> None:
    """Raise ForbiddenSourceError unless ``url`` may be read for these references;
    ``resolver`` (a :class:`chunkview.io.resolve.Resolver`) says which protocol a URL without
    one is read with (``remote_protocol``, or the filesystem handed in as ``fs``)."""
    protocol = protocol_of(url) if resolver is None else resolver.read_protocol(url)
    local = protocol in LOCAL_PROTOCOLS
    allowed = opts.allowed_protocols
    _check_host(key, url, opts, remote_origin)
    if allowed is None and remote_origin and not local and (
            protocol == "memory" or _chains_local(url)):
        raise ForbiddenSourceError(
            f"key {key!r} refers to {url!r}, which reads this process's memory or a local "
            "file, but the references were loaded from a remote location; pass "
            f"allowed_protocols=({protocol!r}, ...) to allow it")
    if allowed is not None:
        names = {("file" if p in LOCAL_PROTOCOLS else p) for p in allowed}
        ok = ("file" if local else protocol) in names
        if not ok:
            raise ForbiddenSourceError(
                f"key {key!r} refers to {url!r}, whose protocol "
                f"{'file' if local else protocol!r} is not in allowed_protocols={allowed!r}")
    elif local and remote_origin:
        raise ForbiddenSourceError(
            f"key {key!r} refers to the local file {url!r}, but the references were loaded "
            "from a remote location; pass allowed_protocols=('file', ...) to allow it")


def _chains_local(url: str) -> bool:
    """A chained URL (``zip://a::file:///x``) one of whose links is local or in memory."""
    if "::" not in url:
        return False
    for part in url.split("::")[1:]:
        proto = protocol_of(part)
        if proto in LOCAL_PROTOCOLS or proto == "memory":
            return True
    return False


def _host_matches(host: str, pattern: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(host, pattern)


def _link_local(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_link_local
    except ValueError:
        return False


def _check_host(key: str, url: str, opts: ReadOptions, remote_origin: bool) -> None:
    """``allowed_hosts`` (patterns such as ``"*.amazonaws.com"``); without it, references
    from a remote location may not reach link-local addresses (cloud metadata services)."""
    if "://" not in url:
        return
    from urllib.parse import urlsplit

    try:
        host = (urlsplit(url.split("::")[0]).hostname or "").lower()
    except ValueError:
        raise ForbiddenSourceError(f"key {key!r} refers to {url!r}, which is not a valid "
                                   "URL") from None
    if not host:
        return
    if opts.allowed_hosts is not None:
        if not any(_host_matches(host, p) for p in opts.allowed_hosts):
            raise ForbiddenSourceError(f"key {key!r} refers to {url!r}, whose host {host!r} "
                                       f"is not in allowed_hosts={opts.allowed_hosts!r}")
    elif remote_origin and _link_local(host):
        raise ForbiddenSourceError(
            f"key {key!r} refers to {url!r}, a link-local address, but the references were "
            "loaded from a remote location; pass allowed_hosts=(...) to allow it")


# ----------------------------------------------------------------- errors


def is_transient(exc: BaseException) -> bool:
    """Whether a failed request is worth retrying."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError,
                        NotADirectoryError, ChunkviewError)):
        return False
    if isinstance(exc, (ShortRead, asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status >= 500 or status in (408, 429)
    mod = type(exc).__module__ or ""
    if mod.startswith("aiohttp"):  # resets, payload errors, disconnects
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.ECONNABORTED,
                                                      errno.EPIPE, errno.ETIMEDOUT)


# ----------------------------------------------------------------- requests


async def call(fs, method: str, *args, **kwargs):
    """``fs.method(*args, **kwargs)`` from a coroutine: on the filesystem's own loop when it is
    async (hopping loops if needed), in a worker thread when it is sync."""
    if getattr(fs, "async_impl", False):
        return await on_loop_of(fs, getattr(fs, "_" + method)(*args, **kwargs))
    return await asyncio.to_thread(getattr(fs, method), *args, **kwargs)


async def on_loop_of(fs, coro):
    """Await ``coro`` on async filesystem ``fs``'s own loop (its session lives there),
    hopping loops when this one is another."""
    if getattr(fs, "asynchronous", False) or fs.loop is asyncio.get_running_loop():
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, fs.loop))


def pread(path: str, start: int | None, end: int | None) -> bytes:
    """Bytes [start, end) of a local file, sliced like Python (None: from the start / to the
    end; negative: from the end)."""
    with open(path, "rb", buffering=0) as f:
        if start is None and end is None:
            return f.read()
        size = None
        if (start is not None and start < 0) or end is None or end < 0:
            size = os.fstat(f.fileno()).st_size
        s = 0 if start is None else (max(size + start, 0) if start < 0 else start)
        e = size if end is None else (max(size + end, 0) if end < 0 else end)
        if e <= s:
            return b""
        f.seek(s)
        return f.read(e - s)


async def request(fs, url: str, start, end, path: str | None = None,
                  expect: dict | None = None) -> bytes:
    """One read of [start, end) of ``url`` (``fs`` None: the local file ``path``); over HTTP
    the answer is checked against ``expect`` (:meth:`SourceChecker.expect`)."""
    if fs is None:
        return await asyncio.to_thread(pread, path, start, end)
    if start is None and end is None:
        return await call(fs, "cat_file", url)
    if is_http(fs) and 0 <= start < end:
        return await on_loop_of(fs, http_range(fs, url, start, end, expect))
    if is_s3(fs) and 0 <= start < end:
        return await on_loop_of(fs, s3_range(fs, url, start, end, expect))
    return await call(fs, "cat_file", url, start=start, end=end)


def _precondition_failed(e: BaseException | None) -> bool:
    """Whether botocore's answer behind ``e`` (s3fs turns it into an OSError) is a 412."""
    seen = 0
    while e is not None and seen < 8:
        resp = getattr(e, "response", None)
        if isinstance(resp, dict) and (
                resp.get("Error", {}).get("Code") == "PreconditionFailed"
                or resp.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def is_s3(fs) -> bool:
    """An s3fs filesystem (whose ``get_object`` chunkview calls itself)."""
    return getattr(fs, "async_impl", False) and hasattr(fs, "_call_s3") and \
        any(c.__name__ == "S3FileSystem" for c in type(fs).__mro__)


async def s3_range(fs, url: str, start: int, end: int, expect: dict | None = None) -> bytes:
    """One ranged ``GetObject`` of [start, end), checked like :func:`http_range`: the answer's
    ``ContentRange`` must be the range asked for and its total the recorded size; with an
    ETag in ``expect`` the request carries ``If-Match`` (a changed object answers 412) and
    the answer's ``ETag`` is compared.  The body is read up to the length asked for."""
    bucket, key, version = fs.split_path(url)
    kw = {"Bucket": bucket, "Key": key, "Range": f"bytes={start}-{end - 1}"}
    if version:
        kw["VersionId"] = version
    if expect and expect.get("etag") is not None:
        kw["IfMatch"] = f'"{expect["etag"]}"'
    try:
        resp = await fs._call_s3("get_object", **kw)
    except Exception as e:
        if _precondition_failed(e):
            raise SourceChangedError(f"{url!r} changed since it was scanned: its ETag is not "
                                     f"the recorded {expect['etag']!r} (If-Match refused, "
                                     "check_source='etag')") from e
        raise
    body = resp["Body"]
    try:
        crange = resp.get("ContentRange")
        status = 206 if crange else 200
        check_answer(url, {"Content-Range": crange, "ETag": resp.get("ETag")}, expect, status)
        check_range(start, end, status, crange)
        return await read_upto(body.read, end - start)
    finally:
        body.close()


def is_http(fs) -> bool:
    """An fsspec HTTP filesystem (whose aiohttp session chunkview uses directly)."""
    return hasattr(fs, "set_session") and any(c.__name__ == "HTTPFileSystem"
                                              for c in type(fs).__mro__)


async def http_range(fs, url: str, start: int, end: int, expect: dict | None = None) -> bytes:
    """One ranged GET of [start, end) over the filesystem's session.  fsspec's ``cat_file``
    never looks at ``Content-Range``: a server answering 206 with another range of the same
    length would hand back other bytes.  Here the answer must be a 206 whose
    ``Content-Range`` is the range asked for, or a 200 holding the whole file when the range
    starts at 0 (a server that ignores ``Range``); anything else is a ShortRead (retried, then
    an error).  The body is read up to the length asked for, never more: a server's
    ``Content-Length`` is not trusted.  ``expect``: the file's recorded size and ETag, which
    the answer's ``Content-Range`` total and ``ETag`` must match (SourceChangedError)."""
    kw = dict(fs.kwargs)
    headers = dict(kw.pop("headers", None) or {})
    headers["Range"] = f"bytes={start}-{end - 1}"
    session = await fs.set_session()
    async with session.get(fs.encode_url(url), headers=headers, **kw) as r:
        if r.status == 404:
            raise FileNotFoundError(url)
        r.raise_for_status()  # retried or not by its status (is_transient)
        check_answer(url, r.headers, expect, r.status)
        try:
            check_range(start, end, r.status, r.headers.get("Content-Range"))
        except ShortRead:
            r.close()
            raise
        return await read_at_most(r, end - start)


def check_range(start: int, end: int, status: int, content_range: str | None) -> None:
    """A ShortRead unless an answer to a request for [start, end) holds that range: a 206
    whose ``Content-Range`` is that range, or a 200 (the whole file) for a range from 0."""
    if status == 206:
        span = _content_range(content_range)
        if span != (start, end - 1):
            got = "no Content-Range" if span is None else f"bytes {span[0]}-{span[1]}"
            raise ShortRead(f"asked for bytes {start}-{end - 1}, the server answered {got}")
    elif status == 200 and start != 0:
        raise ShortRead(f"asked for bytes {start}-{end - 1}, the server answered 200 with the "
                        "whole file (it ignored the Range header)")
    elif status != 200:
        raise ShortRead(f"asked for bytes {start}-{end - 1}, the server answered {status}")


class ReadTimeoutError(asyncio.TimeoutError):
    """A request that got no (complete) answer in time; says how long and which try."""


async def read_at_most(r, n: int) -> bytes:
    """The body of aiohttp answer ``r`` if it is at most ``n`` bytes; of a longer body
    (whatever its ``Content-Length`` says) only ``n + 1`` bytes are read, which the caller's
    length check refuses."""
    out = await read_upto(r.content.read, n)
    if len(out) > n:
        r.close()  # more may follow: not read
    return out


async def read_upto(read, n: int) -> bytes:
    """At most ``n + 1`` bytes from the coroutine function ``read(size)``, until it returns
    nothing."""
    out = bytearray()
    while len(out) <= n:
        part = await read(n + 1 - len(out))
        if not part:
            break
        out += part
    return bytes(out)


def check_answer(url: str, headers, expect: dict | None, status: int) -> None:
    """An answer's ``Content-Range`` total and ``ETag`` against the file's record (what
    :func:`compare` judges, from the headers of one answer)."""
    if not expect:
        return
    now = {}
    total = (headers.get("Content-Range") or "").rpartition("/")[2].strip()
    if status == 206 and total.isdigit():
        now["size"] = int(total)
    etag = headers.get("ETag")
    if expect.get("etag") is not None and etag is not None:
        now["etag"] = _norm_etag(etag)
    compare(url, expect, now, "etag" if "etag" in now else "size")


async def with_retries(fn, opts: ReadOptions, *, local: bool = False):
    """``await fn()`` (one request, under the in-flight limit and ``timeout``), retried with
    backoff on transient failures, all of it within ``total_timeout`` from the first try's
    start; raises the last error."""
    sem = opts.semaphore()
    attempt = 0
    loop = asyncio.get_running_loop()
    deadline = None
    while True:
        limit = opts.timeout
        try:
            async with sem:
                if deadline is None and opts.total_timeout:
                    deadline = loop.time() + opts.total_timeout
                if deadline is not None:
                    left = deadline - loop.time()
                    limit = left if limit is None else min(limit, left)
                coro = fn()
                if limit is None:
                    return await coro
                try:
                    return await asyncio.wait_for(coro, max(limit, 0.001))
                except TimeoutError as e:
                    total = deadline is not None and deadline - loop.time() <= 0.001
                    raise ReadTimeoutError(
                        f"no complete answer within {limit:.3g} s (try {attempt + 1}"
                        + (f"; total_timeout={opts.total_timeout:g} s reached" if total
                           else f", timeout={opts.timeout:g} s per request") + ")") from e
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - retried or re-raised as is
            if local or attempt >= opts.retries or not is_transient(e):
                raise
            delay = min(opts.backoff * (2 ** attempt), 5.0) * (0.5 + random.random())
            if deadline is not None and loop.time() + delay >= deadline:
                raise  # no time left for another try
            attempt += 1
            await asyncio.sleep(delay)


async def read_range(fs, url: str, start: int, end: int | None, opts: ReadOptions,
                     path: str | None = None, expect: dict | None = None):
    """Exactly bytes [start, end) of ``url`` (``end`` None: the whole file; ``fs`` None: the
    local file ``path``), with retries; raises the last error (a ShortRead for a wrong-sized
    body)."""
    if end is not None and end <= start:
        return b""

    async def once():
        data = await request(fs, url, None if end is None else start, end, path, expect)
        if end is not None and len(data) != end - start:
            raise ShortRead(f"short read: got {len(data)} of {end - start} bytes" if
                            len(data) < end - start else
                            f"got {len(data)} bytes for a range of {end - start} (the "
                            "server ignored the Range header?)")
        return data

    return await with_retries(once, opts, local=fs is None)


async def read_block(fs, url: str, start: int, end: int, opts: ReadOptions,
                     path: str | None = None, expect: dict | None = None):
    """Bytes [start, end) of ``url``; a long block is read as parallel requests of about
    ``request_bytes`` into one buffer."""
    n = end - start
    part = opts.request_bytes
    if n <= part + part // 2:
        return await read_range(fs, url, start, end, opts, path, expect)
    k = -(-n // part)
    step = -(-n // k)
    buf = bytearray(n)
    view = memoryview(buf)

    async def one(s):
        e = min(s + step, end)
        data = await read_range(fs, url, s, e, opts, path, expect)
        view[s - start:e - start] = data

    tasks = [asyncio.ensure_future(one(s)) for s in range(start, end, step)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        raise
    return buf


# ----------------------------------------------------------------- multi-range requests

MAX_RANGES = 64  # ranges per multi-range request (Apache allows 200 by default, nginx any)
_NO_MULTI_RANGE: set = set()  # origins whose servers answered a multi-range request otherwise


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}".lower()


def multi_range_ok(fs, url: str, opts: ReadOptions) -> bool:
    """Whether blocks of ``url`` may be asked for several per request: an fsspec HTTP
    filesystem, ``multi_range`` on, and the server not known to refuse."""
    if not opts.multi_range or fs is None or not is_http(fs):
        return False
    return _origin(url) not in _NO_MULTI_RANGE


def _content_range(value: str | None):
    """(first, last) of a ``Content-Range: bytes first-last/size`` header, or None."""
    if not value or not value.strip().lower().startswith("bytes "):
        return None
    span = value.strip()[6:].split("/", 1)[0]
    first, _, last = span.partition("-")
    try:
        first, last = int(first), int(last)
    except ValueError:
        return None
    return (first, last) if 0 <= first <= last else None


async def _multi_once(fs, url: str, blocks, pending: list, deliver,
                      expect: dict | None = None) -> bool:
    """One multi-range GET of the blocks in ``pending`` (removed as their bytes are handed
    to ``deliver(i, data)``).  False, having read nothing, when the server answers otherwise
    than with the ranges (200, 416): the caller reads the rest alone.

    Every part is checked before its bytes are used: its ``Content-Range`` must span whole
    blocks asked for and not yet delivered (a server may merge adjacent ranges into one part),
    its body must be followed by the boundary (a part shorter than its ``Content-Range`` would
    otherwise take the delimiter's bytes as data), and the answer must end with the closing
    boundary.  Anything else is a ShortRead naming the part."""
    kw = dict(fs.kwargs)
    headers = dict(kw.pop("headers", None) or {})
    headers["Range"] = "bytes=" + ",".join(f"{blocks[i][0]}-{blocks[i][1] - 1}"
                                           for i in pending)
    asked = {blocks[i][0]: i for i in pending}
    ends = {blocks[i][1]: i for i in pending}
    session = await fs.set_session()
    async with session.get(fs.encode_url(url), headers=headers, **kw) as r:
        if r.status == 404:
            raise FileNotFoundError(url)
        if r.status >= 400 and r.status != 416:
            r.raise_for_status()  # retried or not by its status (is_transient)
        if r.status != 206:  # 200: Range ignored, 416: refused; no body read
            r.close()
            return False
        check_answer(url, r.headers, expect, 206)
        ctype = r.headers.get("Content-Type", "")

        def take(span, data):
            """Deliver the blocks part ``span`` (first, last) holds: it must start where a
            pending block starts and end where one ends, holding only blocks asked for."""
            first, last = span
            if first not in asked or (last + 1) not in ends:
                raise ShortRead(f"the server sent bytes {first}-{last}, which is not a range "
                                "asked for (or one sent twice)")
            got = [i for i in list(pending) if first <= blocks[i][0] and blocks[i][1] <= last + 1]
            for i in got:
                s, e = blocks[i]
                deliver(i, data if (s, e) == (first, last + 1) else
                        memoryview(data)[s - first:e - first])
                pending.remove(i)
                asked.pop(s, None)
                ends.pop(e, None)

        if not ctype.lower().startswith("multipart/byteranges"):
            span = _content_range(r.headers.get("Content-Range"))
            if span is None:
                r.close()
                return False
            data = await read_at_most(r, span[1] - span[0] + 1)
            if len(data) != span[1] - span[0] + 1:
                raise ShortRead(f"short read: got {len(data)} of {span[1] - span[0] + 1} bytes")
            take(span, data)
            return not pending
        boundary = None
        for param in ctype.split(";")[1:]:
            k, _, v = param.strip().partition("=")
            if k.lower() == "boundary":
                boundary = v.strip().strip('"').encode()
        if not boundary:
            r.close()
            return False
        rd = r.content
        delim, close = b"--" + boundary, b"--" + boundary + b"--"
        line = b""
        while True:  # the preamble, up to the first delimiter
            line = await rd.readline()
            if not line:
                raise ShortRead("multipart answer without a part")
            line = line.rstrip(b"\r\n")
            if line in (delim, close):
                break
            if len(line) > 1024:
                raise ShortRead("multipart answer: no boundary where one was expected")
        nparts = 0
        where = "the first part"
        try:
            while line != close:
                nparts += 1
                where = f"the headers of part {nparts}"
                span = None
                for _ in range(64):
                    h = await rd.readline()
                    if not h:
                        raise ShortRead(f"multipart answer ended in the headers of part {nparts}")
                    h = h.rstrip(b"\r\n")
                    if not h:
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-range":
                        span = _content_range(value)
                else:
                    raise ShortRead(f"part {nparts} of the multipart answer has too many headers")
                if span is None:
                    raise ShortRead(f"part {nparts} of the multipart answer has no Content-Range")
                n = span[1] - span[0] + 1
                if span[0] not in asked or span[1] + 1 not in ends:  # checked before reading
                    raise ShortRead(f"part {nparts}: the server sent bytes {span[0]}-{span[1]}, "
                                    "which is not a range asked for (or one sent twice)")
                where = f"part {nparts} (bytes {span[0]}-{span[1]})"
                try:
                    data = await rd.readexactly(n)
                except asyncio.IncompleteReadError as e:
                    raise ShortRead(f"short read: got {len(e.partial)} of {n} bytes of part "
                                    f"{nparts} (bytes {span[0]}-{span[1]})") from None
                # the body must end where the next boundary begins: CRLF, then the delimiter
                after = await rd.readline()
                line = (await rd.readline()).rstrip(b"\r\n") if after == b"\r\n" else b""
                if line not in (delim, close):
                    raise ShortRead(f"part {nparts} (bytes {span[0]}-{span[1]}) is not followed by "
                                    "the boundary: its body is shorter or longer than its "
                                    "Content-Range says")
                take(span, data)
        except (ShortRead, asyncio.CancelledError):
            raise
        except Exception as e:  # noqa: BLE001 - a reset or payload error: say in which part
            if not is_transient(e):
                raise
            raise ShortRead(f"{where} of the multipart answer: {type(e).__name__}: "
                            f"{e}") from e
        return not pending


async def read_multi(fs, url: str, blocks, opts: ReadOptions, deliver,
                     expect: dict | None = None) -> list:
    """Blocks ``[(start, end), ...]`` of ``url`` through one multi-range request, each block's
    bytes handed to ``deliver(i, data)`` (thread-safe) as its part arrives; a failed request
    is retried like any other (``with_retries``), asking only for the blocks still missing.
    Returns the indices of the blocks the server would not send that way, to be read one
    range per request; the server's origin is then remembered."""
    pending = list(range(len(blocks)))
    ok = await with_retries(lambda: on_loop_of(fs, _multi_once(fs, url, blocks, pending,
                                                               deliver, expect)), opts)
    if not ok:
        _NO_MULTI_RANGE.add(_origin(url))
    return pending


# ----------------------------------------------------------------- source changes


def _norm_etag(v) -> str | None:
    if v is None:
        return None
    v = str(v).strip()
    if v.startswith("W/"):
        v = v[2:]
    return v.strip('"')


def describe(info: dict) -> dict:
    """What is recorded of a file at scan time, from an fsspec ``info`` dict or os.stat."""
    out = {}
    if info.get("size") is not None:
        out["size"] = int(info["size"])
    etag = info.get("ETag") or info.get("etag") or info.get("e_tag")
    if etag:
        out["etag"] = _norm_etag(etag)
    mtime = info.get("mtime") or info.get("LastModified") or info.get("Last-Modified") or \
        info.get("last_modified") or info.get("updated") or info.get("created")
    if mtime is not None:
        out["mtime"] = mtime if isinstance(mtime, (int, float)) else str(mtime)
    return out


def local_record(path: str) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime": st.st_mtime_ns / 1e9}


def compare(url: str, recorded: dict, now: dict, mode: str) -> None:
    """Raise SourceChangedError when ``now`` contradicts ``recorded`` under ``mode``."""
    if mode == "off" or not recorded:
        return
    rs, ns = recorded.get("size"), now.get("size")
    if rs is not None and ns is not None and int(rs) != int(ns):
        raise SourceChangedError(f"{url!r} changed since it was scanned: size {ns} bytes, "
                                 f"recorded {rs} (check_source={mode!r})")
    if mode != "etag":
        return
    if recorded.get("etag") is not None:
        if now.get("etag") != recorded["etag"]:
            raise SourceChangedError(f"{url!r} changed since it was scanned: ETag "
                                     f"{now.get('etag')!r}, recorded {recorded['etag']!r}")
    elif recorded.get("mtime") is not None:
        a, b = recorded["mtime"], now.get("mtime")
        same = (abs(float(a) - float(b)) < 1e-6) if isinstance(a, (int, float)) and \
            isinstance(b, (int, float)) else str(a) == str(b)
        if not same:
            raise SourceChangedError(f"{url!r} changed since it was scanned: modified {b!r}, "
                                     f"recorded {a!r}")
    else:
        raise SourceChangedError(f"cannot check {url!r} with check_source='etag': the scan "
                                 "recorded neither an ETag nor a modification time")


async def current_record(fs, url: str, opts: ReadOptions, path: str | None = None) -> dict:
    if fs is None:
        return await asyncio.to_thread(local_record, path)
    try:
        fs.invalidate_cache(url)
    except Exception:  # noqa: BLE001 - not every filesystem caches listings
        pass
    return describe(await with_retries(lambda: call(fs, "info", url), opts))


class SourceChecker:
    """Checks each URL once (per reader) against the scan's record (``refs.sources``)."""

    def __init__(self, refs, opts: ReadOptions):
        sources = getattr(refs, "sources", None)
        self.records = sources if isinstance(sources, dict) else {}
        self.mode = opts.check_source
        self.opts = opts
        self._done: dict = {}  # url -> None (checked) or the SourceChangedError raised

    def expect(self, url: str) -> dict | None:
        """What every HTTP answer for ``url`` must agree with (its ``Content-Range`` total,
        and with ``check_source="etag"`` its ``ETag``): checked per response, so a file that
        changes after the first check is still caught."""
        rec = self.records.get(url) if self.mode != "off" else None
        if not rec:
            return None
        out = {"size": rec.get("size")}
        if self.mode == "etag" and rec.get("etag") is not None:
            out["etag"] = rec["etag"]
        return out

    def _pending(self, url: str) -> bool:
        """Whether ``url`` still needs checking; re-raises an earlier failure."""
        if url in self._done:
            if self._done[url] is not None:
                raise self._done[url]
            return False
        return self.mode != "off" and url in self.records

    def _judge(self, url: str, now: dict) -> None:
        try:
            compare(url, self.records[url], now, self.mode)
        except SourceChangedError as e:
            self._done[url] = e
            raise
        self._done[url] = None

    async def check(self, key: str, fs, url: str, path: str | None = None) -> None:
        if not self._pending(url):
            return
        try:
            now = await current_record(fs, url, self.opts, path)
        except Exception as e:  # noqa: BLE001
            raise FetchError(key, url, cause=e) from e
        self._judge(url, now)

    def check_local(self, url: str, size: int, mtime: float) -> None:
        """A local file whose ``os.stat`` the caller already has: judged at every call (each
        batch stats its local files), not once per reader."""
        if self._done.get(url) is not None:
            raise self._done[url]
        if self.mode != "off" and url in self.records:
            self._judge(url, {"size": size, "mtime": mtime})


__all__ = ["ReadOptions", "ForbiddenSourceError", "ShortRead", "SourceChecker", "call",
           "check_allowed", "on_loop_of", "compare", "describe", "is_transient", "local_record",
           "multi_range_ok", "pread", "read_block", "read_multi", "read_range", "request",
           "with_retries"]
