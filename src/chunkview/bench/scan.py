"""``scan``: scanning the benchmark file against kerchunk, hidefix and h5py's ``chunk_iter``.
"""


from __future__ import annotations

import json
from pathlib import Path

from chunkview.bench.common import (
    _bench_refs,
    _entry,
    _print_ratios,
    _progress,
    _ratios,
    _row,
    _timeit,
)


def case_scan(data: Path, quick: bool, repeat: int) -> dict:
    """Scan bench.h5 (200,000+ chunks) into references: chunkview.scan against kerchunk's
    SingleHdf5ToZarr, hidefix building its index, and h5py's chunk_iter alone."""
    import h5py

    import chunkview

    h5, ours, kc = _bench_refs(data)
    t = {}
    t["chunkview"], refs = _timeit(lambda: chunkview.scan(str(h5)), repeat, warmup=1)
    nrefs = len(refs)
    if kc is not None:  # the same chunks at the same byte ranges as kerchunk found
        kref = json.loads(kc.read_text())["refs"]
        keys = [k for k in kref if k.startswith(("t2m/", "obs/")) and k[-1].isdigit()]
        assert all(list(refs[k][1:]) == kref[k][1:] for k in keys), "scan differs from kerchunk"
        assert len(keys) == sum(1 for k in refs if k[-1].isdigit())
        from kerchunk.hdf import SingleHdf5ToZarr

        t["kerchunk"], _ = _timeit(
            lambda: SingleHdf5ToZarr(str(h5), inline_threshold=0).translate(),
            1 if quick else min(repeat, 2))
    try:
        import hidefix

        t["hidefix"], _ = _timeit(lambda: hidefix.Index(str(h5)), repeat, warmup=1)
    except ImportError:
        _progress("note: hidefix is not installed: its baseline is skipped")

    def chunk_iter():
        n = []
        with h5py.File(h5, "r") as f:
            for name in ("t2m", "obs"):
                f[name].id.chunk_iter(n.append)
        return len(n)

    t["h5py_chunk_iter"], nchunks = _timeit(chunk_iter, repeat, warmup=1)
    res = {k: _entry(v, nchunks=nchunks) for k, v in t.items()}
    res["ratios"] = _ratios(res, "chunkview", ("kerchunk", "hidefix", "h5py_chunk_iter"))
    return {"bench_h5": res, "chunks": nchunks, "references": nrefs}


def print_scan(res: dict) -> None:
    print(f"\nscan: bench.h5 into references ({res['chunks']:,} chunks, median)")
    for k, v in res["bench_h5"].items():
        if k != "ratios":
            _row(k, v, unit="chunk")
    print("  time, baseline / chunkview:")
    _print_ratios({"chunkview": res["bench_h5"]["ratios"]})


