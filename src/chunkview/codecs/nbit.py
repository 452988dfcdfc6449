"""``hdf5_nbit`` (5): H5Znbit.c (integer, float, array and compound types), in numpy.

nbit with a reduced-precision type decodes to the *values* HDF5 converts to when reading
(integers sign-extended and shifted down by their bit offset; reduced floats converted to IEEE
with their HDF5 field layout, given as ``float_fields``), which is what h5py returns for the
dataset's numpy dtype.
"""


from __future__ import annotations

import numpy as np
from numcodecs.abc import Codec

from chunkview.codecs.common import (
    _extract,
    _fail,
    _finish,
    _output_check,
    _pack,
    _u8,
    dtype_from_json,
)

_NBIT_ATOMIC, _NBIT_ARRAY, _NBIT_COMPOUND, _NBIT_NOOP = 1, 2, 3, 4
_NBIT_MAX_DEPTH = 32
_NBIT_MAX_LEAVES = 1 << 16

# (sign pos, exponent pos, exponent size, mantissa pos, mantissa size, bias) of IEEE floats
IEEE_FIELDS = {2: (15, 10, 5, 0, 10, 15), 4: (31, 23, 8, 0, 23, 127), 8: (63, 52, 11, 0, 52, 1023)}


class NBitError(ValueError):
    pass


class NBitAtomic:
    __slots__ = ("idx", "size", "order", "prec", "off")

    def __init__(self, idx, size, order, prec, off):
        if size == 0:
            raise NBitError("atomic type of size 0")
        if order not in (0, 1):
            raise NBitError(f"invalid byte order {order}")
        if prec == 0 or prec > size * 8 or prec + off > size * 8:
            raise NBitError(f"invalid precision/offset {prec}/{off} for size {size}")
        self.idx, self.size, self.order, self.prec, self.off = idx, size, order, prec, off


class NBitArray:
    __slots__ = ("size", "count", "base")

    def __init__(self, size, count, base):
        self.size, self.count, self.base = size, count, base


class NBitCompound:
    __slots__ = ("size", "members")

    def __init__(self, size, members):
        self.size, self.members = size, members


class NBitNoop:
    __slots__ = ("size",)

    def __init__(self, size):
        self.size = size


def nbit_parse(cd: list[int]):
    """Parse nbit cd_values into a type tree, with the checks H5Znbit.c makes.  Returns
    (need_not_compress, nelmts, tree)."""
    n = len(cd)
    if n < 5:
        raise NBitError(f"nbit takes at least 5 cd_values, got {n}")
    if cd[0] != n:
        raise NBitError(f"cd_values[0] = {cd[0]} but there are {n} values")
    if cd[1]:
        return True, cd[2], None
    if cd[4] == 0:
        raise NBitError("datatype size 0")

    def need(i, k):
        if i + k > n:
            raise NBitError("parameter list is shorter than the datatype it describes")

    def array(i, depth):
        if depth > _NBIT_MAX_DEPTH:
            raise NBitError("datatype nested too deeply")
        need(i, 2)
        total, cls = cd[i], cd[i + 1]
        i += 2
        if cls == _NBIT_ATOMIC:
            need(i, 4)
            base = NBitAtomic(i, *cd[i:i + 4])
            i += 4
            bsize = base.size
        elif cls == _NBIT_ARRAY:
            need(i, 1)
            bsize = cd[i]
            base, i = array(i, depth + 1)
        elif cls == _NBIT_COMPOUND:
            need(i, 1)
            bsize = cd[i]
            base, i = compound(i, depth + 1)
        elif cls == _NBIT_NOOP:
            need(i, 1)
            i += 1
            return NBitNoop(total), i
        else:
            raise NBitError(f"unknown datatype class {cls}")
        if bsize == 0:
            raise NBitError("array base type of size 0")
        return NBitArray(total, total // bsize, base), i

    def compound(i, depth):
        if depth > _NBIT_MAX_DEPTH:
            raise NBitError("datatype nested too deeply")
        need(i, 2)
        size, nmembers = cd[i], cd[i + 1]
        i += 2
        members, used = [], 0
        for _ in range(nmembers):
            need(i, 3)
            moff, mcls, msize = cd[i], cd[i + 1], cd[i + 2]
            i += 2
            if msize == 0 or used + msize > size or moff + msize > size:
                raise NBitError("compound member overflows the compound size")
            used += msize
            if mcls == _NBIT_ATOMIC:
                need(i, 4)
                node = NBitAtomic(i, msize, cd[i + 1], cd[i + 2], cd[i + 3])
                i += 4
            elif mcls == _NBIT_ARRAY:
                node, i = array(i, depth + 1)
            elif mcls == _NBIT_COMPOUND:
                node, i = compound(i, depth + 1)
            elif mcls == _NBIT_NOOP:
                i += 1
                node = NBitNoop(msize)
            else:
                raise NBitError(f"unknown datatype class {mcls}")
            members.append((moff, node))
        return NBitCompound(size, members), i

    cls = cd[3]
    if cls == _NBIT_ATOMIC:
        need(4, 4)
        tree = NBitAtomic(4, *cd[4:8])
    elif cls == _NBIT_ARRAY:
        tree, _ = array(4, 0)
    elif cls == _NBIT_COMPOUND:
        tree, _ = compound(4, 0)
    else:
        raise NBitError(f"unknown datatype class {cls}")
    return False, cd[2], tree


class _Leaf:
    """``count`` consecutive values of one atomic (or raw byte) type in each element:
    byte offset, bit offset in the element's packed bits."""

    __slots__ = ("kind", "node", "byte", "count", "bit", "nbits", "fields")

    def __init__(self, kind, node, byte, count, bit, nbits, fields=None):
        self.kind, self.node, self.byte, self.count = kind, node, byte, count
        self.bit, self.nbits, self.fields = bit, nbits, fields


def _np_base(dt):
    while dt is not None and dt.subdtype is not None:
        dt = dt.subdtype[0]
    return dt


def _member_dtype(dt, moff, msize):
    if dt is None or dt.names is None:
        return None
    for name in dt.names:
        fdt, foff = dt.fields[name][:2]
        if foff == moff and fdt.itemsize == msize:
            return fdt
    return None


def _nbit_layout(tree, dtype, float_fields):
    """Flatten a type tree into leaves.  Returns (leaves, bits per element)."""
    leaves: list[_Leaf] = []
    bit = 0

    def add(leaf):
        nonlocal bit
        leaves.append(leaf)
        bit += leaf.count * leaf.nbits
        if len(leaves) > _NBIT_MAX_LEAVES:
            raise NBitError("datatype has too many members")

    def atomic(node, dt, byte, count):
        base = _np_base(dt)
        kind = base.kind if base is not None and base.kind in "iuf" else "x"
        fields = float_fields.get(node.idx) if kind == "f" else None
        if node.size > 8:
            if node.prec != node.size * 8 or node.off != 0:
                raise NBitError(f"reduced-precision {node.size}-byte types are not supported")
            add(_Leaf("wide", node, byte, count * node.size, bit, 8))
            return
        # a reduced float without its field layout is read as a truncated IEEE float (sign
        # and exponent in place, low mantissa bits dropped)
        add(_Leaf(kind, node, byte, count, bit, node.prec, fields))

    def walk(node, dt, byte, depth):
        if depth > _NBIT_MAX_DEPTH:
            raise NBitError("datatype nested too deeply")
        if isinstance(node, NBitAtomic):
            atomic(node, dt, byte, 1)
        elif isinstance(node, NBitNoop):
            add(_Leaf("raw", node, byte, node.size, bit, 8))
        elif isinstance(node, NBitArray):
            bdt = dt.subdtype[0] if dt is not None and dt.subdtype is not None else dt
            if isinstance(node.base, NBitAtomic):
                atomic(node.base, bdt, byte, node.count)
            else:
                bsize = node.base.size
                if node.count > _NBIT_MAX_LEAVES:
                    raise NBitError("datatype has too many members")
                for k in range(node.count):
                    walk(node.base, bdt, byte + k * bsize, depth + 1)
        else:
            for moff, child in node.members:
                size = child.size
                walk(child, _member_dtype(dt, moff, size), byte + moff, depth + 1)

    walk(tree, dtype, 0, 0)
    return leaves, bit


def _leaf_values_to_bytes(leaf: _Leaf, field: np.ndarray) -> np.ndarray:
    """The bytes (m, size) of ``field`` (m uint64 values of ``leaf.nbits`` bits)."""
    node = leaf.node
    size, prec, off = node.size, node.prec, node.off
    order = "<" if node.order == 0 else ">"
    if leaf.kind == "i" and prec < 64:
        sign = np.uint64(1 << (prec - 1))
        word = (field ^ sign) - sign
    elif leaf.kind == "f":
        if leaf.fields is not None:
            word = _float_from_fields(field << np.uint64(off), leaf.fields, size, order)
            return word.reshape(-1, size)
        word = field << np.uint64(off)
    elif leaf.kind in ("i", "u"):
        word = field
    else:  # not a numpy number: the raw bits in place
        word = field << np.uint64(off)
    b = word.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :size]
    return b[:, ::-1] if order == ">" else b


def _float_from_fields(raw: np.ndarray, fields, size: int, order: str) -> np.ndarray:
    """IEEE floats (as bytes) of HDF5 floats with the given bit fields (H5T_conv_f_f)."""
    spos, epos, esize, mpos, msize, ebias, norm = fields
    if (spos, epos, esize, mpos, msize, ebias) == IEEE_FIELDS.get(size) and norm == 0:
        out = raw.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :size]
        return np.ascontiguousarray(out[:, ::-1] if order == ">" else out).reshape(-1)
    one = np.uint64(1)
    s = (raw >> np.uint64(spos)) & one
    e = ((raw >> np.uint64(epos)) & np.uint64((1 << esize) - 1)).astype(np.int64)
    m = (raw >> np.uint64(mpos)) & np.uint64((1 << msize) - 1)
    emax = (1 << esize) - 1
    mf = m.astype(np.float64)
    with np.errstate(all="ignore"):
        if norm == 0:  # implied leading 1
            normal = np.ldexp(mf + float(1 << msize), (e - ebias - msize).astype(np.int32))
            sub = np.ldexp(mf, np.full(e.shape, 1 - ebias - msize, np.int32))
            val = np.where(e == 0, sub, normal)
        elif norm == 1:  # leading 1 stored
            val = np.ldexp(mf, (e - ebias - (msize - 1)).astype(np.int32))
        else:
            val = np.ldexp(mf, (e - ebias - msize).astype(np.int32))
        val = np.where(e == emax, np.where(m == 0, np.inf, np.nan), val)
        val = np.where(s == one, -val, val)
        res = val.astype(f"{order}f{size}")
    return res.view(np.uint8)


class HDF5NBit(Codec):
    """HDF5's N-bit filter (5), H5Znbit.c.  ``cd_values`` are the filter's stored parameters
    (count, no-op flag, elements per chunk, then the datatype description: class, size, byte
    order, precision and bit offset of each atomic member, member offsets of compounds, ...).
    ``dtype`` (a :func:`dtype_to_json` description) tells signed from unsigned integers and
    integers from floats; ``float_fields`` lists, for reduced-precision floats, ``[cd index,
    sign pos, exponent pos, exponent size, mantissa pos, mantissa size, exponent bias, norm]``
    (the HDF5 float layout, from ``H5Tget_fields``).

    The packed stream holds each element's significant bits (``precision`` bits at
    ``offset``) member by member, most significant bit first, with no padding; no-op members
    (strings, enums, opaque, ...) are copied whole."""

    codec_id = "hdf5_nbit"

    def __init__(self, cd_values, dtype=None, float_fields=None):
        self.cd_values = [int(c) & 0xFFFFFFFF for c in cd_values]
        self.dtype = dtype
        self.float_fields = [list(map(int, f)) for f in float_fields] if float_fields else None
        self._np_dtype = dtype_from_json(dtype) if dtype is not None else None
        try:
            self._passthrough, self.nelmts, tree = nbit_parse(self.cd_values)
        except NBitError as e:
            raise ValueError(f"invalid nbit parameters: {e}") from None
        if self._passthrough:
            self._leaves, self._ebits, self._esize = [], 0, 0
            return
        ff = {f[0]: tuple(f[1:8]) for f in (self.float_fields or [])}
        try:
            self._leaves, self._ebits = _nbit_layout(tree, self._np_dtype, ff)
        except NBitError as e:
            raise ValueError(f"unsupported nbit datatype: {e}") from None
        self._esize = tree.size
        for leaf in self._leaves:
            width = 1 if leaf.kind in ("raw", "wide") else leaf.node.size
            if leaf.byte + leaf.count * width > self._esize:
                raise ValueError("invalid nbit parameters: a member lies outside its element")

    def decode(self, buf, out=None):
        name = self.codec_id
        data = _u8(buf)
        if self._passthrough:
            return _finish(data, out)
        n, E, esize = self.nelmts, self._ebits, self._esize
        _output_check(name, n * esize)
        if data.size * 8 < n * E:
            raise _fail(name, f"truncated: {data.size} bytes for {n} elements of {E} bits")
        res = np.zeros((n, esize), dtype=np.uint8)
        base = np.arange(n, dtype=np.int64) * E
        for leaf in self._leaves:
            c = leaf.count
            starts = (base[:, None] + (leaf.bit + np.arange(c, dtype=np.int64)
                                       * leaf.nbits)[None, :]).reshape(-1)
            field = _extract(data, starts, leaf.nbits)
            if leaf.kind in ("raw", "wide"):
                b = field.astype(np.uint8).reshape(n, c)
                if leaf.kind == "wide" and leaf.node.order == 0:
                    sz = leaf.node.size
                    b = b.reshape(n, c // sz, sz)[:, :, ::-1].reshape(n, c)
                res[:, leaf.byte:leaf.byte + c] = b
                continue
            size = leaf.node.size
            b = _leaf_values_to_bytes(leaf, field).reshape(n, c * size)
            res[:, leaf.byte:leaf.byte + c * size] = b
        return _finish(res.reshape(-1), out)

    def encode(self, buf):
        data = _u8(buf)
        if self._passthrough:
            return data.tobytes()
        n, esize = self.nelmts, self._esize
        if data.size != n * esize:
            raise ValueError(f"expected {n * esize} bytes, got {data.size}")
        elems = data.reshape(n, esize)
        cols = []
        for leaf in self._leaves:
            c = leaf.count
            if leaf.kind in ("raw", "wide"):
                b = elems[:, leaf.byte:leaf.byte + c]
                if leaf.kind == "wide" and leaf.node.order == 0:
                    sz = leaf.node.size
                    b = b.reshape(n, c // sz, sz)[:, :, ::-1].reshape(n, c)
                cols.append((b.astype(np.uint64), 8))
                continue
            node = leaf.node
            if leaf.kind == "f" and leaf.fields is not None and \
                    tuple(leaf.fields[:6]) != IEEE_FIELDS.get(node.size):
                raise NotImplementedError("nbit encode of non-IEEE float layouts")
            size = node.size
            b = elems[:, leaf.byte:leaf.byte + c * size].reshape(n * c, size)
            if node.order == 1:
                b = b[:, ::-1]
            word = np.zeros((n * c, 8), np.uint8)
            word[:, :size] = b
            w = word.view("<u8").reshape(-1)
            mask = np.uint64((1 << node.prec) - 1) if node.prec < 64 else np.uint64(2**64 - 1)
            if leaf.kind in ("i", "u"):
                field = w & mask
            elif leaf.kind == "f" and leaf.fields is not None and node.prec == node.size * 8:
                field = w
            else:
                field = (w >> np.uint64(node.off)) & mask
            cols.append((field.reshape(n, c), node.prec))
        return (_pack(cols, n).tobytes() + b"\0") if cols else b""

    def get_config(self):
        cfg = {"id": self.codec_id, "cd_values": list(self.cd_values), "dtype": self.dtype}
        if self.float_fields:
            cfg["float_fields"] = [list(f) for f in self.float_fields]
        return cfg

    def __repr__(self):
        return f"HDF5NBit(cd_values={self.cd_values}, dtype={self.dtype!r})"
