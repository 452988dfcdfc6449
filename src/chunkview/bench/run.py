"""``chunkview bench``: chunkview against its baselines, in one process and one run.

Every case runs chunkview and the baselines side by side on a dataset generated
deterministically into a cache folder, reports min and median of ``--repeat`` runs and the
chunkview/baseline ratios, and can write everything to JSON.

Cases: ``read`` (all of ``t2m`` and a 1% hyperslab: chunkview.open and open_zarr against h5py,
kerchunk + fsspec ``ReferenceFileSystem`` + zarr's default pipeline, hidefix, and libdeflate
inflate alone on all threads), ``tiny`` (all of ``obs``, 200,000 tiny chunks), ``decode``
(inflate backends and unshuffle against memcpy on the same in-memory chunks, thread scaling),
``index`` (reference sets: loading kerchunk JSON against fsspec's ``ReferenceFileSystem``,
resident bytes per reference, opening the native format, single and batch lookups),
``virtual`` (VirtualiZarr's HDFParser and ManifestStore, Icechunk + zarr).  A missing
optional baseline is skipped with a note, never faked.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from chunkview.bench.combine import case_combine, print_combine
from chunkview.bench.common import default_data_dir, inflate_line, machine_info
from chunkview.bench.decode import case_decode, print_decode
from chunkview.bench.index import case_index, print_index
from chunkview.bench.read import case_read, print_read
from chunkview.bench.remote import case_remote, print_remote
from chunkview.bench.scan import case_scan, print_scan
from chunkview.bench.tiny import case_tiny, print_tiny
from chunkview.bench.virtual import case_virtual, print_virtual

CASES = ("read", "tiny", "scan", "decode", "index", "remote", "combine", "virtual")
def run(cases=None, *, quick=False, repeat=3, data=None, json_path=None,
        threads: int | None = None, plot_path=None) -> dict:
    cases = list(cases or CASES)
    if plot_path:  # fail before the run, not after it
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from chunkview.errors import missing_extra

            raise missing_extra("matplotlib", "plot") from None
    for c in cases:
        if c not in CASES:
            raise SystemExit(f"unknown benchmark case {c!r}; available: {', '.join(CASES)}")
    data = Path(data) if data else default_data_dir()
    data.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    print(f"chunkview bench on {info.get('cpu', platform.machine())}, "
          f"{info['cpu_count']} CPUs, Python {info['python']}")
    if "build" in info:
        print(inflate_line(info["build"]))
        print(f"build: {info['build']}")
    results = {"machine": info, "cases": {}}
    threads = threads or os.cpu_count() or 1
    runners = {  # case -> (measure, print); cases without threads take none
        "index": (lambda: case_index(data, quick, repeat), print_index),
        "read": (lambda: case_read(data, quick, repeat, threads), print_read),
        "tiny": (lambda: case_tiny(data, quick, repeat, threads), print_tiny),
        "scan": (lambda: case_scan(data, quick, repeat), print_scan),
        "decode": (lambda: case_decode(data, quick, repeat, threads), print_decode),
        "remote": (lambda: case_remote(data, quick, repeat, threads), print_remote),
        "combine": (lambda: case_combine(data, quick, repeat), print_combine),
        "virtual": (lambda: case_virtual(data, quick, repeat, threads), print_virtual),
    }
    for c in cases:
        measure, show = runners[c]
        r = measure()
        show(r)
        results["cases"][c] = r
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
        print(f"\nwrote {json_path}")
    if plot_path:
        from chunkview.bench.plot import plot

        plot(results, plot_path)
        print(f"wrote {plot_path}")
    return results
