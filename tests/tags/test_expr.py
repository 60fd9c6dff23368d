"""Expressions: the language, safety rejects and error offsets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from tags.expr import MAX_LENGTH, EvaluationError, ExpressionError, parse_expression

TAGS: dict[str, Any] = {
    "b1.hm.power_kw": 12.5,
    "b2.hm.power_kw": 7.5,
    "b1.101.valve.open": True,
    "x": 3,
    "zero": 0,
    "name": "abc",
}


def resolve(name: str) -> Any:
    return TAGS[name]


def resolve_glob(pattern: str) -> Iterable[Any]:
    assert pattern == "*.power_kw"
    return [TAGS["b1.hm.power_kw"], TAGS["b2.hm.power_kw"]]


def ev(text: str) -> Any:
    return parse_expression(text).evaluate(resolve, resolve_glob)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("2 ** 10", 1024),
        ("-x + +1", -2),
        ("b1.hm.power_kw * 2", 25.0),
        ("tag('b1.101.valve.open') and x > 2", True),
        ("not tag('b1.101.valve.open')", False),
        ("0 or x", 3),
        ("1 < x <= 3", True),
        ("1 < x < 3", False),
        ("x == 3 != 4", True),
        ("sum(tags('*.power_kw'))", 20.0),
        ("sum(tags('*.power_kw'), x, 1)", 24.0),
        ("min(tags('*.power_kw'))", 7.5),
        ("max(tags('*.power_kw'), 100)", 100),
        ("avg(tags('*.power_kw'))", 10.0),
        ("count(tags('*.power_kw'))", 2),
        ("abs(-x)", 3),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("if_(x > 2, 'big', 'small')", "big"),
        ("if_(zero, 1 / zero, 5)", 5),
        ("name + 'def'", "abcdef"),
        ("name == 'abc'", True),
        ("True + 1", 2),
    ],
)
def test_evaluates(text: str, expected: Any) -> None:
    assert ev(text) == expected


def test_names_and_globs() -> None:
    e = parse_expression(
        "b1.hm.power_kw + tag('b1.101.valve.open') + sum(tags('*.power_kw'), tags('b?.x'))"
    )
    assert e.names == frozenset({"b1.hm.power_kw", "b1.101.valve.open"})
    assert e.globs == ("*.power_kw", "b?.x")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("__import__('os')", "not allowed"),
        ("().__class__", "attribute access"),
        ("x.__class__", "dunder"),
        ("open('x')", "'open' is not allowed"),
        ("[x for x in y]", "list comprehension"),
        ("{x: 1}", "dict"),
        ("x[0]", "subscript"),
        ("lambda: 1", "lambda"),
        ("2**10**10", "exponent"),
        ("2 ** 5000", "exponent"),
        ("(10**100)**1000", "exponent"),
        ("tag('x').real", "attribute access"),
        ("sum(x, start=1)", "keyword"),
        ("tags('*')", "only be used inside"),
        ("tag(x)", "string literal"),
        ("abs(1, 2)", "one argument"),
        ("if_(1, 2)", "three arguments"),
        ("sum", "must be called"),
        ("None", "constant"),
        ("b'x'", "constant"),
        ("1j", "constant"),
        ("x if y else z", "if_"),
        ("f'{x}'", "f-string"),
        ("x := 1", "syntax error"),
        ("1 +", "syntax error"),
        ("", "empty"),
        ("1 in (1, 2)", "not allowed"),
        ("x | 1", "not allowed"),
        ("1" + "+1" * MAX_LENGTH, "longer than"),
    ],
)
def test_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    assert fragment in str(info.value)


def test_error_offsets() -> None:
    with pytest.raises(ExpressionError) as info:
        parse_expression("1 + open('x')")
    assert info.value.offset == 4
    with pytest.raises(ExpressionError) as info:
        parse_expression("b1.hm.power_kw + ().__class__")
    assert info.value.offset == 17
    with pytest.raises(ExpressionError) as info:
        parse_expression("  1 +* 2")
    assert info.value.offset == 5
    assert "column 6" in str(info.value)
    assert issubclass(ExpressionError, ValueError)


@pytest.mark.parametrize(
    "text",
    [
        "1 / zero",
        "x // zero",
        "x % zero",
        "name * 3",
        "name - 1",
        "-name",
        "2 ** (x * 1000)",
        "avg(tags('*.power_kw'), 'a')",
        "min(tags('*.power_kw')) < name",
        "(zero - 8) ** 0.5",
        "round(x, 0.5)",
    ],
)
def test_evaluation_failures_raise_evaluation_error(text: str) -> None:
    with pytest.raises(EvaluationError):
        ev(text)


def test_empty_aggregates() -> None:
    e = parse_expression("count(tags('g')) + sum(tags('g'))")
    assert e.evaluate(resolve, lambda p: []) == 0
    with pytest.raises(EvaluationError):
        parse_expression("avg(tags('g'))").evaluate(resolve, lambda p: [])
    with pytest.raises(EvaluationError):
        parse_expression("max(tags('g'))").evaluate(resolve, lambda p: [])


def test_resolver_exceptions_propagate_unchanged() -> None:
    class Missing(Exception):
        pass

    def missing(name: str) -> Any:
        raise Missing(name)

    with pytest.raises(Missing):
        parse_expression("a + 1").evaluate(missing, resolve_glob)
