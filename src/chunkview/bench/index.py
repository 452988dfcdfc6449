"""``index``: reference sets of a million keys: loading kerchunk JSON against fsspec's
``ReferenceFileSystem``, resident bytes per reference, opening the native format, lookups.
"""


from __future__ import annotations

import json
import os
import random
from pathlib import Path

from chunkview.bench.common import (
    _fmt_t,
    _progress,
    _rss_delta,
    _timeit,
)
from chunkview.keys import NATIVE_SUFFIX


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


def case_index(data: Path, quick: bool, repeat: int) -> dict:
    import chunkview

    n = 200_000 if quick else 1_000_000
    path = make_index_json(data / f"refs_{n}.json", n)
    tiny = data / "tiny.json"
    tiny.write_text(json.dumps({"version": 1, "refs": {"a": ["u", 1, 2]}}))
    native = data / f"refs_{n}{NATIVE_SUFFIX}"
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
    # the default looks a batch this long up in one thread per CPU; threads=1 in this one
    t_batch, _ = _timeit(lambda: idx.lookup_many(keys), repeat)
    t_batch_one, _ = _timeit(lambda: idx.lookup_many(keys, threads=1), repeat)
    sorted_keys = [f"v/{i}" for i in range(n)]
    t_batch_seq, _ = _timeit(lambda: idx.lookup_many(sorted_keys), repeat)
    res["lookup_batch_ns_per_key"] = {
        "chunkview_random": t_batch["median"] / n * 1e9,
        "chunkview_random_one_thread": t_batch_one["median"] / n * 1e9,
        "chunkview_in_order": t_batch_seq["median"] / n * 1e9,
        "threads": os.cpu_count() or 1}
    return res


# ------------------------------------------------------------------ read, tiny, decode


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
    threads = f"({lb['threads']} threads)"
    print(f"  {'batch lookup per key, random':34} {lb['chunkview_random']:9.1f} ns "
          f"{threads:>21}")
    print(f"  {'batch lookup per key, 1 thread':34} {lb['chunkview_random_one_thread']:9.1f} ns")
    print(f"  {'batch lookup per key, in order':34} {lb['chunkview_in_order']:9.1f} ns "
          f"{threads:>21}")


