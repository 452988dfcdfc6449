"""``read``: all of ``t2m`` and a 1% hyperslab: chunkview.open and open_zarr against h5py,
kerchunk + fsspec + zarr's default pipeline, hidefix, and libdeflate inflate alone.
"""


from __future__ import annotations

from pathlib import Path

from chunkview.bench.common import (
    HYPERSLAB,
    _bench_refs,
    _entry,
    _hidefix,
    _kerchunk_zarr,
    _print_ratios,
    _ratios,
    _row,
    _t2m_chunks,
    _timeit,
    _with_default_pipeline,
)


def _inflate_limit(h5: Path, ours: Path, threads: int, repeat: int):
    """The inflate the reads use (``build_info()["inflate"]``: libdeflate, or zlib where no
    libdeflate was found) alone, through the same C batch as a read: every t2m chunk inflated
    into place on ``threads`` threads, no unshuffle, bytes already in memory; timed into a
    reused buffer and into a fresh one (which pays the page faults a read pays)."""
    import numpy as np

    from chunkview import _decode
    from chunkview.bench.data import T2M_CHUNKS

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


