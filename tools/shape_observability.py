#!/usr/bin/env python
"""How well keypoints can tell a body's height and chest depth: a linear-estimation bound.

Bodies are drawn from the shape prior (betas ~ N(0, 1), clipped at +-2.5 as the motion suite's
bodies); for each, the rest body's height and chest depth (:func:`mvspin.body.rest_measurements`)
and what a keypoint fit can measure of its shape: the lengths of the keypoint-set's segments
that do not change with pose (limbs, hip and shoulder widths, neck to shoulders and hips, feet,
head), or, more generously, every rest-pose keypoint relative to the pelvis. A least-squares
linear estimator of each measurement from those quantities, fitted on 2/3 of the bodies with the
quantities measured with Gaussian noise (per length / coordinate), is scored on the other third:
the residual's standard deviation and p95 is what any fit of these keypoints can at best achieve
at that measurement noise (the estimator is the best linear one; the shape space is linear).

    python tools/shape_observability.py --noise-mm 0 2 5 10
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mvspin.body import BodyModel, get_keypoint_set, rest_measurements  # noqa: E402
from mvspin.fitting.config import DETECTOR_HIP_POINTS  # noqa: E402

# Segments of OpenPose BODY_25 whose length a multi-frame fit sees whatever the pose (joints of
# one bone, or points carried by one joint), plus shoulder width, neck to shoulders and neck to
# mid-hip, which change only with the collars and spine (little in everyday motion).
SEGMENTS = (
    ("right_shoulder", "right_elbow"), ("left_shoulder", "left_elbow"), ("right_elbow", "right_wrist"),
    ("left_elbow", "left_wrist"), ("right_hip", "right_knee"), ("left_hip", "left_knee"),
    ("right_knee", "right_ankle"), ("left_knee", "left_ankle"), ("right_hip", "left_hip"),
    ("mid_hip", "right_hip"), ("mid_hip", "left_hip"), ("right_shoulder", "left_shoulder"),
    ("neck", "right_shoulder"), ("neck", "left_shoulder"), ("neck", "mid_hip"),
    ("right_ankle", "right_heel"), ("right_ankle", "right_big_toe"), ("right_ankle", "right_small_toe"),
    ("right_heel", "right_big_toe"), ("left_ankle", "left_heel"), ("left_ankle", "left_big_toe"),
    ("left_ankle", "left_small_toe"), ("left_heel", "left_big_toe"), ("nose", "right_eye"), ("nose", "left_eye"),
    ("right_eye", "left_eye"), ("right_ear", "left_ear"), ("right_eye", "right_ear"), ("left_eye", "left_ear"),
    ("nose", "right_ear"), ("nose", "left_ear"),
)


def sample_shapes(body: BodyModel, n: int, seed: int, batch: int = 250) -> dict[str, np.ndarray]:
    """``n`` prior bodies: betas, height and chest depth (metres), rest keypoints ``(n, 25, 3)``."""
    g = torch.Generator().manual_seed(seed)
    betas = torch.randn(n, body.num_betas, generator=g).clamp(-2.5, 2.5)
    heights, depths, keypoints = [], [], []
    for s in range(0, n, batch):
        b = betas[s:s + batch]
        h, d = rest_measurements(body, b)
        eye = torch.eye(3).expand(b.shape[0], 3, 3)
        with torch.no_grad():
            kp = body.keypoints("openpose25", torch.zeros(b.shape[0], 69), b, eye, torch.zeros(b.shape[0], 3))
        heights.append(h)
        depths.append(d)
        keypoints.append(kp)
    return {"betas": betas.numpy(), "height": torch.cat(heights).numpy(), "chest_depth": torch.cat(depths).numpy(),
            "keypoints": torch.cat(keypoints).numpy()}


def linear_bound(features: np.ndarray, target: np.ndarray, noise: float, seed: int = 1) -> tuple[float, float]:
    """Held-out residual std and p95 |residual| of the least-squares linear estimate of
    ``target (n,)`` from ``features (n, F)`` measured with Gaussian noise of std ``noise``."""
    rng = np.random.default_rng(seed)
    x = features + rng.normal(0.0, noise, features.shape) if noise > 0 else features
    a = np.c_[x, np.ones(len(x))]
    split = 2 * len(x) // 3
    coef, *_ = np.linalg.lstsq(a[:split], target[:split], rcond=None)
    res = target[split:] - a[split:] @ coef
    return float(res.std()), float(np.percentile(np.abs(res), 95))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bodies", type=int, default=3000, help="prior samples (default: %(default)s)")
    p.add_argument("--noise-mm", type=float, nargs="+", default=[0.0, 2.0, 5.0, 10.0],
                   help="measurement noise of each length / coordinate, mm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", default="full", choices=["full", "low"], help="free model mesh (tests use low)")
    args = p.parse_args()
    torch.set_num_threads(1)
    body = BodyModel.free(args.resolution)
    s = sample_shapes(body, args.bodies, args.seed)
    kset = get_keypoint_set("openpose25")
    kp = s["keypoints"]
    lengths = np.stack([np.linalg.norm(kp[:, kset.index(a)] - kp[:, kset.index(b)], axis=-1) for a, b in SEGMENTS], 1)
    rest = (kp - kp[:, kset.index("mid_hip")][:, None]).reshape(len(kp), -1)
    # fit-rig gives the detector's hips weight 0 (MVSMPLifyConfig.stage2_ignored_points): the
    # lengths its fit can see
    seen = [i for i, (a, b) in enumerate(SEGMENTS) if not {a, b} & set(DETECTOR_HIP_POINTS)]
    print(f"{args.bodies} prior bodies (betas ~ N(0, 1) clipped at 2.5), free model: height "
          f"{s['height'].mean():.3f} m +- {s['height'].std() * 100:.1f} cm, chest depth {s['chest_depth'].mean():.3f} m "
          f"+- {s['chest_depth'].std() * 100:.2f} cm ({args.resolution} mesh)")
    print(f"{'measurement':<13}{'from':<48}{'noise mm':>9}{'residual std cm':>17}{'p95 cm':>8}")
    for what in ("chest_depth", "height"):
        for label, feats in ((f"{len(SEGMENTS)} segment lengths", lengths),
                             (f"{len(seen)} segment lengths without the detector hips", lengths[:, seen]),
                             ("75 rest keypoint coordinates", rest)):
            for noise in args.noise_mm:
                std, p95 = linear_bound(feats, s[what], noise / 1000)
                print(f"{what:<13}{label:<48}{noise:9.0f}{std * 100:17.2f}{p95 * 100:8.2f}")
    std, p95 = linear_bound(s["betas"], s["chest_depth"], 0.0)
    print(f"chest depth from the {body.num_betas} betas themselves (the model's nonlinearity): {std * 100:.2f} cm std")


if __name__ == "__main__":
    main()
