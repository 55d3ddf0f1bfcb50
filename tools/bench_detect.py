#!/usr/bin/env python
"""Benchmark: ``mvspin detect`` frames/s per camera on the Pose2Sim demo, and the whole demo
(detect + fit) in seconds.

Part 1, per backend and thread count (each model's CPU threads; 1 and 2 by default), per camera:
- ``video``: frames/s of the detect job as the command runs it (H.264 decoding + detection), the
  job's own figure (``mvspin.apps.detect.run``);
- ``in memory``: frames/s of detection alone on frames decoded beforehand (the detector's cost).

Backends: ``blazepose`` (the real model files; run `mvspin detect install-model` first) and
``onnx`` with a stand-in SimCC model of RTMPose's signature exported here (no RTMPose weights
ship with any package; its network is nearly free, so that row measures the backend's pipeline:
BlazePose boxes, crop, decoding and tracking, not an RTMPose network).

Part 2: the whole demo (4 cameras x 100 frames): ``detect`` then ``fit_rig`` on its keypoints with
the demo's Qualisys calibration, each timed, plus ``fit_rig`` from the videos alone with overlay
videos (what ``mvspin fit-rig --videos ... -o OUT`` does).

    python tools/bench_detect.py            # the machine is named in the output
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mvspin.apps.detect import DetectConfig, run as detect  # noqa: E402
from mvspin.data.video import VideoFrames  # noqa: E402
from mvspin.detection.runner import DetectorSettings, detect_sequence, load_detector  # noqa: E402


def find_demo() -> Path:
    for folder in (ROOT, *ROOT.parents):
        candidate = folder / "shared" / "data" / "pose2sim_demo"
        if (candidate / "videos").is_dir():
            return candidate
    raise SystemExit("the Pose2Sim demo (shared/data/pose2sim_demo) is not beside the repository: give --demo")


def stand_in_onnx(path: Path) -> Path:
    import torch

    class SimCC(torch.nn.Module):  # RTMPose-m body's signature: (1,3,256,192) -> (1,17,384), (1,17,512)
        def forward(self, x):
            px = x.mean(dim=(1, 2)).repeat_interleave(2, dim=-1)
            py = x.mean(dim=(1, 3)).repeat_interleave(2, dim=-1)
            return px[:, None].expand(-1, 17, -1) * 1.0, py[:, None].expand(-1, 17, -1) * 1.0

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(SimCC(), (torch.zeros(1, 3, 256, 192),), str(path), input_names=["input"],
                          output_names=["simcc_x", "simcc_y"], dynamo=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=None, help="the pose2sim_demo folder")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--frames", type=int, default=100, help="frames per camera in part 1")
    parser.add_argument("--skip-onnx", action="store_true")
    parser.add_argument("--skip-fit", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    demo = args.demo or find_demo()
    videos = sorted((demo / "videos").glob("*.mp4"))
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs "
          f"(load average now {os.getloadavg()[0]:.1f}: other jobs share this machine)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        backends = [("blazepose", None)] + ([] if args.skip_onnx else [("onnx", str(stand_in_onnx(tmp / "s.onnx")))])
        decoded = {v.stem: [f for _, f in zip(range(args.frames), VideoFrames(v))] for v in videos}
        print("\npart 1: frames/s per camera (video = decode + detect, as `mvspin detect` runs; in memory = "
              "detection alone)")
        print(f"{'backend':<10} {'threads':>7} " + " ".join(f"{v.stem + ' video':>12} {v.stem + ' mem':>10}"
                                                           for v in videos))
        for backend, model in backends:
            for threads in args.threads:
                report = detect(DetectConfig(inputs=[str(v) for v in videos], out=str(tmp / f"{backend}{threads}"),
                                             detector=backend, model=model, threads=threads,
                                             max_frames=args.frames))
                detector = load_detector(DetectorSettings(backend=backend, model=model, threads=threads))
                memory = {}
                for name, frames in decoded.items():
                    detect_sequence(frames[:5], detector)  # warm-up
                    t0 = time.perf_counter()
                    detect_sequence(frames, detector)
                    memory[name] = len(frames) / (time.perf_counter() - t0)
                cells = " ".join(f"{c.fps:>12.1f} {memory[c.name]:>10.1f}" for c in report.cameras)
                print(f"{backend:<10} {threads:>7} {cells}")
        if args.skip_fit:
            return
        from mvspin.apps.rig import FitRigConfig, fit_rig

        calib = demo / "calibration" / "Calib.qca.txt"
        print("\npart 2: the whole demo (4 x 100 frames), BlazePose, 2 threads per model")
        t0 = time.perf_counter()
        report = detect(DetectConfig(inputs=[str(v) for v in videos], out=str(tmp / "kp"), threads=2))
        t_detect = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit = fit_rig(FitRigConfig(rig=calib, keypoints=tmp / "kp", out=tmp / "fit", fps=60))
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit_rig(FitRigConfig(rig=calib, videos=videos, out=tmp / "fit_videos", fps=60))
        t_all = time.perf_counter() - t0
        subject = fit.summary["subjects"][0]
        import numpy as np

        view_err = fit.fit.subjects[0].result.view_reprojection_error.detach().cpu().numpy()  # (T, V) px
        print("per-camera reprojection error over frames (each frame's mean over keypoints), pixels:")
        print(f"{'camera':<8} {'median':>7} {'p95':>7} {'mean':>7}")
        for v, name in enumerate(fit.camera_names):
            e = view_err[np.isfinite(view_err[:, v]), v]
            print(f"{name:<8} {np.median(e):>7.1f} {np.percentile(e, 95):>7.1f} {e.mean():>7.1f}")
        print(f"{'stage':<44} {'seconds':>8}")
        print(f"{'detect (4 cameras)':<44} {t_detect:>8.1f}")
        print(f"{'fit_rig on the keypoints (no overlays)':<44} {t_fit:>8.1f}")
        print(f"{'detect + fit':<44} {t_detect + t_fit:>8.1f}")
        print(f"{'fit_rig --videos alone (detect, fit, overlays)':<44} {t_all:>8.1f}")
        print(f"fitted {subject['frames_fitted']}/{fit.summary['frames']} frames, mean reprojection "
              f"{subject['mean_reprojection_px']:.1f} px; detection {', '.join(f'{c.name} {c.fps:.0f}' for c in report.cameras)} frames/s")


if __name__ == "__main__":
    main()
