"""``mvspin demo`` end to end on a short capture (low-resolution model, no rendering), from the
command line and from Python (:func:`mvspin.apps.demo.run`)."""
import json

import numpy as np
import pytest

from mvspin.apps.demo import DemoConfig, run
from mvspin.body import BodyModelConfig
from mvspin.cli.main import build_parser, main
from mvspin.config import load_config
from mvspin.io_outputs import read_smpl_npz


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
    assert params["body_pose"].shape == (4, 69) and params["poses"].shape == (4, 156)
    assert params["betas"].shape == (4, 10)  # one fit per frame
    assert str(params["model"]) == "free-collapse10pc"
    rig = json.loads((out / "rig.json").read_text())
    assert len(rig["cameras"]) == 4 and np.asarray(rig["cameras"][0]["matrix"]).shape == (3, 3)
    assert not list(out.rglob(".*"))  # no temporary files left
    # Files are axis-angle at every boundary: every .npz is an SMPL parameter file.
    npz = sorted(out.rglob("*.npz"))
    assert [p.name for p in npz] == ["calibrated.npz", "ground_truth.npz", "per_view.npz", "smplify.npz"]
    for path in npz:
        p = read_smpl_npz(path)
        t = len(p["body_pose"])
        assert p["body_pose"].shape == (t, 69) and p["global_orient"].shape == (t, 3), path
        assert p["transl"].shape == (t, 3) and p["poses"].shape == (t, 156) and float(p["fps"]) == 30.0
    per_view = read_smpl_npz(out / "params" / "per_view.npz")
    assert per_view["body_pose"].shape == (16, 69)  # one row per frame and view, frame-major
    np.testing.assert_array_equal(per_view["frame"], np.repeat(np.arange(4), 4))
    np.testing.assert_allclose(per_view["body_pose"][:4], np.repeat(per_view["body_pose"][:1], 4, 0), atol=1e-6)
    assert read_smpl_npz(out / "params" / "smplify.npz")["view"].tolist() == list(range(4)) * 4
    assert load_config(DemoConfig, out / "demo_config.yaml") == DemoConfig(
        out=out, frames=4, render=False, body=BodyModelConfig(resolution="low"))


def test_demo_bad_options(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--frames", "0"]) == 2
    assert "--frames must be in 1..100000, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "MV-SMPLify" in capsys.readouterr().out


def test_demo_config_from_yaml_overrides_and_options(tmp_path):
    from mvspin.cli.options import config_from_args

    yaml = tmp_path / "demo.yaml"
    yaml.write_text("frames: 5\nviews: 3\noptimizer: lbfgs\n")
    args = build_parser().parse_args(["demo", "--config", str(yaml), "--set", "frames=3", "--noise", "1.5",
                                      "--no-render"])
    assert config_from_args(DemoConfig, args) == DemoConfig(frames=3, views=3, optimizer="lbfgs", noise=1.5,
                                                            render=False)
    assert config_from_args(DemoConfig, build_parser().parse_args(["demo"])) == DemoConfig()  # the dataclass's defaults


@pytest.mark.parametrize("argv, message", [
    (["--keypoints", "banana"], "--keypoints must be one of smpl24, openpose25"),
    (["--set", "views=1"], "--views must be in 2..64, got 1"),
    (["--set", "drop=1.5"], "--drop must be in [0, 1), got 1.5"),
    (["--set", "optimizer=sgd"], "--optimizer must be adam, lbfgs or lm, got 'sgd'"),
    (["--set", "colour=red"], "invalid configuration: Key 'colour' not in 'DemoConfig'"),
])
def test_demo_options_out_of_range_are_one_line(tmp_path, capsys, argv, message):
    assert main(["demo", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_demo_checks_its_output_folder_first(tmp_path, capsys):
    (tmp_path / "file").write_text("in the way")
    assert main(["demo", "--out", str(tmp_path / "file"), "--frames", "1"]) == 2
    assert capsys.readouterr().err.strip() == \
        f"mvspin demo: error: --out {tmp_path / 'file'}: a file is in the way (expected a folder)"
    (tmp_path / "out" / "meshes" / "frame_0000.ply").mkdir(parents=True)
    assert main(["demo", "--out", str(tmp_path / "out"), "--frames", "1"]) == 2
    assert "a directory is in the way of the output file" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["frame_0000.ply", "meshes"]


def test_demo_metrics_are_standard_json_when_fits_fail(tmp_path, capsys):
    """Every keypoint dropped: unfitted views have an infinite reprojection error, which
    standard JSON writes as null (a bare Infinity breaks strict parsers)."""
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--frames", "1", "--views", "2", "--drop", "0.999", "--resolution", "low",
               "--no-render"])
    assert rc == 0

    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=refuse)
    for method in metrics["methods"].values():
        assert method["reprojection_error_px"] is None and method["per_frame"]["reprojection_error_px"] == [None]
        assert method["frames_fitted"] == 0


def test_run_demo_from_python(tmp_path):
    stages = {}
    result = run(DemoConfig(out=tmp_path / "d", frames=3, views=3, render=False,
                                 body=BodyModelConfig(resolution="low")),
                      progress=lambda stage, done, total: stages.__setitem__(stage, (done, total)))
    assert stages == {"fitting": (3, 3), "meshes": (3, 3)}
    assert result.metrics["methods"]["calibrated"]["pa_mpjpe_mm"] < 30.0
    assert all(p.is_file() for p in result.files) and (tmp_path / "d" / "metrics.json") in result.files
    assert not list((tmp_path / "d").rglob(".*"))  # no temporaries


def test_interrupted_demo_leaves_no_file(tmp_path, monkeypatch):
    """A failure while writing (here: the metrics file) leaves none of the run's files."""
    import mvspin.io_outputs as io_outputs

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(io_outputs, "write_json", fail)
    with pytest.raises(KeyboardInterrupt):
        run(DemoConfig(out=tmp_path / "d", frames=2, views=2, render=False, body=BodyModelConfig(resolution="low")))
    assert not (tmp_path / "d").exists() or not [p for p in (tmp_path / "d").rglob("*") if p.is_file()]
