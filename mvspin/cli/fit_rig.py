"""``mvspin fit-rig``: fit SMPL bodies to a calibrated multi-camera recording's 2D keypoints.

A thin shell over :func:`calibration.load_rig`,
:func:`mvspin.data.recording_keypoints.read_recording_keypoints`,
:func:`mvspin.fitting.recording.fit_recording` (started from
:func:`mvspin.apps.rig.network_start.network_world_estimate` with ``--checkpoint`` and ``--videos``) and
:func:`mvspin.data.recording_outputs.write_recording_outputs`.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mvspin.cli.common import add_body_model_args, add_device_arg, load_body_model, resolve_device

log = logging.getLogger("mvspin")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit-rig", help="fit SMPL bodies to a calibrated rig recording's 2D keypoints",
        description="Associate each subject's detections across cameras and frames, fit one body per frame in "
                    "the rig's world frame (one shape per subject, temporally smooth) and write per subject an "
                    "AMASS-keyed .npz and an animated .glb, plus report.json / report.png.")
    p.add_argument("--rig", type=Path, required=True,
                   help="calibration file in any supported format (anipose/Pose2Sim/FreeMoCap TOML, EasyMocap, "
                        "Qualisys .qca.txt, Human3.6M, MPI-INF-3DHP), metres")
    p.add_argument("--keypoints", type=Path, required=True,
                   help="folder with one sub-folder (or .npz) of keypoint files per rig camera")
    p.add_argument("--keypoint-set", default=None,
                   help="the files' keypoint set (default: from the keypoint count; BODY_25B must be named: "
                        "openpose25b)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the recording (default 30)")
    p.add_argument("--subjects", type=int, default=1, help="people to fit, each with its own id (default 1)")
    p.add_argument("--meshes", action="store_true", help="also write one .obj per subject and frame")
    p.add_argument("--y-up", action="store_true", help="the rig's world is Y-up (default: Z-up)")
    p.add_argument("--allow-missing-frames", action="store_true",
                   help="cameras may lack files for some frames (else frame counts must agree)")
    p.add_argument("--videos", type=Path, nargs="+", default=None,
                   help="one video (or image folder) per camera, matched by file stem, else in order: writes "
                        "overlay_<camera>.mp4 with the fitted skeletons and the detections used (videos only); video "
                        "frame n is keypoint frame n, in a folder the number in an image's file name")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="HMR regressor checkpoint (SPIN's or mvspin's): the fit starts from the network run on each "
                        "camera's crop of the subject (needs --videos; default: start from triangulation)")
    p.add_argument("--batch-size", type=int, default=32, help="crops per network call with --checkpoint (default 32)")
    p.add_argument("--config", type=Path, default=None,
                   help="YAML with fields of mvspin.fitting.recording.RigFitConfig (see configs/fit_rig.yaml)")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. sequence.smooth_weight=4 association.radius_m=0.2")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    add_body_model_args(p)
    add_device_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from calibration import load_rig
    from mvspin.data.recording_keypoints import read_recording_keypoints
    from mvspin.config import load_config, save_config
    from mvspin.fitting.recording import RigFitConfig, fit_recording, recording_summary
    from mvspin.data.recording_outputs import (match_videos, summary_table, write_overlay_videos,
                                                  write_recording_outputs)

    if args.checkpoint and not args.videos:
        raise ValueError("--checkpoint needs --videos (one per camera): the network runs on each camera's crop "
                         "of the subject")
    if not 1 <= args.batch_size <= 4096:
        raise ValueError(f"--batch-size must be in [1, 4096], got {args.batch_size}")
    if args.subjects < 1:
        raise ValueError(f"--subjects must be >= 1, got {args.subjects}")
    if not args.fps > 0:
        raise ValueError(f"--fps must be positive, got {args.fps}")
    config = load_config(RigFitConfig, args.config, args.overrides)
    rig = load_rig(args.rig)
    if args.videos:
        match_videos(args.videos, rig.names)  # a count mismatch is reported before any fitting
    log.info("rig: %d cameras (%s) from %s", len(rig), ", ".join(rig.names), args.rig)
    rec = read_recording_keypoints(args.keypoints, rig.names, args.keypoint_set, args.allow_missing_frames)
    if rec.matched_by == "order":
        log.info("keypoint folders matched to the rig's cameras in order (no folder carries a camera's name): %s",
                 ", ".join(f"{s.name} -> {n}" for s, n in zip(rec.sources, rec.camera_names)))
    log.info("keypoints: %d frames, %s, up to %d people per camera", rec.num_frames, rec.keypoint_set,
             rec.keypoints.shape[2])
    device = resolve_device(args.device)
    body = load_body_model(args, device)
    initial_estimate, initialisation = None, None
    if args.checkpoint:
        videos = match_videos(args.videos, rig.names)
        initial_estimate, initialisation = _network_start(args, body, device, rig, rec.frames, videos,
                                                          config.sequence.keyframe.calibrated_init)
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="frame", disable=None)
        bar.update(done - bar.n)

    try:
        fit = fit_recording(body, rec.keypoints, rig, rec.keypoint_set, args.subjects, config=config, fps=args.fps,
                            frames=rec.frames, progress=progress, initial_estimate=initial_estimate,
                            initialisation=initialisation)
    finally:
        for bar in bars.values():
            bar.close()
    written = write_recording_outputs(fit, body, args.output, gender=args.gender, z_up=not args.y_up,
                                      meshes=args.meshes)
    if args.videos and any(Path(v).is_dir() for v in args.videos):
        log.info("no overlay videos: --videos gave image folders")
    elif args.videos:
        with tqdm(total=len(rig), desc="overlays", unit="camera", disable=None) as bar:
            written += write_overlay_videos(fit, body, rig, args.videos, args.output,
                                            progress=lambda n: bar.update(n - bar.n))
    save_config(config, args.output / "config.yaml")
    print(summary_table(recording_summary(fit)))
    print(f"wrote {len(written)} files to {args.output}")
    return 0


def _network_start(args: argparse.Namespace, body, device, rig, frames, videos: list[Path], calibrated_init: str):
    """Load and check the regressor (before any fitting) and return fit_recording's
    ``initial_estimate``: the network on each subject's crops, with a progress bar."""
    from mvspin.apps.rig.network_start import load_rig_predictor, network_world_estimate
    from mvspin.cli.common import TqdmProgress

    if calibrated_init == "triangulation":
        raise ValueError("--checkpoint: sequence.keyframe.calibrated_init=triangulation would ignore the network; "
                         "set it to auto or network")
    predictor, about = load_rig_predictor(args.checkpoint, body, device, args.batch_size)
    log.info("network initialisation: %s", about)

    def estimate(subject: int, keypoints):
        with TqdmProgress(unit="crop") as progress:
            return network_world_estimate(predictor, videos, keypoints, rig, frames, progress, f"network {subject}")

    return estimate, f"network: {about}"
