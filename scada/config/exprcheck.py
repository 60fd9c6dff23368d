"""Checks of computed-tag expressions: syntax (``tags.expr``), tag names, globs and cycles."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from typing import Any

from scada.config.source import PathT
from tags.config import ComputedTagConfig
from tags.model import TagType

log = logging.getLogger(__name__)


class ExpressionChecks:
    """Mixed into ``Checker``: uses its ``items``, ``report``, ``unsure``, ``partial``, ``unknown_tag``."""

    items: dict[str, list[tuple[int, Any]]]
    partial: bool
    report: Callable[..., None]  # report(path, message, *, key=False, offset=None)

    def unsure(self, tag: str) -> bool:
        raise NotImplementedError

    def unknown_tag(self, name: str, types: dict[str, TagType]) -> str:
        raise NotImplementedError

    def check_expressions(self, types: dict[str, TagType]) -> None:
        try:
            from tags.expr import ExpressionError, parse_expression
        except ImportError:  # pragma: no cover - tags/expr.py is part of the project
            log.warning("tags.expr is missing: computed-tag expressions are not checked")
            return
        names = list(types)
        deps: dict[str, set[str]] = {}
        computed: dict[str, PathT] = {}
        for i, t in self.items["tags"]:
            if isinstance(t, ComputedTagConfig):
                computed[t.name] = ("tags", i)
        for i, t in self.items["tags"]:
            if not isinstance(t, ComputedTagConfig):
                continue
            path = ("tags", i, "expr")
            try:
                expr = parse_expression(t.expr)
            except ExpressionError as exc:
                self.report(path, f"bad expression: {exc}", offset=getattr(exc, "offset", None))
                continue
            mine: set[str] = set()
            for name in sorted(expr.names):
                if name not in types and not self.unsure(name):
                    pos = t.expr.find(name)
                    self.report(
                        path,
                        f"in expression: {self.unknown_tag(name, types)}",
                        offset=pos if pos >= 0 else None,
                    )
                mine.add(name)
            for pattern in expr.globs:
                matched = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
                if not matched and not self.partial:
                    pos = t.expr.find(pattern)
                    self.report(
                        path, f"tags({pattern!r}) matches no tag", offset=pos if pos >= 0 else None
                    )
                mine.update(n for n in matched if n in computed)
            deps[t.name] = {n for n in mine if n in computed}
        self.check_cycles(deps, computed)

    def check_cycles(self, deps: dict[str, set[str]], computed: dict[str, PathT]) -> None:
        state: dict[str, int] = {}  # 1: on the stack, 2: done
        stack: list[str] = []
        reported: set[frozenset[str]] = set()

        def visit(node: str) -> None:
            state[node] = 1
            stack.append(node)
            for nxt in sorted(deps.get(node, ())):
                if state.get(nxt) == 1:
                    cycle = [*stack[stack.index(nxt) :], nxt]
                    members = frozenset(cycle)
                    if members not in reported:
                        reported.add(members)
                        self.report(
                            (*computed[nxt], "expr"),
                            "computed tags depend on each other: " + " -> ".join(cycle),
                        )
                elif nxt not in state:
                    visit(nxt)
            stack.pop()
            state[node] = 2

        for name in deps:
            if name not in state:
                visit(name)
