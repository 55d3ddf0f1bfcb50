"""Typed job configuration: dataclass defaults, merged with a YAML file and ``key=value`` overrides.

Every number a paper sets lives in a dataclass field with the paper's value as default and a
comment naming the source. Jobs call :func:`load_config` with their dataclass; the resolved
config is saved next to the job's outputs (:func:`save_config`) so results describe themselves.
"""
from __future__ import annotations

from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mvspin.errors import MvspinError

__all__ = ["load_config", "save_config", "config_to_dict", "ConfigError"]

T = TypeVar("T")


class ConfigError(MvspinError, ValueError):
    """A YAML file or an override does not fit the job's configuration schema."""


def load_config(schema: type[T], yaml_path: Optional[str | Path] = None,
                overrides: Sequence[str] = ()) -> T:
    """Build a config object of dataclass type ``schema``.

    Args:
        schema: the job's dataclass (its defaults are the documented values).
        yaml_path: optional YAML file with a subset of the fields.
        overrides: ``key=value`` strings (dotted keys for nested fields), applied last.

    Returns:
        An instance of ``schema`` (type-checked by OmegaConf: wrong types or unknown keys raise
        :class:`ConfigError` naming the key).
    """
    if not is_dataclass(schema):
        raise TypeError(f"{schema!r} is not a dataclass")
    try:
        cfg = OmegaConf.structured(schema)
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
            try:
                cfg = OmegaConf.merge(cfg, loaded)
            except OmegaConfBaseException as err:
                msg = str(err.msg if hasattr(err, "msg") else err).splitlines()[0]
                raise ConfigError(f"{path}: invalid configuration: {msg}") from None
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"overrides must look like key=value, got {bad[0]!r}")
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(f"invalid configuration: {err.msg if hasattr(err, 'msg') else err}".splitlines()[0]) from None


def config_to_dict(config: Any) -> dict:
    """Plain dict of a config dataclass (for JSON/YAML output)."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from mvspin.atomic import write_bytes_atomic

    write_bytes_atomic(path, OmegaConf.to_yaml(OmegaConf.structured(config)).encode())
