"""BlazePose (full) run through ``ai_edge_litert``: person detector, ROI, landmarks, tracking.

The two models are the ones mediapipe 0.10.21 ships (:mod:`mvspin.detection.models`); this module
re-implements, from the models' published facts, the graph around them that mediapipe would run:

1. **Detector** (``pose_detection.tflite``): the RGB image letterboxed (aspect kept, padded
   symmetrically) to 224x224, values in [-1, 1]. Outputs ``(1, 2254, 12)`` box and keypoint
   offsets and ``(1, 2254, 1)`` score logits for 2254 SSD anchors. The anchors follow the model's
   anchor options: 5 layers with strides 8, 16, 32, 32, 32, one aspect ratio (1.0) plus the
   interpolated scale (2 anchors per layer and location), fixed anchor size, centre offset 0.5;
   consecutive layers of equal stride share one grid, so the grids are 28x28x2, 14x14x2 and
   7x7x6 (1568 + 392 + 294 = 2254). Each row is ``(dx, dy, w, h, kx0, ky0, ..., kx3, ky3)`` in
   224-pixel units relative to the anchor centre; scores pass through a sigmoid (logits clipped
   to +-100), candidates under 0.5 are dropped and the rest merged by weighted non-maximum
   suppression (IoU 0.3). The four keypoints: 0 hip centre, 1 a point whose distance to the
   hip centre gives the full-body size and whose direction gives the body's rotation, 2 and 3
   the same for the upper body.
2. **ROI** from two alignment points (start ``a``, end ``b``): centre ``a``, rotation such that
   ``b - a`` points up in the crop, side ``2 |b - a|`` enlarged 1.25 times (a square in pixels).
3. **Landmarks** (``pose_landmark_full.tflite``): the ROI warped (rotation included) to 256x256
   RGB in [0, 1]. Outputs ``(1, 195)`` = 39 x (x, y, z, visibility logit, presence logit) in
   crop pixels and ``(1, 1)`` the probability that a person is in the crop. Points 0-32 are the
   33 BlazePose landmarks; 33 and 34 are the hip centre and the full-body alignment point from
   which the next frame's ROI is made (tracking), 35-38 the upper-body ones (unused).
4. **Tracking**: each person keeps its ROI from frame to frame (the next ROI from this frame's
   points 33-34); the detector runs again only when a track is lost (person probability under
   ``min_presence``), when there is no track, and every ``detect_every`` frames to find people
   who came in. A detection that falls on an existing person (its hip centre inside the
   person's landmark box) is not a new person; two tracks that end on one person (their
   landmark boxes overlap) keep the older id. A person lost in a frame is looked for again by the
   detector in that same frame.

Coordinates: continuous pixel coordinates inside this module (the image spans ``[0, W] x [0, H]``),
converted to pixel-centre (OpenCV / OpenPose) coordinates, ``x - 0.5``, on output.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from mvspin.detection.models import BlazePoseFiles
from mvspin.errors import DetectionError, import_optional

__all__ = ["BlazePose", "BlazePoseOptions", "PersonDetection", "Roi", "TrackedPerson", "PoseTracker",
           "ssd_anchors", "decode_detections", "weighted_nms", "alignment_roi", "roi_to_image_matrix", "roi_crop"]

DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
NUM_LANDMARKS = 33
# Anchor layout of the detector (see the module docstring).
_STRIDES = (8, 16, 32, 32, 32)
_ANCHORS_PER_LAYER = 2  # aspect ratio 1.0 and the interpolated-scale anchor
_ROI_SCALE = 1.25
_LOGIT_CLIP = 100.0


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the C++ runtime's stderr (LiteRT prints "INFO: Created TensorFlow Lite XNNPACK
    delegate" on every interpreter, into the progress bars; no environment setting stops it).
    Errors still arrive as Python exceptions."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=np.float64), -_LOGIT_CLIP, _LOGIT_CLIP)))


def ssd_anchors(input_size: int = DETECTOR_SIZE, strides: tuple[int, ...] = _STRIDES,
                anchors_per_layer: int = _ANCHORS_PER_LAYER, offset: float = 0.5) -> np.ndarray:
    """Anchor centres ``(N, 2)`` in [0, 1] (x, y) for a fixed-size SSD anchor layout.

    Consecutive layers with the same stride share a grid and stack their anchors at each
    location; locations are ordered row by row, anchors of one location together.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        repeat = 1
        while layer + repeat < len(strides) and strides[layer + repeat] == stride:
            repeat += 1
        cells = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid((np.arange(cells) + offset) / cells, (np.arange(cells) + offset) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], 1)
        centres.append(np.repeat(grid, anchors_per_layer * repeat, axis=0))
        layer += repeat
    return np.concatenate(centres).astype(np.float32)


@dataclass(frozen=True)
class PersonDetection:
    """One detector result in image coordinates (continuous pixels).

    Attributes:
        box: ``(4,)`` x0, y0, x1, y1.
        keypoints: ``(4, 2)`` hip centre, full-body point, shoulder centre, upper-body point.
        score: probability.
    """

    box: np.ndarray
    keypoints: np.ndarray
    score: float


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
                      min_score: float = 0.5, input_size: int = DETECTOR_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Decode the detector's outputs into candidates in the detector's normalised input frame.

    Args:
        raw_boxes: ``(N, 12)``; raw_scores: ``(N,)`` logits or ``(N, 1)``; anchors: ``(N, 2)``.

    Returns:
        ``rows (M, 12)`` = box x0, y0, x1, y1 then 4 keypoints (x, y), all in [0, 1] units of the
        input, and ``scores (M,)``, for candidates scoring at least ``min_score``.
    """
    scores = _sigmoid(np.asarray(raw_scores, dtype=np.float32).reshape(-1))
    keep = scores >= min_score
    raw = np.asarray(raw_boxes, dtype=np.float32)[keep] / input_size
    a = anchors[keep]
    centre = raw[:, 0:2] + a
    half = raw[:, 2:4] / 2
    kps = raw[:, 4:12].reshape(-1, 4, 2) + a[:, None]
    rows = np.concatenate([centre - half, centre + half, kps.reshape(-1, 8)], 1)
    return rows, scores[keep]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(rows: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3) -> list[tuple[np.ndarray, float]]:
    """Weighted non-maximum suppression: each cluster (candidates overlapping the best remaining
    one by more than ``iou_threshold``) becomes the score-weighted mean of its rows, with the
    best score. ``rows (M, C)`` start with a box x0, y0, x1, y1. Returns ``[(row, score)]`` best first."""
    order = np.argsort(-scores, kind="stable")
    rows, scores = rows[order], scores[order]
    out = []
    remaining = np.ones(len(rows), dtype=bool)
    for i in range(len(rows)):
        if not remaining[i]:
            continue
        cluster = remaining & (_iou(rows[i], rows) > iou_threshold)
        cluster[i] = True
        w = scores[cluster]
        out.append(((rows[cluster] * w[:, None]).sum(0) / w.sum(), float(scores[i])))
        remaining &= ~cluster
    return out


@dataclass(frozen=True)
class Roi:
    """A square, rotated region of the image (continuous pixels).

    Attributes:
        centre: ``(2,)``; size: side length; rotation: the crop's up direction is the image
            direction ``(sin r, -cos r)`` (0 = upright).
    """

    centre: np.ndarray
    size: float
    rotation: float


def alignment_roi(start: np.ndarray, end: np.ndarray, scale: float = _ROI_SCALE) -> Roi:
    """The ROI of two alignment points: centred on ``start``, ``end - start`` pointing up in the
    crop, side ``2 |end - start| * scale``."""
    d = np.asarray(end, dtype=np.float64) - np.asarray(start, dtype=np.float64)
    length = float(np.hypot(d[0], d[1]))
    return Roi(np.asarray(start, dtype=np.float64), 2.0 * length * scale, float(np.arctan2(d[0], -d[1])))


def roi_to_image_matrix(roi: Roi, crop_size: int = LANDMARK_SIZE) -> np.ndarray:
    """``(2, 3)`` affine map from crop coordinates (continuous, ``[0, crop_size]^2``) to image
    coordinates (continuous)."""
    c, s = np.cos(roi.rotation), np.sin(roi.rotation)
    k = roi.size / crop_size
    rot = np.array([[c, -s], [s, c]]) * k
    t = roi.centre - rot @ np.array([crop_size / 2, crop_size / 2])
    return np.concatenate([rot, t[:, None]], 1)


def roi_crop(image: np.ndarray, roi: Roi, size: int = LANDMARK_SIZE) -> np.ndarray:
    """The ROI of ``image`` (``(H, W, C)``) warped to a ``(size, size, C)`` crop: crop point
    ``(u, v)`` (continuous) shows image point ``roi_to_image_matrix(roi, size) @ (u, v, 1)``;
    outside the image is black."""
    m = roi_to_image_matrix(roi, size)
    k = roi.size / size  # image pixels per crop pixel
    src = image
    if k > 2.0:
        # Shrinking by more than 2x with bilinear sampling aliases: average the ROI's
        # bounding region down to about the crop's resolution first.
        corners = m @ np.array([[0, 0, 1], [size, 0, 1], [0, size, 1],
                                [size, size, 1]], dtype=np.float64).T
        h, w = image.shape[:2]
        x0, y0 = np.clip(np.floor(corners.min(1)).astype(int), 0, [w, h])
        x1, y1 = np.clip(np.ceil(corners.max(1)).astype(int), 0, [w, h])
        n = int(k)  # an integer factor: OpenCV's fast path of area averaging
        x1, y1 = x0 + (x1 - x0) // n * n, y0 + (y1 - y0) // n * n
        if x1 - x0 >= n and y1 - y0 >= n:
            region = image[y0:y1, x0:x1]
            sw, sh = (x1 - x0) // n, (y1 - y0) // n
            src = cv2.resize(region, (sw, sh), interpolation=cv2.INTER_AREA)
            fx = fy = 1.0 / n
            # image continuous -> small continuous: ((X - x0) * fx, (Y - y0) * fy)
            m = np.array([[fx, 0, -x0 * fx], [0, fy, -y0 * fy]]) @ np.vstack([m, [0, 0, 1]])
    # warpAffine maps destination pixel centres (u + 0.5) through m to source continuous
    # coordinates; shift both sides to pixel-centre indices.
    m_idx = m.copy()
    m_idx[:, 2] += m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    crop = cv2.warpAffine(src, m_idx, (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
    return crop


def _landmark_box(points: np.ndarray) -> np.ndarray:
    return np.array([*points[:, :2].min(0), *points[:, :2].max(0)])


@dataclass(frozen=True)
class BlazePoseOptions:
    """Thresholds of the BlazePose pipeline (mediapipe's defaults where it has them).

    Attributes:
        min_detection_score: detector candidates below this probability are dropped (0.5).
        min_presence: a track whose person probability falls below this is lost (0.5).
        nms_iou: overlap above which detector candidates merge (0.3).
        detect_every: run the detector every this many frames even while all tracks hold (to
            find people who came in); 0: only when a track is lost or there is none.
        max_people: at most this many people are tracked.
        same_person_iou: two tracks whose landmark boxes overlap more than this are one person.
    """

    min_detection_score: float = 0.5
    min_presence: float = 0.5
    nms_iou: float = 0.3
    detect_every: int = 30
    max_people: int = 4
    same_person_iou: float = 0.5


class BlazePose:
    """The two BlazePose models on ``ai_edge_litert`` (one interpreter each, ``threads`` each).

    Raises:
        MissingExtraError: ``ai_edge_litert`` is not installed (names the ``detect`` extra).
        DetectionError: a file is not the expected model.
    """

    def __init__(self, files: BlazePoseFiles, threads: int = 1) -> None:
        Interpreter = import_optional("ai_edge_litert.interpreter", extra="detect", purpose="BlazePose detection",
                                      package="ai-edge-litert").Interpreter
        self.detector = self._load(Interpreter, files.detector, threads, [1, DETECTOR_SIZE, DETECTOR_SIZE, 3],
                                   {(1, 2254, 12), (1, 2254, 1)})
        self.landmarker = self._load(Interpreter, files.landmarks, threads, [1, LANDMARK_SIZE, LANDMARK_SIZE, 3],
                                     {(1, 195), (1, 1)})
        self.anchors = ssd_anchors()
        if len(self.anchors) != 2254:
            raise AssertionError("anchor layout does not match the detector")
        self._det_in = self.detector.get_input_details()[0]["index"]
        outs = {tuple(d["shape"]): d["index"] for d in self.detector.get_output_details()}
        self._det_boxes, self._det_scores = outs[(1, 2254, 12)], outs[(1, 2254, 1)]
        self._lm_in = self.landmarker.get_input_details()[0]["index"]
        outs = {tuple(d["shape"]): d["index"] for d in self.landmarker.get_output_details()}
        self._lm_points, self._lm_flag = outs[(1, 195)], outs[(1, 1)]

    @staticmethod
    def _load(interpreter_class, path, threads: int, input_shape: list[int], outputs: set[tuple[int, ...]]):
        try:
            it = interpreter_class(model_path=str(path), num_threads=int(threads))
            with _quiet_stderr():
                it.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise DetectionError(f"{path}: not a TensorFlow Lite model ({err})") from None
        shapes = {tuple(int(s) for s in d["shape"]) for d in it.get_output_details()}
        if list(it.get_input_details()[0]["shape"]) != input_shape or not outputs <= shapes:
            raise DetectionError(f"{path}: not the expected BlazePose model (inputs/outputs differ)")
        return it

    def detect(self, image: np.ndarray, min_score: float = 0.5, nms_iou: float = 0.3) -> list[PersonDetection]:
        """People in an RGB ``(H, W, 3)`` uint8 image, best first (image coordinates, continuous)."""
        h, w = image.shape[:2]
        scale = DETECTOR_SIZE / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        # A full-HD frame shrinks ~9x: area averaging keeps this independent of the input
        # resolution (a 2x smaller video gives nearly the same input).
        n = int(1.0 / scale)
        ew, eh = w, h  # the image extent the letterbox shows (a few edge pixels trimmed below)
        if n >= 2:  # area-average by an integer factor first (fast), then the rest bilinearly
            ew, eh = w // n * n, h // n * n
            image = cv2.resize(image[:eh, :ew], (ew // n, eh // n), interpolation=cv2.INTER_AREA)
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        px, py = (DETECTOR_SIZE - nw) // 2, (DETECTOR_SIZE - nh) // 2
        # the padding is black in the model's range [-1, 1], as mediapipe's letterbox border
        canvas = np.full((DETECTOR_SIZE, DETECTOR_SIZE, 3), -1.0, dtype=np.float32)
        canvas[py:py + nh, px:px + nw] = small.astype(np.float32) / 127.5 - 1.0
        self.detector.set_tensor(self._det_in, canvas[None])
        self.detector.invoke()
        rows, scores = decode_detections(self.detector.get_tensor(self._det_boxes)[0],
                                         self.detector.get_tensor(self._det_scores)[0], self.anchors, min_score)
        out = []
        for row, score in weighted_nms(rows, scores, nms_iou):
            pts = row.reshape(-1, 2) * DETECTOR_SIZE
            # letterbox removal: input pixel -> image continuous coordinates
            pts = (pts - np.array([px, py])) * (np.array([ew, eh]) / np.array([nw, nh]))
            out.append(PersonDetection(np.concatenate([pts[0], pts[1]]), pts[2:], score))
        return out

    def landmarks(self, image: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """Landmarks of the person in ``roi`` of an RGB uint8 image.

        Returns:
            ``points (39, 4)``: x, y (image, continuous pixels), visibility and presence
            (probabilities), and the probability that a person is in the ROI.
        """
        crop = roi_crop(image, roi)
        self.landmarker.set_tensor(self._lm_in, (crop.astype(np.float32) / 255.0)[None])
        self.landmarker.invoke()
        raw = self.landmarker.get_tensor(self._lm_points).reshape(39, 5)
        flag = float(self.landmarker.get_tensor(self._lm_flag).reshape(-1)[0])
        full = roi_to_image_matrix(roi)
        xy = raw[:, :2].astype(np.float64) @ full[:, :2].T + full[:, 2]
        return np.concatenate([xy, _sigmoid(raw[:, 3:5]).astype(np.float64)], 1), flag


@dataclass
class TrackedPerson:
    """One person followed across frames.

    Attributes:
        person_id: persistent id (0, 1, ... in order of first detection).
        roi: where to look in the next frame.
        points: ``(39, 4)`` this frame's landmarks (x, y, visibility, presence).
        presence: probability that the person is in the ROI.
    """

    person_id: int
    roi: Roi
    points: Optional[np.ndarray] = None
    presence: float = 0.0


@dataclass
class PoseTracker:
    """BlazePose over a sequence of frames: each person's ROI carried from frame to frame, the
    detector run only when needed (see the module docstring), persistent ids.

    Example:
        >>> tracker = PoseTracker(BlazePose(find_blazepose()))  # doctest: +SKIP
        >>> people = tracker.step(frame_rgb)  # [(person_id, keypoints (33, 3))]  # doctest: +SKIP
    """

    model: BlazePose
    options: BlazePoseOptions = field(default_factory=BlazePoseOptions)
    tracks: list[TrackedPerson] = field(default_factory=list)
    frame_index: int = 0
    next_id: int = 0
    detector_runs: int = 0
    _lost: bool = True

    def step(self, image: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """One RGB uint8 frame ``(H, W, 3)`` -> ``[(person_id, keypoints (33, 3))]`` sorted by id:
        x, y in pixel-centre image coordinates and confidence = visibility x presence of each
        landmark (both in [0, 1])."""
        o = self.options
        periodic = o.detect_every > 0 and self.frame_index % o.detect_every == 0
        detected = self._lost or not self.tracks or periodic
        if detected:
            self._add_detections(image)
        kept = self._follow(image, self.tracks)
        if self._lost and not detected:
            # A person lost now: look again at once, not one frame late. _lost stays set only
            # when a new candidate fails too (then the detector runs again next frame).
            self.tracks = list(kept)
            self._add_detections(image)
            kept += self._follow(image, self.tracks[len(kept):])
        # Two tracks drifted onto one person: keep the older id.
        kept.sort(key=lambda t: t.person_id)
        unique: list[TrackedPerson] = []
        for track in kept:
            box = _landmark_box(track.points[:NUM_LANDMARKS])
            if all(_iou(box, _landmark_box(u.points[:NUM_LANDMARKS])[None])[0] <= o.same_person_iou for u in unique):
                unique.append(track)
        self.tracks = unique
        self.frame_index += 1
        out = []
        for track in self.tracks:
            p = track.points[:NUM_LANDMARKS]
            out.append((track.person_id, np.stack([p[:, 0] - 0.5, p[:, 1] - 0.5, p[:, 2] * p[:, 3]], 1)))
        return out

    def _follow(self, image: np.ndarray, tracks: list[TrackedPerson]) -> list[TrackedPerson]:
        """Landmarks of each track in this frame; the tracks still present, their next ROI set.
        Sets ``_lost`` when one is gone."""
        self._lost = False
        kept = []
        for track in tracks:
            points, presence = self.model.landmarks(image, track.roi)
            if presence < self.options.min_presence:
                self._lost = True
                continue
            track.points, track.presence = points, presence
            track.roi = alignment_roi(points[33, :2], points[34, :2])
            kept.append(track)
        return kept

    def _add_detections(self, image: np.ndarray) -> None:
        o = self.options
        self.detector_runs += 1
        for det in self.model.detect(image, o.min_detection_score, o.nms_iou):
            if len(self.tracks) >= o.max_people:
                break
            # The same person as a track when the hip centres are close relative to the body's
            # size (the ROI side is 2.5 body radii): overlapping people stay apart.
            hip = det.keypoints[0]
            if any(np.hypot(*(t.roi.centre - hip)) < 0.1 * t.roi.size for t in self.tracks):
                continue
            self.tracks.append(TrackedPerson(self.next_id, alignment_roi(det.keypoints[0], det.keypoints[1])))
            self.next_id += 1
