"""Table names: parsing ``schema.table`` as written in config (quotes, dots), and quoting parts back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableName:
    """A schema-qualified table name, kept exactly as written (case and spaces preserved)."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, text: str) -> TableName:
        return cls._from_parts(_split_qualified(text))

    @classmethod
    def from_template(cls, template: str, values: dict[str, str]) -> TableName:
        """The table an ``object`` template names: the template is split into its parts first, then
        each part's placeholders are replaced by the names exactly as they are, so a substituted
        name holding a dot, a quote or spaces (``Odd.Name``, ``q"uote``) is never re-split or unquoted.
        Raises KeyError for an unknown placeholder, ValueError for a malformed one."""
        return cls._from_parts([part.format(**values) for part in _split_qualified(template)])

    @classmethod
    def _from_parts(cls, parts: list[str]) -> TableName:
        if len(parts) == 1:
            return cls(None, parts[0])
        return cls(".".join(parts[:-1]), parts[-1])

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def quote_part(text: str) -> str:
    """One part of a table name in stream syntax, double-quoted with inner quotes doubled, so that
    ``TableName.parse`` gives it back exactly."""
    return '"' + text.replace('"', '""') + '"'


def _split_qualified(text: str) -> list[str]:
    """Split ``schema.table`` honouring double quotes: ``"my schema"."Odd.Name"``."""
    parts, current, quoted, i = [], "", False, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            if quoted and i + 1 < len(text) and text[i + 1] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return [p.strip() if not p.startswith(" ") else p for p in parts]
