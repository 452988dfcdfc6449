"""Check chunkview's scanner against h5py on the third-party corpus (``../shared/corpus``).

For every HDF5 / netCDF file and every dataset h5py reads fully, ``chunkview.open(
chunkview.scan(file))[path][...]`` must equal h5py's data, or opening it must raise a
chunkview error saying why.  Used by ``tests/test_scan_corpus.py``; also runnable on its own:
``python tests/corpus.py [FILE...]`` prints one line per dataset and the totals.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"


def inventory():
    with open(CORPUS / "INVENTORY.json") as f:
        return json.load(f)


def same(a, b) -> bool:
    """chunkview's array ``a`` equals h5py's ``b`` (vlen strings are fixed-width bytes in
    chunkview; compound types may carry explicit padding fields)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return False
    if b.dtype.kind == "O":
        flat = [x.encode() if isinstance(x, str) else (b"" if x is None else bytes(x))
                for x in b.reshape(-1)]
        return [bytes(x) for x in a.reshape(-1)] == [x.rstrip(b"\0") for x in flat]
    if b.dtype.fields is not None:
        if a.dtype.fields is None:
            return False
        return all(same(a[n], b[n]) for n in b.dtype.names)
    if a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return np.array_equal(a, b, equal_nan=True)
    if a.dtype.kind == "V":
        return a.tobytes() == b.tobytes()
    return np.array_equal(a, b)


def readable(path: Path) -> dict:
    """{dataset path: bytes} of the datasets the inventory says h5py reads fully."""
    for rec in inventory():
        if CORPUS / rec["file"] == path:
            return {d["path"].lstrip("/"): d.get("nbytes") or 0 for d in rec.get("datasets", [])
                    if d.get("read") == "ok"}
    return {}


def check_file(path: Path, limit: int = 256 << 20):
    """[(dataset, outcome, detail)] with outcome in identical / clear-error / WRONG /
    CRASH; a whole-file scan error is reported as one row with dataset ``"*"``."""
    import h5py

    import chunkview
    from chunkview.errors import ChunkviewError

    rows = []
    try:
        refs = chunkview.scan(str(path))
    except ChunkviewError as e:
        return [("*", "clear-error", f"{type(e).__name__}: {e}")]
    except Exception as e:  # noqa: BLE001 - the point is to catch anything
        return [("*", "CRASH", f"{type(e).__name__}: {e}")]
    g = chunkview.open(refs)
    try:
        f = h5py.File(path, "r")
    except Exception:
        # libhdf5 refuses some files with its file driver that it reads through a file
        # object, as the scanner does (a superblock still marked open for writing)
        try:
            f = h5py.File(open(path, "rb"), "r")
        except Exception:
            return [("*", "h5py-cannot-open", "")]
    with f:
        for name, nbytes in readable(path).items():
            if nbytes > limit:
                continue
            try:
                want = f[name][()]
            except Exception:
                continue  # h5py cannot read it either: no truth to compare with
            try:
                got = g[name][...]
            except ChunkviewError as e:
                rows.append((name, "clear-error", f"{type(e).__name__}: {e}"))
                continue
            except Exception as e:  # noqa: BLE001
                rows.append((name, "CRASH", f"{type(e).__name__}: {e}"))
                continue
            if same(got, want):
                rows.append((name, "identical", ""))
            else:
                rows.append((name, "WRONG", f"{np.asarray(got).dtype} vs {np.asarray(want).dtype}"))
    return rows


def files():
    out = []
    for rec in inventory():
        if rec.get("format") == "hdf5":
            out.append(CORPUS / rec["file"])
    return out


if __name__ == "__main__":
    from collections import Counter

    todo = [Path(a) for a in sys.argv[1:]] or files()
    totals = Counter()
    for p in todo:
        for name, outcome, detail in check_file(p):
            totals[outcome] += 1
            if outcome != "identical":
                print(f"{p.relative_to(CORPUS) if CORPUS in p.parents else p}: {name}: "
                      f"{outcome} {detail}"[:300])
    print(dict(totals))
