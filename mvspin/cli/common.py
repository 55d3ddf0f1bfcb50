"""Options and helpers shared by sub-commands."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from mvspin.atomic import check_output_location, write_bytes_atomic

log = logging.getLogger("mvspin")


class TqdmProgress:
    """The CLI's one adapter of :class:`mvspin.progress.Progress` to tqdm: one bar per stage,
    shown only on a terminal (``disable=None``); ``unit`` names what is counted. Use as a
    context manager so the bars close (and the terminal is tidy) however the job ends.

    Example:
        >>> with TqdmProgress(unit="frame", enabled=False) as progress:
        ...     progress("fit", 3, 10)
    """

    def __init__(self, unit: str = "it", enabled: bool = True) -> None:
        self.unit = unit
        self.enabled = enabled
        self._bars: dict[str, object] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total or None, desc=stage, unit=self.unit, disable=None)
        if total and bar.total != total:  # type: ignore[attr-defined]
            bar.total = total  # type: ignore[attr-defined]
        bar.update(done - bar.n)  # type: ignore[attr-defined]

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()  # type: ignore[attr-defined]
        self._bars.clear()

    def __enter__(self) -> "TqdmProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def add_body_model_args(parser: argparse.ArgumentParser) -> None:
    """``--smpl-dir``, ``--gender``, ``--resolution``: which body model to load."""
    g = parser.add_argument_group("body model")
    g.add_argument("--smpl-dir", type=Path, default=None,
                   help="directory with official SMPL files (SMPL_NEUTRAL.pkl, ...) and optionally SPIN's "
                        "J_regressor_*.npy, smpl_mean_params.npz, gmm_08.pkl; default: $MVSPIN_SMPL_DIR, "
                        "else the bundled free model")
    g.add_argument("--gender", choices=("neutral", "male", "female"), default="neutral",
                   help="SMPL model gender (with --smpl-dir)")
    g.add_argument("--resolution", choices=("full", "low"), default="full",
                   help="free model resolution: full (12,272 vertices) or low (1,229)")


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu)")


def resolve_device(name: str | None) -> torch.device:
    """The torch device ``--device`` names (default: cuda if available, else cpu); see
    :func:`mvspin.config.resolve_device`. Raises ``ConfigError`` (a ValueError) naming ``--device``."""
    from mvspin.config import resolve_device as resolve

    return resolve(name, what="--device")


def check_range(option: str, value: float | int | None, low: float | None = None, high: float | None = None,
                *, low_open: bool = False) -> None:
    """Raise ``ValueError("--option must be ...")`` unless ``low <= value <= high`` (``low < value``
    with ``low_open``); None values (option not given) pass."""
    if value is None:
        return
    ok = value == value  # not NaN
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and value <= high
    if not ok:
        if low is not None and high is not None:
            want = f"in {low}..{high}" if not low_open else f"in ({low}, {high}]"
        elif low is not None:
            want = f"> {low}" if low_open else f">= {low}"
        else:
            want = f"<= {high}"
        raise ValueError(f"{option} must be {want}, got {value}")


def check_output(path: Path, option: str = "--out", kind: str = "file") -> Path:
    """Check an output location before any expensive work (see
    :func:`mvspin.atomic.check_output_location`); every command calls this for each output
    option. Raises :class:`~mvspin.atomic.OutputLocationError` naming ``option`` and the path."""
    return check_output_location(path, kind=kind, what=option)


def load_body_model(args: argparse.Namespace, device: torch.device | None = None):
    """Load the body model the options name, and say which one it is."""
    from mvspin.body import BodyModel

    body = BodyModel.load(args.smpl_dir, gender=args.gender, resolution=args.resolution, device=device)
    log.info("body model: %s (%s)", body.name, body.source)
    return body


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    write_bytes_atomic(path, data)
