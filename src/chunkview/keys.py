"""Every key name chunkview reserves in a reference set, spelled once.

chunkview stores what zarr v2 metadata cannot say under keys of its own, all starting with
``.cv`` (:data:`RESERVED_PREFIX`), beside zarr's ``.zarray``/``.zattrs``/``.zgroup``:

* ``<array>/.cvmask``: per-chunk HDF5 filter masks (which optional filters a chunk skipped);
* ``<array>/.cverror``: why the scanner could not present a dataset (opening it raises);
* ``.cvsources``: each scanned file's size and ETag or mtime, for ``check_source=``;
* ``.cvnetcdf``: the netCDF types of numeric attributes, which JSON loses.

and reads xarray's dimension names from ``_ARRAY_DIMENSIONS`` in ``.zattrs``.
"""

RESERVED_PREFIX = ".cv"
MASK_KEY = ".cvmask"
ERROR_KEY = ".cverror"
SOURCES_KEY = ".cvsources"
NETCDF_KEY = ".cvnetcdf"
DIMENSION_KEY = "_ARRAY_DIMENSIONS"
# zarr v2 consolidated metadata (zarr's own name, written and read by chunkview in several places)
ZMETADATA_KEY = ".zmetadata"
# a Zarr v3 node's metadata (chunkview.refs.zarr3)
ZARR_JSON = "zarr.json"

# a file name ending that marks chunkview's native (C index) reference format
NATIVE_SUFFIX = ".cvref"

# how a ChunkviewFileSystem serialised with in-memory references finds them again
LIVE_REFERENCES_TOKEN = "__chunkview_references__"


def is_reserved(name: str) -> bool:
    """Whether the last part of a key is one of chunkview's own (``.cv...``)."""
    return name.startswith(RESERVED_PREFIX)


__all__ = ["RESERVED_PREFIX", "MASK_KEY", "ERROR_KEY", "SOURCES_KEY", "NETCDF_KEY",
           "DIMENSION_KEY", "ZMETADATA_KEY", "ZARR_JSON", "NATIVE_SUFFIX", "LIVE_REFERENCES_TOKEN", "is_reserved"]
