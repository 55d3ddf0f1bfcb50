"""The inference pipeline: images, folders, videos or a set of views -> SMPL bodies and files.

:class:`InferencePipeline` loads the body model and the regressor once, then :meth:`run` takes
input paths and returns an :class:`InferReport` (counts, the files written, failures, the
predictions, seconds per stage). :meth:`InferencePipeline.predict_image` works on arrays and
writes nothing.

Outputs (under ``config.out``, one prefix per input, see :func:`collect_inputs`; ``_p<i>`` is
added per OpenPose person with ``person="all"``):

- ``<name>.npz``: SMPL parameters with AMASS keys plus the camera of the original image
  (:func:`mvspin.io_outputs.write_prediction_npz`).
- ``<name>.obj`` (or ``.ply``): the mesh in the camera frame (OpenCV axes: x right, y down,
  z forward).
- ``<name>_overlay.png`` (mesh over the image) and ``<name>_side.png`` (turned 90 degrees).
- Videos: ``<name>.npz`` with one row per frame (``fps`` from the video, ``box_detected``) and
  ``<name>_overlay.mp4``.
- ``views=True``: ``views.npz`` with one row per view (shared body pose and betas, per-view
  ``global_orient``/``transl``/``K``), ``views.obj`` (the fused body in the first view's camera
  frame), ``views_<name>_overlay.png`` per view and ``views_side.png``.
- ``infer_config.yaml``: the resolved :class:`InferConfig`.

The files of one input are written together or not at all (:class:`mvspin.atomic.OutputGroup`):
a failed input leaves nothing behind.

Example:
    >>> config = InferConfig(checkpoint=Path("model_checkpoint.pt"), out=Path("results"))  # doctest: +SKIP
    >>> report = InferencePipeline(config).run(["photos/"])  # doctest: +SKIP
    >>> report.files, report.failures  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import torch

from mvspin.atomic import OutputGroup
from mvspin.config import resolve_device
from mvspin.data.keypoint_files import (
    BBOX_NAME_PATTERNS,
    OPENPOSE_NAME_PATTERNS,
    frame_files,
    matching_file,
    openpose_keypoint_set,
    parse_person_choice,
)
from mvspin.data.video import VideoFrames
from mvspin.errors import InferError
from mvspin.inference.config import BACKBONES, MESH_FORMATS, InferConfig
from mvspin.inference.inputs import (
    InferInput,
    InputError,
    NoPersonError,
    PersonBox,
    check_image_size,
    collect_inputs,
    people_in_image,
)
from mvspin.regressor.predictor import Prediction, Predictor
from mvspin.regressor.preprocess import PREPROCESSING_MODES, preprocessing_for_checkpoint

if TYPE_CHECKING:
    from mvspin.body import BodyModel
    from mvspin.regressor.hmr import HMRRegressor

__all__ = ["STAGES", "InferError", "InferItem", "InferReport", "InferencePipeline", "run_inference",
           "load_regressor", "validate_infer_config"]

log = logging.getLogger("mvspin")

STAGES = ("read", "crop", "network", "body model", "refine", "render", "write")
CONFIG_FILE = "infer_config.yaml"


@dataclass
class InferItem:
    """One input's result.

    Attributes:
        source: the input file (the first view's for a view set).
        prediction: rows of the written bodies (people of an image, frames of a video, views),
            without meshes.
        files: the files written for it.
    """

    source: Path
    prediction: Prediction
    files: list[Path]


@dataclass
class InferReport:
    """What a run did: counts, results, files, failures and seconds per stage."""

    images: int = 0
    videos: int = 0
    frames: int = 0
    people: int = 0
    frames_without_box: int = 0
    items: list[InferItem] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    seconds: float = 0.0
    load_seconds: float = 0.0
    """Loading the body model and the network (once per pipeline), not in ``seconds``."""

    @property
    def files(self) -> list[Path]:
        """The distinct files written that exist now (what the summary counts)."""
        return [p for p in dict.fromkeys(self.written) if p.is_file()]

    def time(self, stage: str) -> "_StageTimer":
        return _StageTimer(self.timings, stage)


class _StageTimer:
    def __init__(self, timings: dict[str, float], stage: str) -> None:
        self.timings, self.stage = timings, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.stage] = self.timings.get(self.stage, 0.0) + time.perf_counter() - self.start


def load_regressor(checkpoint: Optional[Path], body: BodyModel, device: torch.device,
                   backbone: Optional[str] = None, seed: int = 0,
                   meta_out: Optional[dict[str, Any]] = None) -> tuple[HMRRegressor, str]:
    """(regressor in eval mode on ``device``, a line saying what it is).

    ``meta_out``, when given, receives the checkpoint's non-weight entries (how it describes
    itself: SPIN's files have no ``mvspin`` entry).

    ``checkpoint=None`` gives a randomly initialised network (seed ``seed``) with the body's
    mean parameters: meaningless bodies, for tests and benchmarks.
    """
    from mvspin.regressor.checkpoint import load_regressor_checkpoint
    from mvspin.regressor.hmr import HMRRegressor

    depth = BACKBONES[backbone] if backbone else None
    if checkpoint is None:
        torch.manual_seed(seed)
        model = HMRRegressor(depth or 50, mean_params=body.mean_params).to(device).eval()
        return model, (f"UNTRAINED ResNet-{model.depth} HMR regressor (--allow-untrained, seed {seed}): "
                       f"its predictions are meaningless")
    model, meta = load_regressor_checkpoint(checkpoint, depth=depth, map_location=device)
    if meta_out is not None:
        meta_out.update(meta)
    epoch = f", epoch {meta['epoch']}" if "epoch" in meta else ""
    return model, f"{checkpoint} (ResNet-{model.depth} HMR regressor{epoch})"


def validate_infer_config(config: InferConfig) -> None:
    """Refuse settings that make no sense, before anything is loaded.

    Raises:
        InferError / FileNotFoundError: naming the option.
    """
    if config.checkpoint is None and not config.allow_untrained:
        raise InferError("no --checkpoint given: an untrained network predicts meaningless bodies; pass "
                         "--checkpoint model_checkpoint.pt (SPIN's released one or an HMR checkpoint saved by mvspin)")
    if config.checkpoint is not None and not Path(config.checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint {config.checkpoint}: no such file")
    if config.backbone is not None and config.backbone not in BACKBONES:
        raise InferError(f"--backbone must be one of {', '.join(BACKBONES)}, got {config.backbone!r}")
    if config.mesh_format not in MESH_FORMATS:
        raise InferError(f"--mesh-format must be obj or ply, got {config.mesh_format!r}")
    if config.preprocessing is not None and config.preprocessing not in PREPROCESSING_MODES:
        raise InferError(f"--preprocessing must be one of {', '.join(PREPROCESSING_MODES)}, "
                         f"got {config.preprocessing!r}")
    if not 1 <= config.batch_size <= 4096:
        raise InferError(f"--batch-size must be in [1, 4096], got {config.batch_size}")
    try:
        person = parse_person_choice(config.person)
    except ValueError as err:
        raise InferError(f"--{err}") from None
    for option, value in (("--bbox", config.bbox), ("--openpose", config.openpose)):
        if value is not None and not Path(value).exists():
            raise FileNotFoundError(f"{option} {value}: no such file or folder")
    if person == "all" and config.bbox is not None:
        raise InferError("--person all takes every person from --openpose; --bbox gives one box per image")
    if config.views and person == "all":
        raise InferError("--views takes one person per view; choose --person largest, most_confident or an index")
    if config.refine and config.openpose is None:
        raise InferError("--refine fits SMPLify to 2D keypoints: give them with --openpose")
    if (config.fit or config.fit_config) and not config.refine:
        raise InferError("--fit and --fit-config set up --refine, which is not on")


def _fit_settings(config: InferConfig) -> Any:
    """The SMPLify (or, with views, MV-SMPLify per-view) configuration for refinement."""
    from mvspin.config import load_config
    from mvspin.fitting import MVSMPLifyConfig, SMPLifyConfig, validate_config

    settings = load_config(MVSMPLifyConfig if config.views else SMPLifyConfig, config.fit_config, config.fit)
    validate_config(settings)
    if isinstance(settings, MVSMPLifyConfig) and settings.mode != "per_view":
        raise InferError(f"--views without calibration fits in mode=per_view, got mode={settings.mode}")
    return settings


def _overlay_meshes(pred: Prediction, order: Optional[list[int]] = None) -> list[tuple[np.ndarray, np.ndarray]]:
    # Smaller boxes first: people nearer the camera (bigger) are painted over farther ones.
    order = order if order is not None else sorted(range(len(pred)), key=lambda i: float(pred.scale[i]))
    return [(pred.vertices[i].numpy(), pred.K[i].numpy()) for i in order]


def _output_group() -> OutputGroup:
    """One input's files, committed together. The writers (mvspin.io_outputs) already flush,
    fsync and re-read each file before it takes the group's temporary name, so the group's own
    commit only checks and renames (a second fsync per file doubled the write time)."""
    return OutputGroup(fsync=False)


def _suffixed(prefix: Path, suffix: str) -> Path:
    return prefix.with_name(prefix.name + suffix)


@dataclass
class _Pending:
    item: InferInput
    image: np.ndarray
    people: list[PersonBox]
    crops: torch.Tensor


class InferencePipeline:
    """Body model + regressor + settings, ready to run on inputs.

    Args:
        config: the run's settings (checked by :func:`validate_infer_config` first; the output
            folder is checked before the models load).
        body: a loaded body model (default: ``BodyModel.load`` of the config's body fields).
        model: a regressor (default: the config's checkpoint, or an untrained one).

    Raises:
        InferError, FileNotFoundError, OSError, CheckpointError: the run cannot start.
    """

    def __init__(self, config: InferConfig, body: Optional[BodyModel] = None,
                 model: Optional[HMRRegressor] = None) -> None:
        from mvspin.body import BodyModel
        from mvspin.io_outputs import check_output_folder

        started = time.perf_counter()
        validate_infer_config(config)
        self.config = config
        self.person = parse_person_choice(config.person)
        self.fit_settings = _fit_settings(config) if config.refine else None
        self.device = resolve_device(config.device, what="--device")
        check_output_folder(config.out)
        if body is None:
            body = BodyModel.load(config.smpl_dir, gender=config.gender, resolution=config.resolution,
                                  device=self.device)
        log.info("body model: %s (%s)", body.name, body.source)
        self.body = body.to(self.device)
        meta: Optional[dict[str, Any]] = None
        if model is None:
            meta = {} if config.checkpoint is not None else None
            model, description = load_regressor(config.checkpoint, self.body, self.device, config.backbone,
                                                config.seed, meta_out=meta)
        else:
            description = f"{type(model).__name__} given by the caller"
        log.info("checkpoint: %s", description)
        self.model = model
        self.preprocessing = config.preprocessing or preprocessing_for_checkpoint(meta)
        log.info("preprocessing: %s%s", self.preprocessing,
                 "" if config.preprocessing else " (the checkpoint's default)")
        self.predictor = Predictor(model, self.body, device=self.device, batch_size=config.batch_size,
                                   preprocessing=self.preprocessing)
        self.load_seconds = time.perf_counter() - started

    # --- arrays in, predictions out ----------------------------------------------------------

    def predict_image(self, image: np.ndarray, people: Optional[Sequence[PersonBox]] = None,
                      with_vertices: bool = True) -> Prediction:
        """Bodies in one ``(H, W, 3)`` uint8 RGB image (nothing written).

        Args:
            people: crop boxes (:class:`PersonBox`; default: one box over the whole image).
                Boxes with keypoints are refined when the config says ``refine``.

        Returns:
            One :class:`Prediction` row per person, in the image's camera.
        """
        from mvspin.inference.inputs import check_box
        from mvspin.regressor.predictor import whole_image_box

        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        check_image_size(width, height, "image")
        if people is None:
            people = [PersonBox("", *whole_image_box(width, height))]
        for p in people:
            check_box(p.center, p.scale, width, height, "image")
        crops = torch.stack([self.predictor.crop(image, p.center, p.scale) for p in people])
        pred = self.predictor.predict_crops(crops, np.stack([p.center for p in people]),
                                            np.array([p.scale for p in people]), with_vertices=with_vertices)
        if self.fit_settings is not None:
            pred, _ = self._refine(pred, list(people))
        return pred

    def _refine(self, pred: Prediction, people: list[PersonBox]) -> tuple[Prediction, np.ndarray]:
        """SMPLify (SPIN's single-view variant) on each row's keypoints.

        Rows without keypoints (video frames that reuse an earlier box) keep the network's
        values. Returns the refined rows and their reprojection errors in image pixels (inf
        where unfitted).
        """
        from mvspin.regressor.predictor import refine_with_smplify

        given = [p.keypoints for p in people if p.keypoints is not None]
        if not given:
            return pred, np.full(len(people), np.inf)
        blank = np.zeros_like(given[0])
        if any(k.shape != blank.shape for k in given):
            raise InputError(f"OpenPose keypoint counts differ between files: {sorted({len(k) for k in given})}")
        keypoints = np.stack([p.keypoints if p.keypoints is not None else blank for p in people])
        refined, errors = refine_with_smplify(pred, keypoints, self.body, keypoint_set=self._keypoint_set(len(blank)),
                                              config=self.fit_settings)
        return refined, errors.numpy()

    @staticmethod
    def _keypoint_set(count: int) -> str:
        try:
            return openpose_keypoint_set(count)
        except ValueError as err:
            raise InputError(f"--refine: {err}") from None

    # --- paths in, files out -------------------------------------------------------------------

    def run(self, inputs: Sequence[str | Path], progress: Any = None) -> InferReport:
        """Run on image files, folders and videos (or, with ``config.views``, views of one moment).

        Args:
            inputs: paths.
            progress: optional ``progress(total=..., desc=..., unit=...)`` returning a context
                manager with ``update(n)`` (e.g. ``tqdm``); None: no progress display.

        Returns:
            The report; problems with single inputs are in its ``failures``, not raised.

        Raises:
            InferError / FileNotFoundError / OSError: the run cannot go ahead (with views: any
                input that fails; an output file that a directory is in the way of).
        """
        # Loaded before any stage is timed, so no stage is charged with a one-time import: open3d
        # (meshes are written with it; its first import takes seconds) and torch._refs, which the
        # first call of torch.broadcast_shapes imports (~1 s) when the first crop is cut.
        import open3d  # noqa: F401

        from mvspin.config import save_config
        from mvspin.io_outputs import check_output_folder

        torch.broadcast_shapes((1,), (1,))
        progress = progress or _NoProgress
        started = time.perf_counter()
        cfg = self.config
        items, failures = collect_inputs(list(inputs), cfg.out)
        check_output_folder(cfg.out, [f for item in items for f in self._planned_files(item)])
        report = InferReport(failures=failures, load_seconds=self.load_seconds)
        if cfg.views:
            if failures:
                raise FileNotFoundError(f"{failures[0][0]}: {failures[0][1]}")
            self._run_views(items, report)
        else:
            images = [i for i in items if i.kind == "image"]
            videos = [i for i in items if i.kind == "video"]
            if images:
                with progress(total=len(images), desc="images", unit="img") as bar:
                    self._run_images(images, report, bar)
            for item in videos:
                try:
                    self._run_video(item, report, progress)
                except (OSError, ValueError) as err:
                    report.failures.append((str(item.path), str(err)))
        save_config(cfg, Path(cfg.out) / CONFIG_FILE)
        report.written.append(Path(cfg.out) / CONFIG_FILE)
        report.seconds = time.perf_counter() - started
        return report

    def _planned_files(self, item: InferInput) -> list[Path]:
        if self.config.views:
            return [Path(self.config.out) / f"views.{self.config.mesh_format}", Path(self.config.out) / "views.npz"]
        if item.kind == "video":
            return [item.prefix.with_suffix(".npz"), _suffixed(item.prefix, "_overlay.mp4")]
        return [item.prefix.with_suffix(".npz"), item.prefix.with_suffix(f".{self.config.mesh_format}"),
                _suffixed(item.prefix, "_overlay.png"), _suffixed(item.prefix, "_side.png")]

    def _read_image(self, item: InferInput, report: InferReport) -> _Pending:
        from mvspin.regressor.preprocess import read_image

        cfg = self.config
        with report.time("read"):
            try:
                image = read_image(item.path)
            except (FileNotFoundError, ValueError) as err:
                raise InputError(str(err)) from None
        with report.time("crop"):
            height, width = image.shape[:2]
            check_image_size(width, height, item.path)
            try:
                keypoints_file = matching_file(cfg.openpose, item.path, OPENPOSE_NAME_PATTERNS, "OpenPose")
                bbox_file = matching_file(cfg.bbox, item.path, BBOX_NAME_PATTERNS, "bbox")
            except FileNotFoundError as err:
                raise InputError(str(err)) from None
            people = people_in_image(width, height, keypoints_file, bbox_file, self.person, self.preprocessing)
            crops = torch.stack([self.predictor.crop(image, p.center, p.scale) for p in people])
        return _Pending(item, image, people, crops)

    def _write_image_outputs(self, p: _Pending, rows: Prediction, errors: Optional[np.ndarray],
                             report: InferReport) -> list[Path]:
        """npz + mesh + side view per person and the image's overlay, all or nothing."""
        from mvspin.io_outputs import overlay_image, side_view_image, write_image, write_mesh, write_prediction_npz

        cfg, body = self.config, self.body
        height, width = p.image.shape[:2]
        with _output_group() as group:
            for i, person in enumerate(p.people):
                prefix = _suffixed(p.item.prefix, person.label)
                row = rows.select([i])
                vertices = row.vertices[0].numpy()
                side = None
                if cfg.render:
                    with report.time("render"):
                        side = side_view_image(vertices, body.faces, row.K[0].numpy(), width, height)
                with report.time("write"):
                    write_prediction_npz(group.path(prefix.with_suffix(".npz")), row, model=body.name,
                                         image_size=[width, height], source=str(p.item.path),
                                         checkpoint=self._checkpoint_name,
                                         reprojection_error=None if errors is None else errors[i:i + 1])
                    write_mesh(group.path(prefix.with_suffix(f".{cfg.mesh_format}")), vertices, body.faces)
                    if side is not None:
                        write_image(group.path(_suffixed(prefix, "_side.png")), side)
            if cfg.render:
                with report.time("render"):
                    picture = overlay_image(p.image, _overlay_meshes(rows), body.faces)
                with report.time("write"):
                    write_image(group.path(_suffixed(p.item.prefix, "_overlay.png")), picture)
        return group.committed

    @property
    def _checkpoint_name(self) -> str:
        return str(self.config.checkpoint) if self.config.checkpoint else "untrained"

    def _finish_images(self, pending: list[_Pending], report: InferReport) -> None:
        """One batched network call for every crop of ``pending``, then outputs per image."""
        if not pending:
            return
        crops = torch.cat([p.crops for p in pending])
        centers = np.concatenate([[person.center for person in p.people] for p in pending])
        scales = np.concatenate([[person.scale for person in p.people] for p in pending])
        try:
            pred = self.predictor.predict_crops(crops, centers, scales, timings=report.timings)
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
                if self.fit_settings is not None:
                    with report.time("refine"):
                        rows, errors = self._refine(rows, p.people)
                files = self._write_image_outputs(p, rows, errors, report)
            except (OSError, ValueError) as err:
                report.failures.append((str(p.item.path), str(err)))
                continue
            report.written += files
            report.items.append(InferItem(p.item.path, dataclasses.replace(rows, vertices=None), files))
            report.images += 1
            report.people += len(p.people)

    def _run_images(self, items: list[InferInput], report: InferReport, progress: Any) -> None:
        pending: list[_Pending] = []
        for item in items:
            try:
                pending.append(self._read_image(item, report))
            except (OSError, ValueError) as err:
                report.failures.append((str(item.path), str(err)))
                progress.update(1)
            if sum(len(p.people) for p in pending) >= self.config.batch_size:
                self._finish_images(pending, report)
                progress.update(len(pending))
                pending = []
        self._finish_images(pending, report)
        progress.update(len(pending))

    # --- videos ------------------------------------------------------------------------------------

    def _video_person(self, index: int, width: int, height: int, keypoint_files: Any, bbox_files: Any,
                      last: Optional[PersonBox]) -> tuple[PersonBox, bool]:
        """(the frame's person, whether its box came from this frame's own files).

        A frame without a file, or whose OpenPose file holds nobody, keeps the previous frame's
        box (the whole image before the first detection).
        """
        kp = keypoint_files.get(index) if isinstance(keypoint_files, dict) else keypoint_files
        bb = bbox_files.get(index) if isinstance(bbox_files, dict) else bbox_files
        missing = (isinstance(keypoint_files, dict) and kp is None) or (isinstance(bbox_files, dict) and bb is None)
        if not missing:
            try:
                return people_in_image(width, height, kp, bb, self.person, self.preprocessing)[0], True
            except NoPersonError:
                pass
        if last is not None:
            return PersonBox("", last.center, last.scale), False
        return people_in_image(width, height)[0], False

    def _run_video(self, item: InferInput, report: InferReport, progress: Any) -> None:
        from mvspin.io_outputs import VideoWriter, overlay_image, write_prediction_npz

        cfg = self.config
        if self.person == "all":
            raise InputError("--person all needs people tracked across frames; videos take one person per frame")
        try:
            keypoint_files = frame_files(cfg.openpose, item.path)
            bbox_files = frame_files(cfg.bbox, item.path)
        except FileNotFoundError as err:
            raise InputError(str(err)) from None
        with report.time("read"):
            frames = VideoFrames(item.path)
        parts: list[Prediction] = []
        errors: list[np.ndarray] = []
        detected: list[bool] = []
        size: Optional[tuple[int, int]] = None
        batch_images: list[np.ndarray] = []
        batch_people: list[PersonBox] = []
        last: Optional[PersonBox] = None

        with _output_group() as group, progress(total=frames.reported_frames or None, desc=item.path.name,
                                              unit="frame", leave=False) as bar:
            video = None if not cfg.render else VideoWriter(group.path(_suffixed(item.prefix, "_overlay.mp4")),
                                                            frames.fps)

            def flush() -> None:
                if not batch_images:
                    return
                with report.time("crop"):
                    crops = torch.stack([self.predictor.crop(img, p.center, p.scale)
                                         for img, p in zip(batch_images, batch_people)])
                pred = self.predictor.predict_crops(crops, np.stack([p.center for p in batch_people]),
                                                    np.array([p.scale for p in batch_people]),
                                                    with_vertices=video is not None, timings=report.timings)
                if self.fit_settings is not None:
                    with report.time("refine"):
                        pred, batch_errors = self._refine(pred, batch_people)
                    errors.append(batch_errors)
                for i, img in enumerate(batch_images):
                    if video is not None:
                        with report.time("render"):
                            picture = overlay_image(img, _overlay_meshes(pred.select([i]), [0]), self.body.faces)
                        with report.time("write"):
                            video.write(picture)
                parts.append(dataclasses.replace(pred, vertices=None))  # the sequence file needs no meshes
                bar.update(len(batch_images))
                batch_images.clear()
                batch_people.clear()

            try:
                decoded = iter(frames)
                for index in range(1 << 62):
                    with report.time("read"):
                        image = next(decoded, None)
                    if image is None:
                        break
                    height, width = image.shape[:2]
                    if size is None:
                        check_image_size(width, height, item.path)
                        size = (width, height)
                    with report.time("crop"):
                        person, found = self._video_person(index, width, height, keypoint_files, bbox_files, last)
                    last = person
                    detected.append(found)
                    batch_images.append(image)
                    batch_people.append(person)
                    if len(batch_images) >= cfg.batch_size:
                        flush()
                flush()
                pred = Prediction.concatenate(parts)
                with report.time("write"):
                    if video is not None:
                        video.close()
                    write_prediction_npz(
                        group.path(item.prefix.with_suffix(".npz")), pred, model=self.body.name, image_size=list(size),
                        source=str(item.path), checkpoint=self._checkpoint_name, fps=frames.fps, betas=pred.betas,
                        reprojection_error=np.concatenate(errors) if errors else None,
                        extra={"box_detected": np.array(detected)})
            except BaseException:
                if video is not None:
                    video.abort()
                frames.close()
                raise
        report.written += group.committed
        report.items.append(InferItem(item.path, pred, group.committed))
        report.videos += 1
        report.frames += len(pred)
        has_sources = cfg.openpose is not None or cfg.bbox is not None
        report.frames_without_box += sum(not d for d in detected) if has_sources else 0

    # --- views ---------------------------------------------------------------------------------------

    def _run_views(self, items: list[InferInput], report: InferReport) -> None:
        """All inputs are views of one moment: one fused body, per-view orientation and translation."""
        from mvspin.io_outputs import overlay_image, side_view_image, write_image, write_mesh, write_prediction_npz
        from mvspin.regressor.predictor import fuse_view_predictions, refine_views_with_mvsmplify

        cfg, body = self.config, self.body
        if len(items) < 2:
            raise InferError(f"--views needs at least 2 images, got {len(items)}")
        videos = [str(i.path) for i in items if i.kind == "video"]
        if videos:
            raise InferError(f"--views takes images, not videos: {videos[0]}")
        pending = []
        for item in items:
            try:
                pending.append(self._read_image(item, report))
            except (OSError, ValueError) as err:
                raise InferError(f"{item.path}: {str(err).removeprefix(f'{item.path}: ')}") from None
        crops = torch.cat([p.crops for p in pending])
        people = [p.people[0] for p in pending]
        pred = self.predictor.predict_crops(crops, np.stack([p.center for p in people]),
                                            np.array([p.scale for p in people]), with_vertices=False,
                                            timings=report.timings)
        errors = None
        if self.fit_settings is not None:
            keypoints = [p.keypoints for p in people]
            if any(k is None for k in keypoints):
                raise InferError("--refine with --views needs OpenPose keypoints for every view (--openpose)")
            if len({len(k) for k in keypoints}) != 1:
                raise InferError("--views: the OpenPose files hold different keypoint counts")
            with report.time("refine"):
                fused, errors_t = refine_views_with_mvsmplify(pred, np.stack(keypoints), body,
                                                              keypoint_set=self._keypoint_set(len(keypoints[0])),
                                                              config=self.fit_settings)
            errors = errors_t.numpy()
        else:
            with report.time("body model"):
                body_rot, betas = fuse_view_predictions(pred.rotmat[None], pred.betas[None])
                fused = _pose_views(body, body_rot[0], betas[0], pred)
        out = Path(cfg.out)
        with _output_group() as group:
            with report.time("write"):
                write_prediction_npz(
                    group.path(out / "views.npz"), fused, model=body.name,
                    image_size=np.array([[p.image.shape[1], p.image.shape[0]] for p in pending]),
                    source=np.array([str(i.path) for i in items]), checkpoint=self._checkpoint_name,
                    betas=fused.betas[0], reprojection_error=errors,
                    extra={"view_names": np.array([i.prefix.name for i in items])})
                write_mesh(group.path(out / f"views.{cfg.mesh_format}"), fused.vertices[0].numpy(), body.faces)
            if cfg.render:
                for i, p in enumerate(pending):
                    with report.time("render"):
                        picture = overlay_image(p.image, [(fused.vertices[i].numpy(), fused.K[i].numpy())],
                                                body.faces)
                        side = side_view_image(fused.vertices[i].numpy(), body.faces, fused.K[i].numpy(),
                                               p.image.shape[1], p.image.shape[0]) if i == 0 else None
                    with report.time("write"):
                        # Named by the input's unique prefix: cam1/000.jpg and cam2/000.jpg differ.
                        write_image(group.path(out / f"views_{p.item.prefix.name}_overlay.png"), picture)
                        if side is not None:
                            write_image(group.path(out / "views_side.png"), side)
        report.written += group.committed
        report.items.append(InferItem(items[0].path, dataclasses.replace(fused, vertices=None), group.committed))
        report.images += len(items)
        report.people += 1


def _pose_views(body: BodyModel, body_rot: torch.Tensor, betas: torch.Tensor, pred: Prediction) -> Prediction:
    """The fused body seen in every view: shared body pose/betas, each view's root and camera."""
    v = len(pred)
    rotmat = torch.cat([pred.rotmat[:, :1], body_rot.expand(v, 23, 3, 3)], dim=1)
    betas_v = betas.expand(v, -1)
    dev, dt = body.J_template.device, body.J_template.dtype
    with torch.no_grad():
        posed = body(body_pose=rotmat[:, 1:].to(dev, dt), betas=betas_v.to(dev, dt),
                     global_orient=rotmat[:, :1].to(dev, dt), transl=pred.transl.to(dev, dt))
    return Prediction(rotmat=rotmat, betas=betas_v, cam_crop=pred.cam_crop, center=pred.center, scale=pred.scale,
                      K=pred.K, transl=pred.transl, joints=posed.joints.float().cpu(),
                      vertices=posed.vertices.float().cpu())


class _NoProgress:
    """A progress display that shows nothing."""

    def __init__(self, **_: Any) -> None:
        pass

    def __enter__(self) -> "_NoProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass


def run_inference(inputs: Sequence[str | Path], config: InferConfig, body: Optional[BodyModel] = None) -> InferReport:
    """Load the models for ``config`` and run on ``inputs`` (:class:`InferencePipeline`).

    Example:
        >>> report = run_inference(["img.jpg"], InferConfig(checkpoint=Path("ckpt.pt")))  # doctest: +SKIP
    """
    return InferencePipeline(config, body=body).run(inputs)
