"""Templates and ``gen`` of kerchunk spec v1, expanded without evaluating any code.

``{{name}}`` in a URL is replaced by the template's text.  In ``gen`` entries, ``{{ expr }}``
may hold integer arithmetic over the dimension variables and templates (``+ - * // / %``,
parentheses, unary minus), parsed with :mod:`ast` and evaluated by a whitelist walker over numpy
arrays, so a million generated references cost a few vectorised operations.
"""

from __future__ import annotations

import ast
import operator
import re

import numpy as np

from chunkview.errors import ReferenceFormatError, UnsupportedError

_VAR = re.compile(r"\{\{\s*(.*?)\s*\}\}")
MAX_GEN = 100_000_000  # refuse generators that would expand beyond this many references


def check_templates(templates, overrides=None, *, source=None) -> dict:
    if not isinstance(templates, dict):
        raise ReferenceFormatError("'templates' must be an object", source=source)
    out = dict(templates)
    if overrides:
        out.update(overrides)
    for k, v in out.items():
        if not isinstance(v, str):
            raise ReferenceFormatError(f"template {k!r} must be a string, not {type(v).__name__}",
                                       source=source)
    # a template may itself use other templates (no loops: one level of substitution); one
    # naming parameters that are not templates ("{{c}}") is called as {{f(c='text')}}
    done = {}
    for k, v in out.items():
        names = {m.group(1) for m in _VAR.finditer(v)}
        done[k] = v if names - set(out) else render(v, out, source=source, _depth=1)
    return done


def _call(expr: str, templates: dict):
    """``(template name, {parameter: text})`` for ``f(c='text', n=1)``, else None."""
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in templates and not node.args):
        return None
    params = {}
    for kw in node.keywords:
        if kw.arg is None or not isinstance(kw.value, ast.Constant) or \
                not isinstance(kw.value.value, (str, int)) or isinstance(kw.value.value, bool):
            return None
        params[kw.arg] = str(kw.value.value)
    return node.func.id, params


def render(text: str, templates: dict, *, source=None, _depth=0) -> str:
    """Replace ``{{name}}`` by the template's text, and ``{{f(c='text')}}`` by template ``f``
    with its parameter ``{{c}}`` replaced by ``text`` (literal arguments only: nothing is
    evaluated)."""
    if "{{" not in text:
        return text

    def sub(m):
        name = m.group(1)
        if name not in templates:
            call = _call(name, templates) if "(" in name else None
            if call is None:
                raise ReferenceFormatError(f"unknown template {name!r} in {text!r} (templates "
                                           "are names, or calls with literal arguments)",
                                           source=source)
            func, params = call
            return render(templates[func], {**templates, **params}, source=source, _depth=1)
        value = templates[name]
        if "{{" in value and _depth > 0:
            raise ReferenceFormatError(f"template {name!r} refers to another template",
                                       source=source)
        return value if _depth > 0 else render(value, templates, source=source, _depth=1)

    return _VAR.sub(sub, text)


def render_index_urls(index, templates: dict, *, source=None) -> None:
    """Render every templated URL of the index once (URLs are interned, so this is cheap)."""
    urls = index.urls
    if any("{{" in u for u in urls):
        index.replace_urls([render(u, templates, source=source) for u in urls])


def reverse_table(templates: dict) -> list[tuple[str, str]]:
    """(name, value) pairs, longest value first, for shortening URLs on output."""
    return sorted(((k, v) for k, v in templates.items() if v), key=lambda kv: -len(kv[1]))


def apply_reverse(url: str, table) -> str:
    for name, value in table:
        if url.startswith(value):
            return "{{%s}}" % name + url[len(value):]
    return url


# ----------------------------------------------------------------------------- gen

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


def _eval(node, env):
    if isinstance(node, ast.Expression):
        return _eval(node.body, env)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, str)) and not isinstance(
        node.value, bool
    ):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ReferenceFormatError(f"unknown name {node.id!r} in gen expression")
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval(node.operand, env)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, env), _eval(node.right, env)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and \
                np.any(np.asarray(right) == 0):
            raise ReferenceFormatError("division by zero")
        if isinstance(node.op, ast.Div):
            # jinja's / is true division; references need integers, so it must divide exactly
            q, r = np.divmod(left, right)
            if np.any(r != 0):
                raise ReferenceFormatError("'/' in a gen expression does not divide exactly")
            return q
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise UnsupportedError(f"operator {type(node.op).__name__} is not allowed in gen")
        if isinstance(left, str) or isinstance(right, str):
            if isinstance(node.op, ast.Add) and isinstance(left, str) and isinstance(right, str):
                return left + right
            raise ReferenceFormatError("arithmetic on text in a gen expression")
        return op(left, right)
    raise UnsupportedError(
        f"gen expressions may only use integers, names and + - * / // %; got {ast.dump(node)}"
    )


def _compile(text: str):
    """Split ``text`` into literal parts and parsed ``{{ }}`` expressions."""
    parts = []
    pos = 0
    for m in _VAR.finditer(text):
        parts.append(text[pos:m.start()])
        try:
            parts.append(ast.parse(m.group(1), mode="eval"))
        except SyntaxError:
            raise UnsupportedError(f"cannot parse gen expression {m.group(1)!r}") from None
        pos = m.end()
    parts.append(text[pos:])
    return parts


def _render_many(text: str, env: dict, n: int, *, as_int: bool = False):
    parts = _compile(str(text))
    values = [p if isinstance(p, str) else _eval(p, env) for p in parts]
    if as_int:
        if len(values) == 3 and values[0] == "" and values[2] == "" and not isinstance(
            values[1], str
        ):
            out = np.broadcast_to(np.asarray(values[1], dtype=np.int64), (n,))
            return out
        text_vals = _join(values, n)
        try:
            return np.array([int(t) for t in text_vals], dtype=np.int64)
        except ValueError:
            raise ReferenceFormatError(f"gen value {text!r} is not an integer") from None
    return _join(values, n)


def _join(values, n):
    cols = []
    for v in values:
        if isinstance(v, str):
            cols.append([v] * n if v else None)
        else:
            arr = np.broadcast_to(np.asarray(v), (n,))
            cols.append([str(x) for x in arr.tolist()])
    cols = [c for c in cols if c is not None]
    if not cols:
        return [""] * n
    return ["".join(t) for t in zip(*cols)]


def expand_gen(index, gens, templates: dict, *, source=None) -> None:
    """Expand spec v1 ``gen`` entries into ``index``."""
    if not gens:
        return
    if not isinstance(gens, list):
        raise ReferenceFormatError("'gen' must be a list", source=source)
    for g in gens:
        if not isinstance(g, dict) or "key" not in g or "url" not in g or "dimensions" not in g:
            raise ReferenceFormatError("each gen entry needs 'key', 'url' and 'dimensions'",
                                       source=source)
        if ("offset" in g) ^ ("length" in g):
            raise ReferenceFormatError("gen entries need both 'offset' and 'length' or neither",
                                       source=source)
        for field in ("key", "url", "offset", "length"):
            v = g.get(field, "")
            if not isinstance(v, str) and not (field in ("offset", "length") and
                                               isinstance(v, int) and not isinstance(v, bool)):
                raise ReferenceFormatError(f"gen entry {g.get('key')!r}: {field!r} must be a "
                                           f"template string, not {v!r}", source=source)
        if not isinstance(g["dimensions"], dict):
            raise ReferenceFormatError(f"gen entry {g['key']!r}: 'dimensions' must be an object",
                                       source=source)
        names, axes = [], []
        for name, spec in g["dimensions"].items():
            if isinstance(spec, list):
                vals = spec
            elif isinstance(spec, dict) and "stop" in spec:
                try:
                    vals = range(int(spec.get("start", 0)), int(spec["stop"]),
                                 int(spec.get("step", 1)))
                except (TypeError, ValueError):
                    raise ReferenceFormatError(f"bad gen dimension {name!r}",
                                               source=source) from None
            else:
                raise ReferenceFormatError(f"bad gen dimension {name!r}: {spec!r}", source=source)
            names.append(name)
            axes.append(vals)
        # counted before anything is made: a range dimension costs nothing until it is built
        total = 1
        for a in axes:
            total *= len(a)
        if total > MAX_GEN:
            raise ReferenceFormatError(f"gen entry would make {total} references (limit {MAX_GEN})",
                                       source=source)
        if total == 0:
            continue
        axes = [np.arange(a.start, a.stop, a.step, dtype=np.int64) if isinstance(a, range)
                else np.asarray(list(a)) for a in axes]
        grids = np.meshgrid(*axes, indexing="ij") if axes else []
        env = dict(templates)
        for name, grid in zip(names, grids):
            env[name] = grid.ravel()
        try:
            keys = _render_many(g["key"], env, total)
            urls = _render_many(g["url"], env, total)
            if "offset" in g:
                offs = _render_many(g["offset"], env, total, as_int=True)
                lens = _render_many(g["length"], env, total, as_int=True)
                if np.any(offs < 0) or np.any(lens < 0):
                    raise ReferenceFormatError("negative offset or length in gen")
            else:
                offs = np.zeros(total, dtype=np.uint64)
                lens = np.full(total, np.iinfo(np.uint64).max, dtype=np.uint64)
        except ReferenceFormatError as e:
            raise ReferenceFormatError(f"gen entry {g.get('key')!r}: {e}", source=source) from None
        uniq, inv = np.unique(np.asarray(urls, dtype=object), return_inverse=True)
        index.add_many(keys, inv.astype(np.int64), np.asarray(offs).astype(np.uint64),
                       np.asarray(lens).astype(np.uint64), [str(u) for u in uniq])
