"""The HDF5 filter codecs (chunkview.codecs) and the pipeline mapping (chunkview.scan.hdf5.filters).

Every filter is checked chunk by chunk against the HDF5 library: datasets are written with h5py
(+ hdf5plugin), each chunk's stored bytes are decoded through the configs ``codecs_for`` builds
(in reverse pipeline order, skipping masked filters) and compared with what h5py reads for that
chunk's region (edge chunks: the in-bounds part).  Then corrupt input, the config round trips,
encoders checked by HDF5 itself (chunks written with ``write_direct_chunk``), and every supported
chunked dataset of the third-party corpus in ``../shared/corpus``.
"""

from __future__ import annotations

import json
import struct
import sys
from collections import Counter
from pathlib import Path

import numcodecs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

h5py = pytest.importorskip("h5py")
hdf5plugin = pytest.importorskip("hdf5plugin")
imagecodecs = pytest.importorskip("imagecodecs")

from chunkview.codecs import registry as hdf5codecs  # noqa: E402
from chunkview.codecs.registry import (  # noqa: E402
    HDF5LZ4,
    HDF5LZF,
    HDF5SZIP,
    HDF5Bitshuffle,
    HDF5Blosc,
    HDF5BZip2,
    HDF5NBit,
    HDF5ScaleOffset,
    HDF5Zstd,
    dtype_from_json,
    dtype_to_json,
)
from chunkview.errors import DecodeError, UnsupportedError  # noqa: E402
from chunkview.scan.hdf5.filters import codecs_for  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
SHAPE, CHUNKS = (37, 23), (8, 6)  # 5 x 4 chunks, the last row and column partial
RNG_SEED = 20240607

ALL_DTYPES = ["|i1", "|u1"] + [f"{o}{k}{s}" for k in "iu" for s in (2, 4, 8) for o in "<>"] + [
    f"{o}f{s}" for s in (4, 8) for o in "<>"]
SOME_DTYPES = ["|i1", ">i2", "<u4", ">i8", "<f4", ">f8"]


# ------------------------------------------------------------------ helpers


def filters_of(ds):
    dcpl = ds.id.get_create_plist()
    return [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]


def pipeline(ds):
    return codecs_for(filters_of(ds), ds.dtype, path=ds.name, h5type=ds.id.get_type())


def as_bytes(out) -> bytes:
    if isinstance(out, np.ndarray):
        return np.ascontiguousarray(out).view(np.uint8).tobytes()
    return bytes(memoryview(out).cast("B"))


def decode(cfgs, raw, mask=0) -> bytes:
    """Decode one chunk as a reader does: the configs in reverse, skipping masked filters.
    Errors of numcodecs' own codecs (zlib) become DecodeError, as the reader wraps them; the
    hdf5_* codecs must raise DecodeError themselves."""
    out = raw
    for bit in range(len(cfgs) - 1, -1, -1):
        if mask >> bit & 1:
            continue
        codec = numcodecs.get_codec(dict(cfgs[bit]))
        if cfgs[bit]["id"].startswith("hdf5_"):
            out = codec.decode(out)
            continue
        try:
            out = codec.decode(out)
        except Exception as e:
            raise DecodeError(f"{cfgs[bit]['id']}: {e}") from e
    return as_bytes(out)


def same(got, exp) -> bool:
    if got.dtype.names:
        return all(same(got[n], exp[n]) for n in got.dtype.names)
    got, exp = np.ascontiguousarray(got), np.ascontiguousarray(exp)
    if got.tobytes() == exp.tobytes():
        return True
    return got.dtype.kind in "fc" and np.array_equal(got, exp, equal_nan=True)


def chunk_region(offset, chunks, shape):
    return tuple(slice(o, min(o + c, s)) for o, c, s in zip(offset, chunks, shape, strict=True))


def check_dataset(ds, cfgs=None) -> tuple[int, int]:
    """Decode every stored chunk of ``ds`` and compare with h5py's read of the chunk's region.
    Returns (chunks, chunks with a nonzero filter mask)."""
    cfgs = pipeline(ds) if cfgs is None else cfgs
    small = ds.size * ds.dtype.itemsize < (64 << 20)
    data = ds[()] if small else None
    nbytes = int(np.prod(ds.chunks)) * ds.dtype.itemsize
    n = masked = 0
    for i in range(ds.id.get_num_chunks()):
        info = ds.id.get_chunk_info(i)
        mask, raw = ds.id.read_direct_chunk(info.chunk_offset)
        dec = decode(cfgs, raw, mask)
        assert len(dec) == nbytes, (ds.name, info.chunk_offset, len(dec), nbytes)
        arr = np.frombuffer(dec, ds.dtype).reshape(ds.chunks)
        region = chunk_region(info.chunk_offset, ds.chunks, ds.shape)
        got = arr[tuple(slice(0, r.stop - r.start) for r in region)]
        exp = data[region] if small else ds[region]
        assert same(got, exp), (ds.name, info.chunk_offset, got, exp)
        n += 1
        masked += mask != 0
    return n, masked


def make_values(dtype, rng, kind="normal"):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        vals = np.round(rng.normal(50, 30, SHAPE), 3)
    else:
        info = np.iinfo(dt)
        if kind == "full":
            vals = rng.integers(info.min, info.max, SHAPE, dtype=dt.newbyteorder("="),
                                endpoint=True)
            vals.flat[:2] = info.min, info.max
            return vals.astype(dt)
        lo = max(info.min, -100) if dt.itemsize == 1 else info.min // 2 + 7
        hi = min(info.max, 100) if dt.itemsize == 1 else info.min // 2 + 7 + 5000
        if dt.kind == "u":
            lo, hi = (3, 200) if dt.itemsize == 1 else (info.max // 3, info.max // 3 + 9000)
        vals = rng.integers(lo, hi, SHAPE, dtype=dt.newbyteorder("="))
    vals = np.asarray(vals).astype(dt)
    vals[:8, :6] = vals[0, 0]  # one chunk of a single value (minimum bits 0 or 1)
    return vals


# ------------------------------------------------------------------ generated datasets

SPECS: dict[str, tuple[str, dict, str]] = {}


def spec(name, dtype, kind="normal", **kw):
    SPECS[name] = (dtype, kw, kind)


for _dt in ALL_DTYPES:
    _t = _dt.replace("|", "").replace("<", "le_").replace(">", "be_")
    spec(f"lzf_{_t}", _dt, compression="lzf")
    spec(f"szip_nn_{_t}", _dt, compression="szip", compression_opts=("nn", 8))
    spec(f"zstd_{_t}", _dt, **hdf5plugin.Zstd(clevel=3))
    spec(f"bshuf_lz4_{_t}", _dt, **hdf5plugin.Bitshuffle(cname="lz4"))
    spec(f"bshuf_none_{_t}", _dt, **hdf5plugin.Bitshuffle(nelems=16, cname="none"))
    spec(f"blosc_lz4_shuf_{_t}", _dt, **hdf5plugin.Blosc("lz4", 5, hdf5plugin.Blosc.SHUFFLE))
    if _dt[1] != "f":
        spec(f"so_auto_{_t}", _dt, scaleoffset=0)
        spec(f"so_auto_fill_{_t}", _dt, kind="fill", scaleoffset=0, fillvalue=3)
        spec(f"so_full_{_t}", _dt, kind="full", scaleoffset=0)
        spec(f"so_bits_{_t}", _dt, scaleoffset=np.dtype(_dt).itemsize * 4)
        spec(f"so_copy_{_t}", _dt, scaleoffset=np.dtype(_dt).itemsize * 8)
    else:
        spec(f"so_d2_{_t}", _dt, scaleoffset=2)
        spec(f"so_d3_fill_{_t}", _dt, kind="fill", scaleoffset=3, fillvalue=-1.5)
        spec(f"so_d0_{_t}", _dt, scaleoffset=0)
        spec(f"so_full_{_t}", _dt, kind="huge", scaleoffset=2)

for _dt in SOME_DTYPES:
    _t = _dt.replace("|", "").replace("<", "le_").replace(">", "be_")
    spec(f"lzf_shuffle_fletcher_{_t}", _dt, compression="lzf", shuffle=True, fletcher32=True)
    spec(f"szip_ec_{_t}", _dt, compression="szip", compression_opts=("ec", 16))
    spec(f"zstd_shuffle_{_t}", _dt, shuffle=True, **hdf5plugin.Zstd(clevel=9))
    spec(f"lz4_{_t}", _dt, **hdf5plugin.LZ4())
    spec(f"lz4_blocks_{_t}", _dt, kind="random", **hdf5plugin.LZ4(nbytes=64))
    spec(f"bshuf_none_default_{_t}", _dt, **hdf5plugin.Bitshuffle(cname="none"))
    spec(f"bshuf_lz4_blocks_{_t}", _dt, **hdf5plugin.Bitshuffle(nelems=16, cname="lz4"))
    spec(f"bshuf_zstd_{_t}", _dt, **hdf5plugin.Bitshuffle(cname="zstd", clevel=5))
    spec(f"bshuf_zstd_blocks_{_t}", _dt, **hdf5plugin.Bitshuffle(nelems=8, cname="zstd"))
    spec(f"blosc_zstd_bitshuf_{_t}", _dt,
         **hdf5plugin.Blosc("zstd", 3, hdf5plugin.Blosc.BITSHUFFLE))
    spec(f"blosc_blosclz_noshuf_{_t}", _dt,
         **hdf5plugin.Blosc("blosclz", 9, hdf5plugin.Blosc.NOSHUFFLE))
    spec(f"blosc_zlib_{_t}", _dt, **hdf5plugin.Blosc("zlib", 1, hdf5plugin.Blosc.SHUFFLE))
    spec(f"blosc_lz4hc_{_t}", _dt, **hdf5plugin.Blosc("lz4hc", 4, hdf5plugin.Blosc.SHUFFLE))
    spec(f"bzip2_{_t}", _dt, **hdf5plugin.BZip2(blocksize=5))
    spec(f"bzip2_shuffle_fletcher_{_t}", _dt, shuffle=True, fletcher32=True,
         **hdf5plugin.BZip2(blocksize=9))
    spec(f"so_shuffle_deflate_{_t}", _dt, scaleoffset=2 if _dt[1] == "f" else 0, shuffle=True,
         compression="gzip")
    spec(f"lzf_random_{_t}", _dt, kind="random", compression="lzf")  # incompressible: masked


def _data_for(dtype, kind, rng):
    dt = np.dtype(dtype)
    if kind == "random":
        return np.frombuffer(rng.bytes(int(np.prod(SHAPE)) * dt.itemsize), dt).reshape(SHAPE)
    if kind == "huge" and dt.kind == "f":
        vals = rng.normal(0, 1e13, SHAPE).astype(dt)
        return vals
    vals = make_values(dtype, rng, "full" if kind == "full" else "normal")
    if kind == "fill":
        fill = -1.5 if dt.kind == "f" else 3
        vals[rng.random(SHAPE) < 0.2] = fill
        vals[8:16, 6:12] = fill  # one chunk made only of fill values
    return vals


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    path = tmp_path_factory.mktemp("hdf5codecs") / "filters.h5"
    rng = np.random.default_rng(RNG_SEED)
    with h5py.File(path, "w") as f:
        for name, (dtype, kw, kind) in SPECS.items():
            f.create_dataset(name, data=_data_for(dtype, kind, rng), chunks=CHUNKS, **kw)
    f = h5py.File(path, "r")
    yield f
    f.close()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_generated_dataset(generated, name):
    ds = generated[name]
    n, masked = check_dataset(ds)
    assert n == 20
    if name.startswith("lzf_random"):
        assert masked > 0  # h5py's lzf filter gave up on incompressible chunks


def test_generated_configs(generated):
    """The configs codecs_for emits for the generated pipelines."""
    cfg = pipeline(generated["lzf_shuffle_fletcher_le_u4"])
    assert cfg == [{"id": "hdf5_shuffle", "elementsize": 4},
                   {"id": "hdf5_lzf", "nbytes": 8 * 6 * 4},
                   {"id": "hdf5_fletcher32"}]
    cfg = pipeline(generated["szip_nn_be_i2"])
    assert cfg == [{"id": "hdf5_szip", "options_mask": 128 | 32 | 16 | 1,
                    "pixels_per_block": 8, "bits_per_pixel": 16, "pixels_per_scanline": 48}]
    assert pipeline(generated["zstd_le_f8"]) == [{"id": "hdf5_zstd", "level": 3}]
    assert pipeline(generated["lz4_blocks_le_f4"]) == [{"id": "hdf5_lz4", "blocksize": 64}]
    assert pipeline(generated["bshuf_zstd_blocks_be_i8"]) == [
        {"id": "hdf5_bitshuffle", "elementsize": 8, "blocksize": 8, "compression": "zstd",
         "level": 3}]
    assert pipeline(generated["blosc_zstd_bitshuf_be_f8"]) == [
        {"id": "hdf5_blosc", "typesize": 8, "clevel": 3, "shuffle": 2, "cname": "zstd"}]
    assert pipeline(generated["bzip2_i1"]) == [{"id": "hdf5_bzip2", "level": 5}]
    cfg = pipeline(generated["so_auto_fill_be_i4"])
    assert cfg == [{"id": "hdf5_scaleoffset",
                    "cd_values": [2, 0, 48, 0, 4, 1, 1, 1, 3] + [0] * 11}]
    cfg = pipeline(generated["so_shuffle_deflate_le_f4"])
    assert [c["id"] for c in cfg] == ["hdf5_scaleoffset", "hdf5_shuffle", "zlib"]


@pytest.mark.parametrize("kw", [
    {"compression": "lzf"}, {"compression": "szip", "compression_opts": ("nn", 32)},
    dict(hdf5plugin.Zstd(clevel=19)), dict(hdf5plugin.Blosc("zstd", 9)),
    dict(hdf5plugin.Blosc("lz4", 9)), dict(hdf5plugin.LZ4()),
    dict(hdf5plugin.Bitshuffle(cname="lz4")), dict(hdf5plugin.Bitshuffle(cname="zstd")),
    dict(hdf5plugin.BZip2()), {"scaleoffset": 0}, {"scaleoffset": 0, "fillvalue": 1},
], ids=repr)
def test_highly_compressible_chunks(tmp_path, kw):
    """4 MiB chunks of zeros: the size checks on headers must not refuse extreme ratios."""
    with h5py.File(tmp_path / "z.h5", "w") as f:
        ds = f.create_dataset("z", data=np.zeros((2048, 1024), "<i4"), chunks=(1024, 1024),
                              **kw)
        assert check_dataset(ds) == (2, 0)


# ------------------------------------------------------------------ filter masks


def test_masked_filters_are_skipped(tmp_path):
    """A chunk written with filter mask bits set: those filters are skipped when decoding."""
    rng = np.random.default_rng(1)
    data = rng.integers(0, 1000, SHAPE).astype("<i4")
    with h5py.File(tmp_path / "m.h5", "w") as f:
        ds = f.create_dataset("x", data=data, chunks=CHUNKS, shuffle=True,
                              **hdf5plugin.Zstd(), fletcher32=True)
        cfgs = pipeline(ds)
        assert [c["id"] for c in cfgs] == ["hdf5_shuffle", "hdf5_zstd", "hdf5_fletcher32"]
        block = np.ascontiguousarray(data[8:16, 6:12])
        shuffled = numcodecs.get_codec(cfgs[0]).encode(block)
        # zstd skipped (bit 1); shuffle and fletcher32 applied
        raw = numcodecs.get_codec(cfgs[2]).encode(shuffled)
        ds.id.write_direct_chunk((8, 6), raw, filter_mask=0b010)
        # only fletcher32 applied
        raw2 = numcodecs.get_codec(cfgs[2]).encode(np.ascontiguousarray(data[0:8, 0:6]))
        ds.id.write_direct_chunk((0, 0), raw2, filter_mask=0b011)
    with h5py.File(tmp_path / "m.h5", "r") as f:
        n, masked = check_dataset(f["x"])
        assert (n, masked) == (20, 2)


# ------------------------------------------------------------------ nbit


def _nbit_dataset(f, name, tid, data):
    space = h5py.h5s.create_simple(SHAPE)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(CHUNKS)
    dcpl.set_filter(h5py.h5z.FILTER_NBIT, h5py.h5z.FLAG_OPTIONAL)  # H5Pset_nbit
    h5py.h5d.create(f.id, name.encode(), tid, space, dcpl=dcpl)
    ds = f[name]
    ds[...] = data
    return ds


def _int_type(base, prec, off):
    t = base.copy()
    t.set_precision(prec)
    t.set_offset(off)
    return t


def _float_type(base, fields, off, prec, ebias=None):
    """As HDF5's test/dsets.c builds them: fields, offset, precision, then the size back."""
    t = base.copy()
    size = t.get_size()
    t.set_fields(*fields)
    t.set_offset(off)
    t.set_precision(prec)
    t.set_size(size)
    if ebias is not None:
        t.set_ebias(ebias)
    return t


T = h5py.h5t
NBIT_INTS = {
    "i32le_p17": (T.STD_I32LE, 17, 0, -(2**16), 2**16),
    "i32be_p12_o4": (T.STD_I32BE, 12, 4, -(2**11), 2**11),
    "u16le_p9_o3": (T.STD_U16LE, 9, 3, 0, 2**9),
    "u16be_p16": (T.STD_U16BE, 16, 0, 0, 2**16),  # full precision: stored as is
    "u8_p3_o2": (T.STD_U8LE, 3, 2, 0, 8),
    "i8_p5_o1": (T.STD_I8BE, 5, 1, -16, 16),
    "i64le_p45_o7": (T.STD_I64LE, 45, 7, -(2**44), 2**44),
    "u64be_p63_o1": (T.STD_U64BE, 63, 1, 0, 2**63),
    "u64le_p64": (T.STD_U64LE, 64, 0, 0, 2**64),
    "i16le_p1": (T.STD_I16LE, 1, 15, -1, 1),
}

# the HDF5 test suite's 20-bit float (test/dsets.c): sign 26, exponent 20..25, mantissa 7..19
F20 = ((26, 20, 6, 7, 13), 7, 20, 31)
NBIT_FLOATS = {
    "f32le_hdf5test": (T.IEEE_F32LE, *F20),
    "f32be_hdf5test": (T.IEEE_F32BE, *F20),
    "f32le_trunc": (T.IEEE_F32LE, (31, 23, 8, 10, 13), 10, 22, None),
    "f64be_trunc": (T.IEEE_F64BE, (63, 52, 11, 20, 32), 20, 44, None),
    "f64le_e9": (T.IEEE_F64LE, (40, 31, 9, 3, 28), 3, 38, 255),
}


@pytest.mark.parametrize("name", sorted(NBIT_INTS))
def test_nbit_integers(tmp_path, name):
    base, prec, off, lo, hi = NBIT_INTS[name]
    tid = _int_type(base, prec, off)
    rng = np.random.default_rng(2)
    ndt = tid.dtype
    vals = rng.integers(lo, hi, SHAPE, dtype=np.int64 if lo < 0 else np.uint64)
    with h5py.File(tmp_path / "n.h5", "w") as f:
        ds = _nbit_dataset(f, name, tid, vals.astype(ndt))
        cfg = pipeline(ds)
        assert cfg[0]["id"] == "hdf5_nbit"
        assert cfg[0]["dtype"] == ndt.str
        assert check_dataset(ds) == (20, 0)
        assert same(ds[()], vals.astype(ndt))


@pytest.mark.parametrize("name", sorted(NBIT_FLOATS))
def test_nbit_floats(tmp_path, name):
    base, fields, off, prec, ebias = NBIT_FLOATS[name]
    tid = _float_type(base, fields, off, prec, ebias)
    rng = np.random.default_rng(3)
    vals = rng.normal(0, 100, SHAPE)
    vals[0, :5] = [0.0, -0.0, 1e-30, -1e-30, 3.0]  # zeros and values below the exponent range
    with h5py.File(tmp_path / "n.h5", "w") as f:
        ds = _nbit_dataset(f, name, tid, vals)
        cfg = pipeline(ds)
        assert cfg[0]["float_fields"] == [[4, *fields, tid.get_ebias(), tid.get_norm()]]
        assert check_dataset(ds) == (20, 0)
        # without the HDF5 type the float layout is unknown: refused, not guessed
        with pytest.raises(UnsupportedError, match="h5type"):
            codecs_for(filters_of(ds), ds.dtype, path=ds.name)


def _compound_type():
    s3 = T.C_S1.copy()
    s3.set_size(3)
    inner = T.create(T.COMPOUND, 12)
    inner.insert(b"x", 0, _int_type(T.STD_I8LE, 4, 2))
    inner.insert(b"y", 4, T.IEEE_F64LE)  # full precision member of a reduced compound
    arr = T.array_create(_int_type(T.STD_U32BE, 20, 5), (3,))
    ct = T.create(T.COMPOUND, 48)
    ct.insert(b"a", 0, _int_type(T.STD_I16LE, 10, 2))
    ct.insert(b"b", 4, _float_type(T.IEEE_F32LE, *F20))
    ct.insert(b"c", 8, s3)  # no-op member (a string): copied whole
    ct.insert(b"d", 12, arr)
    ct.insert(b"e", 28, inner)
    ct.insert(b"f", 41, _int_type(T.STD_I32BE, 31, 0))  # unaligned member
    return ct


def _compound_values(dtype, rng):
    vals = np.zeros(SHAPE, dtype)
    vals["a"] = rng.integers(-500, 500, SHAPE)
    vals["b"] = np.round(rng.normal(0, 10, SHAPE), 2)
    vals["c"] = rng.choice([b"abc", b"xy", b"", b"zzz"], SHAPE)
    vals["d"] = rng.integers(0, 2**20, SHAPE + (3,))
    vals["e"]["x"] = rng.integers(-8, 8, SHAPE)
    vals["e"]["y"] = rng.normal(0, 1e10, SHAPE)
    vals["f"] = rng.integers(-(2**30), 2**30, SHAPE)
    return vals


def test_nbit_compound(tmp_path):
    ct = _compound_type()
    rng = np.random.default_rng(4)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        ds = _nbit_dataset(f, "c", ct, _compound_values(ct.dtype, rng))
        cfg = pipeline(ds)[0]
        assert cfg["id"] == "hdf5_nbit"
        assert dtype_from_json(json.loads(json.dumps(cfg["dtype"]))) == ds.dtype
        assert check_dataset(ds) == (20, 0)


def test_nbit_array_dataset(tmp_path):
    """A dataset whose type is an array of reduced integers."""
    tid = T.array_create(_int_type(T.STD_I16BE, 11, 3), (2, 2))
    rng = np.random.default_rng(5)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        ds = _nbit_dataset(f, "a", tid, rng.integers(-1000, 1000, SHAPE + (2, 2)))
        cfgs = pipeline(ds)
        data = ds[()]
        nbytes = int(np.prod(CHUNKS)) * tid.get_size()
        for i in range(ds.id.get_num_chunks()):
            info = ds.id.get_chunk_info(i)
            mask, raw = ds.id.read_direct_chunk(info.chunk_offset)
            dec = np.frombuffer(decode(cfgs, raw, mask), ">i2")
            assert dec.size * 2 == nbytes
            arr = dec.reshape(CHUNKS + (2, 2))
            region = chunk_region(info.chunk_offset, CHUNKS, SHAPE)
            got = arr[tuple(slice(0, r.stop - r.start) for r in region)]
            assert np.array_equal(got, data[region])


# ------------------------------------------------------------------ encoders, checked by HDF5


def _direct_roundtrip(ds, codec, values):
    """Encode every chunk with ``codec``, write it raw, and read it back through HDF5."""
    for r in range(0, SHAPE[0], CHUNKS[0]):
        for c in range(0, SHAPE[1], CHUNKS[1]):
            block = np.zeros(CHUNKS, values.dtype)
            region = chunk_region((r, c), CHUNKS, SHAPE)
            block[: region[0].stop - r, : region[1].stop - c] = values[region]
            ds.id.write_direct_chunk((r, c), codec.encode(block))
    return ds[()]


@pytest.mark.parametrize("dtype", ["<i2", ">u4", ">i8", "<u8", "|i1"])
@pytest.mark.parametrize("fill", [None, 7])
def test_scaleoffset_int_encoder_read_by_hdf5(tmp_path, dtype, fill):
    rng = np.random.default_rng(6)
    values = make_values(dtype, rng)
    if fill is not None:
        values[rng.random(SHAPE) < 0.3] = fill
    with h5py.File(tmp_path / "e.h5", "w") as f:
        ds = f.create_dataset("x", shape=SHAPE, dtype=dtype, chunks=CHUNKS, scaleoffset=0,
                              fillvalue=fill)
        codec = numcodecs.get_codec(pipeline(ds)[0])
        assert np.array_equal(_direct_roundtrip(ds, codec, values), values)


@pytest.mark.parametrize("dtype", ["<f4", ">f8"])
@pytest.mark.parametrize("fill", [None, -1.5])
def test_scaleoffset_float_encoder_read_by_hdf5(tmp_path, dtype, fill):
    rng = np.random.default_rng(7)
    values = np.round(rng.normal(0, 50, SHAPE), 2).astype(dtype)
    if fill is not None:
        values[rng.random(SHAPE) < 0.3] = fill
    with h5py.File(tmp_path / "e.h5", "w") as f:
        ds = f.create_dataset("x", shape=SHAPE, dtype=dtype, chunks=CHUNKS, scaleoffset=2,
                              fillvalue=fill)
        codec = numcodecs.get_codec(pipeline(ds)[0])
        back = _direct_roundtrip(ds, codec, values)
        assert np.allclose(back, values, atol=0.006)
        # HDF5 and our decoder agree on our encoding, bit for bit
        assert check_dataset(ds) == (20, 0)


def test_nbit_encoder_read_by_hdf5(tmp_path):
    tid = _int_type(T.STD_I32BE, 13, 9)
    rng = np.random.default_rng(8)
    values = rng.integers(-4096, 4096, SHAPE).astype(">i4")
    with h5py.File(tmp_path / "e.h5", "w") as f:
        ds = _nbit_dataset(f, "x", tid, np.zeros(SHAPE, ">i4"))
        codec = numcodecs.get_codec(pipeline(ds)[0])
        assert np.array_equal(_direct_roundtrip(ds, codec, values), values)


@pytest.mark.parametrize("codec", [
    HDF5LZ4(0), HDF5LZ4(100), HDF5Zstd(5), HDF5BZip2(3), HDF5LZF(0),
    HDF5Blosc(4, 5, 1, "lz4"), HDF5Bitshuffle(4, 0, "lz4"), HDF5Bitshuffle(4, 16, "zstd", 3),
    HDF5Bitshuffle(4, 24, "none"),
], ids=repr)
def test_compressor_encoders_read_by_hdf5(tmp_path, codec):
    kw = {
        "hdf5_lz4": hdf5plugin.LZ4(nbytes=codec.get_config().get("blocksize", 0)),
        "hdf5_zstd": hdf5plugin.Zstd(),
        "hdf5_bzip2": hdf5plugin.BZip2(),
        "hdf5_lzf": {"compression": "lzf"},
        "hdf5_blosc": hdf5plugin.Blosc(),
        "hdf5_bitshuffle": hdf5plugin.Bitshuffle(
            nelems=codec.blocksize if codec.codec_id == "hdf5_bitshuffle" else 0,
            cname=getattr(codec, "compression", "none")),
    }[codec.codec_id]
    rng = np.random.default_rng(9)
    values = rng.integers(0, 300, SHAPE).astype("<i4")
    with h5py.File(tmp_path / "e.h5", "w") as f:
        ds = f.create_dataset("x", shape=SHAPE, dtype="<i4", chunks=CHUNKS, **kw)
        assert np.array_equal(_direct_roundtrip(ds, codec, values), values)


# ------------------------------------------------------------------ reference implementations


@pytest.mark.parametrize("numpy_path", [False, True])
@pytest.mark.parametrize("elem", [1, 2, 3, 4, 8, 12])
@pytest.mark.parametrize("nelem", [0, 7, 8, 100, 2048 + 13])
@pytest.mark.parametrize("block", [0, 8, 64])
def test_bitshuffle_matches_imagecodecs(monkeypatch, numpy_path, elem, nelem, block):
    """The bit transpose (imagecodecs' C kernel, or the numpy fallback) against bitshuffle's
    own implementation in imagecodecs."""
    data = np.random.default_rng(elem * nelem + block).bytes(elem * nelem)
    ref = imagecodecs.bitshuffle_encode(data, itemsize=elem, blocksize=block)
    if numpy_path:
        monkeypatch.setitem(sys.modules, "imagecodecs", None)
    codec = HDF5Bitshuffle(elem, block, "none")
    assert codec.encode(data) == bytes(ref)
    assert as_bytes(codec.decode(ref)) == data
    assert as_bytes(codec.decode(np.frombuffer(ref, np.uint8))) == data


@pytest.mark.parametrize("blocksize", [0, 1, 100, 1 << 16])
def test_lz4_container_matches_imagecodecs(blocksize):
    data = np.random.default_rng(blocksize).integers(0, 4, 50_000).astype("u1").tobytes()
    enc = HDF5LZ4(blocksize).encode(data)
    assert bytes(imagecodecs.lz4h5_decode(enc)) == data
    assert as_bytes(HDF5LZ4().decode(enc)) == data


# ------------------------------------------------------------------ scaleoffset corner cases


def _so_cd(cls, size, signed, order, filavail, fill_bytes=b"", scale_type=None, factor=0, n=6):
    words = list(struct.unpack("<12I", fill_bytes.ljust(48, b"\0")))
    st_ = scale_type if scale_type is not None else (2 if cls == 0 else 0)
    return [st_, factor & 0xFFFFFFFF, n, cls, size, signed, order, filavail] + words


def test_scaleoffset_fill_undefined_and_minbits_zero():
    """H5Zscaleoffset.c with no fill value defined (h5py cannot make such a dataset)."""
    cd = _so_cd(0, 2, 1, 1, 0)
    codec = HDF5ScaleOffset(cd)
    # minbits 0: every element is the minimum
    header = struct.pack("<IB", 0, 8) + (-42 % 2**64).to_bytes(8, "little") + bytes(8)
    assert np.array_equal(np.frombuffer(as_bytes(codec.decode(header)), ">i2"), [-42] * 6)
    # minbits 3, values 0..5 offset by -3; all-ones (7) is a value, not a fill marker
    bits = "".join(format(v, "03b") for v in [0, 1, 2, 3, 4, 7])
    payload = int(bits.ljust(24, "0"), 2).to_bytes(3, "big")
    header = struct.pack("<IB", 3, 8) + (-3 % 2**64).to_bytes(8, "little") + bytes(8)
    got = np.frombuffer(as_bytes(codec.decode(header + payload)), ">i2")
    assert got.tolist() == [-3, -2, -1, 0, 1, 4]
    # the same with a fill value defined (9): all-ones means fill
    codec = HDF5ScaleOffset(_so_cd(0, 2, 1, 1, 1, struct.pack("<h", 9)))
    got = np.frombuffer(as_bytes(codec.decode(header + payload)), ">i2")
    assert got.tolist() == [-3, -2, -1, 0, 1, 9]
    # and our encoder gives back what HDF5's would
    for fill in (0, 1):
        c = HDF5ScaleOffset(_so_cd(0, 2, 1, 1, fill, struct.pack("<h", 9)))
        vals = np.array([5, 5, 9, -7, 5, 100], ">i2")
        assert np.array_equal(np.frombuffer(as_bytes(c.decode(c.encode(vals))), ">i2"), vals)


def test_scaleoffset_float_fill_undefined():
    codec = HDF5ScaleOffset(_so_cd(1, 4, 0, 0, 0, factor=2, n=4))
    vals = np.array([1.25, -3.5, 0.01, 7.0], "<f4")
    out = np.frombuffer(as_bytes(codec.decode(codec.encode(vals))), "<f4")
    assert np.allclose(out, vals, atol=0.005)
    # minbits 0 for a float: the minimum everywhere
    header = struct.pack("<IB", 0, 8) + np.float32(2.5).tobytes().ljust(8, b"\0") + bytes(8)
    assert np.frombuffer(as_bytes(codec.decode(header)), "<f4").tolist() == [2.5] * 4


def test_scaleoffset_escale_and_bad_types():
    cd = _so_cd(1, 4, 0, 0, 1, scale_type=1, factor=8)
    with pytest.raises(UnsupportedError, match="E-scale"):
        codecs_for([(6, 1, tuple(cd), b"scaleoffset")], np.dtype("<f4"), path="/x")
    with pytest.raises(DecodeError, match="E-scale"):
        HDF5ScaleOffset(cd).decode(bytes(40))
    with pytest.raises(UnsupportedError):
        codecs_for([(6, 1, tuple(_so_cd(0, 4, 1, 0, 1)), b"so")], np.dtype("<f4"))
    with pytest.raises(UnsupportedError):
        codecs_for([(6, 1, (2, 0, 4), b"so")], np.dtype("<i4"))
    with pytest.raises(ValueError):
        HDF5ScaleOffset([2, 0, 4])


# ------------------------------------------------------------------ codecs_for


def test_codecs_for_maps_filters():
    i4 = np.dtype(">i4")
    got = codecs_for([(1, 0, (4,), b"deflate"), (2, 1, (), b"shuffle"),
                      (2, 1, (8,), b"shuffle"), (3, 1, (), b"fletcher32"),
                      (32015, 1, (7,), b"zstd"), (307, 1, (), b"bzip2"),
                      (32000, 1, (4, 261, 96), b"lzf"),
                      (32001, 1, (2, 2, 4, 128, 4, 1, 5), b"blosc"),
                      (32004, 1, (1024,), b"lz4"),
                      (32008, 1, (0, 4, 4, 0, 2), b"bitshuffle"),
                      (4, 1, (169, 8, 32, 16), b"szip")], i4)
    assert got == [
        {"id": "zlib", "level": 4},
        {"id": "hdf5_shuffle", "elementsize": 4},  # no cd_values: the dtype's size
        {"id": "hdf5_shuffle", "elementsize": 8},  # HDF5 uses cd_values[0]
        {"id": "hdf5_fletcher32"},
        {"id": "hdf5_zstd", "level": 7},
        {"id": "hdf5_bzip2", "level": 9},
        {"id": "hdf5_lzf", "nbytes": 96},
        {"id": "hdf5_blosc", "typesize": 4, "clevel": 4, "shuffle": 1, "cname": "zstd"},
        {"id": "hdf5_lz4", "blocksize": 1024},
        {"id": "hdf5_bitshuffle", "elementsize": 4, "blocksize": 0, "compression": "lz4",
         "level": 0},
        {"id": "hdf5_szip", "options_mask": 169, "pixels_per_block": 8, "bits_per_pixel": 32,
         "pixels_per_scanline": 16},
    ]
    for cfg in got:
        codec = numcodecs.get_codec(dict(cfg))
        assert codec.get_config() == cfg


@pytest.mark.parametrize("fid,name", [(32013, b"zfp"), (405, b"myfilter"), (32019, None),
                                      (32026, b"blosc2")])
def test_codecs_for_unsupported(fid, name):
    with pytest.raises(UnsupportedError) as ei:
        codecs_for([(1, 0, (6,), b"deflate"), (fid, 1, (1, 2), name)], np.dtype("<f4"),
                   path="/grp/var")
    msg = str(ei.value)
    assert str(fid) in msg and "/grp/var" in msg
    if name:
        assert name.decode() in msg


def test_codecs_for_bad_parameters():
    with pytest.raises(UnsupportedError):
        codecs_for([(5, 1, (8, 0, 12, 1, 4, 0, 40, 0), b"nbit")], np.dtype("<i4"))
    with pytest.raises(UnsupportedError):
        codecs_for([(4, 1, (169, 8), b"szip")], np.dtype("<i4"))
    with pytest.raises(UnsupportedError):
        codecs_for([(32008, 1, (0, 4, 4, 0, 9), b"bitshuffle")], np.dtype("<i4"))


# ------------------------------------------------------------------ configs

ALL_CODECS = [
    HDF5LZF(96), HDF5SZIP(141, 16, 32, 64), HDF5Blosc(8, 3, 2, "zstd"), HDF5Zstd(4),
    HDF5LZ4(4096), HDF5Bitshuffle(2, 64, "zstd", 5), HDF5BZip2(4),
    HDF5ScaleOffset(_so_cd(0, 8, 0, 1, 1, struct.pack("<Q", 2**63 + 5))),
    HDF5NBit([8, 0, 12, 1, 4, 1, 20, 7], ">f4", [[4, 26, 20, 6, 7, 13, 31, 0]]),
    # compound of 12 bytes: a (int16, 10 bits at 2) at 0, b (2 x int8, 5 bits) at 4
    HDF5NBit([20, 0, 5, 3, 12, 2, 0, 1, 2, 0, 10, 2, 4, 2, 2, 1, 1, 0, 5, 0],
             dtype_to_json(np.dtype({"names": ["a", "b"], "formats": ["<i2", ("<i1", 2)],
                                     "offsets": [0, 4], "itemsize": 12}))),
]


@pytest.mark.parametrize("codec", ALL_CODECS, ids=lambda c: c.codec_id)
def test_config_round_trip(codec):
    cfg = codec.get_config()
    text = json.dumps(cfg)
    back = numcodecs.get_codec(json.loads(text))
    assert type(back) is type(codec)
    assert back.get_config() == cfg
    assert type(codec).from_config({k: v for k, v in cfg.items() if k != "id"}).get_config() \
        == cfg


def test_missing_imagecodecs_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    with pytest.raises(ImportError, match=r"chunkview\[codecs\]"):
        HDF5LZF(10).decode(b"\x00abc")
    with pytest.raises(ImportError, match=r"chunkview\[codecs\]"):
        HDF5SZIP(141, 8, 8, 8).decode(b"\x10\0\0\0abc")


# ------------------------------------------------------------------ corrupt input

CORRUPT_CASES = ["lzf_le_i4", "szip_nn_be_f8", "zstd_le_u8", "bshuf_lz4_be_i2",
                 "bshuf_none_le_f4", "bshuf_zstd_blocks_be_i8", "blosc_lz4_shuf_be_u4",
                 "blosc_zstd_bitshuf_be_f8", "lz4_le_u4", "lz4_blocks_be_i8", "bzip2_i1",
                 "so_auto_fill_be_i4", "so_auto_le_u8", "so_d3_fill_be_f8", "so_full_le_f4",
                 "so_full_be_i2", "lzf_shuffle_fletcher_le_u4", "so_shuffle_deflate_be_i8"]


def _variants(raw: bytes):
    n = len(raw)
    for cut in sorted({0, 1, 4, 11, 12, 16, 20, 21, n // 2, n - 1}):
        if 0 <= cut < n:
            yield f"cut{cut}", raw[:cut]
    for pos in sorted({0, 1, 2, 3, 4, 5, 8, 12, 15, 20, 24, n // 3, n // 2, n - 2, n - 1}):
        if 0 <= pos < n:
            b = bytearray(raw)
            b[pos] ^= 0xFF
            yield f"flip{pos}", bytes(b)
    yield "zero_tail", raw[: n // 2] + bytes(n - n // 2)
    yield "extended", raw + bytes(7)


@pytest.mark.parametrize("name", CORRUPT_CASES)
def test_corrupt_chunks(generated, name):
    """Truncated chunks: a DecodeError or the correct result.  Flipped bytes: a DecodeError or
    a result of some length (formats without checksums cannot tell a flipped data bit)."""
    ds = generated[name]
    cfgs = pipeline(ds)
    nbytes = int(np.prod(ds.chunks)) * ds.dtype.itemsize
    outcomes = Counter()
    for offset in [(0, 0), (32, 18)]:  # a full and an edge chunk
        mask, raw = ds.id.read_direct_chunk(offset)
        assert mask == 0
        good = decode(cfgs, raw)
        for label, bad in _variants(raw):
            try:
                out = decode(cfgs, bad)
            except DecodeError:
                outcomes["error"] += 1
                continue
            if label.startswith("cut") and len(out) == nbytes:
                assert out == good, (label, "truncated input decoded to wrong data")
            outcomes["ok" if len(out) == nbytes else "size"] += 1
    assert outcomes["error"] > 0


FUZZ_CODECS = {
    "lzf": HDF5LZF(400), "szip": HDF5SZIP(141, 8, 32, 24), "blosc": HDF5Blosc(),
    "zstd": HDF5Zstd(), "lz4": HDF5LZ4(), "bshuf_none": HDF5Bitshuffle(4),
    "bshuf_lz4": HDF5Bitshuffle(4, 0, "lz4"), "bshuf_zstd": HDF5Bitshuffle(2, 16, "zstd"),
    "bzip2": HDF5BZip2(),
    "so_int": HDF5ScaleOffset(_so_cd(0, 4, 1, 0, 1, struct.pack("<i", -9), n=50)),
    "so_float": HDF5ScaleOffset(_so_cd(1, 8, 0, 1, 0, factor=3, n=50)),
    "nbit": HDF5NBit([8, 0, 50, 1, 4, 0, 17, 3], "<i4"),
    "nbit_compound": ALL_CODECS[-1],
}

def _fuzz_seed(name):
    if name == "so_int":
        return FUZZ_CODECS[name].encode(np.arange(50, dtype="<i4") * 3)
    if name == "so_float":
        return FUZZ_CODECS[name].encode(np.linspace(-2, 7, 50).astype("<f8"))
    if name == "nbit":
        return FUZZ_CODECS[name].encode(np.arange(50, dtype="<i4") * 1001)
    if name == "nbit_compound":
        return FUZZ_CODECS[name].encode(np.zeros(5, dtype_from_json(ALL_CODECS[-1].dtype)))
    return FUZZ_CODECS[name].encode(np.arange(100, dtype="<u4") // 3)


FUZZ_SEEDS = {name: bytes(_fuzz_seed(name)) for name in FUZZ_CODECS}


@pytest.mark.parametrize("name", sorted(FUZZ_CODECS))
@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_codecs(name, data):
    """Mutated and random input: a DecodeError or a result, never another exception."""
    codec = FUZZ_CODECS[name]
    seed = FUZZ_SEEDS[name]
    how = data.draw(st.sampled_from(["random", "mutate", "truncate"]))
    if how == "random":
        buf = data.draw(st.binary(max_size=300))
    elif how == "mutate":
        b = bytearray(seed)
        for _ in range(data.draw(st.integers(1, 4))):
            if b:
                b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
        buf = bytes(b)
    else:
        buf = seed[: data.draw(st.integers(0, max(0, len(seed) - 1)))]
    try:
        out = codec.decode(buf)
    except DecodeError:
        return
    as_bytes(out)


def test_fuzz_seeds_decode():
    for name, codec in FUZZ_CODECS.items():
        assert len(as_bytes(codec.decode(FUZZ_SEEDS[name]))) > 0, name


def test_oversized_headers_refused():
    """Sizes in headers are checked before allocating."""
    with pytest.raises(DecodeError, match="4 GiB|input bytes"):
        HDF5LZ4().decode(struct.pack(">QI", 2**40, 2**20) + b"\0" * 8)
    with pytest.raises(DecodeError):
        HDF5LZ4().decode(struct.pack(">QI", 100, 0) + b"\0" * 8)
    with pytest.raises(DecodeError):
        HDF5Bitshuffle(4, 0, "lz4").decode(struct.pack(">QI", 2**33, 4096) + b"\0" * 8)
    frame = bytes([0x28, 0xB5, 0x2F, 0xFD, 0xC0]) + (2**45).to_bytes(8, "little") + bytes(8)
    with pytest.raises(DecodeError):
        HDF5Zstd().decode(frame)
    blosc = bytes([2, 1, 1, 4]) + struct.pack("<III", 2**31, 2**16, 4000) + bytes(40)
    with pytest.raises(DecodeError):
        HDF5Blosc().decode(blosc)
    with pytest.raises(DecodeError):
        HDF5SZIP(141, 8, 16, 24).decode(struct.pack("<I", 2**32 - 1) + bytes(10))


# ------------------------------------------------------------------ the third-party corpus


def _corpus_datasets():
    inv_path = CORPUS / "INVENTORY.json"
    if not inv_path.exists():
        return []
    out = []
    for rec in json.loads(inv_path.read_text()):
        if rec.get("format") != "hdf5" or not rec.get("h5py_open_ok"):
            continue
        for d in rec.get("datasets", []):
            if d.get("layout") == "chunked" and d.get("filters"):
                out.append((rec["file"], d["path"], d.get("read") in ("ok", "partial_ok"),
                            tuple(f["id"] for f in d["filters"])))
    return out


CORPUS_DATASETS = _corpus_datasets()
CORPUS_RESULTS: dict = {}


def _corpus_one(file, path, readable):
    """'unsupported' | 'skipped' | 'h5py-fails' | ('ok', chunks)."""
    with h5py.File(CORPUS / file, "r") as f:
        ds = f[path]
        try:
            cfgs = pipeline(ds)
        except UnsupportedError:
            return "unsupported"
        if ds.dtype.hasobject or ds.id.get_type().get_size() != ds.dtype.itemsize:
            return "skipped"  # vlen data / types h5py converts: nothing byte-comparable
        if not readable:
            # HDF5 cannot read it either: some chunk must fail to decode here too
            failed = 0
            for i in range(ds.id.get_num_chunks()):
                mask, raw = ds.id.read_direct_chunk(ds.id.get_chunk_info(i).chunk_offset)
                try:
                    decode(cfgs, raw, mask)
                except DecodeError:
                    failed += 1
            assert failed > 0
            return "h5py-fails"
        return ("ok", check_dataset(ds, cfgs)[0])


@pytest.mark.skipif(not CORPUS_DATASETS, reason="no ../shared/corpus")
@pytest.mark.parametrize("file,path,readable,ids", CORPUS_DATASETS,
                         ids=[f"{f}:{p}" for f, p, _, _ in CORPUS_DATASETS])
def test_corpus_dataset(file, path, readable, ids):
    CORPUS_RESULTS[(file, path)] = (ids, _corpus_one(file, path, readable))


@pytest.mark.skipif(not CORPUS_DATASETS, reason="no ../shared/corpus")
def test_corpus_counts():
    """Datasets and chunks verified per filter (printed with -s)."""
    for file, path, readable, ids in CORPUS_DATASETS:
        if (file, path) not in CORPUS_RESULTS:
            CORPUS_RESULTS[(file, path)] = (ids, _corpus_one(file, path, readable))
    per_filter = Counter()
    chunks = Counter()
    status = Counter()
    for ids, res in CORPUS_RESULTS.values():
        if isinstance(res, tuple):
            status["ok"] += 1
            for fid in set(ids):
                per_filter[fid] += 1
                chunks[fid] += res[1]
        else:
            status[res] += 1
    names = {1: "deflate", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit",
             6: "scaleoffset", 307: "bzip2", 32000: "lzf", 32001: "blosc", 32004: "lz4",
             32008: "bitshuffle", 32015: "zstd"}
    print(f"\ncorpus: {dict(status)}")
    for fid in sorted(per_filter):
        print(f"  {names.get(fid, fid):>12}: {per_filter[fid]:4d} datasets, "
              f"{chunks[fid]:6d} chunks verified")
    for fid in (4, 5, 6, 307, 32000, 32001, 32004, 32008, 32015):
        assert per_filter[fid] >= 1, names[fid]
    assert status["ok"] >= 100


def test_dtype_json_round_trip():
    for dt in [np.dtype(">i4"), np.dtype("|S7"), np.dtype(("<f8", (2, 3))),
               np.dtype({"names": ["a", "b"], "formats": ["<i2", ("<u1", 3)],
                         "offsets": [4, 0], "itemsize": 10}),
               _compound_type().dtype]:
        assert dtype_from_json(json.loads(json.dumps(dtype_to_json(dt)))) == dt


def test_module_exports():
    for name in hdf5codecs.__all__:
        assert hasattr(hdf5codecs, name)
