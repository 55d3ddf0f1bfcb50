"""``mvspin eval`` end to end on a tiny synthetic test file: table, JSON, per-sample npz; bad input."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mvspin.body import BodyModel
from mvspin.cli.main import main
from mvspin.data.bundle_format import BundleFile, BundleWriter
from mvspin.learning.evaluation import evaluate, protocol_errors
from mvspin.regressor.checkpoint import load_regressor_checkpoint, save_regressor_checkpoint
from mvspin.regressor.hmr import HMRRegressor

N, V, W = 3, 2, 64


def write_smpl_test_file(path: Path, dataset: str = "synthetic", seed: int = 0, split: str = "test") -> Path:
    """N bundles x V views of random images with SMPL ground truth and cameras."""
    rng = np.random.default_rng(seed)
    with BundleWriter(path, dataset=dataset, split=split, num_views=V, keypoint_set="h36m17", cameras=True,
                      smpl=True) as w:
        for i in range(N):
            images = [cv2.imencode(".jpg", rng.integers(0, 255, (W, W, 3), dtype=np.uint8))[1] for _ in range(V)]
            R = [cv2.Rodrigues(rng.normal(scale=0.5, size=3))[0] for _ in range(V)]
            w.append({"images": images, "image_size": np.full((V, 2), W), "center": np.full((V, 2), W / 2),
                      "scale": np.full(V, 0.3), "keypoints_2d": np.zeros((V, 17, 3)),
                      "camera_K": np.stack([np.array([[80.0, 0, 32], [0, 80, 32], [0, 0, 1]])] * V),
                      "camera_dist": np.zeros((V, 5)), "camera_R": np.stack(R), "camera_t": np.tile([0, 0, 4.0], (V, 1)),
                      "smpl_global_orient": rng.normal(scale=0.3, size=3), "smpl_body_pose": rng.normal(scale=0.2, size=69),
                      "smpl_betas": rng.normal(size=10), "smpl_transl": np.zeros(3), "smpl_gender": "neutral",
                      "has_smpl": True, "subject": f"body{i}", "sequence": "test", "frame": i,
                      "camera_names": [f"cam{v}" for v in range(V)]})
    return path


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel.free("low")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, body: BodyModel) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    model = HMRRegressor(18, mean_params=body.mean_params)
    # the trainer's layout: its resolved config as JSON under train_state
    def config(resolution: str) -> dict:
        return {"config": json.dumps({"data": {"crop_size": 64}, "model": {"smpl_dir": None,
                                                                          "body_resolution": resolution}})}

    save_regressor_checkpoint(root / "r18.pt", model, total_step_count=5, train_state=config("low"))
    save_regressor_checkpoint(root / "full.pt", model, train_state=config("full"))
    classifier = {k: v for k, v in model.state_dict().items() if k.startswith(("conv1", "bn1", "layer"))}
    classifier["fc.weight"] = torch.zeros(1000, 512)
    torch.save(classifier, root / "imagenet.pt")
    return {"root": root, "ckpt": root / "r18.pt", "full_ckpt": root / "full.pt", "imagenet": root / "imagenet.pt",
            "data": write_smpl_test_file(root / "synthetic_test.h5"),
            "other": write_smpl_test_file(root / "pw3d_like.h5", dataset="3dpw")}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["eval", *argv, "--resolution", "low"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_eval_synthetic_writes_table_json_and_samples(files, body, capsys):
    out = files["root"] / "out"
    code, stdout, _ = _run(capsys, "--checkpoint", str(files["ckpt"]), "--dataset", "synthetic",
                           "--data", str(files["data"]), "--out", str(out), "--batch-size", "4")
    assert code == 0
    assert "synthetic" in stdout and "mpjpe (mm)" in stdout
    summary = json.loads((out / "eval_synthetic.json").read_text())
    samples = np.load(out / "eval_synthetic_samples.npz")
    assert summary["samples"] == N * V and len(samples["mpjpe"]) == N * V
    assert summary["metrics"]["mpjpe"] == pytest.approx(float(samples["mpjpe"].mean()))
    assert summary["metrics"]["pa_mpjpe"] == pytest.approx(float(samples["pa_mpjpe"].mean()))
    assert 0 < summary["metrics"]["pa_mpjpe"] < summary["metrics"]["mpjpe"]
    # every view of every bundle, in file order; errors are those of the stored joints
    assert samples["bundle"].tolist() == [0, 0, 1, 1, 2, 2] and samples["view"].tolist() == [0, 1] * N
    errors = protocol_errors(torch.from_numpy(samples["pred_joints"]), torch.from_numpy(samples["gt_joints"]),
                             "synthetic")
    np.testing.assert_allclose(errors["mpjpe"].numpy(), samples["mpjpe"], rtol=1e-9)
    # the command is a thin shell: the library gives the same numbers (crop size from the checkpoint)
    model, _ = load_regressor_checkpoint(files["ckpt"])
    result = evaluate(model, body, files["data"], "synthetic", input_size=64)
    np.testing.assert_allclose(result.errors["mpjpe"].numpy(), samples["mpjpe"], rtol=1e-6)
    # the same body seen by two cameras: root-relative PA-MPJPE cannot depend on the camera, but
    # the network sees different images, so predictions (and MPJPE) differ per view
    assert not np.allclose(samples["pred_joints"][0], samples["pred_joints"][1])


@pytest.mark.parametrize("case, pattern", [
    ("wrong_dataset", "is a '3dpw' bundle file, but protocol synthetic needs a 'synthetic' file"),
    ("classifier", "ResNet image classifier"),
    ("other_body", "trained for body model 'free-full', but the evaluation uses 'free-collapse10pc'"),
    ("missing", "bundle file does not exist"),
])
def test_bad_input_is_one_line_before_any_work(files, capsys, case, pattern):
    out = files["root"] / f"bad_{case}"
    ckpt = {"classifier": files["imagenet"], "other_body": files["full_ckpt"]}.get(case, files["ckpt"])
    data = {"wrong_dataset": files["other"], "missing": files["root"] / "nope.h5"}.get(case, files["data"])
    code, stdout, stderr = _run(capsys, "--checkpoint", str(ckpt), "--dataset", "synthetic", "--data", str(data),
                                "--out", str(out))
    assert code == 2
    assert pattern in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists() and "eval synthetic" not in stderr


def test_3dpw_file_evaluates_with_3dpw_protocol(files, body):
    model, _ = load_regressor_checkpoint(files["ckpt"])
    result = evaluate(model, body, BundleFile(files["other"]), "3dpw", input_size=64, max_samples=4)
    assert len(result) == 4 and set(result.errors) == {"mpjpe", "pa_mpjpe"}
