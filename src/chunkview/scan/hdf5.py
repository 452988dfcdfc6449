"""Scan HDF5 / NetCDF4 files into references.

The HDF5 library (through h5py) walks groups and links and reads what it does well: datatypes,
attributes, fill values, filter parameters, variable-length strings.  Where each dataset's
bytes lie comes from the file's own structures, parsed natively (:mod:`._h5format`): the data
layout message and the chunk index, a node or block at a time into numpy arrays.  That is what
makes a 200,000-chunk scan take milliseconds instead of h5py's one Python callback per chunk.

A dataset chunkview cannot present faithfully is not guessed at: it gets a ``<path>/.cverror``
key saying why, no ``.zarray``, and reading it raises :class:`chunkview.UnsupportedError`.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
from dataclasses import dataclass, field

import numpy as np

from chunkview.errors import ChunkviewError, ScanError, UnsupportedError, missing_extra
from chunkview.references import NETCDF_KEY
from chunkview.scan import _h5format as H
from chunkview.scan._common import contiguous_chunking, contiguous_chunks, json_value

ERROR_KEY = ".cverror"
MASK_KEY = ".cvmask"
# under NETCDF_KEY: {"attrs": {name: dtype}} for numeric attributes, {"_FillValue": false}
# when the zarr fill_value is only HDF5's fill value (no _FillValue attribute),
# {"dimension_only": true} for a netCDF dimension that is not a variable
_DIM_ONLY = b"This is a netCDF dimension but not a netCDF variable"

# attributes netCDF-4 and the dimension-scale API keep for themselves
_HIDDEN_ATTRS = {"_Netcdf4Dimid", "_Netcdf4Coordinates", "_NCProperties", "_nc3_strict",
                 "_IsNetcdf4", "_SuperblockVersion", "DIMENSION_LIST", "REFERENCE_LIST",
                 "DIMENSION_LABELS", "_FillValue"}


@dataclass
class ChunkSet:
    """Chunk references of one array: key prefix, URL, grid coordinates, byte ranges."""

    prefix: str
    url: str
    coords: np.ndarray
    addrs: np.ndarray
    sizes: np.ndarray


@dataclass
class ScanOutput:
    """What a scanner found: inline values (metadata JSON text and data bytes) and chunk
    reference arrays, turned into :class:`chunkview.References` by :func:`to_references`."""

    inline: dict = field(default_factory=dict)
    chunks: list = field(default_factory=list)
    unsupported: dict = field(default_factory=dict)


def _json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


# ---------------------------------------------------------------------- JSON values


def fill_json(fill, dtype: np.dtype):
    """HDF5's fill value as a zarr v2 ``fill_value``."""
    if fill is None:
        return None
    if dtype.kind in "SV" or dtype.fields is not None:
        raw = np.asarray(fill, dtype=dtype).tobytes()
        return None if not any(raw) else base64.standard_b64encode(raw).decode()
    if dtype.kind == "b":
        return bool(fill)
    if dtype.kind == "c":
        c = complex(fill)
        return [json_value(c.real), json_value(c.imag)]
    return json_value(np.asarray(fill, dtype=dtype)[()])


# ---------------------------------------------------------------------- types


def _zarr_dtype(dt: np.dtype):
    """``(zarr v2 dtype spec, extra trailing dims)`` for an h5py dtype, or raise
    UnsupportedError saying why."""
    import h5py

    if h5py.check_vlen_dtype(dt) is not None:
        raise UnsupportedError("variable-length sequence data (vlen) has no fixed-size zarr form")
    if h5py.check_ref_dtype(dt) is not None:
        raise UnsupportedError("object/region reference data cannot be read as zarr")
    if dt.kind == "O":
        raise UnsupportedError(f"object datatype {dt} has no fixed-size zarr form")
    if dt.subdtype is not None:
        base, sub = dt.subdtype
        spec, extra = _zarr_dtype(base)
        return spec, tuple(sub) + extra
    if dt.fields is not None:
        _check_fields(dt)
        return _descr(dt), ()
    if dt.kind == "f" and dt.itemsize > 8 and np.dtype(dt.str).itemsize != dt.itemsize:
        raise UnsupportedError(f"floating point type {dt} is not portable")
    return dt.str, ()


def _check_fields(dt):
    import h5py

    for name in dt.names:
        sub = dt.fields[name][0]
        if h5py.check_vlen_dtype(sub) is not None or h5py.check_ref_dtype(sub) is not None or \
                sub.kind == "O":
            raise UnsupportedError(f"compound member {name!r} is variable-length or a reference")
        if sub.fields is not None:
            _check_fields(sub)


def _descr(dt: np.dtype):
    """A structured dtype as zarr v2's list form, padding made explicit (HDF5 compound types
    may have gaps and any member order)."""
    out = []
    pos = 0
    pad = 0
    for name, (sub, off) in sorted(dt.fields.items(), key=lambda kv: kv[1][1]):
        if off > pos:
            out.append([f"_pad{pad}", f"|V{off - pos}"])
            pad += 1
        if sub.subdtype is not None:
            base, shp = sub.subdtype
            spec = _descr(base) if base.fields is not None else base.str
            out.append([name, spec, list(shp)])
        else:
            out.append([name, _descr(sub) if sub.fields is not None else sub.str])
        pos = off + sub.itemsize
    if dt.itemsize > pos:
        out.append([f"_pad{pad}", f"|V{dt.itemsize - pos}"])
    return out


# ---------------------------------------------------------------------- the scanner


class HDF5Scanner:
    def __init__(self, reader, *, inline_threshold: int = 0, chunk_bytes: int = 4 << 20,
                 h5file=None):
        self.reader = reader
        self.url = reader.url
        self.inline_threshold = int(inline_threshold)
        self.chunk_bytes = max(1, int(chunk_bytes))
        self.fmt = H.H5File(reader)
        self._h5 = h5file
        self._files = {}  # h5py file name -> (H5File, url) for external links
        self._linked = {}  # resolved path or URL -> h5py file, for external links and VDS
        self._fileobjs = []  # the file objects libhdf5 reads through (see _h5_through)
        self._dimnames = {}  # (group path, length) -> phony dimension name
        self.out = ScanOutput()

    def _open_h5(self):
        try:
            import h5py  # noqa: F401 - here to name the extra when it is missing
        except ImportError:
            raise missing_extra("h5py", "hdf5") from None
        if self._h5 is not None:
            return self._h5
        # libhdf5 reads through a file object, so that the global heap collections it reads
        # are checked first (H.check_global_heap: a damaged one makes libhdf5 loop forever);
        # the real name keeps external links resolving next to the file
        try:
            return self._h5_through(self.reader, self.fmt)
        except OSError as e:
            self._raise_refused()
            raise ScanError(f"the HDF5 library cannot open the file: {e}", url=self.url) from e

    def _h5_through(self, reader, fmt):
        """h5py's view of the file behind ``reader``, read through a file object."""
        import h5py

        from chunkview.scan._reader import LocalReader, ReaderFile

        fo = ReaderFile(reader, H.GlobalHeapCheck(reader.size, fmt.L, reader.url))
        self._fileobjs.append(fo)
        name = reader.path if isinstance(reader, LocalReader) else reader.url
        # the fileobj driver would also be used for the files external links name (libhdf5
        # opens them with the parent's access list): links are followed by _linked_file
        return h5py.File(name, "r", driver="fileobj", fileobj=fo)

    def _raise_refused(self):
        """Raise what a check of the bytes libhdf5 read refused, if anything was refused."""
        for fo in self._fileobjs:
            if fo.error is not None:
                raise fo.error

    def _follow(self, g, name, depth=0):
        """The object at link path ``name`` from group ``g``, each external link on the way
        (soft links' targets included) opened through :meth:`_linked_file`: libhdf5 would
        open it with the parent's file object."""
        import h5py

        if depth > 32:
            raise UnsupportedError("soft link chain too long (a cycle?)")
        cur = g.file if name.startswith("/") else g
        for part in (p for p in name.split("/") if p):
            link = cur.get(part, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                cur = self._linked_file(link.filename, cur.file.filename)[link.path]
            elif isinstance(link, h5py.SoftLink):
                cur = self._follow(cur, link.path, depth + 1)
            else:  # hard, or missing / user-defined: libhdf5 says which
                cur = cur[part]
        return cur

    def _linked_file(self, filename, here):
        """The h5py file an external link or a virtual dataset names, resolved as libhdf5
        does (absolute, else next to the linking file ``here``, else from the working
        directory) and opened through a checked reader, once."""
        from chunkview.scan._reader import open_reader

        cands = [filename]
        if not os.path.isabs(filename) and "://" not in filename:
            base = here.rsplit("/", 1)[0] if "://" in here else os.path.dirname(here)
            cands.insert(0, (base + "/" + filename) if "://" in here
                         else os.path.join(base, filename))
        err = None
        for cand in cands:
            key = cand if "://" in cand else os.path.abspath(cand)
            hit = self._linked.get(key)
            if hit is not None:
                return hit
            try:
                r = open_reader(cand)
                fmt = H.H5File(r)
                f = self._h5_through(r, fmt)
            except (ChunkviewError, OSError) as e:
                err = err or e
                continue
            self._files[f.file.filename] = (fmt, r.url)
            self._linked[key] = f
            return f
        raise UnsupportedError(f"linked file {filename!r} cannot be opened: {err}")

    def scan(self) -> ScanOutput:
        f = self._open_h5()
        try:
            self._root_name = f.file.filename
            self._files[f.file.filename] = (self.fmt, self.url)
            try:
                self._group(f, "", set())
            except ChunkviewError:
                self._raise_refused()
                raise
            except Exception as e:  # noqa: BLE001 - libhdf5 refused a corrupt structure
                self._raise_refused()
                raise ScanError(f"the HDF5 library failed: {type(e).__name__}: {e}",
                                url=self.url) from e
            # a refused read that libhdf5's error was caught for (an unreadable attribute,
            # a dataset it cannot describe) still makes the file corrupt
            self._raise_refused()
        finally:
            for linked in self._linked.values():
                linked.close()
            if self._h5 is None:
                f.close()
        return self.out

    # ------------------------------------------------------------------ groups

    def _group(self, g, path, active, addr=None):
        import h5py

        ident = (g.file.filename, addr if addr is not None else g.name)
        if ident in active:  # a link cycle: present the group once on this branch
            return
        active = active | {ident}
        self.out.inline[_k(path, ".zgroup")] = _json({"zarr_format": 2})
        attrs, types = self._attrs(g, path)
        self.out.inline[_k(path, ".zattrs")] = _json(attrs)
        self._netcdf_facts(g, path, types, dataset=False)
        try:
            names = list(g)
        except Exception as e:  # the HDF5 library cannot list this group: a corrupt file
            raise ScanError(f"cannot list group {path or '/'!r}: {type(e).__name__}: {e}",
                            url=self.url, path=path or "/") from None
        for name in names:
            child = posixpath.join(path, name) if path else name
            try:
                addr = _hard_address(g, name, path)
            except UnsupportedError as e:
                self._unsupported(child, str(e))
                continue
            if addr is not None and g.file.filename == self._root_name:
                self.fmt.check_object(addr, child)
            try:
                obj = self._follow(g, name)
            except Exception as e:  # dangling soft/external link, user-defined link type...
                try:
                    kind = type(g.get(name, getlink=True)).__name__
                except Exception:
                    kind = "link"
                self._unsupported(child, f"{kind} cannot be followed: {type(e).__name__}: {e}")
                continue
            if isinstance(obj, h5py.Group):
                self._group(obj, child, active, addr)
            elif isinstance(obj, h5py.Dataset):
                try:
                    if addr is None or obj.file.filename != g.file.filename:
                        addr = _hard_address(obj.file, obj.name.lstrip("/"), "") \
                            if obj.name else None
                    if addr is None:
                        raise UnsupportedError("the link's target cannot be located")
                    self._fmt_for(obj)[0].check_object(addr, child)
                    self._dataset(obj, child, addr)
                except UnsupportedError as e:
                    self._unsupported(child, str(e))
                except ScanError:
                    raise
                except Exception as e:  # the HDF5 library cannot describe it (bad type...)
                    self._unsupported(child, f"the HDF5 library cannot describe this dataset: "
                                             f"{type(e).__name__}: {e}")
            # named datatypes are not arrays: skipped

    def _unsupported(self, path, why):
        for suffix in (".zarray", ".zattrs", NETCDF_KEY):
            self.out.inline.pop(_k(path, suffix), None)
        self.out.inline[_k(path, ERROR_KEY)] = _json({"error": why})
        self.out.unsupported[path] = why

    def _attrs(self, obj, path):
        """(attributes as JSON-safe values, {name: dtype} of the numeric ones)."""
        out = {}
        try:
            names = list(obj.attrs)
        except Exception as e:
            raise ScanError(f"cannot list attributes: {type(e).__name__}: {e}", url=self.url,
                            path=path or "/") from None
        types = {}  # numeric attributes' dtypes, which JSON loses (see NETCDF_KEY)
        for name in names:
            if name in _HIDDEN_ATTRS:
                continue
            try:
                v = obj.attrs[name]
            except Exception as e:  # a type h5py cannot read: say so rather than drop it
                out[name] = f"<unreadable attribute: {type(e).__name__}: {e}>"
                continue
            if name == "CLASS" and v in (b"DIMENSION_SCALE", "DIMENSION_SCALE"):
                continue
            if name == "NAME" and obj.attrs.get("CLASS") in (b"DIMENSION_SCALE",
                                                            "DIMENSION_SCALE"):
                continue
            out[name] = json_value(v)
            dt = getattr(v, "dtype", None)
            if dt is not None and dt.kind in "iuf" and dt.fields is None:
                types[name] = dt.str
        return out, types

    # ------------------------------------------------------------------ datasets

    def _fmt_for(self, d):
        fn = d.file.filename
        hit = self._files.get(fn)
        if hit is None:  # an external link into another file
            from chunkview.scan._reader import open_reader

            try:
                r = open_reader(fn)
            except ChunkviewError as e:
                raise UnsupportedError(f"linked file {fn!r} cannot be opened: {e}") from None
            hit = self._files[fn] = (H.H5File(r), r.url)
        return hit

    def _dims(self, d, path, shape):
        names = []
        is_scale = d.attrs.get("CLASS") in (b"DIMENSION_SCALE", "DIMENSION_SCALE")
        for i, n in enumerate(shape):
            name = None
            if is_scale and i == 0:
                name = posixpath.basename(path)
            else:
                try:
                    scales = d.dims[i]
                    if len(scales):
                        name = posixpath.basename(scales[0].name)
                except Exception:
                    name = None
            if name is None:
                key = (posixpath.dirname(path), n)
                name = self._dimnames.get(key)
                if name is None:  # numbered per group, like netCDF-4's phony dimensions
                    k = sum(1 for g, _ in self._dimnames if g == key[0])
                    name = self._dimnames[key] = f"phony_dim_{k}"
            names.append(name)
        return names

    def _dataset(self, d, path, addr):
        import h5py

        dt = d.dtype
        shape = tuple(int(s) for s in (d.shape or ()))
        if d.shape is None:  # a null dataspace: no elements at all
            raise UnsupportedError("dataset with a null dataspace holds no data")
        attrs, types = self._attrs(d, path)
        attrs["_ARRAY_DIMENSIONS"] = self._dims(d, path, shape)
        self._netcdf_facts(d, path, types)
        sinfo = h5py.check_string_dtype(dt)
        if sinfo is not None and sinfo.length is None:
            return self._vlen_strings(d, path, shape, attrs, sinfo)
        spec, extra = _zarr_dtype(dt)
        dcpl = d.id.get_create_plist()
        filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
        if not any(int(f[0]) == 5 for f in filters):  # nbit: checked with its parameters
            from chunkview.scan.filters import layout_problem

            why = layout_problem(d.id.get_type())
            if why:
                raise UnsupportedError(f"the file stores {why}, which the HDF5 library "
                                       "converts on reading and zarr cannot express")
        fmt, url = self._fmt_for(d)
        lay = fmt.layout(addr, len(shape), path)
        base = dt.subdtype[0] if dt.subdtype is not None else dt
        itemsize = dt.itemsize  # one element of the dataset (a whole array for array types)
        try:
            fill = fill_json(d.fillvalue, base) if extra == () else \
                fill_json(np.asarray(d.fillvalue).reshape(-1)[0] if np.size(d.fillvalue) else 0,
                          base)
        except Exception:
            fill = None
        meta = {"zarr_format": 2, "shape": list(shape) + list(extra), "dtype": spec,
                "order": "C", "compressor": None, "filters": None, "fill_value": fill,
                "dimension_separator": "."}
        if extra:
            attrs["_ARRAY_DIMENSIONS"] += [f"{posixpath.basename(path)}_dim_{i}"
                                           for i in range(len(extra))]
        if lay.cls == H.VIRTUAL:
            if extra:
                raise UnsupportedError("virtual dataset of an array type")
            self._virtual(d, path, shape, meta)
            self.out.inline[_k(path, ".zarray")] = _json(meta)
            self.out.inline[_k(path, ".zattrs")] = _json(attrs)
            return
        nexternal = dcpl.get_external_count() if lay.cls == H.CONTIGUOUS else 0
        regions = _string_regions(d.id.get_type())
        strpad = [{"id": "hdf5_strpad", "itemsize": itemsize, "regions": regions}] \
            if regions else []
        meta["filters"] = strpad or None
        if lay.cls == H.CHUNKED:
            meta["chunks"] = list(lay.chunk) + list(extra)
            if filters:
                from chunkview.scan.filters import codecs_for

                meta["filters"] = strpad + codecs_for(filters, dt, path=path,
                                                      h5type=d.id.get_type())
            self._chunked(d, path, fmt, url, lay, shape, extra, itemsize, filters,
                          shift=len(strpad))
        elif lay.cls == H.COMPACT:
            nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
            if len(lay.compact) < nbytes:
                raise ScanError(f"compact data holds {len(lay.compact)} bytes, the dataset "
                                f"{nbytes}", url=url, path=path)
            meta["chunks"] = [max(1, s) for s in shape] + list(extra)
            if nbytes:
                self.out.inline[_k(path, _key0(len(shape) + len(extra)))] = \
                    bytes(lay.compact[:nbytes])
        else:
            item = base.itemsize
            full = shape + tuple(extra)
            meta["chunks"] = list(contiguous_chunking(full, item, self.chunk_bytes)[0])
            if nexternal:
                self._external(d, path, dcpl, nexternal, full, item)
            else:
                size = lay.size * (itemsize if lay.params.get("v1_elements") else 1)
                self._contiguous(fmt, url, path, lay.address, size, full, item)
        self.out.inline[_k(path, ".zarray")] = _json(meta)
        self.out.inline[_k(path, ".zattrs")] = _json(attrs)

    def _netcdf_facts(self, obj, path, types, dataset=True):
        """What netCDF readers see that zarr metadata cannot say, under NETCDF_KEY."""
        facts = {}
        if types:
            facts["attrs"] = types
        if dataset:
            try:
                if "_FillValue" not in obj.attrs:
                    facts["_FillValue"] = False
                if obj.attrs.get("CLASS") in (b"DIMENSION_SCALE", "DIMENSION_SCALE"):
                    name = obj.attrs.get("NAME")
                    if isinstance(name, str):
                        name = name.encode()
                    if isinstance(name, bytes) and name.startswith(_DIM_ONLY):
                        facts["dimension_only"] = True
            except Exception:  # noqa: BLE001 - unreadable attributes were reported by _attrs
                pass
        if facts:
            self.out.inline[_k(path, NETCDF_KEY)] = _json(facts)

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
                                           f"chunks {tuple(chunks)}")
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
            raise UnsupportedError(f"virtual dataset: {src} cannot be opened: {e}") from None
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
        self.out.inline[_k(path, ".zattrs")] = _json(attrs)

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
        for idx, off, n in contiguous_chunks(full_shape, chunks, d, step):
            if n < clen and start + off + clen > reader.size:
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
        from chunkview.scan._reader import open_reader

        here = posixpath.dirname(self.url) if "://" in self.url else os.path.dirname(self.url)
        cand = name if os.path.isabs(name) or "://" in name else posixpath.join(here, name)
        try:
            r = open_reader(cand)
        except ChunkviewError as e:
            raise UnsupportedError(f"external raw data file {name!r} cannot be opened: {e}") \
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
            ch = H.chunk_index(fmt, lay, shape, maxshape, chunk_bytes, len(filters), path)
        except ScanError:
            raise
        except ValueError as e:  # the index does not fit the dataspace
            raise ScanError(f"chunk index: {e}", url=url, path=path) from None
        rank = len(lay.chunk)
        grid = np.array([-(-s // c) for s, c in zip(shape, lay.chunk)], np.int64)
        if len(ch.addrs):
            inside = np.all(ch.coords < grid, axis=1) if rank else np.ones(len(ch.addrs), bool)
            if not inside.all():  # chunks left beyond a shrunk dataset's extent
                ch = H.Chunks(ch.coords[inside], ch.addrs[inside], ch.sizes[inside],
                              ch.masks[inside])
            ends = ch.addrs + ch.sizes
            if len(ends) and int(ends.max()) > fmt.reader.size:
                i = int(np.argmax(ends))
                raise ScanError(f"chunk {tuple(ch.coords[i])} (bytes {int(ch.addrs[i])}-"
                                f"{int(ends[i])}) runs past the end of the file "
                                f"({fmt.reader.size} bytes): truncated file", url=url,
                                path=path)
        masks = ch.masks.copy()
        if filters and lay.flags & 1 and rank:  # partial edge chunks stored unfiltered
            edge = np.any((ch.coords + 1) * np.array(lay.chunk) > np.array(shape), axis=1)
            masks[edge] |= np.uint32((1 << len(filters)) - 1)
        if not filters and np.any(ch.sizes != chunk_bytes):
            i = int(np.argmax(ch.sizes != chunk_bytes))
            raise ScanError(f"unfiltered chunk {tuple(ch.coords[i])} holds {int(ch.sizes[i])} "
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


def _shift_key(key, lead, shift):
    """A source chunk key moved to its place in a virtual dataset's chunk grid."""
    idx = [0] * lead + [int(x) for x in key.split(".")] if key != "0" or len(shift) > lead \
        else [0] * lead
    idx = idx[-len(shift):] if len(idx) > len(shift) else idx
    return ".".join(str(i + int(s)) for i, s in zip(idx, shift)) if len(shift) else "0"


def _hard_address(g, name, path, depth=0):
    """The object header address behind link ``name`` of group ``g``, following soft links
    through link records only (asking libhdf5 for object info reads the whole object, chunk
    index included, and crashes on some corrupt files).  None for external links."""
    import h5py

    if depth > 32:
        raise UnsupportedError("soft link chain too long (a cycle?)")
    parts = [p for p in name.split("/") if p]
    cur = g
    for i, part in enumerate(parts):
        try:
            info = cur.id.links.get_info(part.encode())
        except Exception as e:
            if depth or i:  # a dangling soft link's target: reported when it is opened
                return None
            raise ScanError(f"cannot read link {part!r}: {type(e).__name__}: {e}",
                            path=path or "/") from None
        if info.type == h5py.h5l.TYPE_HARD:
            addr = info.u
        elif info.type == h5py.h5l.TYPE_SOFT:
            try:
                target = cur.id.links.get_val(part.encode()).decode()
            except Exception:
                return None
            base = cur.file if target.startswith("/") else cur
            addr = _hard_address(base, target, path, depth + 1)
            if addr is None:
                return None
            if i + 1 < len(parts):
                try:
                    cur = base[target]
                except Exception:
                    return None
            continue
        else:
            return None
        if i + 1 < len(parts):
            try:
                cur = cur[part]
            except Exception:
                return None
    return addr if parts else None


def _string_regions(tid, base=0):
    """``[offset, size, pad]`` of the fixed-length strings in an element of HDF5 type
    ``tid`` that the library rewrites when reading (null-terminated and space-padded ones)."""
    import h5py

    h5t = h5py.h5t
    cls = tid.get_class()
    if cls == h5t.STRING:
        if tid.is_variable_str():
            return []
        pad = tid.get_strpad()
        return [[base, tid.get_size(), int(pad)]] if pad in (h5t.STR_NULLTERM,
                                                             h5t.STR_SPACEPAD) else []
    out = []
    if cls == h5t.COMPOUND:
        for i in range(tid.get_nmembers()):
            out += _string_regions(tid.get_member_type(i), base + tid.get_member_offset(i))
    elif cls == h5t.ARRAY:
        sup = tid.get_super()
        inner = _string_regions(sup, 0)
        if inner:
            n = int(np.prod(tid.get_array_dims(), dtype=np.int64))
            step = sup.get_size()
            out += [[base + k * step + o, s, p] for k in range(n) for o, s, p in inner]
    return out


def _k(path, name):
    return f"{path}/{name}" if path else name


def _key0(rank):
    return ".".join(["0"] * rank) if rank else "0"


def _coord_key(row, rank):
    return ".".join(str(int(x)) for x in row) if rank else "0"
