"""The infer job's entry point: :func:`run`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from mvspin.apps.infer.config import InferConfig
from mvspin.apps.infer.images import image_files, run_images
from mvspin.apps.infer.inputs import InferInput, collect_inputs
from mvspin.apps.infer.session import CONFIG_FILE, InferReport, InferSession, resolve_config_device
from mvspin.apps.infer.video import run_video, video_files
from mvspin.apps.infer.views import run_views, views_files
from mvspin.config import ConfigError, save_config
from mvspin.progress import Progress, no_progress

if TYPE_CHECKING:
    from mvspin.body import BodyModel
    from mvspin.regressor.hmr import HMRRegressor

__all__ = ["run", "check_infer_files"]


def check_infer_files(config: InferConfig) -> None:
    """The files ``config`` names exist (checked before any work).

    Raises:
        ConfigError: naming the field (``checkpoint``, ``bbox``, ``openpose``) and the path.
    """
    if config.checkpoint is not None and not config.checkpoint.is_file():
        raise ConfigError(f"checkpoint {config.checkpoint}: no such file", field="checkpoint")
    for name in ("bbox", "openpose"):
        value = getattr(config, name)
        if value is not None and not value.exists():
            raise ConfigError(f"{name} {value}: no such file or folder", field=name)


def _planned_files(config: InferConfig, items: list[InferInput]) -> list[Path]:
    if config.views:
        return views_files(config)
    return [f for item in items for f in (video_files(item) if item.kind == "video" else image_files(config, item))]


def _check_out(config: InferConfig, items: list[InferInput]) -> None:
    """The output folder, and the place of every file the inputs will write (OutputLocationError
    with ``field="out"``)."""
    from mvspin.io_outputs import check_output_folder

    check_output_folder(config.out, _planned_files(config, items), what="out")


def run(config: InferConfig, progress: Progress = no_progress, *, body: Optional[BodyModel] = None,
        model: Optional[HMRRegressor] = None) -> InferReport:
    """Run a regressor on image files, folders and videos (or, with ``config.views``, on the
    views of one moment) and write bodies, meshes and overlays under ``config.out``.

    Before anything is loaded the files the config names are checked, the inputs listed and the
    output folder (and every output file's place) checked; then the models load once
    (:class:`~mvspin.apps.infer.session.InferSession`) and each input is processed by its kind
    (:mod:`~mvspin.apps.infer.images`, :mod:`~mvspin.apps.infer.video`,
    :mod:`~mvspin.apps.infer.views`). The resolved config is saved as ``infer_config.yaml``.

    Args:
        config: the settings.
        progress: :class:`~mvspin.progress.Progress` (stages ``images``, ``frames of <video>``,
            ``views``).
        body, model: an already loaded body model / regressor to use instead of the config's.

    Returns:
        The report; problems with single inputs are in its ``failures``, not raised.

    Raises:
        ConfigError: a file the config names is missing, or the device does not exist.
        OutputLocationError: the output folder or an output file's place is blocked.
        InferError / FileNotFoundError / CheckpointError: the run cannot go ahead (with views:
            any input that fails).

    Example:
        >>> config = InferConfig(inputs=[Path("photos")], checkpoint=Path("model_checkpoint.pt"))  # doctest: +SKIP
        >>> report = run(config)  # doctest: +SKIP
        >>> report.files, report.failures  # doctest: +SKIP
    """
    check_infer_files(config)
    resolve_config_device(config)
    items, failures = collect_inputs(config.inputs, config.out)
    if config.views and failures:
        raise FileNotFoundError(f"{failures[0][0]}: {failures[0][1]}")
    _check_out(config, items)
    session = InferSession(config, body=body, model=model)
    # Loaded before any stage is timed, so no stage is charged with a one-time import: open3d
    # (meshes are written with it; its first import takes seconds) and torch._refs, which the
    # first call of torch.broadcast_shapes imports (~1 s) when the first crop is cut.
    import open3d  # noqa: F401

    torch.broadcast_shapes((1,), (1,))
    started = time.perf_counter()
    report = InferReport(failures=failures, load_seconds=session.load_seconds)
    if config.views:
        run_views(session, items, report, progress)
    else:
        images = [i for i in items if i.kind == "image"]
        if images:
            run_images(session, images, report, progress)
        for item in (i for i in items if i.kind == "video"):
            try:
                run_video(session, item, report, progress)
            except (OSError, ValueError) as err:
                report.failures.append((str(item.path), str(err)))
    save_config(config, config.out / CONFIG_FILE)
    report.written.append(config.out / CONFIG_FILE)
    report.seconds = time.perf_counter() - started
    return report
