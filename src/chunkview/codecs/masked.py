"""``hdf5_masked``: an HDF5 filter pipeline whose chunks may skip some of its filters.

HDF5 records per chunk which optional filters it skipped (the chunk's *filter mask*: a
compressor that could not shrink the chunk, or partial edge chunks stored unfiltered).  zarr
has no per-chunk codecs, and a codec sees only the chunk's bytes, not its key.  The scanner
therefore describes the masked chunks by what a codec can see, their stored length:

* ``lengths``: ``{"<stored length>": mask}`` for lengths that only chunks with that mask have
  (a chunk of any other length has mask 0);
* ``digests``: ``{"<stored length>": {"<blake2b-128 hex>": mask}}`` for lengths that chunks
  with different masks share (rare: a compressed chunk exactly as long as a raw one): those
  chunks are told apart by a digest of their bytes, read once at scan time.

``codecs`` is the full pipeline in writing order (zarr v2's ``filters + [compressor]``); bit
``i`` of a mask skips ``codecs[i]``; ``nbytes``, the decoded chunk's size, bounds every
decoding step (a decompression bomb stops there).  chunkview's own readers use the exact per-key masks in
``<array>/.cvmask`` and unwrap this codec (:func:`chunkview.codecs.pipeline.pipeline_from_zarray`);
this codec is what lets other readers (zarr-python over fsspec's ``ReferenceFileSystem``) read
the same chunks right, with chunkview installed.
"""

from __future__ import annotations

import hashlib

from numcodecs.abc import Codec

from chunkview.codecs.common import _as_bytes
from chunkview.codecs.pipeline import MASKED_ID, Pipeline
from chunkview.errors import DecodeError, reason

CODEC_ID = MASKED_ID


def digest(data) -> str:
    """The digest naming a chunk by its stored bytes in ``digests``."""
    return hashlib.blake2b(memoryview(data), digest_size=16).hexdigest()


class HDF5Masked(Codec):
    """The codecs ``codecs`` (writing order), each chunk skipping those its mask names; the
    mask is found from the chunk's stored length (``lengths``) or, where lengths are shared
    by chunks of different masks, from a digest of its bytes (``digests``).  ``nbytes`` (the
    decoded chunk's size) bounds every step, as chunkview's own slow path does."""

    codec_id = CODEC_ID

    def __init__(self, codecs=(), lengths=None, digests=None, nbytes=None):
        self.codecs = [dict(c) for c in codecs]
        if any(c.get("id") == CODEC_ID for c in self.codecs):
            raise ValueError("hdf5_masked codecs cannot nest")
        self.lengths = {str(int(k)): int(v) for k, v in (lengths or {}).items()}
        self.digests = {str(int(k)): {str(h): int(m) for h, m in v.items()}
                        for k, v in (digests or {}).items()}
        self.nbytes = None if nbytes is None else int(nbytes)
        self._pipeline = None

    def mask_of(self, data) -> int:
        """The filter mask of the chunk whose stored bytes are ``data``."""
        n = str(memoryview(data).nbytes)
        mask = self.lengths.get(n)
        if mask is not None:
            return mask
        table = self.digests.get(n)
        if table:
            return table.get(digest(data), 0)
        return 0

    def encode(self, buf):
        import numcodecs

        out = buf
        for cfg in self.codecs:
            out = numcodecs.get_codec(dict(cfg)).encode(out)
        return out

    def decode(self, buf, out=None):
        if self._pipeline is None:  # the same bounded per-chunk decode chunkview's reads use
            self._pipeline = Pipeline(tuple(self.codecs), None)
        data = _as_bytes(buf)
        try:
            res = self._pipeline.decode_chunk(data, self.mask_of(data), self.nbytes)
        except DecodeError:
            raise
        except Exception as e:  # noqa: BLE001 - a codec's own error, said as ours
            raise DecodeError(f"{CODEC_ID}: {reason(e)}") from e
        if out is not None:
            src = _as_bytes(res)
            _as_bytes(out)[:len(src)] = src
            return out
        return res

    def get_config(self):
        return wrapper(self.codecs, self.lengths, self.digests, self.nbytes)

    def __repr__(self):
        return (f"HDF5Masked(codecs={[c.get('id') for c in self.codecs]}, "
                f"{len(self.lengths)} lengths, {sum(map(len, self.digests.values()))} digests)")


def wrapper(codecs, lengths=None, digests=None, nbytes=None) -> dict:
    """The ``hdf5_masked`` config (empty tables left out)."""
    cfg = {"id": CODEC_ID, "codecs": [dict(c) for c in codecs]}
    if lengths:
        cfg["lengths"] = dict(lengths)
    digests = {n: t for n, t in (digests or {}).items() if t}
    if digests:
        cfg["digests"] = digests
    if nbytes is not None:
        cfg["nbytes"] = int(nbytes)
    return cfg


def chunk_nbytes(meta: dict) -> int | None:
    """The decoded size of one chunk of the array with ``.zarray`` ``meta`` (None if its
    dtype cannot be read)."""
    from chunkview.read.meta import dtype_of

    try:
        itemsize = dtype_of(meta["dtype"]).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    n = itemsize
    for c in meta.get("chunks") or []:
        n *= int(c)
    return n


def table(masks: dict, sizes: dict) -> tuple[dict, dict, list]:
    """``(lengths, digests-to-fill, keys to digest)`` for chunks with stored ``sizes`` (key ->
    length) and filter ``masks`` (key -> mask, missing = 0): lengths every chunk of which has
    one nonzero mask go to ``lengths``; lengths shared by different masks need the masked
    chunks' digests (the keys returned)."""
    by_len: dict[int, set] = {}
    for k, n in sizes.items():
        by_len.setdefault(int(n), set()).add(int(masks.get(k, 0)))
    lengths, shared = {}, set()
    for n, ms in by_len.items():
        if len(ms) == 1:
            m = next(iter(ms))
            if m:
                lengths[str(n)] = m
        else:
            shared.add(n)
    keys = [k for k, n in sizes.items() if int(n) in shared]
    return lengths, {str(n): {} for n in shared}, keys


__all__ = ["HDF5Masked", "CODEC_ID", "digest", "table", "wrapper", "chunk_nbytes"]
