"""``tiny``: all of ``obs``, 200,000 tiny chunks.
"""


from __future__ import annotations

from pathlib import Path

from chunkview.bench.common import (
    _bench_refs,
    _entry,
    _hidefix,
    _kerchunk_zarr,
    _print_ratios,
    _row,
    _timeit,
    _with_default_pipeline,
)


def case_tiny(data: Path, quick: bool, repeat: int, threads: int) -> dict:
    import h5py
    import numpy as np

    import chunkview
    from chunkview.bench.data import OBS_CHUNK, OBS_N

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


def print_tiny(res: dict) -> None:
    print(f"\ntiny: all of obs ({res['chunks']:,} chunks, median)")
    for k, v in res["obs_all"].items():
        if k != "ratios_per_chunk":
            _row(k + (" (prefix)" if "chunks_timed" in v else ""), v, unit="chunk")
    print("  time per chunk, baseline / chunkview:")
    _print_ratios(res["obs_all"]["ratios_per_chunk"])


