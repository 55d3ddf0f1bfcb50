#!/usr/bin/env python
"""How well extrinsics from a person moving can be known: person calibration on synthetic rig
recordings with the truth, by recording length.

Each row calibrates a four-camera rig (the motion suite's tripod cameras around the volume,
``mvspin.data.motion_suite.suite_rig``) from the keypoints of one SMPL body (its own shape per
seed) making one or more straight walks across the volume, each 1.7 s (the Pose2Sim demo's
length) in its own direction, with :func:`calibration.person_calibration.calibrate_from_keypoints`
(the cameras' true intrinsics, as ``mvspin calibrate person --intrinsics`` takes them), and
compares the result with the truth after a similarity alignment
(:func:`calibration.rig_comparison.compare_rigs`): the worst camera's centre (cm) and rotation
(degrees), the bundle adjustment's median error (px), and how far the rigs calibrated from each
half of the frames alone disagree (the repeatability the command reports where there is no truth).

Detections: the subject's keypoints with per-camera Gaussian noise (``--noise-px``, each camera
draws its level), 10% dropped, and per camera and keypoint a constant offset (``--bias-px``,
standard deviation): a detector places a joint a little differently from each viewpoint, an error
that more frames do not average away. The defaults give a bundle adjustment median of 6-7 px (the
Pose2Sim demo's with BlazePose: 8.9 px), so they are, if anything, kinder than a real detector.

The question it answers: the demo's person calibration is 0.55-1.55 degrees from the lab's
(``tools/person_calibration_real.py``). Is that the recording's limit or the method's? Same length,
same frame rate, known truth: what do other bodies and rigs give, and what do more walks give?

    python tools/person_calibration_synthetic.py                       # 1 and 4 walks, seeds 300-305
    python tools/person_calibration_synthetic.py --walks 1 2 4 8 --seeds 300 301 302
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from calibration import Rig  # noqa: E402
from calibration.intrinsics import format_table  # noqa: E402
from calibration.person_calibration import calibrate_from_keypoints  # noqa: E402
from calibration.rig_comparison import compare_rigs  # noqa: E402
from mvspin.apps.calibrate_person import person_keypoint_roles  # noqa: E402
from mvspin.body import BodyModel  # noqa: E402
from mvspin.data.motion_suite import motion_params, suite_rig  # noqa: E402
from mvspin.data.synthetic_recording import RecordingOptions, make_rig_recording  # noqa: E402


def walks_recording(body: BodyModel, walks: int, walk_s: float, fps: float, seed: int, noise_px: tuple[float, float],
                    bias_px: float) -> tuple[np.ndarray, Rig, str]:
    """``walks`` straight walks of ``walk_s`` seconds, each across the rig's centre in its own
    direction, by one body in one four-camera rig, one after the other: ``((T, V, K, 3)
    detections, the rig (Z up), keypoint set)``."""
    rng = np.random.default_rng(seed)
    betas = torch.as_tensor(np.clip(rng.normal(size=body.num_betas), -2.5, 2.5), dtype=torch.float32)
    rig = suite_rig(("tripod",) * 4, rng)
    options = RecordingOptions(num_frames=int(round(walk_s * fps)), num_views=4, noise_px=noise_px, drop_rate=0.1,
                               flip_view=None, outlier_view=None, bystander_rate=0.0, bystander_first_views=())
    parts, rig_z = [], None
    for i in range(walks):
        motion = motion_params(body, "walk", fps, walk_s, betas, rng)
        rec = make_rig_recording(body, options, seed=seed * 100 + i, motion=motion, rig=rig)
        parts.append(rec.subject_keypoints().double().numpy())
        rig_z = rec.rig
    kp = np.concatenate(parts)
    # a detector places each joint a little differently from each viewpoint: an error that more
    # frames do not average away
    seen = kp[..., 2] > 0
    kp[..., :2] += np.where(seen[..., None], rng.normal(0.0, bias_px, (1, *kp.shape[1:3], 2)), 0.0)
    assert rig_z is not None
    return kp, rig_z, options.keypoint_set


def calibrate_case(body: BodyModel, walks: int, walk_s: float, fps: float, seed: int, noise_px: tuple[float, float],
                   bias_px: float) -> dict:
    kp, truth_rig, keypoint_set = walks_recording(body, walks, walk_s, fps, seed, noise_px, bias_px)
    used, foot, head, ratio, mirror = person_keypoint_roles(keypoint_set)
    start = time.perf_counter()
    rig, report = calibrate_from_keypoints(kp[:, :, used], list(truth_rig), foot=foot, head=head,
                                           head_height_ratio=ratio, mirror=mirror, up="z", halves=True)
    seconds_taken = time.perf_counter() - start
    truth = compare_rigs(rig, truth_rig)
    halves = compare_rigs(*report.half_rigs) if report.half_rigs is not None else None
    return {"frames": len(kp), "ba_px": report.median_error_px, "centre_cm": 100 * max(truth.centre_error_m),
            "rotation_deg": max(truth.rotation_error_deg), "rotations": truth.rotation_error_deg,
            "halves_deg": max(halves.rotation_error_deg) if halves else float("nan"), "s": seconds_taken}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--walks", type=int, nargs="+", default=[1, 4],
                        help="recordings of this many walks, one row block each (1: the demo's length)")
    parser.add_argument("--walk-seconds", type=float, default=100 / 60, help="length of each walk (the demo: 100 frames)")
    parser.add_argument("--fps", type=float, default=60.0, help="frames per second (the demo: 60)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(300, 306)),
                        help="one body, rig and noise draw each")
    parser.add_argument("--noise-px", type=float, nargs=2, default=(4.0, 8.0), metavar=("LO", "HI"),
                        help="range of each camera's Gaussian pixel noise (standard deviation)")
    parser.add_argument("--bias-px", type=float, default=7.0,
                        help="standard deviation of each camera's fixed offset of each keypoint, pixels")
    args = parser.parse_args()
    if min(args.walks) < 1 or args.walk_seconds * args.fps < 3 or not min(args.noise_px) >= 0 or not args.bias_px >= 0:
        parser.error("need --walks of 1 or more, walks of 3 frames or more (--walk-seconds x --fps), and noise and "
                     f"offsets of 0 px or more; got {args.walks}, {args.walk_seconds * args.fps:g} frames, "
                     f"{args.noise_px}, {args.bias_px}")
    body = BodyModel.free(resolution="low")
    print(f"person calibration against the truth: 4 tripod cameras, walks of {args.walk_seconds:.2f} s at {args.fps:g} "
          f"fps, each across the rig in its own direction, noise "
          f"{args.noise_px[0]:g}-{args.noise_px[1]:g} px, per-camera keypoint offsets {args.bias_px:g} px; "
          f"{platform.machine()}")
    rows, summary = [], []
    for walks in args.walks:
        results = []
        seconds = walks * args.walk_seconds
        for seed in args.seeds:
            r = calibrate_case(body, walks, args.walk_seconds, args.fps, seed, tuple(args.noise_px), args.bias_px)
            results.append(r)
            rows.append((f"{seconds:.2f} s ({r['frames']} fr)", str(seed), f"{r['ba_px']:.1f}", f"{r['centre_cm']:.1f}",
                         " ".join(f"{x:.2f}" for x in r["rotations"]), f"{r['rotation_deg']:.2f}",
                         f"{r['halves_deg']:.2f}", f"{r['s']:.0f}"))
            print(f"  {rows[-1][0]}, seed {seed}: worst rotation {r['rotation_deg']:.2f} deg", file=sys.stderr, flush=True)
        rot = np.array([r["rotation_deg"] for r in results])
        summary.append((f"{seconds:.2f} s", f"{np.median([r['ba_px'] for r in results]):.1f}",
                        f"{np.median([r['centre_cm'] for r in results]):.1f}", f"{np.median(rot):.2f}",
                        f"{rot.max():.2f}", f"{(rot <= 1.0).sum()} of {len(rot)}",
                        f"{np.median([r['halves_deg'] for r in results]):.2f}"))
    print(format_table(("recording", "seed", "BA median px", "worst centre cm", "rotation error per camera deg",
                        "worst rotation deg", "halves apart deg", "s"), rows))
    print()
    print(format_table(("recording", "BA median px", "worst centre cm", "worst rotation deg (median)",
                        "worst rotation deg (max)", "seeds with every camera <= 1 deg", "halves apart deg (median)"),
                       summary))


if __name__ == "__main__":
    main()
