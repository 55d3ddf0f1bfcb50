"""A user's RTMPose ONNX file (top-down, SimCC head) on onnxruntime, people boxed by BlazePose.

The model's signature, as MMPose/MMDeploy export RTMPose (and rtmlib runs it):

- input ``(1, 3, H, W)`` float32 (``256x192`` for the body models), the person's box cut out with
  its aspect fixed to ``W/H`` and enlarged 1.25x, RGB normalised with the ImageNet mean
  ``(123.675, 116.28, 103.53)`` and std ``(58.395, 57.12, 57.375)``;
- outputs ``simcc_x (1, K, W*s)`` and ``simcc_y (1, K, H*s)``: one 1D classification per keypoint
  and axis over sub-pixel bins (split ratio ``s``, 2.0 in RTMPose). A keypoint is at
  ``(argmax_x / s, argmax_y / s)`` in the input, its score the mean of the two maxima (clipped to
  [0, 1] for files). ``K`` = 17 (COCO-17) or 26 (HALPE-26).

Per frame: the people's boxes come from the previous frame's keypoints (tracking, like the
BlazePose backend) and from the BlazePose person detector when a track is lost, when there is
none, and every ``detect_every`` frames: its full-body circle (hip centre and radius) gives a square
box. Ids persist while a person's box keeps overlapping its previous one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from mvspin.detection.blazepose import BlazePose, BlazePoseOptions
from mvspin.errors import DetectionError, import_optional

__all__ = ["OnnxPoseModel", "OnnxPoseDetector", "SIMCC_KEYPOINT_SETS", "decode_simcc", "box_crop_matrix"]

SIMCC_KEYPOINT_SETS = {17: "coco17", 26: "halpe26"}
"""Keypoints per person of the supported RTMPose models -> keypoint set."""

_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
_BOX_SCALE = 1.25
# Keypoints scoring above this shape the next frame's box (RTMPose's usual visibility threshold).
_TRACK_SCORE = 0.3


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float) -> np.ndarray:
    """``(K, Wb)`` and ``(K, Hb)`` SimCC outputs -> ``(K, 3)`` input-pixel x, y and score (mean of
    the two maxima, clipped to [0, 1])."""
    ix, iy = np.argmax(simcc_x, axis=1), np.argmax(simcc_y, axis=1)
    k = np.arange(len(ix))
    score = 0.5 * (simcc_x[k, ix] + simcc_y[k, iy])
    return np.stack([ix / split_ratio, iy / split_ratio, np.clip(score, 0.0, 1.0)], 1).astype(np.float64)


def box_crop_matrix(box: np.ndarray, width: int, height: int, scale: float = _BOX_SCALE) -> np.ndarray:
    """``(2, 3)`` affine from crop pixel coordinates to image pixel coordinates (pixel centres at
    integers) for box ``x0, y0, x1, y1`` enlarged ``scale`` times with its aspect made ``width/height``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    w, h = (box[2] - box[0]) * scale, (box[3] - box[1]) * scale
    if w * height > h * width:
        h = w * height / width
    else:
        w = h * width / height
    k = np.array([w / width, h / height])
    # continuous: X = cx + (u_c - width/2) * kx with u_c = u + 0.5, and X_idx = X - 0.5
    t = np.array([cx, cy]) - k * np.array([width / 2, height / 2]) + 0.5 * k - 0.5
    return np.array([[k[0], 0.0, t[0]], [0.0, k[1], t[1]]])


class OnnxPoseModel:
    """An RTMPose-style ONNX file, checked on load.

    Raises:
        MissingExtraError: onnxruntime is missing (names the ``detect`` extra).
        DetectionError: the file is not an ONNX model, or its inputs and
            outputs are not a SimCC pose model's (one line naming the file and what it has).
    """

    def __init__(self, path: str, threads: int = 1) -> None:
        ort = import_optional("onnxruntime", extra="detect", purpose="ONNX pose models")
        self.path = path
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DetectionError(f"{path}: not a loadable ONNX model ({first[:200]})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shapes = ", ".join(f"{o.name} {list(o.shape)}" for o in (*inputs, *outputs))
        want = ("an RTMPose SimCC pose model: input (1, 3, H, W), outputs simcc_x (1, K, W*s) and "
                "simcc_y (1, K, H*s), K 17 or 26")
        if len(inputs) != 1 or len(outputs) != 2 or len(inputs[0].shape) != 4:
            raise DetectionError(f"{path}: not {want}; it has {shapes}")
        _, c, h, w = inputs[0].shape
        ox, oy = outputs[0].shape, outputs[1].shape
        if not all(isinstance(v, int) for v in (c, h, w, *ox[1:], *oy[1:])) or c != 3 or len(ox) != 3 or len(oy) != 3:
            raise DetectionError(f"{path}: not {want}; it has {shapes}")
        k = ox[1]
        if oy[1] != k or k not in SIMCC_KEYPOINT_SETS or ox[2] * h != oy[2] * w or ox[2] % w:
            raise DetectionError(f"{path}: not {want}; it has {shapes}")
        self.input_name = inputs[0].name
        self.width, self.height = int(w), int(h)
        self.split_ratio = ox[2] / w
        self.keypoint_set = SIMCC_KEYPOINT_SETS[k]

    def estimate(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Keypoints ``(K, 3)`` (image pixels, pixel centres at integers; score) of the person in
        ``box`` (x0, y0, x1, y1) of an RGB uint8 image."""
        m = box_crop_matrix(np.asarray(box, dtype=np.float64), self.width, self.height)
        crop = cv2.warpAffine(image, m, (self.width, self.height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        x = ((crop.astype(np.float32) - _MEAN) / _STD).transpose(2, 0, 1)[None]
        sx, sy = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})
        kp = decode_simcc(np.asarray(sx)[0], np.asarray(sy)[0], self.split_ratio)
        kp[:, :2] = kp[:, :2] @ m[:, :2].T + m[:, 2]
        return kp


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    person_id: int
    box: np.ndarray
    keypoints: Optional[np.ndarray] = None


class OnnxPoseDetector:
    """The ``onnx`` backend: :class:`OnnxPoseModel` on boxes from BlazePose's person detector,
    tracked frame to frame (see the module docstring)."""

    name = "onnx"

    def __init__(self, model: OnnxPoseModel, blazepose: BlazePose, options: BlazePoseOptions) -> None:
        self.model = model
        self.blazepose, self.options = blazepose, options
        self.keypoint_set = self.model.keypoint_set
        self.reset()

    def reset(self) -> None:
        self.tracks: list[_Track] = []
        self.next_id = 0
        self.frame_index = 0
        self._lost = True

    def step(self, image: np.ndarray) -> list[tuple[int, np.ndarray]]:
        o = self.options
        if self._lost or not self.tracks or (o.detect_every > 0 and self.frame_index % o.detect_every == 0):
            for det in self.blazepose.detect(image, o.min_detection_score, o.nms_iou):
                if len(self.tracks) >= o.max_people:
                    break
                radius = float(np.hypot(*(det.keypoints[1] - det.keypoints[0])))
                c = det.keypoints[0] - 0.5  # continuous -> pixel-centre coordinates
                box = np.array([c[0] - radius, c[1] - radius, c[0] + radius, c[1] + radius])
                if all(_iou(box, t.box) < o.same_person_iou for t in self.tracks):
                    self.tracks.append(_Track(self.next_id, box))
                    self.next_id += 1
        self._lost = False
        kept: list[_Track] = []
        for track in sorted(self.tracks, key=lambda t: t.person_id):
            kp = self.model.estimate(image, track.box)
            good = kp[:, 2] > _TRACK_SCORE
            pts = kp[good, :2]
            if good.sum() < 4 or np.ptp(pts, axis=0).max() < 8:  # nothing to place the next box on
                self._lost = True
                continue
            track.keypoints = kp
            track.box = np.array([*pts.min(0), *pts.max(0)])
            if all(_iou(track.box, t.box) <= o.same_person_iou for t in kept):
                kept.append(track)
        self.tracks = kept
        self.frame_index += 1
        return [(t.person_id, t.keypoints) for t in self.tracks]
