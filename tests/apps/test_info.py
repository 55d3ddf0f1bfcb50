"""mvspin.apps.info: versions, device and the body model from Python, and as JSON on the command line."""
from __future__ import annotations

import json

from mvspin.apps.info import InfoConfig, run
from mvspin.body import BodyModelConfig
from mvspin.cli.main import main


def test_info_from_python_and_as_json(capsys):
    report = run(InfoConfig(body=BodyModelConfig(resolution="low")))
    bm = report.data["body_model"]
    assert bm["vertices"] == 1229 and "h36m17" in bm["keypoint_sets"]
    assert set(report.data["packages"]) >= {"torch", "numpy", "smplx"} and report.data["packages"]["torch"]
    assert report.lines()[3] == f"body model: {bm['name']} from {bm['source']}"
    assert main(["info", "--resolution", "low", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["body_model"]["vertices"] == 1229 and printed["mvspin"] == report.data["mvspin"]
