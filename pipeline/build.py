"""Build a frozen config dataclass from a recipe mapping, naming the exact key of any bad value.

``build_config(cls, data, "distill", defaults)`` is ``edgepack.config.config_from_dict`` (every config checks
itself in ``__post_init__``; the converter names the key path of a bad value) with the recipe's section
prefixed, so an error reads ``distill.student.init: must be one of ...``. Standard library only.

``defaults`` are the recipe's shared settings (``max_length``, ``seed``, ...): a field of that name at
any depth that the recipe leaves unset takes the shared value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from edgepack.config import ConfigError, config_from_dict
from edgepack.errors import EdgepackError


class RecipeKeyError(EdgepackError):
    """A bad value at ``key`` (a dotted path inside the recipe)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def _nested_class(tp: Any) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = inner[0] if len(inner) == 1 else None
    return tp if dataclasses.is_dataclass(tp) and isinstance(tp, type) else None


def field_names(cls: type) -> set[str]:
    """Every field name of ``cls`` and of the configs nested in it (what shared defaults can reach)."""
    hints = typing.get_type_hints(cls)
    names = set()
    for f in dataclasses.fields(cls):
        names.add(f.name)
        sub = _nested_class(hints[f.name])
        if sub is not None:
            names |= field_names(sub)
    return names


def with_defaults(cls: type, data: dict, defaults: dict) -> dict:
    """``data`` with every unset field named in ``defaults`` filled in, at any depth."""
    if not defaults:
        return data
    hints = typing.get_type_hints(cls)
    out = dict(data)
    for f in dataclasses.fields(cls):
        sub = _nested_class(hints[f.name])
        if sub is not None:
            given = out.get(f.name)
            if isinstance(given, dict):
                out[f.name] = with_defaults(sub, given, defaults)
            elif f.name not in out and (f.default_factory is not dataclasses.MISSING
                                        or dataclasses.is_dataclass(f.default)):
                filled = with_defaults(sub, {}, defaults)  # a nested config that exists by default
                if filled:
                    out[f.name] = filled
        elif f.name in defaults and f.name not in out:
            out[f.name] = defaults[f.name]
    return out


def build_config(cls: type, data: Any, path: str, defaults: dict | None = None) -> Any:
    """A validated ``cls`` from the mapping ``data`` found at ``path`` in the recipe.

    The config checks itself (``edgepack.config``); its error is re-raised naming the recipe key.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise RecipeKeyError(path, f"needs a mapping of {cls.__name__} options, got {data!r}")
    try:
        return config_from_dict(cls, with_defaults(cls, data, defaults or {}))
    except ConfigError as e:
        if e.unknown:
            raise RecipeKeyError(f"{path}.{e.unknown[0]}", e.problem) from None
        raise RecipeKeyError(f"{path}.{e.key}" if e.key else path, e.problem) from None
    except (EdgepackError, TypeError, ValueError) as e:
        raise RecipeKeyError(path, str(e)) from None
