"""2D keypoints of a multi-camera recording: one folder (or file) per camera, frames by number.

Accepted per camera (the layout of ``DIR/<camera>``):

- **OpenPose JSON**, one file per frame (``<name>_000000000012_keypoints.json``): BODY_25,
  BODY_25B (say ``openpose25b``: it has 25 points too), COCO-18; also what Pose2Sim and
  RTMPose / rtmlib write in OpenPose's layout (HALPE-26, COCO-17). Parsed by
  :func:`mvspin.data.keypoint_files.read_openpose_people`.
- **MMPose JSON**, one file per frame: a list of instances (or ``{"instance_info": [...]}``)
  with ``keypoints`` ``[[x, y], ...]`` and ``keypoint_scores``.
- **AlphaPose** ``alphapose-results.json``, one file for the camera: a list of
  ``{"image_id": "12.jpg", "keypoints": [x, y, c, ...]}``, the frame being the image's number.
- **.npz**: ``DIR/<camera>.npz`` or ``DIR/<camera>/*.npz`` with ``keypoints`` ``(T, K, 3)`` or
  ``(T, P, K, 3)`` and optionally ``frames (T,)`` (default ``0..T-1``).

Frame numbers come from the file names (the last number, :func:`~mvspin.data.keypoint_files.frame_number`).
Real folders hold stray files: per camera, only the files of the dominant naming pattern are
read (``cam03.0000.json``, ``cam03_000000000000_keypoints.json``, ...; :func:`dominant_pattern`);
the others are listed in :attr:`RecordingKeypoints.skipped` with why, and logged.
Cameras are matched to the rig by name; when no folder carries a rig camera's name (a
Qualisys calibration names cameras by serial number) and the counts agree, in natural order
(cam_2 before cam_10), and the result says so.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mvspin.body import get_keypoint_set
from mvspin.body.keypoint_sets import KEYPOINT_SETS
from mvspin.data.keypoint_files import KeypointFileError, frame_number, read_openpose_people
from mvspin.progress import Progress, no_progress

__all__ = ["RecordingKeypoints", "read_recording_keypoints", "keypoint_set_for_count", "natural_key", "file_pattern",
           "dominant_pattern", "layout_plausibility"]

_SETS_BY_COUNT = {25: "openpose25", 18: "coco18", 17: "coco17", 26: "halpe26", 33: "blazepose33"}
log = logging.getLogger("mvspin")


def keypoint_set_for_count(count: int, requested: Optional[str] = None, where: str = "",
                           keypoints: Optional[np.ndarray] = None) -> str:
    """The keypoint set of files with ``count`` keypoints per person (``requested`` when given,
    checked against the count; BODY_25B must be requested, it has 25 points like BODY_25).

    A count alone does not say which layout the files follow (BODY_25 and BODY_25B have 25
    points, COCO-17 and Human3.6M-17 have 17, and unknown 18-point layouts exist): with
    ``keypoints`` ``(..., K, 3)`` the guess is kept only when its skeleton is plausible
    (:func:`layout_plausibility`) and no other known set of that size fits clearly better.

    Raises:
        KeypointFileError: an unknown count, a requested set of another size, or a guess whose
            skeleton the detections do not look like (naming the scores: set ``keypoint_set``).
    """
    if requested is not None:
        try:
            size = len(get_keypoint_set(requested))
        except KeyError:
            raise KeypointFileError(f"{where}: keypoint_set {requested!r} is not a keypoint set; known: "
                                    f"{', '.join(KEYPOINT_SETS)}") from None
        if size != count:
            raise KeypointFileError(f"{where}: {count} keypoints per person, but {requested} has {size}")
        return requested
    try:
        guess = _SETS_BY_COUNT[count]
    except KeyError:
        known = ", ".join(f"{k} ({v})" for k, v in _SETS_BY_COUNT.items())
        raise KeypointFileError(f"{where}: {count} keypoints per person is no known layout; known: {known}") from None
    if keypoints is None:
        return guess
    scores = {name: layout_plausibility(keypoints, name) for name in KEYPOINT_SETS
              if len(get_keypoint_set(name)) == count}
    if not any(math.isfinite(v) for v in scores.values()):
        return guess  # too few complete detections to judge: the count's layout, as before
    best = max(scores, key=lambda n: -math.inf if not math.isfinite(scores[n]) else scores[n])
    listed = ", ".join(f"{n} {v:.2f}" for n, v in scores.items() if math.isfinite(v))
    if scores[guess] < _PLAUSIBLE or (best != guess and scores[best] > scores[guess] + 0.1):
        raise KeypointFileError(
            f"{where}: {count} keypoints per person, but the detections do not look like a {guess} skeleton "
            f"(agreement of joint distances with each layout's body: {listed}; {_PLAUSIBLE} or more is "
            f"plausible): set keypoint_set to the files' layout")
    return guess


_PLAUSIBLE = 0.6
"""Least plausibility (correlation of joint distances, :func:`layout_plausibility`) of a layout
guessed from the count: the right layout scores 0.9 or more on moving people, a wrong order of
the same points 0.4 or less (BODY_25 read as BODY_25B 0.39, COCO-17 as Human3.6M-17 0.22)."""


@lru_cache(maxsize=None)
def _layout_template(name: str) -> np.ndarray:
    """Pairwise distances ``(K*(K-1)/2,)`` between the set's points on the free body model at rest."""
    import torch

    from mvspin.body import BodyModel

    body = BodyModel.free("low")
    with torch.no_grad():
        rest = body.keypoints(name, torch.zeros(1, 69), torch.zeros(1, 10), torch.eye(3)[None], torch.zeros(1, 3))[0]
    kp = rest.numpy().astype(np.float64)
    iu = np.triu_indices(len(kp), 1)
    return np.linalg.norm(kp[:, None] - kp[None], axis=-1)[iu]


def layout_plausibility(keypoints: np.ndarray, name: str, max_people: int = 400) -> float:
    """How much detections look like keypoint set ``name``'s skeleton: the median, over people
    with most joints seen, of the correlation between their 2D joint distances and the set's
    3D joint distances on a body at rest (1: same shape; a wrong point order gives about 0).
    Rotation and scale do not matter, so rolled cameras and any image size are judged alike.

    Args:
        keypoints: ``(..., K, 3)`` pixels and confidence (0: not seen).
        name: a keypoint set of K points.
    Returns:
        The score, NaN when fewer than 5 people have 60% of their joints seen.
    """
    tpl = _layout_template(name)
    k = keypoints.shape[-2]
    people = np.asarray(keypoints, dtype=np.float64).reshape(-1, k, 3)
    seen = (people[..., 2] > 0) & np.isfinite(people).all(-1)
    people = people[seen.sum(-1) >= 0.6 * k][:max_people]
    iu = np.triu_indices(k, 1)
    scores = []
    for person in people:
        vis = (person[:, 2] > 0) & np.isfinite(person).all(-1)
        ok = (vis[:, None] & vis[None])[iu]
        d = np.linalg.norm(person[:, None, :2] - person[None, :, :2], axis=-1)[iu][ok]
        if d.std() > 0:
            scores.append(float(np.corrcoef(d, tpl[ok])[0, 1]))
    return float(np.median(scores)) if len(scores) >= 5 else math.nan


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value (``cam_2`` before ``cam_10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


@dataclass
class RecordingKeypoints:
    """Detections of a recording, per frame, camera and listed person.

    Attributes:
        keypoints: ``(T, V, P, K, 3)`` float32 pixels and confidence; zero rows where a camera
            lists fewer than P people or has no file for a frame.
        frames: ``(T,)`` frame numbers (from the file names), increasing.
        camera_names: the V rig cameras, in the rig's order.
        sources: the V folders or files read, in the same order.
        keypoint_set: the keypoints' set name.
        matched_by: ``"name"`` or ``"order"``.
        missing: ``(T, V)`` bool, a camera had no file for the frame.
        skipped: files of the camera folders that were not read, each with why (stray files
            named unlike the folder's per-frame files, :func:`dominant_pattern`).
    """

    keypoints: np.ndarray
    frames: np.ndarray
    camera_names: list[str]
    sources: list[Path]
    keypoint_set: str
    matched_by: str
    missing: np.ndarray
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KeypointFileError(f"{path}: not valid JSON ({err})") from None


def _mmpose_people(data, path: Path) -> np.ndarray:
    instances = data.get("instance_info") if isinstance(data, dict) else data
    rows = []
    for i, inst in enumerate(instances if isinstance(instances, list) else []):
        try:
            xy = np.asarray(inst["keypoints"], dtype=np.float64).reshape(-1, 2)
            score = np.asarray(inst.get("keypoint_scores", np.ones(len(xy))), dtype=np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise KeypointFileError(f"{path}: instance {i} has no valid 'keypoints' / 'keypoint_scores'") from None
        if len(score) != len(xy):
            raise KeypointFileError(f"{path}: instance {i} has {len(xy)} keypoints but {len(score)} scores")
        rows.append(np.concatenate([xy, score[:, None]], 1))
    if len({len(r) for r in rows}) > 1:
        raise KeypointFileError(f"{path}: people have different keypoint counts")
    return np.stack(rows) if rows else np.zeros((0, 0, 3))


def _frame_people(path: Path) -> np.ndarray:
    """``(P, K, 3)`` of one per-frame JSON file, OpenPose or MMPose layout."""
    data = _read_json(path)
    if isinstance(data, dict) and "people" in data:
        return read_openpose_people(path)
    if isinstance(data, list) or (isinstance(data, dict) and "instance_info" in data):
        return _mmpose_people(data, path)
    raise KeypointFileError(f"{path}: neither OpenPose ('people') nor MMPose ('instance_info' or a list of "
                            f"instances) keypoints")


def _alphapose(path: Path) -> dict[int, np.ndarray]:
    data = _read_json(path)
    if not isinstance(data, list):
        raise KeypointFileError(f"{path}: AlphaPose results must be a list of detections")
    frames: dict[int, list[np.ndarray]] = {}
    for i, det in enumerate(data):
        try:
            number = frame_number(str(det["image_id"]))
            kp = np.asarray(det["keypoints"], dtype=np.float64).reshape(-1, 3)
        except (KeyError, TypeError, ValueError):
            raise KeypointFileError(f"{path}: detection {i} has no valid 'image_id' and 'keypoints'") from None
        if number is None:
            raise KeypointFileError(f"{path}: detection {i}: no frame number in image_id {det['image_id']!r}")
        frames.setdefault(number, []).append(kp)
    return {f: np.stack(v) for f, v in frames.items()}


def file_pattern(path: Path) -> Optional[str]:
    """The naming pattern of a per-frame file: its name with the frame number (the last number)
    as ``{frame}`` and every other number as ``#``; None without a number.

    Example:
        >>> file_pattern(Path("cam03_000000000012_keypoints.json")), file_pattern(Path("del_000000_0.json"))
        ('cam#_{frame}_keypoints.json', 'del_#_{frame}.json')
    """
    name = path.name
    match = re.search(r"(\d+)(?!.*\d)", path.stem)
    if match is None:
        return None
    head, tail = name[:match.start()], name[match.end():]
    return re.sub(r"\d+", "#", head) + "{frame}" + re.sub(r"\d+", "#", tail)


def dominant_pattern(files: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Split one camera's per-frame files into those of the most common naming pattern
    (:func:`file_pattern`) and the others, each with why it is skipped. Real folders hold stray
    files (Pose2Sim's published OpenPose folders have ``del_000000_0.json`` beside
    ``cam03_000000000000_keypoints.json``); two files for one frame *within* the dominant
    pattern stay an error (raised by the caller).

    Raises:
        KeypointFileError: two patterns are equally common (which one is the camera's is unclear).
    """
    groups: dict[Optional[str], list[Path]] = {}
    for f in files:
        groups.setdefault(file_pattern(f), []).append(f)
    numbered = {k: v for k, v in groups.items() if k is not None}
    if not numbered:
        return [], [(f, "no frame number in the file name") for f in files]
    ranked = sorted(numbered.items(), key=lambda kv: -len(kv[1]))
    if len(ranked) > 1 and len(ranked[0][1]) == len(ranked[1][1]):
        folder = files[0].parent
        raise KeypointFileError(f"{folder}: as many files named {ranked[0][0]} as {ranked[1][0]} "
                                f"({len(ranked[0][1])} each): cannot tell which are the camera's frames")
    best = ranked[0][0]
    skipped = [(f, "no frame number in the file name") for f in groups.get(None, [])]
    skipped += [(f, f"named {k}, not like the camera's other {len(numbered[best])} files ({best})")
                for k, v in ranked[1:] for f in v]
    return numbered[best], sorted(skipped, key=lambda fw: natural_key(fw[0].name))


def _read_camera(source: Path, skipped_out: Optional[list[tuple[Path, str]]] = None) -> dict[int, np.ndarray]:
    """``{frame: (P, K, 3)}`` of one camera's folder or file; files left out go to ``skipped_out``."""
    if source.is_file() and source.suffix == ".npz":
        files = [source]
    elif source.is_file() and source.suffix == ".json":
        return _alphapose(source)
    elif source.is_dir():
        files = sorted(source.glob("*.npz"))
        if not files:
            alpha = source / "alphapose-results.json"
            if alpha.is_file():
                return _alphapose(alpha)
            out: dict[int, np.ndarray] = {}
            jsons = sorted(source.glob("*.json"), key=lambda p: natural_key(p.name))
            chosen, skipped = dominant_pattern(jsons)
            for path, why in skipped:
                log.warning("%s: skipped (%s)", path, why)
            if skipped_out is not None:
                skipped_out.extend(skipped)
            for path in chosen:
                number = frame_number(path)
                if number in out:
                    raise KeypointFileError(f"{path}: a second file for frame {number} in {source}")
                out[number] = _frame_people(path)
            if not out:
                raise KeypointFileError(f"{source}: no keypoint files (.json per frame, alphapose-results.json or .npz)")
            return out
    else:
        raise KeypointFileError(f"{source}: no such keypoint folder or file")
    out = {}
    for path in files:
        try:
            with np.load(path, allow_pickle=False) as data:
                kp = np.asarray(data["keypoints"], dtype=np.float64)
                frames = np.asarray(data["frames"]) if "frames" in data.files else np.arange(len(kp))
        except (OSError, ValueError, KeyError) as err:
            raise KeypointFileError(f"{path}: not a keypoint .npz with a 'keypoints' array ({err})") from None
        if kp.ndim == 3:
            kp = kp[:, None]
        if kp.ndim != 4 or kp.shape[-1] != 3 or len(frames) != len(kp):
            raise KeypointFileError(f"{path}: keypoints must be (T, K, 3) or (T, P, K, 3) with frames (T,), got "
                                    f"{kp.shape} and {len(frames)} frames")
        for f, people in zip(frames.tolist(), kp):
            out[int(f)] = people
    return out


def _camera_sources(folder: Path) -> dict[str, Path]:
    entries = {}
    for p in folder.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_dir() or p.suffix in (".npz",) or (p.suffix == ".json" and "alphapose" in p.name.lower()):
            entries[p.stem if p.is_file() else p.name] = p
    return entries


def _span(frames: set[int]) -> str:
    return f"{min(frames)}..{max(frames)}" if frames else "none"


def _check_same_frames(folder: Path, names: list[str], sources: list[Path], per_camera: list[dict]) -> None:
    """Every camera must have the same frame *numbers* (equal counts are not enough: one camera
    numbered from 1 while the others start at 0 would be fitted one frame out of step)."""
    sets = [set(c) for c in per_camera]
    if all(s == sets[0] for s in sets):
        return
    common = set.intersection(*sets)
    # The numbering most cameras share is the reference; name the cameras that differ from it.
    ref = max(sets, key=lambda s: sum(s == o for o in sets))
    odd = []
    for name, src, s in zip(names, sources, sets):
        if s == ref:
            continue
        shift = (min(s) - min(ref)) if s and ref and len(s) == len(ref) and {f - min(s) for f in s} == \
            {f - min(ref) for f in ref} else None
        why = f"numbered {_span(s)}, {len(s)} frames"
        if shift:
            why += f": shifted by {shift:+d} against the others (renumber its files)"
        odd.append(f"{name} ({src.name}) {why}")
    raise KeypointFileError(
        f"{folder}: cameras have different frame numbers: most are {_span(ref)} ({len(ref)} frames) but "
        f"{'; '.join(odd)}; only {len(common)} frame numbers are in every camera (set allow_missing_frames "
        f"to fit frames by number with the cameras that have them)")


def _sample_people(per_camera: list[dict], limit: int = 64) -> Optional[np.ndarray]:
    """Up to ``limit`` frames' people per camera, ``(N, K, 3)``, for judging the layout."""
    rows = [p for cam in per_camera for f in sorted(cam)[:limit] for p in cam[f] if cam[f].size]
    return np.stack(rows) if rows else None


def read_recording_keypoints(
    folder: str | os.PathLike[str],
    camera_names: Sequence[str],
    keypoint_set: Optional[str] = None,
    allow_missing_frames: bool = False,
    progress: Progress = no_progress,
) -> RecordingKeypoints:
    """Read a recording's keypoints: ``folder`` holds one folder (or ``.npz``) per rig camera.

    Args:
        folder: the keypoints folder.
        camera_names: the rig's cameras, in its order.
        keypoint_set: the files' set; by default from the keypoint count (25: ``openpose25``,
            18: ``coco18``, 17: ``coco17``, 26: ``halpe26``) when the detections look like that
            skeleton (:func:`keypoint_set_for_count`).
        allow_missing_frames: a camera without a file for some frames reads as seeing nobody
            there (else every camera must have the same frame numbers).
        progress: :class:`~mvspin.progress.Progress`, stage ``"read keypoints"``: cameras read.

    Raises:
        KeypointFileError: camera count or names do not match, frame numbers differ, unreadable
            or malformed files, inconsistent keypoint counts (one line naming the file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise KeypointFileError(f"{folder}: keypoints folder not found")
    names = list(camera_names)
    sources = _camera_sources(folder)
    if len(sources) != len(names):
        raise KeypointFileError(
            f"{folder}: the rig has {len(names)} cameras ({', '.join(names)}) but there are keypoints for "
            f"{len(sources)} ({', '.join(sorted(sources, key=natural_key)) or 'none'})")
    if set(names) <= set(sources):
        ordered, matched_by = [sources[n] for n in names], "name"
    elif not set(names) & set(sources):
        ordered, matched_by = [sources[n] for n in sorted(sources, key=natural_key)], "order"
    else:
        missing = [n for n in names if n not in sources]
        raise KeypointFileError(f"{folder}: no keypoints for rig cameras {', '.join(missing)} (folders: "
                                f"{', '.join(sorted(sources, key=natural_key))})")
    per_camera = []
    skipped: list[tuple[Path, str]] = []
    for i, src in enumerate(ordered):
        per_camera.append(_read_camera(src, skipped))
        progress("read keypoints", i + 1, len(ordered))
    if not allow_missing_frames:
        _check_same_frames(folder, names, ordered, per_camera)
    frames = np.array(sorted(set().union(*[set(c) for c in per_camera])), dtype=np.int64)
    k_counts = {p.shape[1] for c in per_camera for p in c.values() if p.size}
    if len(k_counts) > 1:
        raise KeypointFileError(f"{folder}: files have different keypoint counts per person {sorted(k_counts)}")
    if not k_counts:
        raise KeypointFileError(f"{folder}: nobody is detected in any frame of any camera")
    k = k_counts.pop()
    kset = keypoint_set_for_count(k, keypoint_set, str(folder), _sample_people(per_camera))
    p = max(max((len(x) for x in c.values()), default=0) for c in per_camera)
    index = {int(f): i for i, f in enumerate(frames)}
    out = np.zeros((len(frames), len(names), max(p, 1), k, 3), dtype=np.float32)
    missing_frames = np.ones((len(frames), len(names)), dtype=bool)
    for v, cam in enumerate(per_camera):
        for f, people in cam.items():
            missing_frames[index[f], v] = False
            if people.size:
                out[index[f], v, : len(people)] = people
    conf = out[..., 2][(out != 0).any(-1)]
    if conf.size and not (conf > 0).any():
        finite = conf[np.isfinite(conf)]
        what = "NaN" if not finite.size else f"between {finite.min():g} and {finite.max():g}"
        raise KeypointFileError(f"{folder}: no keypoint has a positive confidence (all are {what}): the third value "
                                f"of each keypoint must be its detection confidence > 0 (0 = not seen)")
    return RecordingKeypoints(out, frames, names, ordered, kset, matched_by, missing_frames, skipped)
