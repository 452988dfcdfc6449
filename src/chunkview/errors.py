"""chunkview's exceptions: one hierarchy, each also a subclass of the builtin that callers
already catch (``except KeyError`` / ``except ValueError`` keep working)."""

from __future__ import annotations


class ChunkviewError(Exception):
    """Base class of every chunkview error."""


class ReferenceFormatError(ChunkviewError, ValueError):
    """A reference set (JSON, parquet or native) is malformed.

    ``pos`` is the byte position in the source text when known, ``key`` the reference key."""

    def __init__(self, msg, *, pos=None, raw_key=None, key=None, source=None, status=None):
        self.msg = msg
        self.pos = pos
        self.status = status
        if key is None and raw_key is not None:
            key = _decode_raw_key(raw_key)
        self.key = key
        self.source = source
        super().__init__(msg + _where(source, pos is not None and f"byte {pos}",
                                      key is not None and f"key {key!r}"))


def _where(*parts) -> str:
    """`` (a, b, c)`` of the parts that are not None/False, or nothing."""
    parts = [str(p) for p in parts if p is not None and p is not False]
    return (" (" + ", ".join(parts) + ")") if parts else ""


def _decode_raw_key(raw):
    import json

    try:
        return json.loads(raw)
    except Exception:
        return raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw


class ChecksumError(ReferenceFormatError):
    """A checksum (native index file, fletcher32 of a chunk) does not match."""


class ReferenceNotFound(ChunkviewError, KeyError):
    """A key is not in the reference set."""

    def __str__(self):
        return f"no reference for key {self.args[0]!r}" if self.args else "no reference"


def reason(e: BaseException) -> str:
    """``Type: message`` of an exception, never with an empty message (``MemoryError()`` is
    ``MemoryError``; a timeout without one says so)."""
    text = str(e)
    if not text and isinstance(e, TimeoutError):
        text = "no answer in time"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def fetch_detail(start, end, cause) -> str:
    """``(bytes s-e): Cause: message`` for a failed read of a byte range (or whole file)."""
    rng = "whole file" if start is None and end is None else \
        f"bytes {'?' if start is None else start}-{'end' if end is None else end}"
    why = "" if cause is None else f": {reason(cause)}"
    return f"({rng}){why}"


class FetchError(ChunkviewError, OSError):
    """Reading the bytes of a reference failed.  Names the key, URL and byte range."""

    def __init__(self, key, url, start=None, end=None, cause=None):
        self.key, self.url, self.start, self.end = key, url, start, end
        what = f"key {key!r} from {url!r}" if key is not None else repr(url)
        super().__init__(f"cannot read {what} {fetch_detail(start, end, cause)}")

    def __reduce__(self):
        return (type(self), (self.key, self.url, self.start, self.end))


class DecodeError(ChunkviewError, ValueError):
    """A chunk could not be decoded (corrupt, truncated, wrong size)."""


class UnsupportedError(ChunkviewError, NotImplementedError):
    """Valid input that chunkview cannot handle (yet); the message says what."""


class SourceChangedError(ChunkviewError, OSError):
    """A referenced file changed since it was scanned (``check_source=``)."""


class ForbiddenSourceError(ChunkviewError, PermissionError):
    """A reference points at a kind of URL this reader may not read (``allowed_protocols=``;
    references loaded from a remote location may not read local files by default)."""


class CombineError(ChunkviewError, ValueError):
    """Reference sets that cannot be combined into one (chunking or metadata that differ,
    a partial chunk inside the concatenated dimension, overlapping coordinates...)."""


def missing_extra(package: str, extra: str) -> ImportError:
    """The ImportError raised when an optional dependency is absent."""
    return ImportError(
        f"this feature needs the optional dependency {package!r}: "
        f"pip install 'chunkview[{extra}]'"
    )


class ScanError(ChunkviewError, ValueError):
    """A file could not be scanned: not HDF5/netCDF, truncated or corrupt metadata.  Names the
    file and, when known, the object and byte position."""

    def __init__(self, msg, *, url=None, path=None, offset=None):
        self.msg, self.url, self.path, self.offset = msg, url, path, offset
        super().__init__(msg + _where(url, path is not None and f"object {path!r}",
                                      offset is not None and f"byte {offset}"))

    def __reduce__(self):
        return (_rebuild_scan_error, (self.msg, self.url, self.path, self.offset))


def _rebuild_scan_error(msg, url, path, offset):
    return ScanError(msg, url=url, path=path, offset=offset)
