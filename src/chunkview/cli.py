"""The ``chunkview`` command line."""

from __future__ import annotations

import argparse
import json
import sys


def cmd_info(args) -> int:
    import chunkview
    from chunkview.references import INLINE, WHOLE

    refs = chunkview.load(args.refs)
    urls = refs.urls
    keys = list(refs)
    ids, offs, lens = refs.lookup_many(keys)
    ranged = (ids >= 0) & (lens != WHOLE)
    print(f"{args.refs}: {len(refs):,} references, {len(urls):,} URLs, "
          f"{int((ids == INLINE).sum()):,} inline, "
          f"{int(lens[ranged].sum()):,} bytes referenced")
    for key in sorted(k for k in keys if k.endswith(".zarray")):
        meta = json.loads(refs[key])
        name = key[: -len("/.zarray")] or "/"
        codecs = [c.get("id") for c in (meta.get("filters") or [])]
        if meta.get("compressor"):
            codecs.append(meta["compressor"].get("id"))
        print(f"  {name}: shape {tuple(meta['shape'])} {meta['dtype']} chunks "
              f"{tuple(meta['chunks'])} codecs {codecs or '-'}")
    for i, u in enumerate(urls[: args.max_urls]):
        print(f"  url[{i}] {u}")
    if len(urls) > args.max_urls:
        print(f"  ... {len(urls) - args.max_urls} more URLs")
    return 0


def cmd_bench(args) -> int:
    from chunkview import bench

    bench.run(args.cases, quick=args.quick, repeat=args.repeat, data=args.data,
              json_path=args.json, threads=args.threads)
    return 0


def cmd_convert(args) -> int:
    import chunkview

    refs = chunkview.load(args.input)
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
    b.add_argument("--data", help="dataset cache folder")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="summarise a reference set")
    i.add_argument("refs", help="references: JSON, parquet or native (.cvref)")
    i.add_argument("--max-urls", type=int, default=5)
    i.set_defaults(func=cmd_info)

    c = sub.add_parser("convert", help="convert a reference set between JSON, parquet, native")
    c.add_argument("input")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--format", choices=["json", "parquet", "native"])
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
