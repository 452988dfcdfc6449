"""What differs between operating systems, in one place.

- ``url_to_path`` / ``path_to_url``: local paths from ``file://`` URLs and back, as fsspec's
  local filesystem reads them (no percent-encoding: ``file:///tmp/a b.h5`` is the file
  ``/tmp/a b.h5``, so a reference set means the same file to chunkview and to fsspec's
  ``ReferenceFileSystem``).  They are pure string functions: ``windows=None`` follows this
  machine, ``True`` / ``False`` the Windows / POSIX convention, so both are tested anywhere.
- ``loaded_library``: the file a C symbol of an extension module was loaded from (which
  libdeflate a wheel really uses).
"""

from __future__ import annotations

import os

WINDOWS = os.name == "nt"
_PREFIXES = ("file://", "local://", "file:", "local:")


def _windows(windows: bool | None) -> bool:
    return WINDOWS if windows is None else bool(windows)


def _drive(p: str) -> bool:
    """``p`` starts with a drive letter and a colon (``C:``)."""
    return len(p) >= 2 and p[1] == ":" and p[0].isascii() and p[0].isalpha()


def url_to_path(url: str, windows: bool | None = None) -> str:
    """The local path of a ``file://`` (or ``local://``) URL; any other string is returned as it
    is (a plain path, or a URL of another protocol).

    POSIX: ``file:///data/x.h5`` -> ``/data/x.h5``.  Windows: ``file:///C:/data/x.h5`` (RFC 8089,
    as ``Path.as_uri`` writes it), ``file://C:/data/x.h5`` (as fsspec writes it) and
    ``file://C:\\data\\x.h5`` -> ``C:/data/x.h5``; ``file:////server/share/x.h5`` and
    ``file://\\\\server\\share\\x.h5`` -> ``//server/share/x.h5`` (UNC).  As in fsspec, what
    follows ``file://`` is a path: ``file://data/x.h5`` is the relative path ``data/x.h5``, and
    ``%xx`` escapes are not decoded.
    """
    for prefix in _PREFIXES:
        if url.startswith(prefix):
            path = url[len(prefix):]
            break
    else:
        return url
    if not _windows(windows):
        return path
    path = path.replace("\\", "/")
    if path[:1] == "/" and _drive(path[1:]):
        path = path[1:]  # /C:/data -> C:/data
    if _drive(path):
        return path[0] + ":/" if len(path) <= 3 else path
    if path.startswith("//"):
        return "//" + path.lstrip("/")  # UNC: //server/share/...
    return path


def path_to_url(path: str, windows: bool | None = None) -> str:
    """The ``file://`` URL of an absolute local path, readable by ``url_to_path`` and by fsspec
    on the same system: ``/data/a b.h5`` -> ``file:///data/a b.h5``; Windows ``C:\\data\\x.h5``
    -> ``file:///C:/data/x.h5``, ``\\\\server\\share\\x.h5`` -> ``file:////server/share/x.h5``."""
    if not _windows(windows):
        return "file://" + path
    p = path.replace("\\", "/")
    if _drive(p):
        return "file:///" + p
    return "file://" + p


def loaded_library(module_file: str, symbol: str) -> str | None:
    """The file the C function ``symbol``, which the extension module ``module_file`` links
    to, was loaded from; None where it cannot be told (Windows, or a symbol not found)."""
    if WINDOWS:
        return None
    try:
        import ctypes

        class _DlInfo(ctypes.Structure):
            _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                        ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

        addr = ctypes.cast(getattr(ctypes.CDLL(module_file), symbol), ctypes.c_void_p).value
        for lib in (None, "libdl.so.2"):  # glibc before 2.34 keeps dladdr in libdl
            try:
                dladdr = ctypes.CDLL(lib).dladdr
                break
            except (OSError, AttributeError):
                continue
        else:
            return None
        dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        info = _DlInfo()
        if addr and dladdr(addr, ctypes.byref(info)) and info.dli_fname:
            return os.path.realpath(os.fsdecode(info.dli_fname))
    except (OSError, AttributeError, ValueError):
        pass
    return None


__all__ = ["WINDOWS", "loaded_library", "path_to_url", "url_to_path"]
