"""``remote``: reads over HTTP on loopback with added latency (the loopback server of
:mod:`chunkview.bench.server`), against fsspec's ``ReferenceFileSystem``.
"""


from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from chunkview.bench.common import (
    HYPERSLAB,
    LATENCY,
    _bench_refs,
    _entry,
    _progress,
    _timeit,
    _with_default_pipeline,
)


class _Server:
    """chunkview's loopback HTTP server in its own process (its own GIL, like a real server),
    adding ``latency`` to every request and counting them."""

    def __init__(self, root: Path, latency: float):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chunkview.bench.server", str(root), "--latency", str(latency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.close()
            raise RuntimeError(f"the benchmark HTTP server did not start: {line!r}")
        self.port = int(line.split()[1])

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"

    def stats(self):
        from chunkview.bench.server import stats_of

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


