"""``mvspin demo`` end to end on a short capture (low-resolution model, no rendering)."""
import json

import numpy as np
import pytest

from mvspin.cli.main import main


def test_demo_writes_outputs_and_reports_accuracy(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--frames", "4", "--resolution", "low", "--no-render"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "MV-SMPLify calibrated" in printed and "free-collapse10pc" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    methods = metrics["methods"]
    assert set(methods) == {"calibrated", "per_view", "smplify"}
    assert methods["calibrated"]["pa_mpjpe_mm"] < 25.0 and methods["calibrated"]["mpjpe_mm"] < 35.0
    pa = {k: m["pa_mpjpe_mm"] for k, m in methods.items()}
    assert pa["calibrated"] < pa["per_view"] < metrics["network_estimate"]["pa_mpjpe_mm"]
    assert all(m["frames_fitted"] == 4 for m in methods.values())
    assert len(list((out / "meshes").glob("frame_*.ply"))) == 4
    params = np.load(out / "params" / "calibrated.npz")
    assert params["body_pose"].shape == (4, 69) and params["poses"].shape == (4, 72)
    assert params["betas"].shape == (4, 10)  # one fit per frame
    assert str(params["model"]) == "free-collapse10pc"
    rig = json.loads((out / "rig.json").read_text())
    assert len(rig["cameras"]) == 4 and np.asarray(rig["cameras"][0]["matrix"]).shape == (3, 3)
    assert not list(out.rglob(".*"))  # no temporary files left


def test_demo_bad_options(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--frames", "0"]) == 2
    assert "--frames must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "MV-SMPLify" in capsys.readouterr().out
