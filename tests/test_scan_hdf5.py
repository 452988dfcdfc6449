"""chunkview.scan on HDF5 / NetCDF4 files written by the HDF5 and netCDF-C libraries: every
dataset reads back identical to h5py through chunkview.open, or raises a chunkview error that
says why; corrupt and truncated files raise ScanError."""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fsspec
import numpy as np
import pytest

import chunkview
from chunkview.errors import ChunkviewError, ScanError, UnsupportedError

h5py = pytest.importorskip("h5py")
sys.path.insert(0, str(Path(__file__).parent))
import corpus  # noqa: E402
import make_scandata  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_scandata.make_all(tmp_path_factory.mktemp("scan"))


def _datasets(path):
    out = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Dataset) else None)
    return out


def _check_all(path, refs=None, expect_unsupported=()):
    refs = refs if refs is not None else chunkview.scan(str(path))
    g = chunkview.open(refs)
    seen = 0
    here = os.getcwd()
    os.chdir(Path(path).parent)  # the HDF5 library finds external raw files from the cwd
    try:
        f = h5py.File(path, "r")
    finally:
        os.chdir(here)
    with f:
        for name in _datasets(path):
            if name in expect_unsupported:
                with pytest.raises(UnsupportedError):
                    g[name][...]
                continue
            if corpus.netcdf_dimension_only(f[name]):
                assert name not in g, name  # netCDF's dimension without a variable
                continue
            os.chdir(Path(path).parent)
            try:
                shown = corpus.shown_name(name)
                got = g[shown if shown in g else name][...]
                assert corpus.same(got, f[name][()]) or corpus.same_variable(got, f[name]), name
            finally:
                os.chdir(here)
            seen += 1
    return refs, seen


@pytest.mark.parametrize("which", ["earliest", "latest"])
def test_layouts_and_indexes(files, which):
    refs, seen = _check_all(files[which])
    assert seen == len(_datasets(files[which]))
    assert refs.unsupported == {}
    with h5py.File(files[which]) as f:
        meta = json.loads(refs["chunked/.zarray"])
        assert meta["chunks"] == [7, 3] and meta["shape"] == [1000, 10]
        # every allocated chunk is referenced at the byte range the library reports
        d = f["chunked_z"]
        for i in range(d.id.get_num_chunks()):
            info = d.id.get_chunk_info(i)
            key = "chunked_z/" + ".".join(str(o // c) for o, c in
                                          zip(info.chunk_offset, d.chunks))
            assert refs[key][1:] == [info.byte_offset, info.size]
    # an unwritten dataset has no chunk references and reads as its fill value
    assert not [k for k in refs if k.startswith("unwritten/") and k[-1].isdigit()]


def test_layout_versions(files):
    from chunkview.io.blocks import open_reader
    from chunkview.scan.hdf5 import format as H

    found = set()
    for which in ("earliest", "latest"):
        with open_reader(str(files[which])) as r, h5py.File(files[which]) as f:
            hf = H.H5File(r)
            for name in _datasets(files[which]):
                d = f[name]
                lay = hf.layout(h5py.h5o.get_info(d.id).addr, d.ndim)
                found.add((lay.version, lay.cls, lay.index if lay.cls == H.CHUNKED else None))
    # HDF5 2.0 writes v5 for filtered chunked data with libver="latest", 1.10 to 1.14 write v4
    v = 5 if h5py.version.hdf5_version_tuple >= (2, 0) else 4
    assert {(v, H.CHUNKED, H.FARRAY), (v, H.CHUNKED, H.EARRAY), (v, H.CHUNKED, H.BTREE2),
            (4, H.CHUNKED, H.SINGLE), (4, H.CHUNKED, H.IMPLICIT), (3, H.CHUNKED, H.BTREE1),
            (3, H.CONTIGUOUS, None), (3, H.COMPACT, None)} <= found


def test_contiguous_virtual_chunks(files):
    refs = chunkview.scan(str(files["earliest"]), chunk_bytes=1000)
    meta = json.loads(refs["contig/.zarray"])
    assert meta["chunks"] == [2, 60]  # 2 rows of 480 bytes per virtual chunk
    assert len([k for k in refs if k.startswith("contig/") and k[-1].isdigit()]) == 50
    _check_all(files["earliest"], refs)


def test_masks_and_unfiltered_edges(files):
    refs, _ = _check_all(files["masks"])
    masks = json.loads(refs["masked/.cvmask"])
    assert masks == {"1": 1, "3": 1}
    edges = json.loads(refs["edges/.cvmask"])
    assert set(edges) == {"2.0", "2.1", "0.1", "1.1"}  # chunks crossing the dataset edge


def test_types(files):
    refs, seen = _check_all(files["types"])
    assert seen == len(_datasets(files["types"]))
    attrs = json.loads(refs["i4le/.zattrs"])
    # NaN and infinities as zarr writes attributes: JSON's NaN / -Infinity tokens
    assert attrs["int"] == -5 and attrs["float"] == 2.5 and math.isnan(attrs["nan"])
    assert attrs["inf"] == -math.inf and attrs["text"] == "héllo" and attrs["bytes"] == "raw"
    assert attrs["array"] == [0, 1, 2, 3] and attrs["strings"] == ["a", "bc"]
    assert attrs["vlen_strings"] == ["x", "yz"] and attrs["bool"] is True
    assert attrs["complex"] == [1.0, 2.0] and attrs["compound"] == [1, 2.0]
    assert attrs["empty"] is None
    assert json.loads(refs["vlen_utf8/.zattrs"])["_Encoding"] == "utf-8"
    assert json.loads(refs["i2be/.zarray"])["dtype"] == ">i2"
    assert json.loads(refs["array_t/.zarray"])["shape"] == [8, 3]
    g = chunkview.open(refs)
    assert g["fill_custom"][0] == -7
    assert list(g["str_spacepad"][...]) == [b"ab cd", b"x\0yz", b"full8chr", b""]
    assert list(g["str_nullterm"][...])[1] == b"x"


def test_structure(files):
    refs, _ = _check_all(files["structure"], expect_unsupported=(
        "vds", "vds_misaligned", "vlen_seq", "null"))
    assert "does not fill its block" in refs.unsupported["vds"]
    assert "not aligned" in refs.unsupported["vds_misaligned"]
    # virtual datasets made of whole, chunk-aligned sources are their sources' chunks
    assert refs["vds_stack/2.1.0"] == refs["ext/1.0"]
    assert json.loads(refs["vds_stack/.zarray"])["chunks"] == [1, 2, 2]
    assert "vlen" in refs.unsupported["vlen_seq"]
    assert "dangling" in refs.unsupported
    g = chunkview.open(refs)
    with pytest.raises(UnsupportedError, match="SoftLink"):
        g["dangling"]
    assert json.loads(refs["grp/v/.zattrs"])["_ARRAY_DIMENSIONS"] == ["y", "x"]
    assert json.loads(refs["x/.zattrs"])["_ARRAY_DIMENSIONS"] == ["x"]
    # phony dimensions are named per group and length, as netCDF-4 names them
    assert json.loads(refs["grp/nodims/.zattrs"])["_ARRAY_DIMENSIONS"] == ["phony_dim_0"] * 2
    assert "CLASS" not in json.loads(refs["x/.zattrs"])
    assert json.loads(refs["grp/sub/.zattrs"]) == {"title": "nested"}
    # links are followed: the external link's chunks point into the other file
    assert refs["ext/0.0"][0].endswith("other.h5")
    assert refs["external_raw/0.0"][0].endswith("raw.bin")
    np.testing.assert_array_equal(g["soft"][...], g["hard"][...])


def test_soft_link_through_external_link(tmp_path):
    """A soft link whose target crosses an external link reads the linked file's dataset
    (libhdf5 reads through a file object here, which it would reuse for the linked file)."""
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=np.arange(10), chunks=(5,))
    with h5py.File(tmp_path / "main.h5", "w") as f:
        f.create_dataset("x", data=np.arange(10) * 100, chunks=(5,))
        f["ext"] = h5py.ExternalLink("other.h5", "/")
        f["soft"] = h5py.SoftLink("/ext/x")
        f["grp/rel"] = h5py.SoftLink("/soft")  # a chain of soft links
    refs = chunkview.scan(str(tmp_path / "main.h5"))
    assert not refs.unsupported
    g = chunkview.open(refs)
    for name in ("ext/x", "soft", "grp/rel"):
        np.testing.assert_array_equal(g[name][...], np.arange(10), err_msg=name)
    np.testing.assert_array_equal(g["x"][...], np.arange(10) * 100)


def test_netcdf4(files):
    refs, _ = _check_all(files["netcdf4"])
    attrs = json.loads(refs["temp/.zattrs"])
    assert attrs["_ARRAY_DIMENSIONS"] == ["time", "lat"]
    assert attrs["long_name"] == "temperature"
    assert not any(k.startswith("_Netcdf4") for k in attrs)
    assert json.loads(refs["temp/.zarray"])["fill_value"] == -999.0
    assert "_NCProperties" not in json.loads(refs[".zattrs"])
    assert json.loads(refs["forecast/step/.zattrs"])["_ARRAY_DIMENSIONS"] == ["step"]


def test_remote_scan_reads_few_ranges(files, monkeypatch):
    """A scan through fsspec (memory://) reads metadata in large blocks, and the references
    it makes read back through the same filesystem."""
    mem = fsspec.filesystem("memory")
    mem.pipe("/scan/layouts.h5", Path(files["latest"]).read_bytes())
    calls = []
    real = type(mem).cat_file

    def counting(self, path, start=None, end=None, **kw):
        calls.append((start, end))
        return real(self, path, start=start, end=end, **kw)

    monkeypatch.setattr(type(mem), "cat_file", counting)
    refs = chunkview.scan("memory://scan/layouts.h5")
    assert refs["chunked/0.0"][0] == "memory://scan/layouts.h5"
    assert 0 < len(calls) <= 3  # the whole (small) file's metadata in one or two blocks
    monkeypatch.undo()
    _check_all(files["latest"], refs)
    mem.rm("/scan", recursive=True)


def test_list_of_sources(files):
    out = chunkview.scan([str(files["masks"]), str(files["earliest"])], threads=2)
    assert len(out) == 2 and "masked/.zarray" in out[0] and "contig/.zarray" in out[1]


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"hello world" * 100)
    with pytest.raises(ScanError, match="not an HDF5"):
        chunkview.scan(str(p))
    with pytest.raises(ScanError):
        chunkview.scan(str(tmp_path / "missing.h5"))


def _outcome(path, original):
    """Scanning a damaged copy gives ScanError, or references whose every dataset reads
    identical to the original or raises a chunkview error."""
    try:
        refs = chunkview.scan(str(path))
    except ScanError:
        return "scan-error"
    g = chunkview.open(refs)
    with h5py.File(original) as f:
        for name in _datasets(original):
            try:
                got = g[name][...]
            except (ChunkviewError, KeyError):
                continue
            want = f[name][()]
            assert corpus.same(got, want) or name in ("contig", "compact", "chunked"), name
    return "ok"


def test_truncated(files, tmp_path):
    src = Path(files["latest"])
    data = src.read_bytes()
    outcomes = set()
    for cut in (0, 7, 100, 600, 2000, len(data) // 3, len(data) // 2, len(data) - 100):
        p = tmp_path / f"cut{cut}.h5"
        p.write_bytes(data[:cut])
        outcomes.add(_outcome(p, src))
    assert "scan-error" in outcomes


def test_corrupt_index_structures(files, tmp_path):
    """Damaged chunk-index signatures and counts raise ScanError, never another error."""
    src = Path(files["latest"])
    data = bytearray(src.read_bytes())
    hits = 0
    for sig in (b"FAHD", b"FADB", b"EAHD", b"EAIB", b"EADB", b"BTHD", b"BTLF", b"OHDR"):
        pos = data.find(sig)
        if pos < 0:
            continue
        bad = bytearray(data)
        bad[pos:pos + 4] = b"XXXX"
        p = tmp_path / f"bad_{sig.decode()}.h5"
        p.write_bytes(bytes(bad))
        try:
            chunkview.scan(str(p))
        except ScanError:
            hits += 1
            continue
        # the library may not need that structure to list the file: then data must match
        _outcome(p, src)
    assert hits >= 4
    # a v1 B-tree node claiming more entries than fit in the file
    early = bytearray(Path(files["earliest"]).read_bytes())
    pos = early.find(b"TREE\x01\x00")
    early[pos + 6:pos + 8] = b"\xff\xff"
    p = tmp_path / "bad_tree.h5"
    p.write_bytes(bytes(early))
    try:
        chunkview.scan(str(p))
    except ScanError:
        pass


_SCAN_ONE = """
import sys, chunkview
try:
    chunkview.scan(sys.argv[1])
    print("scanned")
except chunkview.ChunkviewError as e:
    print(type(e).__name__, e)
"""


def test_damaged_global_heap(tmp_path):
    """libhdf5 loops forever on a global heap collection whose free-space object has size 0
    (found by fuzzing); the scanner checks each collection libhdf5 reads before libhdf5
    parses it and raises ScanError.  Each scan runs in a child with a time limit, so that a
    regression is a failed test, not a hung run."""
    good = tmp_path / "vlen.h5"
    with h5py.File(good, "w") as f:
        d = f.create_dataset("x", data=np.arange(4))
        d.attrs["long"] = "a" * 6000  # vlen strings live in the global heap; > 4 KiB
        d.attrs["list"] = ["p", "qr"]
    attrs = json.loads(chunkview.scan(str(good))["x/.zattrs"])
    assert attrs["long"] == "a" * 6000 and attrs["list"] == ["p", "qr"]
    raw = good.read_bytes()
    at = raw.find(b"GCOL")
    assert at > 0 and raw.find(b"GCOL", at + 1) == -1
    obj = at + 16  # the first object: index (2), references (2), reserved (4), size (8)

    def damaged(name, *edits):
        b = bytearray(raw)
        for pos, value, n in edits:
            b[pos:pos + n] = value.to_bytes(n, "little")
        p = tmp_path / f"{name}.h5"
        p.write_bytes(bytes(b))
        r = subprocess.run([sys.executable, "-c", _SCAN_ONE, str(p)], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    # the first object made free space (index 0) of size 0: libhdf5 would never move past it
    out = damaged("zero", (obj, 0, 2), (obj + 8, 0, 8))
    assert out.startswith("ScanError corrupt global heap collection: object 0 of 0 bytes"), out
    assert f"byte {obj}" in out and "zero.h5" in out
    # an object size that would wrap libhdf5's pointer, and a collection past the file's end
    out = damaged("huge", (obj + 8, 2**63, 8))
    assert out.startswith("ScanError corrupt global heap collection"), out
    out = damaged("past_end", (at + 8, len(raw) * 2, 8))
    assert out.startswith("ScanError global heap collection of"), out
    assert "does not fit in the file" in out


def test_reduced_precision_refused(tmp_path):
    """libhdf5 converts integers stored with reduced precision or at a bit offset as it reads
    them; read as stored they would be silently wrong, so the scanner refuses them."""
    p = tmp_path / "prec.h5"
    values = np.array([0, 1, -1, 100, -100, 2047, -2048, 5], "i4")
    with h5py.File(p, "w") as f:
        f.create_dataset("x", data=values << 3, chunks=(4,))
        f.create_dataset("y", data=values, chunks=(4,))
    raw = bytearray(p.read_bytes())
    # the first int32 datatype message (x's): 16-bit precision at bit offset 3
    pat = bytes.fromhex("1008000004000000" "0000" "2000")
    at = raw.find(pat)
    assert at > 0
    raw[at + 8:at + 12] = (3).to_bytes(2, "little") + (16).to_bytes(2, "little")
    p.write_bytes(bytes(raw))
    with h5py.File(p, "r") as f:
        assert f["x"].id.get_type().get_precision() == 16
        assert np.array_equal(f["x"][()], values)  # libhdf5 shifts and sign-extends
    refs = chunkview.scan(str(p))
    assert "16-bit numbers at bit offset 3 of 4-byte elements" in refs.unsupported["x"]
    g = chunkview.open(refs)
    with pytest.raises(UnsupportedError, match="bit offset 3"):
        g["x"]
    assert np.array_equal(g["y"][...], values)


def test_isolated_scan(files):
    """Scans run in a reused helper process (libhdf5 can crash or loop on a corrupt file: the
    fuzz regressions hold such files); a scan overrunning ``timeout`` is a ScanError, and the
    next scan gets a fresh helper."""
    from chunkview.scan import isolate as _isolate

    a = chunkview.scan(str(files["netcdf4"]))
    b = chunkview.scan(str(files["netcdf4"]), isolate=False)
    assert a.to_dict() == b.to_dict() and a.unsupported == b.unsupported
    s = chunkview.scan(str(files["structure"]))
    assert s.unsupported == chunkview.scan(str(files["structure"]), isolate=False).unsupported
    assert _isolate._idle and all(h.alive() for h in _isolate._idle)
    helpers = list(_isolate._idle)
    with pytest.raises(ScanError, match="did not finish in 1e-06 s"):
        chunkview.scan(str(files["netcdf4"]), timeout=1e-6)
    assert sum(h.alive() for h in helpers) == len(helpers) - 1  # the overrunning one killed
    assert chunkview.scan(str(files["netcdf4"])).to_dict() == b.to_dict()


def test_isolated_sanitizer_report():
    """Under tests/sanitize.sh a helper that dies of a sanitizer report in chunkview's own code
    is a RuntimeError with the report, not a ScanError blaming the file; a report inside
    libhdf5 (the fuzz regression's SEGV, which ASan turns into SIGABRT) stays a ScanError."""
    import tempfile

    from chunkview.scan import isolate as _isolate

    hdf5 = (b"==1==ERROR: AddressSanitizer: SEGV on unknown address 0x000000000010\n"
            b"    #0 0x7f in H5O__fill_decode (/usr/lib/libhdf5.so.310+0x2b1f3)\n"
            b"    #1 0x7f in H5O_msg_read (/usr/lib/libhdf5.so.310+0x2a000)\n")
    ours = (b"==1==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x6020\n"
            b"    #0 0x7f in __interceptor_memcpy (/usr/lib/libasan.so.8+0x3a)\n"
            b"    #1 0x7f in cv_unshuffle /src/csrc/decode.c:210\n"
            b"    #2 0x7f in (/repo/src/chunkview/_decode.cpython-311-x86_64-linux-gnu.so+0x9f)\n")
    for text, raises in ((hdf5, False), (ours, True), (b"", False)):
        log = tempfile.TemporaryFile()
        log.write(text)
        if raises:
            with pytest.raises(RuntimeError, match="sanitizer report in the scan helper"):
                _isolate._own_bug(log, "signal SIGABRT")
        else:
            _isolate._own_bug(log, "signal SIGABRT")
        assert log.closed
    _isolate._own_bug(None, "signal SIGSEGV")  # outside sanitize.sh nothing is kept


def test_cli_scan_info_verify(files, tmp_path):
    out = tmp_path / "refs.json"
    run = [sys.executable, "-m", "chunkview.cli"]
    r = subprocess.run(run + ["scan", str(files["types"]), "-o", str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["version"] == 1
    r = subprocess.run(run + ["info", str(out)], capture_output=True, text=True)
    assert r.returncode == 0 and "i4le: shape (6, 10) <i4" in r.stdout
    assert "chunks" in r.stdout and "bytes" in r.stdout
    r = subprocess.run(run + ["verify", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout
    # several inputs into a folder, native format
    folder = tmp_path / "many"
    r = subprocess.run(run + ["scan", str(files["masks"]), str(files["netcdf4"]), "-o",
                              str(folder), "--format", "native"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["masks.h5.cvref", "nc4.nc.cvref"]
    # a corrupted chunk makes verify fail, naming the variable
    bad = tmp_path / "bad.h5"
    shutil.copy(files["earliest"], bad)
    refs = chunkview.scan(str(bad))
    _, off, n = refs["chunked_z/0.0"]
    raw = bytearray(bad.read_bytes())
    raw[off + n // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    refs.save(str(tmp_path / "bad.json"))
    r = subprocess.run(run + ["verify", str(tmp_path / "bad.json")], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "chunked_z: FAILED" in r.stdout


@pytest.mark.skipif(not corpus.CORPUS.is_dir(), reason="../shared/corpus is absent")
def test_corpus():
    """Every dataset of the third-party corpus h5py reads fully is identical through
    chunkview, or raises a chunkview error saying why; no crash, no wrong data."""
    from collections import Counter

    totals = Counter()
    bad = []
    for p in corpus.files():
        for name, outcome, detail in corpus.check_file(p):
            totals[outcome] += 1
            if outcome not in ("identical", "clear-error"):
                bad.append(f"{p}: {name}: {outcome} {detail}")
    print(dict(totals))
    assert not bad, "\n".join(bad[:20])
    assert totals["identical"] > 6000


def test_bitfields_empty_and_odd_long_doubles(tmp_path):
    """Bitfields read as h5py reads them (unsigned integers of their stored bits); a contiguous
    (0, 0) dataset is an empty array; a 12-byte float (a 32-bit x87 long double) is one
    unsupported dataset, not a failed file."""
    p = tmp_path / "odd.h5"
    with h5py.File(p, "w") as f:
        for name, tid, vals in ((b"bits8", h5py.h5t.STD_B8LE, np.arange(4, dtype="u1")),
                                (b"bits16", h5py.h5t.STD_B16BE,
                                 np.array([1, 256, 65535], ">u2"))):
            d = h5py.h5d.create(f.id, name, tid.copy(), h5py.h5s.create_simple(vals.shape))
            d.write(h5py.h5s.ALL, h5py.h5s.ALL, vals, mtype=tid)
        f.create_dataset("empty", shape=(0, 0), dtype="f4")
        f.create_dataset("empty_tail", shape=(3, 0), dtype="i2")
        t = h5py.h5t.IEEE_F64LE.copy()
        t.set_size(12)
        t.set_precision(80)
        t.set_fields(79, 64, 15, 0, 64)
        t.set_ebias(16383)
        t.set_norm(h5py.h5t.NORM_NONE)
        d = h5py.h5d.create(f.id, b"ld12", t, h5py.h5s.create_simple((3,)))
        d.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array([1.5, 2.5, -3.0], np.longdouble),
                mtype=h5py.h5t.NATIVE_LDOUBLE)
        f.create_dataset("after", data=np.arange(5.0))
    for isolate in (False, True):
        refs = chunkview.scan(str(p), isolate=isolate)
        assert set(refs.unsupported) == {"ld12"}
        assert "12-byte floats" in refs.unsupported["ld12"]
        _, seen = _check_all(p, refs, expect_unsupported=("ld12",))
        assert seen == 5


def test_compound_fill_with_gaps_is_reproducible(tmp_path):
    """The padding of a compound type with gaps is not data: its fill value is written with
    zeros there, so every scan writes the same bytes."""
    dt = np.dtype({"names": ["a", "b"], "formats": ["<i2", "<f8"], "offsets": [0, 8],
                   "itemsize": 24})
    fill = np.zeros((), dt)
    fill["a"], fill["b"] = 7, 2.5
    p = tmp_path / "gaps.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("c", shape=(6,), dtype=dt, chunks=(3,), fillvalue=fill)
        f["c"][0:3] = np.array([(1, 1.0), (2, 2.0), (3, 3.0)], dt)
    values = {chunkview.scan(str(p), isolate=i)["c/.zarray"] for i in (False, True, True)}
    assert len(values) == 1
    meta = json.loads(values.pop())
    raw = base64.b64decode(meta["fill_value"])
    assert len(raw) == 24
    assert raw[2:8] == bytes(6) and raw[16:] == bytes(8)  # the gaps
    assert np.frombuffer(raw, dt)[0].tolist() == (7, 2.5)
    _check_all(p)


def test_inline_threshold_covers_contiguous_data(tmp_path):
    """Small contiguous datasets are inlined like small chunks (kerchunk does the same)."""
    p = tmp_path / "c.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("small", data=np.arange(10, dtype="<i4"))
        f.create_dataset("big", data=np.arange(5000, dtype="<f8"))
    refs = chunkview.scan(str(p), inline_threshold=100)
    assert isinstance(refs["small/0"], bytes) and isinstance(refs["big/0"], list)
    assert refs["small/0"] == np.arange(10, dtype="<i4").tobytes()
    _check_all(p, refs)
    assert isinstance(chunkview.scan(str(p))["small/0"], list)


def test_compound_with_string_members_and_vlen_arrays(tmp_path):
    """A compound type with variable-length string members is read (its strings stored as
    fixed-width bytes, as VirtualiZarr reads kerchunk's vlen2.h5); a member that is an array
    of variable-length data is one unsupported dataset saying so."""
    p = tmp_path / "records.h5"
    s = h5py.string_dtype()
    with h5py.File(p, "w") as f:
        dt = np.dtype([("n", "<i4"), ("name", s), ("x", "<f8")])
        f.create_dataset("people", data=np.array([(1, "ann", 0.5), (2, "bé", 1.5),
                                                  (3, "", 2.5)], dt))
        va = np.dtype([("n", "<i4"), ("v", h5py.vlen_dtype("i4"), (2,))])
        f.create_dataset("vlen_array_member", shape=(2,), dtype=va)
    for isolate in (False, True):
        refs = chunkview.scan(str(p), isolate=isolate)
        assert set(refs.unsupported) == {"vlen_array_member"}
        assert "array of variable-length" in refs.unsupported["vlen_array_member"]
        got = chunkview.open(refs)["people"][...]
        assert got["name"].tolist() == [b"ann", "bé".encode(), b""]
        assert got["n"].tolist() == [1, 2, 3] and got["x"].tolist() == [0.5, 1.5, 2.5]
        _check_all(p, refs, expect_unsupported=("vlen_array_member",))


def test_reference_attributes_are_not_read(tmp_path):
    """Attributes holding HDF5 references have no JSON form (and reading some damages
    libhdf5's heap): they are left out, the rest of the attributes kept."""
    p = tmp_path / "refattrs.h5"
    with h5py.File(p, "w") as f:
        d = f.create_dataset("d", data=np.arange(3))
        d.attrs["ref"] = f.ref
        d.attrs["refs"] = np.array([f.ref, d.ref], dtype=h5py.ref_dtype)
        d.attrs["kept"] = 7
    refs = chunkview.scan(str(p))
    assert json.loads(refs["d/.zattrs"]) == {"kept": 7, "_ARRAY_DIMENSIONS": ["phony_dim_0"]}


def test_a_helper_is_not_reused_after_a_failed_scan(tmp_path):
    """A scan libhdf5 failed on kills its helper process: the next scan gets a fresh one."""
    from chunkview.scan import isolate

    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as f:
        f.create_dataset("x", data=np.arange(4))
    bad = tmp_path / "bad.h5"
    bad.write_bytes(good.read_bytes()[:900])  # truncated
    chunkview.scan(str(good))
    with isolate._lock:
        before = {id(h) for h in isolate._idle}
    assert before
    with pytest.raises(chunkview.ChunkviewError):
        chunkview.scan(str(bad))
    with isolate._lock:
        after = {id(h) for h in isolate._idle}
    assert not (after - before)  # the failed helper was not put back
    assert len(after) < len(before) or after != before
    chunkview.scan(str(good))  # and scanning goes on


def test_metadata_cache_image(tmp_path):
    """A file closed with a metadata cache image keeps object headers in the image, not at
    their addresses: the scanner reads them from it, as libhdf5 does."""
    import make_scandata

    p = make_scandata.make_cache_image(tmp_path / "image.h5")
    assert b"MDCI" in p.read_bytes()
    for isolate in (False, True):
        refs, seen = _check_all(p, chunkview.scan(str(p), isolate=isolate))
        assert seen == 3 and refs.unsupported == {}
        assert json.loads(refs["g/.zattrs"]) == {"a": 1}
