"""Write and read the protobuf text format subset that Triton ``config.pbtxt`` files use.

A config is a plain dict: scalars (str, int, float, bool), :class:`Ident` for enum values written
without quotes (``TYPE_INT64``, ``KIND_GPU``), dicts for messages and lists for repeated fields
(lists of dicts are written ``field [ {...}, {...} ]``, lists of scalars ``field: [ 1, 2 ]``).
:func:`parse_pbtxt` reads that subset back, plus the other common spellings (``field { ... }`` repeated,
``field: { ... }``, ``#`` comments, single-quoted strings), so hand-edited configs load too.
"""

from __future__ import annotations

import re
from typing import Any

from edgepack.errors import EdgepackError


class Ident(str):
    """An enum value: written bare (``kind: KIND_GPU``), never quoted."""


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Ident):
        if not _IDENT.match(v):
            raise ValueError(f"not an enum identifier: {v!r}")
        return str(v)
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    raise TypeError(f"cannot write {type(v).__name__} value {v!r} to pbtxt")


def _lines(msg: dict, indent: int) -> list[str]:
    pad = "  " * indent
    out = []
    for key, v in msg.items():
        if v is None:
            continue
        if isinstance(v, dict):
            out += [f"{pad}{key} {{", *_lines(v, indent + 1), f"{pad}}}"]
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
            out.append(f"{pad}{key} [")
            for i, item in enumerate(v):
                out += [
                    f"{pad}  {{",
                    *_lines(item, indent + 2),
                    f"{pad}  }}" + ("," if i < len(v) - 1 else ""),
                ]
            out.append(f"{pad}]")
        elif isinstance(v, (list, tuple)):
            out.append(f"{pad}{key}: [ " + ", ".join(_scalar(x) for x in v) + " ]")
        else:
            out.append(f"{pad}{key}: {_scalar(v)}")
    return out


def format_pbtxt(config: dict) -> str:
    """The text of a ``config.pbtxt`` for ``config`` (see the module docstring for the value types)."""
    return "\n".join(_lines(config, 0)) + "\n"


_TOKEN = re.compile(
    r"""\s*(?:\#[^\n]*\n?|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<num>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)|"""
    r"""(?P<id>[A-Za-z_][A-Za-z0-9_.]*)|(?P<p>[{}\[\]:,;<>]))""",
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    toks, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            pos += len(text[pos:]) - len(text[pos:].lstrip())
            line = text.count("\n", 0, pos) + 1
            raise EdgepackError(f"config.pbtxt line {line}: cannot read {text[pos : pos + 20]!r}")
        pos = m.end()
        for kind in ("str", "num", "id", "p"):
            if m.group(kind) is not None:
                toks.append((kind, m.group(kind)))
                break
    return toks


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise EdgepackError(
                f"config.pbtxt: expected {value or 'a value'!r}, found {tok[1] if tok else 'end of file'!r}"
            )
        self.i += 1
        return tok

    def message(self, close: str | None) -> dict:
        out: dict[str, Any] = {}
        while True:
            tok = self.peek()
            if tok is None:
                if close:
                    raise EdgepackError(f"config.pbtxt: missing {close!r} at end of file")
                return out
            if tok[1] == close:
                self.i += 1
                return out
            if tok[1] in (",", ";"):
                self.i += 1
                continue
            kind, key = self.take()
            if kind != "id":
                raise EdgepackError(f"config.pbtxt: expected a field name, found {key!r}")
            if self.peek() and self.peek()[1] == ":":
                self.i += 1
            value = self.value()
            if key in out:  # a repeated field written once per item
                prev = out[key]
                out[key] = (prev if isinstance(prev, list) else [prev]) + (
                    value if isinstance(value, list) else [value]
                )
            else:
                out[key] = value

    def value(self) -> Any:
        kind, tok = self.take()
        if tok in ("{", "<"):
            return self.message("}" if tok == "{" else ">")
        if tok == "[":
            items = []
            while self.peek() and self.peek()[1] != "]":
                if self.peek()[1] == ",":
                    self.i += 1
                    continue
                items.append(self.value())
            self.take("]")
            return items
        if kind == "str":
            body = tok[1:-1]
            return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)
        if kind == "num":
            return float(tok) if any(c in tok for c in ".eE") else int(tok)
        if kind == "id":
            return {"true": True, "false": False}.get(tok, Ident(tok))
        raise EdgepackError(f"config.pbtxt: unexpected {tok!r}")


def parse_pbtxt(text: str) -> dict:
    """Parse config.pbtxt text into the dict form :func:`format_pbtxt` writes (repeated fields as lists)."""
    return _Parser(text).message(None)


def as_list(v: Any) -> list:
    """A repeated field as a list whether it was written once (a dict/scalar) or several times."""
    if v is None:
        return []
    return v if isinstance(v, list) else [v]
