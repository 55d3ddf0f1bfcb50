"""PoseTracker's bookkeeping with a scripted stand-in for the two models: when the detector runs,
ids that persist, a lost person found again in the same frame, a newcomer found by the periodic
detection."""
from __future__ import annotations

import numpy as np

from mvspin.detection.blazepose import BlazePoseOptions, PersonDetection, PoseTracker


class ScriptedModel:
    """People are hip centres per frame (``scene[frame] -> [(x, y)]``); the detector finds them
    all, the landmark model sees a person when its ROI centre is within 20 px of one, except
    where ``blink`` says the landmark model misses it once."""

    def __init__(self, scene, blink=()):
        self.scene, self.blink = scene, set(blink)
        self.frame, self.detect_calls, self.landmark_calls = 0, [], 0

    def detect(self, image, min_score, nms_iou):
        self.detect_calls.append(self.frame)
        out = []
        for x, y in self.scene[self.frame]:
            kp = np.array([[x, y], [x, y - 100.0], [x, y - 60], [x, y - 120]])
            out.append(PersonDetection(np.array([x - 50, y - 150, x + 50, y + 50.0]), kp, 0.9))
        return out

    def landmarks(self, image, roi):
        self.landmark_calls += 1
        for x, y in self.scene[self.frame]:
            if np.hypot(*(roi.centre - (x, y))) < 20 and (self.frame, x) not in self.blink:
                pts = np.zeros((39, 4))
                pts[:33, 0] = x + np.linspace(-30, 30, 33)
                pts[:33, 1] = y + np.linspace(-150, 50, 33)
                pts[:33, 2:] = 0.9
                pts[33, :2], pts[34, :2] = (x, y), (x, y - 100)
                return pts, 0.99
        return np.zeros((39, 4)), 0.01


def run(model, frames, **options):
    tracker = PoseTracker(model, BlazePoseOptions(**options))
    out = []
    for f in range(frames):
        model.frame = f
        out.append({pid: kp for pid, kp in tracker.step(np.zeros((8, 8, 3), np.uint8))})
    return out, tracker


def test_the_detector_runs_only_when_needed_and_ids_persist():
    # A walks right 5 px a frame; B comes in at frame 6 and stays
    scene = [[(100 + 5 * f, 300)] + ([(400, 300)] if f >= 6 else []) for f in range(12)]
    model = ScriptedModel(scene)
    out, tracker = run(model, 12, detect_every=4)
    assert model.detect_calls == [0, 4, 8]  # first frame, then only the periodic runs
    assert [sorted(o) for o in out] == [[0]] * 8 + [[0, 1]] * 4  # B found at frame 8, id 1
    np.testing.assert_allclose(out[11][0][16, 0] + 0.5, 100 + 5 * 11)  # A's middle point follows A
    assert np.allclose(out[11][1][:, 2], 0.81)  # confidence = visibility x presence


def test_a_lost_person_is_found_again_in_the_same_frame():
    scene = [[(100.0, 300.0)] for _ in range(6)]
    scene[3] = [(160.0, 300.0)]  # a jump the ROI cannot follow: the landmark model misses
    scene[4] = scene[5] = [(160.0, 300.0)]
    model = ScriptedModel(scene)
    out, _ = run(model, 6, detect_every=0)
    assert model.detect_calls == [0, 3]
    assert all(len(o) == 1 for o in out)  # nobody missing in any frame
    assert list(out[3]) == [1]  # the track was lost: the person found again is a new id


def test_two_tracks_on_one_person_keep_the_older_id():
    scene = [[(100.0, 300.0), (104.0, 300.0)] for _ in range(3)]  # two detections of one person
    model = ScriptedModel(scene)
    out, tracker = run(model, 3, detect_every=0)
    assert [list(o) for o in out] == [[0]] * 3 and len(tracker.tracks) == 1
