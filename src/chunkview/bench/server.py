"""A small HTTP file server on loopback, for the tests and ``chunkview bench remote``.

It serves the files under one folder with ``Range`` support (206 and ``Content-Range``),
``HEAD``, ``ETag`` and ``Last-Modified``, adds ``latency`` seconds to every request, counts
requests, bytes and the most requests in flight at once, and can inject faults: each entry of
``faults`` (consumed one per matching GET request) is one of ``"503"`` (or any status code),
``"reset"`` (the connection closes before an answer), ``"truncate"`` (half the promised body,
then the connection closes), ``"short"`` (a 206 answer with half the range), ``"ignore-range"``
(200 and the whole file), ``"shift"`` (206 and the range one byte further on, as its
``Content-Range`` says: the right length, other bytes) or ``"hang"`` (no answer for an hour).
Multi-range answers take ``"part-short"`` / ``"part-long"`` (the first part's body a byte
shorter / longer than its ``Content-Range``), ``"part-shift"`` (the first part one byte
further on, labelled so: a range not asked for) and ``"part-twice"`` (the first part sent
again at the end).

A ``Range`` of several ranges is answered as nginx and Apache answer it: 206 and a
``multipart/byteranges`` body, one part per range.  ``multi_range="ignore"`` answers such
requests with 200 and the whole file instead (nginx with ``max_ranges 1``), ``"refuse"`` with
416.

    with RangeServer(folder, latency=0.02) as srv:
        url = srv.url("file.h5")

``python -m chunkview.bench.server FOLDER [--latency S]`` runs one in its own process: it prints
``port N`` and serves ``GET /_stats`` (counters as JSON) and ``POST /_reset``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import re
import sys
import threading
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def _spans(header: str, size: int) -> list:
    """``[(start, end), ...]`` of a ``Range: bytes=...`` header's satisfiable ranges (suffix
    ranges too); ``[]`` when a range is malformed or none can be satisfied."""
    spec = header.strip()
    if not spec.startswith("bytes="):
        return []
    out = []
    for part in spec[len("bytes="):].split(","):
        m = _RANGE.match("bytes=" + part.strip())
        if not m or (not m.group(1) and not m.group(2)):
            return []
        if m.group(1):
            start = int(m.group(1))
            end = min(int(m.group(2)) + 1, size) if m.group(2) else size
        else:  # suffix range
            start, end = max(size - int(m.group(2)), 0), size
        if start < size and end > start:
            out.append((start, end))
    return out


class RangeServer:
    def __init__(self, root, *, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0,
                 control: bool = False, multi_range=True):
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            from chunkview.errors import missing_extra

            raise missing_extra("aiohttp", "http") from None
        self.root = Path(root).resolve()
        self.latency = float(latency)
        self.host = host
        self.port = port
        self.control = control
        self.multi_range = multi_range
        self.faults: list = []  # (fault, path substring or None)
        self.reset_stats()
        self._loop = None
        self._thread = None
        self._runner = None
        self._stopping = False
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- counters

    def reset_stats(self) -> None:
        self.requests = 0
        self.gets = 0
        self.heads = 0
        self.bytes_sent = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.log: list = []  # (method, path, Range header)

    def stats(self) -> dict:
        return {"requests": self.requests, "gets": self.gets, "heads": self.heads,
                "bytes": self.bytes_sent, "max_in_flight": self.max_in_flight}

    def url(self, name: str = "") -> str:
        return f"http://{self.host}:{self.port}/{name}"

    def fail(self, *faults, path: str | None = None) -> None:
        """Queue faults for the next requests (of URLs containing ``path``)."""
        with self._lock:
            self.faults.extend((f, path) for f in faults)

    def _next_fault(self, path: str):
        with self._lock:
            for i, (f, p) in enumerate(self.faults):
                if p is None or p in path:
                    del self.faults[i]
                    return f
        return None

    # ----------------------------------------------------------------- serving

    async def _handle(self, request):
        from aiohttp import web

        path = request.path
        if self.control and path == "/_stats":
            return web.json_response(self.stats())
        if self.control and path == "/_reset":
            self.reset_stats()
            return web.json_response({})
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._serve(request, web)
        finally:
            self.in_flight -= 1

    async def _serve(self, request, web):
        path = request.path
        head = request.method == "HEAD"
        if head:
            self.heads += 1
        else:
            self.gets += 1
        rng = request.headers.get("Range")
        self.log.append((request.method, path, rng))
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = None if head else self._next_fault(path)
        if fault == "hang":
            for _ in range(72_000):  # an hour, or until the server stops
                if self._stopping:
                    break
                await asyncio.sleep(0.05)
        if fault == "reset":
            request.transport.abort()
            return web.Response(status=500)
        if fault is not None and str(fault).isdigit():
            return web.Response(status=int(fault), text="injected failure")
        target = (self.root / path.lstrip("/")).resolve()
        if self.root not in target.parents or not target.is_file():
            return web.Response(status=404, text="not found")
        st = target.stat()
        size = st.st_size
        headers = {"ETag": f'"{st.st_size:x}-{st.st_mtime_ns:x}"',
                   "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
                   "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        start, end, status = 0, size, 200
        spans = _spans(rng, size) if rng and fault != "ignore-range" else None
        if spans is not None and len(spans) != 1 and not head:
            if self.multi_range is True and spans:
                return await self._multipart(request, web, target, size, spans, headers, fault)
            if self.multi_range == "ignore" and spans:
                spans = None  # the whole file
        if spans is not None:
            if len(spans) != 1:  # unsatisfiable, or several refused
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            (start, end), status = spans[0], 206
            if fault == "shift" and end < size:  # another range of the same length
                start, end = start + 1, end + 1
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        if fault == "short":
            end = start + (end - start) // 2
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = end - start
        await resp.prepare(request)
        if head:
            return resp
        with open(target, "rb") as f:
            f.seek(start)
            body = f.read(end - start)
        if fault == "truncate":
            await resp.write(body[:len(body) // 2])
            request.transport.close()
            return resp
        await resp.write(body)
        self.bytes_sent += len(body)
        await resp.write_eof()
        return resp

    async def _multipart(self, request, web, target, size, spans, headers, fault):
        boundary = "chunkview0boundary"
        body = bytearray()
        parts = list(spans)
        if fault == "part-twice":  # the first part again, at the end
            parts.append(parts[0])
        with open(target, "rb") as f:
            for k, (start, end) in enumerate(parts):
                label = (start, end)
                if k == 0 and fault == "part-shift" and end < size:  # other bytes, labelled so
                    start, end = label = start + 1, end + 1
                if k == 0 and fault == "part-short":  # one byte less than its label says
                    end -= 1
                if k == 0 and fault == "part-long":  # one byte more than its label says
                    end = min(end + 1, size)
                f.seek(start)
                body += (f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                         f"Content-Range: bytes {label[0]}-{label[1] - 1}/{size}\r\n\r\n"
                         ).encode()
                body += f.read(end - start)
        body += f"\r\n--{boundary}--\r\n".encode()
        headers = dict(headers, **{"Content-Type": f"multipart/byteranges; boundary={boundary}"})
        resp = web.StreamResponse(status=206, headers=headers)
        resp.content_length = len(body)
        await resp.prepare(request)
        if fault == "truncate":
            await resp.write(bytes(body[:len(body) // 2]))
            request.transport.close()
            return resp
        await resp.write(bytes(body))
        self.bytes_sent += sum(e - s for s, e in spans)
        await resp.write_eof()
        return resp

    # ----------------------------------------------------------------- life cycle

    async def _start(self):
        from aiohttp import web

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> RangeServer:
        ready = threading.Event()
        errors: list = []

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start())
            except Exception as e:  # noqa: BLE001 - reported by start()
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="chunkview-http", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root")
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args(argv)
    srv = RangeServer(a.root, latency=a.latency, port=a.port, control=True).start()
    print(f"port {srv.port}", flush=True)
    try:
        sys.stdin.read()  # serve until the parent closes our stdin
    except KeyboardInterrupt:
        pass
    srv.stop()
    return 0


def stats_of(port: int) -> dict:
    """Counters of a server run with ``python -m chunkview.bench.server``."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=10) as r:
        return json.loads(r.read())


def reset_stats_of(port: int) -> None:
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/_reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10):
        pass


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
