"""Scan HDF5 / NetCDF4 files into references.

The HDF5 library (through h5py) walks groups and links and reads what it does well: datatypes,
attributes, fill values, filter parameters, variable-length strings.  Where each dataset's
bytes lie comes from the file's own structures, parsed natively (:mod:`.format`): the data
layout message and the chunk index, a node or block at a time into numpy arrays.  That is what
makes a 200,000-chunk scan take milliseconds instead of h5py's one Python callback per chunk.

A dataset chunkview cannot present faithfully is not guessed at: it gets a ``<path>/.cverror``
key saying why, no ``.zarray``, and reading it raises :class:`chunkview.UnsupportedError`.
"""

from __future__ import annotations

import os
import posixpath

import numpy as np

from chunkview.errors import (
    ChunkviewError,
    ForbiddenSourceError,
    ScanError,
    UnsupportedError,
    missing_extra,
    reason,
)
from chunkview.io.resolve import is_remote_url
from chunkview.keys import DIMENSION_KEY, ERROR_KEY, NETCDF_KEY
from chunkview.scan.common import contiguous_chunking, json_value
from chunkview.scan.hdf5 import format as H
from chunkview.scan.hdf5.finish import (
    NetCDFDims,
    chunks_by_array,
    finish_masks,
    is_dimension_only,
    is_netcdf4,
)
from chunkview.scan.hdf5.layouts import LayoutsMixin
from chunkview.scan.hdf5.meta import (
    _hard_address,
    _json,
    _json_attrs,
    _k,
    _key0,
    _string_regions,
    _zarr_dtype,
    fill_json,
    vlen_string_members,
)
from chunkview.scan.output import ScanOutput

# under NETCDF_KEY: {"attrs": {name: dtype}} for numeric attributes, {"_FillValue": false}
# when the zarr fill_value is only HDF5's fill value (no _FillValue attribute; "fill" is
# that value),
# {"dimension_only": true} for a netCDF dimension that is not a variable
_NON_COORD = "_nc4_non_coord_"
#: how an unsupported dataset's reason starts when libhdf5 itself failed on it
LIBRARY_FAILED = "the HDF5 library cannot describe this dataset"

# attributes netCDF-4 and the dimension-scale API keep for themselves
_HIDDEN_ATTRS = {"_Netcdf4Dimid", "_Netcdf4Coordinates", "_NCProperties", "_nc3_strict",
                 "_IsNetcdf4", "_SuperblockVersion", "DIMENSION_LIST", "REFERENCE_LIST",
                 "DIMENSION_LABELS", "_FillValue"}


class HDF5Scanner(LayoutsMixin):
    """Walks the object tree (through h5py), translates each object's metadata to zarr v2
    (:mod:`.meta`) and hands each dataset's layout to :class:`~.layouts.LayoutsMixin`."""

    def __init__(self, reader, *, inline_threshold: int = 0, chunk_bytes: int = 4 << 20,
                 h5file=None, checksums: bool = True):
        self.reader = reader
        self.checksums = checksums
        self.url = reader.url
        self.inline_threshold = int(inline_threshold)
        self.chunk_bytes = max(1, int(chunk_bytes))
        self.fmt = H.H5File(reader, checksums=checksums)
        self._h5 = h5file
        self._files = {}  # h5py file name -> (H5File, url) for external links
        self._linked = {}  # resolved path or URL -> h5py file, for external links and VDS
        self._fileobjs = []  # the file objects libhdf5 reads through (see _h5_through)
        self._dimnames = {}  # (group path, length) -> phony dimension name
        self.netcdf = False  # a netCDF-4 file: its variables follow netCDF-C's rules
        self.nc = NetCDFDims()  # netCDF dimensions and implicit fills, for finish()
        self._dims_only = set()  # (file, name) of netCDF dimension scales, not variables
        self._groups_seen: dict = {}  # (file, address or name) -> the path it is presented at
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
            raise ScanError(f"the HDF5 library cannot open the file: {reason(e)}", url=self.url) from e

    def _h5_through(self, reader, fmt):
        """h5py's view of the file behind ``reader``, read through a file object."""
        import h5py

        from chunkview.io.blocks import LocalReader, ReaderFile

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
        from chunkview.io.blocks import open_reader

        cands = [filename]
        if not os.path.isabs(filename) and "://" not in filename:
            base = here.rsplit("/", 1)[0] if "://" in here else os.path.dirname(here)
            cands.insert(0, (base + "/" + filename) if "://" in here
                         else os.path.join(base, filename))
        err = None
        if is_remote_url(self.url):  # a remote file may not make us read local ones
            cands = [c for c in cands if is_remote_url(c)]
            err = ForbiddenSourceError(f"{self.url!r} is remote: its link to the local file "
                                       f"{filename!r} is not followed")
        for cand in cands:
            key = cand if "://" in cand else os.path.abspath(cand)
            hit = self._linked.get(key)
            if hit is not None:
                return hit
            try:
                r = open_reader(cand)
                fmt = H.H5File(r, checksums=self.checksums)
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
            self.netcdf = is_netcdf4(f)
            try:
                self._group(f, "")
                readers = {url: fmt.reader for fmt, url in self._files.values()}
                index = chunks_by_array(self.out)
                if self.netcdf:
                    self.nc.finish(self.out, index)
                finish_masks(self.out, readers, index)
            except ChunkviewError:
                self._raise_refused()
                raise
            except Exception as e:  # noqa: BLE001 - libhdf5 refused a corrupt structure
                self._raise_refused()
                raise ScanError(f"the HDF5 library failed: {reason(e)}",
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

    def _group(self, g, path, addr=None):
        import h5py

        ident = (g.file.filename, addr if addr is not None else g.name)
        first = self._groups_seen.get(ident)
        if first is not None:
            # a group reached again (a hard link cycle, or a DAG of links whose paths double
            # at each level): each object is presented once, at its first path, as HDF5's
            # H5Ovisit visits it; this path records where
            if path:
                self._unsupported(path, f"a hard link to the group {first or '/'!r}, which is "
                                        "presented there (each HDF5 object appears once)")
            return
        self._groups_seen[ident] = path
        self.out.inline[_k(path, ".zgroup")] = _json({"zarr_format": 2})
        attrs, types = self._attrs(g, path)
        self.out.inline[_k(path, ".zattrs")] = _json_attrs(attrs)
        self._netcdf_facts(g, path, types, dataset=False)
        try:
            names = list(g)
        except Exception as e:  # the HDF5 library cannot list this group: a corrupt file
            raise ScanError(f"cannot list group {path or '/'!r}: {reason(e)}",
                            url=self.url, path=path or "/") from None
        # a dataset named like a variable stored as "_nc4_non_coord_<name>" is that
        # dimension's scale, not a variable
        shadowed = {n[len(_NON_COORD):] for n in names if n.startswith(_NON_COORD)} \
            if self.netcdf else set()
        for name in names:
            if name in shadowed:
                self._dims_only.add((g.file.filename, g.name.rstrip("/") + "/" + name))
            shown = name
            if self.netcdf and name.startswith(_NON_COORD):
                # netCDF-C's name for a variable named like a dimension it is not the
                # coordinate of; netCDF readers show the real name (the dimension itself is
                # not an array here)
                shown = name[len(_NON_COORD):]
            child = posixpath.join(path, shown) if path else shown
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
                self._unsupported(child, f"{kind} cannot be followed: {reason(e)}")
                continue
            if isinstance(obj, h5py.Group):
                self._group(obj, child, addr)
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
                    self._unsupported(child, f"{LIBRARY_FAILED}: {reason(e)}")
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
            raise ScanError(f"cannot list attributes: {reason(e)}", url=self.url,
                            path=path or "/") from None
        types = {}  # numeric attributes' dtypes, which JSON loses (see NETCDF_KEY)
        for name in names:
            if name in _HIDDEN_ATTRS or _holds_references(obj, name):
                # references have no JSON form, and reading some makes libhdf5 damage its
                # heap (the next scan in the process then fails): not read at all
                continue
            try:
                v = obj.attrs[name]
            except Exception as e:  # a type h5py cannot read: say so rather than drop it
                out[name] = f"<unreadable attribute: {reason(e)}>"
                continue
            if name == "CLASS" and v in (b"DIMENSION_SCALE", "DIMENSION_SCALE"):
                continue
            if name == "NAME" and obj.attrs.get("CLASS") in (b"DIMENSION_SCALE",
                                                            "DIMENSION_SCALE"):
                continue
            if self.netcdf:
                v = _as_netcdf(v)
            out[name] = json_value(v, text_floats=False)
            dt = getattr(v, "dtype", None)
            if dt is not None and dt.kind in "iuf" and dt.fields is None:
                types[name] = dt.str
        return out, types

    # ------------------------------------------------------------------ datasets

    def _fmt_for(self, d):
        fn = d.file.filename
        hit = self._files.get(fn)
        if hit is None:  # an external link into another file
            from chunkview.io.blocks import open_reader

            try:
                r = open_reader(fn)
            except ChunkviewError as e:
                raise UnsupportedError(f"linked file {fn!r} cannot be opened: {reason(e)}") from None
            hit = self._files[fn] = (H.H5File(r, checksums=self.checksums), r.url)
        return hit

    def _dims(self, d, path, shape, array=True):
        names = []
        is_scale = d.attrs.get("CLASS") in (b"DIMENSION_SCALE", "DIMENSION_SCALE")
        ids = []  # the dimension scale of each axis, for netCDF's unlimited dimensions
        for i, n in enumerate(shape):
            name = None
            ident = None
            if is_scale and i == 0:
                name = posixpath.basename(path)
                ident = (d.file.filename, d.name)
            else:
                try:
                    scales = d.dims[i]
                    if len(scales):
                        name = posixpath.basename(scales[0].name)
                        ident = (scales[0].file.filename, scales[0].name)
                except Exception:
                    name = None
            ids.append(ident)
            if name is None:
                key = (posixpath.dirname(path), n)
                name = self._dimnames.get(key)
                if name is None:  # numbered per group, like netCDF-4's phony dimensions
                    k = sum(1 for g, _ in self._dimnames if g == key[0])
                    name = self._dimnames[key] = f"phony_dim_{k}"
            names.append(name)
        if self.netcdf:
            maxshape = d.maxshape or shape
            self.nc.axes(path, ids, shape, [m is None for m in maxshape], array=array)
        return names

    def _dataset(self, d, path, addr):
        import h5py

        dt = d.dtype
        shape = tuple(int(s) for s in (d.shape or ()))
        if d.shape is None:  # a null dataspace: no elements at all
            raise UnsupportedError("dataset with a null dataspace holds no data")
        attrs, types = self._attrs(d, path)
        dimension_only = self.netcdf and (is_dimension_only(d) or
                                          (d.file.filename, d.name) in self._dims_only)
        attrs[DIMENSION_KEY] = self._dims(d, path, shape, array=not dimension_only)
        if dimension_only:
            # a netCDF dimension without a variable: not an array (netCDF-C and kerchunk
            # show none); its length counts towards an unlimited dimension's (finish())
            return
        self._netcdf_facts(d, path, types)
        sinfo = h5py.check_string_dtype(dt)
        if sinfo is not None and sinfo.length is None:
            return self._vlen_strings(d, path, shape, attrs, sinfo)
        if vlen_string_members(dt):
            return self._vlen_string_records(d, path, shape, attrs)
        spec, extra = _zarr_dtype(dt)
        dcpl = d.id.get_create_plist()
        filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
        if not any(int(f[0]) == 5 for f in filters):  # nbit: checked with its parameters
            from chunkview.scan.hdf5.filters import layout_problem

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
        if self.netcdf:
            # zarr's fill_value is what readers mask (xarray reads it as _FillValue): only a
            # _FillValue the file defines; HDF5's implicit fill (netCDF's default fill value)
            # is what never-written chunks hold, and finish() writes those chunks out
            defined = d.attrs.get("_FillValue") if "_FillValue" in d.attrs else None
            if defined is None:
                if fill is not None and fill != 0 and extra == ():
                    self.nc.implicit_fill(path, fill)
                fill = None
            elif extra == ():
                try:
                    fill = fill_json(np.asarray(defined).reshape(-1)[0], base)
                except Exception:  # noqa: BLE001 - a _FillValue of another type: HDF5's
                    pass
        meta = {"zarr_format": 2, "shape": list(shape) + list(extra), "dtype": spec,
                "order": "C", "compressor": None, "filters": None, "fill_value": fill,
                "dimension_separator": "."}
        if extra:
            attrs[DIMENSION_KEY] += [f"{posixpath.basename(path)}_dim_{i}"
                                           for i in range(len(extra))]
        if lay.cls == H.VIRTUAL:
            if extra:
                raise UnsupportedError("virtual dataset of an array type")
            self._virtual(d, path, shape, meta)
            self.out.inline[_k(path, ".zarray")] = _json(meta)
            self.out.inline[_k(path, ".zattrs")] = _json_attrs(attrs)
            return
        nexternal = dcpl.get_external_count() if lay.cls == H.CONTIGUOUS else 0
        regions = _string_regions(d.id.get_type())
        strpad = [{"id": "hdf5_strpad", "itemsize": itemsize, "regions": regions}] \
            if regions else []
        meta["filters"] = strpad or None
        if lay.cls == H.CHUNKED:
            meta["chunks"] = list(lay.chunk) + list(extra)
            if filters:
                from chunkview.scan.hdf5.filters import codecs_for

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
        self.out.inline[_k(path, ".zattrs")] = _json_attrs(attrs)

    def _netcdf_facts(self, obj, path, types, dataset=True):
        """What netCDF readers see that zarr metadata cannot say, under NETCDF_KEY."""
        facts = {}
        if types:
            facts["attrs"] = types
        if dataset:
            try:
                if "_FillValue" not in obj.attrs:
                    facts["_FillValue"] = False
                    # HDF5's fill value (netCDF's default fill): what a Zarr v3 fill_value,
                    # which every array has, says for it (chunkview.refs.zarr3)
                    dt = obj.dtype
                    if dt.fields is None and dt.subdtype is None and dt.kind in "biuf":
                        facts["fill"] = fill_json(obj.fillvalue, dt)
                if is_dimension_only(obj):  # (in netCDF files these are not arrays at all)
                    facts["dimension_only"] = True
            except Exception:  # noqa: BLE001 - unreadable attributes were reported by _attrs
                pass
        if facts:
            self.out.inline[_k(path, NETCDF_KEY)] = _json(facts)


def _holds_references(obj, name) -> bool:
    """Whether attribute ``name`` of ``obj`` holds HDF5 references (anywhere in its type),
    asked of its datatype without reading its values."""
    import h5py

    try:
        aid = h5py.h5a.open(obj.id, name.encode() if isinstance(name, str) else name)
        return _type_has_references(aid.get_type())
    except Exception:  # noqa: BLE001 - unreadable: _attrs reports it
        return False


def _type_has_references(tid, depth=0) -> bool:
    import h5py

    h5t = h5py.h5t
    cls = tid.get_class()
    if cls == h5t.REFERENCE:
        return True
    if depth > 16:
        return False
    if cls == h5t.COMPOUND:
        return any(_type_has_references(tid.get_member_type(i), depth + 1)
                   for i in range(tid.get_nmembers()))
    if cls in (h5t.ARRAY, h5t.VLEN):
        return _type_has_references(tid.get_super(), depth + 1)
    return False


def _as_netcdf(v):
    """An attribute value as netCDF4-python reports it: a one-element array as a scalar, text
    decoded as UTF-8 with replacement characters, an empty text attribute as ''."""
    if isinstance(v, np.ndarray) and v.shape == (1,):
        v = v[0]
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", "replace")
    if type(v).__name__ == "Empty" and getattr(v, "dtype", None) is not None and \
            v.dtype.kind in "SUO":
        return ""
    return v


def scan(reader, *, inline_threshold: int = 0, chunk_bytes: int = 4 << 20,
         checksums: bool = True) -> ScanOutput:
    """Scan the HDF5 / NetCDF4 file behind ``reader`` (the :class:`chunkview.scan.output.Scanner`
    contract); ``checksums=False`` skips the metadata checksums (for the fuzz tests, which
    attack the structures behind them)."""
    return HDF5Scanner(reader, inline_threshold=inline_threshold, chunk_bytes=chunk_bytes,
                       checksums=checksums).scan()
