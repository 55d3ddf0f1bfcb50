#!/usr/bin/env python
"""Compare fit-rig runs on a real recording (no 3D truth): reprojection, jitter and shape.

For each fit-rig output folder (``NAME=FOLDER``), the subject's body (``subject<id>.npz``: world
pose, translation, betas) is evaluated at the keypoints of the detections' set and projected
into every camera of the rig, then compared with the detections (per camera and frame, the
listed person nearest to the projection; keypoints above ``--min-confidence``):

- reprojection error per camera: median and p95 over keypoint observations, pixels;
- jitter: median, mean and p95 norm of the fitted 3D keypoints' acceleration (second difference
  times fps^2, m/s^2), the frames where some keypoint accelerates faster than ``--spike``
  m/s^2 (a walking body's joints stay well under 100: such a frame is a jump of the fit), and
  the median norm of the projected keypoints' second difference per camera
  next to the detections' own (pixels per frame^2: what a viewer sees shaking);
- shape: the largest |beta|.

``--subset SRC DST --to SET`` writes a copy of a keypoint folder with only the keypoints of SET
(by name, e.g. blazepose33 -> coco17), for versions of fit-rig that do not read the detector's
set; give the same subset to every run compared.

    python tools/compare_fit_rig_real.py --subset OUT/keypoints kp_coco17 --to coco17
    python tools/compare_fit_rig_real.py --rig Calib.qca.txt --keypoints kp_coco17 --fps 60 \\
        before=fit_before after=fit_after
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from calibration.formats import load_rig  # noqa: E402
from mvspin.body import BodyModel  # noqa: E402
from mvspin.body.keypoint_sets import KEYPOINT_SETS  # noqa: E402
from mvspin.data.recording_keypoints import read_recording_keypoints  # noqa: E402
from mvspin.geometry import axis_angle_to_matrix, perspective_projection  # noqa: E402


def subset_keypoints(src: Path, dst: Path, to: str) -> int:
    """Copy every OpenPose-layout JSON under ``src`` (one folder per camera) to ``dst`` keeping
    the keypoints of set ``to`` (matched by name). Returns the number of files written."""
    count = 0
    target = KEYPOINT_SETS[to]
    for path in sorted(src.glob("*/*.json")):
        data = json.loads(path.read_text())
        source = KEYPOINT_SETS[data["keypoint_set"]]
        index = [source.index(name) for name in target.names]
        for person in data.get("people", []):
            kp = np.asarray(person["pose_keypoints_2d"], dtype=np.float64).reshape(-1, 3)
            person["pose_keypoints_2d"] = kp[index].reshape(-1).tolist()
        data["keypoint_set"] = to
        out = dst / path.parent.name / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data))
        count += 1
    return count


def _second_difference(x: np.ndarray) -> np.ndarray:
    return x[2:] - 2 * x[1:-1] + x[:-2]


def evaluate_fit(body: BodyModel, folder: Path, rig, detections: np.ndarray, keypoint_set: str, fps: float,
                 min_confidence: float, spike: float = 100.0, subject: int = 0) -> dict:
    """Reprojection per camera, jitter and betas of one fit-rig output folder (see the module
    docstring); ``detections (T, V, P, K, 3)``."""
    fit = np.load(folder / f"subject{subject}.npz", allow_pickle=True)
    t = fit["transl"].shape[0]
    with torch.no_grad():
        kp = body.keypoints(keypoint_set, torch.as_tensor(fit["body_pose"], dtype=torch.float32).reshape(t, 69),
                            torch.as_tensor(fit["betas"], dtype=torch.float32).expand(t, -1),
                            axis_angle_to_matrix(torch.as_tensor(fit["global_orient"], dtype=torch.float32)),
                            torch.as_tensor(fit["transl"], dtype=torch.float32))  # (T, K, 3) world
        cams = rig.to_torch()
        uv = perspective_projection(kp[:, None], cams.K, cams.R, cams.t, cams.dist).numpy()  # (T, V, K, 2)
    det = detections[: t]
    conf = det[..., 2] > min_confidence  # (T, V, P, K)
    dist = np.linalg.norm(det[..., :2] - uv[:, :, None], axis=-1)  # (T, V, P, K)
    mean_dist = np.where(conf, dist, 0).sum(-1) / np.maximum(conf.sum(-1), 1)
    mean_dist = np.where(conf.sum(-1) > 0, mean_dist, np.inf)
    nearest = mean_dist.argmin(-1)  # (T, V): the listed person the subject is
    pick = np.take_along_axis(det, nearest[:, :, None, None, None], 2)[:, :, 0]  # (T, V, K, 3)
    err = np.linalg.norm(pick[..., :2] - uv, axis=-1)
    seen = pick[..., 2] > min_confidence
    kp_np = kp.numpy()
    acc = np.linalg.norm(_second_difference(kp_np), axis=-1) * fps ** 2  # (T - 2, K) m/s^2
    both = seen[2:] & seen[1:-1] & seen[:-2]
    per_camera = {}
    for v, name in enumerate(rig.names):
        e = err[:, v][seen[:, v]]
        jit_fit = np.linalg.norm(_second_difference(uv[:, v]), axis=-1)[both[:, v]]
        jit_det = np.linalg.norm(_second_difference(pick[:, v, :, :2]), axis=-1)[both[:, v]]
        per_camera[name] = {"median_px": float(np.median(e)), "p95_px": float(np.percentile(e, 95)),
                            "observations": int(e.size), "jitter_fit_px": float(np.median(jit_fit)),
                            "jitter_detections_px": float(np.median(jit_det))}
    all_err = err[seen]
    return {"per_camera": per_camera, "median_px": float(np.median(all_err)),
            "p95_px": float(np.percentile(all_err, 95)), "acc_median": float(np.median(acc)),
            "acc_mean": float(acc.mean()), "spike_frames": [int(i) + 1 for i in np.nonzero(acc.max(1) > spike)[0]],
            "acc_p95": float(np.percentile(acc, 95)), "betas_max": float(np.abs(fit["betas"]).max()),
            "frames": t}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("fits", nargs="*", metavar="NAME=FOLDER", help="fit-rig output folders to compare")
    p.add_argument("--rig", type=Path, help="the calibration fit-rig used")
    p.add_argument("--keypoints", type=Path, help="the keypoint folder fit-rig read")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate (default: %(default)s)")
    p.add_argument("--min-confidence", type=float, default=0.3, help="detections compared (default: %(default)s)")
    p.add_argument("--spike", type=float, default=100.0, help="acceleration (m/s^2) counted as a jump of the fit")
    p.add_argument("--resolution", default="full", choices=["full", "low"], help="free body model resolution")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    p.add_argument("--subset", nargs=2, type=Path, metavar=("SRC", "DST"), help="write a keypoint-set subset")
    p.add_argument("--to", default="coco17", help="--subset: the keypoint set kept (default: %(default)s)")
    args = p.parse_args()
    if args.subset:
        n = subset_keypoints(args.subset[0], args.subset[1], args.to)
        print(f"wrote {n} files ({args.to}) to {args.subset[1]}")
        return
    if not args.fits or args.rig is None or args.keypoints is None:
        p.error("give --rig, --keypoints and NAME=FOLDER fits (or --subset)")
    torch.set_num_threads(1)
    rig = load_rig(args.rig)
    rec = read_recording_keypoints(args.keypoints, rig.names)
    body = BodyModel.free(args.resolution)
    results = {}
    for item in args.fits:
        name, _, folder = item.partition("=")
        results[name] = evaluate_fit(body, Path(folder), rig, rec.keypoints, rec.keypoint_set, args.fps,
                                     args.min_confidence, args.spike)
    names = list(results)
    print(f"{rec.keypoint_set} keypoints, confidence > {args.min_confidence}, {args.fps:g} fps; "
          f"reprojection median / p95 px; jitter: median |second difference| px/frame^2 (fit vs detections)")
    print(f"{'camera':<10}" + "".join(f"{n:>34}" for n in names))
    for cam in rig.names:
        cells = []
        for n in names:
            c = results[n]["per_camera"][cam]
            cells.append(f"{c['median_px']:9.2f}{c['p95_px']:9.2f}{c['jitter_fit_px']:8.2f}"
                         f"{c['jitter_detections_px']:8.2f}")
        print(f"{cam:<10}" + "".join(cells))
    print(f"{'all':<10}" + "".join(f"{results[n]['median_px']:9.2f}{results[n]['p95_px']:9.2f}{'':>16}"
                                   for n in names))
    print(f"{'3D acceleration median / mean / p95 (m/s^2)':<46}" + "".join(
        f"{results[n]['acc_median']:8.2f}{results[n]['acc_mean']:8.2f}{results[n]['acc_p95']:8.2f}" for n in names))
    print(f"{f'frames accelerating > {args.spike:g} m/s^2':<46}" + "".join(
        f"{len(results[n]['spike_frames']):24d}" for n in names))
    print(f"{'largest |beta|':<46}" + "".join(f"{results[n]['betas_max']:24.2f}" for n in names))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
