"""The pieces of ``chunkview bench`` that CI's end-to-end run does not check closely: the
loopback server process of the remote case and the --plot chart."""

import json
import sys

import pytest

from chunkview.bench import common, remote
from chunkview.bench import run as bench


def test_server_process_counts_requests(tmp_path):
    pytest.importorskip("aiohttp")
    import fsspec

    data = bytes(range(256)) * 100
    (tmp_path / "f.bin").write_bytes(data)
    srv = remote._Server(tmp_path, 0.01)
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
    from chunkview.bench.plot import _panels, plot

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


def test_inflate_line_names_the_backend():
    lib = {"inflate": "libdeflate", "inflate_version": "1.14", "inflate_linkage": "runtime",
           "inflate_library": "/usr/lib/libdeflate.so.0", "inflate_note": None}
    assert common.inflate_line(lib) == ("inflate: libdeflate 1.14 (the system's shared library, "
                                       "loaded at run time: /usr/lib/libdeflate.so.0)")
    z = {"inflate": "zlib", "inflate_version": "1.2.13", "inflate_linkage": "build",
         "inflate_library": "/usr/lib/libz.so.1", "inflate_note": "no libdeflate shared library"}
    line = common.inflate_line(z)
    assert line.startswith("WARNING: inflate is zlib 1.2.13, not libdeflate")
    assert "no libdeflate shared library" in line


@pytest.mark.skipif(not __import__("chunkview._decode", fromlist=["x"])._inflate_loadable(),
                    reason="needs a build that loads libdeflate at run time")
def test_bench_on_zlib_says_so_and_measures_zlib(tmp_path):
    """A user whose chunkview inflates with zlib (here: CHUNKVIEW_LIBDEFLATE_LIBRARY=none) is
    told so in the bench's first lines, and the limit the read is compared with is zlib's own."""
    import os
    import subprocess

    env = dict(os.environ, CHUNKVIEW_LIBDEFLATE_LIBRARY="none")
    out = tmp_path / "b.json"
    r = subprocess.run([sys.executable, "-m", "chunkview.cli", "bench", "read", "--quick",
                        "--repeat", "1", "--json", str(out)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[1].startswith("WARNING: inflate is zlib"), lines[:3]
    assert "CHUNKVIEW_LIBDEFLATE_LIBRARY=none" in lines[1]
    res = json.loads(out.read_text())
    assert res["machine"]["build"]["inflate"] == "zlib"
    assert res["cases"]["read"]["inflate_alone_backend"] == "zlib"
    assert any(line.strip().startswith("inflate_alone (zlib)") for line in lines), r.stdout
