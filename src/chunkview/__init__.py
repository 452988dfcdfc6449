"""chunkview: read HDF5, NetCDF4 and NetCDF3 archives in place as Zarr, with a native core.

    refs = chunkview.scan("data.h5")            # HDF5 / NetCDF4 / NetCDF3 -> references
    refs = chunkview.load("refs.json")          # kerchunk JSON v0/v1, parquet, native
    fs = fsspec.filesystem("chunkview", fo=refs) # fsspec filesystem (protocol "chunkview")
    g = zarr.open_group(fs.get_mapper(""), mode="r", zarr_format=2)
"""

from chunkview._index import ChunkIndex
from chunkview.errors import (
    ChecksumError,
    ChunkviewError,
    CombineError,
    DecodeError,
    FetchError,
    ForbiddenSourceError,
    ReferenceFormatError,
    ReferenceNotFound,
    ScanError,
    SourceChangedError,
    UnsupportedError,
)
from chunkview.refs.memory import References

__version__ = "0.1.0.dev0"


def build_info() -> dict:
    """What this build can do: ``inflate`` ("libdeflate" or "zlib"), the library that inflates
    every chunk, and ``inflate_version``; ``inflate_library``, the file that library was loaded
    from (None where the platform cannot say: Windows, for a linked library);
    ``inflate_linkage``, "build" (linked: a wheel's bundled libdeflate, or a build that found
    libdeflate's header) or "runtime" (built without the header, the system's libdeflate shared
    library loaded at import); ``inflate_note``, why a zlib build is not using libdeflate (None
    otherwise); ``simd_built`` and ``simd_available``, the unshuffle kernels compiled in and
    those this CPU runs (chosen at run time)."""
    from chunkview import _decode, _platform

    info = _decode.build_info()
    if info["inflate_linkage"] == "runtime":
        lib = info["inflate_library"]
        info["inflate_version"] = (_platform.library_version(lib) if lib else None) or "unknown"
    else:
        symbol = "libdeflate_zlib_decompress" if info["inflate"] == "libdeflate" else "inflate"
        info["inflate_library"] = _platform.loaded_library(_decode.__file__, symbol)
    return info


def __getattr__(name):
    # the filesystem imports fsspec's async machinery: load it on first use
    if name == "ChunkviewFileSystem":
        from chunkview.filesystem import ChunkviewFileSystem

        return ChunkviewFileSystem
    if name in ("ReferenceStore", "open_zarr"):
        from chunkview import zarr_store

        return getattr(zarr_store, name)
    if name == "load":  # fsspec is imported with it
        from chunkview.refs.load import load

        return load
    if name == "scan":
        import importlib

        return importlib.import_module("chunkview.scan")
    if name in ("combine", "merge"):
        from chunkview import _combine

        return getattr(_combine, name)
    if name == "from_virtualizarr":
        from chunkview.virtualizarr import from_virtualizarr

        return from_virtualizarr
    if name in ("to_icechunk", "from_icechunk"):
        from chunkview import icechunk

        return getattr(icechunk, name)
    if name in ("open", "Array", "Group"):
        from chunkview import array

        return getattr(array, name)
    raise AttributeError(f"module 'chunkview' has no attribute {name!r}")


__all__ = [
    "build_info",
    "open",
    "scan",
    "Array",
    "Group",
    "ReferenceStore",
    "open_zarr",
    "ChunkIndex",
    "ChunkviewFileSystem",
    "References",
    "load",
    "combine",
    "merge",
    "from_virtualizarr",
    "to_icechunk",
    "from_icechunk",
    "ChunkviewError",
    "CombineError",
    "ChecksumError",
    "DecodeError",
    "FetchError",
    "ForbiddenSourceError",
    "ReferenceFormatError",
    "ReferenceNotFound",
    "ScanError",
    "SourceChangedError",
    "UnsupportedError",
]
