"""Selection planning: which chunks a selection touches, which part of each, where it goes."""


from __future__ import annotations

import numpy as np


def normalize_selection(selection, shape):
    """Per dimension ``(start, step, count, drop, reverse)`` with step > 0, for integers and
    slices (negative steps become a reversed positive one)."""
    if not isinstance(selection, tuple):
        selection = (selection,)
    n_ell = sum(1 for s in selection if s is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_ell:
        i = next(i for i, s in enumerate(selection) if s is Ellipsis)
        fill = len(shape) - (len(selection) - 1)
        selection = selection[:i] + (slice(None),) * max(fill, 0) + selection[i + 1:]
    if len(selection) > len(shape):
        raise IndexError(f"too many indices: array is {len(shape)}-dimensional, "
                         f"but {len(selection)} were indexed")
    selection = selection + (slice(None),) * (len(shape) - len(selection))
    out = []
    for d, (s, n) in enumerate(zip(selection, shape)):
        if isinstance(s, slice):
            start, stop, step = s.indices(n)
            r = range(start, stop, step)
            if step > 0:
                out.append((start, step, len(r), False, False))
            else:
                out.append((r[-1] if len(r) else 0, -step, len(r), False, True))
        elif isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)):
            i = int(s)
            if i < -n or i >= n:
                raise IndexError(f"index {i} is out of bounds for axis {d} with size {n}")
            out.append((i % n, 1, 1, True, False))
        else:
            raise IndexError("chunkview arrays take integers, slices and '...'; for fancy "
                             "indexing read a slice and index it with numpy, or use zarr "
                             "(chunkview.open_zarr)")
    return out


def dim_plan(start, step, count, c):
    """Chunks of one dimension touched by the selection: (chunk index, start in chunk,
    count, first output position), numpy arrays."""
    last = start + (count - 1) * step
    k = np.arange(start // c, last // c + 1, dtype=np.int64)
    b = k * c
    first = np.where(b <= start, start, start + (-((start - b) // step)) * step)
    end = np.minimum(b + c - 1, last)
    ok = first <= end
    if not ok.all():
        k, b, first, end = k[ok], b[ok], first[ok], end[ok]
    cnt = (end - first) // step + 1
    return k, first - b, cnt, (first - start) // step


def plan_selection(dims, chunks):
    """Cartesian product of the per-dimension plans: (chunk coords (n, ndim), sel (n, ndim, 3),
    output start positions (n, ndim))."""
    per = [dim_plan(s, st, cnt, c) for (s, st, cnt, _, _), c in zip(dims, chunks)]
    if not per:
        return (np.zeros((1, 0), np.int64), np.zeros((1, 0, 3), np.int64),
                np.zeros((1, 0), np.int64))
    sizes = [len(p[0]) for p in per]
    total = int(np.prod(sizes))
    nd = len(per)
    coords = np.empty((total, nd), np.int64)
    sel = np.empty((total, nd, 3), np.int64)
    opos = np.empty((total, nd), np.int64)
    for d, (k, s0, cnt, o0) in enumerate(per):
        shape = [1] * nd
        shape[d] = sizes[d]
        full = sizes
        coords[:, d] = np.broadcast_to(k.reshape(shape), full).reshape(-1)
        sel[:, d, 0] = np.broadcast_to(s0.reshape(shape), full).reshape(-1)
        sel[:, d, 1] = dims[d][1]
        sel[:, d, 2] = np.broadcast_to(cnt.reshape(shape), full).reshape(-1)
        opos[:, d] = np.broadcast_to(o0.reshape(shape), full).reshape(-1)
    return coords, sel, opos


def chunk_keys(prefix: str, coords: np.ndarray, sep: str) -> list[str]:
    """zarr v2 chunk keys ``prefix + "i.j.k"`` (``"0"`` for a 0-d array)."""
    n, nd = coords.shape
    if nd == 0:
        return [prefix + "0"] * n
    if nd == 1:
        return [prefix + s for s in map(str, coords[:, 0].tolist())]
    cols = [list(map(str, coords[:, d].tolist())) for d in range(nd)]
    return [prefix + sep.join(t) for t in zip(*cols)]


def chunk_space_view(res: np.ndarray, drop, reverse=None) -> np.ndarray:
    """A view of ``res`` with one dimension per array dimension: length 1 and stride 0 where
    ``drop[d]`` (an integer index removed the dimension), reversed where ``reverse[d]``."""
    from numpy.lib.stride_tricks import as_strided

    shape, strides = [], []
    it = iter(zip(res.shape, res.strides))
    for dropped in drop:
        n, st = (1, 0) if dropped else next(it)
        shape.append(n)
        strides.append(st)
    full = as_strided(res, shape=tuple(shape), strides=tuple(strides), writeable=True)
    if reverse is not None and any(reverse):
        full = full[tuple(slice(None, None, -1) if r else slice(None) for r in reverse)]
    return full


# ------------------------------------------------------------------ the read path


