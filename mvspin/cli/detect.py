"""``mvspin detect``: argv -> :class:`~mvspin.apps.detect.DetectConfig` -> :func:`~mvspin.apps.detect.run` -> summary.

``mvspin detect install-model [--model-dir DIR]`` installs the BlazePose files instead
(:func:`mvspin.detection.models.install_blazepose`).
"""
from __future__ import annotations

import argparse

from mvspin.apps.detect import DetectConfig
from mvspin.cli.options import add_config_options, config_from_args

INSTALL = "install-model"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect", help="2D keypoints of every person in videos or image folders (one per camera)",
        description="Detect every person in every frame with BlazePose (full, built in) or a user's RTMPose ONNX "
                    "file, track each person's id across frames, and write one folder per camera of "
                    "OpenPose-layout JSON (people[].pose_keypoints_2d, person_id, keypoint_set) that fit-rig and "
                    "Pose2Sim read. First run `mvspin detect install-model` once: it downloads the mediapipe "
                    "0.10.21 wheel with pip and keeps only its two BlazePose model files (Apache-2.0) in the "
                    "model cache; on an offline machine copy them by hand and give --model-dir.")
    add_config_options(p, DetectConfig, positional=("inputs",))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if list(args.inputs)[:1] == [INSTALL]:
        return _install(args)
    from mvspin.apps.detect import run as detect
    from mvspin.cli.common import TqdmProgress

    config = config_from_args(DetectConfig, args)
    with TqdmProgress(unit="frame") as progress:
        report = detect(config, progress)
    rows = [("camera", "frames", "with people", "people", "frames/s", "")]
    for c in report.cameras:
        state = "failed: " + c.error if c.error else ("reused" if c.reused else "")
        rows.append((c.name, str(c.frames), str(c.frames_with_people), str(c.people),
                     f"{c.fps:.1f}" if c.fps else "-", state))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)) + ("  " + r[5] if r[5] else ""))
    for line in report.warnings:
        print(f"warning: {line}")
    print(f"{report.detector} ({report.keypoint_set}): wrote {len(report.cameras) - len(report.failed)} camera "
          f"folders to {report.out}")
    if report.failed:
        print(f"error: {len(report.failed)} of {len(report.cameras)} cameras failed")
        return 2
    return 0


def _install(args: argparse.Namespace) -> int:
    from mvspin.detection.models import install_blazepose

    extra = [a for a in args.inputs[1:]]
    if extra:
        raise ValueError(f"{INSTALL} takes no inputs (got {' '.join(extra)}); use --model-dir DIR for a folder")
    files = install_blazepose(getattr(args, "model_dir", None))
    print(f"BlazePose model files installed and checked: {files.detector.parent}")
    return 0
