"""``chunkview bench``: chunkview against its baselines, in one process and one run.

Every case runs chunkview and the baselines side by side on a dataset generated
deterministically into a cache folder, reports min and median of ``--repeat`` runs and the
chunkview/baseline ratios, and can write everything to JSON.

Cases: ``read`` (all of ``t2m`` and a 1% hyperslab: chunkview.open and open_zarr against h5py,
kerchunk + fsspec ``ReferenceFileSystem`` + zarr's default pipeline, hidefix, and libdeflate
inflate alone on all threads), ``tiny`` (all of ``obs``, 200,000 tiny chunks), ``decode``
(inflate backends and unshuffle against memcpy on the same in-memory chunks, thread scaling),
``index`` (reference sets: loading kerchunk JSON against fsspec's ``ReferenceFileSystem``,
resident bytes per reference, opening the native format, single and batch lookups).  A missing
optional baseline is skipped with a note, never faked.
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

CASES = ("read", "tiny", "scan", "decode", "index", "remote", "combine")
LATENCY = 0.020  # seconds added to every request of the remote case
HYPERSLAB = (slice(0, 16), slice(300, 480), slice(700, 930))  # 1.0% of t2m, across chunk edges


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
            "time/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": ["time"],
                                        "units": "days since 2000-01-01"}),
            "time/0": "base64:" + base64.b64encode(t.tobytes()).decode(),
            "lat/.zarray": arr([side], [side], "<f4"),
            "lat/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": ["lat"]}),
            "lat/0": "base64:" + base64.b64encode(lat.tobytes()).decode(),
            "lon/.zarray": arr([side], [side], "<f4"),
            "lon/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": ["lon"]}),
            "lon/0": "base64:" + base64.b64encode(lon.tobytes()).decode(),
            "v/.zarray": v_meta,
            "v/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": ["time", "lat", "lon"], "units": "K"}),
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


def _bench_refs(data: Path):
    """bench.h5, chunkview's references of it, and kerchunk's (None without kerchunk)."""
    import chunkview
    from chunkview import benchdata

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
    from chunkview.benchdata import T2M_CHUNKS, T2M_SHAPE

    grid = [range(-(-s // c)) for s, c in zip(T2M_SHAPE, T2M_CHUNKS)]
    keys = ["t2m/" + ".".join(map(str, idx)) for idx in itertools.product(*grid)]
    _, offs, lens = chunkview.load(str(ours)).lookup_many(keys)
    return keys, offs.astype(np.int64), lens.astype(np.int64)


def _inflate_limit(h5: Path, ours: Path, threads: int, repeat: int):
    """The inflate the reads use (``build_info()["inflate"]``: libdeflate, or zlib where no
    libdeflate was found) alone, through the same C batch as a read: every t2m chunk inflated
    into place on ``threads`` threads, no unshuffle, bytes already in memory; timed into a
    reused buffer and into a fresh one (which pays the page faults a read pays)."""
    import numpy as np

    from chunkview import _decode
    from chunkview.benchdata import T2M_CHUNKS

    keys, offs, lens = _t2m_chunks(ours)
    blob = h5.read_bytes()
    n = len(keys)
    c0, c1, c2 = T2M_CHUNKS
    out = np.empty((n * c0, c1, c2), dtype="<f4")  # the chunks one after another
    sel = np.tile(np.array([[0, 1, c] for c in T2M_CHUNKS], np.int64), (n, 1, 1))
    out_offsets = np.arange(n, dtype=np.int64) * (c0 * c1 * c2 * 4)
    buf_index = np.zeros(n, np.int32)

    def run(fresh):
        dst = np.empty_like(out) if fresh else out
        failed = _decode.decode_batch(T2M_CHUNKS, 4, [("zlib", -1, 0)], dst, out_offsets, sel,
                                      [blob], buf_index, offs, lens, None, None, threads)
        assert not failed, failed[:1]

    reused, _ = _timeit(lambda: run(False), repeat, warmup=1)
    fresh, _ = _timeit(lambda: run(True), repeat, warmup=1)
    return reused, fresh


def case_read(data: Path, quick: bool, repeat: int, threads: int) -> dict:
    import h5py
    import numpy as np

    import chunkview

    h5, ours, kc = _bench_refs(data)
    res: dict = {"file": str(h5), "threads": threads}
    f = h5py.File(h5, "r")
    nbytes = f["t2m"].size * 4
    g = chunkview.open(str(ours), threads=threads)
    gz = chunkview.open_zarr(str(ours), threads=threads)
    kz = _kerchunk_zarr(kc) if kc else None
    hx = _hidefix(h5)
    want = f["t2m"][()]
    t = {}
    t["chunkview"], got = _timeit(lambda: g["t2m"][...], repeat, warmup=1)
    assert np.array_equal(got, want), "chunkview read differs from h5py"
    t["chunkview_zarr"], got = _timeit(lambda: gz["t2m"][...], repeat, warmup=1)
    assert np.array_equal(got, want), "chunkview zarr read differs from h5py"
    buf = np.empty_like(want)  # read(out=) into a reused array: compare with inflate alone
    t["chunkview_read_out"], _ = _timeit(lambda: g["t2m"].read(out=buf), repeat, warmup=1)
    assert np.array_equal(buf, want)
    t["h5py"], _ = _timeit(lambda: f["t2m"][()], max(1, repeat // 2) if quick else repeat,
                           warmup=0 if quick else 1)
    if kz is not None:
        t["kerchunk"], got = _timeit(_with_default_pipeline(lambda: kz["t2m"][...]),
                                     1 if quick else repeat, warmup=1)
        assert np.array_equal(got, want)
    if hx is not None:
        ds = hx.dataset("t2m")
        t["hidefix"], got = _timeit(lambda: ds[(slice(None),) * 3], repeat, warmup=1)
        assert np.array_equal(got, want)
    t["inflate_alone"], t["inflate_alone_fresh_output"] = _inflate_limit(h5, ours, threads,
                                                                          repeat)
    full = {k: _entry(v, nbytes) for k, v in t.items()}
    res["inflate_alone_backend"] = chunkview.build_info()["inflate"]
    full["ratios"] = {
        "chunkview_vs": _ratios(full, "chunkview", ["h5py", "kerchunk", "hidefix"]),
        "chunkview_zarr_vs": _ratios(full, "chunkview_zarr", ["h5py", "kerchunk"]),
        "chunkview_share_of_inflate_alone":
            full["inflate_alone"]["median"] / full["chunkview"]["median"],
        "chunkview_read_out_share_of_inflate_alone":
            full["inflate_alone"]["median"] / full["chunkview_read_out"]["median"],
        "chunkview_share_of_inflate_alone_fresh_output":
            full["inflate_alone_fresh_output"]["median"] / full["chunkview"]["median"],
    }
    res["t2m_all"] = full
    # 1% hyperslab
    want = f["t2m"][HYPERSLAB]
    hs = {}
    hs["chunkview"], got = _timeit(lambda: g["t2m"][HYPERSLAB], repeat * 3, warmup=1)
    assert np.array_equal(got, want)
    hs["chunkview_zarr"], got = _timeit(lambda: gz["t2m"][HYPERSLAB], repeat * 3, warmup=1)
    assert np.array_equal(got, want)
    hs["h5py"], _ = _timeit(lambda: f["t2m"][HYPERSLAB], repeat * 3, warmup=1)
    if kz is not None:
        hs["kerchunk"], _ = _timeit(_with_default_pipeline(lambda: kz["t2m"][HYPERSLAB]),
                                    repeat * 3, warmup=1)
    if hx is not None:
        ds = hx.dataset("t2m")
        hs["hidefix"], _ = _timeit(lambda: ds[HYPERSLAB], repeat * 3, warmup=1)
    hyper = {k: _entry(v) for k, v in hs.items()}
    hyper["ratios"] = {
        "chunkview_vs": _ratios(hyper, "chunkview", ["h5py", "kerchunk", "hidefix"]),
        "chunkview_zarr_vs": _ratios(hyper, "chunkview_zarr", ["h5py", "kerchunk"])}
    res["t2m_hyperslab_1pct"] = hyper
    f.close()
    return res


def case_tiny(data: Path, quick: bool, repeat: int, threads: int) -> dict:
    import h5py
    import numpy as np

    import chunkview
    from chunkview.benchdata import OBS_CHUNK, OBS_N

    h5, ours, kc = _bench_refs(data)
    nchunks = OBS_N // OBS_CHUNK
    f = h5py.File(h5, "r")
    want = f["obs"][()]
    g = chunkview.open(str(ours), threads=threads)
    gz = chunkview.open_zarr(str(ours), threads=threads)
    t = {}
    t["chunkview"], got = _timeit(lambda: g["obs"][...], repeat, warmup=1)
    assert np.array_equal(got, want)
    t["chunkview_zarr"], got = _timeit(lambda: gz["obs"][...], repeat, warmup=1)
    assert np.array_equal(got, want)
    t["h5py"], _ = _timeit(lambda: f["obs"][()], repeat, warmup=1)
    hx = _hidefix(h5)
    if hx is not None:
        ds = hx.dataset("obs")
        t["hidefix"], got = _timeit(lambda: ds[(slice(None),)], repeat, warmup=1)
        assert np.array_equal(got, want)
    res = {k: _entry(v, nchunks=nchunks) for k, v in t.items()}
    if kc is not None:
        # kerchunk + fsspec + zarr needs ~300 us per chunk: timed on a prefix, per chunk
        sub = 2_000 if quick else 20_000
        kz = _kerchunk_zarr(kc)
        tk, got = _timeit(_with_default_pipeline(lambda: kz["obs"][: sub * OBS_CHUNK]), 1)
        assert np.array_equal(got, want[: sub * OBS_CHUNK])
        res["kerchunk"] = {**tk, "us_per_chunk": tk["median"] / sub * 1e6,
                           "chunks_timed": sub}
    res["ratios_per_chunk"] = {
        who: {n: res[n]["us_per_chunk"] / res[who]["us_per_chunk"]
              for n in ("h5py", "kerchunk", "hidefix") if n in res}
        for who in ("chunkview", "chunkview_zarr")}
    f.close()
    return {"obs_all": res, "chunks": nchunks}


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


class _Server:
    """chunkview's loopback HTTP server in its own process (its own GIL, like a real server),
    adding ``latency`` to every request and counting them."""

    def __init__(self, root: Path, latency: float):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chunkview._httpserver", str(root), "--latency", str(latency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.close()
            raise RuntimeError(f"the benchmark HTTP server did not start: {line!r}")
        self.port = int(line.split()[1])

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"

    def stats(self):
        from chunkview._httpserver import stats_of

        return stats_of(self.port)

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.proc.kill()


def _counted(server, fn, repeat):
    """Time fn like _timeit, and count the requests of one (untimed) run."""
    before = server.stats()
    got = fn()
    after = server.stats()
    t, _ = _timeit(fn, repeat)
    return t, got, {"requests": after["requests"] - before["requests"],
                    "bytes": after["bytes"] - before["bytes"]}


def case_remote(data: Path, quick: bool, repeat: int, threads: int) -> dict:
    """All of t2m and a 1% hyperslab over HTTP on loopback with LATENCY added to every
    request: chunkview.open_zarr (and chunkview.open) against fsspec's ReferenceFileSystem +
    zarr's default pipeline, on the same (kerchunk's) references; then scanning the file over
    HTTP."""
    import h5py
    import numpy as np
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        _progress("note: aiohttp is not installed (pip install 'chunkview[http]'): the remote "
                  "case is skipped")
        return {"skipped": "aiohttp is not installed"}
    import zarr
    from fsspec.implementations.reference import ReferenceFileSystem

    import chunkview

    h5, ours, kc = _bench_refs(data)
    server = _Server(h5.parent, LATENCY)
    try:
        url = server.url(h5.name)
        src = kc if kc is not None else ours
        text = src.read_text()
        refs = json.loads(text.replace(json.dumps(str(h5))[1:-1], url).replace(
            json.dumps(h5.resolve().as_uri())[1:-1], url))
        with h5py.File(h5, "r") as f:
            want_all = f["t2m"][()]
            want_hs = f["t2m"][HYPERSLAB]
        cz = chunkview.open_zarr(refs, remote_protocol="http", threads=threads)
        cg = chunkview.open(refs, remote_protocol="http", threads=threads)
        rfs = ReferenceFileSystem(refs, remote_protocol="http", asynchronous=True,
                                  remote_options={"asynchronous": True})
        kz = zarr.open_group(zarr.storage.FsspecStore(rfs, read_only=True), mode="r",
                             zarr_format=2)
        res: dict = {"latency_s": LATENCY, "threads": threads, "references": src.name,
                     "stored_bytes": int(sum(v[2] for k, v in refs["refs"].items()
                                             if k.startswith("t2m/") and isinstance(v, list)))}
        for label, sel, want, rep in (("t2m_all", (slice(None),) * 3, want_all, repeat),
                                      ("t2m_hyperslab_1pct", HYPERSLAB, want_hs, repeat * 3)):
            t, counts = {}, {}
            t["chunkview_zarr"], got, counts["chunkview_zarr"] = _counted(
                server, lambda s=sel: cz["t2m"][s], rep)
            assert np.array_equal(got, want), "chunkview over HTTP differs from h5py"
            t["chunkview"], got, counts["chunkview"] = _counted(
                server, lambda s=sel: cg["t2m"][s], rep)
            assert np.array_equal(got, want)
            t["kerchunk"], got, counts["kerchunk"] = _counted(
                server, _with_default_pipeline(lambda s=sel: kz["t2m"][s]),
                1 if quick else rep)
            assert np.array_equal(got, want), "fsspec over HTTP differs from h5py"
            nbytes = want.nbytes if label == "t2m_all" else None
            entry = {k: dict(_entry(v, nbytes), **counts[k]) for k, v in t.items()}
            entry["ratios"] = {
                "time_kerchunk_over_chunkview_zarr":
                    entry["kerchunk"]["median"] / entry["chunkview_zarr"]["median"],
                "requests_kerchunk_over_chunkview_zarr":
                    entry["kerchunk"]["requests"] / max(entry["chunkview_zarr"]["requests"], 1),
            }
            res[label] = entry
        # scanning over HTTP: time and requests
        scan_t, scan_counts = {}, {}
        scan_t["chunkview"], _, scan_counts["chunkview"] = _counted(
            server, lambda: chunkview.scan(url, storage_options={"skip_instance_cache": True}),
            repeat)
        if kc is not None and not quick:
            from kerchunk.hdf import SingleHdf5ToZarr

            def kscan():
                import fsspec

                with fsspec.open(url, "rb", skip_instance_cache=True) as fo:
                    return SingleHdf5ToZarr(fo, url, inline_threshold=0).translate()

            scan_t["kerchunk"], _, scan_counts["kerchunk"] = _counted(server, kscan, 1)
        sc = {k: dict(_entry(v), **scan_counts[k]) for k, v in scan_t.items()}
        if "kerchunk" in sc:
            sc["ratios"] = {
                "time_kerchunk_over_chunkview": sc["kerchunk"]["median"] /
                sc["chunkview"]["median"],
                "requests_kerchunk_over_chunkview": sc["kerchunk"]["requests"] /
                max(sc["chunkview"]["requests"], 1)}
        res["scan_http"] = sc
    finally:
        server.close()
    return res


def print_remote(res: dict) -> None:
    if "skipped" in res:
        print(f"\nremote: skipped ({res['skipped']})")
        return
    print(f"\nremote: HTTP on loopback, {res['latency_s'] * 1e3:.0f} ms per request, "
          f"{res['stored_bytes'] / 1e6:.0f} MB stored (median)")
    for label, title in (("t2m_all", "all of t2m"), ("t2m_hyperslab_1pct", "1% hyperslab"),
                         ("scan_http", "scan bench.h5 over HTTP")):
        print(f"  {title}:")
        for k, v in res[label].items():
            if k == "ratios":
                continue
            print(f"    {k:32} {v['median'] * 1e3:9.1f} ms {v['requests']:7d} requests")
        for k, v in res[label].get("ratios", {}).items():
            print(f"    {k}: {v:.2f}x")


def case_decode(data: Path, quick: bool, repeat: int, threads: int) -> dict:
    """Inflate backends and unshuffle against memcpy on the same in-memory t2m chunks; thread
    scaling of a full read."""
    import zlib

    import numpy as np

    import chunkview
    from chunkview import _decode

    h5, ours, _ = _bench_refs(data)
    keys, offs, lens = _t2m_chunks(ours)
    m = 16 if quick else 48
    streams = []
    with open(h5, "rb") as f:  # seek + read: os.pread does not exist on Windows
        for o, n in zip(offs[:m], lens[:m]):
            f.seek(int(o))
            streams.append(f.read(int(n)))
    size = 8 * 181 * 360 * 4
    total = size * len(streams)
    res: dict = {"chunks": len(streams), "bytes": total}
    inf = _decode.Inflater()
    buf = bytearray(size)

    def ours_inflate():
        for s in streams:
            inf.inflate(s, buf)

    def stdlib_inflate():
        for s in streams:
            zlib.decompress(s)

    t1, _ = _timeit(ours_inflate, repeat, warmup=1)
    t2, _ = _timeit(stdlib_inflate, repeat, warmup=1)
    res["inflate_1_thread"] = {
        chunkview.build_info()["inflate"]: _entry(t1, total), "stdlib_zlib": _entry(t2, total),
        "ratio": t2["median"] / t1["median"]}
    shuffled = bytes(zlib.decompress(streams[0]))
    src = np.frombuffer(shuffled, np.uint8)
    dst = np.empty_like(src)
    reps = 50

    def unshuf(kernel):
        def run():
            for _ in range(reps):
                _decode.unshuffle(shuffled, 4, out=dst, kernel=kernel)
        return run

    def memcpy():
        for _ in range(reps):
            np.copyto(dst, src)

    un = {}
    tm, _ = _timeit(memcpy, repeat, warmup=1)
    un["memcpy"] = _entry(tm, size * reps)
    for k in ["scalar", "sse2", "avx2", "neon"]:
        try:
            tk, _ = _timeit(unshuf(k), repeat, warmup=1)
        except chunkview.UnsupportedError:
            continue
        un[k] = _entry(tk, size * reps)
    try:
        from numcodecs import Shuffle

        sh = Shuffle(4)
        tn, _ = _timeit(lambda: [sh.decode(shuffled) for _ in range(reps)], repeat, warmup=1)
        un["numcodecs"] = _entry(tn, size * reps)
    except ImportError:
        pass
    best = max((v["gb_per_s"] for k, v in un.items() if k not in ("memcpy", "numcodecs")))
    un["best_share_of_memcpy"] = best / un["memcpy"]["gb_per_s"]
    res["unshuffle_4byte"] = un
    g = chunkview.open(str(ours))
    scale = {}
    for n in sorted({1, threads}):
        tn, _ = _timeit(lambda n=n: g["t2m"].read(threads=n), repeat, warmup=1)
        scale[str(n)] = _entry(tn, 64 * 721 * 1440 * 4)
    if len(scale) > 1:
        scale["speedup"] = scale["1"]["median"] / scale[str(threads)]["median"]
    res["t2m_threads"] = scale
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


def print_read(res: dict) -> None:
    print(f"\nread: all of t2m (265 MB decoded), {res['threads']} threads (median)")
    backend = res.get("inflate_alone_backend", "libdeflate")
    for k, v in res["t2m_all"].items():
        if k != "ratios":
            _row(f"{k} ({backend})" if k.startswith("inflate_alone") else k, v)
    _print_ratios(res["t2m_all"]["ratios"])
    full = res["t2m_all"]
    if full["inflate_alone"]["median"] > full["chunkview_read_out"]["median"] * 1.05:
        print("  note: inflate alone measured slower than the read it bounds: this run's times "
              "are noisy (another process on the cores?)")
    print("read: 1% hyperslab of t2m (median)")
    for k, v in res["t2m_hyperslab_1pct"].items():
        if k != "ratios":
            _row(k, v, unit="t")
    _print_ratios(res["t2m_hyperslab_1pct"]["ratios"])


def print_tiny(res: dict) -> None:
    print(f"\ntiny: all of obs ({res['chunks']:,} chunks, median)")
    for k, v in res["obs_all"].items():
        if k != "ratios_per_chunk":
            _row(k + (" (prefix)" if "chunks_timed" in v else ""), v, unit="chunk")
    print("  time per chunk, baseline / chunkview:")
    _print_ratios(res["obs_all"]["ratios_per_chunk"])


def print_decode(res: dict) -> None:
    print(f"\ndecode: {res['chunks']} t2m chunks in memory, one thread (median)")
    inf = res["inflate_1_thread"]
    for k, v in inf.items():
        if k != "ratio":
            _row(f"inflate {k}", v)
    print(f"  inflate speedup over stdlib zlib: {inf['ratio']:.2f}x")
    un = res["unshuffle_4byte"]
    for k, v in un.items():
        if k != "best_share_of_memcpy":
            _row(f"unshuffle {k}" if k != "memcpy" else "memcpy", v)
    print(f"  best unshuffle / memcpy bandwidth: {un['best_share_of_memcpy']:.2f}")
    sc = res["t2m_threads"]
    for k, v in sc.items():
        if k != "speedup":
            _row(f"chunkview.open t2m, {k} thread(s)", v)
    if "speedup" in sc:
        print(f"  thread speedup: {sc['speedup']:.2f}x")


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
        from chunkview.benchplot import plot

        plot(results, plot_path)
        print(f"wrote {plot_path}")
    return results
