#!/usr/bin/env python
"""Benchmark: keypoint-only fast path vs smplx's full forward.

For each batch size B, times (median of --repeats runs, after one warm-up):
- full: ``BodyModel.forward(..., keypoints=SET)`` (smplx: every vertex, pose blend shapes, LBS),
- fast: ``BodyModel.keypoints(SET, ...)`` (FK of the rest joints + LBS of the few vertices used),
- multi-view: ``BodyModel.keypoints_multiview`` for B bodies seen by V views, against the full
  forward of all B*V bodies (what a per-view implementation does),
forward only and forward+backward (what a fitting iteration needs). Prints one table.

    python tools/bench_body.py --resolution full --batch 1 64 1024
"""
from __future__ import annotations

import argparse
import platform

import torch
from _bench import median_time  # tools/ is on sys.path when run as a script

from mvspin.body import BodyModel


def _inputs(b: int, v: int, grad: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pose = (0.3 * torch.randn(b, 69, generator=g)).requires_grad_(grad)
    betas = torch.randn(b, 10, generator=g).requires_grad_(grad)
    orient = torch.randn(b, v, 3, generator=g).requires_grad_(grad)
    transl = torch.randn(b, v, 3, generator=g).requires_grad_(grad)
    return pose, betas, orient, transl


def bench(body: BodyModel, set_name: str, b: int, v: int, grad: bool, repeats: int) -> tuple[float, float]:
    pose, betas, orient, transl = _inputs(b, v, grad)

    def full():
        # every view is a separate full body, as in a per-view implementation
        out = body(pose.repeat_interleave(v, 0), betas.repeat_interleave(v, 0), orient.reshape(b * v, 3),
                   transl.reshape(b * v, 3), keypoints=set_name)
        if grad:
            out.keypoints.sum().backward()

    def fast():
        if v == 1:
            kp = body.keypoints(set_name, pose, betas, orient[:, 0], transl[:, 0])
        else:
            kp = body.keypoints_multiview(set_name, pose, betas, orient, transl)
        if grad:
            kp.sum().backward()

    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        return median_time(full, repeats), median_time(fast, repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", choices=("full", "low"), default="full")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64, 1024])
    p.add_argument("--views", type=int, default=4, help="views for the multi-view rows")
    p.add_argument("--mv-batch", type=int, nargs="+", default=[1, 16, 64],
                   help="bundle counts for the multi-view rows (full forward runs B*V bodies)")
    p.add_argument("--set", default="spin49", help="keypoint set (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    body = BodyModel.free(args.resolution)
    n_vids = body.keypoint_map(args.set).vertex_ids.size
    print(f"body model {body.name} ({body.num_vertices} vertices); set {args.set} "
          f"({len(body.keypoint_map(args.set).keypoint_set)} keypoints, {n_vids} skinned vertices)")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats}")
    header = f"{'mode':<12}{'B':>6}{'V':>4}{'pass':>10}{'full ms':>12}{'fast ms':>12}{'speed-up':>10}"
    print(header)
    print("-" * len(header))
    for v, batches in ((1, args.batch), (args.views, args.mv_batch)):
        for b in batches:
            for grad in (False, True):
                repeats = args.repeats if b * v <= 256 else max(2, args.repeats // 2)
                t_full, t_fast = bench(body, args.set, b, v, grad, repeats)
                mode = "single-view" if v == 1 else "multi-view"
                print(f"{mode:<12}{b:>6}{v:>4}{'fwd+bwd' if grad else 'fwd':>10}{t_full * 1e3:>12.2f}"
                      f"{t_fast * 1e3:>12.2f}{t_full / t_fast:>9.1f}x", flush=True)


if __name__ == "__main__":
    main()
