"""Benchmark: fit-rig with two cameras, by the angle between them.

Two of the motion suite's tripod cameras (1080p, 1300-1800 px focal, 4.5-6.5 m away) around the
subject, ``--angles`` degrees apart in azimuth (:func:`~mvspin.data.motion_suite.suite_rig`), on
the suite's procedural motions (seeds 401+, bodies within +-2 sigma; not used to choose any
default). Prints, per motion and angle, the world keypoint MPJPE of the default ``fit-rig`` and of
plain triangulation over the frames both cameras see: two cameras on one line (180 degrees) leave
depth along it to the body model's priors.

    python tools/bench_two_cameras.py [--angles 90 180] [--motions walk jump ...] [--fps 30]
"""
from __future__ import annotations

import argparse
import platform

import numpy as np
import torch

from calibration import triangulate_points
from mvspin.body import BodyModel
from mvspin.data.motion_suite import MOTIONS, motion_params, suite_rig
from mvspin.data.synthetic_recording import RecordingOptions, make_rig_recording
from mvspin.fitting.recording import fit_recording
from mvspin.geometry import axis_angle_to_matrix


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--angles", type=float, nargs="+", default=[90.0, 180.0], help="degrees between the cameras")
    p.add_argument("--motions", nargs="+", default=["walk", "jump", "kick", "clap", "arms", "squat"],
                   choices=sorted(MOTIONS))
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--resolution", choices=("low", "full"), default="full")
    args = p.parse_args()
    torch.set_num_threads(1)
    body = BodyModel.free(args.resolution)
    print(f"fit-rig with two cameras: world keypoint MPJPE mm over the frames both see (fit-rig / triangulation), "
          f"{args.fps:g} fps, 2-3 px noise, free model ({args.resolution}), {platform.machine()}")
    print(f"{'motion':<14}" + "".join(f"{f'{a:g} deg apart':>24}" for a in args.angles))
    for k, motion in enumerate(args.motions):
        cells = []
        for angle in args.angles:
            rng = np.random.default_rng(401 + k)  # the same body and motion at every angle
            betas = torch.as_tensor(np.clip(rng.normal(size=body.num_betas), -2, 2), dtype=torch.float32)
            params = motion_params(body, motion, args.fps, args.seconds, betas, rng)
            rig = suite_rig(("tripod", "tripod"), np.random.default_rng(501 + k), azimuths_deg=(0.0, angle))
            opt = RecordingOptions(num_frames=len(params), num_views=2, noise_px=(2.0, 3.0), flip_view=None,
                                   outlier_view=None, bystander_rate=0.0)
            rec = make_rig_recording(body, opt, seed=401 + k, motion=params, rig=rig)
            g = rec.gt
            gt = body.keypoints("openpose25", g.body_pose, g.betas, axis_angle_to_matrix(g.global_orient), g.transl)
            subject = fit_recording(body, rec.detections, rec.rig, "openpose25", fps=args.fps).subjects[0]
            r = subject.result
            pred = body.keypoints("openpose25", r.body_pose, r.betas.expand(r.num_frames, -1), r.global_orient,
                                  r.transl)
            fit_mm = float((pred - gt).norm(dim=-1)[r.fitted].mean()) * 1000
            kp = subject.keypoints
            tri = triangulate_points(kp[..., :2], kp[..., 2], rec.rig.to_torch(), threshold_px=None)
            tri_mm = float((tri.points.to(gt.dtype) - gt).norm(dim=-1)[tri.valid].mean()) * 1000
            cells.append(f"{fit_mm:12.1f} / {tri_mm:7.1f}")
        print(f"{motion:<14}" + "".join(f"{c:>24}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
