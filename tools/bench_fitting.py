#!/usr/bin/env python
"""Benchmark: MV-SMPLify's batched fast path against a full-forward baseline; Adam, L-BFGS and LM.

For each free-model resolution, on a synthetic batch of B bundles x V views (4-camera setting of
the fitting tests: 1000x1000 px, focal 1000 px, 2 px noise, 10% dropped):

- baseline: the same fitter with ``keypoint_backend="full"``: the same two-stage energy and
  Adam optimiser, but every iteration of both stages runs smplx's full forward (all vertices,
  LBS) of all B*V bodies, one per view, as the published MV-SPIN code does;
- MV-SMPLify per_view (the paper's mode) and calibrated, through the body model's fast keypoint
  path (one body per bundle, per-view root transforms; stage 1 reuses the fixed body);

- the same two modes with L-BFGS (strong Wolfe, the same iteration counts as caps, early stop
  on) and with the batched Levenberg-Marquardt solver (``optimizer="lm"``: at most
  ``lm_stage1_iterations`` + ``lm_stage2_iterations`` steps, per-bundle convergence);

each timed as the median of --repeats rounds after one warm-up (Adam with a fixed iteration count,
early stopping off; every row runs once per round, in turn, so the machine's drift touches all
rows alike), for every thread count of --threads; the ratio column is each row's time over
Adam's in the same mode, measured in the same process (meaningful on a shared machine).
With --lbfgs-reach, also L-BFGS's stage-2 iterations and time until its energy reaches Adam's.
With --no-baseline, the baseline is skipped. With --compile, also Adam with ``SMPLifyConfig.compile`` (torch.compile'd model keypoints),
warmed up by a run of the same fitter, so the one-off compile is not in the time.

    python tools/bench_fitting.py --batch 16 --views 4 --repeats 5 --threads 1 2
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _bench import interleaved_median_times  # noqa: E402  (tools/ is on sys.path when run as a script)

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
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="torch CPU thread counts, one table block each (default: %(default)s)")
    p.add_argument("--lbfgs-reach", action="store_true", help="also time L-BFGS until it reaches Adam's energy")
    p.add_argument("--compile", action="store_true",
                   help="also Adam and LM with torch.compile'd stage energies / LM systems (SMPLifyConfig.compile; "
                        "the warm-up run compiles)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the full-forward baseline (about 80 s per run on the full model); 'vs full' is then empty")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    device = torch.device(args.device)
    it1, it2 = args.iterations
    base_cfg = MVSMPLifyConfig(stage1_iterations=it1, stage2_iterations=it2, patience=0)
    rows = []
    lbfgs_rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for res in args.resolutions:
            rows += _bench_resolution(args, res, threads, device, base_cfg, lbfgs_rows)
    print(f"\nMV-SMPLify benchmark: B={args.batch} bundles x V={args.views} views, Adam {it1}+{it2} iterations "
          f"(lr 0.01), median of {args.repeats} runs")
    print(f"machine: {platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs), device {device}, "
          f"torch {torch.__version__}")
    header = (f"{'thr':>3} {'model':<24} {'method':<44} {'s / batch':>10} {'iters':>10} {'vs full':>8} "
              f"{'/ Adam':>7} {'final energy':>13}")
    print(header)
    print("-" * len(header))
    for threads, name, method, t, its, speed, ratio, energy in rows:
        vs_full = f"{speed:>7.1f}x" if speed == speed else f"{'-':>8}"  # nan without the baseline
        print(f"{threads:>3} {name:<24} {method:<44} {t:>10.3f} {its:>10} {vs_full} {ratio:>7.3f} {energy:>13.1f}")
    if not lbfgs_rows:
        return
    print(f"\nL-BFGS (strong Wolfe), per_view mode: stage 1 up to {it1}, stage 2 up to {2 * it2} iterations (early "
          "stop on), until its energy reaches Adam's final energy")
    header = (f"{'model':<28} {'Adam energy':>12} {'Adam s':>8} {'L-BFGS it. to reach':>20} {'s to reach':>11} "
              f"{'L-BFGS s':>9} {'its (s1, s2)':>13} {'L-BFGS energy':>14}")
    print(header)
    print("-" * len(header))
    for threads, name, target, t_adam, hit_iter, t_hit, t_total, its, energy in lbfgs_rows:
        reached = "not reached" if hit_iter is None else f"{hit_iter}"
        print(f"{name + f' ({threads} thr)':<28} {target:>12.1f} {t_adam:>8.3f} {reached:>20} {t_hit:>11.3f} {t_total:>9.3f} "
              f"{str(its):>13} {energy:>14.1f}")


def _bench_resolution(args: argparse.Namespace, res: str, threads: int, device: torch.device,
                      base_cfg: MVSMPLifyConfig, lbfgs_rows: list) -> list:
    """Every row of one free-model resolution at the current thread count."""
    it1, it2 = args.iterations
    body = BodyModel.free(res, device=device)
    params = sample_bodies(body, args.batch, torch.Generator().manual_seed(args.seed))
    cap = make_capture(body, params, args.views, seed=args.seed + 1, options=SyntheticOptions())
    kp, crop_kp = cap.keypoints.to(device), cap.crop_keypoints.to(device)
    est = type(cap.estimate)(*(x.to(device) for x in (cap.estimate.rotmat, cap.estimate.betas, cap.estimate.cam)))
    cams = cap.cameras.to(device)
    short = replace(base_cfg, stage1_iterations=2, stage2_iterations=2, triangulation_fit_iterations=2)
    lbfgs = replace(base_cfg, optimizer="lbfgs", patience=5)
    lm = replace(base_cfg, optimizer="lm")
    fitters = {
        "baseline": (replace(base_cfg, keypoint_backend="full"), replace(short, keypoint_backend="full")),
        "per_view": (base_cfg, short),
        "calibrated": (replace(base_cfg, mode="calibrated"), replace(short, mode="calibrated")),
        "lbfgs per_view": (lbfgs, replace(lbfgs, stage1_iterations=2, stage2_iterations=2)),
        "lbfgs calibrated": (replace(lbfgs, mode="calibrated"), replace(lbfgs, mode="calibrated", stage1_iterations=2,
                                                                         stage2_iterations=2)),
        "lm per_view": (lm, lm),
        "lm calibrated": (replace(lm, mode="calibrated"), replace(lm, mode="calibrated")),
    }
    per_view = lambda f: f.fit_per_view(crop_kp, est)  # noqa: E731
    network = lambda f: f.fit_calibrated(kp, cams, est)  # noqa: E731
    triangulation = lambda f: f.fit_calibrated(kp, cams)  # noqa: E731
    runs = [
        ("baseline: full forward of B*V bodies", "baseline", per_view, "per_view"),
        ("Adam per_view (fast path)", "per_view", per_view, "per_view"),
        ("Adam calibrated, network init", "calibrated", network, "calibrated"),
        ("Adam calibrated, triangulation init", "calibrated", triangulation, "triangulation"),
        ("L-BFGS per_view", "lbfgs per_view", per_view, "per_view"),
        ("L-BFGS calibrated, network init", "lbfgs calibrated", network, "calibrated"),
        ("LM per_view", "lm per_view", per_view, "per_view"),
        ("LM calibrated, network init", "lm calibrated", network, "calibrated"),
        ("LM calibrated, triangulation init", "lm calibrated", triangulation, "triangulation"),
    ]
    if args.no_baseline:
        runs = runs[1:]
    if args.compile:  # warmed up by a run of the same fitter: the compile is not timed
        fitters["compiled per_view"] = (replace(base_cfg, compile=True), None)
        fitters["compiled calibrated"] = (replace(base_cfg, compile=True, mode="calibrated"), None)
        fitters["compiled lm per_view"] = (replace(lm, compile=True), None)
        fitters["compiled lm calibrated"] = (replace(lm, compile=True, mode="calibrated"), None)
        runs += [("Adam per_view, compiled", "compiled per_view", per_view, "per_view"),
                 ("Adam calibrated, network init, compiled", "compiled calibrated", network, "calibrated"),
                 ("LM per_view, compiled", "compiled lm per_view", per_view, "per_view"),
                 ("LM calibrated, network init, compiled", "compiled lm calibrated", network, "calibrated"),
                 ("LM calibrated, triangulation init, compiled", "compiled lm calibrated", triangulation,
                  "triangulation")]
    name = f"{body.name} ({body.num_vertices} v)"
    fns, warm_ups, last = {}, {}, {}
    for method, key, call, group in runs:
        cfg, warm_cfg = fitters[key]
        fitter = MVSMPLify(body, cfg)
        warm = fitter if warm_cfg is None else MVSMPLify(body, warm_cfg)
        fns[method] = lambda f=fitter, c=call, m=method: last.update({m: c(f)})
        warm_ups[method] = lambda w=warm, c=call: c(w)
    # every row timed in turn within each round: the machine's drift touches all rows alike
    medians = interleaved_median_times(fns, args.repeats, warm_ups)
    timed = []
    adam: dict[str, float] = {}
    for method, _, _, group in runs:
        t = medians[method]
        if method.startswith("Adam") and group not in adam:
            adam[group] = t
        timed.append((method, t, last[method], group))
    t_base = timed[0][1] if not args.no_baseline else float("nan")
    rows = []
    for method, t, r, group in timed:
        ratio = t / adam[group] if group in adam and not method.startswith("baseline") else float("nan")
        rows.append((threads, name, method, t, "+".join(str(i) for i in r.iterations), t_base / t, ratio,
                     float(r.energy.sum())))
    if args.lbfgs_reach:
        t_adam, r_adam = timed[1][1], timed[1][2]
        lbfgs_rows.append((threads, name) + _lbfgs_reach(body, base_cfg, crop_kp, est, it2, float(r_adam.energy.sum()),
                                                          t_adam, args.repeats))
    return rows


def _lbfgs_reach(body: BodyModel, base_cfg: MVSMPLifyConfig, crop_kp: torch.Tensor, est: object, it2: int,
                 target: float, t_adam: float, repeats: int) -> tuple:
    """L-BFGS (same stage-1 budget, up to twice Adam's stage 2) until Adam's final energy."""
    lbfgs = MVSMPLify(body, replace(base_cfg, optimizer="lbfgs", stage2_iterations=2 * it2, patience=5))
    lbfgs.fit_per_view(crop_kp, est)  # warm-up
    times, hits = [], []
    for _ in range(repeats):
        lbfgs.trace = []
        t0 = time.perf_counter()
        r_l = lbfgs.fit_per_view(crop_kp, est)
        t_total = time.perf_counter() - t0
        hit = next(((i + 1, t - t0) for s, i, e, t in lbfgs.trace if s == 2 and e <= target), None)
        hits.append(hit)
        times.append(t_total)
    reached = [h for h in hits if h is not None]
    return (target, t_adam, reached[0][0] if reached else None,
            statistics.median(h[1] for h in reached) if reached else float("nan"),
            statistics.median(times), r_l.iterations, float(r_l.energy.sum()))


if __name__ == "__main__":
    main()
