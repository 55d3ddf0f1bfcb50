"""Fitting configuration: documented YAML equals the dataclass defaults; validation."""
from pathlib import Path

import pytest

from mvspin.config import load_config
from mvspin.fitting import MVSMPLifyConfig, SMPLifyConfig, validate_config

YAML = Path(__file__).resolve().parents[2] / "configs" / "fitting.yaml"


def test_yaml_documents_the_defaults():
    assert load_config(MVSMPLifyConfig, YAML) == MVSMPLifyConfig()


def test_spin_and_paper_values():
    c = SMPLifyConfig()
    assert (c.sigma, c.lr, c.stage1_iterations, c.stage2_iterations) == (100.0, 0.01, 100, 100)
    assert c.pose_prior_weight == pytest.approx(4.78**2) and c.angle_prior_weight == pytest.approx(15.2**2)
    assert c.shape_prior_weight == 25.0 and c.depth_anchor_weight == 1e4 and not c.stage2_translation


def test_overrides_and_validation():
    c = load_config(MVSMPLifyConfig, YAML, ["mode=calibrated", "keypoint_weights.nose=0.5", "optimizer=lbfgs"])
    assert c.mode == "calibrated" and c.keypoint_weights == {"nose": 0.5}
    validate_config(c)
    for field, value, match in (("sigma", 0.0, "sigma must be positive"), ("patience", -1, "patience"),
                                ("calibrated_init", "magic", "calibrated_init must be one of"),
                                ("outlier_view_fraction", 1.5, "outlier_view_fraction")):
        bad = MVSMPLifyConfig(**{field: value})
        with pytest.raises(ValueError, match=match):
            validate_config(bad)
