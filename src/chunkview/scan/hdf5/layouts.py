"""Where a dataset's bytes lie, by layout: virtual datasets, contiguous data (split into virtual
chunks), external files and chunked data (with per-chunk filter masks)."""


from __future__ import annotations

import json
import os
import posixpath

import numpy as np

from chunkview.errors import ChunkviewError, ScanError, UnsupportedError, reason
from chunkview.keys import MASK_KEY
from chunkview.scan.common import contiguous_chunking, contiguous_chunks
from chunkview.scan.hdf5 import format as H
from chunkview.scan.hdf5.chunkindex import chunk_index
from chunkview.scan.hdf5.chunks import Chunks
from chunkview.scan.hdf5.meta import (
    _coord_key,
    _hard_address,
    _json,
    _json_attrs,
    _k,
    _key0,
    _shift_key,
)
from chunkview.scan.output import ChunkSet, ScanOutput


class LayoutsMixin:
    """The layout half of :class:`~.scanner.HDF5Scanner` (which provides ``out``, ``url``,
    ``chunk_bytes``, ``_unsupported`` and the file handles these use)."""

    def _virtual(self, d, path, shape, meta):
        """A virtual dataset whose every source is a whole dataset placed as one block,
        aligned to the sources' common chunk grid: its chunks are the sources' chunks,
        re-keyed.  Anything else raises UnsupportedError saying what does not map."""
        import h5py

        h5s = h5py.h5s
        rank = len(shape)
        vchunks = vfilters = None
        sets, inline = [], {}
        for m in d.virtual_sources():
            src = f"source {m.dset_name!r} in {m.file_name!r}"
            if "%" in m.file_name or "%" in m.dset_name:
                raise UnsupportedError(f"virtual dataset: printf-style {src}")
            vs = m.vspace
            if vs.get_select_type() == h5s.SEL_ALL:
                start, block = (0,) * rank, tuple(shape)
            elif vs.get_select_type() == h5s.SEL_HYPERSLABS and vs.is_regular_hyperslab():
                st, stride, count, blk = vs.get_regular_hyperslab()
                if all(c == 1 for c in count):
                    start, block = tuple(st), tuple(blk)
                elif all(b == 1 for b in blk) and all(x == 1 or c == 1
                                                      for x, c in zip(stride, count)):
                    start, block = tuple(st), tuple(count)
                else:
                    raise UnsupportedError(f"virtual dataset: {src} is mapped to a strided "
                                           "selection")
            else:
                raise UnsupportedError(f"virtual dataset: {src} is mapped to an irregular "
                                       "selection")
            sd = self._vds_source(d, m, src)
            if m.src_space.get_select_type() != h5s.SEL_ALL:
                b = m.src_space.get_select_bounds()
                if b is None or tuple(b[0]) != (0,) * sd.ndim or \
                        tuple(x + 1 for x in b[1]) != tuple(sd.shape) or \
                        m.src_space.get_select_npoints() != int(np.prod(sd.shape)):
                    raise UnsupportedError(f"virtual dataset: only part of {src} is used")
            lead = rank - sd.ndim
            if lead < 0 or any(x != 1 for x in block[:lead]) or tuple(block[lead:]) != \
                    tuple(sd.shape):
                raise UnsupportedError(f"virtual dataset: {src} of shape {sd.shape} does not "
                                       f"fill its block {block}")
            if sd.dtype != d.dtype:
                raise UnsupportedError(f"virtual dataset: {src} has dtype {sd.dtype}, the "
                                       f"dataset {d.dtype}")
            saved, self.out = self.out, ScanOutput()
            try:
                addr = _hard_address(sd.file, sd.name.lstrip("/"), path)
                if addr is None:
                    raise UnsupportedError(f"virtual dataset: {src} cannot be located")
                self._fmt_for(sd)[0].check_object(addr, path)
                self._dataset(sd, "_", addr)
                sub = self.out
            finally:
                self.out = saved
            if "_/.zarray" not in sub.inline:
                raise UnsupportedError(f"virtual dataset: {src} cannot be read")
            smeta = json.loads(sub.inline["_/.zarray"])
            if smeta["fill_value"] != meta["fill_value"] and (sd.chunks is not None):
                raise UnsupportedError(f"virtual dataset: {src} has another fill value")
            chunks = [1] * lead + list(smeta["chunks"])
            if vchunks is None:
                vchunks, vfilters = chunks, smeta["filters"]
            elif chunks != vchunks or smeta["filters"] != vfilters:
                raise UnsupportedError("virtual dataset: its sources differ in chunking or "
                                       "filters")
            for i in range(rank):
                if start[i] % chunks[i] or (block[i] % chunks[i] and
                                            start[i] + block[i] != shape[i]):
                    raise UnsupportedError(f"virtual dataset: {src} is not aligned to its "
                                           f"chunks {tuple(int(c) for c in chunks)}")
            shift = np.array([s // c for s, c in zip(start, chunks)], np.int64)
            for c in sub.chunks:
                coords = np.concatenate([np.zeros((len(c.coords), lead), np.int64), c.coords],
                                        1) + shift
                sets.append(ChunkSet(path, c.url, coords, c.addrs, c.sizes))
            for k, v in sub.inline.items():
                name = k[2:]
                if name.startswith("."):
                    if name == MASK_KEY:
                        for ck, mv in json.loads(v).items():
                            inline.setdefault(MASK_KEY, {})[_shift_key(ck, lead, shift)] = mv
                    continue
                inline[_shift_key(name, lead, shift)] = v
        meta["chunks"] = vchunks or [max(1, x) for x in shape]
        meta["filters"] = vfilters
        self.out.chunks.extend(sets)
        for k, v in inline.items():
            self.out.inline[_k(path, k)] = _json(v) if k == MASK_KEY else v

    def _vds_source(self, d, m, src):
        import h5py

        if m.file_name == ".":
            f = d.file
        else:
            try:
                f = self._linked_file(m.file_name, d.file.filename)
            except UnsupportedError as e:
                raise UnsupportedError(f"virtual dataset: {src} cannot be opened: {e}") \
                    from None
        try:
            sd = f[m.dset_name]
        except Exception as e:
            raise UnsupportedError(f"virtual dataset: {src} cannot be opened: {reason(e)}") from None
        if not isinstance(sd, h5py.Dataset) or sd.is_virtual:
            raise UnsupportedError(f"virtual dataset: {src} is not a plain dataset")
        return sd

    def _vlen_strings(self, d, path, shape, attrs, sinfo):
        """Variable-length strings are read now (they live in the global heap, not in
        chunks) and stored inline as fixed-width bytes; ``_Encoding`` says how to decode."""
        data = d[()] if shape else np.array(d[()], dtype=object)
        flat = [b"" if v is None else (v.encode("utf-8") if isinstance(v, str) else bytes(v))
                for v in np.asarray(data, dtype=object).reshape(-1)]
        width = max([len(b) for b in flat] + [1])
        arr = np.array(flat, dtype=f"S{width}").reshape(shape)
        attrs["_Encoding"] = "utf-8" if sinfo.encoding == "utf-8" else "ascii"
        meta = {"zarr_format": 2, "shape": list(shape), "chunks": [max(1, s) for s in shape],
                "dtype": f"|S{width}", "order": "C", "compressor": None, "filters": None,
                "fill_value": None, "dimension_separator": "."}
        if arr.size:
            self.out.inline[_k(path, _key0(len(shape)))] = arr.tobytes()
        self.out.inline[_k(path, ".zarray")] = _json(meta)
        self.out.inline[_k(path, ".zattrs")] = _json_attrs(attrs)

    def _vlen_string_records(self, d, path, shape, attrs):
        """A compound dataset with variable-length string members: read now (the strings live
        in the global heap), the strings stored as fixed-width UTF-8 bytes, inline."""
        from chunkview.scan.hdf5.meta import _check_fields, _descr, vlen_string_members

        dt = d.dtype
        names = set(vlen_string_members(dt))
        rest = np.dtype([(n, dt.fields[n][0]) for n in dt.names if n not in names]) \
            if len(names) < len(dt.names) else None
        if rest is not None:
            _check_fields(rest)  # anything else variable-length is still refused
        data = np.asarray(d[()])
        cols, formats = {}, []
        for n in dt.names:
            if n in names:
                flat = [b"" if v is None else (v.encode("utf-8") if isinstance(v, str)
                                               else bytes(v))
                        for v in np.asarray(data[n], dtype=object).reshape(-1)]
                width = max([len(b) for b in flat] + [1])
                cols[n] = np.array(flat, dtype=f"S{width}").reshape(shape)
                formats.append((n, f"S{width}"))
            else:
                cols[n] = data[n]
                formats.append((n, dt.fields[n][0]))
        fixed = np.dtype(formats)
        arr = np.zeros(shape, fixed)
        for n in dt.names:
            arr[n] = cols[n]
        meta = {"zarr_format": 2, "shape": list(shape), "chunks": [max(1, s) for s in shape],
                "dtype": _descr(fixed), "order": "C", "compressor": None, "filters": None,
                "fill_value": None, "dimension_separator": "."}
        if arr.size:
            self.out.inline[_k(path, _key0(len(shape)))] = arr.tobytes()
        self.out.inline[_k(path, ".zarray")] = _json(meta)
        self.out.inline[_k(path, ".zattrs")] = _json_attrs(attrs)

    def _contiguous(self, fmt, url, path, address, size, full_shape, item):
        nbytes = int(np.prod(full_shape, dtype=np.int64)) * item
        if address in (H.UNDEF, fmt._undef) or nbytes == 0:
            return  # never written: every element is the fill value
        if size < nbytes:
            raise ScanError(f"contiguous storage holds {size} bytes, the dataset {nbytes}",
                            url=url, path=path)
        start = fmt.abs(address)
        if start + nbytes > fmt.reader.size:
            raise ScanError(f"contiguous data (bytes {start}-{start + nbytes}) runs past the end "
                            f"of the file ({fmt.reader.size} bytes): truncated file",
                            url=url, path=path)
        self._split(fmt.reader, url, path, start, full_shape, item)

    def _split(self, reader, url, path, start, full_shape, item):
        """Contiguous bytes at ``start`` as virtual chunks of about ``chunk_bytes``; a padded
        edge chunk that would run past the end of the file is stored inline."""
        chunks, d, step = contiguous_chunking(full_shape, item, self.chunk_bytes)
        clen = int(np.prod(chunks, dtype=np.int64)) * item
        coords, offs = [], []
        small = 0 < clen <= self.inline_threshold  # inlined, as chunked data is (and kerchunk)
        for idx, off, n in contiguous_chunks(full_shape, chunks, d, step):
            if small:
                data = bytes(reader.read(start + off, min(n, clen))).ljust(clen, b"\0")
                self.out.inline[_k(path, _coord_key(idx, len(idx)))] = data
            elif n < clen and start + off + clen > reader.size:
                tail = bytes(reader.read(start + off, n)).ljust(clen, b"\0")
                self.out.inline[_k(path, _coord_key(idx, len(idx)))] = tail
            else:
                coords.append(idx)
                offs.append(start + off)
        self._add(path, url, np.array(coords, np.int64).reshape(len(coords), len(full_shape)),
                  offs, np.full(len(offs), clen, np.uint64))

    def _external(self, d, path, dcpl, count, full_shape, item):
        segs = [dcpl.get_external(i) for i in range(count)]
        nbytes = int(np.prod(full_shape, dtype=np.int64)) * item
        if nbytes == 0:
            return
        if len(segs) != 1:
            raise UnsupportedError(f"external raw storage in {len(segs)} segments")
        name, offset, size = segs[0]
        name = name.decode() if isinstance(name, bytes) else name
        from chunkview.io.blocks import open_reader

        here = posixpath.dirname(self.url) if "://" in self.url else os.path.dirname(self.url)
        cand = name if os.path.isabs(name) or "://" in name else posixpath.join(here, name)
        from chunkview.io.resolve import is_remote_url

        if is_remote_url(self.url) and not is_remote_url(cand):
            raise UnsupportedError(f"external raw data file {name!r} is local, and "
                                   f"{self.url!r} is remote: not read")
        try:
            r = open_reader(cand)
        except ChunkviewError as e:
            raise UnsupportedError(f"external raw data file {name!r} cannot be opened: {reason(e)}") \
                from None
        with r:
            if offset + nbytes > r.size:
                raise UnsupportedError(f"external raw data file {name!r} is shorter "
                                       f"({r.size} bytes) than the data it holds")
            self._split(r, r.url, path, offset, full_shape, item)

    def _chunked(self, d, path, fmt, url, lay, shape, extra, itemsize, filters, shift=0):
        chunk_bytes = int(np.prod(lay.chunk, dtype=np.int64)) * itemsize
        maxshape = tuple(d.maxshape) if d.maxshape is not None else shape
        try:
            ch = chunk_index(fmt, lay, shape, maxshape, chunk_bytes, len(filters), path)
        except ScanError:
            raise
        except ValueError as e:  # the index does not fit the dataspace
            raise ScanError(f"chunk index: {e}", url=url, path=path) from None
        rank = len(lay.chunk)
        grid = np.array([-(-s // c) for s, c in zip(shape, lay.chunk)], np.int64)
        if len(ch.addrs):
            inside = np.all(ch.coords < grid, axis=1) if rank else np.ones(len(ch.addrs), bool)
            if not inside.all():  # chunks left beyond a shrunk dataset's extent
                ch = Chunks(ch.coords[inside], ch.addrs[inside], ch.sizes[inside],
                              ch.masks[inside])
            ends = ch.addrs + ch.sizes
            if len(ends) and int(ends.max()) > fmt.reader.size:
                i = int(np.argmax(ends))
                raise ScanError(f"chunk {tuple(ch.coords[i].tolist())} (bytes {int(ch.addrs[i])}-"
                                f"{int(ends[i])}) runs past the end of the file "
                                f"({fmt.reader.size} bytes): truncated file", url=url,
                                path=path)
        masks = ch.masks.copy()
        if filters and lay.flags & 1 and rank:  # partial edge chunks stored unfiltered
            edge = np.any((ch.coords + 1) * np.array(lay.chunk) > np.array(shape), axis=1)
            masks[edge] |= np.uint32((1 << len(filters)) - 1)
        if not filters and np.any(ch.sizes != chunk_bytes):
            i = int(np.argmax(ch.sizes != chunk_bytes))
            raise ScanError(f"unfiltered chunk {tuple(ch.coords[i].tolist())} holds {int(ch.sizes[i])} "
                            f"bytes, expected {chunk_bytes}", url=url, path=path)
        coords = ch.coords
        if extra:
            coords = np.concatenate([coords, np.zeros((len(coords), len(extra)), np.int64)], 1)
        keep = np.ones(len(ch.addrs), bool)
        if self.inline_threshold > 0 and len(ch.addrs):
            small = np.nonzero(ch.sizes <= self.inline_threshold)[0]
            for i in small:
                key = _k(path, _coord_key(coords[i], rank + len(extra)))
                self.out.inline[key] = bytes(fmt.reader.read(int(ch.addrs[i]), int(ch.sizes[i])))
            keep[small] = False
        nz = np.nonzero(masks)[0]
        if len(nz):  # HDF5 filter i is codec i + shift (string padding codecs come first)
            self.out.inline[_k(path, MASK_KEY)] = _json(
                {_coord_key(coords[i], rank + len(extra)): int(masks[i]) << shift for i in nz})
        self._add(path, url, coords[keep], ch.addrs[keep], ch.sizes[keep])

    def _add(self, path, url, coords, offs, lens):
        coords = np.asarray(coords, np.int64)
        if len(coords):
            self.out.chunks.append(ChunkSet(path, url, coords, np.asarray(offs, np.uint64),
                                            np.asarray(lens, np.uint64)))
