"""The benchmark dataset, generated deterministically with h5py (the HDF5 library itself).

``bench.h5`` holds:

* ``t2m``: float32 (64, 721, 1440), chunks (8, 181, 360), gzip level 4 + shuffle, values
  ``273.15 + 30 cos(lat) + 5 sin(3 lon) + N(0, 0.5)`` rounded to 0.01 (128 chunks, 265 MB
  decoded);
* ``obs``: int32, 12,800,000 values ``i // 7``, chunks (64,), gzip level 1 + shuffle
  (200,000 tiny chunks).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

T2M_SHAPE = (64, 721, 1440)
T2M_CHUNKS = (8, 181, 360)
OBS_N = 12_800_000
OBS_CHUNK = 64
VERSION = 1


def _progress(done: int, total: int, what: str) -> None:
    if not sys.stderr.isatty() and done not in (0, total):
        return
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    print(f"\r  {what} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end=end,
          file=sys.stderr, flush=True)


def t2m_block(t0: int, t1: int) -> np.ndarray:
    """Time steps [t0, t1) of t2m (each step from its own seeded generator)."""
    nt, ny, nx = T2M_SHAPE
    lat = np.deg2rad(np.linspace(90, -90, ny, dtype=np.float64))[:, None]
    lon = np.deg2rad(np.arange(nx, dtype=np.float64) * 0.25)[None, :]
    base = 273.15 + 30 * np.cos(lat) + 5 * np.sin(3 * lon)
    out = np.empty((t1 - t0, ny, nx), dtype=np.float32)
    for t in range(t0, t1):
        rng = np.random.default_rng(1000 + t)
        out[t - t0] = np.round(base + rng.normal(0, 0.5, size=(ny, nx)), 2)
    return out


def make_bench_file(path: Path) -> Path:
    """Write bench.h5 (about 135 MB on disk) unless it is there already."""
    try:
        import h5py
    except ImportError:
        from chunkview.errors import missing_extra

        raise missing_extra("h5py", "bench") from None

    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    print(f"generating the benchmark dataset {path} (once) ...", file=sys.stderr, flush=True)
    with h5py.File(tmp, "w") as f:
        f.attrs["chunkview_bench_version"] = VERSION
        d = f.create_dataset("t2m", shape=T2M_SHAPE, dtype="f4", chunks=T2M_CHUNKS,
                             compression="gzip", compression_opts=4, shuffle=True)
        d.attrs["units"] = "K"
        step = T2M_CHUNKS[0]
        total = T2M_SHAPE[0] // step + 1
        _progress(0, total, "t2m")
        for i, t0 in enumerate(range(0, T2M_SHAPE[0], step)):
            d[t0:t0 + step] = t2m_block(t0, min(t0 + step, T2M_SHAPE[0]))
            _progress(i + 1, total, "t2m")
        f.create_dataset("obs", data=np.arange(OBS_N, dtype=np.int32) // 7, chunks=(OBS_CHUNK,),
                         compression="gzip", compression_opts=1, shuffle=True)
        _progress(total, total, "t2m, obs")
    os.replace(tmp, path)
    return path
