"""``decode``: inflate backends and unshuffle against memcpy on the same in-memory chunks, and
thread scaling.
"""


from __future__ import annotations

from pathlib import Path

from chunkview.bench.common import (
    _bench_refs,
    _entry,
    _row,
    _t2m_chunks,
    _timeit,
)


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


