"""Frozen config dataclasses <-> plain dicts (JSON, YAML recipes, CLI --config files). Standard library only."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from edgepack.errors import EdgepackError


def config_to_dict(cfg: Any) -> dict:
    """A JSON-ready dict of a (nested) config dataclass; tuples become lists."""
    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


def config_from_dict(cls: type, data: dict | None) -> Any:
    """Build config ``cls`` from a dict: nested dicts become nested configs, lists become tuples.

    Unknown keys raise EdgepackError naming the valid ones; the dataclass's own checks then run.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise EdgepackError(f"{cls.__name__} needs a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise EdgepackError(f"unknown {cls.__name__} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    return cls(**{k: _convert(hints[k], v) for k, v in data.items()})


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else config_from_dict(tp, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        item = args[0] if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis) else Any
        return tuple(_convert(item, v) for v in value)
    return value
