"""Scanning one file in this process: open it, recognise its format, run that format's scanner
(:class:`chunkview.scan.output.Scanner`) and turn the output into references."""

from __future__ import annotations

from chunkview.errors import ScanError
from chunkview.io.blocks import open_reader
from chunkview.io.resolve import is_remote_url
from chunkview.refs.memory import References
from chunkview.scan import netcdf3
from chunkview.scan.hdf5 import format as h5format
from chunkview.scan.hdf5 import scanner as hdf5
from chunkview.scan.output import to_references


def scanner_for(reader):
    """The scanner module of the file behind ``reader`` (raises ScanError for anything else)."""
    head = bytes(reader.read_upto(0, 8))
    if netcdf3.is_netcdf3(head):
        return netcdf3
    if h5format.find_superblock(reader) is not None:
        return hdf5
    raise ScanError("not an HDF5, NetCDF4 or NetCDF3 file", url=reader.url)


def scan_file(source, *, storage_options=None, inline_threshold: int = 0,
              chunk_bytes: int = 4 << 20, checksums: bool = True) -> References:
    """Scan one file in this process into References (see :func:`chunkview.scan.scan`)."""
    reader = open_reader(source, storage_options)
    try:
        out = scanner_for(reader).scan(reader, inline_threshold=inline_threshold,
                                       chunk_bytes=chunk_bytes, checksums=checksums)
        refs = to_references(out, source=reader.url, record=reader.record)
        # a remote file's references are as untrusted as references loaded from there
        refs.remote_origin = is_remote_url(reader.url)
        return refs
    finally:
        reader.close()


__all__ = ["scan_file", "scanner_for"]
