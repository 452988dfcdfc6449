"""What differs between operating systems, in one place.

- ``url_to_path`` / ``path_to_url``: local paths from ``file://`` URLs and back, as fsspec's
  local filesystem reads them (no percent-encoding: ``file:///tmp/a b.h5`` is the file
  ``/tmp/a b.h5``, so a reference set means the same file to chunkview and to fsspec's
  ``ReferenceFileSystem``).  They are pure string functions: ``windows=None`` follows this
  machine, ``True`` / ``False`` the Windows / POSIX convention, so both are tested anywhere.
- ``loaded_library``: the file a C symbol of an extension module was loaded from (which
  libdeflate a wheel really uses).
- ``load_libdeflate``: the system's libdeflate shared library, for builds made without its
  header (``pip install .`` on a machine with ``libdeflate0`` but not ``libdeflate-dev``), and
  ``library_version``: the version of a shared library file, from the package that installed it.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
import sys

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

        addr = ctypes.cast(getattr(ctypes.CDLL(module_file), symbol), ctypes.c_void_p).value
    except (OSError, AttributeError, ValueError):
        return None
    return library_of(addr)


def module_file(handle: int) -> str | None:
    """Windows: the file of a loaded DLL, from its module handle (``ctypes.CDLL._handle``)."""
    if not WINDOWS:
        return None
    import ctypes

    buf = ctypes.create_unicode_buffer(32768)
    n = ctypes.windll.kernel32.GetModuleFileNameW(ctypes.c_void_p(handle), buf, len(buf))
    return os.path.realpath(buf.value) if n else None


def library_of(addr: int | None) -> str | None:
    """The file of the shared library holding the code at ``addr`` (dladdr), or None."""
    if WINDOWS or not addr:
        return None
    try:
        import ctypes

        class _DlInfo(ctypes.Structure):
            _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                        ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

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
        if dladdr(addr, ctypes.byref(info)) and info.dli_fname:
            return os.path.realpath(os.fsdecode(info.dli_fname))
    except (OSError, AttributeError, ValueError):
        pass
    return None


# ------------------------------------------------------------ libdeflate at run time

LIBDEFLATE_ENV = "CHUNKVIEW_LIBDEFLATE_LIBRARY"
# libdeflate's decompression entry points, in the order of cv_libdeflate_api (csrc/cv_decode.h)
LIBDEFLATE_SYMBOLS = ("libdeflate_alloc_decompressor", "libdeflate_free_decompressor",
                      "libdeflate_zlib_decompress", "libdeflate_deflate_decompress",
                      "libdeflate_gzip_decompress")


def libdeflate_candidates(platform: str | None = None, prefix: str | None = None) -> list[str]:
    """Where libdeflate's shared library is looked for, in order: this Python's prefix (conda,
    a venv carrying it), then the names the system's loader resolves (Debian and Ubuntu's
    ``libdeflate0``, Fedora's ``libdeflate``, Homebrew, vcpkg on PATH).  The ABI has kept the
    soname ``libdeflate.so.0`` since 1.0."""
    platform = platform or sys.platform
    prefix = prefix if prefix is not None else sys.prefix
    if platform == "win32":
        b = os.path.join(prefix, "Library", "bin")
        return [os.path.join(b, "deflate.dll"), os.path.join(b, "libdeflate.dll"),
                "deflate.dll", "libdeflate.dll"]
    if platform == "darwin":
        return [os.path.join(prefix, "lib", "libdeflate.0.dylib"),
                "/opt/homebrew/lib/libdeflate.0.dylib", "/usr/local/lib/libdeflate.0.dylib",
                "libdeflate.0.dylib", "libdeflate.dylib"]
    return [os.path.join(prefix, "lib", "libdeflate.so.0"), "libdeflate.so.0", "libdeflate.so"]


def load_libdeflate() -> tuple[object, list[int], str] | str:
    """libdeflate's shared library and the addresses of ``LIBDEFLATE_SYMBOLS``:
    ``(handle, addresses, file)``, the handle to be kept for as long as the addresses are used.
    Or a sentence saying why not (nothing found, or ``CHUNKVIEW_LIBDEFLATE_LIBRARY=none``).

    ``CHUNKVIEW_LIBDEFLATE_LIBRARY`` names the library to load (a path or a name the loader
    resolves) instead of the usual places, or ``none`` to use zlib; a named library that cannot
    be loaded raises OSError."""
    import ctypes

    want = os.environ.get(LIBDEFLATE_ENV, "").strip()
    if want.lower() in ("none", "0", "zlib", "off"):
        return f"{LIBDEFLATE_ENV}={want}"
    names = [want] if want else libdeflate_candidates()
    tried = []
    for name in names:
        if os.path.isabs(name) and not os.path.exists(name) and not want:
            continue
        try:
            lib = ctypes.CDLL(name)
            addrs = [ctypes.cast(getattr(lib, s), ctypes.c_void_p).value
                     for s in LIBDEFLATE_SYMBOLS]
        except (OSError, AttributeError) as e:
            tried.append(f"{name} ({str(e).splitlines()[0][:120]})")
            continue
        if all(addrs):
            return lib, addrs, (module_file(lib._handle) if WINDOWS else library_of(addrs[0]))
        tried.append(f"{name} (entry points missing)")
    if want:
        raise OSError(f"{LIBDEFLATE_ENV}={want} could not be loaded: {'; '.join(tried)}")
    return ("no libdeflate shared library found (Debian/Ubuntu: apt install libdeflate0; "
            "Fedora: dnf install libdeflate; macOS: brew install libdeflate; conda: "
            f"conda install libdeflate; or set {LIBDEFLATE_ENV})")


def _strip_debian(v: str) -> str:
    """An upstream version from a Debian one: ``1:1.14-1`` -> ``1.14``."""
    v = v.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def _dpkg_version(paths: list[str], root: str = "/var/lib/dpkg") -> str | None:
    """The version of the Debian package whose file list holds one of ``paths``."""
    owner = None
    for lst in glob.glob(os.path.join(root, "info", "*deflate*.list")):
        try:
            with open(lst, encoding="utf-8", errors="replace") as f:
                files = {line.rstrip("\n") for line in f}
        except OSError:
            continue
        if files.intersection(paths):
            owner = os.path.basename(lst)[: -len(".list")].split(":", 1)[0]
            break
    if owner is None:
        return None
    try:
        with open(os.path.join(root, "status"), encoding="utf-8", errors="replace") as f:
            stanzas = f.read().split("\n\n")
    except OSError:
        return None
    for st in stanzas:
        fields = dict(line.split(": ", 1) for line in st.splitlines() if ": " in line
                      and not line.startswith(" "))
        if fields.get("Package") == owner and "Version" in fields and \
                "installed" in fields.get("Status", ""):
            return _strip_debian(fields["Version"])
    return None


@functools.lru_cache(maxsize=16)
def library_version(path: str, name: str = "libdeflate", dpkg_root: str = "/var/lib/dpkg"
                    ) -> str | None:
    """The version of the shared library ``path`` of the package ``name``, from what installed
    it: a version in the file name (``libdeflate.so.1.22``), Homebrew's Cellar folder, conda's
    ``conda-meta`` record, or Debian's package database.  None when none of them says."""
    real = os.path.realpath(path)
    m = re.search(r"\.so\.(\d+\.\d+(?:\.\d+)?)$", real) or \
        re.search(r"\.(\d+\.\d+(?:\.\d+)?)\.dylib$", real)
    if m:
        return m.group(1)
    m = re.search(r"/Cellar/" + re.escape(name) + r"/([^/]+)/", real)
    if m:
        return m.group(1).split("_", 1)[0]
    d = os.path.dirname(real)
    for prefix in (os.path.dirname(d), os.path.dirname(os.path.dirname(d))):
        for rec in sorted(glob.glob(os.path.join(prefix, "conda-meta", name + "-*.json"))):
            try:
                with open(rec, encoding="utf-8") as f:
                    meta = json.load(f)
            except (OSError, ValueError):
                continue
            if meta.get("name") == name and meta.get("version"):
                return str(meta["version"])
    # usrmerge: the package lists /usr/lib/... or /lib/..., the loader may say either
    paths = {path, real}
    for p in list(paths):
        if p.startswith("/usr/lib/"):
            paths.add(p[len("/usr"):])
        elif p.startswith("/lib/"):
            paths.add("/usr" + p)
    return _dpkg_version(sorted(paths), dpkg_root)


__all__ = ["LIBDEFLATE_ENV", "LIBDEFLATE_SYMBOLS", "WINDOWS", "libdeflate_candidates",
           "library_of", "library_version", "load_libdeflate", "loaded_library", "module_file",
           "path_to_url", "url_to_path"]
