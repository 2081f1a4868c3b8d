"""The one pass-config contract: frozen dataclasses that check themselves, and the dict <-> config converter.

Every stage config is a frozen dataclass whose ``__post_init__`` calls :func:`check_fields` (each field's
value against its annotation) and the range/choice checks below, so a bad value fails where the config
is built (Python, YAML recipe, CLI ``--config`` file or flag) with one line naming the field::

    ffn_fraction must be in [0, 1), got -0.5

:func:`config_from_dict` builds a (nested) config from plain data and prefixes every error with the key
path it came from (``student.init must be one of ...``, ``unknown DistillConfig option(s) student.bogus``);
:func:`config_to_dict` is its inverse (JSON-ready). Standard library only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgepack.errors import EdgepackError


class ConfigError(EdgepackError):
    """A config value is wrong. ``key`` is the dotted path of the field (None: the config as a whole).

    ``unknown``: for unknown option(s), their dotted paths (the message names them; ``key`` stays None).
    """

    def __init__(self, key: str | None, problem: str, sep: str = " ", unknown: tuple[str, ...] = ()):
        self.key, self.problem, self.sep, self.unknown = key, problem, sep, tuple(unknown)
        super().__init__(f"{key}{sep}{problem}" if key else problem)

    def under(self, prefix: str) -> ConfigError:
        """The same error seen from the enclosing config, whose field ``prefix`` holds this one."""
        if self.key:
            return ConfigError(f"{prefix}.{self.key}", self.problem, self.sep)
        return ConfigError(prefix, self.problem, ": ")


# --- checks a config's __post_init__ runs -------------------------------------------------------------------

def _show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def _number(cfg: Any, name: str) -> float | None:
    v = getattr(cfg, name)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise ConfigError(name, f"must be a number, got {type(v).__name__} {_show(v)}")
    return v


def check_fraction(cfg: Any, *names: str) -> None:
    """Each field is a share in [0, 1) (1 would remove everything)."""
    for n in names:
        v = _number(cfg, n)
        if v is not None and not 0.0 <= v < 1.0:
            raise ConfigError(n, f"must be in [0, 1), got {v}")


def check_unit(cfg: Any, *names: str) -> None:
    """Each field is a weight in [0, 1]."""
    for n in names:
        v = _number(cfg, n)
        if v is not None and not 0.0 <= v <= 1.0:
            raise ConfigError(n, f"must be in [0, 1], got {v}")


def check_positive(cfg: Any, *names: str) -> None:
    """Each field (when set) is > 0."""
    for n in names:
        v = _number(cfg, n)
        if v is not None and not v > 0:
            raise ConfigError(n, f"must be > 0, got {v}")


def check_min(cfg: Any, minimum: int, *names: str) -> None:
    """Each field (when set) is >= ``minimum``."""
    for n in names:
        v = _number(cfg, n)
        if v is not None and v < minimum:
            raise ConfigError(n, f"must be >= {minimum}, got {v}")


def check_between(cfg: Any, name: str, lo: int, hi: int) -> None:
    """The field (when set) lies in lo..hi, both included."""
    v = _number(cfg, name)
    if v is not None and not lo <= v <= hi:
        raise ConfigError(name, f"must be in {lo}..{hi}, got {v}")


def check_choice(cfg: Any, name: str, choices: Sequence[Any]) -> None:
    """The field (or each item of a tuple field) is one of ``choices``; None passes when the field may be unset."""
    v = getattr(cfg, name)
    for item in (v if isinstance(v, tuple) else (v,)):
        if item is not None and item not in choices:
            raise ConfigError(name, f"must be one of {', '.join(map(str, choices))}, got {_show(item)}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(cfg: Any) -> None:
    """Check every field's value against its annotation; lists given for tuple fields become tuples."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        fixed = _typed(_hints(type(cfg))[f.name], v, f.name)
        if fixed is not v:
            object.__setattr__(cfg, f.name, fixed)


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _typed(tp: Any, v: Any, name: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return v
        inner = [a for a in args if a is not type(None)]
        return _typed(inner[0], v, name) if len(inner) == 1 else v
    if origin is tuple:
        if not isinstance(v, (tuple, list)):
            raise ConfigError(name, f"must be a list, got {type(v).__name__} {_show(v)}")
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        out = tuple(v if item is None else (_typed(item, x, f"{name}[{i}]") for i, x in enumerate(v)))
        return v if isinstance(v, tuple) and all(a is b for a, b in zip(out, v)) else out
    ok = {int: lambda x: isinstance(x, int) and not isinstance(x, bool),
          float: lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
          bool: lambda x: isinstance(x, bool), str: lambda x: isinstance(x, str),
          dict: lambda x: isinstance(x, dict)}.get(tp)
    if ok is None and dataclasses.is_dataclass(tp):
        ok = lambda x: isinstance(x, tp)
    if ok is not None and not ok(v):
        raise ConfigError(name, f"must be {_type_name(tp)}, got {type(v).__name__} {_show(v)}")
    return v


# --- dict <-> config ----------------------------------------------------------------------------------------

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

    Errors (unknown keys, wrong types, the configs' own checks) raise ConfigError naming the key path.
    """
    return _build(cls, {} if data is None else data, "", cls.__name__)


def _build(cls: type, data: Any, path: str, root: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(path or None, f"{cls.__name__} needs a mapping, got {type(data).__name__}",
                          ": " if path else " ")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        keys = tuple(f"{path}.{k}" if path else k for k in unknown)
        raise ConfigError(None, f"unknown {root} option(s) {', '.join(keys)}; valid: {', '.join(sorted(fields))}",
                          unknown=keys)
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(path or None, f"missing required option(s) {', '.join(missing)}", ": " if path else " ")
    hints = _hints(cls)
    kwargs = {k: _convert(hints[k], v, f"{path}.{k}" if path else k, root) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise (e.under(path) if path else e) from None
    except EdgepackError as e:
        raise (ConfigError(path, str(e), ": ") if path else e) from None


def _convert(tp: Any, value: Any, path: str, root: str) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path, root) if len(inner) == 1 else value
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else _build(tp, value, path, root)
    if origin is tuple and isinstance(value, (list, tuple)):
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        return tuple(_convert(item, v, f"{path}[{i}]", root) for i, v in enumerate(value))
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    return value


def read_config_file(path: str | Path) -> dict:
    """The mapping in a YAML (.yaml/.yml) or JSON file; EdgepackError when unreadable or not a mapping."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise EdgepackError(f"cannot read config file {p}: {e.strerror or e}") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            from edgepack.errors import MissingDependencyError

            raise MissingDependencyError("pyyaml", "tools", "reading a YAML config file") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise EdgepackError(f"config file {p} is not valid YAML: {' '.join(str(e).split())}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise EdgepackError(f"config file {p} is not valid JSON: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EdgepackError(f"config file {p} must hold a mapping of options, got {type(data).__name__}")
    return data
