"""``mvspin info``: versions, device and which body model is found, from where."""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
from typing import Any

import torch

from mvspin._version import __version__
from mvspin.cli.common import add_body_model_args

_PACKAGES = ("torch", "numpy", "smplx", "kornia", "opencv-contrib-python", "open3d", "h5py", "aniposelib", "omegaconf")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, device and the body model in use",
                       description="Print versions, the compute device and which body model mvspin finds.")
    add_body_model_args(p)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(run=run)


def collect(args: argparse.Namespace) -> dict:
    from mvspin.body import BodyModel

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    device: dict[str, Any] = {"cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        device["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    body = BodyModel.load(args.smpl_dir, gender=args.gender, resolution=args.resolution)
    return {
        "mvspin": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "device": device,
        "body_model": body.describe(),
    }


def run(args: argparse.Namespace) -> int:
    data = collect(args)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"mvspin {data['mvspin']} (Python {data['python']}, {data['platform']})")
    print("packages: " + ", ".join(f"{k} {v or 'missing'}" for k, v in data["packages"].items()))
    dev = data["device"]
    cuda = ", ".join(dev.get("cuda_devices", [])) or "not available"
    print(f"device: CPU ({dev['threads']} threads), CUDA {cuda}")
    bm = data["body_model"]
    print(f"body model: {bm['name']} from {bm['source']}")
    print(f"  {bm['vertices']} vertices, {bm['faces']} faces; pose prior: {bm['pose_prior']}; "
          f"mean parameters: {bm['mean_params']}")
    print(f"  keypoint sets: {', '.join(bm['keypoint_sets'])}")
    return 0
