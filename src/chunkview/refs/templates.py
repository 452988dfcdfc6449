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
# Limits on what a reference set may expand to (docs/hardening.md); each is checked before the
# memory is allocated.  Module attributes, so a deployment can change them.
MAX_GEN = 100_000_000  # references one reference set's gen entries may make
MAX_GEN_BYTES = 512 << 20  # bytes of key and URL text they may make, in all
MAX_TEXT = 1 << 20  # bytes of one rendered template or URL
MAX_EXPR = 4096  # characters of one {{ }} expression
GEN_BLOCK = 1 << 18  # references expanded at a time (bounds the peak memory of expansion)
_INT_LIMIT = 1 << 62  # |values| of gen arithmetic (offsets, lengths, dimension values)


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
    total = [len(text)]

    def sub(m):
        out = _sub(m)
        total[0] += len(out) - (m.end() - m.start())
        if total[0] > MAX_TEXT:
            raise ReferenceFormatError(f"template expansion of {text[:80]!r} exceeds "
                                       f"{MAX_TEXT} bytes (limit: templates.MAX_TEXT)", source=source)
        return out

    def _sub(m):
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


def _max_len(v) -> int:
    return len(v) if isinstance(v, str) else max((len(x) for x in v.tolist()), default=0)


def _bound(v) -> int:
    """The largest |value| of an int or int64 array (as a Python int)."""
    if isinstance(v, np.ndarray):
        return max(abs(int(v.min())), abs(int(v.max()))) if v.size else 0
    return abs(int(v))


def _is_text(v) -> bool:
    return isinstance(v, str) or (isinstance(v, np.ndarray) and v.dtype == object)


def _eval(node, env):
    if isinstance(node, ast.Expression):
        return _eval(node.body, env)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, str)) and not isinstance(
        node.value, bool
    ):
        if isinstance(node.value, int) and abs(node.value) >= _INT_LIMIT:
            raise ReferenceFormatError(f"integer {node.value} in a gen expression is out of "
                                       "range (|n| < 2**62)")
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ReferenceFormatError(f"unknown name {node.id!r} in gen expression")
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval(node.operand, env)
        if _is_text(v):
            raise ReferenceFormatError("arithmetic on text in a gen expression")
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, env), _eval(node.right, env)
        if _is_text(left) or _is_text(right):
            if isinstance(node.op, ast.Add) and _is_text(left) and _is_text(right):
                if _max_len(left) + _max_len(right) > MAX_TEXT:
                    raise ReferenceFormatError(f"text in a gen expression exceeds {MAX_TEXT} "
                                               "bytes")
                return left + right
            raise ReferenceFormatError("arithmetic on text in a gen expression")
        if type(node.op) not in _BINOPS and not isinstance(node.op, ast.Div):
            raise UnsupportedError(f"operator {type(node.op).__name__} is not allowed in gen")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and \
                np.any(np.asarray(right) == 0):
            raise ReferenceFormatError("division by zero in a gen expression")
        # int64 must not wrap: the result's bound is checked before numpy computes it
        a, b = _bound(left), _bound(right)
        worst = a * b if isinstance(node.op, ast.Mult) else a + b
        if worst >= _INT_LIMIT:
            raise ReferenceFormatError(f"gen arithmetic overflows ({ast.unparse(node)} may "
                                       "reach 2**62)")
        if isinstance(node.op, ast.Div):
            # jinja's / is true division; references need integers, so it must divide exactly
            q, r = np.divmod(left, right)
            if np.any(r != 0):
                raise ReferenceFormatError("'/' in a gen expression does not divide exactly")
            return q
        return _BINOPS[type(node.op)](left, right)
    raise UnsupportedError(
        f"gen expressions may only use integers, names and + - * / // %; got {ast.dump(node)[:200]}"
    )


def _compile(text: str):
    """Split ``text`` into literal parts and parsed ``{{ }}`` expressions."""
    parts = []
    pos = 0
    for m in _VAR.finditer(text):
        parts.append(text[pos:m.start()])
        expr = m.group(1)
        if len(expr) > MAX_EXPR:
            raise ReferenceFormatError(f"gen expression of {len(expr)} characters (limit "
                                       f"{MAX_EXPR}: templates.MAX_EXPR)")
        try:
            parts.append(ast.parse(expr, mode="eval"))
        except SyntaxError:
            raise UnsupportedError(f"cannot parse gen expression {expr[:200]!r}") from None
        except (RecursionError, MemoryError, ValueError) as e:
            raise ReferenceFormatError(f"gen expression {expr[:80]!r}... nests too deeply "
                                       f"({type(e).__name__})") from None
        pos = m.end()
    parts.append(text[pos:])
    return parts


def _evaluate(parts, env):
    try:
        return [p if isinstance(p, str) else _eval(p, env) for p in parts]
    except RecursionError:
        raise ReferenceFormatError("gen expression nests too deeply") from None


def _text_bytes(values, n: int) -> int:
    """Bytes of the n texts that joining ``values`` makes (computed, not made)."""
    total = 0
    for v in values:
        if isinstance(v, str):
            total += len(v.encode("utf-8", "surrogatepass")) * n
        elif _is_text(v):
            total += sum(len(x) for x in np.broadcast_to(v, (n,)).tolist())
        else:
            arr = np.broadcast_to(np.asarray(v), (n,))
            mag = np.abs(arr.astype(np.int64))
            digits = np.ones(n, dtype=np.int64)
            bound = 10
            while bound <= _INT_LIMIT and np.any(mag >= bound):
                digits += mag >= bound
                bound *= 10
            total += int(digits.sum()) + int((arr < 0).sum())
    return total


def _render_many(parts, env: dict, n: int, *, as_int: bool = False, budget=None):
    values = _evaluate(parts, env)
    if as_int:
        if len(values) == 3 and values[0] == "" and values[2] == "" and not isinstance(
            values[1], str
        ) and not _is_text(values[1]):
            return np.broadcast_to(np.asarray(values[1], dtype=np.int64), (n,))
        if _text_bytes(values, n) > 32 * n:
            raise ReferenceFormatError("gen offset or length is not an integer")
        text_vals = _join(values, n)
        try:
            out = [int(t) for t in text_vals]
        except ValueError:
            raise ReferenceFormatError("gen value is not an integer") from None
        if out and (max(out) >= _INT_LIMIT or min(out) <= -_INT_LIMIT):
            raise ReferenceFormatError("gen value out of range (|n| < 2**62)")
        return np.array(out, dtype=np.int64)
    if budget is not None:
        budget.spend(_text_bytes(values, n))
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


class _Budget:
    """The key and URL bytes the gen entries of one reference set may still make."""

    def __init__(self, source):
        self.left = MAX_GEN_BYTES
        self.source = source

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise ReferenceFormatError(f"gen entries expand to more than {MAX_GEN_BYTES} bytes "
                                       "of keys and URLs (limit: templates.MAX_GEN_BYTES)")


def _dimension(name, spec, source):
    """The values of one gen dimension: a range (ints) or a list of ints or of strings."""
    def bad(why):
        return ReferenceFormatError(f"bad gen dimension {name!r}: {why}", source=source)

    if isinstance(spec, list):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
            if spec and max(abs(v) for v in spec) >= _INT_LIMIT:
                raise bad("a value is out of range (|n| < 2**62)")
            return np.asarray(spec, dtype=np.int64)
        if all(isinstance(v, str) for v in spec):
            if any(len(v) > MAX_TEXT for v in spec):
                raise bad(f"a value is longer than {MAX_TEXT} bytes")
            return list(spec)
        raise bad("values must be all integers or all strings")
    if isinstance(spec, dict) and "stop" in spec:
        nums = {k: spec.get(k, d) for k, d in (("start", 0), ("stop", None), ("step", 1))}
        for k, v in nums.items():
            if not isinstance(v, int) or isinstance(v, bool):
                raise bad(f"{k!r} must be an integer, not {v!r:.80}")
            if abs(v) >= _INT_LIMIT:
                raise bad(f"{k!r} is out of range (|n| < 2**62)")
        if nums["step"] == 0:
            raise bad("'step' is 0")
        return range(nums["start"], nums["stop"], nums["step"])
    raise bad(f"{spec!r:.200}")


def expand_gen(index, gens, templates: dict, *, source=None) -> None:
    """Expand spec v1 ``gen`` entries into ``index``, a block of references at a time; the
    count (MAX_GEN), text (MAX_GEN_BYTES) and value limits are checked before allocating."""
    if not gens:
        return
    if not isinstance(gens, list):
        raise ReferenceFormatError("'gen' must be a list", source=source)
    budget = _Budget(source)
    made = 0
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
                raise ReferenceFormatError(f"gen entry {str(g.get('key'))[:200]!r}: {field!r} "
                                           f"must be a template string, not {v!r:.200}",
                                           source=source)
        if not isinstance(g["dimensions"], dict):
            raise ReferenceFormatError(f"gen entry {g['key'][:200]!r}: 'dimensions' must be an "
                                       "object", source=source)
        names = list(g["dimensions"])
        axes = [_dimension(name, spec, source) for name, spec in g["dimensions"].items()]
        # counted before anything is made: a range dimension costs nothing until it is built
        shape = tuple(len(a) for a in axes)
        total = 1
        for m in shape:
            total *= m
        made += total
        if made > MAX_GEN:
            raise ReferenceFormatError(f"gen entries would make more than {MAX_GEN} references "
                                       "(limit: templates.MAX_GEN)", source=source)
        if total == 0:
            continue
        try:
            parts = {f: _compile(str(g[f])) for f in ("key", "url", "offset", "length") if f in g}
            for lo in range(0, total, GEN_BLOCK):
                n = min(GEN_BLOCK, total - lo)
                flat = np.arange(lo, lo + n, dtype=np.int64)
                coords = np.unravel_index(flat, shape) if shape else ()
                env = dict(templates)
                for name, axis, c in zip(names, axes, coords):
                    if isinstance(axis, range):
                        env[name] = axis.start + c * axis.step
                    elif isinstance(axis, np.ndarray):
                        env[name] = axis[c]
                    else:  # strings: one text per reference
                        env[name] = np.asarray(axis, dtype=object)[c]
                if lo == 0 and total > n:  # refused early when the first block says so
                    first = sum(_text_bytes(_evaluate(parts[f], env), n) for f in ("key", "url"))
                    if first / n * total > budget.left:
                        raise ReferenceFormatError(
                            f"gen entries expand to about {int(first / n * total)} bytes of "
                            f"keys and URLs, more than {MAX_GEN_BYTES} (limit: "
                            "templates.MAX_GEN_BYTES)")
                _add_block(index, parts, env, n, budget)
        except ReferenceFormatError as e:
            raise ReferenceFormatError(f"gen entry {g.get('key')[:200]!r}: {e}",
                                       source=source) from None
    if made:
        index.shrink()


def _add_block(index, parts, env, n, budget) -> None:
    keys = _render_many(parts["key"], env, n, budget=budget)
    urls = _render_many(parts["url"], env, n, budget=budget)
    if "offset" in parts:
        offs = _render_many(parts["offset"], env, n, as_int=True)
        lens = _render_many(parts["length"], env, n, as_int=True)
        if np.any(offs < 0) or np.any(lens < 0):
            raise ReferenceFormatError("negative offset or length in gen")
    else:
        offs = np.zeros(n, dtype=np.uint64)
        lens = np.full(n, np.iinfo(np.uint64).max, dtype=np.uint64)
    uniq, inv = np.unique(np.asarray(urls, dtype=object), return_inverse=True)
    index.add_many(keys, inv.astype(np.int64), np.asarray(offs).astype(np.uint64),
                   np.asarray(lens).astype(np.uint64), [str(u) for u in uniq], shrink=False)
