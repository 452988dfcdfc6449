"""The one place a URL becomes something to read: a local path read in place, or an fsspec
filesystem.

Every reader goes through here: the batch fetch behind ``chunkview.open`` and the zarr store
(:class:`chunkview.io.fetch.Source`), the ``chunkview`` filesystem, the scanner's block reader
and the loading of reference files.  So a URL means the same file on every path:

* a URL without a protocol that is not an absolute path is read through ``remote_protocol``
  (as fsspec's ``ReferenceFileSystem`` does), otherwise as a local path;
* ``file://`` and ``local://`` URLs and plain paths are local files, opened directly, unless a
  local filesystem was handed in with ``fs``;
* ``fs`` is a filesystem or a ``{protocol: filesystem or options}`` dict, as
  ``ReferenceFileSystem`` takes it; ``remote_options`` configure the filesystem of
  ``remote_protocol`` (and of any protocol when none is given);
* ``target`` is the URL of references that carry none.
"""

from __future__ import annotations

import os
import threading

import fsspec
from fsspec.core import split_protocol

from chunkview._platform import path_to_url, url_to_path
from chunkview.errors import FetchError

LOCAL_PROTOCOLS = (None, "file", "local")


def is_remote_url(url: str) -> bool:
    """A URL read from elsewhere than this machine's files and memory (``http``, ``s3``...)."""
    protocol = split_protocol(str(url))[0]
    return protocol not in LOCAL_PROTOCOLS and protocol != "memory"


def local_path(url: str) -> str:
    """The path to open for a local URL (``file://...``, ``local://...``) or plain path."""
    path = url_to_path(url)
    if path != url and path.startswith("~"):  # as fsspec: file://~/x is in the home folder
        path = os.path.expanduser(path)
    return path


def file_url(path: str) -> str:
    """The ``file://`` URL references record for a local file: absolute, not percent-encoded
    (fsspec reads ``file:///tmp/a%20b.h5`` as a file named ``a%20b.h5``)."""
    from pathlib import Path

    return path_to_url(str(Path(path).resolve()))


def protocol_name(fs) -> str:
    """A filesystem's first protocol name."""
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def is_local_fs(fs) -> bool:
    return protocol_name(fs) in ("file", "local")


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
        fss[protocol_name(fs)] = fs
        if remote_protocol is None:
            remote_protocol = protocol_name(fs)
    return fss, remote_protocol


# An HTTP server that stops answering is given up on after this many seconds without a byte
# (connecting, or between reads of an answer); aiohttp's default waits 5 minutes in all.
HTTP_STALL_TIMEOUT = 20.0


def with_stall_timeout(protocol, options: dict) -> dict:
    """``options`` for an fsspec filesystem of ``protocol``; for HTTP, with aiohttp timeouts
    that give up on a stalled server (``HTTP_STALL_TIMEOUT``) unless the caller set any."""
    if protocol not in ("http", "https"):
        return options
    client = dict(options.get("client_kwargs") or {})
    if "timeout" in client:
        return options
    import aiohttp

    client["timeout"] = aiohttp.ClientTimeout(total=None, sock_connect=HTTP_STALL_TIMEOUT,
                                              sock_read=HTTP_STALL_TIMEOUT)
    return {**options, "client_kwargs": client}


def url_to_fs(url: str, protocol: str | None = None, options: dict | None = None):
    """fsspec's ``url_to_fs`` (chained URLs included): ``(filesystem, path)`` for a file to
    read whole or in blocks (a reference file, a file to scan)."""
    opts = dict(options or {})
    if protocol:
        opts["protocol"] = protocol
    if "::" not in url:
        opts = with_stall_timeout(protocol or split_protocol(url)[0], opts)
    return fsspec.core.url_to_fs(url, **opts)


class Resolver:
    """URL -> filesystem for the readers of one reference set (see the module docstring).

    ``asynchronous``: async filesystems are made for use on the caller's running event loop
    (the ``chunkview`` filesystem opened with ``asynchronous=True``).
    """

    def __init__(self, *, remote_protocol=None, remote_options=None, fs=None, target=None,
                 asynchronous: bool = False):
        self.fss, self.remote_protocol = filesystems(fs, remote_protocol)
        # checked when a filesystem is made from them, as fsspec does (not before)
        self.remote_options = dict(remote_options) if isinstance(remote_options, dict) else \
            (remote_options or {})
        self.target = target
        self.asynchronous = asynchronous
        self._lock = threading.Lock()

    def adopt(self, urls) -> None:
        """With neither ``remote_protocol`` nor ``fs`` given, names without a protocol are
        read with the first protocol the references use, as fsspec's ``ReferenceFileSystem``
        does (``{"a": ["memory://x"], "b": ["y"]}`` reads ``b`` from memory)."""
        if self.remote_protocol is not None or self.fss:
            return
        for u in urls:
            protocol = split_protocol(u)[0] if isinstance(u, str) else None
            if protocol not in LOCAL_PROTOCOLS:
                self.remote_protocol = protocol
                return

    def url(self, key: str, url: str) -> str:
        """The URL to read for ``key``'s reference ``url`` (``target`` when it has none)."""
        if url == "":
            if self.target is None:
                raise FetchError(key, "", cause=ValueError("reference has no URL and no target"))
            return self.target
        return url

    def protocol_of(self, url: str) -> str | None:
        """The protocol ``url`` is read with: its own, else ``remote_protocol`` for a relative
        name, else None (a local path)."""
        protocol, _ = split_protocol(url)
        if (protocol is None and url and self.remote_protocol not in LOCAL_PROTOCOLS
                and "://" not in url and not os.path.isabs(url)):
            return self.remote_protocol
        return protocol

    def read_protocol(self, url: str) -> str | None:
        """The protocol ``url`` is actually read with: :meth:`protocol_of`, or for a local
        name, the protocol of a non-local filesystem handed in for it (``fs=``)."""
        protocol = self.protocol_of(url)
        if protocol in LOCAL_PROTOCOLS:
            fs = self.fs_for(url)
            if fs is not None and not is_local_fs(fs):
                return protocol_name(fs)
        return protocol

    def fs_for(self, url: str):
        """The fsspec filesystem reading ``url``, or None for a local file read in place.
        Chained URLs (``zip://a::s3://b``) are refused: a filesystem is made once per protocol,
        as fsspec's ``ReferenceFileSystem`` makes them, so each link would need its own."""
        if "::" in url:
            from chunkview.errors import UnsupportedError

            raise UnsupportedError(f"chained URL {url!r} in a reference: not supported (one "
                                   "filesystem per protocol)")
        protocol = self.protocol_of(url)
        if protocol in self.fss:
            return self.fss[protocol]
        if protocol in LOCAL_PROTOCOLS:
            return self.fss.get(None) or self.fss.get("file")
        with self._lock:
            if protocol not in self.fss:
                opts = self.remote_options if self.remote_protocol in (None, protocol) else {}
                if not isinstance(opts, dict):
                    raise TypeError(f"remote_options must be a dict, not {type(opts).__name__}")
                if self.asynchronous and getattr(fsspec.get_filesystem_class(protocol),
                                                 "async_impl", False):
                    opts = {**opts, "asynchronous": True}
                opts = with_stall_timeout(protocol, opts)
                self.fss[protocol] = fsspec.filesystem(protocol, **opts)
            return self.fss[protocol]


__all__ = ["LOCAL_PROTOCOLS", "Resolver", "filesystems", "local_path", "file_url",
           "is_remote_url",
           "protocol_name", "is_local_fs", "url_to_fs"]
