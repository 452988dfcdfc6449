"""Reference sets in and out: kerchunk JSON v0/v1 (templates, gen, inline, base64), native;
every key's bytes checked against fsspec's own ReferenceFileSystem."""

import base64
import json

import fsspec
import numpy as np
import pytest
from fsspec.implementations.reference import ReferenceFileSystem

import chunkview
from chunkview import References


def fsspec_bytes(refs_or_path, keys, **kw):
    fs = ReferenceFileSystem(refs_or_path, **kw)
    return {k: fs.cat_file(k) for k in keys}


def cv_bytes(refs_or_path, keys, **kw):
    fs = fsspec.filesystem("chunkview", fo=refs_or_path, **kw)
    return {k: fs.cat_file(k) for k in keys}


def to_v0(refs):
    """kerchunk v1 dict -> spec v0 (no version, keys at the top)."""
    return dict(refs["refs"])


def templated(refs, url):
    """Rewrite v1 refs to use a template for the URL, as kerchunk's combine does."""
    out = {"version": 1, "templates": {"u": url}, "refs": {}}
    for k, v in refs["refs"].items():
        if isinstance(v, list) and v[0] == url:
            v = ["{{u}}"] + v[1:]
        out["refs"][k] = v
    return out


def test_json_v1_v0_templates_equal_fsspec(kc_refs, h5file, tmp_path):
    keys = list(kc_refs["refs"])
    expected = fsspec_bytes(kc_refs, keys)
    url = next(v[0] for v in kc_refs["refs"].values() if isinstance(v, list))
    for name, doc in [("v1", kc_refs), ("v0", to_v0(kc_refs)), ("tmpl", templated(kc_refs, url))]:
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(doc))
        assert fsspec_bytes(str(p), keys) == expected, name
        assert cv_bytes(str(p), keys) == expected, name  # from a path (C parser)
        assert cv_bytes(doc, keys) == expected, name  # from a dict


def test_load_dict_and_json_agree(kc_refs, tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps(kc_refs))
    a = chunkview.load(str(p))
    b = chunkview.load(kc_refs)
    assert isinstance(a, References) and a == b
    assert len(a) == len(kc_refs["refs"])


def test_round_trips_identical(kc_refs, tmp_path):
    url = next(v[0] for v in kc_refs["refs"].values() if isinstance(v, list))
    doc = templated(kc_refs, url)
    refs = chunkview.load(doc)
    assert refs.to_dict() == doc  # templates restored, values identical
    for ext in (".json", ".cvref"):
        p1, p2 = tmp_path / f"a{ext}", tmp_path / f"b{ext}"
        refs.save(p1)
        again = chunkview.load(str(p1))
        if ext == ".json":  # saved with zarr's consolidated metadata, which loads as a key
            assert ".zmetadata" not in refs and ".zmetadata" in again
            assert {k: v for k, v in again.items() if k != ".zmetadata"} == dict(refs.items())
        else:
            assert again == refs
        again.save(p2)
        assert p1.read_bytes() == p2.read_bytes()
    refs.save(tmp_path / "plain.json", consolidated=False)
    assert chunkview.load(str(tmp_path / "plain.json")).to_dict() == doc


def test_inline_forms():
    doc = {"version": 1, "refs": {
        "text": "hello",
        "utf8": "héllo ✓",
        "b64": "base64:" + base64.b64encode(b"\x00\x01\xff").decode(),
        "obj": {"zarr_format": 2},
        "nul\u0000key": "x",
        "whole": ["file:///tmp/nowhere"],
        "null_url": [None, 1, 2],
    }}
    for refs in (chunkview.load(doc), chunkview.load(json.dumps(doc).encode())):
        assert refs["text"] == b"hello"
        assert refs["utf8"] == "héllo ✓".encode()
        assert refs["b64"] == b"\x00\x01\xff"
        assert json.loads(refs["obj"]) == {"zarr_format": 2}
        assert refs["obj"] == ReferenceFileSystem(doc).cat_file("obj")  # as fsspec stores it
        assert refs["nul\u0000key"] == b"x" and "nul" not in refs
        assert refs["whole"] == ["file:///tmp/nowhere"]
        assert refs["null_url"] == ["", 1, 2]
        d = refs.to_dict()["refs"]
        assert d["b64"] == "base64:AAH/" and d["utf8"] == "héllo ✓"


def test_base64_looking_text_survives_round_trip():
    refs = References()
    refs["k"] = b"base64:notreally"
    d = refs.to_dict()
    assert chunkview.load(d)["k"] == b"base64:notreally"


def test_gen_expanded_without_code(tmp_path):
    doc = {
        "version": 1,
        "templates": {"u": "server.domain/path"},
        "refs": {"key0": "data"},
        "gen": [{
            "key": "gen_key{{i}}",
            "url": "http://{{u}}_{{i}}",
            "offset": "{{(i + 1) * 1000}}",
            "length": "1000",
            "dimensions": {"i": {"stop": 5}},
        }, {
            "key": "g/{{a}}.{{b}}",
            "url": "s3://b/{{a}}",
            "dimensions": {"a": [0, 1], "b": {"start": 2, "stop": 8, "step": 3}},
        }],
    }
    refs = chunkview.load(doc)
    assert refs["gen_key0"] == ["http://server.domain/path_0", 1000, 1000]
    assert refs["gen_key4"] == ["http://server.domain/path_4", 5000, 1000]
    assert refs["g/1.5"] == ["s3://b/1"]
    assert set(refs) == {"key0", *(f"gen_key{i}" for i in range(5)),
                         "g/0.2", "g/0.5", "g/1.2", "g/1.5"}
    p = tmp_path / "gen.json"
    p.write_text(json.dumps(doc))
    assert chunkview.load(str(p)) == refs
    # fsspec (jinja, simple_templates=False) agrees
    pytest.importorskip("jinja2")
    fs = ReferenceFileSystem(doc, simple_templates=False)
    assert {k: v for k, v in fs.references.items() if k.startswith("g")} == {
        k: v for k, v in refs.items() if k.startswith("g")}


@pytest.mark.parametrize("expr", ["__import__('os').system('true')", "i.__class__", "i ** 99",
                                  "[x for x in ()]", "f(i)"])
def test_gen_refuses_code(expr):
    doc = {"version": 1, "refs": {}, "gen": [
        {"key": "k{{i}}", "url": "u", "offset": "{{%s}}" % expr, "length": "1",
         "dimensions": {"i": {"stop": 2}}}]}
    with pytest.raises(chunkview.ChunkviewError):
        chunkview.load(doc)


BAD_JSON = [
    (b"", "end of input"),
    (b"[1, 2]", None),
    (b'{"version": 2, "refs": {}}', "version"),
    (b'{"version": 1, "refs": {"a": ["u", -1, 5]}}', None),
    (b'{"version": 1, "refs": {"a": ["u", 1.5, 5]}}', None),
    (b'{"version": 1, "refs": {"a": ["u", 18446744073709551615, 5]}}', None),
    (b'{"version": 1, "refs": {"a": ["u", 1]}}', None),
    (b'{"version": 1, "refs": {"a": 5}}', None),
    (b'{"version": 1, "refs": {"a": ["u", 0, 1],}}', None),
    (b'{"version": 1, "refs": {"\xff\xfe": "x"}}', None),
    (b'{"version": 1, "refs": {"a": "base64:@@@"}}', None),
    (b'{"version": 1, "refs": {"a": "x"}} trailing', None),
    (b'{"version": 1, "refs": {"a": "x"', "end of input"),
]


@pytest.mark.parametrize("doc,match", BAD_JSON)
def test_bad_json_raises_clear_error(doc, match, tmp_path):
    with pytest.raises(chunkview.ReferenceFormatError) as exc:
        chunkview.load(doc)
    if match:
        assert match in str(exc.value).lower()
    p = tmp_path / "bad.json"
    p.write_bytes(doc)
    with pytest.raises(chunkview.ReferenceFormatError) as exc:
        chunkview.load(str(p))
    assert "bad.json" in str(exc.value)


def test_bad_values_name_the_key():
    with pytest.raises(chunkview.ReferenceFormatError, match="'t2m/0.0'"):
        chunkview.load(b'{"version": 1, "refs": {"t2m/0.0": ["u", -4, 5]}}')
    with pytest.raises(chunkview.ReferenceFormatError, match="'t2m/0.1'"):
        chunkview.load({"version": 1, "refs": {"t2m/0.1": ["u", 0, "5"]}})
    with pytest.raises(chunkview.ReferenceFormatError, match="version"):
        chunkview.load({"version": "1", "refs": {}})
    with pytest.raises(chunkview.ReferenceFormatError):
        chunkview.load({"version": 1, "refs": {"a": ["u", 2**63, 1]}})


def test_native_file_mmap_and_corruption(kc_refs, tmp_path):
    refs = chunkview.load(kc_refs)
    p = tmp_path / "r.cvref"
    refs.save(p)
    assert chunkview.load(str(p)) == refs
    assert chunkview.load(p.read_bytes()) == refs
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x40
    p.write_bytes(bytes(data))
    with pytest.raises(chunkview.ReferenceFormatError, match="r.cvref"):
        chunkview.load(str(p))


def test_references_pickle(kc_refs):
    import pickle

    refs = chunkview.load(kc_refs)
    again = pickle.loads(pickle.dumps(refs))
    assert again == refs


def test_lookup_many(kc_refs):
    refs = chunkview.load(kc_refs)
    keys = [k for k in kc_refs["refs"]]
    ids, offs, lens = refs.lookup_many(keys + ["missing/0"])
    urls = refs.urls
    for i, k in enumerate(keys):
        v = kc_refs["refs"][k]
        if isinstance(v, list) and len(v) == 3:
            assert [urls[ids[i]], int(offs[i]), int(lens[i])] == v
        elif isinstance(v, str):
            assert ids[i] == chunkview.refs.memory.INLINE
    assert ids[-1] == chunkview.refs.memory.MISSING
    assert isinstance(np.asarray(offs), np.ndarray)


@pytest.mark.parametrize("dims", [{"i": {"stop": 10**9}}, {"i": {"stop": 10**12}},
                                  {"i": {"stop": 20_000}, "j": {"stop": 20_000}}])
def test_gen_expansion_is_bounded(dims):
    """A gen entry that would expand beyond the limit is refused before anything is built: in
    bounded time and memory, whatever its dimensions claim."""
    import time
    import tracemalloc

    from chunkview.errors import ReferenceFormatError

    doc = {"version": 1, "refs": {},
           "gen": [{"key": "k/{{i}}", "url": "s3://b/x", "offset": "0", "length": "1",
                    "dimensions": dims}]}
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ReferenceFormatError, match="limit"):
            chunkview.load(doc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5
    assert peak < 16 << 20, peak


def test_save_replaces_a_local_file_whole(kc_refs, tmp_path):
    """Re-saving over a native index another reader has memory-mapped leaves that reader on
    the old bytes (it would fault on a file truncated under it); no temporary file stays."""
    refs = chunkview.load(kc_refs)
    p = tmp_path / "r.cvref"
    refs.save(p)
    opened = chunkview.load(str(p))  # memory-mapped
    before = dict(opened.items())
    del refs[next(iter(refs))]
    refs.save(p)
    assert dict(opened.items()) == before  # still readable, still the old set
    assert len(chunkview.load(str(p))) == len(before) - 1
    refs.save(tmp_path / "r.json")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.cvref", "r.json"]
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == 0o666 & ~umask
