"""``hdf5_scaleoffset`` (6): H5Zscaleoffset.c (integer and float D-scale), in numpy.

scaleoffset stores values (and full-precision chunks) in the writer's native byte order, which
is assumed little-endian (every platform HDF5 builds on today).
"""


from __future__ import annotations

import struct

import numpy as np
from numcodecs.abc import Codec

from chunkview.codecs.common import (
    _extract,
    _fail,
    _finish,
    _output_check,
    _pack,
    _u8,
)

_SO_FLOAT_DSCALE, _SO_FLOAT_ESCALE, _SO_INT = 0, 1, 2
_SO_HEADER = 21


def _pow10(ftype, d: int):
    """10**d as HDF5 computes it: powf for float, pow for double."""
    if ftype is np.float64:
        return np.float64(10.0 ** d)
    return np.float32(np.power(np.float32(10), np.float32(d)))


def _lround(x):
    """C lround: halves away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _so_fill_bytes(cd: list[int], size: int) -> bytes:
    """The fill value HDF5 stored in cd_values[8:] (native = little-endian byte order)."""
    raw = b"".join((c & 0xFFFFFFFF).to_bytes(4, "little") for c in cd[8:20])
    return raw[:size]


class HDF5ScaleOffset(Codec):
    """HDF5's scale-offset filter (6), H5Zscaleoffset.c.  ``cd_values`` are the filter's 20
    stored parameters: scale type, scale factor, elements per chunk, class (0 integer,
    1 float), size, sign, byte order, fill-value flag and the fill value.

    A chunk is a 21-byte header (minimum bits as a 32-bit LE integer, the byte count of the
    minimum value, the minimum value LE) and each element's ``minbits`` low bits, most
    significant first.  Integers decode to ``v + min`` (all-ones: the fill value), floats
    (D-scale) to ``v / 10**D + min`` in the float's own precision, as HDF5 computes it."""

    codec_id = "hdf5_scaleoffset"

    def __init__(self, cd_values):
        cd = [int(c) & 0xFFFFFFFF for c in cd_values]
        if len(cd) != 20:
            raise ValueError(f"scaleoffset takes 20 cd_values, got {len(cd)}")
        self.cd_values = cd
        self.scale_type = cd[0]
        sf = cd[1]
        self.scale_factor = sf - (1 << 32) if sf >= 1 << 31 else sf
        self.nelmts = cd[2]
        self.cls = cd[3]
        self.size = cd[4]
        self.signed = cd[5] == 1
        self.order = "<" if cd[6] == 0 else ">"
        self.filavail = cd[7] == 1
        if self.cls == 0:
            if self.size not in (1, 2, 4, 8):
                raise ValueError(f"scaleoffset: unsupported integer size {self.size}")
            self.dtype = np.dtype(f"{self.order}{'i' if self.signed else 'u'}{self.size}")
        elif self.cls == 1:
            if self.size not in (4, 8):
                raise ValueError(f"scaleoffset: unsupported float size {self.size}")
            self.dtype = np.dtype(f"{self.order}f{self.size}")
        else:
            raise ValueError(f"scaleoffset: unsupported datatype class {self.cls}")

    # -- decode

    def _mode(self):
        """'int', 'float' or 'copy' (integer with minbits = full precision: no processing)."""
        name = self.codec_id
        if self.cls == 1:
            if self.scale_type == _SO_FLOAT_ESCALE:
                raise _fail(name, "E-scale (fixed minimum bits) is not supported by HDF5")
            if self.scale_type != _SO_FLOAT_DSCALE:
                raise _fail(name, f"invalid scale type {self.scale_type} for a float type")
            return "float"
        if self.scale_type != _SO_INT:
            raise _fail(name, f"invalid scale type {self.scale_type} for an integer type")
        sf = max(self.scale_factor, 0)
        if sf > self.size * 8:
            raise _fail(name, f"minimum bits {sf} exceed the type's {self.size * 8}")
        return "copy" if sf == self.size * 8 else "int"

    def decode(self, buf, out=None):
        name = self.codec_id
        mode = self._mode()
        data = _u8(buf)
        if mode == "copy":
            return _finish(data, out)
        n, size = self.nelmts, self.size
        _output_check(name, n * size)
        if data.size < _SO_HEADER:
            raise _fail(name, f"{data.size} bytes, shorter than the 21-byte header")
        minbits = int.from_bytes(data[:4].tobytes(), "little")
        if minbits > size * 8:
            raise _fail(name, f"minimum bits {minbits} exceed the type's {size * 8}")
        mvsize = min(8, int(data[4]))
        minval = int.from_bytes(data[5:5 + mvsize].tobytes(), "little")
        payload = data[_SO_HEADER:]
        native = self.dtype.newbyteorder("<")
        if minbits == size * 8:  # stored as is, in the writer's (little-endian) order
            if payload.size < n * size:
                raise _fail(name, f"truncated: {payload.size} bytes for {n} full-size values")
            vals = payload[: n * size].view(native)
            return _finish(vals.astype(self.dtype).view(np.uint8), out)
        if payload.size * 8 < n * minbits:
            raise _fail(name, f"truncated: {payload.size} bytes for {n} values of "
                              f"{minbits} bits")
        v = _extract(payload, np.arange(n, dtype=np.int64) * minbits, minbits)
        fill_marker = np.uint64((1 << minbits) - 1)
        fill = np.frombuffer(_so_fill_bytes(self.cd_values, size), native)[0]
        if self.cls == 0:
            mask = np.uint64((1 << (size * 8)) - 1)
            res = ((v + np.uint64(minval)) & mask).astype(f"<u{size}").view(native)
            if self.filavail:
                res = np.where(v == fill_marker, fill, res).astype(native)
        else:
            ftype = np.float32 if size == 4 else np.float64
            itype = np.int32 if size == 4 else np.int64
            fmin = np.frombuffer(minval.to_bytes(8, "little")[:size], native)[0]
            scale = _pow10(ftype, self.scale_factor)
            with np.errstate(all="ignore"):
                res = (v.astype(itype).astype(ftype) / scale + ftype(fmin)).astype(ftype)
            if self.filavail:
                res = np.where(v == fill_marker, ftype(fill), res).astype(ftype)
        return _finish(np.ascontiguousarray(res.astype(self.dtype)).view(np.uint8), out)

    # -- encode (as H5Zscaleoffset.c computes it)

    def encode(self, buf):
        mode = self._mode()
        data = _u8(buf)
        if mode == "copy":
            return data.tobytes()
        n, size = self.nelmts, self.size
        vals = data.view(self.dtype).astype(self.dtype.newbyteorder("="))
        if vals.size != n:
            raise ValueError(f"expected {n} elements, got {vals.size}")
        fill = np.frombuffer(_so_fill_bytes(self.cd_values, size),
                             self.dtype.newbyteorder("<"))[0]
        if self.cls == 0:
            minbits, minval, packed = self._encode_int(vals, fill)
        else:
            minbits, minval, packed = self._encode_float(vals, fill)
        header = struct.pack("<IB", minbits, 8) + (minval & (2**64 - 1)).to_bytes(8, "little")
        header += bytes(8)
        if minbits == size * 8:
            body = vals.astype(self.dtype.newbyteorder("<")).tobytes()
        else:
            body = packed.tobytes() + b"\0"
        return header + body

    @staticmethod
    def _log2ceil(x: int) -> int:
        return 0 if x <= 1 else (x - 1).bit_length()

    def _encode_int(self, vals, fill):
        size = self.size
        keep = vals != fill if self.filavail else np.ones(vals.shape, bool)
        sel = vals[keep]
        lo = int(sel.min()) if sel.size else 0
        hi = int(sel.max()) if sel.size else 0
        user = max(self.scale_factor, 0)
        if user == 0:
            if hi - lo > 2 ** (size * 8) - 3:
                return size * 8, 0, None
            span = hi - lo + 1
            minbits = self._log2ceil(span + 1 if self.filavail else span)
        else:
            minbits = user
        bits = vals.astype(f"=u{size}" if vals.dtype.kind == "u" else f"=i{size}")
        u = bits.view(f"=u{size}").astype(np.uint64)
        v = (u - np.uint64(lo % (1 << 64))) & np.uint64((1 << (size * 8)) - 1)
        if self.filavail:
            v[~keep] = (1 << minbits) - 1
        packed = _pack([(v, minbits)], vals.size) if minbits else np.zeros(0, np.uint8)
        return minbits, lo % (1 << 64), packed

    def _encode_float(self, vals, fill):
        size = self.size
        ftype = np.float32 if size == 4 else np.float64
        p = _pow10(ftype, self.scale_factor)
        with np.errstate(all="ignore"):
            if self.filavail:
                keep = ~(np.abs(vals - ftype(fill)) < _pow10(ftype, -self.scale_factor))
            else:
                keep = np.ones(vals.shape, bool)
            sel = vals[keep]
            lo = ftype(sel.min()) if sel.size else ftype(0)
            hi = ftype(sel.max()) if sel.size else ftype(0)
            if _lround(ftype(hi * p - lo * p)) > ftype(2.0) ** (size * 8 - 1):
                return size * 8, 0, None
            span = int(_lround(ftype(hi * p - lo * p))) + 1
            minbits = self._log2ceil(span + 1 if self.filavail else span)
            if minbits == size * 8:
                return size * 8, 0, None
            q = _lround((vals * p - lo * p).astype(ftype)).astype(np.int64)
        v = q.astype(np.uint64)
        if self.filavail:
            v[~keep] = (1 << minbits) - 1
        packed = _pack([(v, minbits)], vals.size) if minbits else np.zeros(0, np.uint8)
        minval = int.from_bytes(np.array(lo, dtype=f"<f{size}").tobytes(), "little")
        return minbits, minval, packed

    def get_config(self):
        return {"id": self.codec_id, "cd_values": list(self.cd_values)}

    def __repr__(self):
        return f"HDF5ScaleOffset(cd_values={self.cd_values})"


# ------------------------------------------------------------------ nbit

