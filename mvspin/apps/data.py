"""The ``data`` jobs: make bundle files and inspect them.

- :func:`run_synthetic` (:class:`SyntheticDataConfig`): render a synthetic multi-camera capture
  with ground truth (:func:`mvspin.data.synthetic_capture.generate_capture_file`);
- :func:`run_build` (:class:`BuildDataConfig`): convert Human3.6M, MPI-INF-3DHP or 3DPW (or
  SPIN's preprocessed Human3.6M npz) into a bundle file (:mod:`mvspin.data.builders`);
- :func:`run_info` (:class:`DataInfoConfig`): describe a bundle file, optionally reading all of
  it as training does.

Example:
    >>> from mvspin.apps.data import SyntheticDataConfig, run_synthetic  # doctest: +SKIP
    >>> report = run_synthetic(SyntheticDataConfig(out=Path("synth.h5"), bundles=10))  # doctest: +SKIP
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from mvspin.atomic import check_output_location, removed_if_unused, write_bytes_atomic
from mvspin.body import BodyModelConfig
from mvspin.config import ConfigError, check_range
from mvspin.data.builders import BuildReport, resolve_builder
from mvspin.data.synthetic_capture import GenerationReport
from mvspin.data.synthetic_options import SyntheticOptions
from mvspin.errors import BuildDataError
from mvspin.progress import Progress, no_progress

__all__ = ["SyntheticDataConfig", "run_synthetic", "BuildDataConfig", "run_build",
           "DataInfoConfig", "DataInfoReport", "run_info", "MAX_BUNDLES"]

MAX_BUNDLES = 10_000_000
"""The most bundles one synthetic file holds (``bundles``)."""


@dataclass
class SyntheticDataConfig:
    """Everything ``mvspin data synthetic`` needs."""

    out: Path
    """Output bundle file (.h5)."""
    bundles: int
    """Number of bundles N."""
    seed: int = 0
    """Seed: bundle i depends only on the seed, i and the options."""
    options: SyntheticOptions = field(default_factory=lambda: SyntheticOptions.preset("capture"))
    """How the capture is made (default: SyntheticOptions' capture preset); saved in the file's
    options attribute."""
    body: BodyModelConfig = field(default_factory=BodyModelConfig)
    """The body model posed."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        check_range("bundles", self.bundles, 1, MAX_BUNDLES, integer=True)
        check_range("seed", self.seed, 0, integer=True)


def run_synthetic(config: SyntheticDataConfig, progress: Progress = no_progress) -> GenerationReport:
    """Render ``config.bundles`` synthetic bundles into ``config.out`` (which appears only when complete).

    Raises:
        OutputLocationError: ``out`` cannot be written (before the body model loads).
        ConfigError: options the renderer cannot draw.
    """
    from mvspin.data.synthetic_capture import check_renderable, generate_capture_file

    check_renderable(config.options)
    with removed_if_unused(config.out.parent):
        check_output_location(config.out, what="out")  # before the body model and the renderer start
        body = config.body.load()
        return generate_capture_file(config.out, config.bundles, seed=config.seed, options=config.options,
                                     body=body, progress=progress)


# Config field -> builder keyword argument (the builders name them alike).
_BUILD_OPTIONS = ("split", "every_nth", "subjects", "sequences", "cameras", "image_storage", "frames_dir",
                  "jpeg_quality", "bbox_scale_factor")


@dataclass
class BuildDataConfig:
    """Everything ``mvspin data build`` needs; options left None take the builder's default."""

    dataset: str
    """h36m, h36m_spin_npz, mpi_inf_3dhp or 3dpw."""
    root: Path
    """The dataset's root folder (h36m_spin_npz: the .npz file)."""
    out: Path
    """Output bundle file (.h5)."""
    split: Optional[str] = None
    """train or test (builder default: train; 3DPW: test)."""
    every_nth: Optional[int] = None
    """Frame step (default: the dataset protocol's)."""
    subjects: Optional[list[str]] = None
    """Subjects to include (default: the split's)."""
    sequences: Optional[list[str]] = None
    """Sequences to include."""
    cameras: Optional[list[str]] = None
    """Cameras forming the views, in order."""
    image_storage: Optional[Literal["bytes", "paths"]] = None
    """Embed encoded frames (bytes, default) or write image files and store paths."""
    frames_dir: Optional[Path] = None
    """Where image files go with image_storage paths."""
    jpeg_quality: Optional[int] = None
    """JPEG quality of stored frames, 0..100."""
    bbox_scale_factor: Optional[float] = None
    """Crop box enlargement (default 1.2)."""
    report: Optional[Path] = None
    """Also write the build report as JSON here."""

    def __post_init__(self) -> None:
        self.root, self.out = Path(self.root), Path(self.out)
        try:
            builder = resolve_builder(self.dataset)
        except ValueError as err:
            # no field: on the command line it is the first argument, not a flag to name
            raise ConfigError(str(err)) from None
        check_range("every_nth", self.every_nth, 1, integer=True)
        check_range("jpeg_quality", self.jpeg_quality, 0, 100, integer=True)
        check_range("bbox_scale_factor", self.bbox_scale_factor, 0, 100, low_open=True)
        if self.image_storage not in (None, "bytes", "paths"):
            raise ConfigError(f"image_storage must be bytes or paths, got {self.image_storage!r}", field="image_storage")
        for name in ("subjects", "sequences", "cameras"):
            values = getattr(self, name)
            if values is not None and len(set(values)) != len(values):
                twice = sorted({v for v in values if values.count(v) > 1})
                raise ConfigError(f"{name} names {', '.join(map(str, twice))} more than once", field=name)
        params = inspect.signature(builder).parameters
        for name in _BUILD_OPTIONS:
            if getattr(self, name) is not None and name not in params:
                takes = ", ".join(p for p in params if p not in ("root", "out_path", "npz_path", "progress"))
                raise ConfigError(f"{name} is not an option of the {self.dataset} builder (it takes: {takes})",
                                  field=name)
        default = params["cameras"].default if "cameras" in params else None
        # MPI-INF-3DHP numbers its cameras; Human3.6M names them by id strings.
        if self.cameras is not None and isinstance(default, (tuple, list)) and default and isinstance(default[0], int):
            try:
                [int(c) for c in self.cameras]
            except ValueError:
                raise ConfigError(f"cameras: {self.dataset} cameras are integers, got {self.cameras}",
                                  field="cameras") from None

    def builder_options(self) -> dict[str, Any]:
        """The keyword arguments for the builder (options given, in the builder's types)."""
        default = inspect.signature(resolve_builder(self.dataset)).parameters.get("cameras")
        opts: dict[str, Any] = {name: getattr(self, name) for name in _BUILD_OPTIONS if getattr(self, name) is not None}
        if "cameras" in opts and default is not None and isinstance(default.default, (tuple, list)) \
                and default.default and isinstance(default.default[0], int):
            opts["cameras"] = [int(c) for c in opts["cameras"]]
        return opts


def run_build(config: BuildDataConfig, progress: Progress = no_progress) -> BuildReport:
    """Build ``config.out`` from the raw files under ``config.root``; write the report JSON if asked.

    Raises:
        FileNotFoundError: ``root`` does not exist. OutputLocationError: an output cannot be
            written (both before any work).
        BuildDataError: nothing could be built (the report names why; ``out`` was not written).
    """
    if not config.root.exists():
        raise FileNotFoundError(2, "dataset root does not exist", str(config.root))
    with removed_if_unused(config.out.parent):
        check_output_location(config.out, what="out")
        return _build(config, progress)


def _build(config: BuildDataConfig, progress: Progress) -> BuildReport:
    from mvspin.data.builders import build

    if config.report is not None:
        check_output_location(config.report, what="report")
    if config.frames_dir is not None:
        check_output_location(config.frames_dir, kind="folder", what="frames_dir")
    report = build(config.dataset, config.root, config.out, progress=progress, **config.builder_options())
    if config.report is not None:
        write_bytes_atomic(config.report, json.dumps(report.to_dict(), indent=2).encode("utf-8"))
    if report.num_bundles == 0:
        raise BuildDataError(f"no bundle could be built from {config.root} ({len(report.skipped)} items skipped: "
                             f"{report.skipped[0].reason if report.skipped else 'nothing found'}); "
                             f"{config.out} was not written", report)
    return report


@dataclass
class DataInfoConfig:
    """Everything ``mvspin data info`` needs."""

    file: Path
    """The bundle file (.h5)."""
    validate: bool = False
    """Read the whole file as training does: every field, every value, every image decoded
    (embedded or the file each path names)."""

    def __post_init__(self) -> None:
        self.file = Path(self.file)


@dataclass
class DataInfoReport:
    """A bundle file's layout (and, with ``validate``, how many bundles were read completely)."""

    bundles: Any
    """The :class:`~mvspin.data.bundle_format.BundleFile`."""
    validated: Optional[int] = None
    """Bundles read completely (None: not validated)."""

    def lines(self) -> list[str]:
        """The description, one line per entry."""
        b = self.bundles
        out = [repr(b), f"  fields: {', '.join(b.fields)}",
               f"  2D keypoints: {b.keypoint_set}; 3D joints: {b.joints_3d_keypoint_set or 'none'}"
               + (f" ({b.joints_3d_frame})" if b.joints_3d_frame else ""),
               f"  images: {b.image_storage}; cameras: {'yes' if b.has_cameras else 'no'}; "
               f"SMPL: {'yes' if b.has_smpl else 'no'}"]
        for key, value in sorted(b.attrs.items()):
            if key in ("format", "format_version", "dataset", "split", "num_views"):
                continue
            text = str(value)
            out.append(f"  {key}: {text if len(text) <= 100 else text[:97] + '...'}")
        if self.validated is not None:
            out.append(f"  values: valid ({self.validated} bundles: every field read, every image decoded)")
        return out


def run_info(config: DataInfoConfig, progress: Progress = no_progress) -> DataInfoReport:
    """Open ``config.file`` (its layout is checked) and, with ``validate``, read all of it.

    Raises:
        BundleFormatError: naming the file, field, bundle and view at fault.
    """
    from mvspin.data.bundle_format import BundleFile, validate_bundle_contents

    bundles = BundleFile(config.file)
    checked = validate_bundle_contents(config.file, progress=progress) if config.validate else None
    return DataInfoReport(bundles=bundles, validated=checked)
