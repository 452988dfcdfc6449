"""The package's shape (docs/architecture.md): no import cycles, reserved keys spelled once, read
options defaulted once, no oversized modules, no policy in the Cython layer, stubs that match
the compiled modules."""

import ast
import re
import types
from pathlib import Path

import pytest

import chunkview

PKG = Path(chunkview.__file__).parent
MAX_LINES = 800
RESERVED = (".cvmask", ".cverror", ".cvsources", ".cvnetcdf", ".cvref", "_ARRAY_DIMENSIONS",
            ".zmetadata", ".cv", "__chunkview_references__")


def _modules():
    """{module name: path} of every .py and .pyx module in the package."""
    out = {}
    for p in sorted(PKG.rglob("*.py")) + sorted(PKG.rglob("*.pyx")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, name: str, mods: dict):
    """The package modules ``path`` imports, anywhere in the file (functions included)."""
    text = path.read_text()
    found = []
    if path.suffix == ".pyx":
        for m in re.finditer(r"^\s*from\s+(chunkview[\w.]*)\s+c?import\s+([\w, ()*]+)", text,
                             re.M):
            found.append((m.group(1), [n.strip() for n in m.group(2).strip("()").split(",")]))
        for m in re.finditer(r"^\s*import\s+(chunkview[\w.]*)", text, re.M):
            found.append((m.group(1), []))
    else:
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:  # relative import
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([mod] if mod else []))
                found.append((mod, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                found.extend((a.name, []) for a in node.names)
    edges = set()
    for mod, names in found:
        if not mod.startswith("chunkview"):
            continue
        subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in mods]
        if subs:
            edges.update(subs)
        if len(subs) < len(names) or not names:
            if mod in mods:
                edges.add(mod)
    edges.discard(name)
    return edges


def test_no_import_cycles():
    mods = _modules()
    graph = {m: _imports(p, m, mods) for m, p in mods.items()}
    # Tarjan's strongly connected components
    index, low, stack, on, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"
    # the graph is real: the front ends import the layers below them
    assert "chunkview.read.engine" in graph["chunkview.array"]
    assert "chunkview.io.resolve" in graph["chunkview.filesystem"]


def test_module_sizes():
    big = {m: n for m, p in _modules().items() if p.suffix == ".py"
           for n in [len(p.read_text().splitlines())] if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def _string_constants(path: Path):
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs:
            yield node.value


def test_reserved_keys_spelled_once():
    where = {}
    for m, p in _modules().items():
        if p.suffix != ".py" or m == "chunkview.keys":
            continue
        for s in _string_constants(p):
            if s in RESERVED or s.endswith(RESERVED[:-2]):
                where.setdefault(s, []).append(m)
    assert not where, f"reserved key names outside chunkview.keys: {where}"
    from chunkview import keys

    for name in ("MASK_KEY", "ERROR_KEY", "SOURCES_KEY", "NETCDF_KEY", "DIMENSION_KEY"):
        assert getattr(keys, name) in RESERVED


def test_read_option_defaults_given_once():
    from chunkview.options import ReadOptions

    names = set(ReadOptions.names())
    assert {"max_gap", "max_block", "retries", "timeout", "check_source"} <= names
    where = []
    for m, p in _modules().items():
        # a scan's timeout and the bench server's multi_range are their own settings
        if p.suffix != ".py" or m == "chunkview.options" or m.startswith(
                ("chunkview.scan", "chunkview.bench")):
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                pos = a.posonlyargs + a.args
                pairs = list(zip(pos[len(pos) - len(a.defaults):], a.defaults))
                pairs += [(k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
                for arg, default in pairs:
                    # None means "the options' value"; anything else is a second default
                    if arg.arg in names and not (isinstance(default, ast.Constant)
                                                 and default.value is None):
                        where.append(f"{m}.{node.name}({arg.arg}=...)")
    assert not where, f"read options defaulted outside chunkview.options: {where}"
    # and the front ends take them all
    import inspect

    from chunkview.filesystem import ChunkviewFileSystem
    from chunkview.zarr_store import ReferenceStore

    d = ReadOptions()
    for cls in (ChunkviewFileSystem, ReferenceStore):
        assert "max_gap" not in inspect.signature(cls.__init__).parameters
    assert d.max_gap == 1 << 20


@pytest.mark.parametrize("name", ["_index", "_decode"])
def test_cython_layer_holds_no_policy(name):
    if not (PKG / f"{name}.pyx").exists():
        pytest.skip("an installed wheel holds no .pyx sources")
    text = (PKG / f"{name}.pyx").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "ThreadPool" not in code and "threading" not in code
    assert "warnings" not in code
    # no message text: every raise names a check of chunkview._status, a status or MemoryError
    for m in re.finditer(r"raise\s+(.*)", code):
        what = m.group(1)
        assert what.startswith(("_status.", "status_error(", "MemoryError()")), what
    assert "errors." not in code


def test_status_codes_match_the_build():
    from chunkview import _index, _status

    assert _index.STATUS_CODES == _status.CODES


@pytest.mark.parametrize("name", ["_index", "_decode"])
def test_stubs_cover_the_compiled_modules(name):
    import importlib

    mod = importlib.import_module(f"chunkview.{name}")
    stub = ast.parse((PKG / f"{name}.pyi").read_text())
    declared = set()
    for node in stub.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            declared.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared.add(node.target.id)
        elif isinstance(node, ast.Assign):
            declared.update(t.id for t in node.targets if isinstance(t, ast.Name))
    public = {n for n in dir(mod) if not n.startswith("_")
              and not isinstance(getattr(mod, n), types.ModuleType)}  # modules it imported
    assert public - declared == set()


def test_subpackage_inits_are_light():
    """Importing ``chunkview.io.fetch`` runs ``chunkview/io/__init__.py`` first: those files
    import nothing, so no import order depends on them."""
    for p in PKG.rglob("__init__.py"):
        if p.parent == PKG or p.parent.name == "scan":
            continue
        tree = ast.parse(p.read_text())
        assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], p


def test_reference_sets_follow_one_protocol(tmp_path):
    pytest.importorskip("pyarrow")
    import json

    import numpy as np

    from chunkview.refs.memory import References
    from chunkview.refs.parquet.lazy import LazyParquetReferences
    from chunkview.refs.parquet.write import write_parquet
    from chunkview.refs.protocol import ItemsViewOf, ReferenceSet

    d = {".zgroup": json.dumps({"zarr_format": 2}),
         "x/.zarray": json.dumps({"zarr_format": 2, "shape": [4], "chunks": [2],
                                  "dtype": "<i2", "compressor": None, "filters": None,
                                  "order": "C", "fill_value": 0}),
         "x/0": ["file:///data/a.bin", 10, 4], "x/1": b"\x01\x00\x02\x00"}
    mem = References.from_dict(d)
    write_parquet(mem, str(tmp_path / "r.parq"), record_size=1)
    lazy = LazyParquetReferences(str(tmp_path / "r.parq"))
    # a parquet set also serves its own .zmetadata file as a key (as fsspec's does)
    mem[".zmetadata"] = (tmp_path / "r.parq" / ".zmetadata").read_bytes()
    for refs in (mem, lazy):
        assert isinstance(refs, ReferenceSet)
        assert isinstance(refs.items(), ItemsViewOf)
        assert refs.to_references() == mem
    keys = ["x/0", "x/1", "x/2", ".zgroup"]
    (ia, oa, la), (ib, ob, lb) = mem.lookup_many(keys), lazy.lookup_many(keys)
    np.testing.assert_array_equal(ia, ib)  # url id, INLINE or MISSING
    ref = ia >= 0  # offsets and lengths mean something for references only
    assert [mem.urls[i] for i in ia[ref]] == [lazy.urls[i] for i in ib[ref]]
    np.testing.assert_array_equal(oa[ref], ob[ref])
    np.testing.assert_array_equal(la[ref], lb[ref])
    assert dict(mem.items()) == dict(lazy.items())
    assert mem.to_references() is mem
    assert not isinstance({}, ReferenceSet)


def test_entry_points_resolve():
    """Every entry point pyproject.toml declares names an object that exists (codecs under
    their own codec_id), so moving a module cannot silently unregister it."""
    import importlib
    import tomllib

    pyproject = PKG.parent.parent / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("an installed package: pyproject.toml is not next to it")
    project = tomllib.loads(pyproject.read_text())["project"]
    groups = dict(project["entry-points"], scripts=project["scripts"])
    assert set(groups) >= {"numcodecs.codecs", "fsspec.specs", "xarray.backends",
                           "zarr.codec_pipeline", "scripts"}
    for group, points in groups.items():
        for name, target in points.items():
            mod, _, attr = target.partition(":")
            obj = getattr(importlib.import_module(mod), attr)
            if group == "numcodecs.codecs":
                assert obj.codec_id == name
    assert groups["zarr.codec_pipeline"]["chunkview"] == "chunkview.zarr_store:CodecPipeline"
