"""``virtual``: chunkview inside VirtualiZarr and Icechunk, each against that stack's own path.

* scanning bench.h5 into a ManifestStore: ``ChunkviewParser`` against VirtualiZarr's
  ``HDFParser``;
* reading all of ``t2m`` and a 1% hyperslab from a ManifestStore (VirtualiZarr's read path:
  obstore, one GET per chunk, zarr's default pipeline) against chunkview reading the same
  store (``chunkview.open(store)``: the references taken from its manifests, then chunkview's
  fetch and C decode);
* the same from an Icechunk repository of virtual chunks (``to_icechunk``): Icechunk + zarr's
  default pipeline against ``chunkview.open(store)``, whose opening (listing the repository's
  chunks, one checked read per file) is timed apart.

Needs VirtualiZarr and Icechunk (Python >= 3.12: ``pip install 'chunkview[icechunk]'``); a
missing one is skipped with a note.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from chunkview.bench.common import (
    _bench_refs,
    _entry,
    _print_ratios,
    _progress,
    _ratios,
    _row,
    _timeit,
)
from chunkview.bench.read import HYPERSLAB

DEFAULT = "zarr.core.codec_pipeline.BatchedCodecPipeline"


def _zarr_default(fn):
    def run():
        import zarr

        with zarr.config.set({"codec_pipeline.path": DEFAULT}):
            return fn()
    return run


def case_virtual(data: Path, quick: bool, repeat: int, threads: int) -> dict:
    try:
        from obspec_utils.registry import ObjectStoreRegistry
        from obstore.store import LocalStore
        from virtualizarr.parsers import HDFParser
    except ImportError:
        _progress("note: VirtualiZarr is not installed (pip install 'chunkview[virtualizarr]',"
                  " Python >= 3.12): the virtual case is skipped")
        return {"skipped": "virtualizarr is not installed"}
    import h5py
    import numpy as np
    import zarr

    import chunkview
    from chunkview.virtualizarr import ChunkviewParser

    h5, _, _ = _bench_refs(data)
    url = h5.resolve().as_uri()
    reg = ObjectStoreRegistry({"file://": LocalStore()})
    res: dict = {"file": str(h5), "threads": threads}
    warnings.simplefilter("ignore")
    with h5py.File(h5, "r") as f:
        want, want_hs = f["t2m"][()], f["t2m"][HYPERSLAB]
    nbytes = want.nbytes

    t = {}
    t["chunkview_parser"], store = _timeit(lambda: ChunkviewParser()(url, reg), repeat,
                                           warmup=1)
    t["hdfparser"], theirs = _timeit(lambda: HDFParser()(url, reg), 1 if quick else repeat)
    scan = {k: _entry(v) for k, v in t.items()}
    scan["ratios"] = _ratios(scan, "chunkview_parser", ["hdfparser"])
    res["scan"] = scan

    def reads(label, zstore, ours, t_open=None):
        za = _zarr_default(lambda: zarr.open_group(zstore, mode="r", zarr_format=3,
                                                   use_consolidated=False)["t2m"])()
        g = ours["t2m"]
        t_all, t_hs = {}, {}
        t_all["chunkview"], got = _timeit(lambda: g[...], repeat, warmup=1)
        assert np.array_equal(got, want), f"chunkview over the {label} differs from h5py"
        t_all[label], got = _timeit(_zarr_default(lambda: za[...]), 1 if quick else repeat,
                                    warmup=0 if quick else 1)
        assert np.array_equal(got, want), f"{label} + zarr differs from h5py"
        t_hs["chunkview"], got = _timeit(lambda: g[HYPERSLAB], repeat * 3, warmup=1)
        assert np.array_equal(got, want_hs)
        t_hs[label], got = _timeit(_zarr_default(lambda: za[HYPERSLAB]), repeat * 3, warmup=1)
        assert np.array_equal(got, want_hs)
        out = {"t2m_all": {k: _entry(v, nbytes) for k, v in t_all.items()},
               "t2m_hyperslab_1pct": {k: _entry(v) for k, v in t_hs.items()}}
        for part in out.values():
            part["ratios"] = _ratios(part, "chunkview", [label])
        if t_open is not None:
            out["chunkview_open"] = _entry(t_open)
        return out

    # VirtualiZarr's own store (HDFParser's), read by both
    t_open, ours = _timeit(lambda: chunkview.open(theirs, threads=threads), repeat)
    res["manifest_store"] = reads("manifest_store", theirs, ours, t_open)
    del store
    try:
        import icechunk
    except ImportError:
        _progress("note: Icechunk is not installed: its baseline is skipped")
        return res
    from chunkview.icechunk import to_icechunk, virtual_chunk_containers

    refs = ChunkviewParser().scan(url)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = icechunk.RepositoryConfig.default()
        for c in virtual_chunk_containers(refs):
            cfg.set_virtual_chunk_container(c)
        repo = icechunk.Repository.create(
            icechunk.local_filesystem_storage(str(Path(tmp) / "repo")), cfg,
            authorize_virtual_chunk_access={c.url_prefix: None
                                            for c in virtual_chunk_containers(refs)})
        session = repo.writable_session("main")
        t_write, _ = _timeit(lambda: to_icechunk(refs, session.store), 1)
        session.commit("bench")
        ice = repo.readonly_session("main").store
        t_open, ours = _timeit(lambda: chunkview.open(ice, threads=threads), repeat)
        res["icechunk"] = reads("icechunk", ice, ours, t_open)
        res["icechunk"]["to_icechunk"] = _entry(t_write)
    return res


def print_virtual(res: dict) -> None:
    if "skipped" in res:
        print(f"\nvirtual: skipped ({res['skipped']})")
        return
    print("\nvirtual: scanning bench.h5 into a VirtualiZarr ManifestStore (median)")
    for k, v in res["scan"].items():
        if k != "ratios":
            _row(k, v, unit="")
    _print_ratios({"chunkview_parser_vs": res["scan"]["ratios"]})
    for src in ("manifest_store", "icechunk"):
        if src not in res:
            continue
        r = res[src]
        if "chunkview_open" in r:
            print(f"virtual: chunkview.open({src}) {r['chunkview_open']['median'] * 1e3:.1f} ms")
        for part in ("t2m_all", "t2m_hyperslab_1pct"):
            print(f"virtual: {part} from the {src} (median)")
            for k, v in r[part].items():
                if k != "ratios":
                    _row(k, v, unit="gb" if part == "t2m_all" else "")
            _print_ratios({"chunkview_vs": r[part]["ratios"]})
