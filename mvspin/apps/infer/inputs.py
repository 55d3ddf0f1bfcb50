"""What the infer job reads: input files, their output names, and the crop box of each person.

Inputs are image files, folders of images/videos, and videos. Every input gets its own output
prefix (:func:`collect_inputs`): ``<out>/<stem>``, or ``<out>/<folder>/<stem>`` for a folder's
members; inputs whose stems collide (``cam1/000.jpg``, ``cam2/000.jpg``, the usual rig layout)
are told apart by their parent folder (``cam1_000``, ``cam2_000``), then by a counter.

Boxes (:func:`people_in_image`) come from a SPIN box file, from OpenPose keypoints (box around
the confident keypoints, enlarged 1.2 as SPIN does) or, without files, cover the whole image.
Boxes and keypoints that cannot belong to the image (outside it, absurdly large or small) are
refused with :class:`InputError` instead of giving a plausible-looking body.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mvspin.data.keypoint_files import (
    PersonChoice,
    choose_person,
    read_bbox_json,
    read_openpose_people,
)
from mvspin.data.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from mvspin.errors import InputError, NoPersonError
from mvspin.geometry import KEYPOINT_MIN_CONFIDENCE, SPIN_SCALE_UNIT, keypoint_crop_box, points_inside_image

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "MIN_IMAGE_SIDE",
    "MIN_BOX_SIDE",
    "MAX_BOX_TO_IMAGE",
    "InputError",
    "NoPersonError",
    "InferInput",
    "PersonBox",
    "collect_inputs",
    "check_image_size",
    "check_box",
    "people_in_image",
]

MIN_IMAGE_SIDE = 16
"""Smallest image side (pixels) worth a 224-px crop; a 1x1 'image' is refused."""
MIN_BOX_SIDE = 4.0
"""Smallest crop box side (pixels)."""
MAX_BOX_TO_IMAGE = 4.0
"""Largest crop box side as a multiple of the image's longer side (a whole-image box is 1; a
keypoint box at most ~1.2 x the diagonal). Larger boxes are mistakes (a box for another image
size) and would make the anti-aliased crop blur with a huge kernel for minutes."""
# A keypoint counts as found above this confidence (the crop-box rule's threshold).
CONF_THRESHOLD = KEYPOINT_MIN_CONFIDENCE


@dataclass
class InferInput:
    """One input and where its outputs go.

    Attributes:
        path: the image or video file.
        kind: ``"image"`` or ``"video"``.
        prefix: output path without suffix (``<out>/<name>``); unique within a run.
    """

    path: Path
    kind: str
    prefix: Path


@dataclass
class PersonBox:
    """One person's crop in one image.

    Attributes:
        label: suffix of the output names (``""``, or ``"_p<i>"`` with ``person="all"``).
        center: (2,) box centre, image pixels.
        scale: box side / 200 (SPIN's scale).
        keypoints: (K, 3) OpenPose keypoints in image pixels, or None.
    """

    label: str
    center: np.ndarray
    scale: float
    keypoints: Optional[np.ndarray] = None


def _kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


def collect_inputs(paths: Sequence[str | Path], out: str | Path) -> tuple[list[InferInput], list[tuple[str, str]]]:
    """Expand folders and give every input a unique output prefix under ``out``.

    Returns:
        ``(inputs, failures)``: failures are ``(path, reason)`` for missing paths and folders
        without images or videos.
    """
    out = Path(out)
    entries: list[tuple[Path, Path]] = []  # (file, output folder)
    failures: list[tuple[str, str]] = []
    for path in map(Path, paths):
        if path.is_dir():
            members = sorted(p for p in path.iterdir()
                             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not members:
                failures.append((str(path), "folder holds no images or videos"))
            entries += [(m, out / path.name) for m in members]
        elif path.is_file():
            entries.append((path, out))
        else:
            failures.append((str(path), "no such file or folder"))
    # Stems that collide in one output folder get their parent folder's name in front.
    clash = Counter((folder, p.stem) for p, folder in entries)
    names = [f"{p.parent.name}_{p.stem}" if clash[(folder, p.stem)] > 1 and p.parent.name else p.stem
             for p, folder in entries]
    used: set[Path] = set()
    items = []
    for (path, folder), name in zip(entries, names):
        base = folder / name
        prefix, n = base, 2
        while prefix in used:  # still equal (a.jpg and a.png in one folder)
            prefix, n = base.with_name(f"{base.name}-{n}"), n + 1
        used.add(prefix)
        items.append(InferInput(path, _kind(path), prefix))
    return items, failures


def check_image_size(width: int, height: int, source: str | Path) -> None:
    """Refuse images too small to hold a person (:data:`MIN_IMAGE_SIDE`).

    Raises:
        InputError: naming ``source`` and the size.
    """
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(f"{source}: the image is {width}x{height} pixels; at least {MIN_IMAGE_SIDE} pixels "
                         f"per side are needed")


def check_box(center: np.ndarray, scale: float, width: int, height: int, source: str | Path) -> None:
    """Refuse crop boxes that cannot belong to a ``width`` x ``height`` image.

    A box must overlap the image and its side (``scale * 200``) must lie between
    :data:`MIN_BOX_SIDE` pixels and :data:`MAX_BOX_TO_IMAGE` times the image's longer side.

    Raises:
        InputError: naming ``source``, the box and the image size.
    """
    side = float(scale) * SPIN_SCALE_UNIT
    cx, cy = (float(v) for v in np.asarray(center, dtype=np.float64).reshape(2))
    box = f"box centre ({cx:.1f}, {cy:.1f}), side {side:.1f} px"
    if not (np.isfinite([cx, cy, side]).all() and side >= MIN_BOX_SIDE):
        raise InputError(f"{source}: {box}: the side must be at least {MIN_BOX_SIDE:g} pixels")
    if side > MAX_BOX_TO_IMAGE * max(width, height):
        raise InputError(f"{source}: {box} is over {MAX_BOX_TO_IMAGE:g} times the {width}x{height} image "
                         f"(a box for another image size?)")
    half = side / 2
    # Pixel centres are integers: the image covers [-0.5, w - 0.5] x [-0.5, h - 0.5].
    if cx + half <= -0.5 or cx - half >= width - 0.5 or cy + half <= -0.5 or cy - half >= height - 0.5:
        raise InputError(f"{source}: {box} lies outside the {width}x{height} image")


def _check_keypoints(keypoints: np.ndarray, width: int, height: int, source: Path, person: int) -> None:
    confident = keypoints[keypoints[:, 2] > CONF_THRESHOLD, :2]
    if not len(confident):
        return
    outside = int((~points_inside_image(confident, (width, height))).sum())
    # Detectors may place a few joints just past the border; most of them outside means the
    # file belongs to another image (or another image size).
    if 2 * outside > len(confident):
        raise InputError(f"{source}: person {person}: {outside} of {len(confident)} confident keypoints lie "
                         f"outside the {width}x{height} image (keypoints of another image or size?)")


def people_in_image(width: int, height: int, keypoints_file: Optional[Path] = None,
                    bbox_file: Optional[Path] = None, person: PersonChoice = "largest",
                    preprocessing: str = "exact") -> list[PersonBox]:
    """Crop boxes (and keypoints) of one image from its box / OpenPose files, else the whole image.

    Args:
        width, height: the image size in pixels.
        keypoints_file: OpenPose JSON of the image (parsed once), or None.
        bbox_file: SPIN box JSON of the image (used as it is, as SPIN's demo does), or None.
        person: which OpenPose person (:func:`mvspin.data.keypoint_files.choose_person`), or
            ``"all"``: one box per person with enough confident keypoints for a box.
        preprocessing: ``"spin"`` places OpenPose boxes as SPIN's demo does (centre at the mean of
            the keypoints with confidence > 0.2); ``"exact"`` at the middle of their box.

    Raises:
        NoPersonError: the OpenPose file holds nobody usable.
        InputError: a file is missing, unreadable or malformed, or a box / the keypoints do not
            fit the image (:func:`check_box`).
    """
    from mvspin.regressor.predictor import whole_image_box
    from mvspin.regressor.preprocess import bbox_to_center_scale, spin_openpose_center_scale

    box_of_keypoints = spin_openpose_center_scale if preprocessing == "spin" else keypoint_crop_box

    try:
        detected: list[tuple[str, int, np.ndarray]] = []
        if keypoints_file is not None:
            everyone = read_openpose_people(keypoints_file)
            if len(everyone) == 0:
                raise NoPersonError(f"{keypoints_file}: no people detected")
            if person == "all":
                detected = [(f"_p{i}", i, k) for i, k in enumerate(everyone)]
            else:
                try:
                    index = choose_person(everyone, person)
                except ValueError as err:
                    raise InputError(f"{keypoints_file}: {err}") from None
                detected = [("", index, everyone[index])]
            for _, index, keypoints in detected:
                _check_keypoints(keypoints, width, height, keypoints_file, index)
        if bbox_file is not None:
            # SPIN's demo uses a given box as it is (rescale 1).
            center, scale = bbox_to_center_scale(read_bbox_json(bbox_file), rescale=1.0)
            check_box(center, scale, width, height, bbox_file)
            return [PersonBox("", center, scale, detected[0][2] if detected else None)]
        people = []
        for label, _, keypoints in detected:
            try:
                center, scale = box_of_keypoints(keypoints)
            except ValueError:  # too few confident keypoints: a bystander, not an error
                continue
            check_box(center, scale, width, height, keypoints_file)
            people.append(PersonBox(label, center, scale, keypoints))
        if detected and not people:
            raise NoPersonError(f"{keypoints_file}: no person with enough confident keypoints for a box")
        if people:
            return people
    except InputError:
        raise
    except (FileNotFoundError, ValueError) as err:
        raise InputError(str(err)) from None
    center, scale = whole_image_box(width, height)
    return [PersonBox("", center, scale)]
