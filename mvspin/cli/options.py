"""Command-line flags made from a job's config dataclass: one source for a flag, its default and its help.

Every command uses :func:`add_config_options` and :func:`config_from_args`, so all share one
syntax: ``--field-name VALUE`` per top-level field (help: the docstring under the field, as
nerfstudio's configs do for tyro; ``bool`` fields ``--x/--no-x``; the output field ``out`` is
``-o/--out``), ``--config FILE.yaml`` and ``--set KEY=VALUE ...`` (dotted keys reach nested
configs). Precedence: defaults < ``--config`` < ``--set`` < flags; the config's ``__post_init__``
checks the result, and its :class:`~mvspin.config.ConfigError` names a field that
:func:`flag_for` turns into the flag. Not tyro: the commands keep argparse sub-commands and
:mod:`mvspin.cli.main`'s signal handling, and this is the small part of tyro they need.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Sequence

from mvspin.config import config_fields, field_docs, strip_optional

__all__ = ["add_config_options", "config_from_args", "flag_for"]

_SCALARS = (int, float, str, Path)


def _argument(kind: Any) -> Optional[dict[str, Any]]:
    """argparse keyword arguments for a field of type ``kind``; None if it has no flag (a nested
    config, a dict: those are reached with ``--set``)."""
    kind = strip_optional(kind)
    origin = typing.get_origin(kind)
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if kind in _SCALARS:
        return {"type": kind}
    if origin is Literal:
        choices = typing.get_args(kind)
        return {"type": type(choices[0]), "choices": choices}
    if origin in (list, tuple, Sequence, typing.Sequence) or kind in (list, tuple):
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        item = strip_optional(args[0]) if args else str
        if item in _SCALARS:
            return {"type": item, "nargs": "+"}
    return None


def flag_for(field: str) -> str:
    """The command-line flag of a top-level config field (``batch_size`` -> ``--batch-size``)."""
    return "--out" if field == "out" else "--" + field.replace("_", "-")


def add_config_options(parser: argparse.ArgumentParser, schema: type, *, positional: Iterable[str] = (), flatten:
                       Iterable[str] = (), skip: Iterable[str] = (), defaults: Optional[dict[str, Any]] = None) -> None:
    """Add a flag per field of config dataclass ``schema`` to ``parser``, and ``--config`` / ``--set``.

    ``positional``: fields given as positional arguments; ``flatten``: nested configs whose
    fields get flags without a prefix (``body``: ``--smpl-dir``); ``skip``: fields without a flag
    (``--set`` still reaches them); ``defaults``: the command's own defaults where they differ
    from the dataclass's. Flags default to "not given": only what the user typed overrides."""
    positional, flatten, skip, defaults = set(positional), set(flatten), set(skip), dict(defaults or {})
    group = parser.add_argument_group("job options", "(every field, nested ones too, also with --set FIELD=VALUE)")
    for f, kind in config_fields(schema):
        sub = strip_optional(kind)
        if f.name in flatten and isinstance(sub, type) and dataclasses.is_dataclass(sub):
            flat = parser.add_argument_group(f.name)
            outer = _default_of(f, defaults)  # help shows its values (e.g. a preset), not the class's
            shown = vars(outer) if dataclasses.is_dataclass(outer) and not isinstance(outer, type) else {}
            for g, inner in config_fields(typing.cast(type, sub)):
                spec = _spec(typing.cast(type, sub), g, inner, shown)
                if spec is not None:
                    flat.add_argument(flag_for(g.name), dest=f"{f.name}.{g.name}", default=argparse.SUPPRESS,
                                      metavar=None if "choices" in spec else g.name.upper(), **spec)
            continue
        spec = _spec(schema, f, kind, defaults)
        if spec is None or f.name in skip:
            continue
        if f.name in positional:
            spec.pop("action", None)
            parser.add_argument(f.name, metavar=f.name.upper(), **spec)
        else:
            group.add_argument(*(["-o", "--out"] if f.name == "out" else [flag_for(f.name)]), dest=f.name,
                               default=argparse.SUPPRESS, required=f.name not in defaults and
                               _default_of(f, {}) is dataclasses.MISSING, **spec)
    parser.add_argument("--config", dest="config_file", type=Path, default=None, metavar="FILE.yaml",
                        help="YAML file of config fields (nested fields as nested mappings)")
    parser.add_argument("--set", dest="set_items", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override any config field, dotted keys for nested ones "
                             "(e.g. --set fps=60 sequence.smooth_weight=4)")
    parser.set_defaults(_config_defaults=defaults, _config_flatten=tuple(sorted(flatten)))


def _spec(schema: type, f: dataclasses.Field, kind: Any, defaults: dict[str, Any]) -> Optional[dict[str, Any]]:
    """argparse keyword arguments of field ``f`` (type, nargs, choices, help), or None."""
    spec = _argument(kind)
    if spec is None:
        return None
    if "choices" in f.metadata:
        spec["choices"] = tuple(f.metadata["choices"])
    spec["help"] = _help(field_docs(schema).get(f.name, ""), _default_of(f, defaults))
    return spec


def _default_of(f: dataclasses.Field, defaults: dict[str, Any]) -> Any:
    """The command's default of field ``f``, else the dataclass's (``MISSING`` when required)."""
    if f.name in defaults:
        return defaults[f.name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _help(doc: str, default: Any) -> str:
    text = doc.replace("%", "%%")
    if default is dataclasses.MISSING or default is None or default is False or default in ([], ()):
        return text
    return f"{text} (default: {str(default).replace('%', '%%')})"


def config_from_args(schema: type, args: argparse.Namespace) -> Any:
    """The config the command line describes: dataclass defaults, the command's defaults,
    ``--config`` YAML, ``--set`` overrides, then the flags given. Raises
    :class:`~mvspin.config.ConfigError` (naming the field) when the result is invalid."""
    from mvspin.config import load_config

    given, flatten = vars(args), getattr(args, "_config_flatten", ())
    values = {name: value for name, value in getattr(args, "_config_defaults", {}).items()
              if name not in given and not _set_by_user(name, args)}
    values.update({f.name: given[f.name] for f in dataclasses.fields(schema) if f.init and f.name in given})
    for key, value in given.items():
        outer, _, inner = key.partition(".")
        if inner and outer in flatten:
            values.setdefault(outer, {})[inner] = value
    return load_config(schema, getattr(args, "config_file", None), list(getattr(args, "set_items", [])),
                       values=values)


def _set_by_user(name: str, args: argparse.Namespace) -> bool:
    """Whether ``--set`` or ``--config`` names the field (then the command's own default must not win)."""
    import yaml

    path = getattr(args, "config_file", None)
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else None
    except Exception:  # noqa: BLE001 - load_config reports an unreadable file
        loaded = None
    return (isinstance(loaded, dict) and name in loaded) or any(
        o.split("=", 1)[0].strip() == name for o in getattr(args, "set_items", []))

