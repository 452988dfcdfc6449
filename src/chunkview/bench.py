"""``chunkview bench``: chunkview against its baselines, in one process and one run.

Every case runs chunkview and the baselines side by side on a dataset generated
deterministically into a cache folder, reports min and median of ``--repeat`` runs and the
chunkview/baseline ratios, and can write everything to JSON.

Cases so far: ``index`` (reference sets: loading kerchunk JSON against fsspec's
``ReferenceFileSystem``, resident bytes per reference, opening the native format, single and
batch lookups).  A missing optional baseline is skipped with a note, never faked.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = ("index",)


def default_data_dir() -> Path:
    base = os.environ.get("CHUNKVIEW_BENCH_DATA") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "chunkview", "bench")
    return Path(base)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_index_json(path: Path, n: int) -> Path:
    """kerchunk v1 JSON with n references ``v/0`` ... ``v/{n-1}`` into one URL."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    _progress(f"generating {path} ({n:,} references) ...")
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write('{"version":1,"refs":{".zgroup":"{\\"zarr_format\\":2}",')
        meta = json.dumps({"chunks": [1024], "compressor": None, "dtype": "<f4",
                           "fill_value": None, "filters": None, "order": "C",
                           "shape": [n * 1024], "zarr_format": 2})
        f.write('"v/.zarray":' + json.dumps(meta))
        step = 100_000
        for lo in range(0, n, step):
            f.write("".join(f',"v/{i}":["file:///data/bench.h5",{4096 + i * 4096},4096]'
                            for i in range(lo, min(n, lo + step))))
        f.write("}}")
    tmp.rename(path)
    return path


def _timeit(fn, repeat: int):
    times = []
    out = None
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


def case_index(data: Path, quick: bool, repeat: int) -> dict:
    import chunkview

    n = 200_000 if quick else 1_000_000
    path = make_index_json(data / f"refs_{n}.json", n)
    tiny = data / "tiny.json"
    tiny.write_text(json.dumps({"version": 1, "refs": {"a": ["u", 1, 2]}}))
    native = data / f"refs_{n}.cvref"
    res: dict = {"references": n}

    chunkview.load(str(tiny))  # warm up: first-use imports are not part of the load
    t_cv, refs = _timeit(lambda: chunkview.load(str(path)), repeat)
    res["load_json"] = {"chunkview": t_cv}
    try:
        from fsspec.implementations.reference import ReferenceFileSystem

        ReferenceFileSystem(str(tiny))  # the same warm-up for the baseline
        t_fs, _ = _timeit(lambda: ReferenceFileSystem(str(path)), repeat)
        res["load_json"]["fsspec"] = t_fs
        res["load_json"]["speedup_vs_fsspec"] = t_fs["median"] / t_cv["median"]
    except ImportError:  # pragma: no cover - fsspec is a dependency
        res["load_json"]["fsspec"] = None

    mem_cv = _rss_delta("chunkview", path, tiny)
    mem_fs = _rss_delta("fsspec", path, tiny)
    res["memory_bytes_per_ref"] = {
        "chunkview": None if mem_cv is None else mem_cv / n,
        "chunkview_c_index": refs.index.nbytes / n,
        "fsspec": None if mem_fs is None else mem_fs / n,
    }

    refs.save(native)
    t_open, _ = _timeit(lambda: chunkview.load(str(native)), max(repeat, 5))
    res["native_open"] = {"chunkview": t_open, "file_bytes": native.stat().st_size}

    idx = refs.index
    rng = random.Random(0)
    ints = list(range(n))
    rng.shuffle(ints)
    keys = [f"v/{i}" for i in ints]  # random order over the table
    lookup = idx.lookup
    m = min(n, 200_000)

    def singles():
        for k in keys[:m]:
            lookup(k)

    t_single, _ = _timeit(singles, repeat)
    d = {k: [1, 2, 3] for k in keys[:m]}  # a dict of the same keys: Python's own floor
    getd = d.__getitem__

    def dict_singles():
        for k in keys[:m]:
            getd(k)

    t_dict, _ = _timeit(dict_singles, repeat)
    res["lookup_single_ns"] = {"chunkview": t_single["median"] / m * 1e9,
                               "python_dict": t_dict["median"] / m * 1e9}
    t_batch, _ = _timeit(lambda: idx.lookup_many(keys), repeat)
    sorted_keys = [f"v/{i}" for i in range(n)]
    t_batch_seq, _ = _timeit(lambda: idx.lookup_many(sorted_keys), repeat)
    res["lookup_batch_ns_per_key"] = {"chunkview_random": t_batch["median"] / n * 1e9,
                                      "chunkview_in_order": t_batch_seq["median"] / n * 1e9}
    return res


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


def _fmt_t(t):
    return "-" if t is None else f"{t['median'] * 1e3:9.1f} ms"


def print_index(res: dict) -> None:
    n = res["references"]
    lj = res["load_json"]
    print(f"\nindex: {n:,} references")
    print(f"  {'work':34} {'chunkview':>12} {'fsspec':>12} {'ratio':>8}")
    ratio = lj.get("speedup_vs_fsspec")
    print(f"  {'load kerchunk JSON (median)':34} {_fmt_t(lj['chunkview']):>12} "
          f"{_fmt_t(lj.get('fsspec')):>12} {('%.1fx' % ratio) if ratio else '-':>8}")
    mem = res["memory_bytes_per_ref"]
    fsm = mem["fsspec"]
    cvm = mem["chunkview"]
    print(f"  {'resident bytes per reference':34} {('%.1f' % cvm) if cvm else '-':>12} "
          f"{('%.1f' % fsm) if fsm else '-':>12} "
          f"{('%.1fx' % (fsm / cvm)) if (fsm and cvm) else '-':>8}")
    print(f"  {'open native .cvref (median)':34} {_fmt_t(res['native_open']['chunkview']):>12}")
    ls = res["lookup_single_ns"]
    print(f"  {'one lookup from Python, random':34} {ls['chunkview']:9.0f} ns "
          f"{'(dict: %.0f ns)' % ls['python_dict']:>21}")
    lb = res["lookup_batch_ns_per_key"]
    print(f"  {'batch lookup per key, random':34} {lb['chunkview_random']:9.1f} ns")
    print(f"  {'batch lookup per key, in order':34} {lb['chunkview_in_order']:9.1f} ns")


def run(cases=None, *, quick=False, repeat=3, data=None, json_path=None) -> dict:
    cases = list(cases or CASES)
    for c in cases:
        if c not in CASES:
            raise SystemExit(f"unknown benchmark case {c!r}; available: {', '.join(CASES)}")
    data = Path(data) if data else default_data_dir()
    data.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    print(f"chunkview bench on {info.get('cpu', platform.machine())}, "
          f"{info['cpu_count']} CPUs, Python {info['python']}")
    if "build" in info:
        print(f"build: {info['build']}")
    results = {"machine": info, "cases": {}}
    for c in cases:
        if c == "index":
            r = case_index(data, quick, repeat)
            results["cases"]["index"] = r
            print_index(r)
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
        print(f"\nwrote {json_path}")
    return results
