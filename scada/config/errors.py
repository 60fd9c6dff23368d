"""Located configuration errors: every problem names its file, line, column and field path."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a site configuration.

    ``line`` and ``col`` are 1-based; ``path`` is the field path in the merged configuration,
    like ``devices[1].template`` or ``templates.valve.points.open.kind`` (``(root)`` for the
    document itself, ``(yaml)`` for a syntax error). ``str(issue)`` is
    ``file:line:col: path: message``.
    """

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"

    def to_json(self) -> dict[str, object]:
        """Return the ``scada check --json`` form of this issue."""
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "path": self.path,
            "message": self.message,
        }


class ConfigError(ValueError):
    """A site configuration is invalid; ``issues`` lists every problem found, in file order."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = sorted(
            issues, key=lambda i: (i.file, i.line, i.col, i.path)
        )
        super().__init__("\n".join(str(i) for i in self.issues) or "invalid configuration")


def did_you_mean(word: object, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or an empty string."""
    if not isinstance(word, str):
        return ""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""
