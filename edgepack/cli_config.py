"""Stage command lines derived from their config dataclasses. Standard library only.

``add_config_arguments(parser, PruneConfig, ...)`` adds ``--config FILE`` (YAML or JSON holding the
config's dict) and one option per config field (nested fields too: ``recovery.steps`` -> ``--recovery-steps``),
typed from the annotation and showing the dataclass default in ``--help``. The options default to None,
so :func:`config_from_args` knows what was given: dataclass defaults < ``base`` (defaults the command works
out, e.g. from the input artifact) < the file < explicit flags < ``override``. The dataclass then checks
the result and its errors name the field.

Option kinds: bool -> ``--x/--no-x``; tuple -> one or more values, each may be comma-separated
(``--drop-layers 1,-1`` or ``--features hidden attention``); int/float/str -> one value; ``dict`` fields
are file-only.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgepack.config import config_from_dict, read_config_file
from edgepack.errors import EdgepackError


@dataclass(frozen=True)
class Opt:
    """How one config field appears on the command line (all optional)."""

    flag: str | None = None  # default: --<prefix>-<field-name>
    help: str = ""
    choices: Sequence[Any] | None = None
    parse: Callable[[str], Any] | None = None  # whole-value parser, e.g. json.loads
    metavar: str | None = None
    default_text: str | None = None  # what a None default means (e.g. "the model's limit")


@dataclass(frozen=True)
class Leaf:
    """One config field behind one option."""

    path: str  # dotted field path in the config, e.g. "train.lr"
    dest: str  # argparse destination
    flag: str
    tp: Any  # the annotation without None
    default: Any  # the dataclass default
    parse: Callable[[str], Any] | None


@dataclass(frozen=True)
class ConfigSpec:
    """What a stage parser derives from its config class (stored in the parser's defaults as ``_config``)."""

    cls: type
    leaves: tuple[Leaf, ...]


def _strip_none(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return inner[0], True
    return tp, False


def config_leaves(cls: type, path: str = "", default: Any = None) -> list[tuple[str, Any, Any]]:
    """``(dotted path, annotation, default)`` of every scalar/tuple field of ``cls``, nested configs walked."""
    default = cls() if default is None else default
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp, _ = _strip_none(hints[f.name])
        p = f"{path}.{f.name}" if path else f.name
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(tp):
            out += config_leaves(tp, p, value if value is not None else tp())
        elif tp is not dict and typing.get_origin(tp) is not dict:
            out.append((p, tp, value))
    return out


def show_default(value: Any, text: str | None = None) -> str:
    """A dataclass default as --help shows it (``text``: how to say None, e.g. "the model's limit")."""
    if value is None:
        return text or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "none"
    return str(value)


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type, *, options: Mapping[str, Opt] | None = None,
    prefixes: Mapping[str, str] | None = None, groups: Mapping[str, str] | None = None,
    skip: Sequence[str] = (), writes: bool = True,
) -> ConfigSpec:
    """Add ``--config`` and one option per field of ``cls`` to ``parser``.

    options: per dotted field path, the flag name, help text, choices... (see Opt).
    prefixes: flag prefix per nested config path (default: the path, e.g. "recovery" -> --recovery-steps;
      "" drops it). groups: help-group title per config path ("" = the top level). skip: paths (or
      nested configs) left to the file or to the command's own options. writes: the command writes an
      artifact, so it gets ``--overwrite`` (read with :func:`overwrite_of`).
    """
    options, prefixes, groups = options or {}, prefixes or {}, groups or {}
    parser.add_argument("--config", metavar="FILE",
                        help=f"{cls.__name__} as YAML or JSON (its dict); flags given explicitly override it")
    if writes:
        parser.add_argument("--overwrite", action="store_true",
                            help="replace the output folder if it exists (only an edgepack artifact is ever "
                                 "replaced, and only once the new one is complete)")
    made: dict[str, Any] = {}
    leaves = []
    for path, tp, default in config_leaves(cls):
        if any(path == s or path.startswith(s + ".") for s in skip):
            continue
        parent, _, name = path.rpartition(".")
        opt = options.get(path, Opt())
        prefix = prefixes.get(parent, parent.replace(".", "-"))
        flag = opt.flag or "--" + (f"{prefix}-" if prefix else "") + name.replace("_", "-")
        title = groups.get(parent, groups.get("", f"{cls.__name__} options"))
        if title not in made:
            made[title] = parser.add_argument_group(title)
        leaf = Leaf(path, "cfg__" + path.replace(".", "__"), flag.replace("_", "-"), tp, default, opt.parse)
        _add(made[title], leaf, opt)
        leaves.append(leaf)
    spec = ConfigSpec(cls, tuple(leaves))
    parser.set_defaults(_config=spec)
    return spec


def overwrite_of(args: argparse.Namespace) -> bool:
    """Whether ``--overwrite`` was given (False for commands without it)."""
    return bool(getattr(args, "overwrite", False))


def _add(group: Any, leaf: Leaf, opt: Opt) -> None:
    shown = show_default(leaf.default, opt.default_text).replace("%", "%%")
    text = f"{opt.help} (default: {shown})" if opt.help else f"default: {shown}"
    kw: dict[str, Any] = {"dest": leaf.dest, "default": None, "help": text}
    is_tuple = typing.get_origin(leaf.tp) is tuple
    if leaf.parse is not None:
        kw["type"] = str
    elif leaf.tp is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif is_tuple:
        kw.update(action="extend", nargs="+", type=str)
    else:
        kw["type"] = leaf.tp if leaf.tp in (int, float, str) else str
    if opt.choices is not None and not is_tuple:
        kw["choices"] = list(opt.choices)
    if leaf.tp is not bool and "choices" not in kw:
        kw["metavar"] = opt.metavar or _METAVARS.get(_item(leaf.tp) if is_tuple else leaf.tp, "VALUE")
    group.add_argument(leaf.flag, **kw)


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def _item(tp: Any) -> Any:
    args = typing.get_args(tp)
    return args[0] if len(args) == 2 and args[1] is Ellipsis else str


def _flag_value(leaf: Leaf, raw: Any) -> Any:
    if leaf.parse is not None:
        try:
            return leaf.parse(raw)
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            raise EdgepackError(f"{leaf.flag}: cannot read {raw!r}: {e}") from None
    if typing.get_origin(leaf.tp) is not tuple:
        return raw
    item = _item(leaf.tp)
    parts = [p.strip() for r in raw for p in str(r).split(",") if p.strip()]
    if item not in (int, float):
        return parts
    try:
        return [item(p) for p in parts]
    except ValueError:
        kind = "integers" if item is int else "numbers"
        raise EdgepackError(f"{leaf.flag} takes comma-separated {kind}, got {' '.join(map(str, raw))!r}") from None


def merge(*dicts: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep merge of nested dicts, later ones winning (a nested dict merges; any other value replaces)."""
    out: dict[str, Any] = {}
    for d in dicts:
        for k, v in (d or {}).items():
            out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config options given explicitly on the command line, as a nested dict."""
    out: dict[str, Any] = {}
    for leaf in args._config.leaves:
        raw = getattr(args, leaf.dest, None)
        if raw is None:
            continue
        node = out
        *parents, name = leaf.path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[name] = _flag_value(leaf, raw)
    return out


def config_from_args(args: argparse.Namespace, base: Mapping[str, Any] | None = None,
                     override: Mapping[str, Any] | None = None) -> Any:
    """The stage config: dataclass defaults < ``base`` < ``--config`` file < explicit flags < ``override``."""
    spec: ConfigSpec = args._config
    file = read_config_file(args.config) if getattr(args, "config", None) else {}
    return config_from_dict(spec.cls, merge(base, file, flag_values(args), override))
