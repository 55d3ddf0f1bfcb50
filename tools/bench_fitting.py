#!/usr/bin/env python
"""Benchmark: MV-SMPLify's batched fast path against a full-forward baseline, and L-BFGS vs Adam.

For each free-model resolution, on a synthetic batch of B bundles x V views (4-camera setting of
the fitting tests: 1000x1000 px, focal 1000 px, 2 px noise, 10% dropped):

- baseline: the same fitter with ``keypoint_backend="full"``: the same two-stage energy and
  Adam optimiser, but every iteration of both stages runs smplx's full forward (all vertices,
  LBS) of all B*V bodies, one per view, as the published MV-SPIN code does;
- MV-SMPLify per_view (the paper's mode) and calibrated, through the body model's fast keypoint
  path (one body per bundle, per-view root transforms; stage 1 reuses the fixed body);

each timed as the median of --repeats runs after one warm-up, with a fixed iteration count
(early stopping off) so that every row does the same number of steps. Then L-BFGS (strong
Wolfe): stage-2 iterations and time until its energy reaches Adam's final energy.

    python tools/bench_fitting.py --batch 16 --views 4 --repeats 5
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _bench import median_time  # noqa: E402  (tools/ is on sys.path when run as a script)
from mvspin.body import BodyModel  # noqa: E402
from mvspin.data.synthetic_keypoints import SyntheticOptions, make_capture, sample_bodies  # noqa: E402
from mvspin.fitting import MVSMPLify, MVSMPLifyConfig  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16, help="bundles B (default: %(default)s)")
    p.add_argument("--views", type=int, default=4, help="views V (default: %(default)s)")
    p.add_argument("--iterations", type=int, nargs=2, default=(100, 100), metavar=("STAGE1", "STAGE2"))
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row; the median is reported")
    p.add_argument("--resolutions", nargs="+", default=["low", "full"], choices=["low", "full"])
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the fitting tensors are small, extra threads add overhead)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    it1, it2 = args.iterations
    base_cfg = MVSMPLifyConfig(stage1_iterations=it1, stage2_iterations=it2, patience=0)
    rows = []
    lbfgs_rows = []
    for res in args.resolutions:
        body = BodyModel.free(res, device=device)
        params = sample_bodies(body, args.batch, torch.Generator().manual_seed(args.seed))
        cap = make_capture(body, params, args.views, seed=args.seed + 1, options=SyntheticOptions())
        kp, crop_kp = cap.keypoints.to(device), cap.crop_keypoints.to(device)
        est = type(cap.estimate)(*(x.to(device) for x in (cap.estimate.rotmat, cap.estimate.betas, cap.estimate.cam)))
        cams = cap.cameras.to(device)
        short = replace(base_cfg, stage1_iterations=2, stage2_iterations=2, triangulation_fit_iterations=2)
        fitters = {
            "baseline": (MVSMPLify(body, replace(base_cfg, keypoint_backend="full")),
                         MVSMPLify(body, replace(short, keypoint_backend="full"))),
            "per_view": (MVSMPLify(body, base_cfg), MVSMPLify(body, short)),
            "calibrated": (MVSMPLify(body, replace(base_cfg, mode="calibrated")),
                           MVSMPLify(body, replace(short, mode="calibrated"))),
        }
        runs = {
            "baseline: full forward of B*V bodies": ("baseline", lambda f: f.fit_per_view(crop_kp, est)),
            "MV-SMPLify per_view (fast path)": ("per_view", lambda f: f.fit_per_view(crop_kp, est)),
            "MV-SMPLify calibrated, network init": ("calibrated", lambda f: f.fit_calibrated(kp, cams, est)),
            "MV-SMPLify calibrated, triangulation init": ("calibrated", lambda f: f.fit_calibrated(kp, cams)),
        }
        name = f"{body.name} ({body.num_vertices} v)"
        timed = {}
        for method, (key, call) in runs.items():
            fitter, warm = fitters[key]
            last: dict[str, object] = {}
            t = median_time(lambda: last.update(result=call(fitter)), args.repeats, warm_up=lambda: call(warm))
            timed[method] = (t, last["result"])
        t_base = timed["baseline: full forward of B*V bodies"][0]
        n_it = it1 + it2
        for method, (t, r) in timed.items():
            rows.append((name, method, t, t / n_it, t_base / t, float(r.energy.sum())))

        # L-BFGS (same stage-1 budget, up to twice Adam's stage 2) until Adam's final energy.
        t_adam, r_adam = timed["MV-SMPLify per_view (fast path)"]
        target = float(r_adam.energy.sum())
        lbfgs = MVSMPLify(body, replace(base_cfg, optimizer="lbfgs", stage2_iterations=2 * it2, patience=5))
        lbfgs.fit_per_view(crop_kp, est)  # warm-up
        times, hits = [], []
        for _ in range(args.repeats):
            lbfgs.trace = []
            t0 = time.perf_counter()
            r_l = lbfgs.fit_per_view(crop_kp, est)
            t_total = time.perf_counter() - t0
            hit = next(((i + 1, t - t0) for s, i, e, t in lbfgs.trace if s == 2 and e <= target), None)
            hits.append(hit)
            times.append(t_total)
        reached = [h for h in hits if h is not None]
        lbfgs_rows.append((name, target, t_adam, reached[0][0] if reached else None,
                           statistics.median(h[1] for h in reached) if reached else float("nan"),
                           statistics.median(times), r_l.iterations, float(r_l.energy.sum())))

    print(f"\nMV-SMPLify benchmark: B={args.batch} bundles x V={args.views} views, {it1}+{it2} Adam iterations "
          f"(lr 0.01), median of {args.repeats} runs")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), "
          f"device {device}, torch {torch.__version__}")
    header = f"{'model':<28} {'method':<42} {'s / batch':>10} {'ms / iter':>10} {'speed-up':>9} {'final energy':>13}"
    print(header)
    print("-" * len(header))
    for name, method, t, per_it, speed, energy in rows:
        print(f"{name:<28} {method:<42} {t:>10.3f} {1000 * per_it:>10.2f} {speed:>8.1f}x {energy:>13.1f}")
    print(f"\nL-BFGS (strong Wolfe), per_view mode: stage 1 up to {it1}, stage 2 up to {2 * it2} iterations (early "
          "stop on), until its energy reaches Adam's final energy")
    header = (f"{'model':<28} {'Adam energy':>12} {'Adam s':>8} {'L-BFGS it. to reach':>20} {'s to reach':>11} "
              f"{'L-BFGS s':>9} {'its (s1, s2)':>13} {'L-BFGS energy':>14}")
    print(header)
    print("-" * len(header))
    for name, target, t_adam, hit_iter, t_hit, t_total, its, energy in lbfgs_rows:
        reached = "not reached" if hit_iter is None else f"{hit_iter}"
        print(f"{name:<28} {target:>12.1f} {t_adam:>8.3f} {reached:>20} {t_hit:>11.3f} {t_total:>9.3f} "
              f"{str(its):>13} {energy:>14.1f}")


if __name__ == "__main__":
    main()
