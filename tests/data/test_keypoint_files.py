"""OpenPose / SPIN box readers, person choice and the file <-> image / frame matching rules."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mvspin.data.keypoint_files import (
    KeypointFileError,
    MissingKeypointFileError,
    choose_person,
    frame_files,
    frame_number,
    matching_file,
    openpose_keypoint_set,
    parse_person_choice,
    read_bbox_json,
    read_openpose_people,
)
from mvspin.errors import MvspinError


def _person(box: tuple[float, float, float, float], confidence: float, k: int = 25) -> dict:
    """A detection with 10 confident keypoints spread over `box`, the rest missing (0, 0, 0)."""
    x1, y1, x2, y2 = box
    keypoints = np.zeros((k, 3))
    keypoints[:10] = np.column_stack([np.linspace(x1, x2, 10), np.linspace(y1, y2, 10), np.full(10, confidence)])
    return {"person_id": [-1], "pose_keypoints_2d": keypoints.reshape(-1).tolist()}


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_read_openpose_people_keeps_every_person_and_missing_joints(tmp_path: Path):
    path = _write(tmp_path / "frame_000000_keypoints.json",
                  {"version": 1.3, "people": [_person((10, 10, 60, 110), 0.95), _person((200, 50, 400, 550), 0.6)]})
    people = read_openpose_people(path)
    assert people.shape == (2, 25, 3) and people.dtype == np.float64
    np.testing.assert_allclose(people[1, 0], [200, 50, 0.6])
    np.testing.assert_allclose(people[0, 9], [60, 110, 0.95])
    np.testing.assert_array_equal(people[:, 10:], 0.0)  # missing joints stay (0, 0, 0)
    empty = read_openpose_people(_write(tmp_path / "empty.json", {"people": []}))
    assert empty.shape == (0, 0, 3)


def test_read_openpose_people_errors_name_the_file(tmp_path: Path):
    with pytest.raises(MissingKeypointFileError, match="missing_keypoints.json: no such file"):
        read_openpose_people(tmp_path / "missing_keypoints.json")
    assert issubclass(MissingKeypointFileError, FileNotFoundError)
    cases = {
        "broken.json": ({"people": [{"pose_keypoints_2d": [1, 2]}]}, "broken.json: person 0 has no valid"),
        "other.json": ([1, 2, 3], "other.json: not an OpenPose file"),
        "mixed.json": ({"people": [_person((0, 0, 9, 9), 0.9), _person((0, 0, 9, 9), 0.9, k=18)]},
                       r"mixed.json: people have different keypoint counts \[18, 25\]"),
        "nan.json": ({"people": [{"pose_keypoints_2d": [1, "NaN", 0.5]}]}, "nan.json: person 0 has non-finite"),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(KeypointFileError, match=message) as info:
            read_openpose_people(_write(tmp_path / name, data))
        assert isinstance(info.value, MvspinError) and isinstance(info.value, ValueError)
    (tmp_path / "text.json").write_text("{not json")
    with pytest.raises(KeypointFileError, match="text.json: not valid JSON"):
        read_openpose_people(tmp_path / "text.json")


def test_choose_person():
    people = np.zeros((3, 25, 3))
    people[0, :2] = [[10, 10, 0.95], [60, 110, 0.95]]  # side 100, summed confidence 1.9
    people[1, :3] = [[200, 50, 0.6], [400, 550, 0.6], [300, 300, 0.05]]  # side 500, confidence 1.25
    people[2, :2] = [[0, 0, 0.05], [900, 900, 0.05]]  # huge but below the 0.1 confidence threshold
    assert choose_person(people) == 1
    assert choose_person(people, "most_confident") == 0
    assert choose_person(people, 2) == 2 and choose_person(people, -1) == 2
    assert choose_person(people, "largest", conf_threshold=0.01) == 2
    with pytest.raises(KeypointFileError, match="index 3 out of range: 3 people"):
        choose_person(people, 3)
    with pytest.raises(KeypointFileError, match="'largest', 'most_confident'"):
        choose_person(people, "tallest")
    with pytest.raises(KeypointFileError, match="no people detected"):
        choose_person(np.zeros((0, 0, 3)))
    assert [parse_person_choice(v) for v in ("largest", "all", "2", "-1", 3)] == ["largest", "all", 2, -1, 3]
    with pytest.raises(ValueError, match="person must be largest, most_confident, all or an index"):
        parse_person_choice("first")


def test_openpose_keypoint_set():
    assert openpose_keypoint_set(25) == "openpose25"
    assert openpose_keypoint_set(17) == "coco17" and openpose_keypoint_set(26) == "halpe26"
    with pytest.raises(KeypointFileError, match=r"18 keypoints per person.*25 \(openpose25\)"):
        openpose_keypoint_set(18)


def test_read_bbox_json(tmp_path: Path):
    np.testing.assert_allclose(read_bbox_json(_write(tmp_path / "im1010_bbox.json", {"bbox": [10.5, 20, 100, 300]})),
                               [10.5, 20, 110.5, 320])
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_bbox_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeypointFileError, match="bad.json: not valid JSON"):
        read_bbox_json(tmp_path / "bad.json")
    for data, message in (({"box": [1, 2, 3, 4]}, "bad.json.*\"bbox\""),
                          ({"bbox": [1, 2, -3, 4]}, "bad.json.*positive width"),
                          ({"bbox": [1, 2, 3]}, "bad.json: 'bbox' must be 4 numbers")):
        with pytest.raises(KeypointFileError, match=message):
            read_bbox_json(_write(tmp_path / "bad.json", data))


def test_frame_number():
    assert frame_number("walk_000000000012_keypoints.json") == 12
    assert frame_number(Path("cam2") / "frame7_v3.json") == 3  # the last number wins
    assert frame_number("cam1/rest.json") is None


def test_matching_file_and_frame_files(tmp_path: Path):
    folder = tmp_path / "keypoints"
    folder.mkdir()
    own = _write(folder / "img_keypoints.json", {"people": []})
    _write(folder / "img.json", {"people": []})
    assert matching_file(folder, tmp_path / "img.png", ("{stem}_keypoints.json", "{stem}.json"), "OpenPose") == own
    assert matching_file(own, tmp_path / "other.png", ("{stem}.json",), "OpenPose") == own  # one file for all
    assert matching_file(None, tmp_path / "img.png", ("{stem}.json",), "OpenPose") is None
    with pytest.raises(MissingKeypointFileError, match="missing bbox file: none of x.json, x_bbox.json in"):
        matching_file(folder, tmp_path / "x.jpg", ("{stem}.json", "{stem}_bbox.json"), "bbox")

    frames = tmp_path / "frames"
    (frames / "walk").mkdir(parents=True)
    for i in (0, 3, 12):
        _write(frames / "walk" / f"walk_{i:012d}_keypoints.json", {"people": []})
    _write(frames / "walk" / "other_000000000005_keypoints.json", {"people": []})  # another video's
    found = frame_files(frames, tmp_path / "walk.mp4")
    assert sorted(found) == [0, 3, 12] and found[12].name == "walk_000000000012_keypoints.json"
    single = _write(tmp_path / "box.json", {"bbox": [0, 0, 1, 1]})
    assert frame_files(single, tmp_path / "walk.mp4") == single and frame_files(None, "walk.mp4") is None
    (tmp_path / "unnumbered").mkdir()
    _write(tmp_path / "unnumbered" / "rest.json", {})
    with pytest.raises(MissingKeypointFileError, match="no numbered .json files in"):
        frame_files(tmp_path / "unnumbered", tmp_path / "walk.mp4")
