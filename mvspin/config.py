"""Typed job configuration: dataclass defaults, merged with a YAML file and ``key=value`` overrides.

Every number a paper sets lives in a dataclass field with the paper's value as default and a
comment naming the source. Jobs call :func:`load_config` with their dataclass; the resolved
config is saved next to the job's outputs (:func:`save_config`) so results describe themselves.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from dataclasses import is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mvspin.errors import ConfigError

__all__ = ["load_config", "save_config", "config_to_dict", "ConfigError", "check_range", "resolve_device",
           "field_docs", "config_fields", "strip_optional"]

if TYPE_CHECKING:  # torch is imported only by resolve_device, when called
    import torch

T = TypeVar("T")


def check_range(field: str, value: Any, low: Optional[float] = None, high: Optional[float] = None, *,
                low_open: bool = False, integer: bool = False) -> None:
    """Raise :class:`ConfigError` naming ``field`` unless ``low <= value <= high`` (``low < value``
    with ``low_open``; NaN and infinities fail unless a bound allows them); ``None`` passes.
    For the ``__post_init__`` checks of job configs.

    Example:
        >>> check_range("fps", 30.0, 0, 1000, low_open=True)
        >>> check_range("fps", float("inf"), 0, 1000, low_open=True)
        Traceback (most recent call last):
        ...
        mvspin.errors.ConfigError: fps must be in (0, 1000], got inf
    """
    if value is None:
        return
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{field} must be an integer, got {value!r}", field=field)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{field} must be a number, got {value!r}", field=field) from None
    ok = number == number  # not NaN
    if low is not None:
        ok = ok and (number > low if low_open else number >= low)
    if high is not None:
        ok = ok and number <= high
    if not ok:
        if low is not None and high is not None:
            want = f"in ({low}, {high}]" if low_open else f"in {low}..{high}"
        elif low is not None:
            want = f"> {low}" if low_open else f">= {low}"
        else:
            want = f"<= {high}"
        raise ConfigError(f"{field} must be {want}, got {value}", field=field)


def load_config(schema: type[T], yaml_path: Optional[str | Path] = None,
                overrides: Sequence[str] = (), default_preset: Optional[str] = None,
                values: Optional[Mapping[str, Any]] = None) -> T:
    """Build a config object of dataclass type ``schema``.

    Args:
        schema: the job's dataclass (its defaults are the documented values).
        yaml_path: optional YAML file with a subset of the fields.
        overrides: ``key=value`` strings (dotted keys for nested fields), applied after the YAML.
        values: field values (nested mappings for nested configs), applied last: the flags of
            a command line (:mod:`mvspin.cli.options`).

    A ``preset`` key (in the YAML or as ``preset=NAME``) starts from ``schema.preset(NAME)``
    instead of the defaults, for schemas that offer presets (the fitting configs);
    ``default_preset`` is the one used when neither names a preset.

    Returns:
        An instance of ``schema`` (type-checked by OmegaConf: wrong types or unknown keys raise
        :class:`ConfigError` naming the key).
    """
    if not is_dataclass(schema):
        raise TypeError(f"{schema!r} is not a dataclass")
    try:
        loaded = None
        if yaml_path is not None:
            path = Path(yaml_path)
            if not path.is_file():
                raise FileNotFoundError(f"config file {path} does not exist")
            try:
                loaded = OmegaConf.load(path)
            except OmegaConfBaseException:
                raise
            except Exception as err:  # YAML syntax errors, undecodable bytes
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ConfigError(f"{path}: not a readable YAML file ({first})") from None
            if not isinstance(loaded, DictConfig):
                kind = "a list" if isinstance(loaded, ListConfig) else type(loaded).__name__
                raise ConfigError(f"{path}: expected a YAML mapping of config keys, got {kind}")
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key=value, got {bad[0]!r}")
        loaded, overrides, preset = _take_preset(loaded, list(overrides))
        preset = preset if preset is not None else default_preset
        cfg = OmegaConf.structured(_preset_base(schema, preset))
        if loaded is not None:
            try:
                cfg = OmegaConf.merge(cfg, loaded)
            except OmegaConfBaseException as err:
                msg = str(err.msg if hasattr(err, "msg") else err).splitlines()[0]
                raise ConfigError(f"{yaml_path}: invalid configuration: {msg}") from None
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        if values:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(dict(values)))
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(f"invalid configuration: {_omegaconf_message(err)}".splitlines()[0]) from None


def _omegaconf_message(err: BaseException) -> str:
    """OmegaConf's message; some errors carry none (``msg`` None: a tuple of the wrong length)
    and the real one is the exception they were raised from."""
    for e in (err, err.__cause__, err.__context__):
        if e is None:
            continue
        msg = getattr(e, "msg", None) or str(e)
        if msg and msg != "None":
            key = getattr(err, "full_key", None)
            return f"{key}: {msg}" if key and str(key) not in msg else msg
    return type(err).__name__


def _take_preset(loaded: Any, overrides: list[str]) -> tuple[Any, list[str], Optional[str]]:
    """Remove a ``preset`` key from the YAML mapping and the overrides (the override wins)."""
    preset = None
    if isinstance(loaded, DictConfig) and "preset" in loaded:
        preset = str(loaded.pop("preset"))
    rest = []
    for o in overrides:
        if o.split("=", 1)[0].strip() == "preset":
            preset = o.split("=", 1)[1].strip()
        else:
            rest.append(o)
    return loaded, rest, preset


def _preset_base(schema: type[T], preset: Optional[str]) -> Any:
    """The dataclass to start from: the schema's defaults, or its named preset (schemas that offer
    presets have a ``preset(name)`` classmethod, e.g. ``MVSMPLifyConfig``)."""
    if preset is None:
        return schema
    if not callable(getattr(schema, "preset", None)):
        raise ConfigError(f"{schema.__name__} has no presets (got preset={preset!r})")
    try:
        return schema.preset(preset)  # type: ignore[attr-defined]
    except ValueError as err:
        raise ConfigError(str(err)) from None


def config_to_dict(config: Any) -> dict:
    """Plain dict of a config dataclass (for JSON/YAML output)."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from mvspin.atomic import write_bytes_atomic

    def plain(value: Any) -> Any:  # paths as plain strings: YAML any tool reads back
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    write_bytes_atomic(path, OmegaConf.to_yaml(OmegaConf.create(plain(config_to_dict(config)))).encode())


def resolve_device(name: Optional[str], what: str = "device") -> "torch.device":
    """A config's ``device`` field as a torch device; None: CUDA when available, else CPU.

    Args:
        name: ``cpu``, ``cuda`` or ``cuda:N`` (or None).
        what: how messages name the setting (``"--device"`` on the command line).

    Raises:
        ConfigError: not a device name, a device type mvspin does not run on, CUDA asked for
            where there is none, or a CUDA index this machine does not have.
    """
    import torch

    field = what if what.isidentifier() else None  # the CLI shows a field as its flag
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{what} {name!r} is not a torch device (e.g. cpu, cuda, cuda:1)", field=field) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what} {name}: CUDA is not available on this machine", field=field)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{what} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                              field=field)
    elif device.type != "cpu":
        raise ConfigError(f"{what} {name}: only cpu and cuda devices are supported", field=field)
    return device


# --- introspection of config dataclasses (the command line's flags are made from it) ---


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


def strip_optional(kind: Any) -> Any:
    """``Optional[X]`` / ``X | None`` -> ``X``; anything else unchanged."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def config_fields(schema: type) -> list[tuple[dataclasses.Field, Any]]:
    """``(field, resolved type)`` of each init field of dataclass ``schema``."""
    hints = typing.get_type_hints(schema)
    return [(f, hints.get(f.name, f.type)) for f in dataclasses.fields(schema) if f.init]
