"""``combine``: ``chunkview.combine`` against kerchunk's ``MultiZarrToZarr`` (time, peak memory).
"""


from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from chunkview.bench.common import (
    _progress,
)
from chunkview.keys import DIMENSION_KEY


def make_combine_inputs(folder: Path, nfiles: int, nt: int = 10, grid: int = 10) -> list[Path]:
    """``nfiles`` kerchunk JSON reference sets like those of a year of daily files: each has
    ``v`` (time, lat, lon) in nt * grid * grid chunks (1,000 by default) of one file, an
    inline ``time`` coordinate continuing the previous file's, and identical inline ``lat``
    and ``lon``.  The chunks' bytes are never read: combining only needs the references."""
    import base64

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    side = grid * 10
    lat = np.linspace(-90, 90, side).astype("<f4")
    lon = np.linspace(0, 360, side, endpoint=False).astype("<f4")

    def arr(shape, chunks, dtype, compressor=None):
        return json.dumps({"zarr_format": 2, "shape": shape, "chunks": chunks, "dtype": dtype,
                           "compressor": compressor, "filters": None, "fill_value": None,
                           "order": "C"})

    v_meta = arr([nt, side, side], [1, 10, 10], "<f4", {"id": "zlib", "level": 4})
    paths = []
    for i in range(nfiles):
        path = folder / f"day_{i:05d}.json"
        paths.append(path)
        if path.exists():
            continue
        url = f"s3://archive/daily/file_{i:05d}.nc"
        t = (np.arange(nt) + i * nt).astype("<f8")
        refs = {
            ".zgroup": json.dumps({"zarr_format": 2}),
            ".zattrs": json.dumps({"title": "combine benchmark"}),
            "time/.zarray": arr([nt], [nt], "<f8"),
            "time/.zattrs": json.dumps({DIMENSION_KEY: ["time"],
                                        "units": "days since 2000-01-01"}),
            "time/0": "base64:" + base64.b64encode(t.tobytes()).decode(),
            "lat/.zarray": arr([side], [side], "<f4"),
            "lat/.zattrs": json.dumps({DIMENSION_KEY: ["lat"]}),
            "lat/0": "base64:" + base64.b64encode(lat.tobytes()).decode(),
            "lon/.zarray": arr([side], [side], "<f4"),
            "lon/.zattrs": json.dumps({DIMENSION_KEY: ["lon"]}),
            "lon/0": "base64:" + base64.b64encode(lon.tobytes()).decode(),
            "v/.zarray": v_meta,
            "v/.zattrs": json.dumps({DIMENSION_KEY: ["time", "lat", "lon"], "units": "K"}),
        }
        off = 8192
        for a in range(nt):
            for b in range(grid):
                for c in range(grid):
                    n = 20_000 + (a * 7919 + b * 104729 + c * 1299709 + i) % 5000
                    refs[f"v/{a}.{b}.{c}"] = [url, off, n]
                    off += n
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": 1, "refs": refs}))
        tmp.rename(path)
    return paths


_COMBINE_CODE = r"""
import gc, json, resource, sys, time
which, listing = sys.argv[1], sys.argv[2]
paths = open(listing).read().split()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
if which == "chunkview":
    import chunkview
    def run(ps):
        return chunkview.combine(ps, "time")
    def get(out, k):
        return list(out[k]) if not isinstance(out[k], bytes) else out[k]
else:
    from kerchunk.combine import MultiZarrToZarr
    def run(ps):
        return MultiZarrToZarr(ps, concat_dims=["time"], identical_dims=["lat", "lon"],
                               inline_threshold=0).translate()["refs"]
    def get(out, k):
        return out[k]
run(paths[:2])  # warm-up: first-use imports are not part of the run
gc.collect()
r0 = rss()
t = time.perf_counter()
out = run(paths)
dt = time.perf_counter() - t
try:  # the peak of this process image (ru_maxrss would carry the parent's peak over exec)
    with open("/proc/self/status") as f:
        peak = next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
n = len(paths)
last = f"v/{10 * n - 1}.9.9"
sample = {k: [str(x) for x in get(out, k)] for k in ("v/0.0.0", "v/10.3.7", last)}
print(json.dumps({"seconds": dt, "peak_bytes": peak - r0, "sample": sample}))
"""


def _combine_probe(which: str, listing: Path) -> dict | None:
    res = subprocess.run([sys.executable, "-c", _COMBINE_CODE, which, str(listing)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        _progress(f"combine probe for {which} failed: {res.stderr.strip()[-400:]}")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def case_combine(data: Path, quick: bool, repeat: int) -> dict:
    """Combining daily reference sets (1,000 chunks each) along time: chunkview.combine
    against kerchunk's MultiZarrToZarr on the same JSON files, each run in a fresh process
    (time and peak memory of that run)."""
    nfiles = 50 if quick else 1000
    _progress(f"combine: writing {nfiles} reference sets")
    paths = make_combine_inputs(data / "combine", nfiles)
    listing = data / f"combine_{nfiles}.txt"
    listing.write_text("\n".join(str(p) for p in paths[:nfiles]))
    res: dict = {"files": nfiles, "chunks_per_file": 1000, "references": nfiles * 1000}
    runs = {"chunkview": [], "kerchunk": []}
    for which, n in (("chunkview", repeat), ("kerchunk", 1 if not quick else repeat)):
        for _ in range(max(1, n)):
            r = _combine_probe(which, listing)
            if r is None:
                break
            runs[which].append(r)
    for which, rs in runs.items():
        if rs:
            ts = [r["seconds"] for r in rs]
            res[which] = {"seconds": {"min": min(ts), "median": statistics.median(ts),
                                      "runs": len(ts)},
                          "peak_bytes": statistics.median([r["peak_bytes"] for r in rs])}
        else:
            res[which] = None
    if res["chunkview"] and res["kerchunk"]:
        same = runs["chunkview"][0]["sample"] == runs["kerchunk"][0]["sample"]
        if not same:
            raise RuntimeError(f"combine outputs differ: {runs['chunkview'][0]['sample']} vs "
                               f"{runs['kerchunk'][0]['sample']}")
        res["speedup_vs_kerchunk"] = (res["kerchunk"]["seconds"]["median"]
                                      / res["chunkview"]["seconds"]["median"])
        res["memory_ratio_vs_kerchunk"] = (res["chunkview"]["peak_bytes"]
                                           / max(1, res["kerchunk"]["peak_bytes"]))
    return res


def print_combine(res: dict) -> None:
    print(f"\ncombine {res['files']} reference sets of {res['chunks_per_file']:,} chunks "
          f"({res['references']:,} references) along time, each side in a fresh process:")
    for which in ("chunkview", "kerchunk"):
        r = res.get(which)
        if r is None:
            print(f"  {which}: not available")
            continue
        label = "chunkview.combine" if which == "chunkview" else "kerchunk MultiZarrToZarr"
        print(f"  {label:26s} {r['seconds']['median']:8.2f} s   peak memory "
              f"{r['peak_bytes'] / 1e6:8.1f} MB")
    if "speedup_vs_kerchunk" in res:
        print(f"  chunkview: {res['speedup_vs_kerchunk']:.1f}x faster, "
              f"{1 / max(res['memory_ratio_vs_kerchunk'], 1e-9):.1f}x less memory")


