"""Readers for 2D keypoint and box files, and the rules that match them to images and frames.

Formats:

- **OpenPose JSON** (one file per image or video frame): ``{"people": [{"pose_keypoints_2d":
  [x0, y0, c0, x1, y1, c1, ...]}, ...]}``, pixels, confidence in [0, 1]; joints OpenPose did
  not find are written as ``0, 0, 0``. :func:`read_openpose_people` parses a file once into a
  ``(P, K, 3)`` array; :func:`choose_person` picks one row.
- **SPIN box JSON**: ``{"bbox": [x, y, w, h]}`` (top-left corner, width, height, pixels);
  :func:`read_bbox_json`.

Matching: an image ``<stem>.<ext>`` takes ``<stem>_keypoints.json`` / ``<stem>.json`` from a
folder (:func:`matching_file`); a video's frames take the numbered files of a folder, the frame
being the last number in the file name (:func:`frame_number`, :func:`frame_files`), as OpenPose
names them (``<stem>_000000000012_keypoints.json``).

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "clip_000000000012_keypoints.json"
    >>> _ = path.write_text(json.dumps({"people": [{"pose_keypoints_2d": [10, 20, 0.9] * 25}]}))
    >>> people = read_openpose_people(path)
    >>> people.shape, openpose_keypoint_set(people.shape[1]), frame_number(path)
    ((1, 25, 3), 'openpose25', 12)
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Union

import numpy as np

from mvspin.errors import KeypointFileError, MissingKeypointFileError
from mvspin.geometry import KEYPOINT_MIN_CONFIDENCE

__all__ = [
    "KeypointFileError",
    "MissingKeypointFileError",
    "OPENPOSE_KEYPOINT_SETS",
    "PERSON_CHOICES",
    "PersonChoice",
    "choose_person",
    "frame_files",
    "frame_number",
    "matching_file",
    "openpose_frame_json",
    "openpose_keypoint_set",
    "parse_person_choice",
    "read_bbox_json",
    "read_openpose_people",
]


OPENPOSE_KEYPOINT_SETS: dict[int, str] = {
    25: "openpose25",  # OpenPose BODY_25 (its default model; what SPIN's demo reads)
    17: "coco17",  # MS-COCO order, as COCO-trained detectors write OpenPose-style files
    26: "halpe26",  # HALPE-26 (RTMPose / AlphaPose body)
    33: "blazepose33",  # BlazePose / MediaPipe Pose (what `mvspin detect` writes by default)
}
"""Keypoints per person in an OpenPose-format file -> mvspin keypoint set. BODY_25B files also
hold 25 points per person: name ``openpose25b`` explicitly where such files are read."""

PERSON_CHOICES = ("largest", "most_confident")
"""Named rules of :func:`choose_person` (an integer index is accepted too)."""

PersonChoice = Union[str, int]

# A keypoint counts as found above the crop-box rule's confidence (one home: mvspin.geometry).
DEFAULT_CONF_THRESHOLD = KEYPOINT_MIN_CONFIDENCE

_FRAME_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise MissingKeypointFileError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KeypointFileError(f"{path}: not valid JSON ({err})") from None


def read_openpose_people(path: str | os.PathLike[str]) -> np.ndarray:
    """Every person's ``pose_keypoints_2d`` of one OpenPose JSON file.

    Args:
        path: OpenPose output for one image (``{"people": [{"pose_keypoints_2d": [...]}]}``).

    Returns:
        ``(P, K, 3)`` float64 (x, y, confidence), pixels; ``P`` may be 0 (shape ``(0, 0, 3)``).
        Missing joints stay ``(0, 0, 0)`` as OpenPose writes them.

    Raises:
        MissingKeypointFileError: no such file.
        KeypointFileError: invalid JSON, no ``people`` list, a person without a flat list of
            (x, y, confidence) triples, non-finite values, or people with different K.
    """
    path = Path(path)
    data = _read_json(path)
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        raise KeypointFileError(f"{path}: not an OpenPose file (no 'people' list)")
    rows = []
    for index, entry in enumerate(people):
        values = entry.get("pose_keypoints_2d") if isinstance(entry, dict) else None
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            array = np.empty(0)
        if array.ndim != 1 or array.size == 0 or array.size % 3:
            raise KeypointFileError(f"{path}: person {index} has no valid 'pose_keypoints_2d' (expected a flat "
                                    f"list of x, y, confidence triples)")
        if not np.isfinite(array).all():
            raise KeypointFileError(f"{path}: person {index} has non-finite keypoint values")
        rows.append(array.reshape(-1, 3))
    counts = sorted({len(r) for r in rows})
    if len(counts) > 1:
        raise KeypointFileError(f"{path}: people have different keypoint counts {counts}")
    if not rows:
        return np.zeros((0, 0, 3))
    return np.stack(rows)


def openpose_keypoint_set(num_keypoints: int) -> str:
    """The keypoint set of an OpenPose-format file with ``num_keypoints`` per person.

    Example:
        >>> openpose_keypoint_set(25)
        'openpose25'

    Raises:
        KeypointFileError: a count no known set has.
    """
    try:
        return OPENPOSE_KEYPOINT_SETS[int(num_keypoints)]
    except KeyError:
        known = ", ".join(f"{k} ({v})" for k, v in OPENPOSE_KEYPOINT_SETS.items())
        raise KeypointFileError(f"{num_keypoints} keypoints per person is no known OpenPose-format layout; "
                                f"known: {known}") from None


def openpose_frame_json(people: list[tuple[int, np.ndarray]], keypoint_set: str, decimals: int = 2) -> dict:
    """One frame's people in OpenPose's JSON layout, as ``mvspin detect`` writes it (and OpenPose
    readers such as Pose2Sim's read it).

    Args:
        people: ``[(person_id, keypoints (K, 3))]``: x, y pixels, confidence in [0, 1].
        keypoint_set: the keypoints' set name (written as ``keypoint_set``; OpenPose readers
            ignore it).
        decimals: pixel rounding (confidences keep 4 decimals).

    Example:
        >>> openpose_frame_json([(3, np.array([[1.234, 2.0, 0.5]]))], "coco17")["people"][0]["pose_keypoints_2d"]
        [1.23, 2.0, 0.5]
    """
    rows = []
    for person_id, kp in people:
        kp = np.asarray(kp, dtype=np.float64)
        flat: list[float] = []
        for x, y, c in kp:
            flat += [round(float(x), decimals), round(float(y), decimals), round(float(c), 4)] if c > 0 else [0, 0, 0]
        rows.append({"person_id": [int(person_id)], "pose_keypoints_2d": flat, "face_keypoints_2d": [],
                     "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": []})
    return {"version": 1.3, "keypoint_set": keypoint_set, "people": rows}


def frame_number(path: str | os.PathLike[str]) -> int | None:
    """The last number in a file name (without its suffix), or None.

    Example:
        >>> frame_number("walk_000000000012_keypoints.json"), frame_number("cam1/rest.json")
        (12, None)
    """
    match = _FRAME_NUMBER.search(Path(path).stem)
    return int(match.group(1)) if match else None


def parse_person_choice(value: str | int) -> PersonChoice:
    """A person choice from text: ``largest``, ``most_confident``, ``all`` or an integer index.

    Raises:
        ValueError (:class:`KeypointFileError`): anything else.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text in (*PERSON_CHOICES, "all"):
        return text
    raise KeypointFileError(f"person must be largest, most_confident, all or an index, got {value!r}")


def _box_side(keypoints: np.ndarray, conf_threshold: float) -> float:
    confident = keypoints[keypoints[:, 2] > conf_threshold, :2]
    if len(confident) < 2:
        return 0.0
    return float((confident.max(axis=0) - confident.min(axis=0)).max())


def choose_person(people: np.ndarray, choice: PersonChoice = "largest",
                  conf_threshold: float = DEFAULT_CONF_THRESHOLD) -> int:
    """Index of one person in ``people`` ``(P, K, 3)`` (from :func:`read_openpose_people`).

    Args:
        choice: ``"largest"`` (longest side of the box around keypoints with confidence >
            ``conf_threshold``: the subject is usually the nearest, biggest person),
            ``"most_confident"`` (highest summed confidence) or an index (negative counts from
            the end). Ties go to the first person. SPIN's demo always takes person 0.

    Returns:
        A non-negative index into ``people``.

    Raises:
        KeypointFileError (a ValueError): nobody in ``people``, an index out of range or an
            unknown choice.
    """
    people = np.asarray(people)
    if people.ndim != 3 or people.shape[2] != 3:
        raise ValueError(f"people must have shape (P, K, 3), got {people.shape}")
    count = len(people)
    if isinstance(choice, (int, np.integer)) and not isinstance(choice, bool):
        if not -count <= choice < count:
            raise KeypointFileError(f"person index {choice} out of range: {count} people detected")
        return int(choice) % count
    if choice not in PERSON_CHOICES:
        raise KeypointFileError(f"person must be 'largest', 'most_confident' or an index, got {choice!r}")
    if count == 0:
        raise KeypointFileError("no people detected")
    if choice == "largest":
        sizes = [_box_side(k, conf_threshold) for k in people]
    else:
        sizes = [float(k[:, 2].sum()) for k in people]
    return int(np.argmax(sizes))


def read_bbox_json(path: str | os.PathLike[str]) -> np.ndarray:
    """Read SPIN's demo box file ``{"bbox": [x, y, w, h]}`` (top-left corner, width, height).

    Returns:
        (4,) float64 box ``[x1, y1, x2, y2]``; pass it to
        :func:`mvspin.regressor.preprocess.bbox_to_center_scale` with ``rescale=1.0`` to crop as
        SPIN's demo does.

    Raises:
        MissingKeypointFileError: no such file. KeypointFileError: not the format, or a box
            with non-finite values or non-positive width or height.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or "bbox" not in data:
        raise KeypointFileError(f"{path}: expected SPIN's box format {{\"bbox\": [x, y, w, h]}}")
    try:
        x, y, w, h = (float(v) for v in data["bbox"])
    except (TypeError, ValueError):
        raise KeypointFileError(f"{path}: 'bbox' must be 4 numbers [x, y, w, h], got {data['bbox']!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise KeypointFileError(f"{path}: 'bbox' [x, y, w, h] needs finite values and positive width and "
                                f"height, got {[x, y, w, h]}")
    return np.array([x, y, x + w, y + h])


OPENPOSE_NAME_PATTERNS = ("{stem}_keypoints.json", "{stem}.json")
"""Names an image's OpenPose file may have in a folder (OpenPose's own first)."""
BBOX_NAME_PATTERNS = ("{stem}.json", "{stem}_bbox.json")
"""Names an image's box file may have in a folder (SPIN's demo examples use ``<stem>_bbox``)."""


def matching_file(source: str | os.PathLike[str] | None, image: str | os.PathLike[str],
                  patterns: tuple[str, ...], what: str) -> Path | None:
    """The file of ``source`` that belongs to ``image``.

    Args:
        source: None (no files), one file (used for every image) or a folder searched for
            ``patterns`` formatted with the image's stem, first match wins.
        patterns: e.g. :data:`OPENPOSE_NAME_PATTERNS`.
        what: what the files are, for the message (``"OpenPose"``).

    Raises:
        MissingKeypointFileError: ``source`` is a folder holding none of the names.
    """
    if source is None:
        return None
    source = Path(source)
    if source.is_file():
        return source
    names = [p.format(stem=Path(image).stem) for p in patterns]
    for name in names:
        if (source / name).is_file():
            return source / name
    raise MissingKeypointFileError(f"missing {what} file: none of {', '.join(names)} in {source}")


def frame_files(source: str | os.PathLike[str] | None,
                video: str | os.PathLike[str]) -> dict[int, Path] | Path | None:
    """Per-frame files for a video: None, one file for all frames, or ``{frame: file}``.

    In a folder (or its subfolder named after the video) the ``.json`` files whose names start
    with the video's stem are used if there are any, else all of them; the frame is
    :func:`frame_number` of the name (the first file wins when two give the same number).

    Raises:
        MissingKeypointFileError: the folder holds no numbered ``.json`` file.
    """
    if source is None:
        return None
    source, stem = Path(source), Path(video).stem
    if source.is_file():
        return source
    folder = source / stem if (source / stem).is_dir() else source
    files = sorted(folder.glob("*.json"))
    own = [f for f in files if f.name.startswith(stem)]
    frames: dict[int, Path] = {}
    for f in own or files:
        number = frame_number(f)
        if number is not None:
            frames.setdefault(number, f)
    if not frames:
        raise MissingKeypointFileError(f"missing per-frame files: no numbered .json files in {folder}")
    return frames
