"""libdeflate loaded at run time by builds made without its header (``pip install .`` on a
machine with the system's ``libdeflate0`` but not ``libdeflate-dev``): the library is found,
checked and used by every decode path; ``CHUNKVIEW_LIBDEFLATE_LIBRARY`` picks another or none;
``build_info`` names the library, its file and its version.  The subprocess cases run only on
such builds; the pure helpers run everywhere."""

import json
import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

import chunkview
from chunkview import _decode, _platform

LOADABLE = _decode._inflate_loadable()
needs_loadable = pytest.mark.skipif(not LOADABLE, reason="this build links its inflate "
                                    "(libdeflate's header was found, or CHUNKVIEW_INFLATE=zlib)")

PROBE = textwrap.dedent("""
    import json, sys, warnings, zlib
    import numpy as np
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import chunkview
        from chunkview import _decode
    info = chunkview.build_info()
    # every decode path: one inflater, and a batch of chunks decoded in threads
    rng = np.random.default_rng(0)
    a = np.round(np.cumsum(rng.normal(size=(64, 512)), axis=1), 1).astype("<f4")
    ok = _decode.inflate(zlib.compress(a.tobytes(), 6), a.nbytes) == a.tobytes()
    maps = sorted({l.split()[-1] for l in open("/proc/self/maps") if "deflate" in l}) \\
        if sys.platform.startswith("linux") else []
    print(json.dumps({"info": info, "ok": ok, "maps": maps,
                      "warnings": [str(w.message) for w in caught]}))
""")


def probe(env_value):
    env = dict(os.environ)
    env.pop(_platform.LIBDEFLATE_ENV, None)
    if env_value is not None:
        env[_platform.LIBDEFLATE_ENV] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def system_libdeflate():
    found = _platform.load_libdeflate() if LOADABLE else None
    return None if found is None or isinstance(found, str) else found


@needs_loadable
def test_default_loads_the_system_libdeflate():
    found = system_libdeflate()
    r = probe(None)
    info = r["info"]
    assert r["ok"]
    if found is None:  # no libdeflate on this machine: zlib, saying why
        assert info["inflate"] == "zlib" and "no libdeflate" in info["inflate_note"]
        pytest.skip("no libdeflate shared library on this machine")
    assert info["inflate"] == "libdeflate" and info["inflate_linkage"] == "runtime", info
    assert info["inflate_note"] is None
    lib = info["inflate_library"]
    assert lib and "deflate" in os.path.basename(lib) and os.path.exists(lib), info
    if sys.platform.startswith("linux"):  # the file it names is the one mapped
        assert [os.path.realpath(m) for m in r["maps"]] == [os.path.realpath(lib)], r
    assert info["inflate_version"] == (_platform.library_version(lib) or "unknown")


@needs_loadable
def test_none_keeps_zlib():
    r = probe("none")
    info = r["info"]
    assert r["ok"] and info["inflate"] == "zlib" and info["inflate_linkage"] == "build"
    assert info["inflate_note"] == f"{_platform.LIBDEFLATE_ENV}=none"
    assert not r["maps"] and not r["warnings"]


@needs_loadable
def test_a_library_that_is_not_there_warns_and_keeps_zlib(tmp_path):
    bogus = tmp_path / "libdeflate.so.0"
    bogus.write_bytes(b"not a shared library")
    r = probe(str(bogus))
    info = r["info"]
    assert r["ok"] and info["inflate"] == "zlib"
    assert "could not be loaded" in info["inflate_note"] and str(bogus) in info["inflate_note"]
    assert any("inflating with zlib" in w for w in r["warnings"]), r


@needs_loadable
def test_a_library_without_the_entry_points_is_refused():
    # the C library is a real shared library without libdeflate's symbols
    libc = "libc.so.6" if sys.platform.startswith("linux") else None
    if libc is None:
        pytest.skip("needs glibc's soname")
    r = probe(libc)
    assert r["ok"] and r["info"]["inflate"] == "zlib"
    assert "could not be loaded" in r["info"]["inflate_note"]


@needs_loadable
def test_named_library_is_used():
    found = system_libdeflate()
    if found is None:
        pytest.skip("no libdeflate shared library on this machine")
    lib = found[2]
    r = probe(lib)
    assert r["ok"] and r["info"]["inflate"] == "libdeflate"
    assert r["info"]["inflate_library"] == os.path.realpath(lib)


@needs_loadable
def test_decode_suite_on_both_backends():
    """The decode tests pass with zlib too, in the same build: whichever backend a machine
    ends up with decodes the same bytes."""
    env = dict(os.environ, **{_platform.LIBDEFLATE_ENV: "none"})
    env.pop("CHUNKVIEW_EXPECT_INFLATE", None)
    env.pop("CHUNKVIEW_EXPECT_LINKAGE", None)
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        os.path.join(here, "test_decode.py")], env=env, capture_output=True,
                       text=True, timeout=600, cwd=here)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_inflater_matches_zlib_on_every_format():
    raw = np.arange(100_000, dtype="<i4").tobytes()
    for fmt, wbits in (("zlib", 15), ("deflate", -15), ("gzip", 31)):
        c = zlib.compressobj(4, zlib.DEFLATED, wbits)
        assert _decode.inflate(c.compress(raw) + c.flush(), len(raw), fmt) == raw


# ------------------------------------------------------------- the helpers, on any machine


def test_candidates_per_platform(tmp_path):
    p = str(tmp_path)
    linux = _platform.libdeflate_candidates("linux", p)
    assert linux[0] == os.path.join(p, "lib", "libdeflate.so.0") and "libdeflate.so.0" in linux
    mac = _platform.libdeflate_candidates("darwin", p)
    assert "/opt/homebrew/lib/libdeflate.0.dylib" in mac and mac[0].startswith(p)
    win = _platform.libdeflate_candidates("win32", p)
    assert win[0] == os.path.join(p, "Library", "bin", "deflate.dll") and "deflate.dll" in win


def test_version_from_file_name_cellar_and_conda(tmp_path):
    f = tmp_path / "lib" / "libdeflate.so.1.22"
    f.parent.mkdir()
    f.write_bytes(b"")
    assert _platform.library_version(str(f)) == "1.22"
    cellar = tmp_path / "Cellar" / "libdeflate" / "1.23_1" / "lib"
    cellar.mkdir(parents=True)
    (cellar / "libdeflate.0.dylib").write_bytes(b"")
    assert _platform.library_version(str(cellar / "libdeflate.0.dylib")) == "1.23"
    env = tmp_path / "env"
    (env / "lib").mkdir(parents=True)
    (env / "conda-meta").mkdir()
    (env / "lib" / "libdeflate.so.0").write_bytes(b"")
    (env / "conda-meta" / "libdeflate-1.24-h0.json").write_text(
        json.dumps({"name": "libdeflate", "version": "1.24"}))
    assert _platform.library_version(str(env / "lib" / "libdeflate.so.0")) == "1.24"
    # Windows conda: Library/bin/deflate.dll, conda-meta two levels up
    (env / "Library" / "bin").mkdir(parents=True)
    (env / "Library" / "bin" / "deflate.dll").write_bytes(b"")
    assert _platform.library_version(str(env / "Library" / "bin" / "deflate.dll")) == "1.24"
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "libdeflate.so.0").write_bytes(b"")
    assert _platform.library_version(str(tmp_path / "x" / "libdeflate.so.0"),
                                     dpkg_root=str(tmp_path / "nodpkg")) is None


def test_version_from_dpkg(tmp_path):
    root = tmp_path / "dpkg"
    (root / "info").mkdir(parents=True)
    (root / "info" / "libdeflate0:amd64.list").write_text(
        "/.\n/usr\n/usr/lib/x86_64-linux-gnu/libdeflate.so.0\n")
    (root / "info" / "libdeflate-dev:amd64.list").write_text("/usr/include/libdeflate.h\n")
    (root / "status").write_text(
        "Package: libdeflate-dev\nStatus: install ok installed\nVersion: 1.99-1\n\n"
        "Package: libdeflate0\nStatus: install ok installed\nArchitecture: amd64\n"
        "Version: 1:1.14-1+b2\nDescription: fast\n whole-buffer\n\n")
    # the loader may say /lib/... where the package lists /usr/lib/... (usrmerge)
    got = _platform.library_version("/lib/x86_64-linux-gnu/libdeflate.so.0", dpkg_root=str(root))
    assert got == "1.14"
    assert _platform.library_version("/opt/other/libdeflate.so.0", dpkg_root=str(root)) is None


def test_build_info_names_what_decodes():
    info = chunkview.build_info()
    if info["inflate_linkage"] == "runtime":
        assert _decode._runtime["file"] == info["inflate_library"] and _decode._runtime["handle"]
    else:
        assert "file" not in _decode._runtime


BOMB = textwrap.dedent("""
    import json, sys, time, tracemalloc
    import chunkview
    path, n = sys.argv[1], int(sys.argv[2])
    meta = {"zarr_format": 2, "shape": [1024], "chunks": [1024], "dtype": "<f4",
            "compressor": {"id": "zlib", "level": 9}, "filters": None, "fill_value": 0,
            "order": "C"}
    refs = {"version": 1, "refs": {".zgroup": '{"zarr_format":2}',
                                   "a/.zarray": json.dumps(meta), "a/0": [path, 0, n]}}
    tracemalloc.start()  # numpy's buffers and the C core's blocks (its allocation hooks)
    t0 = time.perf_counter()
    try:
        chunkview.open(refs)["a"][...]
        outcome = "no error"
    except chunkview.DecodeError as e:
        outcome = str(e)
    peak = tracemalloc.get_traced_memory()[1]  # (ru_maxrss carries the parent's over exec)
    print(json.dumps({"error": outcome, "seconds": time.perf_counter() - t0, "peak": peak,
                      "inflate": chunkview.build_info()["inflate"]}))
""")


@pytest.mark.parametrize("library", [None, "none"])
def test_bomb_on_the_fast_path_is_bounded(tmp_path, library):
    """A zlib bomb (1 GiB of zeros in about 1 MB) where the metadata promises a 4 KiB chunk, on
    the C batch path with either backend a build may end up with: a DecodeError naming the key,
    the file and the byte range, in bounded time and memory (the inflate never writes past the
    chunk's 4 KiB)."""
    if library == "none" and not LOADABLE:
        pytest.skip("needs a build that loads libdeflate at run time")
    c = zlib.compressobj(9)
    block = bytes(1 << 20)
    parts = [c.compress(block) for _ in range(1024)]
    bomb = b"".join(parts) + c.flush()
    f = tmp_path / "bomb.bin"
    f.write_bytes(bomb)
    env = dict(os.environ)
    env.pop(_platform.LIBDEFLATE_ENV, None)
    if library:
        env[_platform.LIBDEFLATE_ENV] = library
    out = subprocess.run([sys.executable, "-c", BOMB, str(f), str(len(bomb))], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert r["inflate"] == ("zlib" if library == "none" else chunkview.build_info()["inflate"])
    assert "a/0" in r["error"] and str(f) in r["error"], r
    assert f"bytes 0-{len(bomb)}" in r["error"], r
    assert r["seconds"] < 30, r
    assert r["peak"] < 64 << 20, r  # a 1 GiB output never materialises
