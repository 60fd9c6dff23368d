"""Read YAML files (with ``include:``) into plain data plus a map of where every value came from.

PyYAML's composer gives each node a start mark; we build the Python data ourselves from the
nodes so that every path (``("devices", 1, "template")``) keeps its file, line and column.
Included files are merged here: list sections are concatenated, mapping sections merged by
key (a key defined twice is reported at the second place), single sections must appear once.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from scada.config.errors import ConfigIssue

log = logging.getLogger(__name__)

PathT = tuple[str | int, ...]

#: Sections whose items are concatenated across included files.
LIST_SECTIONS = frozenset(
    {
        "channels",
        "devices",
        "tags",
        "buildings",
        "substations",
        "alarms",
        "tariffs",
        "accounts",
        "users",
    }
)
#: Sections whose keys are merged across included files.
MAP_SECTIONS = frozenset({"templates"})

ROOT = "(root)"


def format_path(path: Iterable[str | int]) -> str:
    """Return ``devices[1].points.open`` for ``("devices", 1, "points", "open")``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or ROOT


@dataclass(frozen=True, slots=True)
class Mark:
    """A place in a file; ``line`` and ``col`` are 1-based."""

    file: str
    line: int
    col: int
    #: For one-line scalars: the quote character (``'`` or ``"``), ``""`` when plain, None otherwise.
    style: str | None = None


@dataclass(slots=True)
class SourceMap:
    """Where each path of the merged configuration was written.

    ``values`` locates the value at a path, ``keys`` the mapping key that introduced it,
    ``aliases`` sends a generated item (``("devices", 57)``) to the block that generated it.
    """

    root: Mark
    values: dict[PathT, Mark] = field(default_factory=dict)
    keys: dict[PathT, Mark] = field(default_factory=dict)
    aliases: dict[PathT, PathT] = field(default_factory=dict)

    def resolve(self, path: PathT) -> PathT:
        """Return ``path`` with a generated item's prefix replaced by its generator's path."""
        if self.aliases:
            for n in range(len(path), 0, -1):
                target = self.aliases.get(path[:n])
                if target is not None:
                    return target + path[n:]
        return path

    def mark(self, path: PathT, *, key: bool = False) -> Mark:
        """Return the mark of ``path`` (its key when ``key``), else of its nearest located parent."""
        if key and path in self.keys:
            return self.keys[path]
        for n in range(len(path), -1, -1):
            m = self.values.get(path[:n])
            if m is not None:
                return m
        return self.root

    def issue(
        self, path: PathT, message: str, *, key: bool = False, offset: int | None = None
    ) -> ConfigIssue:
        """Return a located issue for ``path``.

        ``offset`` is a 0-based column inside a one-line scalar (an expression), added to the
        scalar's own column when the scalar is exactly at ``path``.
        """
        shown = self.resolve(path)
        m = self.mark(shown, key=key)
        col = m.col
        if offset is not None and m.style is not None and shown in self.values:
            col += offset + (1 if m.style else 0)
        return ConfigIssue(m.file, m.line, col, format_path(shown), message)

    def add(self, other: SourceMap, rekey: dict[str, int], skip: set[PathT]) -> None:
        """Merge ``other`` in, shifting list items of the sections in ``rekey`` by their offsets.

        Paths starting with a prefix in ``skip`` (one or two elements long) are left out.
        """
        for src, dst in ((other.values, self.values), (other.keys, self.keys)):
            for path, m in src.items():
                if not path or path[:1] in skip or path[:2] in skip:
                    continue
                shift = rekey.get(path[0]) if isinstance(path[0], str) else None
                if shift is not None and len(path) > 1 and isinstance(path[1], int):
                    path = (path[0], path[1] + shift, *path[2:])
                dst.setdefault(path, m)


#: libyaml's composer (about 20 times faster than PyYAML's), when PyYAML was built with it.
_FAST_LOADER: type[Any] | None = getattr(yaml, "CSafeLoader", None)
#: A scalar's ``style`` as this module records it: quotes kept, plain ``""``, block styles None.
#: PyYAML's composer gives a plain scalar style None, libyaml's gives it ``""``.
_STYLES: dict[str | None, str | None] = {"'": "'", '"': '"', None: "", "": ""}


def _mark(file: str, node: yaml.Node) -> Mark:
    start = node.start_mark
    style: str | None = None
    if isinstance(node, yaml.ScalarNode) and start.line == node.end_mark.line:
        style = _STYLES.get(node.style)
    return Mark(file, start.line + 1, start.column + 1, style)


class _Builder:
    """Turn a composed YAML node tree into plain data, filling a SourceMap."""

    def __init__(
        self, file: str, loader: yaml.SafeLoader, smap: SourceMap, issues: list[ConfigIssue]
    ):
        self.file = file
        self.loader = loader
        self.smap = smap
        self.issues = issues

    def build(self, node: yaml.Node, path: PathT, depth: int = 0) -> Any:
        if depth > 64:
            raise yaml.YAMLError("nesting too deep (recursive alias?)")
        self.smap.values[path] = _mark(self.file, node)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolve `<<: *anchor` merge keys
            out: dict[Any, Any] = {}
            key_lines: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                km = _mark(self.file, key_node)
                try:
                    hash(key)
                except TypeError:
                    self.issues.append(
                        ConfigIssue(
                            km.file,
                            km.line,
                            km.col,
                            format_path(path),
                            "a key must be a plain value",
                        )
                    )
                    continue
                if key in out:
                    self.issues.append(
                        ConfigIssue(
                            km.file,
                            km.line,
                            km.col,
                            format_path((*path, key)),
                            f"duplicate key {key!r} (first at line {key_lines[key]})",
                        )
                    )
                    continue
                key_lines[key] = km.line
                self.smap.keys[(*path, key)] = km
                out[key] = self.build(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def parse_yaml(text: str, file: str, issues: list[ConfigIssue]) -> tuple[Any, SourceMap] | None:
    """Parse one YAML document; on a syntax error append one issue and return None.

    libyaml parses when PyYAML has it; a document it rejects is parsed again by PyYAML's
    own parser, whose messages are the ones reported (and which has the last word on
    what is valid).
    """
    if _FAST_LOADER is not None:
        found: list[ConfigIssue] = []
        try:
            parsed = _compose(_FAST_LOADER(text), file, found)
        except yaml.YAMLError:
            pass
        else:
            issues.extend(found)
            return parsed
    try:
        return _compose(yaml.SafeLoader(text), file, issues)
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark or exc.context_mark
        line, col = (m.line + 1, m.column + 1) if m is not None else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "YAML syntax error"
        issues.append(ConfigIssue(file, line, col, "(yaml)", f"YAML syntax error: {problem}"))
        return None
    except yaml.YAMLError as exc:
        issues.append(ConfigIssue(file, 1, 1, "(yaml)", f"YAML error: {exc}"))
        return None


def _compose(loader: Any, file: str, issues: list[ConfigIssue]) -> tuple[Any, SourceMap]:
    """Return the data and SourceMap of the one document ``loader`` reads; raise ``YAMLError``."""
    smap = SourceMap(Mark(file, 1, 1))
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, smap
        return _Builder(file, loader, smap, issues).build(node, ()), smap
    finally:
        loader.dispose()


@dataclass(slots=True)
class Document:
    """The merged data of a file and everything it includes, with its SourceMap."""

    data: dict[str, Any]
    smap: SourceMap
    files: list[str]


class _IncludeReader:
    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []
        self.files: list[str] = []

    def read_file(
        self, path: str, stack: tuple[tuple[str, str], ...]
    ) -> tuple[dict[str, Any], SourceMap] | None:
        """Read ``path``; ``stack`` holds (real path, shown path) of it and the files including it."""
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        return self.read_text(text, path, os.path.dirname(path) or ".", stack)

    def read_text(
        self, text: str, name: str, base_dir: str, stack: tuple[tuple[str, str], ...]
    ) -> tuple[dict[str, Any], SourceMap] | None:
        self.files.append(name)
        parsed = parse_yaml(text, name, self.issues)
        if parsed is None:
            return None
        data, smap = parsed
        if not isinstance(data, dict):
            self.issues.append(
                smap.issue(
                    (), "a site configuration must be a mapping of sections (site:, channels:, ...)"
                )
            )
            return None
        includes = data.get("include")
        if includes is None:
            return data, smap
        if isinstance(includes, str):
            includes = [includes]
            smap.values[("include", 0)] = smap.mark(("include",))
        if not isinstance(includes, list):
            self.issues.append(smap.issue(("include",), "expected a list of file paths"))
            return data, smap
        for i, entry in enumerate(includes):
            where = ("include", i)
            if not isinstance(entry, str) or not entry:
                self.issues.append(
                    smap.issue(where, "expected a file path (relative to this file)")
                )
                continue
            for target in self._expand(entry, base_dir, smap, where):
                real = os.path.realpath(target)
                reals = [r for r, _ in stack]
                if real in reals:
                    shown = [s for _, s in stack[reals.index(real) :]]
                    chain = " -> ".join([*shown, target])
                    self.issues.append(smap.issue(where, f"include cycle: {chain}"))
                    continue
                sub = self.read_file(target, (*stack, (real, target)))
                if sub is not None:
                    self._merge(data, smap, *sub)
        return data, smap

    def _expand(self, entry: str, base_dir: str, smap: SourceMap, where: PathT) -> list[str]:
        target = os.path.normpath(os.path.join(base_dir, entry))
        if glob.has_magic(entry):
            found = sorted(glob.glob(target))
            if not found:
                self.issues.append(
                    smap.issue(where, f"no file matches {entry!r} (looked for {target})")
                )
            return found
        if not os.path.isfile(target):
            self.issues.append(smap.issue(where, f"included file not found: {target}"))
            return []
        return [target]

    def _merge(
        self, data: dict[str, Any], smap: SourceMap, sub: dict[str, Any], sub_map: SourceMap
    ) -> None:
        """Merge an included file's sections into ``data`` (the including file's data)."""
        rekey: dict[str, int] = {}
        skip: set[PathT] = {("include",)}
        for section, value in sub.items():
            if section == "include":
                continue
            if section not in data:
                data[section] = value
                continue
            mine = data[section]
            if section in LIST_SECTIONS:
                if not isinstance(value, list):
                    self.issues.append(sub_map.issue((section,), "expected a list"))
                    skip.add((section,))
                elif not isinstance(mine, list):
                    skip.add((section,))  # validation reports the including file's bad value
                else:
                    rekey[section] = len(mine)
                    mine.extend(value)
            elif section in MAP_SECTIONS and isinstance(mine, dict) and isinstance(value, dict):
                for key, item in value.items():
                    if key in mine:
                        first = smap.mark((section, key), key=True)
                        self.issues.append(
                            sub_map.issue(
                                (section, key),
                                f"duplicate {section[:-1]} {key!r} (first defined at {first.file}:{first.line})",
                                key=True,
                            )
                        )
                        skip.add((section, key))  # keep the first definition's locations
                    else:
                        mine[key] = item
            else:
                first = smap.mark((section,), key=True)
                self.issues.append(
                    sub_map.issue(
                        (section,),
                        f"section {section!r} is already defined at {first.file}:{first.line}",
                        key=True,
                    )
                )
                skip.add((section,))
        smap.add(sub_map, rekey, skip)


def read_document(
    path: str | os.PathLike[str] | None = None,
    *,
    text: str | None = None,
    name: str = "<string>",
    base_dir: str = ".",
) -> tuple[Document | None, list[ConfigIssue]]:
    """Read a configuration file (or ``text``) with its includes; return the document and issues.

    The document is None when the main file cannot be parsed at all.
    """
    reader = _IncludeReader()
    if text is None:
        assert path is not None
        file = os.fspath(path)
        result = reader.read_file(file, ((os.path.realpath(file), file),))
    else:
        result = reader.read_text(text, name, base_dir, ())
    if result is None:
        return None, reader.issues
    data, smap = result
    return Document(data, smap, reader.files), reader.issues
