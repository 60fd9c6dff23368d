"""The house rules of docs/architecture.md: who may import whom, no look-ups on the runtime.

Every import counts, also those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("i18n", "configbase", "tags", "drivers", "historian", "alarms", "billing", "hmi", "scada")

#: package -> the packages of ours it may import (besides itself)
DOMAIN_ALLOWED: dict[str, set[str]] = {
    "i18n": set(),
    "configbase": set(),
    "tags": {"i18n", "configbase"},
    "historian": {"i18n", "tags", "configbase"},
    "alarms": {"i18n", "tags", "configbase"},
    "drivers": {"i18n", "tags", "configbase", "historian"},  # the simulator backfills history
    "billing": {"i18n", "tags", "configbase", "historian", "alarms"},
}
#: (folder, forbidden module prefixes)
FORBIDDEN: list[tuple[str, tuple[str, ...]]] = [
    ("hmi", ("scada.server", "scada.runtime", "scada.commands", "scada.bench")),
    ("scada/server", ("hmi", "scada.runtime", "scada.commands", "scada.bench")),
    ("scada/services", ("hmi", "scada.server", "scada.runtime", "scada.commands", "scada.bench")),
    ("scada/config", ("hmi", "scada.server", "scada.services", "scada.runtime")),
]


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            # ``from scada import server`` names a module too
            out.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return out


def _ours(module: str) -> str | None:
    top = module.split(".", 1)[0]
    return top if top in OURS else None


@pytest.mark.parametrize("package", sorted(DOMAIN_ALLOWED))
def test_domain_packages_import_only_what_lies_below_them(package: str) -> None:
    allowed = DOMAIN_ALLOWED[package] | {package}
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in _sources(package)
        for line, module in _imports(path)
        if (top := _ours(module)) is not None and top not in allowed
    ]
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(bad)


@pytest.mark.parametrize(("folder", "forbidden"), FORBIDDEN)
def test_upper_floors_keep_their_direction(folder: str, forbidden: tuple[str, ...]) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in _sources(folder)
        for line, module in _imports(path)
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(bad)


def test_nothing_is_looked_up_on_the_runtime_by_name() -> None:
    pattern = re.compile(r"\b(getattr|setattr|hasattr)\((self\.)?(runtime|rt)\b")
    bad = [
        f"{path.relative_to(ROOT)}:{n}: {text.strip()}"
        for folder in ("scada", "hmi", "billing")
        for path in _sources(folder)
        for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(text)
    ]
    assert not bad, "\n".join(bad)


def test_the_rules_find_a_violation(tmp_path: Path) -> None:
    """The checker itself: an import inside a function under TYPE_CHECKING is seen."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "def f():\n"
        "    if TYPE_CHECKING:\n"
        "        from scada.config import SiteConfig\n"
        "    from scada import server\n",
        encoding="utf-8",
    )
    found = [m for _, m in _imports(probe)]
    assert "scada.config" in found and "scada.server" in found
