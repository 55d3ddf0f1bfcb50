"""``mvspin demo``: fit a synthetic 4-camera capture with MV-SMPLify in both modes, and SMPLify.

A thin shell over :func:`mvspin.data.demo.run_demo` (settings, progress, summary table); the
outputs are documented there. ``--train`` runs the synthetic training protocol instead
(:mod:`mvspin.learning.synthetic_protocol`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mvspin.cli.common import add_body_model_args, add_device_arg, log
from mvspin.data.demo import DemoConfig

_DEFAULTS = DemoConfig()
# Options that set one DemoConfig field (their defaults come from the dataclass, not from here).
_FIELD_OPTIONS = {
    "frames": (int, "frames of the motion"),
    "views": (int, "cameras in the rig"),
    "seed": (int, "seed of the motion, rig and noise"),
    "keypoints": (str, "2D keypoint set of the capture"),
    "noise": (float, "pixel noise standard deviation"),
    "drop": (float, "share of keypoints dropped"),
    "optimizer": (str, "fitting optimiser: adam or lbfgs"),
    "threads": (int, "CPU threads for torch; fitting tensors are small, so 1 is fastest"),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="fit a synthetic multi-camera capture (MV-SMPLify both modes, SMPLify) and report accuracy",
        description="Make a synthetic capture of a moving body seen by a rig of cameras (keypoints with pixel "
                    "noise and dropped joints), fit it with MV-SMPLify in the calibrated and per-view modes and "
                    "with single-view SMPLify, and write meshes, parameters, overlays and metrics. Fitting uses "
                    "the fast keypoint path, whose cost does not depend on the mesh resolution, so the same model "
                    "(by default the free model at full resolution) is fitted and meshed. Settings: fields of "
                    "mvspin.data.demo.DemoConfig, from --config YAML, KEY=VALUE overrides and the options below.",
    )
    add_body_model_args(p)
    add_device_arg(p)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="DemoConfig fields, e.g. frames=10 noise=1.5")
    p.add_argument("--config", type=Path, default=None, help="YAML file of DemoConfig fields")
    p.add_argument("--out", type=Path, default=Path("mvspin_demo"), help="output folder (default: %(default)s)")
    for name, (kind, text) in _FIELD_OPTIONS.items():
        p.add_argument(f"--{name}", type=kind, default=argparse.SUPPRESS,
                       help=f"{text} (default: {getattr(_DEFAULTS, name)})")
    p.add_argument("--no-render", action="store_true", help="skip the overlay PNGs")
    p.add_argument("--train", action="store_true",
                   help="instead: the synthetic training protocol (data, full loop, no-fitting ablation, eval; "
                        "results.json and a plot), see mvspin.learning.synthetic_protocol")
    p.add_argument("--quick", action="store_true", help="with --train: a few-minute version (fewer steps, one seed)")
    p.set_defaults(run=run)


def run_train_protocol(args: argparse.Namespace) -> int:
    """``mvspin demo --train [--quick]``: a thin shell over :func:`mvspin.learning.synthetic_protocol.run`."""
    from mvspin.learning.synthetic_protocol import QUICK, SyntheticProtocolConfig, run as run_protocol

    config = SyntheticProtocolConfig(**(QUICK if args.quick else {}))
    results = run_protocol(args.out, config, progress=True)
    print(results.table())
    print(f"wrote {args.out / 'results.json'} and {results.plot}")
    return 0


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    """DemoConfig from --config, KEY=VALUE overrides, then the single-field options."""
    from mvspin.config import load_config

    overrides = list(args.overrides)
    overrides += [f"{name}={getattr(args, name)}" for name in _FIELD_OPTIONS if hasattr(args, name)]
    if args.no_render:
        overrides.append("render=false")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    return load_config(DemoConfig, args.config, overrides)


def run(args: argparse.Namespace) -> int:
    if args.train:
        return run_train_protocol(args)
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    from mvspin.body import BodyModel
    from mvspin.data.demo import run_demo

    config = config_from_args(args)

    def load_body(device):
        body = BodyModel.load(args.smpl_dir, gender=args.gender, resolution=args.resolution, device=device)
        log.info("body model: %s (%s)", body.name, body.source)
        return body

    result = run_demo(args.out, config, load_body=load_body, progress=lambda it, **kw: tqdm(it, **kw))
    m = result.metrics
    table = Table(title=f"mvspin demo: {config.frames} frames x {config.views} cameras, {m['body_model']}, "
                        f"noise {config.noise:g} px, {100 * config.drop:.0f}% dropped")
    for col in ("method", "MPJPE mm", "PA-MPJPE mm", "reproj px", "ms / frame", "fitted"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for label, mpjpe, pa, rp, sec, fitted in result.rows:
        table.add_row(label, f"{np.mean(mpjpe):.1f}", f"{np.mean(pa):.1f}", "-" if rp is None else f"{np.mean(rp):.2f}",
                      "-" if sec is None else f"{1000 * sec / config.frames:.1f}", f"{fitted}/{config.frames}")
    console = Console(width=max(100, Console().width))
    console.print(table)
    console.print("calibrated: known cameras, no network (starts from the mean pose on triangulated keypoints); "
                  "per-view (the paper) and SMPLify (every view fitted on its own): SPIN crop cameras, started "
                  "from the simulated network's per-view estimates.")
    console.print("MPJPE/PA-MPJPE: 14 LSP joints, pelvis-centred, in the world (calibrated) or each view's crop "
                  "camera frame. Reprojection error in image pixels. Overlays: green = input keypoints, red = fitted.")
    overlays = sum(1 for f in result.files if f.parent.name == "overlays")
    console.print(f"wrote {args.out}/: meshes/ ({config.frames} .ply), params/ (.npz), "
                  f"{'overlays/ (' + str(overlays) + ' .png), ' if overlays else ''}"
                  f"rig.json, metrics.json, demo_config.yaml  [{result.seconds:.1f} s]")
    return 0
