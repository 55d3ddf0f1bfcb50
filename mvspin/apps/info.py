"""The ``info`` job: versions, the compute device and which body model mvspin finds, from where.

Example:
    >>> from mvspin.apps.info import InfoConfig, run  # doctest: +SKIP
    >>> print("\\n".join(run(InfoConfig()).lines()))  # doctest: +SKIP
"""
from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass, field
from typing import Any

from mvspin._version import __version__
from mvspin.body import BodyModelConfig
from mvspin.progress import Progress, no_progress

__all__ = ["InfoConfig", "InfoReport", "run", "PACKAGES"]

PACKAGES = ("torch", "numpy", "smplx", "kornia", "opencv-contrib-python", "open3d", "h5py", "aniposelib", "omegaconf")
"""The distributions whose versions :func:`run` reports."""


@dataclass
class InfoConfig:
    """Everything ``mvspin info`` needs."""

    body: BodyModelConfig = field(default_factory=BodyModelConfig)
    """The body model to look for."""
    json: bool = False
    """Print machine-readable JSON instead of text."""


@dataclass
class InfoReport:
    """Versions, device and body model (``data`` is JSON-ready)."""

    data: dict[str, Any]
    """mvspin, python, platform, packages (name -> version or None), device, body_model."""

    def lines(self) -> list[str]:
        """The human-readable description."""
        d = self.data
        dev, bm = d["device"], d["body_model"]
        cuda = ", ".join(dev.get("cuda_devices", [])) or "not available"
        return [f"mvspin {d['mvspin']} (Python {d['python']}, {d['platform']})",
                "packages: " + ", ".join(f"{k} {v or 'missing'}" for k, v in d["packages"].items()),
                f"device: CPU ({dev['threads']} threads), CUDA {cuda}",
                f"body model: {bm['name']} from {bm['source']}",
                f"  {bm['vertices']} vertices, {bm['faces']} faces; pose prior: {bm['pose_prior']}; "
                f"mean parameters: {bm['mean_params']}",
                f"  keypoint sets: {', '.join(bm['keypoint_sets'])}"]


def run(config: InfoConfig, progress: Progress = no_progress) -> InfoReport:
    """Collect versions, the device and the body model's description.

    Raises:
        BodyModelFilesError: the named SMPL folder is missing files or holds bad ones.
    """
    import torch

    from mvspin.body import BodyModel

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    device: dict[str, Any] = {"cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        device["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    b = config.body
    body = BodyModel.load(b.smpl_dir, gender=b.gender, resolution=b.resolution)
    return InfoReport({"mvspin": __version__, "python": platform.python_version(), "platform": platform.platform(),
                       "packages": versions, "device": device, "body_model": body.describe()})
