"""Check chunkview's scanner against h5py on the third-party corpus (``../shared/corpus``).

For every HDF5 / netCDF file and every dataset h5py reads fully, ``chunkview.open(
chunkview.scan(file))[path][...]`` must equal h5py's data, or opening it must raise a
chunkview error saying why.  Used by ``tests/test_scan_corpus.py``; also runnable on its own:
``python tests/corpus.py [FILE...]`` prints one line per dataset and the totals.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"


def inventory():
    with open(CORPUS / "INVENTORY.json") as f:
        return json.load(f)


def same(a, b) -> bool:
    """chunkview's array ``a`` equals h5py's ``b`` (vlen strings are fixed-width bytes in
    chunkview; compound types may carry explicit padding fields)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return False
    if b.dtype.kind == "O":
        flat = [x.encode() if isinstance(x, str) else (b"" if x is None else bytes(x))
                for x in b.reshape(-1)]
        return [bytes(x) for x in a.reshape(-1)] == [x.rstrip(b"\0") for x in flat]
    if b.dtype.fields is not None:
        if a.dtype.fields is None:
            return False
        return all(same(a[n], b[n]) for n in b.dtype.names)
    if a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return np.array_equal(a, b, equal_nan=True)
    if a.dtype.kind == "V":
        return a.tobytes() == b.tobytes()
    return np.array_equal(a, b)


def netcdf_dimension_only(d) -> bool:
    """Whether h5py dataset ``d`` is netCDF-4's stand-in for a dimension without a variable
    (not an array in chunkview's references, as in netCDF-C and kerchunk)."""
    name = d.attrs.get("NAME") if "NAME" in d.attrs else None
    if isinstance(name, str):
        name = name.encode()
    return isinstance(name, bytes) and name.startswith(b"This is a netCDF dimension but not")


def shown_name(name: str) -> str:
    """Where chunkview presents HDF5 dataset ``name``: netCDF-C's "_nc4_non_coord_x" (a
    variable named like a dimension it is not the coordinate of) under its real name."""
    head, _, last = name.rpartition("/")
    last = last.removeprefix("_nc4_non_coord_")
    return f"{head}/{last}" if head else last


def same_variable(got, d) -> bool:
    """chunkview's array ``got`` equals h5py dataset ``d`` read as netCDF-C reads it: a
    variable along an unlimited dimension is as long as that dimension, the records beyond its
    HDF5 extent holding its _FillValue (or HDF5's fill value, netCDF's default)."""
    want = d[()]
    got = np.asarray(got)
    if got.shape == np.shape(want) or got.ndim != np.ndim(want):
        return same(got, want)
    if any(g < w for g, w in zip(got.shape, np.shape(want))):
        return False
    inner = tuple(slice(0, n) for n in np.shape(want))
    if not same(got[inner], want):
        return False
    fill = d.attrs["_FillValue"] if "_FillValue" in d.attrs else d.fillvalue
    rest = np.ones(got.shape, bool)
    rest[inner] = False
    expect = np.full(int(rest.sum()), np.asarray(fill).reshape(-1)[0], dtype=got.dtype)
    return same(got[rest], expect)


def readable(path: Path) -> dict:
    """{dataset path: bytes} of the datasets the inventory says h5py reads fully."""
    for rec in inventory():
        if CORPUS / rec["file"] == path:
            return {d["path"].lstrip("/"): d.get("nbytes") or 0 for d in rec.get("datasets", [])
                    if d.get("read") == "ok"}
    return {}


def check_file(path: Path, limit: int = 256 << 20, zarr_format: int = 2,
               reader: str = "chunkview"):
    """[(dataset, outcome, detail)] with outcome in identical / clear-error / WRONG /
    CRASH; a whole-file scan error is reported as one row with dataset ``"*"``.
    ``zarr_format``: of the references scanned; ``reader``: ``"chunkview"``
    (``chunkview.open``) or ``"zarr"`` (fsspec's ReferenceFileSystem on the saved JSON and
    zarr-python with its default codec pipeline)."""

    import chunkview
    from chunkview.errors import ChunkviewError

    rows = []
    try:
        refs = chunkview.scan(str(path), zarr_format=zarr_format)
    except ChunkviewError as e:
        return [("*", "clear-error", f"{type(e).__name__}: {e}")]
    except Exception as e:  # noqa: BLE001 - the point is to catch anything
        return [("*", "CRASH", f"{type(e).__name__}: {e}")]
    if reader == "zarr":
        g = _zarr_group(refs, zarr_format)
        for name in refs.unsupported:  # listed by the scan with its reason
            rows.append((name, "clear-error", refs.unsupported[name]))
        skip = set(refs.unsupported)
    else:
        g = chunkview.open(refs)
        skip = set()
    try:
        f = _h5(path)
    except Exception:
        return [("*", "h5py-cannot-open", "")]
    with f:
        for name, nbytes in readable(path).items():
            if nbytes > limit or name in skip:
                continue
            if reader == "zarr" and "\\" in name:  # zarr-python reads "\" in a path as "/"
                rows.append((name, "zarr-cannot-name", ""))
                continue
            try:
                want = f[name][()]
            except Exception:
                continue  # h5py cannot read it either: no truth to compare with
            def has(key):
                try:
                    return key in g
                except ChunkviewError:  # there, and refused with a reason
                    return True

            head, _, last = name.rpartition("/")
            shadow = f"{head}/_nc4_non_coord_{last}" if head else f"_nc4_non_coord_{last}"
            if (netcdf_dimension_only(f[name]) or shadow in f) and not has(name) or \
                    shadow in f and has(shown_name(shadow)):
                rows.append((name, "identical", "a netCDF dimension, not a variable"))
                continue
            shown = shown_name(name) if has(shown_name(name)) else name
            try:
                got = g[shown][...]
            except ChunkviewError as e:
                rows.append((name, "clear-error", f"{type(e).__name__}: {e}"))
                continue
            except Exception as e:  # noqa: BLE001
                rows.append((name, "CRASH", f"{type(e).__name__}: {e}"))
                continue
            if reader == "zarr" and isinstance(want, np.ndarray) and \
                    np.asarray(got).dtype == want.dtype.newbyteorder("="):
                got = np.asarray(got).astype(want.dtype)  # zarr v3 gives native byte order
            if same(got, want) or same_variable(got, f[name]):
                rows.append((name, "identical", ""))
            else:
                rows.append((name, "WRONG", f"{np.asarray(got).dtype} vs {np.asarray(want).dtype}"))
    return rows


def _zarr_group(refs, zarr_format: int):
    """The references as zarr-python reads them: through fsspec's ReferenceFileSystem (the
    kerchunk JSON chunkview saves), with zarr's default codec pipeline."""
    import fsspec
    import zarr

    class Group:
        def __init__(self):
            fs = fsspec.filesystem("reference", fo=refs.to_dict(consolidated=True))
            with zarr.config.set({"codec_pipeline.path":
                                  "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
                self.g = zarr.open_group(fs.get_mapper(""), mode="r", zarr_format=zarr_format)

        def __contains__(self, name):
            try:
                self.g[name]
            except KeyError:
                return False
            return True

        def __getitem__(self, name):
            with zarr.config.set({"codec_pipeline.path":
                                  "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
                a = self.g[name]  # (zarr picks an array's pipeline when it opens it)
            if type(a._async_array.codec_pipeline).__module__.startswith("chunkview"):
                raise AssertionError("not zarr's default pipeline")
            return a

    return Group()


def _h5(path: Path):
    """h5py's file; libhdf5 refuses some files with its file driver that it reads through a
    file object, as the scanner does (a superblock still marked open for writing)."""
    import h5py

    try:
        return h5py.File(path, "r")
    except Exception:
        return h5py.File(open(path, "rb"), "r")


def h5_arrays(path) -> dict:
    """{dataset path: values} of every dataset of an HDF5 file, as h5py reads them."""
    out = {}
    with _h5(path) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if hasattr(o, "dtype") else None)
    return out


def check_virtualizarr(paths, registry, chunkview_parser, other_parser) -> dict:
    """VirtualiZarr's ManifestStores of ``paths`` from ``chunkview_parser`` (ChunkviewParser)
    and ``other_parser`` (HDFParser), read by zarr's default pipeline, against h5py.  Counts:
    ``identical`` (chunkview's as h5py's), ``WRONG`` ([(file, array)]), ``hdfparser-agrees``
    / ``hdfparser-wrong`` / ``hdfparser-cannot-read`` (the other's, where chunkview's is
    identical), ``hdfparser-fails`` (files it refuses), ``chunkview-refuses`` (files)."""
    import warnings

    import zarr

    import chunkview

    def arrays(store):
        with zarr.config.set({"codec_pipeline.path":
                              "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
            g = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
            return {p: a for p, a in g.members(max_depth=None) if isinstance(a, zarr.Array)}

    counts = {"identical": 0, "WRONG": [], "hdfparser-agrees": 0, "hdfparser-wrong": 0,
              "hdfparser-cannot-read": 0, "hdfparser-fails": 0, "chunkview-refuses": 0}
    for p in paths:
        url = Path(p).resolve().as_uri()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ours = arrays(chunkview_parser()(url, registry))
            except chunkview.ChunkviewError:
                counts["chunkview-refuses"] += 1
                continue
            try:
                theirs = arrays(other_parser()(url, registry))
            except Exception:  # noqa: BLE001 - the other parser's own failures
                theirs = {}
                counts["hdfparser-fails"] += 1
            ok = readable(Path(p))
            with _h5(p) as f:
                for name, arr in ours.items():
                    if name not in ok:
                        continue
                    try:
                        want = f[name][()]
                    except Exception:  # noqa: BLE001 - h5py cannot: no truth to compare
                        continue
                    got = arr[...]
                    if np.shape(want) != got.shape:
                        continue  # a netCDF variable shorter than its dimension
                    if not _same_v3(got, want):
                        counts["WRONG"].append((str(p), name))
                        continue
                    counts["identical"] += 1
                    if name not in theirs:
                        continue
                    try:
                        other = theirs[name][...]
                    except Exception:  # noqa: BLE001
                        counts["hdfparser-cannot-read"] += 1
                        continue
                    counts["hdfparser-agrees" if _same_v3(other, want) else
                           "hdfparser-wrong"] += 1
    return counts


def _same_v3(got, want) -> bool:
    """``same`` for zarr v3 reads: native byte order, vlen strings as bytes."""
    got = np.asarray(got)
    if isinstance(want, np.ndarray) and want.dtype.kind == "O":
        want = np.array([w if isinstance(w, bytes) else str(w).encode()
                         for w in want.ravel()]).reshape(want.shape)
        if got.dtype.kind in "OUT":
            got = np.array([g if isinstance(g, bytes) else str(g).encode()
                            for g in got.ravel()]).reshape(got.shape)
    if isinstance(want, np.ndarray) and got.dtype == want.dtype.newbyteorder("="):
        got = got.astype(want.dtype)
    return same(got, want)


def files():
    out = []
    for rec in inventory():
        if rec.get("format") == "hdf5":
            out.append(CORPUS / rec["file"])
    return out


if __name__ == "__main__":
    from collections import Counter

    args = sys.argv[1:]
    v3 = "--zarr3" in args  # Zarr v3 references read by fsspec + zarr's default pipeline
    todo = [Path(a) for a in args if not a.startswith("--")] or files()
    if "--virtualizarr" in args:  # ChunkviewParser against HDFParser and h5py
        from obspec_utils.registry import ObjectStoreRegistry
        from obstore.store import LocalStore
        from virtualizarr.parsers import HDFParser

        from chunkview.virtualizarr import ChunkviewParser

        out = check_virtualizarr(todo, ObjectStoreRegistry({"file://": LocalStore()}),
                                 ChunkviewParser, HDFParser)
        print({k: (len(v) if isinstance(v, list) else v) for k, v in out.items()})
        for row in out["WRONG"]:
            print("WRONG", *row)
        sys.exit(1 if out["WRONG"] else 0)
    totals = Counter()
    for p in todo:
        rows = check_file(p, zarr_format=3, reader="zarr") if v3 else check_file(p)
        for name, outcome, detail in rows:
            totals[outcome] += 1
            if outcome != "identical":
                print(f"{p.relative_to(CORPUS) if CORPUS in p.parents else p}: {name}: "
                      f"{outcome} {detail}"[:300])
    print(dict(totals))
