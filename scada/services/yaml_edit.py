"""Edit a YAML file's text in place: set keys of a mapping, append items to a sequence.

Programs that change the configuration files (the roster import) edit them the way a person
would: only the places that change. Comments, key order, quoting and the flow or block style of
everything else stay as written, so the configuration API's diff shows exactly the change.

:class:`YamlEdit` composes the text once (PyYAML nodes carry their start and end in the text),
records each edit as a span of the original text and its replacement, and :meth:`YamlEdit.text`
applies them from the end. New values are written in flow style on one line (``{id: b1.101,
area_m2: 80.0}``); a new item of a block sequence goes on its own line after the last item, at
its indentation; a new key of a block mapping on its own line after the mapping's last line
(after any comment there). Pure text work: no file access, any thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["YamlEdit", "flow"]


def flow(value: Any) -> str:
    """Return ``value`` as YAML in flow style on one line (strings quoted only where needed)."""
    text = yaml.safe_dump(
        value, default_flow_style=True, width=2**31 - 1, allow_unicode=True, sort_keys=False
    ).strip()
    if text.endswith("\n..."):  # a scalar document's end marker
        text = text[: -len("\n...")].strip()
    return text


def _end(node: Node) -> int:
    """Return where ``node``'s own text ends (a block collection: where its last value ends)."""
    if isinstance(node, MappingNode) and not node.flow_style and node.value:
        return _end(node.value[-1][1])
    if isinstance(node, SequenceNode) and not node.flow_style and node.value:
        return _end(node.value[-1])
    return int(node.end_mark.index)


class YamlEdit:
    """Edits of one YAML text (module docstring); ``text()`` returns the edited text."""

    def __init__(self, text: str, name: str = "<yaml>") -> None:
        self.source = text
        self.name = name
        self.root: Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
        self._edits: list[tuple[int, int, int, str]] = []

    @property
    def changed(self) -> bool:
        return bool(self._edits)

    # ------------------------------------------------------------------ finding nodes

    @staticmethod
    def get(mapping: Node | None, key: str) -> Node | None:
        """Return the value node of ``key`` in ``mapping`` (None: no such key, or no mapping)."""
        if not isinstance(mapping, MappingNode):
            return None
        for k, v in mapping.value:
            if isinstance(k, ScalarNode) and k.value == key:
                return v
        return None

    @staticmethod
    def items(seq: Node | None) -> list[Node]:
        """Return the items of a sequence node ([] for anything else)."""
        return list(seq.value) if isinstance(seq, SequenceNode) else []

    def find(self, seq: Node | None, key: str, value: str) -> MappingNode | None:
        """Return the mapping item of ``seq`` whose ``key`` is the scalar ``value``."""
        for item in self.items(seq):
            v = self.get(item, key)
            if isinstance(item, MappingNode) and isinstance(v, ScalarNode) and v.value == value:
                return item
        return None

    def scalars(self, seq: Node | None) -> Iterator[str]:
        """Yield the scalar items of a sequence."""
        for item in self.items(seq):
            if isinstance(item, ScalarNode):
                yield str(item.value)

    # ------------------------------------------------------------------ edits

    def _edit(self, start: int, end: int, text: str) -> None:
        self._edits.append((start, end, len(self._edits), text))

    def _line_end(self, pos: int) -> int:
        """Return the end of the line holding ``pos`` (before its newline)."""
        nl = self.source.find("\n", pos)
        return len(self.source) if nl < 0 else nl

    def _block_indent(self, node: Node) -> int:
        return int(node.start_mark.column)

    def set_values(self, mapping: MappingNode, values: dict[str, Any]) -> None:
        """Set ``values`` in ``mapping``: an existing key's value replaced, a new key added."""
        missing: dict[str, Any] = {}
        for key, value in values.items():
            node = self.get(mapping, key)
            if node is None:
                missing[key] = value
                continue
            start, end = int(node.start_mark.index), _end(node)
            text = flow(value)
            if start == end and not self.source[start - 1 : start].isspace():
                text = " " + text  # an empty value right after ``key:``
            self._edit(start, end, text)
        if missing:
            self.add_keys(mapping, missing)

    def add_keys(self, mapping: MappingNode, values: dict[str, Any]) -> None:
        """Add keys that ``mapping`` does not have (a list of mappings as a block sequence)."""
        if mapping.flow_style or not mapping.value:
            parts = [f"{k}: {flow(v)}" for k, v in values.items()]
            if mapping.value:
                self._edit(
                    _end(mapping.value[-1][1]), _end(mapping.value[-1][1]), ", " + ", ".join(parts)
                )
            else:
                at = int(mapping.start_mark.index) + 1
                self._edit(at, at, ", ".join(parts))
            return
        indent = " " * self._block_indent(mapping.value[0][0])
        lines = []
        for key, value in values.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                lines.append(f"\n{indent}{key}:")
                lines.extend(f"\n{indent}  - {flow(v)}" for v in value)
            else:
                lines.append(f"\n{indent}{key}: {flow(value)}")
        at = self._line_end(_end(mapping.value[-1][1]))
        self._edit(at, at, "".join(lines))

    def append(self, seq: Node, items: list[Any]) -> None:
        """Append ``items`` to the sequence ``seq`` (or fill an empty ``key:`` with them)."""
        if not items:
            return
        if isinstance(seq, ScalarNode) and seq.tag.endswith(":null"):
            start, end = int(seq.start_mark.index), int(seq.end_mark.index)
            text = flow(list(items))
            if start == end and not self.source[start - 1 : start].isspace():
                text = " " + text
            self._edit(start, end, text)
            return
        if not isinstance(seq, SequenceNode):
            raise ValueError(f"{self.name}: line {seq.start_mark.line + 1}: expected a list")
        if seq.flow_style or not seq.value:
            parts = ", ".join(flow(i) for i in items)
            if seq.value:
                at = _end(seq.value[-1])
                self._edit(at, at, ", " + parts)
            else:
                at = int(seq.start_mark.index) + 1
                self._edit(at, at, parts)
            return
        indent = " " * self._block_indent(seq)
        at = self._line_end(_end(seq.value[-1]))
        self._edit(at, at, "".join(f"\n{indent}- {flow(i)}" for i in items))

    def append_to_key(self, mapping: Node | None, key: str, items: list[Any]) -> None:
        """Append ``items`` to the list under ``key`` of ``mapping`` (adding the key if needed).

        ``mapping`` None is the document's root (an empty document gets the key).
        """
        if not items:
            return
        target = self.root if mapping is None else mapping
        if target is None:  # an empty document
            body = "".join(f"\n  - {flow(i)}" for i in items)
            at = len(self.source)
            lead = "" if not self.source or self.source.endswith("\n") else "\n"
            self._edit(at, at, f"{lead}{key}:{body}\n")
            return
        if not isinstance(target, MappingNode):
            raise ValueError(f"{self.name}: line {target.start_mark.line + 1}: expected a mapping")
        seq = self.get(target, key)
        if seq is None:
            if target is self.root and not target.flow_style:
                at = self._line_end(_end(target))
                body = "".join(f"\n  - {flow(i)}" for i in items)
                self._edit(at, at, f"\n{key}:{body}")
            else:
                self.add_keys(target, {key: list(items)})
            return
        self.append(seq, items)

    def text(self) -> str:
        """Return the text with every edit applied (spans must not overlap)."""
        out = self.source
        last_start = len(out) + 1
        for start, end, _, repl in sorted(self._edits, reverse=True):
            if end > last_start:
                raise ValueError(f"{self.name}: overlapping edits at offset {start}")
            out = out[:start] + repl + out[end:]
            last_start = start
        return out
