"""numcodecs codecs that decode HDF5 filters numcodecs does not decode in HDF5's format.

One module per codec; this one gathers them (and is what ``numcodecs.codecs`` entry points
and the scanner's filter mapping name).  Each codec decodes the bytes one HDF5 filter wrote for one chunk (``codecs_for`` in
:mod:`chunkview.scan.hdf5.filters` builds their configs from a dataset's filter pipeline):

============================  ===================================================================
``hdf5_lzf``        (32000)   h5py's LZF filter (raw LZF, no header), via imagecodecs
``hdf5_szip``           (4)   HDF5's szip filter (4-byte LE size + szip stream), via imagecodecs
``hdf5_blosc``      (32001)   the hdf5-blosc filter (one blosc1 frame), via numcodecs' blosc
``hdf5_zstd``       (32015)   the zstd filter (one zstd frame), via numcodecs' zstd
``hdf5_lz4``        (32004)   the HDF5 lz4 filter's block container, blocks via numcodecs' lz4
``hdf5_bitshuffle`` (32008)   bitshuffle (plain, +lz4, +zstd); transpose via imagecodecs/numpy
``hdf5_bzip2``        (307)   the bzip2 filter (one bzip2 stream), via the standard library
``hdf5_scaleoffset``    (6)   H5Zscaleoffset.c (integer and float D-scale), numpy
``hdf5_nbit``           (5)   H5Znbit.c (integer, float, array and compound types), numpy
``hdf5_masked``         (-)   any of these pipelines with per-chunk filter masks (``.masked``)
============================  ===================================================================

Decoding returns the chunk's bytes in the dataset's dtype and byte order.  Corrupt or
truncated input raises :class:`chunkview.errors.DecodeError`: sizes read from headers are
checked against the input before anything is allocated or handed to a C library.

Two formats depend on the writer's machine: scaleoffset stores values (and full-precision
chunks) in the writer's native byte order, which is assumed little-endian (every platform HDF5
builds on today).  nbit with a reduced-precision type decodes to the *values* HDF5 converts
to when reading (integers sign-extended and shifted down by their bit offset; reduced floats
converted to IEEE with their HDF5 field layout, given as ``float_fields``), which is what
h5py returns for the dataset's numpy dtype.
"""

from chunkview.codecs.bitshuffle import HDF5Bitshuffle
from chunkview.codecs.blosc import HDF5Blosc
from chunkview.codecs.bzip2 import HDF5BZip2
from chunkview.codecs.common import dtype_from_json, dtype_to_json
from chunkview.codecs.fletcher32 import HDF5Fletcher32
from chunkview.codecs.lz4 import HDF5LZ4
from chunkview.codecs.lzf import HDF5LZF
from chunkview.codecs.masked import HDF5Masked
from chunkview.codecs.nbit import HDF5NBit
from chunkview.codecs.scaleoffset import HDF5ScaleOffset
from chunkview.codecs.shuffle import HDF5Shuffle
from chunkview.codecs.strpad import HDF5StrPad
from chunkview.codecs.szip import HDF5SZIP
from chunkview.codecs.zstd import HDF5Zstd

__all__ = [
    "HDF5LZF",
    "HDF5SZIP",
    "HDF5Blosc",
    "HDF5Zstd",
    "HDF5LZ4",
    "HDF5Bitshuffle",
    "HDF5BZip2",
    "HDF5ScaleOffset",
    "HDF5NBit",
    "HDF5Shuffle",
    "HDF5Fletcher32",
    "HDF5StrPad",
    "HDF5Masked",
    "dtype_to_json",
    "dtype_from_json",
]
