"""Decode kernels against reference implementations: stdlib zlib for inflate, h5py (the HDF5
library's own shuffle and fletcher32 filters) for unshuffle and checksums."""

import os
import sys
import zlib

import numpy as np
import pytest

import chunkview
from chunkview._decode import (
    Inflater,
    fletcher32,
    fletcher32_verify,
    inflate,
    shuffle,
    unshuffle,
)

KERNELS = ["scalar"] + chunkview.build_info()["simd_available"]


def test_build_info():
    info = chunkview.build_info()
    assert info["inflate"] in ("libdeflate", "zlib")
    assert info["inflate_linkage"] in ("build", "runtime")
    assert info["inflate_version"] and info["inflate_version"][0].isdigit(), info
    assert set(info["simd_available"]) <= set(info["simd_built"])
    lib = info["inflate_library"]
    if sys.platform.startswith(("linux", "darwin")):
        assert lib is not None and os.path.exists(lib), info
        assert ("deflate" if info["inflate"] == "libdeflate" else "libz") in os.path.basename(lib)
    if info["inflate"] == "zlib":  # a zlib build says why it is not using libdeflate
        assert info["inflate_note"], info
    # CI says what the build must use: libdeflate (a wheel: from inside the wheel; a source
    # build on a machine without libdeflate-dev: the system's shared library, at run time)
    expect = os.environ.get("CHUNKVIEW_EXPECT_INFLATE")
    if expect:
        assert info["inflate"] == expect, info
    linkage = os.environ.get("CHUNKVIEW_EXPECT_LINKAGE")
    if linkage:
        assert info["inflate_linkage"] == linkage, info
    if os.environ.get("CHUNKVIEW_EXPECT_BUNDLED") == "1" and lib is not None:
        pkg = os.path.dirname(os.path.realpath(chunkview.__file__))
        # auditwheel: site-packages/chunkview.libs; delocate: chunkview/.dylibs
        assert os.path.realpath(lib).startswith((pkg + os.sep, pkg + ".libs" + os.sep)), (lib, pkg)


@pytest.mark.parametrize("level", [0, 1, 4, 9])
@pytest.mark.parametrize("wbits,fmt", [(15, "zlib"), (-15, "deflate"), (31, "gzip"), (9, "zlib")])
def test_inflate_matches_zlib(level, wbits, fmt):
    rng = np.random.default_rng(level)
    for size in (0, 1, 100, 4095, 65536, 1_000_003):
        # compressible but not trivial: rounded smooth values, like archive data
        raw = np.round(np.sin(np.arange(size // 4 + 1) / 50) * 100 + rng.normal(0, 1, size // 4 + 1),
                       1).astype("f4").tobytes()[:size]
        c = zlib.compressobj(level, zlib.DEFLATED, wbits)
        stream = c.compress(raw) + c.flush()
        assert inflate(stream, len(raw), fmt) == raw


def test_inflate_rejects_bad_streams():
    raw = bytes(range(256)) * 64
    stream = zlib.compress(raw, 6)
    z = Inflater()
    with pytest.raises(chunkview.DecodeError, match="more than"):
        z.inflate(stream, bytearray(len(raw) - 1))
    with pytest.raises(chunkview.DecodeError, match="expected"):
        inflate(stream, len(raw) + 1)  # exact size is required
    for cut in (0, 1, 2, 10, len(stream) // 2, len(stream) - 1):
        with pytest.raises(chunkview.DecodeError):
            inflate(stream[:cut], len(raw))
    bad = bytearray(stream)
    bad[-1] ^= 0xFF  # adler32
    with pytest.raises(chunkview.DecodeError, match="corrupt"):
        inflate(bytes(bad), len(raw))
    rng = np.random.default_rng(1)
    for _ in range(300):  # random damage: raises or (rarely) decodes, never crashes
        b = bytearray(stream)
        for p in rng.integers(0, len(b), 3):
            b[p] ^= int(rng.integers(1, 256))
        try:
            out = inflate(bytes(b), len(raw))
            assert len(out) == len(raw)
        except chunkview.DecodeError:
            pass


@pytest.mark.parametrize("kernel", KERNELS)
def test_unshuffle_against_h5py(tmp_path, kernel):
    """h5py writes shuffled chunks with the HDF5 library; reading the raw chunk and unshuffling it
    with each kernel must give h5py's own decoded bytes (itemsizes 1-16, odd chunk sizes)."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "s.h5"
    rng = np.random.default_rng(7)
    cases = {}
    with h5py.File(path, "w") as f:
        for itemsize in range(1, 17):
            for n in (1, 7, 33, 1001):
                dt = np.dtype(f"V{itemsize}") if itemsize not in (1, 2, 4, 8) else np.dtype(f"u{itemsize}")
                data = np.frombuffer(rng.bytes(itemsize * n), dtype=dt)
                name = f"s{itemsize}_{n}"
                f.create_dataset(name, data=data, chunks=(n,), shuffle=True)
                cases[name] = (itemsize, data.tobytes())
    with h5py.File(path, "r") as f:
        for name, (itemsize, expected) in cases.items():
            mask, raw = f[name].id.read_direct_chunk((0,))
            assert mask == 0
            assert bytes(unshuffle(raw, itemsize, kernel=kernel)) == expected
            assert bytes(shuffle(expected, itemsize)) == raw  # and the forward filter matches


@pytest.mark.parametrize("kernel", KERNELS)
def test_unshuffle_hdf5_edge_rules(kernel):
    rng = np.random.default_rng(3)
    for es in range(1, 17):
        for nbytes in (0, 1, es - 1, es, es + 1, 31 * es + 5, 4096 * es + es - 1):
            if nbytes < 0:
                continue
            src = rng.bytes(nbytes)
            out = bytes(unshuffle(src, es, kernel=kernel))
            n = nbytes // es
            if es <= 1 or nbytes < es:
                assert out == src
                continue
            body = np.frombuffer(src[: n * es], np.uint8).reshape(es, n).T.tobytes()
            assert out == body + src[n * es:]  # trailing bytes copied through


def test_unshuffle_unknown_kernel_is_refused():
    missing = {"sse2", "avx2", "neon"} - set(chunkview.build_info()["simd_available"])
    for k in missing:
        with pytest.raises(chunkview.UnsupportedError):
            unshuffle(b"abcd", 2, kernel=k)


def test_fletcher32_against_h5py(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "f.h5"
    data = np.arange(1001, dtype="i2") * 7
    with h5py.File(path, "w") as f:
        f.create_dataset("odd", data=np.frombuffer(b"abcdefg" * 11, "u1"), chunks=(77,),
                         fletcher32=True)
        f.create_dataset("i2", data=data, chunks=(1001,), fletcher32=True)
    with h5py.File(path, "r") as f:
        for name in ("odd", "i2"):
            mask, raw = f[name].id.read_direct_chunk((0,))
            n = fletcher32_verify(raw)
            assert raw[:n] == f[name][...].tobytes()
            assert fletcher32(raw[:n]) == int.from_bytes(raw[n:], "little")
            bad = bytearray(raw)
            bad[3] ^= 0x10
            with pytest.raises(chunkview.DecodeError, match="fletcher32"):
                fletcher32_verify(bytes(bad))
    with pytest.raises(chunkview.DecodeError, match="too short"):
        fletcher32_verify(b"abc")
