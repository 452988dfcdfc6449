"""All of t2m read by chunkview installs that differ only in how they got their inflate.

    python benchmarks/inflate_linkage.py \
        --env runtime=/venvs/fresh/bin/python \
        --env linked=/venvs/linked/bin/python \
        --env zlib=/venvs/fresh/bin/python:none \
        --rounds 5 --json benchmarks/results/inflate-linkage.json

Each ``--env NAME=PYTHON[:LIBRARY]`` is a Python with chunkview installed (``LIBRARY`` sets
``CHUNKVIEW_LIBDEFLATE_LIBRARY`` for it: ``none`` makes a run-time build use zlib).  The
environments take turns, one read each per turn, ``--rounds`` turns after a warm-up, so drift
on a shared machine falls on all of them alike; medians and ratios to the first environment are
printed.  Reads the benchmark file ``chunkview bench`` generates (its cache folder, or
``--data``).  Issue 18: a fresh install (libdeflate loaded at run time) against a build made with
libdeflate-dev installed (linked), and against the zlib fallback users got before.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import json, sys, time
import chunkview
from chunkview.bench import run as bench
from pathlib import Path
data = Path(sys.argv[1])
h5, ours, _ = bench._bench_refs(data)
g = chunkview.open(str(ours))
t = g["t2m"]
a = t[...]  # warm-up
print(json.dumps({"build": chunkview.build_info(), "checksum": float(a.sum(dtype="f8"))}),
      flush=True)
for line in sys.stdin:
    t0 = time.perf_counter()
    a = t[...]
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt}), flush=True)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", action="append", required=True, help="NAME=PYTHON[:LIBRARY]")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", default=None, help="the bench's dataset folder")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.data is None:
        from chunkview.bench import default_data_dir

        args.data = str(default_data_dir())
    envs = []
    for spec in args.env:
        name, _, rest = spec.partition("=")
        python, _, lib = rest.partition(":")
        env = dict(os.environ)
        env.pop("CHUNKVIEW_LIBDEFLATE_LIBRARY", None)
        if lib:
            env["CHUNKVIEW_LIBDEFLATE_LIBRARY"] = lib
        p = subprocess.Popen([python, "-c", WORKER, args.data], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env, cwd="/")
        head = json.loads(p.stdout.readline())
        envs.append({"name": name, "python": python, "library_env": lib or None, "proc": p,
                     "build": head["build"], "checksum": head["checksum"], "seconds": []})
    sums = {e["checksum"] for e in envs}
    if len(sums) != 1:
        raise SystemExit(f"the environments read different values: {sums}")
    for _ in range(args.rounds):
        for e in envs:
            e["proc"].stdin.write("go\n")
            e["proc"].stdin.flush()
            e["seconds"].append(json.loads(e["proc"].stdout.readline())["seconds"])
    for e in envs:
        e["proc"].stdin.close()
        e["proc"].wait()
        del e["proc"]
        e["median"] = statistics.median(e["seconds"])
    base = envs[0]["median"]
    print(f"all of t2m (265 MB decoded), {args.rounds} rounds, medians, "
          f"{os.cpu_count()} CPUs")
    for e in envs:
        b = e["build"]
        print(f"  {e['name']:10} {e['median'] * 1e3:8.1f} ms  {e['median'] / base:5.2f}x of "
              f"{envs[0]['name']}   inflate {b['inflate']} {b['inflate_version']} "
              f"({b['inflate_linkage']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": args.rounds, "cpu_count": os.cpu_count(), "envs": envs}, f,
                      indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
