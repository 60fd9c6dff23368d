"""Safe expressions over tags, for computed tags.

The text is parsed with Python's ``ast`` module and accepted only if every node is on a
whitelist; it is then compiled into plain closures (``eval`` is never used).

Language:

* numbers, strings, ``True``/``False``; arithmetic ``+ - * / // % **``; unary ``-``/``+``;
  comparisons, also chained (``0 <= x < 10``); ``and``/``or``/``not``;
* tag references: ``tag('b1.101.valve.open')``, or a bare dotted name when every part is an
  identifier (``b1.hm.power_kw`` is the tag of that name, not attribute access);
* functions: ``sum``/``min``/``max``/``avg``/``count`` over ``tags('glob')`` and/or plain
  arguments, ``abs(x)``, ``round(x[, ndigits])``, ``if_(cond, a, b)`` (lazy: only the chosen
  branch is evaluated).

Rejected: attribute access on values, subscripts, lambdas, comprehensions, any other call,
keyword arguments, names starting with ``__``, texts over ``MAX_LENGTH`` characters and
exponents above ``MAX_EXPONENT``. Arithmetic works on numbers only (``+`` also joins
two strings), so no expression can build a huge value.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FUNCTIONS",
    "MAX_EXPONENT",
    "MAX_LENGTH",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "parse_expression",
]

MAX_LENGTH = 2000
MAX_EXPONENT = 1000
_MAX_INT_BITS = 16384
FUNCTIONS = ("sum", "min", "max", "avg", "count", "abs", "round", "if_", "tag", "tags")
_AGGREGATES = ("sum", "min", "max", "avg", "count")

ResolveName = Callable[[str], Any]
ResolveGlob = Callable[[str], Iterable[Any]]
_Env = tuple[ResolveName, ResolveGlob]
_Fn = Callable[[_Env], Any]


class ExpressionError(ValueError):
    """An expression that cannot be accepted; ``offset`` is the 0-based column (or None)."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at column {offset + 1})")
        self.message = message
        self.offset = offset


class EvaluationError(ArithmeticError):
    """Evaluating a valid expression failed (division by zero, overflow, wrong types...)."""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float)  # bool is an int


def _num(v: Any) -> Any:
    if not _is_number(v):
        raise TypeError(f"expected a number, got {type(v).__name__} {v!r}")
    return v


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    return _num(a) + _num(b)


def _pow(a: Any, b: Any) -> Any:
    _num(a)
    if abs(_num(b)) > MAX_EXPONENT:
        raise OverflowError(f"exponent {b!r} exceeds {MAX_EXPONENT}")
    if isinstance(a, int) and isinstance(b, int) and b > 0 and b * a.bit_length() > _MAX_INT_BITS:
        raise OverflowError(f"result of ** exceeds {_MAX_INT_BITS} bits")
    result = a**b
    if isinstance(result, complex):
        raise ValueError("** of a negative number to a fractional power")
    return result


def _arith(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def fn(a: Any, b: Any) -> Any:
        return op(_num(a), _num(b))

    return fn


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: _add,
    ast.Sub: _arith(operator.sub),
    ast.Mult: _arith(operator.mul),
    ast.Div: _arith(operator.truediv),
    ast.FloorDiv: _arith(operator.floordiv),
    ast.Mod: _arith(operator.mod),
    ast.Pow: _pow,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _avg(values: list[Any]) -> float:
    if not values:
        raise ZeroDivisionError("avg() of no values")
    return math.fsum(values) / len(values)


def _min(values: list[Any]) -> Any:
    if not values:
        raise ValueError("min() of no values")
    return min(values)


def _max(values: list[Any]) -> Any:
    if not values:
        raise ValueError("max() of no values")
    return max(values)


def _sum(values: list[Any]) -> Any:
    return math.fsum(values) if any(isinstance(v, float) for v in values) else sum(values)


_AGG_FNS: dict[str, Callable[[list[Any]], Any]] = {
    "sum": _sum,
    "min": _min,
    "max": _max,
    "avg": _avg,
    "count": len,
}


@dataclass(frozen=True, slots=True, eq=False)
class Expression:
    """A parsed, validated expression; evaluate it as often as needed.

    ``names``: tags referenced directly; ``globs``: patterns given to ``tags()``.
    """

    text: str
    names: frozenset[str]
    globs: tuple[str, ...]
    _fn: _Fn

    def evaluate(self, resolve_name: ResolveName, resolve_glob: ResolveGlob) -> Any:
        """Return the value of the expression.

        ``resolve_name(name)`` returns a tag's value; ``resolve_glob(pattern)`` the values
        of the tags matching it. Exceptions they raise propagate unchanged; failures of
        the expression itself raise ``EvaluationError``.
        """
        try:
            return self._fn((resolve_name, resolve_glob))
        except (ArithmeticError, TypeError, ValueError) as exc:
            if isinstance(exc, EvaluationError):
                raise
            raise EvaluationError(f"{self.text!r}: {exc}") from exc


class _Compiler:
    def __init__(self, text: str) -> None:
        self.text = text
        self.names: set[str] = set()
        self.globs: list[str] = []
        starts = [0]
        for line in text.splitlines(keepends=True):
            starts.append(starts[-1] + len(line))
        self._line_starts = starts

    def offset(self, node: ast.AST) -> int | None:
        lineno = getattr(node, "lineno", None)
        col = getattr(node, "col_offset", None)
        if lineno is None or col is None:
            return None
        # col_offset counts UTF-8 bytes
        line_start = self._line_starts[lineno - 1]
        line = self.text[line_start:]
        return line_start + len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))

    def fail(self, node: ast.AST, message: str) -> ExpressionError:
        return ExpressionError(message, self.offset(node))

    def compile(self, node: ast.AST) -> _Fn:
        method: Callable[[ast.AST], _Fn] | None = getattr(self, f"_c_{type(node).__name__}", None)
        if method is None:
            raise self.fail(node, f"{_describe(node)} is not allowed in an expression")
        return method(node)

    def _c_Constant(self, node: ast.Constant) -> _Fn:
        value = node.value
        if isinstance(value, int | float | str):
            return lambda env: value
        raise self.fail(
            node, f"constant {value!r} is not allowed (numbers, strings, True, False only)"
        )

    def _tag_name(self, node: ast.AST, name: str) -> _Fn:
        if not name:
            raise self.fail(node, "empty tag name")
        if any(part.startswith("__") for part in name.split(".")):
            raise self.fail(node, f"name {name!r} is not allowed (no dunder names)")
        self.names.add(name)
        return lambda env: env[0](name)

    def _c_Name(self, node: ast.Name) -> _Fn:
        if node.id in FUNCTIONS:
            raise self.fail(node, f"function {node.id}() must be called")
        return self._tag_name(node, node.id)

    def _c_Attribute(self, node: ast.Attribute) -> _Fn:
        parts: list[str] = []
        cur: ast.AST = node
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if not isinstance(cur, ast.Name):
            raise self.fail(node, f"attribute access .{node.attr} is not allowed")
        parts.append(cur.id)
        return self._tag_name(node, ".".join(reversed(parts)))

    def _c_BinOp(self, node: ast.BinOp) -> _Fn:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")
        left, right = self.compile(node.left), self.compile(node.right)
        if isinstance(node.op, ast.Pow) and _is_constant(node.right):
            # reject 2**10**10 now rather than at every evaluation (the limits in _pow
            # keep this cheap)
            try:
                exponent = right((_no_tags, _no_globs))
                if _is_constant(node.left):
                    _pow(left((_no_tags, _no_globs)), exponent)
                else:
                    _pow(1, exponent)
            except (ArithmeticError, TypeError, ValueError) as exc:
                raise self.fail(node.right, f"bad exponent: {exc}") from None
        return lambda env: op(left(env), right(env))

    def _c_UnaryOp(self, node: ast.UnaryOp) -> _Fn:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.USub):
            return lambda env: -_num(operand(env))
        if isinstance(node.op, ast.UAdd):
            return lambda env: +_num(operand(env))
        if isinstance(node.op, ast.Not):
            return lambda env: not operand(env)
        raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")

    def _c_BoolOp(self, node: ast.BoolOp) -> _Fn:
        parts = [self.compile(v) for v in node.values]
        if isinstance(node.op, ast.And):

            def and_(env: _Env) -> Any:
                result: Any = True
                for p in parts:
                    result = p(env)
                    if not result:
                        return result
                return result

            return and_

        def or_(env: _Env) -> Any:
            result: Any = False
            for p in parts:
                result = p(env)
                if result:
                    return result
            return result

        return or_

    def _c_Compare(self, node: ast.Compare) -> _Fn:
        ops = []
        for op in node.ops:
            fn = _CMPOPS.get(type(op))
            if fn is None:
                raise self.fail(node, f"comparison {type(op).__name__} is not allowed")
            ops.append(fn)
        first = self.compile(node.left)
        rest = [self.compile(c) for c in node.comparators]
        pairs = list(zip(ops, rest, strict=True))

        def compare(env: _Env) -> bool:
            left = first(env)
            for fn, right_fn in pairs:
                right = right_fn(env)
                if not fn(left, right):
                    return False
                left = right
            return True

        return compare

    def _string_arg(self, node: ast.Call, fname: str) -> str:
        if (
            len(node.args) != 1
            or not isinstance(node.args[0], ast.Constant)
            or not isinstance(node.args[0].value, str)
        ):
            raise self.fail(node, f"{fname}() takes one string literal")
        return node.args[0].value

    def _c_Call(self, node: ast.Call) -> _Fn:
        if not isinstance(node.func, ast.Name):
            raise self.fail(
                node, "only calls of sum, min, max, avg, count, abs, round, if_, tag are allowed"
            )
        fname = node.func.id
        if fname not in FUNCTIONS:
            raise self.fail(
                node, f"function {fname!r} is not allowed (allowed: {', '.join(FUNCTIONS)})"
            )
        if node.keywords:
            raise self.fail(node, f"{fname}() takes no keyword arguments")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.fail(arg, "starred arguments are not allowed")
        if fname == "tag":
            return self._tag_name(node, self._string_arg(node, "tag"))
        if fname == "tags":
            raise self.fail(node, "tags() may only be used inside sum, min, max, avg or count")
        if fname in _AGGREGATES:
            return self._aggregate(node, fname)
        args = [self.compile(a) for a in node.args]
        if fname == "abs":
            if len(args) != 1:
                raise self.fail(node, "abs() takes one argument")
            (x,) = args
            return lambda env: abs(_num(x(env)))
        if fname == "round":
            if len(args) not in (1, 2):
                raise self.fail(node, "round() takes one or two arguments")
            if len(args) == 1:
                (x,) = args
                return lambda env: round(_num(x(env)))
            x, nd = args

            def round_(env: _Env) -> Any:
                digits = _num(nd(env))
                if not isinstance(digits, int) or abs(digits) > 100:
                    raise ValueError(
                        f"round() digits must be an integer within +-100, got {digits!r}"
                    )
                return round(_num(x(env)), digits)

            return round_
        # if_
        if len(args) != 3:
            raise self.fail(
                node, "if_() takes three arguments: condition, value if true, value if false"
            )
        cond, a, b = args
        return lambda env: a(env) if cond(env) else b(env)

    def _aggregate(self, node: ast.Call, fname: str) -> _Fn:
        if not node.args:
            raise self.fail(node, f"{fname}() needs at least one argument")
        parts: list[tuple[bool, Any]] = []
        for a in node.args:
            if isinstance(a, ast.Call) and isinstance(a.func, ast.Name) and a.func.id == "tags":
                if a.keywords:
                    raise self.fail(a, "tags() takes no keyword arguments")
                pattern = self._string_arg(a, "tags")
                if not pattern:
                    raise self.fail(a, "tags() needs a non-empty pattern")
                if pattern not in self.globs:
                    self.globs.append(pattern)
                parts.append((True, pattern))
            else:
                parts.append((False, self.compile(a)))
        agg = _AGG_FNS[fname]

        def aggregate(env: _Env) -> Any:
            values: list[Any] = []
            for is_glob, p in parts:
                if is_glob:
                    values.extend(env[1](p))
                else:
                    values.append(p(env))
            if fname != "count":
                for v in values:
                    _num(v)
            return agg(values)

        return aggregate


def _is_constant(node: ast.AST) -> bool:
    return not any(isinstance(n, ast.Name | ast.Attribute | ast.Call) for n in ast.walk(node))


def _no_tags(name: str) -> Any:
    raise AssertionError(name)


def _no_globs(pattern: str) -> Iterable[Any]:
    raise AssertionError(pattern)


def _describe(node: ast.AST) -> str:
    kinds = {
        "Subscript": "subscript",
        "Lambda": "lambda",
        "ListComp": "list comprehension",
        "SetComp": "set comprehension",
        "DictComp": "dict comprehension",
        "GeneratorExp": "generator expression",
        "List": "list",
        "Tuple": "tuple",
        "Dict": "dict",
        "Set": "set",
        "IfExp": "conditional expression (use if_(c, a, b))",
        "NamedExpr": "assignment expression",
        "JoinedStr": "f-string",
        "Await": "await",
        "Yield": "yield",
        "Starred": "starred expression",
        "Slice": "slice",
    }
    return kinds.get(type(node).__name__, type(node).__name__)


def _syntax_offset(text: str, exc: SyntaxError) -> int | None:
    if exc.lineno is None or exc.offset is None:
        return None
    lines = text.splitlines(keepends=True)
    start = sum(len(line) for line in lines[: exc.lineno - 1])
    return max(0, min(len(text) - 1, start + exc.offset - 1))


def parse_expression(text: str) -> Expression:
    """Parse and validate ``text``; raise ``ExpressionError`` (with ``.offset``) if rejected."""
    if not isinstance(text, str):
        raise ExpressionError(f"expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise ExpressionError("empty expression")
    if text[0].isspace():
        # ast.parse rejects leading blanks as an indent; blank them out with parentheses
        # so offsets stay those of the original text
        indent = len(text) - len(text.lstrip())
        source = "(" + " " * (indent - 1) + text[indent:] + "\n)" if indent else text
    else:
        source = text
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}", _syntax_offset(source, exc)) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ExpressionError(f"expression too complex: {exc}") from None
    compiler = _Compiler(source)
    try:
        fn = compiler.compile(tree.body)
    except RecursionError:
        raise ExpressionError("expression nested too deeply") from None
    return Expression(text, frozenset(compiler.names), tuple(compiler.globs), fn)
