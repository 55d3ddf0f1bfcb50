"""Flags made from config dataclasses (mvspin.cli.options): names, help from field docstrings,
precedence (defaults < --config < --set < flags), validation through __post_init__."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from mvspin.body import BodyModelConfig
from mvspin.cli.main import error_line
from mvspin.cli.options import add_config_options, config_from_args, flag_for
from mvspin.config import ConfigError, check_range, field_docs


@dataclass
class Inner:
    weight: float = 2.0
    """A nested weight."""


@dataclass
class Job:
    out: Path
    """Output folder."""
    inputs: list[Path] = field(default_factory=list)
    """Input files."""
    batch_size: int = 32
    """Crops per network call."""
    videos: Optional[list[Path]] = None
    """One video per camera."""
    meshes: bool = False
    """Also write meshes."""
    mode: str = field(default="a", metadata={"choices": ("a", "b")})
    """Which mode."""
    inner: Inner = field(default_factory=Inner)
    body: BodyModelConfig = field(default_factory=BodyModelConfig)

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, 1, 4096, integer=True)


def _parse(argv: list[str], **kw) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="job")
    add_config_options(parser, Job, positional=("inputs",), flatten=("body",), **kw)
    return parser, parser.parse_args(argv)


def test_field_docs_read_the_docstring_under_each_field():
    docs = field_docs(Job)
    assert docs["batch_size"] == "Crops per network call."
    assert docs["videos"] == "One video per camera."
    assert "inner" not in docs


def test_flags_their_help_and_defaults():
    parser, _ = _parse(["a.jpg", "-o", "x"])
    text = parser.format_help()
    for flag in ("--batch-size", "--videos", "--meshes", "--no-meshes", "--mode {a,b}", "-o OUT, --out OUT", "--set", "--config",
                 "--smpl-dir", "--gender", "--resolution"):
        assert flag in text
    assert "Crops per network call. (default: 32)" in " ".join(text.split())
    assert "--inner" not in text  # nested configs are reached with --set
    assert flag_for("batch_size") == "--batch-size" and flag_for("out") == "--out"


def test_precedence_defaults_yaml_set_flags(tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("batch_size: 8\ninner:\n  weight: 5.0\nmode: b\n")
    _, args = _parse(["a.jpg", "b.jpg", "-o", str(tmp_path / "o"), "--config", str(yaml),
                      "--set", "batch_size=16", "inner.weight=7", "--videos", "v 1.mp4", "x=y.mp4",
                      "--meshes", "--gender", "male"])
    cfg = config_from_args(Job, args)
    assert cfg.batch_size == 16            # --set over the YAML
    assert cfg.inner.weight == 7.0         # dotted --set reaches the nested config
    assert cfg.mode == "b"                 # YAML over the default
    assert cfg.meshes is True
    assert cfg.inputs == [Path("a.jpg"), Path("b.jpg")]
    assert cfg.videos == [Path("v 1.mp4"), Path("x=y.mp4")]  # paths are not parsed as overrides
    assert cfg.body.gender == "male" and cfg.body.resolution == "full"
    _, args = _parse(["a.jpg", "-o", "o", "--set", "batch_size=16", "--batch-size", "4"])
    assert config_from_args(Job, args).batch_size == 4  # a flag over --set


def test_command_defaults_yield_to_what_the_user_set(tmp_path):
    _, args = _parse(["a.jpg", "-o", "o"], defaults={"batch_size": 2})
    assert config_from_args(Job, args).batch_size == 2
    _, args = _parse(["a.jpg", "-o", "o", "--set", "batch_size=3"], defaults={"batch_size": 2})
    assert config_from_args(Job, args).batch_size == 3


def test_invalid_values_raise_config_error_named_by_flag():
    _, args = _parse(["a.jpg", "-o", "o", "--batch-size", "0"])
    with pytest.raises(ConfigError) as err:
        config_from_args(Job, args)
    assert err.value.field == "batch_size"
    assert error_line(err.value) == "--batch-size must be in 1..4096, got 0"
    _, args = _parse(["a.jpg", "-o", "o", "--set", "nope=1"])
    with pytest.raises(ConfigError, match="nope"):
        config_from_args(Job, args)
    with pytest.raises(SystemExit):  # argparse refuses a choice outside the field's choices
        _parse(["a.jpg", "-o", "o", "--mode", "c"])
    with pytest.raises(SystemExit):  # a required field nobody gave
        _parse(["a.jpg"])


def test_a_field_named_overrides_keeps_its_values_and_its_default(tmp_path):
    """The Table 7 protocol's ``overrides`` field: its flag, its YAML value and its default are
    its own, not ``--set``'s (they once shared a name: the protocol ran the YAML's 1,500 steps instead of its own)."""
    from mvspin.apps.experiment import Table7Config

    parser = argparse.ArgumentParser(prog="table7")
    add_config_options(parser, Table7Config)
    default = config_from_args(Table7Config, parser.parse_args(["-o", str(tmp_path / "a")]))
    assert default.overrides == Table7Config(out=tmp_path / "x").overrides and "optim.max_steps=6000" in default.overrides
    given = config_from_args(Table7Config, parser.parse_args(
        ["-o", str(tmp_path / "a"), "--overrides", "optim.max_steps=7", "--set", "val_bundles=5"]))
    assert given.overrides == ["optim.max_steps=7"] and given.val_bundles == 5
    yaml = tmp_path / "t7.yaml"
    yaml.write_text('overrides: ["optim.max_steps=9"]\n')
    from_yaml = config_from_args(Table7Config, parser.parse_args(["-o", str(tmp_path / "a"), "--config", str(yaml)]))
    assert from_yaml.overrides == ["optim.max_steps=9"]
