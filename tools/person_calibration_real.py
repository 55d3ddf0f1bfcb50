#!/usr/bin/env python
"""Person calibration on a real recording against the lab's calibration, and both against the images.

On a recording with a reference calibration (the Pose2Sim demo and its Qualisys file), prints:

1. extrinsics from the person (``calibration.person_calibration``, the reference's intrinsics)
   against the reference, per camera centre (cm) and rotation (degrees) after a similarity
   alignment: with the frames as recorded; with the offsets ``mvspin sync`` finds without a rig;
   and, as a diagnostic only (it uses the reference), with the offsets ``mvspin sync`` finds
   with the reference rig;
2. how each calibration agrees with detections it was not made from: the person calibration
   made on one half of the frames, the reference, both judged on the other half by
   ``calibration.rig_comparison.epipolar_consistency`` (per camera pair, median and median signed
   distance from the epipolar lines, pixels; a camera a calibration has wrong, or a camera out
   of step, moves the signed distance of each of its pairs); then, on the whole recording, each
   pair's signed distance split into its geometric part (at keypoints that do not move) and its
   timing part (an offset in frames);
3. fit-rig's reprojection onto the detections with each calibration (median / p95 px per camera).

    python tools/person_calibration_real.py --keypoints KP --reference Calib.qca.txt --fps 60 --work OUT
    python tools/person_calibration_real.py --videos cams/*.mp4 --reference Calib.qca.txt --fps 60 --work OUT

``--videos`` detects the keypoints first (``mvspin detect``, into ``OUT/keypoints``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from calibration import load_rig, save_rig  # noqa: E402
from calibration.intrinsics import format_table  # noqa: E402
from calibration.person_calibration import calibrate_from_keypoints, held_out_consistency  # noqa: E402
from calibration.rig_comparison import compare_rigs, consistency_table, epipolar_consistency  # noqa: E402
from mvspin.apps import sync as sync_app  # noqa: E402
from mvspin.apps.calibrate_person import detect_keypoints, main_person, person_keypoint_roles  # noqa: E402
from mvspin.data.recording_keypoints import read_recording_keypoints  # noqa: E402


def _calibrate(kp: np.ndarray, intrinsics, roles, offsets: Optional[list[float]] = None, halves: bool = False):
    _, foot, head, ratio, mirror = roles
    return calibrate_from_keypoints(kp, intrinsics, foot=foot, head=head, head_height_ratio=ratio, mirror=mirror,
                                    time_offsets=offsets, halves=halves)


def _fit_reprojection(rig_path: Path, keypoints: Path, fps: float, out: Path, offsets: Optional[Path],
                      detections: np.ndarray, keypoint_set: str) -> dict:
    from compare_fit_rig_real import evaluate_fit  # tools/, beside this script

    from mvspin.apps.rig import FitRigConfig, fit_rig
    from mvspin.body import BodyModel

    fit_rig(FitRigConfig(rig=rig_path, keypoints=keypoints, out=out, fps=fps, offsets=offsets))
    return evaluate_fit(BodyModel.free(), out, load_rig(rig_path), detections, keypoint_set, fps, min_confidence=0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--keypoints", type=Path, help="keypoint folder (a sub-folder per camera)")
    source.add_argument("--videos", type=Path, nargs="+", help="one video per camera (detected first)")
    parser.add_argument("--reference", type=Path, required=True, help="the lab's calibration (intrinsics and reference)")
    parser.add_argument("--fps", type=float, required=True)
    parser.add_argument("--work", type=Path, required=True, help="folder for the rigs, offsets and fits written")
    parser.add_argument("--no-fit", action="store_true", help="skip table 3 (fit-rig with each calibration)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    keypoints = args.keypoints or detect_keypoints(args.videos, args.work / "keypoints")
    reference = load_rig(args.reference)
    rec = read_recording_keypoints(keypoints, list(reference.names), None, allow_missing_frames=True)
    roles = person_keypoint_roles(rec.keypoint_set)
    kp = np.asarray(main_person(rec.keypoints)[:, :, roles[0]], dtype=np.float64)
    intrinsics = list(reference)  # the reference's own K and distortion; its extrinsics are not used
    names = list(reference.names)

    offsets = {}
    for label, extra in (("sync, no rig", {"intrinsics": [args.reference]}), ("sync, the lab's rig", {"rig": args.reference})):
        path = args.work / f"offsets_{'rig' if 'rig' in extra else 'norig'}.json"
        sync_app.run(sync_app.SyncConfig(keypoints=keypoints, out=path, max_offset=30, **extra))
        offsets[label] = (path, sync_app.read_offsets(path, names))

    print(f"1. Extrinsics from the person ({len(kp)} frames, {rec.keypoint_set}) against {args.reference.name}: "
          "centre error cm / rotation error deg after a similarity alignment")
    runs = {"as recorded": None, **{k: v[1] for k, v in offsets.items()}}
    rows, rigs, reports = [], {}, {}
    for label, offs in runs.items():
        # as recorded, with the halves too: their rigs are table 2's
        rig, report = _calibrate(kp, intrinsics, roles, offs, halves=offs is None)
        rigs[label], reports[label] = rig, report
        cmp = compare_rigs(rig, reference)
        rows.append((label + (" (diagnostic)" if "lab" in label else ""),
                     *[f"{c * 100:4.1f} / {r:4.2f}" for c, r in zip(cmp.centre_error_m, cmp.rotation_error_deg)],
                     f"{max(cmp.centre_error_m) * 100:.1f} / {max(cmp.rotation_error_deg):.2f}",
                     f"{report.median_error_px:.2f}"))
    print(format_table(("frames", *names, "worst", "BA median px"), rows))
    print("offsets (frames): " + "; ".join(f"{k}: " + " ".join(f"{o:+.2f}" for o in v[1]) for k, v in offsets.items()))

    print("\n2. Agreement with detections the calibration was not made from (per camera pair: median / "
          "median signed distance from the epipolar lines, px)")
    print(consistency_table(held_out_consistency(reports["as recorded"], kp, reference, args.reference.name)))
    print("\n2b. The whole recording's signed distances split into geometry and timing (per camera pair: the "
          "distance at keypoints that do not move, px / the offset that the keypoints' speed across the lines "
          "shows, frames)")
    print(consistency_table([(f"{label}; all frames", epipolar_consistency(rig, kp)) for label, rig in
                             (("person, as recorded", rigs["as recorded"]), (args.reference.name, reference))],
                            split=True))

    if args.no_fit:
        return
    print("\n3. fit-rig with each calibration: reprojection onto the detections, median / p95 px")
    fits = {args.reference.name: (args.reference, None)}
    for label, file, offs_path in (("person, as recorded", "person_as_recorded.toml", None),
                                   ("person, sync without a rig", "person_sync_norig.toml", offsets["sync, no rig"][0])):
        path = args.work / file
        save_rig(rigs["as recorded" if offs_path is None else "sync, no rig"], path)
        fits[label] = (path, offs_path)
    rows = []
    for label, (path, offs_path) in fits.items():
        res = _fit_reprojection(path, keypoints, args.fps, args.work / f"fit_{path.stem}", offs_path, rec.keypoints,
                                rec.keypoint_set)
        rows.append((label, *[f"{res['per_camera'][n]['median_px']:5.2f} / {res['per_camera'][n]['p95_px']:6.1f}" for n in names],
                     f"{res['median_px']:5.2f} / {res['p95_px']:6.1f}"))
    print(format_table(("calibration", *names, "all"), rows))


if __name__ == "__main__":
    main()
