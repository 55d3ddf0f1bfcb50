from dataclasses import dataclass, field

import pytest

from mvspin.config import ConfigError, config_to_dict, load_config, save_config


@dataclass
class _Inner:
    lr: float = 0.01
    iterations: int = 100


@dataclass
class _Job:
    name: str = "demo"
    inner: _Inner = field(default_factory=_Inner)


def test_defaults_yaml_and_overrides(tmp_path):
    yaml = tmp_path / "job.yaml"
    yaml.write_text("inner:\n  iterations: 50\n")
    cfg = load_config(_Job, yaml, ["inner.lr=0.5"])
    assert isinstance(cfg, _Job) and cfg.inner.iterations == 50 and cfg.inner.lr == 0.5
    save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(_Job, tmp_path / "out" / "config.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)


@pytest.mark.parametrize("override", ["inner.iterations=many", "inner.nope=1", "novalue"])
def test_bad_overrides_raise_config_error(override):
    with pytest.raises(ConfigError):
        load_config(_Job, None, [override])


def test_missing_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(_Job, tmp_path / "missing.yaml")


def test_yaml_that_is_not_a_mapping_names_the_file(tmp_path):
    from dataclasses import dataclass

    from mvspin.config import ConfigError, load_config

    @dataclass
    class Job:
        iterations: int = 100

    listed = tmp_path / "list.yaml"
    listed.write_text("- iterations: 3\n")
    with pytest.raises(ConfigError, match=f"{listed}: expected a YAML mapping of config keys, got a list"):
        load_config(Job, listed)
    broken = tmp_path / "broken.yaml"
    broken.write_text("iterations: [1,\n")
    with pytest.raises(ConfigError, match=f"{broken}: not a readable YAML file"):
        load_config(Job, broken)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("iterationz: 3\n")
    with pytest.raises(ConfigError, match=f"{unknown}: invalid configuration: Key 'iterationz'"):
        load_config(Job, unknown)
