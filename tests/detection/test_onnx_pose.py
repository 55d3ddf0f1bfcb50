"""The onnx backend's decoding, on tiny ONNX files the test exports with RTMPose's signature."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mvspin.errors import DetectionError

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'mvspin[detect]')")
pytest.importorskip("onnx", reason="the onnx package is needed to export the test models")

from mvspin.detection.onnx_pose import OnnxPoseModel, box_crop_matrix, decode_simcc  # noqa: E402


class ProfilePose(torch.nn.Module):
    """RTMPose's signature (input (1, 3, 256, 192); simcc_x (1, K, 384), simcc_y (1, K, 512)) with
    a transparent 'network': every keypoint's SimCC logits are the crop's mean column / row
    brightness, so all keypoints land on the brightest column and row of the crop."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x):
        px = x.mean(dim=(1, 2)).repeat_interleave(2, dim=-1)
        py = x.mean(dim=(1, 3)).repeat_interleave(2, dim=-1)
        return px[:, None, :].expand(-1, self.k, -1) * 1.0, py[:, None, :].expand(-1, self.k, -1) * 1.0


def _export(module, path, shape=(1, 3, 256, 192), names=("simcc_x", "simcc_y")):
    torch.onnx.export(module, (torch.zeros(*shape),), str(path), input_names=["input"], output_names=list(names),
                      dynamo=False)
    return path


def test_simcc_decoding():
    sx, sy = np.full((2, 384), -1.0), np.full((2, 512), -1.0)
    sx[0, 101], sy[0, 300], sx[1, 7], sy[1, 8] = 0.9, 0.7, 0.2, 0.1
    kp = decode_simcc(sx, sy, 2.0)
    np.testing.assert_allclose(kp, [[50.5, 150.0, 0.8], [3.5, 4.0, 0.15]])


def test_box_crop_matrix_keeps_the_model_aspect():
    m = box_crop_matrix(np.array([100.0, 100.0, 200.0, 400.0]), 192, 256)
    centre = m @ [95.5, 127.5, 1]  # crop centre (pixel-centre coordinates)
    np.testing.assert_allclose(centre, [149.5, 249.5])
    assert abs(m[0, 0] - m[1, 1]) < 1e-12 and abs(m[1, 1] * 256 - 375) < 1e-9  # 300 px x 1.25, square pixels


@pytest.mark.parametrize("k,kset", [(17, "coco17"), (26, "halpe26")])
def test_keypoints_come_back_to_the_image_through_the_box(tmp_path, k, kset):
    model = OnnxPoseModel(str(_export(ProfilePose(k), tmp_path / "pose.onnx")))
    assert model.keypoint_set == kset and (model.width, model.height, model.split_ratio) == (192, 256, 2.0)
    image = np.zeros((480, 400, 3), np.uint8)
    image[:, 123] = 255  # a bright column and row cross at (123, 210)
    image[210, :] = 255
    for box in ([60, 100, 260, 330], [90, 150, 170, 260]):
        kp = model.estimate(image, np.array(box, float))
        assert kp.shape == (k, 3)
        np.testing.assert_allclose(kp[:, :2], np.tile([123, 210], (k, 1)), atol=1.0)
        assert np.all(kp[:, 2] > 0.5) and np.ptp(kp[:, 2]) == 0  # the same evidence for every keypoint


def test_a_file_that_is_not_a_pose_model_is_one_line(tmp_path):
    linear = _export(torch.nn.Linear(10, 2), tmp_path / "linear.onnx", shape=(1, 10), names=("y",))
    with pytest.raises(DetectionError, match=r"linear.onnx: not an RTMPose SimCC pose model.*input \[1, 10\]"):
        OnnxPoseModel(str(linear))
    wrong_k = _export(ProfilePose(5), tmp_path / "five.onnx")
    with pytest.raises(DetectionError, match="K 17 or 26"):
        OnnxPoseModel(str(wrong_k))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(DetectionError, match="junk.onnx: not a loadable ONNX model") as err:
        OnnxPoseModel(str(junk))
    assert "\n" not in str(err.value)
