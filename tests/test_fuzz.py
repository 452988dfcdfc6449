"""Fuzz targets: every parser and decoder on mutated and generated input.

The contract, checked for every input: a failure is a :class:`chunkview.ChunkviewError` (no
other exception type, no crash, no hang; under ``tests/sanitize.sh`` no ASan or UBSan report
either), and where the right answer is known the answer is right: a reference set the C JSON
parser accepts equals what the Python loader makes of ``json.loads`` of the same text, a
decoded chunk equals what a Python reference decoder (stdlib zlib, numpy) makes of the same
bytes, a dataset read from a mutated HDF5 / NetCDF3 file equals what h5py / netCDF4 read from
it (when they read it at all, in a child process), and a native index whose checksums pass
holds exactly the references it was written with.

Targets: the kerchunk loaders (dicts, JSON text through the C parser, metadata the array API
reads), parquet reference sets (mutated files and mutated columns), the native format (with its
checksums, and with the checksums recomputed after mutation so the structure itself is
attacked), the HDF5 and NetCDF3 scanners on mutated files (the test data generators' files and
a few small files of ../shared/corpus), and the decode pipeline (inflate, and the batch decoder
with every filter combination on corrupt and truncated chunks).

How many examples each target runs comes from CHUNKVIEW_FUZZ_EXAMPLES (tests/fuzzing.py);
docs/hardening.md describes short and long runs.  Inputs that once broke the contract live in
tests/fuzz_regressions/ and are replayed by tests/test_fuzz_regressions.py.
"""

from __future__ import annotations

import base64
import gzip as _gzip
import json
import math
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import chunkview
from chunkview import ChunkIndex, _decode, _index
from chunkview.errors import ChunkviewError
from chunkview.refs.memory import References

sys.path.insert(0, str(Path(__file__).parent))
import fuzzing  # noqa: E402
from fuzzing import apply_ops, clean, fuzz_seed, fuzz_settings, mutation_ops, watchdog  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
READ_LIMIT = 8 << 20  # arrays larger than this are not read whole (fuzzed shapes can be huge)

# a few small third-party files: filters (deflate, shuffle, fletcher32, scaleoffset, nbit,
# lzf, lz4, bitshuffle), every chunk index, fill values; and every NetCDF3 file
CORPUS_HDF5 = [
    "hdf5-json/data/hdf5/dset_gzip.h5",
    "jhdf/jhdf/src/test/resources/hdf5/implicit_index_datasets.hdf5",
    "HDFGroup-hdf5/test/testfiles/fill18.h5",
    "kerchunk/tests/hdf5_mali_chunk2.h5",
    "kerchunk/tests/hdf5_compression_lz4.h5",
    "kerchunk/tests/hdf5_compression_bitshuffle.h5",
    "pyfive/tests/data/filter_pipeline_v2.hdf5",
    "HDFGroup-hdf5/test/testfiles/btree_idx_1_8.h5",
    "jhdf/jhdf/src/test/resources/hdf5/fletcher32_datasets_latest.hdf5",
    "hdf5-json/data/hdf5/h5ex_d_unlimgzip.h5",
    "hdf5-json/data/hdf5/h5ex_d_soint.h5",
    "hdf5-json/data/hdf5/h5ex_d_nbit.h5",
    "HDFGroup-hdf5/HDF5Examples/C/H5FLT/tfiles/h5ex_d_lzf.h5",
    "jhdf/jhdf/src/test/resources/hdf5/test_compressed_chunked_datasets_latest.hdf5",
]
CORPUS_NC3 = [
    "netcdf-c/libsrc/test_nc.sav",
    "netcdf-c/nc_test/bad_cdf5_begin.nc",
    "netcdf-c/ncdump/ref_null_byte_padding_test.nc",
    "netcdf-c/ncdump/ref_test_360_day_1900.nc",
    "netcdf-c/nctest/ref_nctest_64bit_offset.nc",
    "netcdf-c/nctest/ref_nctest_classic.nc",
]


@pytest.fixture(autouse=True, scope="module")
def _real_stderr(pytestconfig):
    """The watchdog reports hangs on the stderr pytest found (it captures fd 2 during tests)."""
    capman = pytestconfig.pluginmanager.getplugin("capturemanager")
    try:
        fuzzing.set_stderr_fd(capman._global_capturing.err.targetfd_save)
    except AttributeError:  # capture off (-s) or another capture method: fd 2 is fine
        fuzzing.set_stderr_fd(2)


def note(text):
    """A hypothesis event (reported with --hypothesis-show-statistics); nothing outside a
    hypothesis test (the regression replay)."""
    try:
        event(text)
    except InvalidArgument:
        pass


# ------------------------------------------------------------------ exercising a result


def _size(shape, itemsize) -> int:
    return math.prod(int(s) for s in shape) * int(itemsize)


def read_arrays(group, limit=READ_LIMIT, depth=0):
    """Read every array of a Group (whole, and a strided reversed selection), recursively.
    Returns ``{path: array}`` of what read; chunkview errors are allowed, nothing else."""
    out = {}
    names = clean(list, group)
    for name in names or ():
        obj = clean(group.__getitem__, name)
        if obj is None:
            continue
        if isinstance(obj, chunkview.Group):
            if depth < 8:
                out.update(read_arrays(obj, limit, depth + 1))
            continue
        if obj.dtype.hasobject or _size(obj.shape, obj.dtype.itemsize) > limit:
            continue
        got = clean(obj.read)
        if got is not None:
            out[obj.path] = got
            if obj.ndim:
                sel = tuple(slice(None, None, -2) if d % 2 else slice(1, None, 3)
                            for d in range(obj.ndim))
                part = clean(obj.read, sel, threads=2)
                if part is not None:
                    np.testing.assert_array_equal(part, np.asarray(got)[sel], err_msg=obj.path)
    return out


def exercise(refs, read=True):
    """Everything a caller does with a loaded reference set: length, iteration, lookups, the
    v1 dict, the directory listing and reading every array.  Each value iterated must be what
    a lookup of its key returns."""
    n = len(refs)
    items = list(refs.items())
    assert len(items) == n
    keys = [k for k, _ in items]
    for k, v in items[:500]:
        assert refs[k] == v, k
    ids, offs, lens = refs.lookup_many(keys + ["no/such/key"])
    assert ids[-1] == chunkview.refs.memory.MISSING
    if hasattr(refs, "to_dict"):
        json.dumps(refs.to_dict())
    refs.listing()
    if read:
        g = clean(chunkview.open, refs, threads=2)
        if g is not None:
            return read_arrays(g)
    return {}


# ------------------------------------------------------------------ test data


@pytest.fixture(scope="module")
def h5_files(tmp_path_factory):
    """{name: bytes} of the HDF5 / NetCDF4 bases: the generators' files and corpus picks."""
    pytest.importorskip("h5py")
    import make_scandata
    import make_testdata

    d = tmp_path_factory.mktemp("fuzzbase")
    files = {"testdata:small": make_testdata.make_hdf5(d / "small.h5"),
             "testdata:filters": make_testdata.make_filters(d / "filters.h5")}
    for name, p in make_scandata.make_all(d / "scan").items():
        files[f"scandata:{name}"] = p
    for rel in CORPUS_HDF5:
        if (CORPUS / rel).exists():
            files[f"corpus:{rel}"] = CORPUS / rel
    return fuzzing.Bases((k, Path(v).read_bytes()) for k, v in files.items()), d / "scan"


def hdf5_hot(data: bytes):
    """Offsets of HDF5 structures (signatures of every metadata block, and the start)."""
    hot = {0}
    for sig in (b"\x89HDF\r\n", b"OHDR", b"OCHK", b"TREE", b"HEAP", b"SNOD", b"BTHD", b"BTIN",
                b"BTLF", b"FRHP", b"FHDB", b"FHIB", b"FSHD", b"FSSE", b"EAHD", b"EAIB", b"EADB",
                b"EASB", b"FAHD", b"FADB", b"GCOL", b"SMTB", b"SMLI"):
        i = data.find(sig)
        while i >= 0 and len(hot) < 400:
            hot.add(i)
            i = data.find(sig, i + 1)
    # version-1 object headers have no signature: the first 2 KiB hold most of them
    hot.update(range(0, min(len(data), 2048), 96))
    return sorted(hot)


@pytest.fixture(scope="module")
def oracle():
    o = fuzzing.Oracle()
    yield o
    o.close()


# ------------------------------------------------------------------ HDF5 scanner


def _h5_names(results) -> list:
    return sorted(results)


def check_hdf5_mutant(name, base, ops, workdir, oracle, checksums=True):
    """Scan a mutated HDF5 file, read every dataset; compare what both chunkview and h5py
    read (with the scanner's checksums checked: h5py checks the same ones)."""
    path = fuzzing.fresh_path(workdir, ".nc" if name.endswith(".nc") else ".h5")
    path.write_bytes(apply_ops(base, ops))
    # the scanner walks the object tree with libhdf5 (through h5py), in process, and checks
    # the bytes libhdf5 reads where libhdf5 does not (a damaged global heap made it loop
    # forever): every input is scanned here, under the watchdog
    what = {"target": "hdf5", "base": name, "ops": ops, "checksums": checksums}
    with watchdog(what=what):
        # in a helper process (the default): libhdf5 crashes on some corrupt files
        refs = clean(chunkview.scan, str(path), _checksums=checksums)
        if refs is None:
            return "rejected"
        got = exercise(refs)
    if not got or oracle is None or not checksums:
        return "scanned"
    want = oracle.read("h5", path, _h5_names(got))
    if want is None:
        return "scanned"
    import corpus

    for n, a in got.items():
        w = want.get(n.lstrip("/"), want.get(n))
        if w is None or isinstance(w, str):
            continue
        assert corpus.same(a, w), f"{name}: {n} differs from h5py after {ops}"
    return "compared"


@fuzz_settings(3)
@fuzz_seed
@given(st.data())
def test_fuzz_hdf5_scan(h5_files, tmp_path_factory, oracle, data):
    files, scandir = h5_files
    name = data.draw(st.sampled_from(sorted(files)))
    base = files[name]
    ops = data.draw(mutation_ops(len(base), hdf5_hot(base)))
    checksums = data.draw(st.booleans())
    # the structure file links to other.h5 and raw.bin next to it
    event(check_hdf5_mutant(name, base, ops, scandir, oracle, checksums))


def _btree1_leaf(path):
    """(file bytes, offset of the first entry of a v1 chunk B-tree leaf, entry size) of a
    rank-2 dataset written with libver="earliest" (8-byte addresses)."""
    data = Path(path).read_bytes()
    at = data.find(b"TREE\x01\x00")  # a chunk B-tree node at level 0
    assert at > 0
    return data, at + 8 + 2 * 8, 8 + 8 * 3 + 8


@pytest.fixture(scope="module")
def btree_file(tmp_path_factory):
    h5py = pytest.importorskip("h5py")
    p = tmp_path_factory.mktemp("btree") / "bt.h5"
    with h5py.File(p, "w", libver="earliest") as f:
        f.create_dataset("x", data=np.arange(60, dtype="<i2").reshape(6, 10), chunks=(2, 5))
    return p


@pytest.mark.parametrize("damage,match", [
    ("swap", "chunk B-tree keys out of order"),
    ("repeat", "chunk B-tree keys repeat chunk"),
    ("element", "non-zero offset in its element dimension"),
])
def test_btree1_damaged_keys(btree_file, tmp_path, damage, match):
    """Chunk B-tree keys that are out of order, repeated or carry an offset in the element
    dimension are a damaged index (libhdf5 then finds other chunks than the ones listed, by
    binary search): ScanError, not chunks silently dropped or read from the wrong place."""
    data, first, size = _btree1_leaf(btree_file)
    b = bytearray(data)
    k0, k1 = first, first + size
    off = slice(8, 8 + 16)  # the two coordinate offsets of a key
    if damage == "swap":
        a, c = bytes(b[k0 + 8:k0 + 24]), bytes(b[k1 + 8:k1 + 24])
        b[k0 + 8:k0 + 24], b[k1 + 8:k1 + 24] = c, a
    elif damage == "repeat":
        b[k1 + off.start:k1 + off.stop] = b[k0 + off.start:k0 + off.stop]
    else:
        b[k1 + 24] = 1  # the element dimension's offset
    p = tmp_path / "bad.h5"
    p.write_bytes(bytes(b))
    assert chunkview.scan(str(btree_file)) is not None  # the undamaged file scans
    with pytest.raises(chunkview.ScanError, match=match):
        chunkview.scan(str(p))


def test_chunk_index_repeats_a_chunk():
    """Any B-tree (v1 or v2) naming one chunk twice is refused (the v2 reader collects records
    level by level, so the repeat is found by a uniqueness check, not by order)."""
    from chunkview.scan.hdf5 import chunkindex as H
    from chunkview.scan.hdf5.chunks import Chunks

    class F:
        def err(self, msg, offset=None, path=None):
            return chunkview.ScanError(msg, path=path, offset=offset)

    coords = np.array([[0, 1], [2, 3], [0, 1]], np.int64)
    ch = Chunks(coords, np.arange(3, dtype=np.uint64), np.ones(3, np.uint64),
                  np.zeros(3, np.uint32))
    with pytest.raises(chunkview.ScanError, match=r"lists chunk \(0, 1\) more than once"):
        H._unique(F(), ch, "v2 B-tree", "x")
    ok = Chunks(coords[:2], ch.addrs[:2], ch.sizes[:2], ch.masks[:2])
    assert H._unique(F(), ok, "v2 B-tree", "x") is ok


# ------------------------------------------------------------------ NetCDF3 scanner


def make_nc3(path, fmt):
    import netCDF4

    rng = np.random.default_rng(3)
    ds = netCDF4.Dataset(path, "w", format=fmt)
    ds.createDimension("t", None)
    ds.createDimension("x", 17)
    ds.createDimension("c", 5)
    ds.title = "fuzz base"
    ds.setncattr("values", np.array([1.5, -2.0, np.nan]))
    types = ["i1", "i2", "i4", "f4", "f8"] + (["u2", "i8"] if fmt == "NETCDF3_64BIT_DATA" else [])
    for t in types:
        v = ds.createVariable(f"fix_{t}", t, ("x", "c"), fill_value=np.array(7, t)[()])
        v[:] = (rng.standard_normal((17, 5)) * 50).astype(t)
        v.units = "m"
        r = ds.createVariable(f"rec_{t}", t, ("t", "c"))
        r[:3] = (rng.standard_normal((3, 5)) * 50).astype(t)
    s = ds.createVariable("chars", "S1", ("x",))
    s[:] = np.array(list(b"abcdefghijklmnopq"), "u1").view("S1")
    ds.close()
    return path


@pytest.fixture(scope="module")
def nc3_files(tmp_path_factory):
    pytest.importorskip("netCDF4")
    d = tmp_path_factory.mktemp("fuzznc3")
    files = {}
    for fmt in ("NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"):
        files[f"generated:{fmt}"] = Path(make_nc3(str(d / f"{fmt}.nc"), fmt)).read_bytes()
    for rel in CORPUS_NC3:
        if (CORPUS / rel).exists():
            files[f"corpus:{rel}"] = (CORPUS / rel).read_bytes()
    return fuzzing.Bases(files)


def nc3_hot(data: bytes):
    """The header (where every structure of a NetCDF3 file lies), in 4-byte steps."""
    try:
        from chunkview.io.blocks import BytesReader
        from chunkview.scan.netcdf3 import scan_netcdf3

        refs = scan_netcdf3(BytesReader(data), inline_threshold=0, chunk_bytes=1 << 40)
        offs = [v[1] for v in refs.values() if isinstance(v, list)]
        end = min(offs) if offs else len(data)
    except ChunkviewError:
        end = min(len(data), 1024)
    return list(range(0, max(end, 4), 4))


def check_nc3_mutant(name, base, ops, workdir, oracle):
    path = fuzzing.fresh_path(workdir, ".nc")
    path.write_bytes(apply_ops(base, ops))
    with watchdog(what={"target": "netcdf3", "base": name, "ops": ops}):
        refs = clean(chunkview.scan, str(path), chunk_bytes=1000)
        if refs is None:
            return "rejected"
        got = exercise(refs)
    if not got or oracle is None:
        return "scanned"
    want = oracle.read("nc", path, sorted(n.lstrip("/") for n in got))
    if want is None:
        return "scanned"
    for n, a in got.items():
        w = want.get(n.lstrip("/"))
        if w is None or isinstance(w, str):
            continue
        a = np.asarray(a)
        assert a.shape == w.shape, f"{name}: {n} shape {a.shape} != netCDF4's {w.shape} ({ops})"
        if a.dtype.kind == "S":
            a, w = a.view("u1"), np.asarray(w).view("u1")
        assert np.array_equal(a, w, equal_nan=a.dtype.kind == "f"), \
            f"{name}: {n} differs from netCDF4 after {ops}"
    return "compared"


@fuzz_settings(2)
@fuzz_seed
@given(st.data())
def test_fuzz_netcdf3_scan(nc3_files, tmp_path_factory, oracle, data):
    name = data.draw(st.sampled_from(sorted(nc3_files)))
    base = nc3_files[name]
    ops = data.draw(mutation_ops(len(base), nc3_hot(base)))
    event(check_nc3_mutant(name, base, ops, tmp_path_factory.getbasetemp(), oracle))


# ------------------------------------------------------------------ kerchunk JSON


@pytest.fixture(scope="module")
def json_bases(h5_files):
    """Reference documents: chunkview's scan of the test files as v1 JSON (pointing at real
    files, so reads happen), kerchunk's own, and a hand-written v0 / v1 with templates, gen,
    base64, objects and escapes."""
    files, scandir = h5_files
    d = scandir.parent
    docs = {}
    for name in ("testdata:small", "testdata:filters", "scandata:masks", "scandata:types"):
        p = d / f"{name.split(':')[1]}.h5"
        if not p.exists():
            p = scandir / f"{name.split(':')[1]}.h5"
        docs[name] = json.dumps(chunkview.scan(str(p)).to_dict())
    try:
        import make_testdata

        docs["kerchunk:small"] = json.dumps(make_testdata.kerchunk_refs(d / "small.h5"))
    except ImportError:
        pass
    docs["v1:templates"] = json.dumps({
        "version": 1,
        "templates": {"u": str(d / "small.h5"), "v": "memory://x"},
        "gen": [{"key": "gen/{{i}}", "url": "{{u}}", "offset": "{{i * 10}}", "length": "7",
                 "dimensions": {"i": {"start": 0, "stop": 5, "step": 1}}}],
        "refs": {".zgroup": {"zarr_format": 2}, "a": "text", "b": "base64:AAEC/w==",
                 "c": ["{{u}}"], "d": ["{{u}}", 0, 16], "e": [None, 4, 4],
                 "é\u00e9\\\"/\u2028": "\u00ff\\\u0000", "f": {"x": [1, 2.5, None, True]}},
    })
    docs["v0"] = json.dumps({".zgroup": '{"zarr_format": 2}', "k/0": [str(d / "small.h5"), 8, 8],
                             "k/1": ["memory://nope"], "k/2": "base64:", "k/3": "\u20ac"})
    return fuzzing.Bases((k, v.encode()) for k, v in docs.items())


def _py_load(text: bytes):
    """The Python path: json.loads, then the dict loader."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return "invalid"
    if not isinstance(doc, dict):
        return "invalid"
    return clean(References.from_dict, doc)


def check_json_text(text: bytes, read=False):
    with watchdog(what={"target": "json_text", "text": text.decode("latin-1"), "read": read}):
        refs = clean(chunkview.load, text)
        if refs is None:
            return "rejected"
        # the C parser accepts only what json.loads accepts, and means the same by it
        py = _py_load(text)
        assert py != "invalid", "the C parser accepted text json.loads rejects"
        if py is not None:
            assert refs == py and dict(refs.items()) == dict(py.items())
        exercise(refs, read=read)
    return "loaded"


@fuzz_settings(4)
@fuzz_seed
@given(st.data())
def test_fuzz_json_text(json_bases, data):
    """Mutated reference JSON through the C parser, differential against json.loads plus the
    dict loader; what loads is then read through the array API."""
    name = data.draw(st.sampled_from(sorted(json_bases)))
    base = json_bases[name]
    # hot: every token boundary
    hot = [i for i, c in enumerate(base) if c in b'{}[]:,"\\'][:2000]
    ops = data.draw(mutation_ops(len(base), hot))
    event(check_json_text(apply_ops(base, ops), read=data.draw(st.booleans())))


_json_scalars = st.one_of(st.none(), st.booleans(),
                          st.integers(-(2**65), 2**65),
                          st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64]),
                          st.floats(allow_nan=False, allow_infinity=False),
                          st.text(max_size=12),
                          st.sampled_from(["base64:", "base64:AAE=", "base64:!!", "{{u}}",
                                           "\ud800", "{{", "{{ x }}", "", "\x00"]))
_json_values = st.recursive(_json_scalars,
                            lambda c: st.one_of(st.lists(c, max_size=4),
                                                st.dictionaries(st.text(max_size=5), c,
                                                                max_size=3)),
                            max_leaves=8)


def _nested(depth: int) -> list:
    v: list = []
    for _ in range(depth):
        v = [v]
    return v


def _json_docs():
    url = st.one_of(st.sampled_from(["memory://a", "{{u}}", "{{u}}/x", "", "{{nope}}"]),
                    st.none(), st.text(max_size=6))
    count = st.one_of(st.integers(0, 1000), st.sampled_from([2**63 - 1, 2**64 - 2, 2**64]))
    # deeply nested JSON where any value may be (test_hostile takes it to the parsers' limits;
    # here it stays clear of the recursion limit of the test's own json.dumps)
    deep = st.sampled_from([100, 400]).map(_nested)
    valid_ref = st.one_of(
        st.text(max_size=8), st.binary(max_size=6).map(
            lambda b: "base64:" + base64.b64encode(b).decode()),
        st.tuples(url).map(list), st.tuples(url, count, count).map(list),
        st.dictionaries(st.text(max_size=3), _json_scalars, max_size=2), deep)
    refs = st.dictionaries(st.text(max_size=10) | st.sampled_from([".zgroup", "a/.zarray",
                                                                    "a/0", "\ud800", ""]),
                           st.one_of(valid_ref, valid_ref, valid_ref, _json_values), max_size=6)
    names = st.sampled_from(["i", "j", "u", "x"])
    expr = st.recursive(
        st.one_of(names, st.integers(-3, 10**20).map(str),
                  st.sampled_from(["'a'", "(", "", "2**62", "2**64", "1e400", "0.5", "0"])),
        lambda e: st.tuples(e, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", " ", "<"]),
                            e).map("".join) | e.map(lambda x: f"({x})") | e.map("-{}".format),
        max_leaves=6)
    template = st.lists(st.one_of(st.text(max_size=3), expr.map("{{{{{}}}}}".format)),
                        max_size=3).map("".join)
    big = st.sampled_from([10**4, 10**8, 10**12, 2**62, 2**64, 1e400, 2.5, True, "3"])
    dim = st.one_of(
        st.fixed_dictionaries({"stop": st.integers(-2, 12)},
                              optional={"start": st.integers(-3, 5), "step": st.integers(-2, 3)}),
        st.fixed_dictionaries({"stop": big}, optional={"start": big, "step": big}),
        st.lists(st.one_of(st.integers(-5, 2**70), st.text(max_size=2), st.floats()),
                 max_size=4),
        _json_values)
    def mostly(good):
        return st.one_of(good, good, good, good, _json_values)

    gen = st.fixed_dictionaries(
        {"key": mostly(template), "url": mostly(template),
         "dimensions": mostly(st.dictionaries(names, dim, max_size=2))},
        optional={"offset": mostly(template), "length": mostly(template)})
    v1 = st.fixed_dictionaries(
        {"version": st.sampled_from([1, 1, 1, 1.0, "1", True, None, 2]), "refs": refs},
        optional={"templates": mostly(st.dictionaries(names | st.text(max_size=4),
                                                      mostly(template), max_size=3)),
                  "gen": mostly(st.lists(gen, max_size=2))})
    return st.one_of(refs, v1)


@fuzz_settings(4)
@fuzz_seed
@given(_json_docs())
def test_fuzz_json_documents(doc):
    """Generated documents (any JSON value where a reference, template or gen goes) through
    both loaders: the dict loader and, via json.dumps, the C parser; same answers."""
    check_json_document(doc)


def check_json_document(doc):
    with watchdog(what={"target": "json_documents", "doc": repr(doc)}):
        a = clean(References.from_dict, doc)
        try:
            text = json.dumps(doc).encode()
        except (TypeError, ValueError):
            return
        try:
            b = References.from_json(text)
        except ChunkviewError as e:
            b, b_err = None, str(e)
        note(f"dict loader {'accepted' if a is not None else 'rejected'}, "
              f"C parser {'accepted' if b is not None else 'rejected'}")
        if a is not None and b is not None:
            assert a == b and dict(a.items()) == dict(b.items())
        elif a is not None:
            # the C parser is stricter only where its header says so
            assert _c_stricter(doc, text, b_err), f"only the dict loader accepts it: {b_err}"
        elif b is not None:
            # the dict loader keeps offsets and lengths in int64 (the parquet layout's type)
            assert _py_range_limit(doc), "only the C parser accepts it"
        for r in (a, b):
            if r is not None:
                exercise(r, read=False)
    return "loaded" if a is not None or b is not None else "rejected"


def _c_stricter(doc, text, err) -> bool:
    """The documented cases where the C parser rejects what the dict loader takes
    (csrc/cv_refjson.h): a "version" that is not the integer 1, and lone surrogates."""
    if isinstance(doc, dict) and "version" in doc and type(doc["version"]) is not int:
        return "version" in err
    return "surrogate" in err


def _py_range_limit(doc) -> bool:
    """An offset or length the dict loader refuses (>= 2**63, or their sum) while the C parser
    takes anything below 2**64."""
    body = doc.get("refs", {}) if isinstance(doc, dict) and "version" in doc else doc
    for v in (body.values() if isinstance(body, dict) else ()):
        if isinstance(v, list) and len(v) == 3 and all(
                isinstance(x, int) and not isinstance(x, bool) for x in v[1:]):
            if v[1] >= 2**63 or v[2] >= 2**63 or v[1] + v[2] >= 2**63:
                return True
    return False


_ZARRAY_FIELDS = ["shape", "chunks", "dtype", "compressor", "filters", "fill_value", "order",
                  "zarr_format", "dimension_separator"]
_meta_values = st.one_of(
    _json_values,
    st.sampled_from([[0], [-1], [2**63], [2**64], [1, 2, 3], [10**12, 10**12], [], [0, 0],
                     "<f8", ">i2", "|S3", "<U2", "|O", "|b1", "<M8[s]", "<c16", "|V3", "xyz",
                     [["a", "<i4"], ["b", "|S2", [2]]], {"id": "zlib", "level": 1},
                     {"id": "shuffle", "elementsize": 0}, {"id": "shuffle", "elementsize": -3},
                     [{"id": "fletcher32"}], [{"id": "nope"}], {"id": "gzip"},
                     [{"id": "shuffle", "elementsize": 3}, {"id": "zlib"}],
                     "NaN", "Infinity", "base64:AAAA", "F", "C", "/", ".", 3]))


@fuzz_settings(4)
@fuzz_seed
@given(st.data())
def test_fuzz_zarr_metadata(json_bases, data):
    """Array metadata (.zarray, .zattrs, .zgroup, .cvmask) with fields replaced by any JSON:
    opening and reading raise a chunkview error or read."""
    name = data.draw(st.sampled_from(["testdata:small", "testdata:filters", "scandata:masks"]))
    doc = json.loads(json_bases[name])
    refs = doc["refs"]
    meta_keys = sorted(k for k in refs if k.rsplit("/", 1)[-1] in
                       (".zarray", ".zattrs", ".zgroup", ".cvmask"))
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(meta_keys))
        try:
            meta = json.loads(refs[key])
        except (TypeError, ValueError):
            meta = {}
        how = data.draw(st.sampled_from(["field", "field", "drop", "whole"]))
        if how == "whole" or not isinstance(meta, dict):
            meta = data.draw(_meta_values)
        elif how == "drop" and meta:
            meta.pop(data.draw(st.sampled_from(sorted(meta))))
        else:
            field = data.draw(st.sampled_from(
                _ZARRAY_FIELDS if key.endswith(".zarray") else sorted(meta) or ["x"]))
            meta[field] = data.draw(_meta_values)
        refs[key] = json.dumps(meta)
    with watchdog(what={"target": "zarr_metadata", "doc": doc}):
        r = clean(chunkview.load, doc)
        if r is not None:
            exercise(r)


# ------------------------------------------------------------------ parquet


@pytest.fixture(scope="module")
def parquet_base(json_bases, tmp_path_factory):
    pytest.importorskip("pyarrow")
    from chunkview.refs.parquet.write import write_parquet

    refs = chunkview.load(json.loads(json_bases["testdata:small"]))
    root = tmp_path_factory.mktemp("pq") / "base.parq"
    write_parquet(refs, str(root), record_size=7)
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
             if p.is_file()}
    return refs, fuzzing.Bases(files)


def _write_tree(root: Path, files: dict):
    import shutil

    if root.exists():
        shutil.rmtree(root)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def check_parquet(root, what=None):
    with watchdog(what=what):
        for lazy in (True, False):
            r = clean(chunkview.load, str(root), lazy=lazy)
            if r is not None:
                clean(exercise, r)  # a lazy set reads records (and may fail) on any access


@fuzz_settings(2)
@fuzz_seed
@given(st.data())
def test_fuzz_parquet_files(parquet_base, tmp_path_factory, data):
    """Bytes of one file of a parquet reference set mutated (the .zmetadata JSON or a record's
    parquet file): loading eagerly and lazily, lookups and reads raise chunkview errors."""
    _, files = parquet_base
    rel = data.draw(st.sampled_from(sorted(files)))
    ops = data.draw(mutation_ops(len(files[rel])))
    root = tmp_path_factory.getbasetemp() / "pqfuzz" / "set.parq"
    _write_tree(root, {**files, rel: apply_ops(files[rel], ops)})
    check_parquet(root, {"target": "parquet_files", "file": rel, "ops": ops})


_column_values = st.sampled_from([
    ("int64", [-1]), ("int64", [2**63 - 1]), ("int64", [None]), ("uint64", [2**64 - 1]),
    ("float64", [1.5]), ("float64", [float("nan")]), ("string", ["x"]), ("binary", [b"\xff"]),
    ("string", [None]), ("binary", [None]), ("int32", [7]), ("bool_", [True]),
    ("large_string", ["/nope"]), ("large_binary", [b"raw"]), ("dictionary", ["a"]),
    ("list", [[1]]), ("null", [None]),
])


@fuzz_settings(2)
@fuzz_seed
@given(st.data())
def test_fuzz_parquet_columns(parquet_base, tmp_path_factory, data):
    """A record rewritten with columns of other types, odd values, missing or extra columns,
    more or fewer rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, files = parquet_base
    recs = sorted(r for r in files if r.endswith(".parq"))
    rel = data.draw(st.sampled_from(recs))
    root = tmp_path_factory.getbasetemp() / "pqcols" / "set.parq"
    _write_tree(root, files)
    table = pq.read_table(root / rel)
    cols = {n: table.column(n).combine_chunks() for n in table.column_names}
    n = table.num_rows
    for _ in range(data.draw(st.integers(1, 3))):
        how = data.draw(st.sampled_from(["type", "value", "drop", "extra", "rows"]))
        name = data.draw(st.sampled_from(["path", "offset", "size", "raw"]))
        if how == "drop":
            cols.pop(name, None)
        elif how == "extra":
            cols[data.draw(st.sampled_from(["extra", "path"]))] = pa.array([1] * n)
        elif how == "rows":
            k = data.draw(st.integers(0, 2 * n))
            cols = {c: v.slice(0, k) if k <= len(v) else
                    pa.concat_arrays([v, v.slice(0, k - len(v))]) for c, v in cols.items()}
            n = k
        else:
            typ, vals = data.draw(_column_values)
            vals = (vals * (n or 1))[: n]
            if typ == "dictionary":
                arr = pa.array(vals).dictionary_encode()
            elif typ == "list":
                arr = pa.array(vals, pa.list_(pa.int64()))
            else:
                arr = pa.array(vals, getattr(pa, typ)())
            if how == "value" and name in cols and len(cols[name]) == n and n:
                at = data.draw(st.integers(0, n - 1))
                base = cols[name].to_pylist()
                try:
                    base[at] = vals[0] if vals else None
                    arr = pa.array(base, cols[name].type)
                except (pa.ArrowException, TypeError, ValueError, OverflowError):
                    pass
            cols[name] = arr
    lens = {len(v) for v in cols.values()}
    assume(len(lens) <= 1)
    pq.write_table(pa.table(cols) if cols else pa.table({}), root / rel)
    check_parquet(root, {"target": "parquet_columns", "file": rel,
                         "columns": {k: repr(v.type) for k, v in cols.items()}})


# ------------------------------------------------------------------ native format


@pytest.fixture(scope="module")
def native_base(json_bases):
    refs = chunkview.load(json.loads(json_bases["testdata:small"]))
    refs["whole"] = ["memory://whole"]
    refs["inline/big"] = b"\x00\xff" * 300
    refs["k" * 300] = ["memory://long-key", 1, 2]
    return refs, fuzzing.Bases(native=refs.index.tobytes())


def native_hot(buf: bytes):
    hot = set(range(0, 128, 8))
    if len(buf) >= 128:
        live, n_urls, nb, w, rec_len, url_len = struct.unpack_from("<6Q", buf, 16)

        def pad8(n):
            return (n + 7) & ~7

        pos = 128
        for size in ((n_urls + 1) * 8, (nb + 1) * w, live * w, rec_len, url_len):
            hot.add(pos)
            pos += pad8(size)
            if pos > len(buf):
                break
    return sorted(h for h in hot if h < len(buf))


def rechecksum(buf: bytes) -> bytes:
    """Rewrite both checksums of a native index (docs/format.md) after a mutation."""
    b = bytearray(buf)
    if len(b) < 128:
        return bytes(b)
    b[112:120] = struct.pack("<Q", _index.xxh64(bytes(b[128:])))
    b[120:128] = struct.pack("<Q", _index.xxh64(bytes(b[:120])))
    return bytes(b)


def check_native(buf: bytes, original, verified: bool, what=None):
    """Open a (mutated) native index in every way and use it; with the checksums verified,
    whatever opens must hold the original references."""
    with watchdog(what=what):
        for copy in (False, True):
            for view in (buf, memoryview(bytearray(b"\0" + buf))[1:]):  # aligned, unaligned
                idx = clean(ChunkIndex.frombytes, view, copy=copy, verify=True)
                if idx is not None and verified:
                    assert dict(idx.items()) == dict(original.items())
                if copy is False:
                    idx2 = clean(ChunkIndex.frombytes, view, copy=False, verify=False)
                    if idx2 is not None:
                        use_index(idx2)
                if idx is not None:
                    use_index(idx)


def use_index(idx: ChunkIndex):
    """Every read and write on an index opened from untrusted bytes: chunkview errors only,
    and when its structure checks out, consistent answers."""
    try:
        idx.check()
        checked = True
    except ChunkviewError:
        checked = False
    items = clean(lambda: list(idx.items()))
    arrays = clean(idx.to_arrays)
    keys = [k for k, _ in items] if items is not None else []
    clean(idx.lookup_many, keys + ["nope", ".zgroup"])
    for k in keys[:50]:
        clean(idx.get, k)
    clean(lambda: idx.urls)
    clean(idx.tobytes)
    if checked:
        # a structure that passes check() answers consistently
        assert items is not None and arrays is not None
        assert len(items) == len(idx) == len(arrays[0])
        d = dict(items)
        assert len(d) == len(items), "a checked index holds a key twice"
        for k, v in items:
            assert idx[k] == v
        ids, offs, lens = idx.lookup_many(keys)
        assert (ids != chunkview.refs.memory.MISSING).all()
        again = ChunkIndex.frombytes(idx.tobytes())
        assert dict(again.items()) == d
        # and reading through it (the references point into the real test file, at whatever
        # offsets the mutation left) fails cleanly or reads
        clean(exercise, References(idx))
    # writes thaw and rebuild the structure
    clean(idx.set, "new/key", "memory://x", 1, 2)
    if keys:
        clean(idx.set_inline, keys[0], b"y" * 100)
        clean(idx.__delitem__, keys[-1])
    clean(idx.replace_urls, ["memory://same"] * len(clean(lambda: idx.urls) or []))
    clean(idx.shrink)
    clean(lambda: list(idx.items()))


@fuzz_settings(3)
@fuzz_seed
@given(st.data())
def test_fuzz_native(native_base, data):
    """Mutated native index bytes: checksums as they are (the mutation must be caught or be
    harmless), and recomputed after the mutation (the structure itself is attacked: every read
    is bounds-checked, check() finds the damage)."""
    refs, bufs = native_base
    buf = bufs["native"]
    ops = data.draw(mutation_ops(len(buf), native_hot(buf)))
    mutated = apply_ops(buf, ops)
    again = data.draw(st.booleans())
    what = {"target": "native", "ops": ops, "rechecksum": again}
    if again:
        check_native(rechecksum(mutated), refs, verified=False, what=what)
    else:
        check_native(mutated, refs, verified=True, what=what)


# ------------------------------------------------------------------ decode pipeline


def ref_fletcher32(data: bytes) -> int:
    """HDF5's H5_checksum_fletcher32, written from the HDF5 source."""
    n = len(data)
    sum1 = sum2 = 0
    words = n // 2
    i = 0
    while words:
        t = min(words, 360)
        words -= t
        for _ in range(t):
            sum1 += (data[i] << 8) | data[i + 1]
            sum2 += sum1
            i += 2
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    if n & 1:
        sum1 += data[i] << 8
        sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
    sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    return (sum2 << 16) | sum1


def ref_shuffle(data: bytes, es: int, inverse=False) -> bytes:
    if es <= 1 or len(data) < es:
        return data
    n = len(data) // es
    body = np.frombuffer(data[: n * es], np.uint8)
    body = body.reshape(es, n).T if inverse else body.reshape(n, es).T
    return body.tobytes() + data[n * es:]


_WBITS = {"zlib": 15, "deflate": -15, "gzip": 31}


def ref_inflate(data: bytes, size: int, fmt: str):
    """stdlib zlib: the decoded bytes of exactly ``size``, else None (HDF5's deflate filter
    stops at the end of the stream: trailing bytes are ignored)."""
    d = zlib.decompressobj(_WBITS[fmt])
    try:
        out = d.decompress(data, size + 1)
    except zlib.error:
        return None
    if not d.eof or len(out) != size:
        return None
    return out


def encode_steps(raw: bytes, steps, mask: int) -> bytes:
    """Write a chunk through steps (given in decode order) as HDF5 would."""
    b = raw
    for kind, bit, param in reversed(steps):
        if bit >= 0 and mask >> bit & 1:
            continue
        if kind == "shuffle":
            b = ref_shuffle(b, param)
        elif kind == "fletcher32":
            b = b + struct.pack("<I", ref_fletcher32(b))
        elif kind == "zlib":
            b = zlib.compress(b, 1)
        elif kind == "gzip":
            b = _gzip.compress(b, 1, mtime=0)
        elif kind == "deflate":
            c = zlib.compressobj(1, zlib.DEFLATED, -15)
            b = c.compress(b) + c.flush()
    return b


def ref_decode(stored: bytes, steps, mask: int, nbytes: int):
    """The reference decoder: the raw chunk, or None when the stored bytes are bad."""
    b = stored
    size = nbytes
    sizes = []
    # the size each step must produce, known backwards from the decoded size until an inflate
    known = True
    active = [s for s in steps if not (s[1] >= 0 and mask >> s[1] & 1)]
    for kind, _, _ in reversed(active):
        sizes.append(size if known else None)
        if kind == "fletcher32" and known:
            size += 4
        elif kind in _WBITS:
            known = False
    sizes.reverse()
    for (kind, _, param), want in zip(active, sizes):
        if kind == "fletcher32":
            if len(b) < 4:
                return None
            stored_sum = struct.unpack("<I", b[-4:])[0]
            f = ref_fletcher32(b[:-4])
            swapped = ((f & 0x00FF00FF) << 8) | ((f >> 8) & 0x00FF00FF)
            if stored_sum not in (f, swapped):
                return None
            b = b[:-4]
        elif kind in _WBITS:
            b = ref_inflate(b, want, kind)
            if b is None:
                return None
        else:
            if want is None or len(b) != want:
                return None
            b = ref_shuffle(b, param, inverse=True)
    return b if len(b) == nbytes else None


@st.composite
def batch_cases(draw):
    ndim = draw(st.integers(0, 3))
    chunk = tuple(draw(st.integers(1, 9)) for _ in range(ndim))
    itemsize = draw(st.sampled_from([1, 2, 3, 4, 8, 16]))
    kinds = draw(st.lists(st.sampled_from(["shuffle", "fletcher32", "zlib", "gzip", "deflate"]),
                          max_size=4, unique=True))
    for extra in [k for k in kinds if k in _WBITS][1:]:  # at most one inflate step
        kinds.remove(extra)
    steps = []
    for bit, kind in enumerate(kinds):  # writing order: the mask bit is the position
        param = draw(st.sampled_from([itemsize, itemsize, 1, 2, 3, 8])) if kind == "shuffle" else 0
        steps.append((kind, draw(st.sampled_from([bit, bit, -1])), param))
    steps.reverse()  # decode order
    nchunks = draw(st.integers(1, 4)) if ndim else 1
    return chunk, itemsize, steps, nchunks


@fuzz_settings(4)
@fuzz_seed
@given(batch_cases(), st.data())
def test_fuzz_decode_batch(case, data):
    """Chunks written through every filter combination, then corrupted or truncated: the batch
    decoder fails exactly where the Python reference decoder fails, where it succeeds it writes
    the reference's bytes into the selected part of the output, and it never writes outside a
    job's selection."""
    chunk, itemsize, steps, nchunks = case
    nbytes = math.prod(chunk) * itemsize
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    jobs = []
    for _ in range(nchunks):
        raw = rng.integers(0, 4, nbytes, dtype=np.uint8).tobytes()  # compressible
        mask = data.draw(st.integers(0, 15)) if data.draw(st.booleans()) else 0
        stored = encode_steps(raw, steps, mask)
        if data.draw(st.booleans()):
            stored = apply_ops(stored, data.draw(mutation_ops(len(stored), max_ops=3)))
        missing = data.draw(st.integers(0, 9)) == 0
        jobs.append((mask, stored, missing))
    # the output holds one chunk-sized slot per job along axis 0, maybe flipped along an axis
    shape = ((nchunks * chunk[0],) + chunk[1:]) if chunk else ()
    flat = np.full(math.prod(shape) * itemsize, 0xAB, np.uint8)
    out = flat.view(f"V{itemsize}").reshape(shape)
    if chunk and data.draw(st.booleans()):
        out = np.flip(out, axis=data.draw(st.integers(0, len(chunk) - 1)))
    sels, offs = [], []
    for j in range(nchunks):
        sel = []
        for c in chunk:
            start = data.draw(st.integers(0, c - 1))
            step = data.draw(st.integers(1, 3))
            sel.append((start, step, data.draw(st.integers(0, (c - 1 - start) // step + 1))))
        sels.append(sel)
        pos = [s[0] for s in sel]
        if chunk:
            pos[0] += j * chunk[0]
        offs.append(int(np.dot(pos, out.strides)) if chunk else 0)
    bufs = [s for _, s, _ in jobs]
    fill = bytes(range(1, itemsize + 1)) if data.draw(st.booleans()) else None
    with watchdog(what={"target": "decode_batch", "chunk": chunk, "itemsize": itemsize,
                        "steps": steps, "stored": [b.hex() for b in bufs], "sel": sels}):
        failed = _decode.decode_batch(
            chunk, itemsize, list(steps), out, np.array(offs, np.int64),
            np.array(sels, np.int64).reshape(nchunks, len(chunk), 3), bufs,
            np.array([-1 if m else i for i, (_, _, m) in enumerate(jobs)], np.int32),
            np.zeros(nchunks, np.int64), np.array([len(b) for b in bufs], np.int64),
            np.array([m for m, _, _ in jobs], np.uint32), fill,
            threads=data.draw(st.sampled_from([1, 2, 4])))
    bad = {f[0] for f in failed}
    assert all(f[1] < 0 and f[2] for f in failed)
    for j, (mask, stored, missing) in enumerate(jobs):
        slot = out[j * chunk[0]:(j + 1) * chunk[0]] if chunk else out
        # chunk elements start + k * step go to output positions start + k of the slot
        region = tuple(slice(s0, s0 + stp * (cnt - 1) + 1, stp) for s0, stp, cnt in sels[j])
        dest = tuple(slice(s0, s0 + cnt) for s0, _, cnt in sels[j])
        empty = any(cnt == 0 for _, _, cnt in sels[j])
        outside = np.ones(chunk, bool)
        if not empty:
            outside[dest] = False
        slot_bytes = np.frombuffer(np.ascontiguousarray(slot).tobytes(),
                                   np.uint8).reshape(chunk + (itemsize,))
        assert (slot_bytes[outside] == 0xAB).all(), f"job {j} wrote outside its selection"
        if missing:
            want = (fill or bytes(itemsize)) * (nbytes // itemsize)
            assert j not in bad
        else:
            want = ref_decode(stored, steps, mask, nbytes)
            if empty:  # nothing selected: the chunk is not even decoded
                assert j not in bad
                continue
            assert (want is None) == (j in bad), (j, failed, steps, mask)
            if want is None:
                continue
        if empty:
            continue
        w = np.frombuffer(want, np.uint8).reshape(chunk + (itemsize,))
        np.testing.assert_array_equal(slot_bytes[dest], w[region])


@fuzz_settings(3)
@fuzz_seed
@given(st.sampled_from(["zlib", "gzip", "deflate"]), st.binary(max_size=2000),
       st.integers(0, 3000), st.data())
def test_fuzz_inflate(fmt, raw, extra, data):
    """Inflate of corrupted and truncated streams into exactly-sized buffers agrees with
    stdlib zlib: same bytes, or an error where zlib fails."""
    stored = encode_steps(raw, [(fmt, -1, 0)], 0)
    if data.draw(st.booleans()):
        stored = apply_ops(stored, data.draw(mutation_ops(len(stored), max_ops=3)))
    size = len(raw) if data.draw(st.booleans()) else extra
    want = ref_inflate(stored, size, fmt)
    with watchdog(what={"target": "inflate", "format": fmt, "stored": stored.hex(),
                        "size": size}):
        got = clean(_decode.inflate, stored, size, fmt)
    if want is None:
        assert got is None, "chunkview inflated a stream stdlib zlib rejects"
    else:
        assert got == want


# ------------------------------------------------------------------ bounded codecs

_BOUNDED = {
    "zlib": {"id": "zlib", "level": 5}, "gzip": {"id": "gzip", "level": 5},
    "bz2": {"id": "bz2", "level": 9},
    "lzma": {"id": "lzma", "format": 1, "check": -1, "preset": None, "filters": None},
    "zstd": {"id": "zstd", "level": 3},
    "blosc": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0},
    "lz4": {"id": "lz4", "acceleration": 1},
    "hdf5_bzip2": {"id": "hdf5_bzip2", "level": 9}, "hdf5_zstd": {"id": "hdf5_zstd", "level": 3},
    "hdf5_blosc": {"id": "hdf5_blosc", "typesize": 4, "clevel": 5, "shuffle": 1,
                   "cname": "lz4"},
    "hdf5_lz4": {"id": "hdf5_lz4", "blocksize": 0},
}


@fuzz_settings(3)
@fuzz_seed
@given(st.sampled_from(sorted(_BOUNDED)), st.binary(min_size=1, max_size=3000),
       st.integers(0, 4000),
       st.data())
def test_fuzz_bounded_codecs(name, raw, limit, data):
    """Every codec chunkview bounds (chunkview.codecs.bounded), on encoded, mutated and
    truncated chunks with any limit: the decoded bytes, never more than the limit, or a
    DecodeError; unmutated within the limit: the original bytes."""
    import numcodecs

    from chunkview.codecs import registry  # noqa: F401 - registers the hdf5_* codecs
    from chunkview.codecs.bounded import decode_step

    cfg = _BOUNDED[name]
    codec = numcodecs.get_codec(dict(cfg))
    stored = bytes(codec.encode(np.frombuffer(raw, np.uint8)))
    mutated = data.draw(st.booleans())
    if mutated:
        stored = apply_ops(stored, data.draw(mutation_ops(len(stored), max_ops=3)))
    with watchdog(what={"target": "bounded_codecs", "codec": name, "stored": stored.hex(),
                        "limit": limit}):
        got = clean(decode_step, cfg, codec, stored, limit)
    if got is not None:
        got = bytes(memoryview(got).cast("B")) if not isinstance(got, np.ndarray) \
            else got.tobytes()
        assert len(got) <= limit, (name, len(got), limit)
    if not mutated:
        assert (got == raw) if len(raw) <= limit else got is None, (name, len(raw), limit)


# ------------------------------------------------------------------ the regression set


def _first_error(fn):
    """The chunkview exception fn raises (None when it raises none); any other exception
    propagates."""
    try:
        fn()
    except ChunkviewError as e:
        return e
    return None


def _scan_and_open(path):
    """Scan, then open each array the scan could not express (which raises its error)."""
    refs = chunkview.scan(str(path))
    exercise(refs)
    g = chunkview.open(refs)
    for name in refs.unsupported:
        g[name]


def _open_and_read(doc):
    refs = chunkview.load(doc)
    g = chunkview.open(refs)
    for name in g:
        obj = g[name]
        if isinstance(obj, chunkview.Array):
            obj.read()


REGRESSIONS = fuzzing.load_regressions()


@pytest.mark.parametrize("name,case", REGRESSIONS, ids=[n for n, _ in REGRESSIONS])
def test_fuzz_regression(name, case, h5_files, nc3_files, json_bases, oracle, tmp_path):
    """Every input in tests/fuzz_regressions/ (ones that broke the contract before a fix) keeps
    the contract, and fails with the error its fix introduced where the case names one."""
    target = case["target"]
    expect = case.get("expect")
    err = None
    if target in ("hdf5", "netcdf3"):
        files = h5_files[0] if target == "hdf5" else nc3_files
        base = case["base"]
        if base not in files:
            pytest.skip(f"{base} is not available here (../shared/corpus absent?)")
        if target == "hdf5":
            check_hdf5_mutant(base, files[base], case["ops"], h5_files[1], oracle,
                              case.get("checksums", True))
        else:
            check_nc3_mutant(base, files[base], case["ops"], tmp_path, oracle)
        if expect:
            path = tmp_path / ("case.nc" if target == "netcdf3" else "case.h5")
            path.write_bytes(apply_ops(files[base], case["ops"]))
            err = _first_error(lambda: _scan_and_open(path))
    elif target == "json_documents":
        check_json_document(case["doc"])
    elif target == "json_text":
        check_json_text(case["text"].encode("latin-1"), read=case.get("read", False))
        err = _first_error(lambda: chunkview.load(case["text"].encode("latin-1")))
    elif target == "load_dict":
        err = _first_error(lambda: chunkview.load(case["doc"]))
    elif target == "open_arrays":
        with watchdog():
            clean(exercise, chunkview.load(case["doc"]))
            err = _first_error(lambda: _open_and_read(case["doc"]))
    elif target == "native":
        base = native_refs_for_regressions()
        buf = apply_ops(base.index.tobytes(), case["ops"])
        if case.get("rechecksum"):
            buf = rechecksum(buf)
        check_native(buf, base, verified=not case.get("rechecksum"))
        err = _first_error(lambda: use_index(ChunkIndex.frombytes(buf)))
    elif target == "decode_batch":
        err = None
        check_decode_case(case)
    else:
        raise AssertionError(f"unknown regression target {target!r}")
    if expect:
        kind, match = expect
        assert err is not None, f"{name}: no error, expected {kind}"
        assert type(err).__name__ == kind and match in str(err), f"{name}: got {err!r}"


def native_refs_for_regressions():
    refs = References.from_dict({"a/0": ["memory://x", 1, 2], "b": ["memory://y"],
                                 "c": "inline", "d" * 300: ["memory://x", 5, 6]})
    return refs


def check_decode_case(case):
    raise AssertionError("no decode_batch regression cases exist yet")
