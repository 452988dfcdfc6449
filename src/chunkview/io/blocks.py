"""The scanner's reads: random access to the bytes of a file being scanned, over a block cache.

Local files are memory-mapped.  Any other fsspec URL is read through the filesystem in aligned
blocks (``block_size``, default 1 MiB) kept in a small cache, so walking an HDF5 file's metadata
costs a few large range requests rather than one per object.  Every read is bounds-checked: a
range past the end of the file raises :class:`chunkview.errors.ScanError` naming the URL and
byte range, so parsers never see short data.
"""

from __future__ import annotations

import mmap
import os
from collections import OrderedDict

import fsspec.asyn
from fsspec.core import split_protocol

from chunkview.errors import ScanError, SourceChangedError, reason
from chunkview.io.remote import describe, http_range, is_http
from chunkview.io.resolve import LOCAL_PROTOCOLS, file_url, local_path, url_to_fs

SCAN_READ_TIMEOUT = 60.0  # seconds one block read of a remote file being scanned may take


class Reader:
    """``read(offset, length) -> bytes-like`` over one file; ``size`` is the file's length."""

    url: str
    size: int
    record: dict = {}  # what check_source= compares at read time: size, etag or mtime

    def read(self, offset: int, length: int):
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ScanError(f"read of bytes {offset}-{offset + length} past the end of the file "
                            f"({self.size} bytes): truncated or corrupt file",
                            url=self.url, offset=offset)
        return self._read(offset, length)

    def read_upto(self, offset: int, length: int):
        """Up to ``length`` bytes from ``offset`` (fewer at the end of the file)."""
        if offset < 0 or offset > self.size:
            raise ScanError(f"offset {offset} outside the file ({self.size} bytes)",
                            url=self.url, offset=offset)
        return self._read(offset, min(length, self.size - offset))

    def close(self):
        pass

    def __str__(self):
        return self.url

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalReader(Reader):
    def __init__(self, path: str, url: str | None = None):
        self.path = path
        self.url = url or path
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            self.size = st.st_size
            self.record = {"size": st.st_size, "mtime": st.st_mtime_ns / 1e9}
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None

    def _read(self, offset, length):
        # a copy made under the SIGBUS guard: a file truncated during the scan is a ScanError
        from chunkview import _decode

        if self._mm is None:
            return b""
        try:
            return _decode.guarded_copy(self._mm, offset, length)
        except SourceChangedError as e:
            raise ScanError(f"the file changed while it was scanned: {e}", url=self.url,
                            offset=offset) from None

    def close(self):
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a caller still holds a view; the GC closes it later
                pass
            self._mm = None


class BytesReader(Reader):
    def __init__(self, data, url: str = "<memory>"):
        self._view = memoryview(data).cast("B")
        self.size = len(self._view)
        self.url = url

    def _read(self, offset, length):
        return self._view[offset:offset + length]


class BlockReader(Reader):
    """Reads in aligned blocks of ``block_size`` kept in a small cache; subclasses fetch one
    byte range in one request (``_get``)."""

    def __init__(self, url: str, size: int, *, block_size: int = 1 << 20, max_blocks: int = 64):
        self.url = url
        self.size = int(size)
        self.block_size = int(block_size)
        self.max_blocks = max_blocks
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self.requests = 0

    def _get(self, start: int, end: int) -> bytes:
        raise NotImplementedError

    def __getstate__(self):  # the cache stays behind (a helper process scans)
        state = dict(self.__dict__)
        state["_blocks"] = OrderedDict()
        return state

    def _fetch(self, start: int, end: int) -> bytes:
        """Exactly bytes [start, end) in one request."""
        try:
            data = self._get(start, end)
        except Exception as e:
            why = str(e) or ("no answer in time" if isinstance(e, TimeoutError) else "")
            raise ScanError(f"cannot read bytes {start}-{end}: {type(e).__name__}: {why}",
                            url=self.url, offset=start) from e
        self.requests += 1
        if len(data) != end - start:
            raise ScanError(f"short read of bytes {start}-{end} ({len(data)} bytes)",
                            url=self.url, offset=start)
        return data

    def _block(self, i):
        b = self._blocks.get(i)
        if b is None:
            start = i * self.block_size
            b = self._fetch(start, min(start + self.block_size, self.size))
            self._blocks[i] = b
            if len(self._blocks) > self.max_blocks:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(i)
        return b

    def _read(self, offset, length):
        if length == 0:
            return b""
        bs = self.block_size
        first, last = offset // bs, (offset + length - 1) // bs
        if first == last:
            b = self._block(first)
            o = offset - first * bs
            return memoryview(b)[o:o + length]
        if last - first > 4:  # a large read (a big chunk index): fetch it in one request
            return memoryview(self._fetch(offset, offset + length))
        parts = [self._block(i) for i in range(first, last + 1)]
        data = b"".join(parts)
        o = offset - first * bs
        return memoryview(data)[o:o + length]


class FsspecReader(BlockReader):
    """Block-cached reads through an fsspec filesystem (``cat_file`` with a byte range)."""

    def __init__(self, fs, path: str, url: str | None = None, *, block_size: int = 1 << 20,
                 max_blocks: int = 64, size: int | None = None):
        self.fs, self.path = fs, path
        if size is None:
            self.record = describe(fs.info(path))
            size = self.record.get("size")
            if size is None:
                size = fs.size(path)
        super().__init__(url or path, size, block_size=block_size, max_blocks=max_blocks)

    def _get(self, start: int, end: int) -> bytes:
        # over HTTP, the answer's Content-Range is checked too (chunkview.io.remote.http_range)
        if is_http(self.fs) and start < end:
            return fsspec.asyn.sync(self.fs.loop, http_range, self.fs, self.path, start, end,
                                    timeout=SCAN_READ_TIMEOUT)
        return self.fs.cat_file(self.path, start=start, end=end)


class ObspecReader(BlockReader):
    """Block-cached reads through an obspec store (``head`` and ``get_range``): the obstore
    stores of a VirtualiZarr ``ObjectStoreRegistry``.  ``url`` is what the references name."""

    def __init__(self, store, path: str, url: str, *, block_size: int = 1 << 20,
                 max_blocks: int = 64):
        self.store, self.path = store, path
        try:
            head = store.head(path)
        except Exception as e:
            raise ScanError(f"cannot open: {_first_line(e)}", url=url) from e
        # the size and ETag (what a read through fsspec sees again); its modification time is
        # left out, as obstore's form of it is not fsspec's
        self.record = describe({"size": head.get("size"), "e_tag": head.get("e_tag")})
        if self.record.get("size") is None:
            raise ScanError("the store does not give the object's size", url=url)
        super().__init__(url, self.record["size"], block_size=block_size,
                         max_blocks=max_blocks)

    def _get(self, start: int, end: int) -> bytes:
        if start >= end:
            return b""
        try:
            return bytes(self.store.get_range(self.path, start=start, end=end))
        except Exception as e:  # obstore's errors carry a page of debug output
            raise OSError(_first_line(e)) from None


def _first_line(e: BaseException) -> str:
    return reason(e).split("\n", 1)[0].strip()


class ReaderFile:
    """A read-only, seekable file object over a :class:`Reader` (for h5py's ``fileobj``
    driver), so h5py's reads share the reader's block cache."""

    def __init__(self, reader: Reader, inspect=None):
        self.reader = reader
        self.pos = 0
        # ``inspect(offset, data)`` sees every read before h5py does and may raise to refuse
        # it; h5py turns the exception into a failed read, so the first one is kept here
        self.inspect = inspect
        self.error = None

    def seek(self, pos, whence=0):
        if whence == 0:
            self.pos = pos
        elif whence == 1:
            self.pos += pos
        else:
            self.pos = self.reader.size + pos
        return self.pos

    def tell(self):
        return self.pos

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.reader.size - self.pos
        data = bytes(self.reader.read_upto(self.pos, n))
        if self.inspect is not None:
            try:
                self.inspect(self.pos, data)
            except Exception as e:
                self.error = self.error or e
                raise
        self.pos += len(data)
        return data

    def readinto(self, b):
        data = self.read(len(b))
        memoryview(b).cast("B")[: len(data)] = data
        return len(data)

    def readable(self):
        return True

    def seekable(self):
        return True

    def writable(self):
        return False

    def close(self):
        pass

    @property
    def closed(self):
        return False


def open_reader(source, storage_options: dict | None = None, **kw) -> Reader:
    """A reader for a local path, ``file://`` URL or any fsspec URL (a :class:`Reader` is
    returned as it is)."""
    import fsspec

    if isinstance(source, Reader):
        return source
    source = os.fspath(source)
    protocol, _ = split_protocol(source)
    if protocol in LOCAL_PROTOCOLS and not storage_options:
        lp = local_path(source)
        try:
            return LocalReader(lp, url=file_url(lp))
        except OSError as e:
            raise ScanError(f"cannot open: {reason(e)}", url=source) from e
    try:
        fs, path = url_to_fs(source, options=storage_options)
        if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
            url = file_url(path)
        else:  # the URL as the user wrote it
            url = source if "://" in source else fs.unstrip_protocol(path)
        return FsspecReader(fs, path, url=url, **kw)
    except ScanError:
        raise
    except Exception as e:
        raise ScanError(f"cannot open: {reason(e)}", url=source) from e
