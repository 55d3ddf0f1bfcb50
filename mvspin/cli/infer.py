"""``mvspin infer``: SMPL bodies from images, folders, videos or a set of views, with a checkpoint.

A thin shell over :class:`mvspin.inference.InferencePipeline` (arguments, progress, summary); the
outputs are documented in :mod:`mvspin.inference.pipeline`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mvspin.cli.common import add_body_model_args, add_device_arg
from mvspin.inference.config import BACKBONES, MESH_FORMATS, InferConfig

_DEFAULTS = InferConfig()


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
    p.add_argument("--person", default=_DEFAULTS.person,
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
    p.add_argument("--out", type=Path, default=_DEFAULTS.out, help="output folder (default: %(default)s)")
    p.add_argument("--mesh-format", choices=MESH_FORMATS, default=_DEFAULTS.mesh_format,
                   help="mesh files: obj (text, opens everywhere) or ply (binary, ~15x faster to write for the "
                        "full free model) (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size,
                   help="crops per network call (default: %(default)s)")
    p.add_argument("--no-render", action="store_true", help="skip overlays and side views (no open3d rendering)")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="weight initialisation seed with --allow-untrained")
    p.add_argument("--preprocessing", choices=("exact", "spin"), default=None,
                   help="how crops are cut: exact (mvspin's sub-pixel crop) or spin (SPIN's own crop, contrast "
                        "stretch and OpenPose box centring); default: spin for SPIN's own checkpoints, exact for "
                        "mvspin's")
    add_device_arg(p)
    add_body_model_args(p)
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> InferConfig:
    """The :class:`InferConfig` the parsed options describe."""
    return InferConfig(
        checkpoint=args.checkpoint, allow_untrained=args.allow_untrained, backbone=args.backbone, bbox=args.bbox,
        openpose=args.openpose, person=args.person, views=args.views, refine=args.refine,
        fit_config=args.fit_config, fit=list(args.fit), out=args.out, mesh_format=args.mesh_format,
        batch_size=args.batch_size, render=not args.no_render, seed=args.seed, device=args.device,
        smpl_dir=args.smpl_dir, gender=args.gender, resolution=args.resolution,
        preprocessing=args.preprocessing)


def _print_summary(report, config: InferConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    from mvspin.inference import STAGES

    console = Console(stderr=False)
    done = report.images + report.frames
    console.print(f"mvspin infer: {report.images} images ({report.people} people), {report.videos} videos "
                  f"({report.frames} frames); {len(report.files)} files written to {config.out}")
    table = Table(title="time per stage")
    table.add_column("stage")
    table.add_column("total s", justify="right")
    table.add_column("ms per image/frame", justify="right")
    for stage in STAGES:
        if stage == "refine" and not config.refine:
            continue
        seconds = report.timings.get(stage, 0.0)
        table.add_row(stage, f"{seconds:.2f}", f"{1000 * seconds / done:.1f}" if done else "-")
    total = report.seconds + report.load_seconds
    table.add_row("all (incl. loading)", f"{total:.2f}", f"{1000 * total / done:.1f}" if done else "-")
    console.print(table)
    if report.frames_without_box:
        console.print(f"{report.frames_without_box} video frames had no box or detection of their own and reused "
                      f"the previous frame's box (box_detected in the .npz)")
    if report.failures:
        print(f"{len(report.failures)} input(s) failed:", file=sys.stderr)
        for path, why in report.failures:
            print(f"  {path}: {why.removeprefix(f'{path}: ')}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mvspin.inference import InferencePipeline

    config = config_from_args(args)
    report = InferencePipeline(config).run(args.inputs, progress=lambda **kw: tqdm(disable=None, **kw))
    _print_summary(report, config)
    return 1 if report.failures else 0
