"""Loading the system's libdeflate at import, for builds made without its header.

Such a build links zlib and can take libdeflate's five decompression entry points at run time
(``cv_libdeflate_api``, csrc/cv_decode.h).  :func:`install` runs once, while ``_decode`` is
imported, before any inflater exists: it finds the library (:func:`chunkview._platform.
load_libdeflate`), hands its entry points to ``_decode`` and keeps them only if they inflate a
zlib, a raw deflate and a gzip stream exactly as zlib does.  What happened is recorded in
``_decode._runtime`` (``file`` and ``handle``, or ``reason``) for ``build_info``.
"""

from __future__ import annotations

import warnings
import zlib

from chunkview import _platform
from chunkview.errors import DecodeError

_SAMPLE = bytes(range(256)) * 40 + b"chunkview" * 300


def install(decode) -> None:
    """Load libdeflate into the ``_decode`` module ``decode`` when its build can take it."""
    if not decode._inflate_loadable():
        return
    runtime = decode._runtime
    try:
        found = _platform.load_libdeflate()
    except OSError as e:  # the library named by the environment
        runtime["reason"] = str(e)
        warnings.warn(f"chunkview: {e}; inflating with zlib", RuntimeWarning, stacklevel=3)
        return
    if isinstance(found, str):
        runtime["reason"] = found
        return
    lib, addrs, name = found
    decode._use_libdeflate(addrs)
    try:
        for fmt, wbits in (("zlib", 15), ("deflate", -15), ("gzip", 31)):
            c = zlib.compressobj(6, zlib.DEFLATED, wbits)
            if decode.inflate(c.compress(_SAMPLE) + c.flush(), len(_SAMPLE), fmt) != _SAMPLE:
                raise DecodeError("wrong bytes")
    except (DecodeError, MemoryError) as e:
        decode._drop_libdeflate()
        runtime["reason"] = f"{name} failed a self-test ({e}): zlib is used"
        return
    runtime.update(file=name, handle=lib)


__all__ = ["install"]
