"""Build a frozen config dataclass from a recipe mapping, naming the exact key of any bad value.

``build_config(cls, data, "distill", defaults)`` builds nested configs first (so an error names
``distill.student.init``, not just ``distill``), checks scalar types (YAML reads ``1e-4`` as text), runs the
dataclass's own checks (``__post_init__``), its ``validate()`` where it has one, and any extra checks the
pass registry names for that class. When a check fails, the key that fails on its own (every other key
at its default) is the one named; a rule between keys names the section. Standard library only.

``defaults`` are the recipe's shared settings (``max_length``, ``seed``, ...): a field of that name at
any depth that the recipe leaves unset takes the shared value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

from edgepack.config import config_from_dict
from edgepack.errors import EdgepackError

Checks = dict[type, Callable[[Any], None]]


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


def _is_float(tp: Any) -> bool:
    return tp is float or (typing.get_origin(tp) in (typing.Union, types.UnionType)
                           and [a for a in typing.get_args(tp) if a is not type(None)] == [float])


def _type_error(tp: Any, v: Any) -> str | None:
    """Why ``v`` cannot be a ``tp`` (simple scalar types, optionals and tuples of them), else None."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        errs = [_type_error(a, v) for a in args if a is not type(None)]
        return None if any(e is None for e in errs) else errs[0]
    if origin is tuple and args and (len(args) == 1 or args[1] is Ellipsis):
        if not isinstance(v, (list, tuple)):
            return f"expected a list, got {v!r}"
        return next((e for e in (_type_error(args[0], x) for x in v) if e), None)
    name = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp)
    if name is None:
        return None
    ok = (isinstance(v, bool) if tp is bool else isinstance(v, str) if tp is str
          else isinstance(v, int) and not isinstance(v, bool) if tp is int
          else isinstance(v, (int, float)) and not isinstance(v, bool))
    if ok:
        return None
    hint = " (YAML reads 1e-4 as text: write 1.0e-4)" if tp is float and isinstance(v, str) else ""
    return f"expected {name}, got {v!r}{hint}"


def _run_check(cls: type, kwargs: dict, check: Callable[[Any], None], path: str) -> Any:
    """Build ``cls(**kwargs)`` and ``check`` it; on failure raise naming the key that fails alone."""
    try:
        obj = config_from_dict(cls, kwargs)
        check(obj)
        return obj
    except (EdgepackError, TypeError, ValueError) as e:
        err = e
    try:
        check(cls())
    except (EdgepackError, TypeError, ValueError):
        raise RecipeKeyError(path, str(err)) from None  # the defaults fail too: no key to blame
    for k, v in kwargs.items():
        try:
            check(config_from_dict(cls, {k: v}))
        except (EdgepackError, TypeError, ValueError):
            raise RecipeKeyError(f"{path}.{k}", str(err)) from None
    raise RecipeKeyError(path, str(err)) from None


def build_config(cls: type, data: Any, path: str, defaults: dict | None = None, checks: Checks | None = None) -> Any:
    """A validated ``cls`` from the mapping ``data`` found at ``path`` in the recipe."""
    checks = checks or {}
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise RecipeKeyError(path, f"needs a mapping of {cls.__name__} options, got {data!r}")
    data = with_defaults(cls, data, defaults or {})
    names = [f.name for f in dataclasses.fields(cls)]
    for k in data:
        if k not in names:
            raise RecipeKeyError(f"{path}.{k}", f"unknown {cls.__name__} option; valid: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in data.items():
        sub = _nested_class(hints[k])
        if sub is not None and isinstance(v, dict):
            kwargs[k] = build_config(sub, v, f"{path}.{k}", None, checks)  # defaults already applied
            continue
        why = _type_error(hints[k], v)
        if why:
            raise RecipeKeyError(f"{path}.{k}", why)
        kwargs[k] = float(v) if _is_float(hints[k]) and isinstance(v, int) and not isinstance(v, bool) else v
    obj = _run_check(cls, kwargs, lambda c: None, path)
    if callable(getattr(obj, "validate", None)):
        obj = _run_check(cls, kwargs, lambda c: c.validate(), path)
    if cls in checks:
        obj = _run_check(cls, kwargs, checks[cls], path)
    return obj
