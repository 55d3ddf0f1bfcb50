"""What every kind of infer input shares: the loaded models (:class:`InferSession`), the report,
and how one input's files are written together.

:class:`InferSession` loads the body model and the regressor of an :class:`InferConfig` once; its
:meth:`~InferSession.predict_image` is the array API (an image in, bodies out, nothing written).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import torch

from mvspin.apps.infer.config import BACKBONES, InferConfig
from mvspin.apps.infer.inputs import InputError, PersonBox, check_box, check_image_size
from mvspin.atomic import OutputGroup
from mvspin.config import resolve_device
from mvspin.data.keypoint_files import openpose_keypoint_set, parse_person_choice
from mvspin.errors import InferError
from mvspin.regressor.predictor import Prediction, Predictor, refine_with_smplify, timed, whole_image_box
from mvspin.regressor.preprocess import preprocessing_for_checkpoint

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from mvspin.body import BodyModel
    from mvspin.regressor.hmr import HMRRegressor

__all__ = ["STAGES", "CONFIG_FILE", "InferError", "InferItem", "InferReport", "InferSession", "load_regressor"]

log = logging.getLogger("mvspin")

STAGES = ("read", "crop", "network", "body model", "refine", "render", "write")
"""The stages :attr:`InferReport.timings` splits a run's seconds into."""
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
    """Images whose bodies were written (each view of a view set counts)."""
    videos: int = 0
    frames: int = 0
    """Video frames written, over every video."""
    people: int = 0
    """Bodies written for images (one per view set)."""
    frames_without_box: int = 0
    """Video frames with no box or detection of their own (they reuse the previous frame's box)."""
    items: list[InferItem] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    """``(input, why)`` for every input that failed; the others were written."""
    timings: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    """Seconds per stage (:data:`STAGES`)."""
    seconds: float = 0.0
    """Wall time of the run after loading."""
    load_seconds: float = 0.0
    """Loading the body model and the network, not in ``seconds``."""

    @property
    def files(self) -> list[Path]:
        """The distinct files written that exist now (what the summary counts)."""
        return [p for p in dict.fromkeys(self.written) if p.is_file()]

    def time(self, stage: str) -> "AbstractContextManager[None]":
        """A ``with`` block whose wall time is added to ``timings[stage]``."""
        return timed(self.timings, stage)


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
        return model, (f"UNTRAINED ResNet-{model.depth} HMR regressor (allow_untrained, seed {seed}): "
                       f"its predictions are meaningless")
    model, meta = load_regressor_checkpoint(checkpoint, depth=depth, map_location=device)
    if meta_out is not None:
        meta_out.update(meta)
    epoch = f", epoch {meta['epoch']}" if "epoch" in meta else ""
    return model, f"{checkpoint} (ResNet-{model.depth} HMR regressor{epoch})"


def resolve_config_device(config: InferConfig) -> torch.device:
    """The torch device of ``config.device`` (:class:`~mvspin.config.ConfigError` naming the field
    ``device`` when there is no such device here)."""
    return resolve_device(config.device, what="device")


class InferSession:
    """The body model and the regressor of one :class:`InferConfig`, loaded once.

    Args:
        config: the settings (its files are expected to exist: :func:`mvspin.apps.infer.run`
            checks them first).
        body: a loaded body model (default: ``config.body.load()``).
        model: a regressor (default: the config's checkpoint, or an untrained one).

    Raises:
        ConfigError, FileNotFoundError, CheckpointError: the models cannot be loaded.

    Example:
        >>> session = InferSession(InferConfig(inputs=[Path("a.jpg")], checkpoint=Path("ckpt.pt")))  # doctest: +SKIP
        >>> session.predict_image(rgb).transl  # doctest: +SKIP
    """

    def __init__(self, config: InferConfig, body: Optional[BodyModel] = None,
                 model: Optional[HMRRegressor] = None) -> None:
        started = time.perf_counter()
        self.config = config
        self.person = parse_person_choice(config.person)
        self.fit_settings = config.single_view_fit() if config.refine else None
        self.device = resolve_config_device(config)
        if body is None:
            body = config.body.load(self.device)
        else:
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

    @property
    def checkpoint_name(self) -> str:
        """How output files name the network (the checkpoint path, or ``untrained``)."""
        return str(self.config.checkpoint) if self.config.checkpoint else "untrained"

    def predict_image(self, image: np.ndarray, people: Optional[Sequence[PersonBox]] = None,
                      with_vertices: bool = True) -> Prediction:
        """Bodies in one ``(H, W, 3)`` uint8 RGB image (nothing written).

        Args:
            people: crop boxes (:class:`PersonBox`; default: one box over the whole image).
                Boxes with keypoints are refined when the config says ``refine``.

        Returns:
            One :class:`Prediction` row per person, in the image's camera.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        check_image_size(width, height, "image")
        if people is None:
            people = [PersonBox("", *whole_image_box(width, height))]
        for p in people:
            check_box(p.center, p.scale, width, height, "image")
        centers, scales = boxes_of(people)
        pred = self.predictor.predict_crops(crops_of(self.predictor, [image] * len(people), people), centers, scales,
                                            with_vertices=with_vertices)
        if self.fit_settings is not None:
            pred, _ = self.refine(pred, list(people))
        return pred

    def refine(self, pred: Prediction, people: list[PersonBox]) -> tuple[Prediction, np.ndarray]:
        """SMPLify (SPIN's single-view variant) on each row's keypoints.

        Rows without keypoints (video frames that reuse an earlier box) keep the network's
        values. Returns the refined rows and their reprojection errors in image pixels (inf
        where unfitted).
        """
        given = [p.keypoints for p in people if p.keypoints is not None]
        if not given:
            return pred, np.full(len(people), np.inf)
        blank = np.zeros_like(given[0])
        if any(k.shape != blank.shape for k in given):
            raise InputError(f"OpenPose keypoint counts differ between files: {sorted({len(k) for k in given})}")
        keypoints = np.stack([p.keypoints if p.keypoints is not None else blank for p in people])
        refined, errors = refine_with_smplify(pred, keypoints, self.body, keypoint_set=keypoint_set(len(blank)),
                                              config=self.fit_settings)
        return refined, errors.numpy()


def keypoint_set(count: int) -> str:
    """The OpenPose keypoint set of ``count`` keypoints per person (:class:`InputError` if none)."""
    try:
        return openpose_keypoint_set(count)
    except ValueError as err:
        raise InputError(f"refine: {err}") from None


def overlay_meshes(pred: Prediction, order: Optional[list[int]] = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(vertices, K)`` per row for :func:`mvspin.io_outputs.overlay_image`. Smaller boxes come
    first: people nearer the camera (bigger) are painted over farther ones."""
    order = order if order is not None else sorted(range(len(pred)), key=lambda i: float(pred.scale[i]))
    return [(pred.vertices[i].numpy(), pred.K[i].numpy()) for i in order]


def output_group() -> OutputGroup:
    """One input's files, committed together. The writers (mvspin.io_outputs) already flush,
    fsync and re-read each file before it takes the group's temporary name, so the group's own
    commit only checks and renames (a second fsync per file doubled the write time)."""
    return OutputGroup(fsync=False)


def suffixed(prefix: Path, suffix: str) -> Path:
    """``prefix`` with ``suffix`` appended to its name (``out/img`` + ``_side.png``)."""
    return prefix.with_name(prefix.name + suffix)


def crops_of(predictor: Predictor, images: Sequence[np.ndarray], people: Sequence[PersonBox]) -> torch.Tensor:
    """``(N, 3, S, S)`` network inputs: each person's crop of its image."""
    return torch.stack([predictor.crop(image, p.center, p.scale) for image, p in zip(images, people)])


def boxes_of(people: Sequence[PersonBox]) -> tuple[np.ndarray, np.ndarray]:
    """``(centers (N, 2), scales (N,))`` of ``people``'s crop boxes."""
    return np.stack([p.center for p in people]), np.array([p.scale for p in people])
