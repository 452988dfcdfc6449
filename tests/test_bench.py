"""The pieces of ``chunkview bench`` that CI's end-to-end run does not check closely: the
loopback server process of the remote case and the --plot chart."""

import json
import sys

import pytest

from chunkview import bench


def test_server_process_counts_requests(tmp_path):
    pytest.importorskip("aiohttp")
    import fsspec

    data = bytes(range(256)) * 100
    (tmp_path / "f.bin").write_bytes(data)
    srv = bench._Server(tmp_path, 0.01)
    try:
        fs = fsspec.filesystem("http", skip_instance_cache=True)
        before = srv.stats()
        assert fs.cat_file(srv.url("f.bin"), start=1000, end=1100) == data[1000:1100]
        assert fs.cat_file(srv.url("f.bin")) == data
        after = srv.stats()
        assert after["requests"] - before["requests"] == 2
        assert after["bytes"] - before["bytes"] == 100 + len(data)
    finally:
        srv.close()
    assert srv.proc.poll() is not None  # stopped


def _results():
    t = lambda m: {"min": m * 0.9, "median": m, "runs": 3}  # noqa: E731
    read = {"chunkview": t(0.2), "h5py": t(1.0), "kerchunk": t(0.8)}
    read["ratios"] = {"chunkview_vs": {"h5py": 5.0, "kerchunk": 4.0}}
    hyper = {"chunkview": t(0.01), "h5py": t(0.05)}
    hyper["ratios"] = {"chunkview_vs": {"h5py": 5.0}}
    remote = {"latency_s": 0.02}
    for k in ("t2m_all", "t2m_hyperslab_1pct"):
        remote[k] = {"chunkview_zarr": dict(t(0.3), requests=32),
                     "kerchunk": dict(t(0.9), requests=128),
                     "ratios": {"time_kerchunk_over_chunkview_zarr": 3.0,
                                "requests_kerchunk_over_chunkview_zarr": 4.0}}
    return {"machine": {"cpu": "test", "cpu_count": 2, "python": "3"},
            "cases": {"read": {"t2m_all": read, "t2m_hyperslab_1pct": hyper},
                      "remote": remote}}


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    from chunkview.benchplot import _panels, plot

    res = _results()
    panels = _panels(res)
    titles = [p[0] for p in panels]
    assert any("5.0x h5py" in x and "4.0x kerchunk" in x for x in titles)
    assert any("3.0x faster" in x and "4.0x fewer requests" in x for x in titles)
    remote_bars = panels[-1][2]
    assert ("kerchunk+fsspec+zarr", 0.9e3, "128 req") in remote_bars
    out = tmp_path / "b.png"
    plot(res, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="nothing to plot"):
        plot({"cases": {}}, str(tmp_path / "empty.png"))


def test_plot_needs_matplotlib_before_running(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"chunkview\[plot\]"):
        bench.run(["index"], plot_path=str(tmp_path / "x.png"), data=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing was generated


def test_unknown_case(tmp_path):
    with pytest.raises(SystemExit, match="unknown benchmark case"):
        bench.run(["nope"], data=tmp_path)
    json.dumps(_results())
