"""Command-line flags made from a job's config dataclass: one source for a flag, its default and its help.

Every command builds its parser with :func:`add_config_options` and its config with
:func:`config_from_args`, so all commands share one option syntax:

- ``--field-name VALUE`` for each top-level field of the config (scalars, paths, lists of them,
  ``Literal`` choices; ``bool`` fields become ``--x`` / ``--no-x``); the help text is the
  docstring written under the field in the dataclass (as nerfstudio's configs do for ``tyro``);
- ``--config FILE.yaml``: a YAML file of config fields;
- ``--set KEY=VALUE ...``: overrides of any field, dotted keys reaching nested configs
  (``--set sequence.smooth_weight=4``), applied after the YAML;
- the output location (the field ``out``) is ``-o/--out``.

Flags given on the command line win over ``--set``, which wins over ``--config``, which wins over
the dataclass defaults. The config's own ``__post_init__`` checks the result, so a config built
here is checked exactly as one built in Python; its :class:`~mvspin.config.ConfigError` names a
field, which :func:`flag_for` turns back into the flag the user typed.

Why not ``tyro``: the commands keep argparse sub-commands, the signal handling of
:mod:`mvspin.cli.main` and a few hand-written flags (e.g. ``--verbose``); this module is the small
part of tyro they need, and it adds no dependency.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Sequence

__all__ = ["add_config_options", "config_from_args", "field_docs", "flag_for"]

_SCALARS = (int, float, str, Path)


@functools.lru_cache(maxsize=None)
def field_docs(schema: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``schema`` (and its bases), by field name.

    A field's docstring is the string literal on the line after its annotation, as in::

        fps: float = 30.0
        \"\"\"Frame rate of the recording (frames per second).\"\"\"
    """
    docs: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):  # no source (frozen application, dynamically made class)
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _strip_optional(kind: Any) -> Any:
    """``Optional[X]`` / ``X | None`` -> ``X``; anything else unchanged."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def _argument(kind: Any) -> Optional[dict[str, Any]]:
    """argparse keyword arguments for a field of type ``kind``; None if it has no flag (a nested
    config, a dict: those are reached with ``--set``)."""
    kind = _strip_optional(kind)
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
        item = _strip_optional(args[0]) if args else str
        if item in _SCALARS:
            return {"type": item, "nargs": "+"}
    return None


def _resolved_fields(schema: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(schema)
    return [(f, hints.get(f.name, f.type)) for f in dataclasses.fields(schema) if f.init]


def flag_for(field: str) -> str:
    """The command-line flag of a top-level config field (``batch_size`` -> ``--batch-size``)."""
    return "--out" if field == "out" else "--" + field.replace("_", "-")


def add_config_options(parser: argparse.ArgumentParser, schema: type, *, positional: Iterable[str] = (),
                       flatten: Iterable[str] = (), skip: Iterable[str] = (),
                       defaults: Optional[dict[str, Any]] = None) -> None:
    """Add flags for the fields of config dataclass ``schema`` to ``parser``, plus ``--config`` and ``--set``.

    Args:
        parser: the command's parser.
        schema: the job's config dataclass (fields with docstrings under them).
        positional: fields given as positional arguments instead of flags (e.g. ``inputs``).
        flatten: nested dataclass fields whose own fields get flags without a prefix
            (``body``: ``--smpl-dir``, ``--gender``, ...).
        skip: fields with no flag (still reachable with ``--set``).
        defaults: shown in the help instead of the dataclass's default where the command's
            default differs (it is applied by :func:`config_from_args` too).

    Every flag defaults to "not given" so that only what the user typed overrides the config.
    """
    positional, flatten, skip = set(positional), set(flatten), set(skip)
    defaults = dict(defaults or {})
    docs = field_docs(schema)
    group = parser.add_argument_group("job options", "(every field, nested ones too, also with --set FIELD=VALUE)")
    for f, kind in _resolved_fields(schema):
        if f.name in skip:
            continue
        sub = _strip_optional(kind)
        if f.name in flatten and dataclasses.is_dataclass(sub):
            _add_flat(parser, f.name, sub)
            continue
        spec = _argument(kind)
        if spec is None:
            continue
        if "choices" in f.metadata:
            spec["choices"] = tuple(f.metadata["choices"])
        if "choices" in spec:
            spec.pop("metavar", None)
        default = _default_of(f, defaults)
        help_text = _help(docs.get(f.name, ""), default)
        if f.name in positional:
            spec.pop("action", None)
            spec["metavar"] = f.name.upper()
            parser.add_argument(f.name, help=help_text, **spec)
            continue
        names = ["-o", "--out"] if f.name == "out" else [flag_for(f.name)]
        group.add_argument(*names, dest=f.name, default=argparse.SUPPRESS, help=help_text,
                           required=default is dataclasses.MISSING, **spec)
    parser.add_argument("--config", dest="config_file", type=Path, default=None, metavar="FILE.yaml",
                        help="YAML file of config fields (nested fields as nested mappings)")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override any config field, dotted keys for nested ones "
                             "(e.g. --set fps=60 sequence.smooth_weight=4)")
    parser.set_defaults(_config_schema=schema, _config_defaults=defaults,
                        _config_flatten=tuple(sorted(flatten)))


def _add_flat(parser: argparse.ArgumentParser, prefix: str, schema: type) -> None:
    docs = field_docs(schema)
    group = parser.add_argument_group(prefix)
    for f, kind in _resolved_fields(schema):
        spec = _argument(kind)
        if spec is None:
            continue
        if "choices" in f.metadata:
            spec["choices"] = tuple(f.metadata["choices"])
        elif "choices" not in spec:
            spec["metavar"] = f.name.upper()
        group.add_argument(flag_for(f.name), dest=f"{prefix}.{f.name}", default=argparse.SUPPRESS,
                           help=_help(docs.get(f.name, ""), _default_of(f, {})), **spec)


def _default_of(f: dataclasses.Field, defaults: dict[str, Any]) -> Any:
    if f.name in defaults:
        return defaults[f.name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _help(doc: str, default: Any) -> str:
    text = doc.replace("%", "%%")
    if default is dataclasses.MISSING:
        return text
    if default is None or default is False or default == [] or default == ():
        return text
    shown = default.name if isinstance(default, Path) and not default.parent.parts else default
    return f"{text} (default: {shown})".replace("%", "%%") if "%" not in str(shown) else text


def config_from_args(schema: type, args: argparse.Namespace) -> Any:
    """The config the command line describes: dataclass defaults, the command's defaults,
    ``--config`` YAML, ``--set`` overrides, then the flags given. Raises
    :class:`~mvspin.config.ConfigError` (naming the field) when the result is invalid."""
    from mvspin.config import load_config

    given = vars(args)
    values: dict[str, Any] = {}
    for name, value in getattr(args, "_config_defaults", {}).items():
        if name not in given and not _set_by_user(name, args):
            values[name] = value
    for f in dataclasses.fields(schema):
        if f.init and f.name in given:
            values[f.name] = _coerce(given[f.name])
    flatten = getattr(args, "_config_flatten", ())
    for key, value in given.items():
        outer, _, inner = key.partition(".")
        if inner and outer in flatten:
            values.setdefault(outer, {})[inner] = _coerce(value)
    return load_config(schema, getattr(args, "config_file", None), list(getattr(args, "overrides", [])),
                       values=values)


def _set_by_user(name: str, args: argparse.Namespace) -> bool:
    """Whether ``--set`` or ``--config`` names the field (then the command's own default must not win)."""
    if any(o.split("=", 1)[0].strip() == name for o in getattr(args, "overrides", [])):
        return True
    path = getattr(args, "config_file", None)
    if path is None:
        return False
    try:
        import yaml

        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except Exception:  # load_config has already reported an unreadable file
        return False
    return isinstance(loaded, dict) and name in loaded


def _coerce(value: Any) -> Any:
    """argparse values as OmegaConf takes them (lists, not tuples)."""
    return list(value) if isinstance(value, tuple) else value
