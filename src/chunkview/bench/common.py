"""What the benchmark cases share: timing, the machine's description, the baselines' set-up and
the report's rows."""


from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

LATENCY = 0.020  # seconds added to every request of the remote case
HYPERSLAB = (slice(0, 16), slice(300, 480), slice(700, 930))  # 1.0% of t2m, across chunk edges


def default_data_dir() -> Path:
    base = os.environ.get("CHUNKVIEW_BENCH_DATA") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "chunkview", "bench")
    return Path(base)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _timeit(fn, repeat: int, warmup: int = 0):
    times = []
    out = None
    for _ in range(warmup):  # untimed: first-use costs (page faults, caches) of every contestant
        fn()
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return {"min": min(times), "median": statistics.median(times), "runs": len(times)}, out


_RSS_CODE = r"""
import gc, json, sys, time
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
which, path, tiny = sys.argv[1], sys.argv[2], sys.argv[3]
if which == "chunkview":
    import chunkview
    chunkview.load(tiny)
    gc.collect(); r0 = rss()
    obj = chunkview.load(path)
else:
    from fsspec.implementations.reference import ReferenceFileSystem
    ReferenceFileSystem(tiny)
    gc.collect(); r0 = rss()
    obj = ReferenceFileSystem(path)
gc.collect()
print(json.dumps({"bytes": rss() - r0}))
"""


def _rss_delta(which: str, path: Path, tiny: Path) -> int | None:
    if not os.path.exists("/proc/self/statm"):
        return None
    res = subprocess.run([sys.executable, "-c", _RSS_CODE, which, str(path), str(tiny)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        _progress(f"memory probe for {which} failed: {res.stderr.strip()[-300:]}")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])["bytes"]


def _bench_refs(data: Path):
    """bench.h5, chunkview's references of it, and kerchunk's (None without kerchunk)."""
    import chunkview
    from chunkview.bench import data as benchdata

    h5 = benchdata.make_bench_file(data / "bench.h5")
    ours = data / "bench_refs.json"
    if not ours.exists() or ours.stat().st_mtime < h5.stat().st_mtime or \
            ours.stat().st_mtime < Path(chunkview.scan.__file__).stat().st_mtime:
        chunkview.scan(str(h5)).save(str(ours))
    kc = data / "bench_kerchunk.json"
    if not kc.exists() or kc.stat().st_mtime < h5.stat().st_mtime:
        try:
            from kerchunk.hdf import SingleHdf5ToZarr
        except ImportError:
            _progress("note: kerchunk is not installed: its baseline is skipped")
            return h5, ours, None
        _progress("kerchunk: scanning bench.h5 for its baseline ...")
        kc.write_text(json.dumps(SingleHdf5ToZarr(str(h5), inline_threshold=0).translate()))
    return h5, ours, kc


def _kerchunk_zarr(kc: Path):
    import zarr
    from fsspec.implementations.reference import ReferenceFileSystem

    with zarr.config.set({"codec_pipeline.path":
                          "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
        fs = ReferenceFileSystem(str(kc), asynchronous=True)
        store = zarr.storage.FsspecStore(fs, read_only=True)
        return zarr.open_group(store, mode="r", zarr_format=2)


def _hidefix(h5: Path):
    try:
        import hidefix
    except ImportError:
        _progress("note: hidefix is not installed (pip install hidefix): its baseline is skipped")
        return None
    return hidefix.Index(str(h5))


def _with_default_pipeline(fn):
    import zarr

    def run():
        with zarr.config.set({"codec_pipeline.path":
                              "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
            return fn()
    return run


def _entry(t, nbytes=None, nchunks=None):
    if t is None:
        return None
    e = dict(t)
    if nbytes:
        e["gb_per_s"] = nbytes / t["median"] / 1e9
    if nchunks:
        e["us_per_chunk"] = t["median"] / nchunks * 1e6
    return e


def _ratios(res: dict, ours: str, names) -> dict:
    out = {}
    for n in names:
        if res.get(n) and res.get(ours):
            out[n] = res[n]["median"] / res[ours]["median"]
    return out


def _t2m_chunks(ours: Path):
    """Keys, offsets and lengths of every stored t2m chunk, in grid order."""
    import itertools

    import numpy as np

    import chunkview
    from chunkview.bench.data import T2M_CHUNKS, T2M_SHAPE

    grid = [range(-(-s // c)) for s, c in zip(T2M_SHAPE, T2M_CHUNKS)]
    keys = ["t2m/" + ".".join(map(str, idx)) for idx in itertools.product(*grid)]
    _, offs, lens = chunkview.load(str(ours)).lookup_many(keys)
    return keys, offs.astype(np.int64), lens.astype(np.int64)


def machine_info() -> dict:
    import chunkview

    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "chunkview": chunkview.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if hasattr(chunkview, "build_info"):
        info["build"] = chunkview.build_info()
    return info


def inflate_line(build: dict) -> str:
    """The bench's second line: which inflate decodes every chunk, and a warning when it is
    not libdeflate (all figures below are then zlib's: 2-3x slower)."""
    where = build.get("inflate_library") or "?"
    how = {"runtime": "the system's shared library, loaded at run time",
           "build": "linked at build time"}.get(build.get("inflate_linkage"), "")
    if build.get("inflate") == "libdeflate":
        return f"inflate: libdeflate {build.get('inflate_version')} ({how}: {where})"
    why = build.get("inflate_note") or "this build has no libdeflate"
    return (f"WARNING: inflate is {build.get('inflate')} {build.get('inflate_version')}, not "
            f"libdeflate ({why}): chunkview inflates 2-3x slower than with libdeflate, and "
            "every 'inflate alone' limit below is zlib's")


def _fmt_t(t):
    return "-" if t is None else f"{t['median'] * 1e3:9.1f} ms"


def _row(name, e, unit="gb"):
    if not e:
        return
    if unit == "gb":
        extra = f"{e['gb_per_s']:7.2f} GB/s" if "gb_per_s" in e else ""
    elif unit == "chunk":
        extra = f"{e['us_per_chunk']:8.2f} us/chunk"
    else:
        extra = ""
    print(f"  {name:34} {e['median'] * 1e3:10.1f} ms {extra}")


def _print_ratios(r):
    for who, d in r.items():
        if isinstance(d, dict):
            txt = ", ".join(f"{k} {v:.2f}x" for k, v in d.items())
            print(f"  {who}: {txt}")
        else:
            print(f"  {who}: {d:.2f}")


