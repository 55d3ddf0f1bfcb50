"""``mvspin infer``: SMPL bodies from images, folders, videos or a set of views, with a checkpoint.

Outputs (under ``--out``, one prefix per input; a folder's images go to a subfolder named after
it; ``_p<i>`` is added per OpenPose person with ``--person all``):

- ``<stem>.npz``: SMPL parameters with AMASS key names (:mod:`mvspin.io_outputs`) plus the
  camera in the original image: ``K (T, 3, 3)`` (focal ``5000 * box / 224`` px, principal point
  at the box centre, see :mod:`mvspin.learning.inference`), ``image_size [W, H]``, the crop
  ``center (T, 2)`` / ``scale (T,)`` and the network's crop camera ``cam_crop (T, 3)``.
  Posing the body model with the file's parameters and projecting with ``K`` lands on the
  network's keypoints in the image.
- ``<stem>.obj`` (or ``.ply`` with ``--mesh-format ply``): the mesh in the camera frame (OpenCV
  axes: x right, y down, z forward).
- ``<stem>_overlay.png`` (mesh over the image) and ``<stem>_side.png`` (turned 90 degrees).
- Videos: ``<stem>.npz`` with one row per frame (``fps`` from the video) and
  ``<stem>_overlay.mp4``.
- ``--views``: ``views.npz`` with one row per view (shared body pose and betas, per-view
  ``global_orient``/``transl``/``K``), ``views.obj`` (the fused body in the first view's camera
  frame) and ``views_<stem>_overlay.png`` per view.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvspin.cli.common import add_body_model_args, add_device_arg, load_body_model, log, resolve_device

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
BACKBONES = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}
STAGES = ("read", "crop", "network", "body model", "refine", "render", "write")
# Frame rate written when a video container does not report one.
FALLBACK_FPS = 30.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "infer", help="SMPL bodies from images, folders, videos or views with a trained regressor",
        description="Run a trained HMR regressor on images, folders of images, videos, or (--views) several "
                    "views of one person, and write SMPL parameters (.npz, AMASS keys, full-image camera), "
                    "meshes (.obj) and overlays (.png/.mp4).",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files, folders of images, videos")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="regressor checkpoint (SPIN's model_checkpoint.pt or one written by mvspin)")
    p.add_argument("--allow-untrained", action="store_true",
                   help="run a randomly initialised network when no --checkpoint is given (for tests only: "
                        "its bodies are meaningless)")
    p.add_argument("--backbone", choices=sorted(BACKBONES, key=BACKBONES.get), default=None,
                   help="expected architecture (default: read from the checkpoint; resnet50 when untrained)")
    p.add_argument("--bbox", type=Path, default=None,
                   help="box file {\"bbox\": [x, y, w, h]} for every input, or a folder of them matched by image "
                        "stem (<stem>.json or <stem>_bbox.json); videos: one file for all frames, or a folder "
                        "with one file per frame")
    p.add_argument("--openpose", type=Path, default=None,
                   help="OpenPose JSON for every input, or a folder matched by image stem (<stem>_keypoints.json "
                        "or <stem>.json); videos: a folder with one file per frame (frame = last number in the "
                        "name). Gives the crop box unless --bbox is given, and the keypoints for --refine")
    p.add_argument("--person", default="largest",
                   help="which OpenPose person: largest, most_confident, an index, or all (one output each; "
                        "images only) (default: %(default)s)")
    p.add_argument("--views", action="store_true",
                   help="the inputs are views of one person at one moment: fuse them into one body (rotation "
                        "mean of the body pose, mean betas)")
    p.add_argument("--refine", action="store_true",
                   help="refine each prediction with SMPLify on the --openpose keypoints (MV-SMPLify with --views)")
    p.add_argument("--fit-config", type=Path, default=None,
                   help="YAML of SMPLify settings for --refine (fields of mvspin.fitting.SMPLifyConfig; of "
                        "MVSMPLifyConfig with --views, e.g. configs/fitting.yaml); default: SPIN's values")
    p.add_argument("--fit", action="append", default=[], metavar="KEY=VALUE",
                   help="override one --refine setting, e.g. --fit stage2_iterations=50 (repeatable)")
    p.add_argument("--out", type=Path, default=Path("mvspin_infer"), help="output folder (default: %(default)s)")
    p.add_argument("--mesh-format", choices=("obj", "ply"), default="obj",
                   help="mesh files: obj (text, opens everywhere) or ply (binary, ~15x faster to write for the "
                        "full free model) (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="crops per network call (default: %(default)s)")
    p.add_argument("--no-render", action="store_true", help="skip overlays and side views (no open3d rendering)")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed with --allow-untrained")
    add_device_arg(p)
    add_body_model_args(p)
    p.set_defaults(run=run)


# --- what the run produced ---------------------------------------------------------------------


@dataclass
class InferReport:
    """What ``mvspin infer`` did: counts, files, failures and seconds per stage."""

    images: int = 0
    videos: int = 0
    frames: int = 0
    people: int = 0
    frames_without_box: int = 0
    written: list[Path] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    seconds: float = 0.0

    def time(self, stage: str) -> _StageTimer:
        return _StageTimer(self.timings, stage)


class _StageTimer:
    def __init__(self, timings: dict[str, float], stage: str) -> None:
        self.timings, self.stage = timings, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.stage] = self.timings.get(self.stage, 0.0) + time.perf_counter() - self.start


class _ItemError(Exception):
    """One input cannot be processed; the run goes on with the others."""


class _NoPerson(_ItemError):
    """A keypoint file names nobody usable (a video frame then keeps the previous box)."""


# --- inputs and the files that go with them ------------------------------------------------------


@dataclass
class _Input:
    path: Path
    kind: str  # "image" | "video"
    prefix: Path  # output path without suffix


@dataclass
class _Person:
    label: str  # suffix of the output names ("" or "_p<i>")
    center: np.ndarray
    scale: float
    keypoints: np.ndarray | None = None  # (K, 3) OpenPose BODY_25 in image pixels


def _kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


def _collect_inputs(paths: list[Path], out: Path) -> tuple[list[_Input], list[tuple[str, str]]]:
    """Expand folders, give every input a unique output prefix; missing paths become failures."""
    items: list[_Input] = []
    failures: list[tuple[str, str]] = []
    used: set[Path] = set()

    def add(path: Path, folder: Path | None) -> None:
        base = (out / folder.name if folder is not None else out) / path.stem
        prefix, n = base, 2
        while prefix in used:  # a.jpg and a.png, or the same stem in two folders
            prefix, n = base.with_name(f"{base.name}-{n}"), n + 1
        used.add(prefix)
        items.append(_Input(path, _kind(path), prefix))

    for path in paths:
        if path.is_dir():
            members = sorted(p for p in path.iterdir()
                             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not members:
                failures.append((str(path), "folder holds no images or videos"))
            for member in members:
                add(member, path)
        elif path.is_file():
            add(path, None)
        else:
            failures.append((str(path), "no such file or folder"))
    return items, failures


def _people_in(width: int, height: int, args: argparse.Namespace, keypoints_file: Path | None = None,
               bbox_file: Path | None = None) -> list[_Person]:
    """Crop boxes (and keypoints) for one image from --bbox/--openpose files, else the whole image.

    Raises:
        _NoPerson: the OpenPose file holds nobody with enough confident keypoints for a box.
        _ItemError: a file is unreadable or malformed.
    """
    from mvspin.data.keypoint_files import choose_person, parse_person_choice, read_bbox_json, read_openpose_people
    from mvspin.learning.inference import whole_image_box
    from mvspin.learning.preprocess import bbox_to_center_scale, keypoints_to_center_scale

    choice = parse_person_choice(args.person)
    try:
        detected: list[tuple[str, np.ndarray]] = []
        if keypoints_file is not None:
            everyone = read_openpose_people(keypoints_file)  # each file parsed once
            if len(everyone) == 0:
                raise _NoPerson(f"{keypoints_file}: no people detected")
            if choice == "all":
                detected = [(f"_p{i}", k) for i, k in enumerate(everyone)]
            else:
                try:
                    detected = [("", everyone[choose_person(everyone, choice)])]
                except ValueError as err:
                    raise _ItemError(f"{keypoints_file}: {err}") from None
        if bbox_file is not None:
            # SPIN's demo uses a given box as it is (rescale 1).
            center, scale = bbox_to_center_scale(read_bbox_json(bbox_file), rescale=1.0)
            return [_Person("", center, scale, detected[0][1] if detected else None)]
        people = []
        for label, keypoints in detected:
            try:
                center, scale = keypoints_to_center_scale(keypoints)
            except ValueError as err:
                log.debug("%s: person %s skipped (%s)", keypoints_file, label or args.person, err)
                continue
            people.append(_Person(label, center, scale, keypoints))
        if detected and not people:
            raise _NoPerson(f"{keypoints_file}: no person with enough confident keypoints for a box")
        if people:
            return people
    except (FileNotFoundError, ValueError) as err:
        raise _ItemError(str(err)) from None
    center, scale = whole_image_box(width, height)
    return [_Person("", center, scale)]


# --- model ----------------------------------------------------------------------------------------


def _load_network(args: argparse.Namespace, body: Any, device: torch.device) -> tuple[Any, str]:
    """(regressor in eval mode, a line saying what it is)."""
    from mvspin.learning.checkpoint import load_regressor_checkpoint
    from mvspin.learning.regressor import HMRRegressor

    depth = BACKBONES[args.backbone] if args.backbone else None
    if args.checkpoint is None:
        torch.manual_seed(args.seed)
        model = HMRRegressor(depth or 50, mean_params=body.mean_params).to(device).eval()
        return model, (f"UNTRAINED ResNet-{model.depth} HMR regressor (--allow-untrained, seed {args.seed}): "
                       f"its predictions are meaningless")
    model, meta = load_regressor_checkpoint(args.checkpoint, depth=depth, map_location=device)
    epoch = f", epoch {meta['epoch']}" if "epoch" in meta else ""
    return model, f"{args.checkpoint} (ResNet-{model.depth} HMR regressor{epoch})"


# --- refinement -------------------------------------------------------------------------------------


def _refine(pred: Any, people: list[_Person], body: Any, config: Any) -> tuple[Any, np.ndarray]:
    """SMPLify (SPIN's single-view variant) on each row's OpenPose keypoints.

    Rows without keypoints (video frames that reuse an earlier box) keep the network's values.
    Returns the refined rows and their reprojection errors in image pixels (inf where unfitted).
    """
    from mvspin.learning.inference import refine_with_smplify

    given = [p.keypoints for p in people if p.keypoints is not None]
    if not given:
        return pred, np.full(len(people), np.inf)
    blank = np.zeros_like(given[0])
    if any(k.shape != blank.shape for k in given):
        raise _ItemError(f"OpenPose keypoint counts differ between files: {sorted({len(k) for k in given})}")
    keypoints = np.stack([p.keypoints if p.keypoints is not None else blank for p in people])
    refined, errors = refine_with_smplify(pred, keypoints, body, keypoint_set=_openpose_set(len(blank)),
                                          config=config)
    return refined, errors.numpy()


def _openpose_set(count: int) -> str:
    from mvspin.data.keypoint_files import openpose_keypoint_set

    try:
        return openpose_keypoint_set(count)
    except ValueError as err:
        raise _ItemError(f"--refine: {err}") from None


# --- writing one body ------------------------------------------------------------------------------


def _npz_extra(pred: Any, width: int, height: int, args: argparse.Namespace, source: Path,
               errors: np.ndarray | None) -> dict[str, Any]:
    """The file's camera and provenance keys (see the module doc)."""
    extra = {
        "K": pred.K.numpy(), "image_size": np.array([width, height]),
        "center": pred.center.numpy(), "scale": pred.scale.numpy(), "cam_crop": pred.cam_crop.numpy(),
        "source": np.array(str(source)),
        "checkpoint": np.array(str(args.checkpoint) if args.checkpoint else "untrained"),
        "refined": np.array(errors is not None),
    }
    if errors is not None:
        extra["reprojection_error_px"] = np.asarray(errors, dtype=np.float64)
    return extra


def _write_person(prefix: Path, pred: Any, body: Any, image: np.ndarray, args: argparse.Namespace,
                  source: Path, report: InferReport, errors: np.ndarray | None) -> None:
    """npz + obj + side view of one person (pred holds one row)."""
    from mvspin.io_outputs import side_view_image, write_image, write_mesh, write_smpl_npz

    height, width = image.shape[:2]
    vertices = pred.vertices[0].numpy()
    side = None
    if not args.no_render:
        with report.time("render"):
            side = side_view_image(vertices, body.faces, pred.K[0].numpy(), width, height)
    with report.time("write"):
        report.written.append(write_smpl_npz(
            prefix.with_suffix(".npz"), global_orient=pred.global_orient.numpy(),
            body_pose=pred.body_pose.numpy(), betas=pred.betas[0].numpy(), transl=pred.transl.numpy(),
            model=body.name, fps=0.0, extra=_npz_extra(pred, width, height, args, source, errors)))
        report.written.append(write_mesh(prefix.with_suffix(f".{args.mesh_format}"), vertices, body.faces))
        if side is not None:
            report.written.append(write_image(prefix.with_name(prefix.name + "_side.png"), side))


def _overlay_meshes(pred: Any, order: list[int] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    # Smaller boxes first: people nearer the camera (bigger) are painted over farther ones.
    order = order if order is not None else sorted(range(len(pred)), key=lambda i: float(pred.scale[i]))
    return [(pred.vertices[i].numpy(), pred.K[i].numpy()) for i in order]


# --- images -------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    item: _Input
    image: np.ndarray
    people: list[_Person]
    crops: torch.Tensor


def _prepare_image(item: _Input, predictor: Any, args: argparse.Namespace, report: InferReport) -> _Pending:
    from mvspin.data.keypoint_files import BBOX_NAME_PATTERNS, OPENPOSE_NAME_PATTERNS, matching_file
    from mvspin.learning.preprocess import read_image

    with report.time("read"):
        try:
            image = read_image(item.path)
        except (FileNotFoundError, ValueError) as err:
            raise _ItemError(str(err)) from None
    with report.time("crop"):
        height, width = image.shape[:2]
        try:
            keypoints_file = matching_file(args.openpose, item.path, OPENPOSE_NAME_PATTERNS, "OpenPose")
            bbox_file = matching_file(args.bbox, item.path, BBOX_NAME_PATTERNS, "bbox")
        except FileNotFoundError as err:
            raise _ItemError(str(err)) from None
        people = _people_in(width, height, args, keypoints_file, bbox_file)
        crops = torch.stack([predictor.crop(image, p.center, p.scale) for p in people])
    return _Pending(item, image, people, crops)


def _finish_images(pending: list[_Pending], predictor: Any, body: Any, args: argparse.Namespace,
                   report: InferReport) -> None:
    """One batched network call for every crop of ``pending``, then outputs per image."""
    from mvspin.io_outputs import overlay_image, write_image

    if not pending:
        return
    crops = torch.cat([p.crops for p in pending])
    centers = np.concatenate([[person.center for person in p.people] for p in pending])
    scales = np.concatenate([[person.scale for person in p.people] for p in pending])
    try:
        pred = predictor.predict_crops(crops, centers, scales, timings=report.timings)
    except (ValueError, RuntimeError) as err:  # e.g. out of memory: every image of the batch fails
        for p in pending:
            report.failures.append((str(p.item.path), f"network: {err}"))
        return
    start = 0
    for p in pending:
        rows = pred.select(slice(start, start + len(p.people)))
        start += len(p.people)
        try:
            errors = None
            if args.refine:
                with report.time("refine"):
                    rows, errors = _refine(rows, p.people, body, args.fit_settings)
            for i, person in enumerate(p.people):
                _write_person(p.item.prefix.with_name(p.item.prefix.name + person.label), rows.select([i]),
                              body, p.image, args, p.item.path, report, None if errors is None else errors[i:i + 1])
            if not args.no_render:
                with report.time("render"):
                    picture = overlay_image(p.image, _overlay_meshes(rows), body.faces)
                with report.time("write"):
                    report.written.append(write_image(p.item.prefix.with_name(p.item.prefix.name + "_overlay.png"),
                                                      picture))
            report.images += 1
            report.people += len(p.people)
        except (_ItemError, OSError, ValueError) as err:
            report.failures.append((str(p.item.path), str(err)))


def _run_images(items: list[_Input], predictor: Any, body: Any, args: argparse.Namespace,
                report: InferReport, progress: Any) -> None:
    pending: list[_Pending] = []
    for item in items:
        try:
            pending.append(_prepare_image(item, predictor, args, report))
        except (_ItemError, ValueError) as err:
            report.failures.append((str(item.path), str(err)))
            progress.update(1)
        if sum(len(p.people) for p in pending) >= args.batch_size:
            _finish_images(pending, predictor, body, args, report)
            progress.update(len(pending))
            pending = []
    _finish_images(pending, predictor, body, args, report)
    progress.update(len(pending))


# --- videos ---------------------------------------------------------------------------------------------


def _video_frames(path: Path, report: InferReport) -> tuple[Iterator[np.ndarray], float, int]:
    """(RGB frames in order, fps, reported frame count)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise _ItemError("cannot open video (unsupported or corrupt file)")
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                with report.time("read"):
                    ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    return frames(), fps if np.isfinite(fps) and fps > 0 else FALLBACK_FPS, count


def _video_person(index: int, image: np.ndarray, args: argparse.Namespace, keypoint_files: Any,
                  bbox_files: Any, last: _Person | None) -> tuple[_Person, bool]:
    """(the frame's person, whether its box came from this frame's own files).

    A frame without a file, or whose OpenPose file holds nobody, keeps the previous frame's box
    (the whole image before the first detection).
    """
    height, width = image.shape[:2]
    kp = keypoint_files.get(index) if isinstance(keypoint_files, dict) else keypoint_files
    bb = bbox_files.get(index) if isinstance(bbox_files, dict) else bbox_files
    missing = (isinstance(keypoint_files, dict) and kp is None) or (isinstance(bbox_files, dict) and bb is None)
    if not missing:
        try:
            return _people_in(width, height, args, kp, bb)[0], True
        except _NoPerson:
            pass
    if last is not None:
        return _Person("", last.center, last.scale), False
    return _people_in(width, height, args)[0], False


def _run_video(item: _Input, predictor: Any, body: Any, args: argparse.Namespace, report: InferReport,
               progress_factory: Any) -> None:
    from mvspin.data.keypoint_files import frame_files
    from mvspin.io_outputs import VideoWriter, overlay_image, write_smpl_npz
    from mvspin.learning.inference import Prediction

    if args.person == "all":
        raise _ItemError("--person all needs people tracked across frames; videos take one person per frame")
    try:
        keypoint_files = frame_files(args.openpose, item.path)
        bbox_files = frame_files(args.bbox, item.path)
    except FileNotFoundError as err:
        raise _ItemError(str(err)) from None
    frames, fps, count = _video_frames(item.path, report)
    parts: list[Any] = []
    errors: list[np.ndarray] = []
    detected: list[bool] = []
    size: tuple[int, int] | None = None
    video = None if args.no_render else VideoWriter(item.prefix.with_name(item.prefix.name + "_overlay.mp4"), fps)
    batch_images: list[np.ndarray] = []
    batch_people: list[_Person] = []
    last: _Person | None = None

    def flush() -> None:
        if not batch_images:
            return
        with report.time("crop"):
            crops = torch.stack([predictor.crop(img, p.center, p.scale)
                                 for img, p in zip(batch_images, batch_people)])
        pred = predictor.predict_crops(crops, np.stack([p.center for p in batch_people]),
                                       np.array([p.scale for p in batch_people]), with_vertices=video is not None,
                                       timings=report.timings)
        if args.refine:
            with report.time("refine"):
                pred, batch_errors = _refine(pred, batch_people, body, args.fit_settings)
            errors.append(batch_errors)
        for i, img in enumerate(batch_images):
            if video is not None:
                with report.time("render"):
                    picture = overlay_image(img, _overlay_meshes(pred.select([i]), [0]), body.faces)
                with report.time("write"):
                    video.write(picture)
        parts.append(dataclasses.replace(pred, vertices=None))  # the sequence file needs no meshes
        progress.update(len(batch_images))
        batch_images.clear()
        batch_people.clear()

    with progress_factory(total=count or None, desc=item.path.name, unit="frame", leave=False) as progress:
        try:
            for index, image in enumerate(frames):
                if size is None:
                    size = (image.shape[1], image.shape[0])
                with report.time("crop"):
                    person, found = _video_person(index, image, args, keypoint_files, bbox_files, last)
                last = person
                detected.append(found)
                batch_images.append(image)
                batch_people.append(person)
                if len(batch_images) >= args.batch_size:
                    flush()
            flush()
        except BaseException:
            if video is not None:
                video.abort()
            raise
    if not parts or size is None:
        if video is not None:
            video.abort()
        raise _ItemError("no frames could be decoded")
    pred = Prediction.concatenate(parts)
    with report.time("write"):
        if video is not None:
            report.written.append(video.close())
        extra = _npz_extra(pred, size[0], size[1], args, item.path, np.concatenate(errors) if errors else None)
        extra["box_detected"] = np.array(detected)
        report.written.append(write_smpl_npz(
            item.prefix.with_suffix(".npz"), global_orient=pred.global_orient.numpy(),
            body_pose=pred.body_pose.numpy(), betas=pred.betas.numpy(), transl=pred.transl.numpy(),
            model=body.name, fps=fps, extra=extra))
    report.videos += 1
    report.frames += len(pred)
    has_sources = args.openpose is not None or args.bbox is not None
    report.frames_without_box += sum(not d for d in detected) if has_sources else 0


# --- views ------------------------------------------------------------------------------------------


def _run_views(items: list[_Input], predictor: Any, body: Any, args: argparse.Namespace,
               report: InferReport) -> None:
    """All inputs are views of one moment: one fused body, per-view orientation and translation."""
    from mvspin.geometry import matrix_to_axis_angle
    from mvspin.io_outputs import overlay_image, side_view_image, write_image, write_mesh, write_smpl_npz
    from mvspin.learning.inference import fuse_view_predictions

    if len(items) < 2:
        raise ValueError(f"--views needs at least 2 images, got {len(items)}")
    videos = [str(i.path) for i in items if i.kind == "video"]
    if videos:
        raise ValueError(f"--views takes images, not videos: {videos[0]}")
    if args.person == "all":
        raise ValueError("--views takes one person per view; choose --person largest, most_confident or an index")
    pending = []
    for item in items:
        try:
            pending.append(_prepare_image(item, predictor, args, report))
        except _ItemError as err:
            raise ValueError(f"{item.path}: {err}") from None
    crops = torch.cat([p.crops for p in pending])
    people = [p.people[0] for p in pending]
    pred = predictor.predict_crops(crops, np.stack([p.center for p in people]), np.array([p.scale for p in people]),
                                   with_vertices=False, timings=report.timings)
    errors = None
    if args.refine:
        from mvspin.learning.inference import refine_views_with_mvsmplify

        keypoints = [p.keypoints for p in people]
        if any(k is None for k in keypoints):
            raise ValueError("--refine with --views needs OpenPose keypoints for every view (--openpose)")
        if len({len(k) for k in keypoints}) != 1:
            raise ValueError("--views: the OpenPose files hold different keypoint counts")
        with report.time("refine"):
            fused, errors_t = refine_views_with_mvsmplify(pred, np.stack(keypoints), body,
                                                          keypoint_set=_openpose_set(len(keypoints[0])),
                                                          config=args.fit_settings)
        errors = errors_t.numpy()
    else:
        with report.time("body model"):
            body_rot, betas = fuse_view_predictions(pred.rotmat[None], pred.betas[None])
            fused = _pose_views(body, body_rot[0], betas[0], pred)
    with report.time("write"):
        v = len(items)
        prefix = args.out / "views"
        extra = _npz_extra(fused, 0, 0, args, items[0].path, errors)
        extra["image_size"] = np.array([[p.image.shape[1], p.image.shape[0]] for p in pending])
        extra["source"] = np.array([str(i.path) for i in items])
        extra["view_names"] = np.array([i.path.stem for i in items])
        report.written.append(write_smpl_npz(
            prefix.with_suffix(".npz"), global_orient=matrix_to_axis_angle(fused.rotmat[:, 0]).numpy(),
            body_pose=matrix_to_axis_angle(fused.rotmat[:, 1:]).reshape(v, 69).numpy(),
            betas=fused.betas[0].numpy(), transl=fused.transl.numpy(), model=body.name, fps=0.0, extra=extra))
        report.written.append(write_mesh(prefix.with_suffix(f".{args.mesh_format}"), fused.vertices[0].numpy(),
                                         body.faces))
    if not args.no_render:
        for i, p in enumerate(pending):
            with report.time("render"):
                picture = overlay_image(p.image, [(fused.vertices[i].numpy(), fused.K[i].numpy())], body.faces)
                side = side_view_image(fused.vertices[i].numpy(), body.faces, fused.K[i].numpy(),
                                       p.image.shape[1], p.image.shape[0]) if i == 0 else None
            with report.time("write"):
                report.written.append(write_image(args.out / f"views_{p.item.path.stem}_overlay.png", picture))
                if side is not None:
                    report.written.append(write_image(args.out / "views_side.png", side))
    report.images += v
    report.people += 1


def _pose_views(body: Any, body_rot: torch.Tensor, betas: torch.Tensor, pred: Any) -> Any:
    """The fused body seen in every view: shared body pose/betas, each view's root and camera."""
    from mvspin.learning.inference import Prediction

    v = len(pred)
    rotmat = torch.cat([pred.rotmat[:, :1], body_rot.expand(v, 23, 3, 3)], dim=1)
    betas_v = betas.expand(v, -1)
    with torch.no_grad():
        posed = body(body_pose=rotmat[:, 1:], betas=betas_v, global_orient=rotmat[:, :1], transl=pred.transl)
    return Prediction(rotmat=rotmat, betas=betas_v, cam_crop=pred.cam_crop, center=pred.center, scale=pred.scale,
                      K=pred.K, transl=pred.transl, joints=posed.joints, vertices=posed.vertices)


# --- the command ----------------------------------------------------------------------------------


def execute(args: argparse.Namespace) -> InferReport:
    """Run ``mvspin infer`` with parsed arguments and return what it did (no summary printed).

    Raises:
        FileNotFoundError / ValueError (incl. CheckpointError): a problem with the whole run
            (checkpoint, options, --views inputs); problems with single inputs are collected in
            the report's ``failures`` instead.
    """
    # Loaded before any stage is timed, so no stage is charged with a one-time import: open3d
    # (meshes are written with it; its first import takes seconds) and torch._refs, which the
    # first call of torch.broadcast_shapes imports (~1 s) when the first crop is cut.
    import open3d  # noqa: F401
    from tqdm import tqdm

    from mvspin.data.keypoint_files import parse_person_choice
    from mvspin.learning.inference import Predictor

    torch.broadcast_shapes((1,), (1,))

    started = time.perf_counter()
    if args.checkpoint is None and not args.allow_untrained:
        raise ValueError("no --checkpoint given: an untrained network predicts meaningless bodies; pass "
                         "--checkpoint model_checkpoint.pt (SPIN's released one or an HMR checkpoint saved by mvspin)")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint {args.checkpoint}: no such file")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        parse_person_choice(args.person)
    except ValueError as err:
        raise ValueError(f"--{err}") from None
    for option, value in (("--bbox", args.bbox), ("--openpose", args.openpose)):
        if value is not None and not value.exists():
            raise FileNotFoundError(f"{option} {value}: no such file or folder")
    if args.person == "all" and args.bbox is not None:
        raise ValueError("--person all takes every person from --openpose; --bbox gives one box per image")
    if args.refine and args.openpose is None:
        raise ValueError("--refine fits SMPLify to 2D keypoints: give them with --openpose")
    if (args.fit or args.fit_config) and not args.refine:
        raise ValueError("--fit and --fit-config set up --refine, which is not on")
    args.fit_settings = _fit_settings(args) if args.refine else None
    device = resolve_device(args.device)
    body = load_body_model(args, device)
    model, description = _load_network(args, body, device)
    log.info("checkpoint: %s", description)
    predictor = Predictor(model, body, device=device, batch_size=args.batch_size)

    items, failures = _collect_inputs(list(args.inputs), args.out)
    report = InferReport(failures=failures)
    if args.views:
        if failures:
            raise FileNotFoundError(f"{failures[0][0]}: {failures[0][1]}")
        _run_views(items, predictor, body, args, report)
    else:
        images = [i for i in items if i.kind == "image"]
        videos = [i for i in items if i.kind == "video"]
        if images:
            with tqdm(total=len(images), desc="images", unit="img", disable=None) as progress:
                _run_images(images, predictor, body, args, report, progress)
        for item in videos:
            try:
                _run_video(item, predictor, body, args, report,
                           lambda **kw: tqdm(disable=None, **kw))
            except (_ItemError, OSError, ValueError) as err:
                report.failures.append((str(item.path), str(err)))
    report.seconds = time.perf_counter() - started
    return report


def _fit_settings(args: argparse.Namespace) -> Any:
    """The SMPLify (or, with --views, MV-SMPLify per-view) configuration for --refine."""
    from mvspin.config import load_config
    from mvspin.fitting import MVSMPLifyConfig, SMPLifyConfig, validate_config

    config = load_config(MVSMPLifyConfig if args.views else SMPLifyConfig, args.fit_config, args.fit)
    validate_config(config)
    if args.views and config.mode != "per_view":
        raise ValueError(f"--views without calibration fits in mode=per_view, got mode={config.mode}")
    return config


def _print_summary(report: InferReport, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    done = report.images + report.frames
    console.print(f"mvspin infer: {report.images} images ({report.people} people), {report.videos} videos "
                  f"({report.frames} frames); {len(report.written)} files written to {args.out}")
    table = Table(title="time per stage")
    table.add_column("stage")
    table.add_column("total s", justify="right")
    table.add_column("ms per image/frame", justify="right")
    for stage in STAGES:
        seconds = report.timings.get(stage, 0.0)
        if stage == "refine" and not args.refine:
            continue
        table.add_row(stage, f"{seconds:.2f}", f"{1000 * seconds / done:.1f}" if done else "-")
    table.add_row("all (incl. loading)", f"{report.seconds:.2f}",
                  f"{1000 * report.seconds / done:.1f}" if done else "-")
    console.print(table)
    if report.frames_without_box:
        console.print(f"{report.frames_without_box} video frames had no box or detection of their own and reused "
                      f"the previous frame's box (box_detected in the .npz)")
    if report.failures:
        print(f"{len(report.failures)} input(s) failed:", file=sys.stderr)
        for path, why in report.failures:
            print(f"  {path}: {why.removeprefix(f'{path}: ')}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    report = execute(args)
    _print_summary(report, args)
    return 1 if report.failures else 0

