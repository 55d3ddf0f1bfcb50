"""BlazePose's pre- and post-processing without the model: anchors, decoding, NMS, ROI, crop."""
from __future__ import annotations

import numpy as np

from mvspin.detection.blazepose import (
    Roi,
    alignment_roi,
    decode_detections,
    roi_crop,
    roi_to_image_matrix,
    ssd_anchors,
    weighted_nms,
)


def test_anchor_layout_matches_the_detector_output():
    a = ssd_anchors()
    assert a.shape == (2254, 2)  # the detector's (1, 2254, 12) output rows
    # stride 8: 28x28 cells x 2 anchors, row by row, the anchors of one cell together
    np.testing.assert_allclose(a[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(a[1], a[0])
    np.testing.assert_allclose(a[2], [1.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(a[2 * 28], [0.5 / 28, 1.5 / 28])
    # stride 16 starts at 1568; the three stride-32 layers share one 7x7 grid, 6 anchors a cell
    np.testing.assert_allclose(a[1568], [0.5 / 14, 0.5 / 14])
    np.testing.assert_allclose(a[1568 + 392: 1568 + 392 + 6], np.tile([0.5 / 7, 0.5 / 7], (6, 1)))
    np.testing.assert_allclose(a[-1], [6.5 / 7, 6.5 / 7])


def test_decoding_offsets_are_relative_to_the_anchor_in_input_pixels():
    anchors = ssd_anchors()
    raw = np.zeros((2254, 12), np.float32)
    scores = np.full(2254, -10.0, np.float32)
    i = 1568 + 5 * 14 * 2 + 3 * 2  # stride-16 cell (x=3, y=5)
    raw[i] = [11.2, -22.4, 56.0, 112.0, 0, 0, 0, -44.8, 0, 0, 0, 0]
    scores[i] = 3.0
    rows, s = decode_detections(raw, scores, anchors)
    assert len(rows) == 1 and abs(s[0] - 1 / (1 + np.exp(-3.0))) < 1e-6
    cx, cy = 3.5 / 14 + 0.05, 5.5 / 14 - 0.1
    np.testing.assert_allclose(rows[0, :4], [cx - 0.125, cy - 0.25, cx + 0.125, cy + 0.25], atol=1e-6)
    np.testing.assert_allclose(rows[0, 4:8], [3.5 / 14, 5.5 / 14, 3.5 / 14, 5.5 / 14 - 0.2], atol=1e-6)


def test_weighted_nms_merges_overlaps_and_keeps_separate_people():
    rows = np.array([[0, 0, 10, 10, 5.0], [1, 0, 11, 10, 7.0], [50, 50, 60, 60, 1.0]], float)
    scores = np.array([0.9, 0.3, 0.8])
    out = weighted_nms(rows, scores, 0.3)
    assert len(out) == 2 and out[0][1] == 0.9 and out[1][1] == 0.8
    np.testing.assert_allclose(out[0][0], (0.9 * rows[0] + 0.3 * rows[1]) / 1.2)
    np.testing.assert_allclose(out[1][0], rows[2])


def test_alignment_roi_points_the_body_up():
    upright = alignment_roi(np.array([100.0, 200.0]), np.array([100.0, 120.0]))
    assert abs(upright.rotation) < 1e-12 and abs(upright.size - 2 * 80 * 1.25) < 1e-9
    lying = alignment_roi(np.array([100.0, 200.0]), np.array([180.0, 200.0]))  # head to the right
    m = roi_to_image_matrix(lying, 256)
    up_in_crop = m[:, :2] @ np.array([0.0, -1.0])
    np.testing.assert_allclose(up_in_crop / np.linalg.norm(up_in_crop), [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(m @ [128, 128, 1], [100, 200])  # crop centre = hip centre


def _dot_image(h, w, x, y):
    img = np.zeros((h, w, 3), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    # a smooth blob centred on continuous point (x, y): pixel (i, j) has centre (j + 0.5, i + 0.5)
    blob = np.exp(-((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2) / (2 * 12.0 ** 2))
    img[..., 1] = np.round(255 * blob).astype(np.uint8)
    return img


def _centroid(crop):
    w = crop[..., 1].astype(float)
    yy, xx = np.mgrid[0:crop.shape[0], 0:crop.shape[1]]
    return np.array([(w * (xx + 0.5)).sum() / w.sum(), (w * (yy + 0.5)).sum() / w.sum()])


def test_crop_shows_the_point_the_matrix_names_rotated_and_shrunk():
    # a point 60 px right of and 40 px above the ROI centre of a rotated, large ROI (the 4x
    # shrinking path) must land in the crop where the inverse of roi_to_image_matrix says
    for size, rotation in ((300.0, 0.0), (1000.0, 0.7), (1000.0, -2.5)):
        roi = Roi(np.array([640.0, 500.0]), size, rotation)
        point = np.array([700.0, 460.0])
        crop = roi_crop(_dot_image(1000, 1300, *point), roi)
        m = np.vstack([roi_to_image_matrix(roi), [0, 0, 1]])
        expected = (np.linalg.inv(m) @ [*point, 1])[:2]
        assert np.linalg.norm(_centroid(crop) - expected) < 0.3, (size, rotation)
