"""chunkview's HDF5 codecs as zarr v3 codecs, so plain zarr-python 3 reads the Zarr v3
reference sets chunkview writes (``chunkview.scan(..., zarr_format=3)``).

Each codec here is a zarr ``BytesBytesCodec`` named ``chunkview.<id>`` whose ``configuration``
is the numcodecs codec's config without its ``id`` (``{"name": "chunkview.hdf5_shuffle",
"configuration": {"elementsize": 4}}``).  zarr finds them through the ``zarr.codecs`` entry
points chunkview installs, without importing chunkview first.  Decoding goes through the same
numcodecs codecs (:mod:`chunkview.codecs.registry`) and the same bounds as every other path
(:mod:`chunkview.codecs.bounded`): no step may produce more than the chunk's size.

``codec_config`` (the numcodecs form, ``{"id": "hdf5_shuffle", ...}``) is what VirtualiZarr's
writers read from a codec to write it as a kerchunk (zarr v2) filter.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from zarr.abc.codec import BytesBytesCodec
from zarr.core.buffer.cpu import as_numpy_array_wrapper

PREFIX = "chunkview."

@dataclass(frozen=True)
class ChunkviewCodec(BytesBytesCodec):
    """One of chunkview's numcodecs codecs as a zarr v3 bytes-to-bytes codec."""

    codec_id = ""  # set by each subclass
    prefix = PREFIX
    is_fixed_size = False
    configuration: dict = field(default_factory=dict)

    def __init__(self, **configuration: Any) -> None:
        configuration.pop("id", None)
        object.__setattr__(self, "configuration", dict(configuration))

    def __hash__(self) -> int:  # the configuration is a dict
        import json

        return hash((self.codec_id, json.dumps(self.configuration, sort_keys=True)))

    @classmethod
    def from_dict(cls, data: dict) -> ChunkviewCodec:
        name = data.get("name") if isinstance(data, dict) else None
        if name != cls.prefix + cls.codec_id:
            raise ValueError(f"expected a codec named {cls.prefix + cls.codec_id!r}, got "
                             f"{name!r}")
        cfg = data.get("configuration") or {}
        if not isinstance(cfg, dict):
            raise TypeError(f"codec {name!r}: configuration must be an object, not {cfg!r}")
        return cls(**cfg)

    def to_dict(self) -> dict:
        return {"name": self.prefix + self.codec_id, "configuration": dict(self.configuration)}

    @property
    def codec_config(self) -> dict:
        """The numcodecs configuration (``{"id": ..., ...}``)."""
        return {"id": self.codec_id, **self.configuration}

    def _codec(self):
        codec = self.__dict__.get("_cv_codec")
        if codec is None:
            import numcodecs

            import chunkview.codecs  # noqa: F401 - registers the numcodecs codecs

            codec = numcodecs.get_codec(self.codec_config)
            object.__setattr__(self, "_cv_codec", codec)
        return codec

    def _decode_sync(self, data, limit: int):
        from chunkview.codecs.bounded import decode_step

        out = decode_step(self.codec_config, self._codec(), data, limit)
        if isinstance(out, np.ndarray):
            return np.ascontiguousarray(out).view("u1").reshape(-1)
        return np.frombuffer(memoryview(out).cast("B"), "u1")

    async def _decode_single(self, chunk_bytes, chunk_spec):
        dtype = chunk_spec.dtype.to_native_dtype()
        limit = int(np.prod(chunk_spec.shape, dtype=np.int64)) * dtype.itemsize + 64
        return await asyncio.to_thread(
            as_numpy_array_wrapper, lambda d: self._decode_sync(d, limit), chunk_bytes,
            chunk_spec.prototype)

    async def _encode_single(self, chunk_bytes, chunk_spec):
        return await asyncio.to_thread(
            as_numpy_array_wrapper, self._codec().encode, chunk_bytes, chunk_spec.prototype)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec) -> int:
        raise NotImplementedError


#: numcodecs id -> class name of each of chunkview's codecs with a zarr v3 form (the
#: ``zarr.codecs`` entry points in pyproject.toml name the same classes)
NAMES = {"hdf5_shuffle": "HDF5Shuffle", "hdf5_fletcher32": "HDF5Fletcher32",
         "hdf5_strpad": "HDF5StrPad", "hdf5_lzf": "HDF5LZF", "hdf5_szip": "HDF5SZIP",
         "hdf5_blosc": "HDF5Blosc", "hdf5_zstd": "HDF5Zstd", "hdf5_lz4": "HDF5LZ4",
         "hdf5_bitshuffle": "HDF5Bitshuffle", "hdf5_bzip2": "HDF5BZip2",
         "hdf5_scaleoffset": "HDF5ScaleOffset", "hdf5_nbit": "HDF5NBit",
         "hdf5_masked": "HDF5Masked"}
CODECS = {cid: type(name, (ChunkviewCodec,), {"codec_id": cid, "__module__": __name__,
                                              "__qualname__": name})
          for cid, name in NAMES.items()}
globals().update({c.__name__: c for c in CODECS.values()})


class NumcodecsShuffle(ChunkviewCodec):
    """``numcodecs.shuffle`` for numcodecs < 0.16, whose own zarr v3 wrapper predates zarr
    3.1's data types and fails on every array (``'Float64' object has no attribute
    'itemsize'``); registered and selected only there (:func:`register`)."""

    codec_id = "shuffle"
    prefix = "numcodecs."

    def evolve_from_array_spec(self, array_spec):
        if self.configuration.get("elementsize"):
            return self
        size = array_spec.dtype.to_native_dtype().itemsize
        return type(self)(**{**self.configuration, "elementsize": size})


def _old_numcodecs() -> bool:
    import numcodecs

    try:
        return tuple(int(x) for x in numcodecs.__version__.split(".")[:2]) < (0, 16)
    except ValueError:
        return False


def register() -> None:
    """Register every codec with zarr (the entry points do the same for a zarr that has not
    imported chunkview); with numcodecs < 0.16, also a ``numcodecs.shuffle`` that works with
    zarr >= 3.1 (:class:`NumcodecsShuffle`), selected in zarr's config."""
    import zarr
    from zarr.registry import fully_qualified_name, register_codec

    for cid, cls in CODECS.items():
        register_codec(PREFIX + cid, cls)
    if _old_numcodecs():
        register_codec("numcodecs.shuffle", NumcodecsShuffle)
        codecs = dict(zarr.config.get("codecs") or {})
        codecs["numcodecs.shuffle"] = fully_qualified_name(NumcodecsShuffle)
        zarr.config.set({"codecs": codecs})


register()

__all__ = ["ChunkviewCodec", "CODECS", "NAMES", "PREFIX", "NumcodecsShuffle", "register",
           *NAMES.values()]
