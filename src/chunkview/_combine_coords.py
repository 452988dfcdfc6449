"""The coordinate of a combine: labels from file names, values checked and encoded like the
inputs' own (CF time units and calendars), and the zarr array that holds them."""


from __future__ import annotations

import os
import re

import numpy as np

from chunkview.errors import CombineError
from chunkview.keys import (
    DIMENSION_KEY,
)
from chunkview.read.meta import dtype_of

# attributes that change what the stored numbers mean: they must agree between files

def _time_codec(attrs: dict):
    units = attrs.get("units")
    if not isinstance(units, str) or " since " not in units:
        return None
    return units, str(attrs.get("calendar", "standard"))


def _encode_like(values, attrs, first_attrs, name, first_name, path):
    """``values`` (encoded with ``attrs``) re-encoded with ``first_attrs`` (CF time units
    decoded and re-encoded with cftime); identical units need no work."""
    a, b = _time_codec(attrs), _time_codec(first_attrs)
    if a == b:
        return np.asarray(values, dtype=np.float64)
    if a is None or b is None:
        raise CombineError(f"coordinate {path!r}: units {attrs.get('units')!r} in {name} "
                           f"and {first_attrs.get('units')!r} in {first_name} cannot be "
                           "compared")
    if _cal(a[1]) != _cal(b[1]):
        raise CombineError(f"coordinate {path!r}: calendar {a[1]!r} in {name} differs from "
                           f"{b[1]!r} in {first_name}")
    try:
        import cftime
    except ImportError:
        raise ImportError("combining files whose time units differ needs cftime: "
                          "pip install 'chunkview[xarray]' (or pip install cftime)") from None
    try:
        dates = cftime.num2date(np.asarray(values), a[0], a[1],
                                only_use_cftime_datetimes=True)
        return np.asarray(cftime.date2num(dates, b[0], b[1]), dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise CombineError(f"coordinate {path!r} of {name}: cannot decode times with units "
                           f"{a[0]!r}, calendar {a[1]!r}: {e}") from None


def _cal(c: str) -> str:
    c = c.lower()
    return "standard" if c in ("standard", "gregorian") else c


# ------------------------------------------------------------------ building the output


def _check_increasing(values, names, dim):
    allv = np.concatenate(values)
    bad = np.flatnonzero(~(np.diff(allv) > 0))
    if bad.size:
        j = int(bad[0])
        ends = np.cumsum([len(v) for v in values])
        f = int(np.searchsorted(ends, j, side="right"))
        g = int(np.searchsorted(ends, j + 1, side="right"))
        raise CombineError(f"coordinate {dim!r} is not strictly increasing across the files: "
                           f"{float(allv[j])} in {names[f]} then {float(allv[j + 1])} in "
                           f"{names[g]} "
                           "(overlapping or repeated values)")


def _regex_labels(names, regex):
    pat = re.compile(regex)
    labels = []
    for name in names:
        m = pat.search(os.path.basename(name.rstrip("/"))) or pat.search(name)
        if m is None:
            raise CombineError(f"regex {regex!r} does not match {name}")
        labels.append(m.group(1) if m.groups() else m.group(0))
    if all(re.fullmatch(r"[+-]?\d+", x) for x in labels):
        labels = [int(x) for x in labels]
    elif all(_is_float(x) for x in labels):
        labels = [float(x) for x in labels]
    if len(set(labels)) != len(labels):
        raise CombineError(f"regex {regex!r} gives the same value to several inputs")
    return labels


def _is_float(x: str) -> bool:
    try:
        float(x)
        return True
    except ValueError:
        return False


def _coord_array(meta: dict, values: np.ndarray):
    """The concatenated coordinate as one uncompressed inline chunk: its dtype kept when
    every value fits it exactly, else float64."""
    dt = dtype_of(meta["dtype"])
    if dt.kind in "iu" and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        cast = values.astype(dt)
        if np.array_equal(cast.astype(np.float64), values):
            out = cast
        else:
            out = values
    elif dt.kind == "f":
        out = values.astype(dt)
        if not np.array_equal(out.astype(np.float64), values):
            out = values
    else:
        out = values
    out = np.ascontiguousarray(out)
    meta = dict(meta, shape=[len(out)], chunks=[max(1, len(out))], compressor=None,
                filters=None, dtype=out.dtype.str, order="C")
    return meta, out.tobytes()


def _new_coord(dim: str, coords):
    vals = np.asarray(list(coords))
    if vals.dtype.kind in "iub":
        vals = vals.astype(np.int64)
        fill = None
    elif vals.dtype.kind == "f":
        vals = vals.astype(np.float64)
        fill = "NaN"
    elif vals.dtype.kind in "US":
        vals = vals.astype("U")
        fill = None
    else:
        raise CombineError(f"coordinate values for {dim!r} must be numbers or strings")
    vals = np.ascontiguousarray(vals)
    meta = {"zarr_format": 2, "shape": [len(vals)], "chunks": [max(1, len(vals))],
            "dtype": vals.dtype.str, "compressor": None, "filters": None, "fill_value": fill,
            "order": "C", "dimension_separator": "."}
    return meta, vals.tobytes(), {DIMENSION_KEY: [dim]}


