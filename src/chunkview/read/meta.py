"""zarr v2 metadata as every reader needs it: a key's JSON, dtypes, fill values.

The one place that says which dtypes chunkview's own decoder reads (:func:`reads_with_zarr`):
object dtypes (variable-length strings) are read through zarr (``chunkview.open_zarr``)."""


from __future__ import annotations

import base64
import json

import numpy as np

from chunkview.errors import ReferenceFormatError, UnsupportedError


def json_of(refs, key: str, source=None):
    raw = refs.get(key)
    if raw is None:
        return None
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ReferenceFormatError(f"metadata key {key!r} is a reference to a file range, "
                                   "not inline JSON", key=key, source=source)
    try:
        return json.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError) as e:
        raise ReferenceFormatError(f"invalid JSON metadata: {e}", key=key, source=source) from None
    except RecursionError:
        raise ReferenceFormatError("invalid JSON metadata: nested too deeply", key=key,
                                   source=source) from None


def dtype_of(spec) -> np.dtype:
    if isinstance(spec, list):
        return np.dtype([tuple(_field(f)) for f in spec])
    return np.dtype(spec)


def _field(f):
    name, typ = f[0], f[1]
    typ = dtype_of(typ) if isinstance(typ, list) else typ
    return (name, typ, tuple(f[2])) if len(f) > 2 else (name, typ)


# zarr v2 JSON's spelling of the floats JSON has no literal for
JSON_FLOATS = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}


def fill_bytes(fill, dtype: np.dtype, bad=None):
    """The fill value as itemsize bytes, or None for zeros (zarr v2 ``null``)."""
    if fill is None:
        return None
    try:
        if dtype.kind in "SV" or dtype.fields is not None:
            if isinstance(fill, str):
                raw = base64.standard_b64decode(fill)
                return raw.ljust(dtype.itemsize, b"\0")[: dtype.itemsize]
            if fill == 0:
                return None
        if isinstance(fill, str):
            fill = JSON_FLOATS.get(fill, fill)
        if dtype.kind == "c" and isinstance(fill, list):
            if len(fill) != 2:
                raise ValueError("a complex fill value is [real, imag]")
            fill = complex(fill[0], fill[1])
        arr = np.array(fill, dtype=dtype)
        if arr.ndim:
            raise ValueError(f"not a single value of shape {arr.shape}")
        return arr.tobytes()
    except (TypeError, ValueError, OverflowError) as e:
        what = f"fill value {fill!r} does not fit dtype {dtype}: {e}"
        if bad is not None:
            raise bad(what) from None
        raise ReferenceFormatError(what) from None


# ------------------------------------------------------------------ selections




def reads_with_zarr(dtype) -> bool:
    """Whether arrays of ``dtype`` are read through zarr rather than the C decoder (object
    dtypes: variable-length strings)."""
    return bool(dtype.hasobject)


def zarr_only_error(path: str):
    """The error of reading an object-dtype array with the direct API."""
    return UnsupportedError(f"array {path!r} has object dtype; read it with zarr "
                            "(chunkview.open_zarr)")
