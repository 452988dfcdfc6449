"""``chunkview bench --plot FILE``: the results of a run as one PNG of bar charts.

One panel per comparison (lower is better everywhere but in the decode panel, which shows
throughput): chunkview's bars in blue, baselines in grey, hardware limits in green; every bar
carries its value, and the panel title the ratio that matters.
"""

from __future__ import annotations

CV = "#1f6feb"
BASE = "#8b949e"
LIMIT = "#2da44e"


def _color(name: str) -> str:
    if name.startswith("chunkview"):
        return CV
    if name.startswith(("inflate alone", "memcpy", "libdeflate")):
        return LIMIT
    return BASE


def _panels(res: dict) -> list:
    """[(title, unit, [(label, value, note)], log_scale)]."""
    cases = res.get("cases", {})
    out = []

    def med(e, scale=1.0):
        return None if not e else e["median"] * scale

    r = cases.get("read")
    if r:
        a = r["t2m_all"]
        names = [("chunkview", "chunkview"), ("chunkview_zarr", "chunkview zarr"),
                 ("hidefix", "hidefix"), ("h5py", "h5py"), ("kerchunk", "kerchunk+fsspec+zarr"),
                 ("inflate_alone", "inflate alone")]
        bars = [(lbl, med(a.get(k)), None) for k, lbl in names if a.get(k)]
        rv = a["ratios"]["chunkview_vs"]
        out.append((f"read all of t2m (265 MB): {rv.get('h5py', 0):.1f}x h5py, "
                    f"{rv.get('kerchunk', 0):.1f}x kerchunk", "s", bars, False))
        h = r["t2m_hyperslab_1pct"]
        bars = [(lbl, med(h.get(k), 1e3), None) for k, lbl in names if h.get(k)]
        rv = h["ratios"]["chunkview_vs"]
        out.append((f"1% hyperslab of t2m: {rv.get('h5py', 0):.1f}x h5py, "
                    f"{rv.get('kerchunk', 0):.1f}x kerchunk", "ms", bars, False))
    t = cases.get("tiny")
    if t:
        o = t["obs_all"]
        names = [("chunkview", "chunkview"), ("chunkview_zarr", "chunkview zarr"),
                 ("hidefix", "hidefix"), ("h5py", "h5py"), ("kerchunk", "kerchunk+fsspec+zarr")]
        bars = [(lbl, o[k]["us_per_chunk"], None) for k, lbl in names if o.get(k)]
        rv = o["ratios_per_chunk"]
        first = next(iter(rv.values())) if rv else {}
        k_ratio = first.get("kerchunk") if isinstance(first, dict) else None
        title = f"all of obs ({t['chunks']:,} tiny chunks), per chunk"
        if k_ratio:
            title += f": {k_ratio:.0f}x kerchunk"
        out.append((title, "us/chunk", bars, True))
    s = cases.get("scan")
    if s:
        b = s["bench_h5"]
        names = [("chunkview", "chunkview"), ("hidefix", "hidefix index"),
                 ("h5py_chunk_iter", "h5py chunk_iter"), ("kerchunk", "kerchunk")]
        bars = [(lbl, med(b.get(k)), None) for k, lbl in names if b.get(k)]
        rv = b["ratios"]
        out.append((f"scan bench.h5 ({s['chunks']:,} chunks): {rv.get('kerchunk', 0):.0f}x "
                    "kerchunk", "s", bars, True))
    d = cases.get("decode")
    if d:
        inf = d["inflate_1_thread"]
        un = d["unshuffle_4byte"]
        bars = [(("chunkview inflate (libdeflate)" if k == "libdeflate" else
                  f"inflate {k.replace('_', ' ')}"), v["gb_per_s"], None)
                for k, v in inf.items() if isinstance(v, dict) and "gb_per_s" in v]
        out.append((f"inflate, one thread (higher is better): {inf['ratio']:.1f}x zlib",
                    "GB/s", bars, False))
        bars = [(("memcpy" if k == "memcpy" else
                  (f"unshuffle {k}" if k == "numcodecs" else f"chunkview unshuffle {k}")),
                 v["gb_per_s"], None) for k, v in un.items()
                if isinstance(v, dict) and "gb_per_s" in v]
        out.append((f"unshuffle, one chunk (higher is better): "
                    f"{un['best_share_of_memcpy']:.0%} of memcpy", "GB/s", bars, False))
    ix = cases.get("index")
    if ix:
        lj = ix["load_json"]
        bars = [("chunkview", med(lj["chunkview"]), None)]
        if lj.get("fsspec"):
            bars.append(("fsspec ReferenceFileSystem", med(lj["fsspec"]), None))
        mem = ix["memory_bytes_per_ref"]
        title = f"load 1M references (JSON): {lj.get('speedup_vs_fsspec') or 0:.1f}x fsspec"
        if mem.get("chunkview") and mem.get("fsspec"):
            title += f"; {mem['chunkview']:.0f} vs {mem['fsspec']:.0f} bytes/ref"
        out.append((title, "s", bars, False))
    rm = cases.get("remote")
    if rm and "t2m_all" in rm:
        for key, what, scale, unit in (("t2m_all", "all of t2m", 1, "s"),
                                       ("t2m_hyperslab_1pct", "1% hyperslab", 1e3, "ms")):
            e = rm[key]
            names = [("chunkview_zarr", "chunkview zarr"), ("chunkview", "chunkview"),
                     ("kerchunk", "kerchunk+fsspec+zarr")]
            bars = [(lbl, med(e[k], scale), f"{e[k]['requests']} req") for k, lbl in names
                    if e.get(k)]
            r2 = e["ratios"]
            out.append((f"HTTP, {rm['latency_s'] * 1e3:.0f} ms/request, {what}: "
                        f"{r2['time_kerchunk_over_chunkview_zarr']:.1f}x faster, "
                        f"{r2['requests_kerchunk_over_chunkview_zarr']:.1f}x fewer requests",
                        unit, bars, False))
    cb = cases.get("combine")
    if cb and cb.get("chunkview"):
        bars = [("chunkview.combine", med(cb["chunkview"]["seconds"]),
                 f"{cb['chunkview']['peak_bytes'] / 1e6:.0f} MB")]
        title = f"combine {cb['files']:,} reference sets ({cb['references']:,} refs)"
        if cb.get("kerchunk"):
            bars.append(("kerchunk MultiZarrToZarr", med(cb["kerchunk"]["seconds"]),
                         f"{cb['kerchunk']['peak_bytes'] / 1e6:.0f} MB"))
            title += (f": {cb['speedup_vs_kerchunk']:.1f}x faster, "
                      f"{1 / max(cb['memory_ratio_vs_kerchunk'], 1e-9):.1f}x less memory")
        out.append((title, "s", bars, False))
    return out


def plot(results: dict, path: str) -> str:
    """Write the bar charts of ``results`` (what ``bench.run`` returns) to ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from chunkview.errors import missing_extra

        raise missing_extra("matplotlib", "plot") from None
    panels = _panels(results)
    if not panels:
        raise ValueError("nothing to plot: no case in these results has figures")
    ncol = 2 if len(panels) > 1 else 1
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(7.2 * ncol, 2.5 * nrow), squeeze=False)
    for ax, (title, unit, bars, log) in zip(axes.flat, panels):
        labels = [b[0] for b in bars][::-1]
        values = [b[1] for b in bars][::-1]
        notes = [b[2] for b in bars][::-1]
        ax.barh(labels, values, color=[_color(lbl) for lbl in labels])
        if log:
            ax.set_xscale("log")
        top = max(values)
        for y, (v, n) in enumerate(zip(values, notes)):
            txt = (f"{v:.3g} {unit}") + (f"  ({n})" if n else "")
            ax.text(v, y, " " + txt, va="center", fontsize=8)
        ax.set_xlim(right=top * (8 if log else 1.45))
        ax.set_title(title, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        ax.set_xlabel(unit, fontsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    m = results.get("machine", {})
    fig.suptitle(f"chunkview bench: {m.get('cpu', '?')}, {m.get('cpu_count', '?')} CPUs, "
                 f"Python {m.get('python', '?')}, inflate "
                 f"{m.get('build', {}).get('inflate', '?')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["plot"]
