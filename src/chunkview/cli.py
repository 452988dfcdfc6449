"""The ``chunkview`` command line."""

from __future__ import annotations

import argparse
import json
import sys

from chunkview.keys import ERROR_KEY, NATIVE_SUFFIX


def _array_stats(refs, chunks=None):
    """Per array path: (reference count, bytes referenced) of its chunk keys; ``chunks``, a
    dict, gets the chunk keys' last parts per array path."""
    from chunkview._index import INLINE, WHOLE

    keys = [k for k in refs if not k.rsplit("/", 1)[-1].startswith(".")]
    ids, offs, lens = refs.lookup_many(keys)
    stats = {}
    for k, i, n in zip(keys, ids.tolist(), lens.tolist()):
        name, _, last = k.rpartition("/")
        c, b = stats.get(name, (0, 0))
        size = n if i >= 0 and n != WHOLE else (n if i == INLINE else 0)
        stats[name] = (c + 1, b + size)
        if chunks is not None:
            chunks.setdefault(name, []).append(last)
    return stats


def _stored_regions(arr, names, budget):
    """Selections covering the stored chunks of ``arr`` (chunk key last parts ``names``), each
    of about ``budget`` bytes at most where a chunk allows: rows of chunks along the first
    dimension, or single chunks when a row is larger.  Never-written regions are not visited
    (an array of 2**50 fill values costs nothing)."""
    coords = set()
    for n in names:
        try:
            coords.add(tuple(int(x) for x in n.split(".")))
        except ValueError:
            continue
    coords = sorted(c for c in coords if len(c) == arr.ndim)
    chunks = arr.chunks
    row = arr.dtype.itemsize * chunks[0]
    for s in arr.shape[1:]:
        row *= s
    if row > budget:  # one chunk at a time
        for c in coords:
            yield tuple(slice(i * n, (i + 1) * n) for i, n in zip(c, chunks))
        return
    per = max(1, budget // row)  # chunk rows per read
    rows = sorted({c[0] for c in coords})
    i = 0
    while i < len(rows):
        j = i
        while j + 1 < len(rows) and rows[j + 1] - rows[i] < per:
            j += 1
        yield slice(rows[i] * chunks[0], (rows[j] + 1) * chunks[0])
        i = j + 1


def cmd_info(args) -> int:
    import chunkview
    from chunkview._index import INLINE, WHOLE

    refs = chunkview.load(args.refs)
    urls = refs.urls
    keys = list(refs)
    ids, offs, lens = refs.lookup_many(keys)
    ranged = (ids >= 0) & (lens != WHOLE)
    print(f"{args.refs}: {len(refs):,} references, {len(urls):,} URLs, "
          f"{int((ids == INLINE).sum()):,} inline, "
          f"{int(lens[ranged].sum()):,} bytes referenced")
    stats = _array_stats(refs)
    for key in sorted(k for k in keys if k.endswith((".zarray", ERROR_KEY))):
        name = key.rsplit("/", 1)[0] if "/" in key else "/"
        meta = json.loads(refs[key])
        if key.endswith(ERROR_KEY):
            print(f"  {name}: unsupported: {meta.get('error')}")
            continue
        codecs = [c.get("id") for c in (meta.get("filters") or [])]
        if meta.get("compressor"):
            codecs.append(meta["compressor"].get("id"))
        n, nbytes = stats.get(name if name != "/" else "", (0, 0))
        dtype = meta["dtype"] if isinstance(meta["dtype"], str) else "compound"
        print(f"  {name}: shape {tuple(meta['shape'])} {dtype} chunks "
              f"{tuple(meta['chunks'])} codecs {codecs or '-'}: {n:,} chunks, {nbytes:,} bytes")
    for i, u in enumerate(urls[: args.max_urls]):
        print(f"  url[{i}] {u}")
    if len(urls) > args.max_urls:
        print(f"  ... {len(urls) - args.max_urls} more URLs")
    return 0


def _progress(total, desc):
    """A progress callback: tqdm when installed, else a line on stderr now and then."""
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr)
        return bar.update, bar.close
    except ImportError:
        state = {"n": 0}

        def tick(k=1):
            state["n"] += k
            if state["n"] == total or state["n"] % max(1, total // 20) == 0:
                print(f"{desc}: {state['n']}/{total}", file=sys.stderr)

        return tick, lambda: None


def _outputs(inputs, folder, fmt):
    """One output file per input in ``folder``, named after the input; distinct inputs with
    the same name are refused rather than overwritten."""
    import os

    ext = {"json": ".json", "parquet": ".parquet", "native": NATIVE_SUFFIX}[fmt or "json"]
    outs = [os.path.join(folder, os.path.basename(str(i).rstrip("/")) + ext) for i in inputs]
    seen = {}
    for i, o in zip(inputs, outs):
        if o in seen:
            raise ValueError(f"{seen[o]} and {i} would both be written to {o}")
        seen[o] = i
    return outs


def cmd_scan(args) -> int:
    import os
    import time

    import chunkview

    opts = json.loads(args.storage_options) if args.storage_options else None
    many = len(args.inputs) > 1
    scan_opts = dict(storage_options=opts, inline_threshold=args.inline_threshold,
                     chunk_bytes=args.chunk_bytes, zarr_format=args.zarr_format)
    t0 = time.perf_counter()
    if many:
        os.makedirs(args.output, exist_ok=True)
        outs = _outputs(args.inputs, args.output, args.format)
    else:
        outs = [args.output]
    unsupported = 0
    n = 0

    def report(src, count, bad):
        nonlocal n, unsupported
        n += count
        for path, why in bad:
            unsupported += 1
            print(f"{src}: {path}: unsupported: {why}", file=sys.stderr)

    if args.jobs and args.jobs > 1 and many:
        from chunkview.scan import scan_to_files

        tick, done = _progress(len(args.inputs), "scan")
        try:
            for src, count, bad in scan_to_files(args.inputs, outs, jobs=args.jobs,
                                                 format=args.format, progress=tick,
                                                 **scan_opts):
                report(src, count, bad)
        finally:
            done()
    else:
        tick, done = _progress(len(args.inputs), "scan") if many else (None, lambda: None)
        try:
            results = chunkview.scan(args.inputs if many else args.inputs[0],
                                     threads=args.threads, progress=tick, **scan_opts)
        finally:
            done()
        results = results if many else [results]
        for src, refs, out in zip(args.inputs, results, outs):
            refs.save(out, format=args.format)
            report(src, len(refs), sorted(refs.unsupported.items()))
    print(f"scanned {len(outs)} file(s) into {n:,} references in "
          f"{time.perf_counter() - t0:.2f} s -> {args.output}"
          + (f" ({unsupported} unsupported datasets)" if unsupported else ""))
    return 0


def cmd_combine(args) -> int:
    import time

    import chunkview

    opts = json.loads(args.storage_options) if args.storage_options else None
    t0 = time.perf_counter()
    if args.merge:
        refs = chunkview.merge(args.inputs, check_data=not args.no_check_data,
                               storage_options=opts)
    else:
        refs = chunkview.combine(args.inputs, args.concat_dim, order_by=args.order_by,
                                 regex=args.regex, identical=args.identical or (),
                                 check_data=not args.no_check_data, storage_options=opts)
    refs.save(args.output, format=args.format)
    print(f"combined {len(args.inputs)} input(s) into {len(refs):,} references "
          f"({len(refs.urls)} URLs) in {time.perf_counter() - t0:.2f} s -> {args.output}")
    return 0


def cmd_verify(args) -> int:
    import time

    import chunkview
    from chunkview.errors import ChunkviewError, UnsupportedError, reason

    g = chunkview.open(args.refs, threads=args.threads)
    failed = unsupported = ok = 0
    budget = 256 << 20

    def walk(group):
        for name in group:
            try:
                obj = group[name]
            except UnsupportedError as e:
                yield name if not group.path else f"{group.path}/{name}", e
                continue
            if isinstance(obj, chunkview.Group):
                yield from walk(obj)
            else:
                yield obj.path, obj

    names: dict = {}
    stats = _array_stats(g._refs, names)
    for path, arr in walk(g):
        if isinstance(arr, Exception):
            unsupported += 1
            print(f"  {path}: UNSUPPORTED {arr}")
            continue
        t = time.perf_counter()
        n, nbytes = stats.get(path, (0, 0))
        try:
            if arr.ndim == 0 or arr.nbytes <= budget:
                arr[...]
            else:  # only where chunks are stored: fill values need no checking
                for region in _stored_regions(arr, names.get(path, ()), budget):
                    arr[region]
        except (ChunkviewError, OSError, ValueError) as e:
            failed += 1
            print(f"  {path}: FAILED {reason(e)}")
            continue
        ok += 1
        print(f"  {path}: ok, {n:,} chunks, {nbytes:,} bytes, shape {arr.shape} {arr.dtype} "
              f"in {time.perf_counter() - t:.2f} s")
    print(f"{args.refs}: {ok} arrays ok, {failed} failed, {unsupported} unsupported")
    return 1 if failed else 0


def cmd_bench(args) -> int:
    from chunkview.bench import run as bench

    bench.run(args.cases, quick=args.quick, repeat=args.repeat, data=args.data,
              json_path=args.json, threads=args.threads, plot_path=args.plot)
    return 0


def cmd_convert(args) -> int:
    import chunkview

    refs = chunkview.load(args.input)
    if args.zarr_format == 3:
        from chunkview.refs.zarr3 import to_zarr3

        refs = to_zarr3(refs)
        for path, why in sorted(refs.unsupported.items()):
            print(f"{args.input}: {path}: unsupported: {why}", file=sys.stderr)
    elif args.zarr_format == 2 and "zarr.json" in refs:
        raise ValueError(f"{args.input} has Zarr v3 metadata: converting it to zarr v2 is not "
                         "supported")
    refs.save(args.output, format=args.format)
    print(f"wrote {len(refs):,} references to {args.output}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="chunkview", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("bench", help="benchmark chunkview against its baselines")
    b.add_argument("cases", nargs="*", help="cases to run (default: all)")
    b.add_argument("--quick", action="store_true", help="smaller datasets, fewer runs")
    b.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    b.add_argument("--threads", type=int, default=None,
                   help="decode threads (default: all cores)")
    b.add_argument("--json", help="write every figure to this JSON file")
    b.add_argument("--plot", help="write a PNG bar chart of the results to this file "
                   "(needs matplotlib: pip install 'chunkview[plot]')")
    b.add_argument("--data", help="dataset cache folder")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="summarise a reference set")
    i.add_argument("refs", help="references: JSON, parquet or native (.cvref)")
    i.add_argument("--max-urls", type=int, default=5)
    i.set_defaults(func=cmd_info)

    s = sub.add_parser("scan", help="scan HDF5 / NetCDF4 / NetCDF3 files into references")
    s.add_argument("inputs", nargs="+", help="files: local paths or fsspec URLs")
    s.add_argument("-o", "--output", required=True,
                   help="output file (.json, .parquet, .cvref); a folder for several inputs")
    s.add_argument("--format", choices=["json", "parquet", "native"])
    s.add_argument("--inline-threshold", type=int, default=0,
                   help="copy chunks of at most this many bytes into the references")
    s.add_argument("--chunk-bytes", type=int, default=4 << 20,
                   help="virtual chunk size for contiguous data (default 4 MiB)")
    s.add_argument("--storage-options", help="fsspec options for the inputs, as JSON")
    s.add_argument("--threads", type=int, default=None,
                   help="files scanned at once in threads (default: all cores)")
    s.add_argument("--zarr-format", type=int, choices=[2, 3], default=2,
                   help="write zarr v2 (default) or Zarr v3 metadata")
    s.add_argument("-j", "--jobs", type=int, default=None,
                   help="scan in this many processes, each writing its own outputs")
    s.set_defaults(func=cmd_scan)

    m = sub.add_parser("combine", help="combine reference sets (or files, scanned) into one "
                       "virtual dataset")
    m.add_argument("inputs", nargs="+", help="reference sets or HDF5 / NetCDF files")
    m.add_argument("-o", "--output", required=True, help="output (.json, .parquet, .cvref)")
    m.add_argument("--format", choices=["json", "parquet", "native"])
    m.add_argument("--concat-dim", default="time",
                   help="dimension to concatenate along, existing or new (default: time)")
    m.add_argument("--order-by", choices=["auto", "coord", "regex", "given"], default="auto",
                   help="order of the inputs: coordinate values, --regex on the names, or as "
                   "given (default: regex if given, else the coordinate if there is one)")
    m.add_argument("--regex", help="order by this regex's first group on the input names")
    m.add_argument("--identical", nargs="*",
                   help="with a new dimension: variables that must agree and are not "
                   "concatenated")
    m.add_argument("--merge", action="store_true",
                   help="merge variables from the inputs instead of concatenating")
    m.add_argument("--no-check-data", action="store_true",
                   help="do not compare the values of variables that should agree")
    m.add_argument("--storage-options", help="fsspec options for the inputs, as JSON")
    m.set_defaults(func=cmd_combine)

    v = sub.add_parser("verify", help="read and decode every chunk, checking checksums")
    v.add_argument("refs", help="references: JSON, parquet or native (.cvref)")
    v.add_argument("--threads", type=int, default=None)
    v.set_defaults(func=cmd_verify)

    c = sub.add_parser("convert", help="convert a reference set between JSON, parquet, native "
                       "and from zarr v2 to Zarr v3 metadata")
    c.add_argument("input")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--format", choices=["json", "parquet", "native"])
    c.add_argument("--zarr-format", type=int, choices=[2, 3], default=None,
                   help="3: rewrite zarr v2 metadata as Zarr v3 (default: keep it)")
    c.set_defaults(func=cmd_convert)

    args = p.parse_args(argv)
    if getattr(args, "repeat", 1) < 1:
        p.error("--repeat must be at least 1")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as e:
        print(f"chunkview: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
