"""Options and helpers shared by sub-commands."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from mvspin.atomic import write_bytes_atomic

log = logging.getLogger("mvspin")


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
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def load_body_model(args: argparse.Namespace, device: torch.device | None = None):
    """Load the body model the options name, and say which one it is."""
    from mvspin.body import BodyModel

    body = BodyModel.load(args.smpl_dir, gender=args.gender, resolution=args.resolution, device=device)
    log.info("body model: %s (%s)", body.name, body.source)
    return body


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    write_bytes_atomic(path, data)
