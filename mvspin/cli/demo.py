"""``mvspin demo``: fit a synthetic 4-camera capture with MV-SMPLify in both modes, and SMPLify.

A deterministic moving body (the free model unless --smpl-dir is given) is seen by a rig of
cameras; its keypoints get pixel noise and dropped joints like a detector's. The demo fits every
frame with

- MV-SMPLify ``calibrated`` (known cameras, no network: starts from the mean pose oriented on
  triangulated keypoints), the rig user's path;
- MV-SMPLify ``per_view`` (the paper: crop cameras, started from simulated per-view network
  estimates);
- single-view SMPLify on camera 0 (SPIN's loop), from the same estimates,

and writes meshes (.ply), parameters (.npz), per-camera overlays (.png), the rig (.json) and
metrics (.json) under ``--out``, then prints a table against the ground truth.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mvspin.atomic import atomic_path
from mvspin.cli.common import add_body_model_args, add_device_arg, atomic_write_bytes, log, resolve_device
from mvspin.io_outputs import write_image, write_mesh, write_smpl_npz

RENDER_SCALE = 0.5  # overlays are rendered at half the capture resolution, to stay fast


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="fit a synthetic multi-camera capture (MV-SMPLify both modes, SMPLify) and report accuracy",
        description="Make a synthetic capture of a moving body seen by a rig of cameras (keypoints with pixel "
                    "noise and dropped joints), fit it with MV-SMPLify in the calibrated and per-view modes and "
                    "with single-view SMPLify, and write meshes, parameters, overlays and metrics. Fitting uses "
                    "the fast keypoint path, whose cost does not depend on the mesh resolution, so the same model "
                    "(by default the free model at full resolution) is fitted and meshed.",
    )
    add_body_model_args(p)
    add_device_arg(p)
    p.add_argument("--out", type=Path, default=Path("mvspin_demo"), help="output folder (default: %(default)s)")
    p.add_argument("--frames", type=int, default=30, help="frames of the motion (default: %(default)s)")
    p.add_argument("--views", type=int, default=4, help="cameras in the rig (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the motion, rig and noise (default: %(default)s)")
    p.add_argument("--keypoints", default="openpose25", help="2D keypoint set of the capture (default: %(default)s)")
    p.add_argument("--noise", type=float, default=2.0, help="pixel noise standard deviation (default: %(default)s)")
    p.add_argument("--drop", type=float, default=0.1, help="share of keypoints dropped (default: %(default)s)")
    p.add_argument("--optimizer", choices=("adam", "lbfgs"), default="adam",
                   help="fitting optimiser (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch; fitting tensors are small, so 1 is fastest (default: %(default)s)")
    p.add_argument("--no-render", action="store_true", help="skip the overlay PNGs")
    p.add_argument("--train", action="store_true",
                   help="instead: the synthetic training protocol (data, full loop, no-fitting ablation, eval; "
                        "results.json and a plot), see mvspin.learning.synthetic_protocol")
    p.add_argument("--quick", action="store_true", help="with --train: a few-minute version (fewer steps, one seed)")
    p.set_defaults(run=run)


def run_train_protocol(args: argparse.Namespace) -> int:
    """``mvspin demo --train [--quick]``: a thin shell over :func:`mvspin.learning.synthetic_protocol.run`."""
    from mvspin.learning.synthetic_protocol import QUICK, SyntheticProtocolConfig, run as run_protocol

    config = SyntheticProtocolConfig(**(QUICK if args.quick else {}))
    results = run_protocol(args.out, config, progress=True)
    print(results.table())
    print(f"wrote {args.out / 'results.json'} and {results.plot}")
    return 0


def _save_npz(path: Path, arrays: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def _save_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def _errors(body, result, capture) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame MPJPE and PA-MPJPE (mm) against the ground truth in the result's frames.

    A calibrated result is compared in the world frame; a per-view result in each view's crop
    camera frame (mean over views); a SMPLify result of all B*V crops likewise."""
    from mvspin.fitting import pose_errors
    from mvspin.geometry import axis_angle_to_matrix

    gt = capture.gt
    if result.world_orient is not None:
        m, pa = pose_errors(body, result.body_pose, result.betas, result.world_orient, gt.body_pose, gt.betas,
                            axis_angle_to_matrix(gt.global_orient))
        return m.cpu().numpy(), pa.cpu().numpy()
    b, v = capture.batch_size, capture.num_views
    rep = lambda x: x.repeat_interleave(v, 0)  # noqa: E731
    body_pose, betas = result.body_pose, result.betas
    if result.batch_size == b:  # per-view: one shared body per frame
        body_pose, betas = rep(body_pose), rep(betas)
    m, pa = pose_errors(body, body_pose, betas, result.global_orient.flatten(0, 1), rep(gt.body_pose), rep(gt.betas),
                        capture.crop_orient.flatten(0, 1).to(betas))
    return m.view(b, v).mean(1).cpu().numpy(), pa.view(b, v).mean(1).cpu().numpy()


def _estimate_errors(body, capture) -> tuple[np.ndarray, np.ndarray]:
    """Errors of the simulated network estimates (each view's own), for reference."""
    from mvspin.fitting import pose_errors

    est, gt = capture.estimate, capture.gt
    b, v = est.betas.shape[:2]
    rep = lambda x: x.repeat_interleave(v, 0)  # noqa: E731
    m, pa = pose_errors(body, est.rotmat[:, :, 1:].flatten(0, 1), est.betas.flatten(0, 1),
                        est.rotmat[:, :, 0].flatten(0, 1),
                        rep(gt.body_pose), rep(gt.betas), capture.crop_orient.flatten(0, 1))
    return m.view(b, v).mean(1).cpu().numpy(), pa.view(b, v).mean(1).cpu().numpy()


def _overlays(out_dir: Path, body, capture, result, frames: list[int]) -> list[Path]:
    """One PNG per camera: the calibrated fit rendered over the input keypoints, a few frames."""
    from mvspin.rendering import image_grid, render_mesh

    faces = body.faces
    kp_model = body.keypoints(capture.options.keypoint_set, result.body_pose[frames], result.betas[frames],
                              result.world_orient[frames], result.world_transl[frames]).cpu().numpy()
    paths = []
    for v, cam in enumerate(capture.rigs[0]):
        small = cam.scaled(RENDER_SCALE)
        w, h = small.image_size
        panels = []
        for i, f in enumerate(frames):
            verts = result.world_vertices[f].cpu().numpy()
            img = render_mesh(verts, faces, small.K, w, h, small.R, small.t, background=(0.93, 0.93, 0.93)).color
            img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            given = capture.keypoints[f, v].numpy()
            fitted = small.project(kp_model[i])
            for (x, y, c) in given:
                if c > 0:
                    p = (int(round((x + 0.5) * RENDER_SCALE - 0.5)), int(round((y + 0.5) * RENDER_SCALE - 0.5)))
                    cv2.circle(img, p, 4, (40, 160, 40), 2, cv2.LINE_AA)
            for x, y in fitted:
                cv2.circle(img, (int(round(x)), int(round(y))), 2, (30, 30, 220), -1, cv2.LINE_AA)
            cv2.putText(img, f"{cam.name} frame {f}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (40, 40, 40), 1,
                        cv2.LINE_AA)
            panels.append(img)
        grid = image_grid(panels, cols=len(panels))
        paths.append(write_image(out_dir / "overlays" / f"{cam.name}.png", cv2.cvtColor(grid, cv2.COLOR_BGR2RGB)))
    return paths


def run(args: argparse.Namespace) -> int:
    if args.train:
        return run_train_protocol(args)
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    from mvspin.cli.common import load_body_model
    from mvspin.config import config_to_dict
    from mvspin.data.synthetic_keypoints import SyntheticOptions, make_capture, random_rig, smooth_motion
    from mvspin.fitting import MVSMPLify, MVSMPLifyConfig, SMPLify, SMPLifyConfig
    from mvspin.geometry import SPIN_CROP_SIZE, SPIN_SCALE_UNIT

    if args.frames < 1 or args.views < 2:
        raise ValueError("--frames must be >= 1 and --views >= 2")
    if not 0 <= args.drop < 1 or args.noise < 0:
        raise ValueError("--drop must be in [0, 1) and --noise >= 0")
    if args.threads < 1:
        raise ValueError("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    t_start = time.perf_counter()
    body = load_body_model(args, device=device)
    log.info("fitting and meshes use %s through the fast keypoint path (%d vertices only at the end)",
             body.name, body.num_vertices)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    gen = torch.Generator().manual_seed(args.seed)
    motion = smooth_motion(body, args.frames, gen)
    opts = SyntheticOptions(keypoint_set=args.keypoints, noise_px=args.noise, drop_rate=args.drop, shared_rig=True)
    rig = random_rig(args.views, np.random.default_rng(args.seed), opts.image_size, opts.focal, opts.distance,
                     opts.height)
    capture = make_capture(body, motion, seed=args.seed + 1, options=opts, rigs=[rig])
    log.info("synthetic capture: %d frames x %d cameras (%dx%d px, focal %.0f px), %s keypoints, noise %.1f px, "
             "%.0f%% dropped", args.frames, args.views, *opts.image_size, opts.focal, args.keypoints, args.noise,
             100 * args.drop)

    mv_cfg = MVSMPLifyConfig(optimizer=args.optimizer)
    cal_cfg = MVSMPLifyConfig(mode="calibrated", optimizer=args.optimizer)
    sv_cfg = SMPLifyConfig(optimizer=args.optimizer)
    to_dev = lambda x: x.to(device)  # noqa: E731
    est = capture.estimate
    runs: dict[str, dict[str, Any]] = {}
    steps = [
        ("calibrated", "MV-SMPLify calibrated",
         lambda: MVSMPLify(body, cal_cfg, args.keypoints).fit_calibrated(
             to_dev(capture.keypoints), capture.cameras, return_meshes=True)),
        ("per_view", "MV-SMPLify per-view",
         lambda: MVSMPLify(body, mv_cfg, args.keypoints).fit_per_view(
             to_dev(capture.crop_keypoints), type(est)(to_dev(est.rotmat), to_dev(est.betas), to_dev(est.cam)))),
        ("smplify", "SMPLify (each view alone)",
         lambda: SMPLify(body, sv_cfg, args.keypoints).fit(
             to_dev(capture.crop_keypoints.flatten(0, 1)), to_dev(est.rotmat.flatten(0, 1)),
             to_dev(est.betas.flatten(0, 1)), to_dev(est.cam.flatten(0, 1)))),
    ]
    # Crop pixels -> image pixels, so every method's reprojection error is in the same unit.
    crop_to_image = (capture.crop_scale * SPIN_SCALE_UNIT / SPIN_CROP_SIZE).to(device)
    for key, label, fit in tqdm(steps, desc="fitting", unit="method"):
        t0 = time.perf_counter()
        result = fit()
        elapsed = time.perf_counter() - t0
        m, pa = _errors(body, result, capture)
        if key == "calibrated":
            reproj = result.reprojection_error.cpu().numpy()
        else:
            err = result.view_reprojection_error.reshape(crop_to_image.shape) * crop_to_image
            reproj = err.mean(1).cpu().numpy()
        runs[key] = {"label": label, "result": result, "mpjpe": m, "pa_mpjpe": pa, "reproj": reproj,
                     "seconds": elapsed, "fitted": int(result.fitted.reshape(args.frames, -1).all(1).sum())}
    est_m, est_pa = _estimate_errors(body, capture)

    # --- outputs -------------------------------------------------------------------------------
    cal = runs["calibrated"]["result"]
    fps = 30.0
    for f in tqdm(range(args.frames), desc="meshes", unit="frame"):
        write_mesh(out / "meshes" / f"frame_{f:04d}.ply", cal.world_vertices[f].cpu().numpy(), body.faces)
    # Per-frame betas (T, 10): every frame is fitted on its own (one subject: sequence fitting
    # with shared betas is the recordings' job).
    params = {k: v for k, v in cal.smpl_params().items() if k != "poses"}  # the writer adds poses
    write_smpl_npz(out / "params" / "calibrated.npz", **params, model=body.name, fps=fps,
                   extra={"reprojection_error": cal.reprojection_error.cpu().numpy(),
                          "view_reprojection_error": cal.view_reprojection_error.cpu().numpy(),
                          "fitted": cal.fitted.cpu().numpy()})
    for key in ("per_view", "smplify"):
        r = runs[key]["result"]
        arrays = {k: v for k, v in r.numpy().items() if k not in ("vertices", "joints")}
        arrays["model"] = np.asarray(body.name)
        _save_npz(out / "params" / f"{key}.npz", arrays)
    write_smpl_npz(out / "params" / "ground_truth.npz", **capture.gt.as_dict(), model=body.name, fps=fps)
    _save_npz(out / "keypoints.npz", {"keypoints": capture.keypoints.numpy(),
                                      "crop_keypoints": capture.crop_keypoints.numpy(),
                                      "crop_center": capture.crop_center.numpy(),
                                      "crop_scale": capture.crop_scale.numpy(),
                                      "keypoint_set": np.asarray(args.keypoints)})
    _save_json(out / "rig.json", {"cameras": [
        {"name": c.name, "size": list(c.image_size), "matrix": c.K.tolist(), "distortions": c.dist.tolist(),
         "rotation": c.R.tolist(), "translation": c.t.tolist()} for c in rig]})
    overlay_paths = []
    if not args.no_render:
        frames = sorted({0, args.frames // 2, args.frames - 1})
        overlay_paths = _overlays(out, body, capture, cal, frames)

    rows = [("network estimate (simulated)", est_m, est_pa, None, None, args.frames)]
    rows += [(r["label"], r["mpjpe"], r["pa_mpjpe"], r["reproj"], r["seconds"], r["fitted"]) for r in runs.values()]
    metrics = {
        "body_model": body.describe()["name"], "body_model_source": body.source, "frames": args.frames,
        "views": args.views, "keypoint_set": args.keypoints, "noise_px": args.noise, "drop_rate": args.drop,
        "device": str(device), "threads": args.threads,
        "methods": {
            key: {"label": r["label"], "mpjpe_mm": float(np.mean(r["mpjpe"])),
                  "pa_mpjpe_mm": float(np.mean(r["pa_mpjpe"])),
                  "reprojection_error_px": float(np.mean(r["reproj"])), "seconds": r["seconds"],
                  "ms_per_frame": 1000 * r["seconds"] / args.frames, "frames_fitted": r["fitted"],
                  "iterations": list(r["result"].iterations),
                  "per_frame": {"mpjpe_mm": r["mpjpe"].tolist(), "pa_mpjpe_mm": r["pa_mpjpe"].tolist(),
                                "reprojection_error_px": r["reproj"].tolist()}}
            for key, r in runs.items()
        },
        "network_estimate": {"mpjpe_mm": float(np.mean(est_m)), "pa_mpjpe_mm": float(np.mean(est_pa))},
        "config": {"calibrated": config_to_dict(cal_cfg), "per_view": config_to_dict(mv_cfg),
                   "smplify": config_to_dict(sv_cfg)},
    }
    _save_json(out / "metrics.json", metrics)

    table = Table(title=f"mvspin demo: {args.frames} frames x {args.views} cameras, {body.name}, "
                        f"noise {args.noise:g} px, {100 * args.drop:.0f}% dropped")
    for col in ("method", "MPJPE mm", "PA-MPJPE mm", "reproj px", "ms / frame", "fitted"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for label, m, pa, rp, sec, fitted in rows:
        table.add_row(label, f"{np.mean(m):.1f}", f"{np.mean(pa):.1f}", "-" if rp is None else f"{np.mean(rp):.2f}",
                      "-" if sec is None else f"{1000 * sec / args.frames:.1f}", f"{fitted}/{args.frames}")
    console = Console(width=max(100, Console().width))
    console.print(table)
    console.print("calibrated: known cameras, no network (starts from the mean pose on triangulated keypoints); "
                  "per-view (the paper) and SMPLify (every view fitted on its own): SPIN crop cameras, started "
                  "from the simulated network's per-view estimates.")
    console.print("MPJPE/PA-MPJPE: 14 LSP joints, pelvis-centred, in the world (calibrated) or each view's crop "
                  "camera frame. Reprojection error in image pixels. Overlays: green = input keypoints, red = fitted.")
    console.print(f"wrote {out}/: meshes/ ({args.frames} .ply), params/ (.npz), "
                  f"{'overlays/ (' + str(len(overlay_paths)) + ' .png), ' if overlay_paths else ''}"
                  f"keypoints.npz, rig.json, metrics.json  [{time.perf_counter() - t_start:.1f} s]")
    return 0
