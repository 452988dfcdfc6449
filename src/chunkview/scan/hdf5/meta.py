"""HDF5 metadata as zarr v2 metadata (dtypes, fill values, JSON values, chunk keys), and the
address behind a link."""


from __future__ import annotations

import base64
import json

import numpy as np

from chunkview.errors import ScanError, UnsupportedError, reason
from chunkview.scan.common import json_value


def _json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _json_attrs(obj) -> str:
    """Attributes as zarr writes them: NaN and infinities as JSON's NaN/Infinity tokens."""
    return json.dumps(obj, separators=(",", ":"))


# ---------------------------------------------------------------------- JSON values


def fill_json(fill, dtype: np.dtype):
    """HDF5's fill value as a zarr v2 ``fill_value``."""
    if fill is None:
        return None
    if dtype.kind in "SV" or dtype.fields is not None:
        # field by field into zeros: the padding of a compound type with gaps is not data, and
        # h5py's fill value carries whatever memory libhdf5 left there
        arr = np.zeros((), dtype=dtype)
        arr[()] = fill
        raw = arr.tobytes()
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
        array = sub.subdtype is not None
        if array:  # an array member: what its elements are
            sub = sub.subdtype[0]
        if h5py.check_vlen_dtype(sub) is not None or h5py.check_ref_dtype(sub) is not None or \
                sub.kind == "O":
            what = "an array of variable-length data or references" if array else \
                "variable-length or a reference"
            raise UnsupportedError(f"compound member {name!r} is {what}")
        if sub.fields is not None:
            _check_fields(sub)


def vlen_string_members(dt) -> list:
    """The top-level members of compound ``dt`` that are variable-length strings (read at scan
    time and stored as fixed-width bytes, as variable-length string datasets are)."""
    import h5py

    if dt.fields is None:
        return []
    out = []
    for name in dt.names:
        sub = dt.fields[name][0]
        info = h5py.check_string_dtype(sub)
        if info is not None and info.length is None:
            out.append(name)
    return out


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


def _shift_key(key, lead, shift):
    """A source chunk key moved to its place in a virtual dataset's chunk grid."""
    idx = [0] * lead + [int(x) for x in key.split(".")] if key != "0" or len(shift) > lead \
        else [0] * lead
    idx = idx[-len(shift):] if len(idx) > len(shift) else idx
    return ".".join(str(i + int(s)) for i, s in zip(idx, shift)) if len(shift) else "0"


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
            raise ScanError(f"cannot read link {part!r}: {reason(e)}",
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


