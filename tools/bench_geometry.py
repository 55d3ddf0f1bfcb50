#!/usr/bin/env python
"""Benchmark: mvspin's geometry kernels against independent implementations, same process.

- axis-angle -> matrix: :func:`mvspin.geometry.axis_angle_to_matrix` against kornia's
  ``axis_angle_to_rotation_matrix`` (baseline), forward and forward + backward, at the sizes the
  fitting loop uses (B bundles x 27 rotations: 23 body joints + 4 views' root corrections) and
  at a larger batch.
- the one lens model from numpy (``calibration.Rig.project``: one batched torch float64 call)
  against ``cv2.projectPoints`` once per camera (baseline), 8-coefficient distortion.

Each row is the median of --repeats runs of --inner calls, after one warm-up.

    python tools/bench_geometry.py --repeats 7
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _bench import median_time  # noqa: E402  (tools/ is on sys.path when run as a script)

from calibration import Camera, Rig  # noqa: E402
from mvspin.geometry import axis_angle_to_matrix  # noqa: E402


def _per_call(fn, x: torch.Tensor, backward: bool, repeats: int, inner: int) -> float:
    def run() -> None:
        for _ in range(inner):
            if backward:
                xg = x.detach().requires_grad_(True)
                fn(xg).sum().backward()
            else:
                fn(x)
    return median_time(run, repeats) / inner


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--inner", type=int, default=200, help="calls per timed run")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {args.device}")
    print(f"{'kernel':<22} {'shape':<14} {'pass':<10} {'kornia us':>10} {'mvspin us':>10} {'speed-up':>9}")
    for shape in [(16, 27, 3), (1024, 24, 3)]:
        x = torch.randn(*shape, device=args.device)
        for backward in (False, True):
            base = _per_call(axis_angle_to_rotation_matrix, x, backward, args.repeats, args.inner)
            ours = _per_call(axis_angle_to_matrix, x, backward, args.repeats, args.inner)
            print(f"{'axis_angle_to_matrix':<22} {str(tuple(shape)):<14} {'fwd+bwd' if backward else 'fwd':<10} "
                  f"{base * 1e6:>10.1f} {ours * 1e6:>10.1f} {base / ours:>8.2f}x")

    dist = [0.3, -0.05, 0.0012, -0.0008, 0.01, 0.5, -0.02, 0.04]
    for views, points in [(4, 25), (8, 2000)]:
        rig = Rig([Camera.look_at((4 * np.sin(a), 1.3, 4 * np.cos(a)), (0, 1, 0), 1000, (1000, 1000), dist=dist,
                                  name=f"c{i}") for i, a in enumerate(np.linspace(0, 2 * np.pi, views, endpoint=False))])
        X = np.random.default_rng(0).normal(size=(points, 3)) * 0.4 + [0.0, 1.0, 0.0]
        rvecs = [cv2.Rodrigues(c.R)[0] for c in rig]

        def opencv() -> None:
            for c, rvec in zip(rig, rvecs):
                cv2.projectPoints(X, rvec, c.t, c.K, c.dist)

        base = median_time(lambda: [opencv() for _ in range(args.inner // 10)], args.repeats) / (args.inner // 10)
        ours = median_time(lambda: [rig.project(X) for _ in range(args.inner // 10)], args.repeats) / (args.inner // 10)
        print(f"{'Rig.project (numpy)':<22} {f'{views} x {points}':<14} {'fwd':<10} "
              f"{base * 1e6:>10.1f} {ours * 1e6:>10.1f} {base / ours:>8.2f}x   (baseline: cv2.projectPoints per camera)")


if __name__ == "__main__":
    main()
