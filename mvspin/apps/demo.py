"""The demo as a library: a synthetic 4-camera capture fitted with MV-SMPLify (both modes) and SMPLify.

A deterministic moving body is seen by a rig of cameras; its keypoints get pixel noise and
dropped joints like a detector's. :func:`run` (``mvspin demo``) fits every frame with

- MV-SMPLify ``calibrated`` (known cameras, no network: starts from the mean pose oriented on
  triangulated keypoints), the rig user's path;
- MV-SMPLify ``per_view`` (the paper: crop cameras, started from simulated per-view network
  estimates);
- single-view SMPLify on every view alone (SPIN's loop), from the same estimates,

and writes under ``config.out``:

- ``meshes/frame_XXXX.ply``: the calibrated fit per frame (world frame);
- ``params/calibrated.npz`` (world frame, one row per frame), ``params/per_view.npz`` and
  ``params/smplify.npz`` (one row per frame and view, frame-major, in that view's crop camera;
  ``frame``/``view`` say which), ``params/ground_truth.npz`` (world frame, with the capture's
  keypoints); all SMPL files with axis-angle ``body_pose (T, 69)``
  (:func:`mvspin.io_outputs.write_smpl_npz`);
- ``overlays/<camera>.png`` (the fit over the input keypoints, a few frames), ``rig.json``,
  ``metrics.json`` (standard JSON) and ``demo_config.yaml`` (the resolved :class:`DemoConfig`).

Example:
    >>> result = run(DemoConfig(out="mvspin_demo", frames=4, render=False))  # doctest: +SKIP
    >>> result.metrics["methods"]["calibrated"]["pa_mpjpe_mm"]  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import torch

from mvspin.body.config import BodyModelConfig
from mvspin.config import ConfigError, check_range, config_to_dict, resolve_device, save_config
from mvspin.progress import Progress, no_progress

if TYPE_CHECKING:
    from mvspin.body import BodyModel
    from mvspin.fitting import FitResult

__all__ = ["DemoConfig", "DemoReport", "METHODS", "run"]

log = logging.getLogger("mvspin")

METHODS = ("calibrated", "per_view", "smplify")
CONFIG_FILE = "demo_config.yaml"
# Overlays are rendered at half the capture resolution, to stay fast.
RENDER_SCALE = 0.5
# Frame rate written into the parameter files of the synthetic motion.
FPS = 30.0


@dataclass
class DemoConfig:
    """Settings of ``mvspin demo``: the synthetic capture, its fitting and where the outputs go."""

    out: Path = Path("mvspin_demo")
    """Output folder."""
    frames: int = 30
    """Frames of the motion."""
    views: int = 4  # MV-SPIN: Human3.6M / MPI-INF-3DHP four-view bundles
    """Cameras in the rig (MV-SPIN's datasets: 4)."""
    seed: int = 0
    """Seed of the motion, rig and noise."""
    keypoints: str = "openpose25"  # SPIN's detector keypoints
    """2D keypoint set of the capture."""
    noise: float = 2.0
    """Pixel noise standard deviation of the keypoints."""
    drop: float = 0.1
    """Share of keypoints dropped (a detector's misses)."""
    optimizer: str = field(default="adam", metadata={"choices": ("adam", "lbfgs", "lm")})  # SPIN / MV-SPIN: Adam
    """Fitting optimiser: adam (SPIN, MV-SPIN, lr 0.01), lbfgs or lm (batched Levenberg-Marquardt)."""
    threads: int = 1
    """CPU threads for torch; fitting tensors are small, so 1 is fastest."""
    render: bool = True
    """Write the overlay PNGs."""
    device: Optional[str] = None
    """Torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu)."""
    body: BodyModelConfig = field(default_factory=BodyModelConfig)
    """The body model (fitted and meshed; the fast keypoint path makes the resolution free)."""

    def __post_init__(self) -> None:
        from mvspin.body.keypoint_sets import KEYPOINT_SETS

        self.out = Path(self.out)
        check_range("frames", self.frames, 1, 100_000, integer=True)
        check_range("views", self.views, 2, 64, integer=True)
        check_range("seed", self.seed, 0, 2 ** 63 - 1, integer=True)
        check_range("noise", self.noise, 0.0, 1000.0)
        if not 0.0 <= self.drop < 1.0:
            raise ConfigError(f"drop must be in [0, 1), got {self.drop}", field="drop")
        check_range("threads", self.threads, 1, 1024, integer=True)
        if self.optimizer not in ("adam", "lbfgs", "lm"):
            raise ConfigError(f"optimizer must be adam, lbfgs or lm, got {self.optimizer!r}", field="optimizer")
        if self.keypoints not in KEYPOINT_SETS:
            raise ConfigError(f"keypoints must be one of {', '.join(KEYPOINT_SETS)}, got {self.keypoints!r}",
                              field="keypoints")


@dataclass
class DemoReport:
    """What :func:`run` did.

    Attributes:
        out: the output folder.
        metrics: what ``metrics.json`` holds (NaN/inf as None there).
        rows: ``(label, mpjpe (B,), pa_mpjpe (B,), reprojection px (B,) or None, seconds or None,
            frames fitted)`` for the network estimate and each method, for a summary table.
        files: every file written.
        seconds: wall time, loading included.
    """

    out: Path
    metrics: dict[str, Any]
    rows: list[tuple[str, np.ndarray, np.ndarray, Optional[np.ndarray], Optional[float], int]]
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def _planned_files(out: Path, config: DemoConfig) -> list[Path]:
    files = [out / "meshes" / f"frame_{f:04d}.ply" for f in range(config.frames)]
    files += [out / "params" / f"{name}.npz" for name in (*METHODS, "ground_truth")]
    return files + [out / "rig.json", out / "metrics.json", out / CONFIG_FILE]


def _crop_fit_arrays(result: FitResult) -> dict[str, Any]:
    """A crop-camera fit as one row per (bundle, view), bundle-major, axis-angle."""
    r = result.numpy()
    v = result.num_views
    return {"global_orient": r["global_orient"].reshape(-1, 3), "body_pose": np.repeat(r["body_pose"], v, 0),
            "betas": np.repeat(r["betas"], v, 0), "transl": r["transl"].reshape(-1, 3)}


def _overlays(target: Callable[[str], Path], body: BodyModel, capture: Any, result: FitResult,
              frames: list[int]) -> None:
    """One PNG per camera, written to ``target("<camera>.png")``: the calibrated fit rendered
    over the input keypoints, a few frames."""
    import cv2

    from mvspin.io_outputs import write_image
    from mvspin.rendering import image_grid, render_mesh

    faces = body.faces
    kp_model = body.keypoints(capture.options.keypoint_set, result.body_pose[frames], result.betas[frames],
                              result.world_orient[frames], result.world_transl[frames]).cpu().numpy()
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
        write_image(target(f"{cam.name}.png"), cv2.cvtColor(grid, cv2.COLOR_BGR2RGB))


def run(config: Optional[DemoConfig] = None, progress: Progress = no_progress,
             body: Optional[BodyModel] = None) -> DemoReport:
    """Make the synthetic capture, fit it three ways, write the outputs and measure the errors.

    Args:
        config: the settings (default :class:`DemoConfig`), outputs in ``config.out`` (checked
            before anything is computed).
        progress: stages ``"fitting"`` (methods) and ``"meshes"`` (frames).
        body: a body model to use instead of loading ``config.body``.

    Raises:
        ConfigError: settings out of range. OSError: ``out`` cannot hold the outputs.
    """
    from mvspin.atomic import output_folder

    config = config if config is not None else DemoConfig()
    with output_folder(config.out, what="out"):
        return _run_demo(config, progress, body)


def _run_demo(config: DemoConfig, progress: Progress, body: Optional[BodyModel]) -> DemoReport:
    from mvspin.atomic import OutputGroup
    from mvspin.data.synthetic_keypoints import SyntheticOptions, make_capture, random_rig, smooth_motion
    from mvspin.fitting import MVSMPLify, MVSMPLifyConfig, SMPLify, SMPLifyConfig
    from mvspin.fitting.evaluation import fit_pose_errors, view_pose_errors
    from mvspin.geometry import SPIN_CROP_SIZE, SPIN_SCALE_UNIT, axis_angle_to_matrix
    from mvspin.io_outputs import check_output_folder, write_json, write_mesh, write_smpl_npz

    out = config.out
    device = resolve_device(config.device, what="device")
    check_output_folder(out, _planned_files(out, config), what="out")
    torch.set_num_threads(config.threads)
    t_start = time.perf_counter()
    body = (body if body is not None else config.body.load(device)).to(device)
    log.info("fitting and meshes use %s through the fast keypoint path (%d vertices only at the end)",
             body.name, body.num_vertices)

    gen = torch.Generator().manual_seed(config.seed)
    motion = smooth_motion(body, config.frames, gen)
    opts = SyntheticOptions(keypoint_set=config.keypoints, noise_px=config.noise, drop_rate=config.drop,
                            shared_rig=True)
    rig = random_rig(config.views, np.random.default_rng(config.seed), opts.image_size, opts.focal, opts.distance,
                     opts.height)
    capture = make_capture(body, motion, seed=config.seed + 1, options=opts, rigs=[rig])
    log.info("synthetic capture: %d frames x %d cameras (%dx%d px, focal %.0f px), %s keypoints, noise %.1f px, "
             "%.0f%% dropped", config.frames, config.views, *opts.image_size, opts.focal, config.keypoints,
             config.noise, 100 * config.drop)

    mv_cfg = MVSMPLifyConfig(optimizer=config.optimizer)
    cal_cfg = MVSMPLifyConfig(mode="calibrated", optimizer=config.optimizer)
    sv_cfg = SMPLifyConfig(optimizer=config.optimizer)
    to_dev = lambda x: x.to(device)  # noqa: E731
    est, gt = capture.estimate, capture.gt
    kp_set = config.keypoints
    steps = [
        ("calibrated", "MV-SMPLify calibrated",
         lambda: MVSMPLify(body, cal_cfg, kp_set).fit_calibrated(to_dev(capture.keypoints), capture.cameras,
                                                                 return_meshes=True)),
        ("per_view", "MV-SMPLify per-view",
         lambda: MVSMPLify(body, mv_cfg, kp_set).fit_per_view(
             to_dev(capture.crop_keypoints), type(est)(to_dev(est.rotmat), to_dev(est.betas), to_dev(est.cam)))),
        ("smplify", "SMPLify (each view alone)",
         lambda: SMPLify(body, sv_cfg, kp_set).fit(
             to_dev(capture.crop_keypoints.flatten(0, 1)), to_dev(est.rotmat.flatten(0, 1)),
             to_dev(est.betas.flatten(0, 1)), to_dev(est.cam.flatten(0, 1)))),
    ]
    gt_world = axis_angle_to_matrix(gt.global_orient)
    # Crop pixels -> image pixels, so every method's reprojection error is in the same unit.
    crop_to_image = (capture.crop_scale * SPIN_SCALE_UNIT / SPIN_CROP_SIZE).to(device)
    runs: dict[str, dict[str, Any]] = {}
    for step, (key, label, fit) in enumerate(steps):
        progress("fitting", step, len(steps))
        t0 = time.perf_counter()
        result = fit()
        elapsed = time.perf_counter() - t0
        m, pa = fit_pose_errors(body, result, gt.body_pose, gt.betas, gt_world, capture.crop_orient)
        if key == "calibrated":
            reproj = result.reprojection_error.cpu().numpy()
        else:
            err = result.view_reprojection_error.reshape(crop_to_image.shape) * crop_to_image
            reproj = err.mean(1).cpu().numpy()
        runs[key] = {"label": label, "result": result, "mpjpe": m.cpu().numpy(), "pa_mpjpe": pa.cpu().numpy(),
                     "reproj": reproj, "seconds": elapsed,
                     "fitted": int(result.fitted.reshape(config.frames, -1).all(1).sum())}
    progress("fitting", len(steps), len(steps))
    est_m, est_pa = (e.cpu().numpy() for e in view_pose_errors(
        body, est.rotmat[:, :, 1:], est.betas, est.rotmat[:, :, 0], gt.body_pose, gt.betas, capture.crop_orient))

    # --- outputs -------------------------------------------------------------------------------
    # One group: an interrupted or failed run leaves none of the files, not a part of them.
    files: list[Path] = []
    cal = runs["calibrated"]["result"]
    b, v = config.frames, config.views
    rows: list[tuple[str, np.ndarray, np.ndarray, Optional[np.ndarray], Optional[float], int]] = [
        ("network estimate (simulated)", est_m, est_pa, None, None, config.frames)]
    rows += [(r["label"], r["mpjpe"], r["pa_mpjpe"], r["reproj"], r["seconds"], r["fitted"]) for r in runs.values()]
    metrics = {
        "body_model": body.describe()["name"], "body_model_source": body.source, "frames": config.frames,
        "views": config.views, "keypoint_set": config.keypoints, "noise_px": config.noise,
        "drop_rate": config.drop, "device": str(device), "threads": config.threads,
        "methods": {
            key: {"label": r["label"], "mpjpe_mm": float(np.mean(r["mpjpe"])),
                  "pa_mpjpe_mm": float(np.mean(r["pa_mpjpe"])),
                  "reprojection_error_px": float(np.mean(r["reproj"])), "seconds": r["seconds"],
                  "ms_per_frame": 1000 * r["seconds"] / config.frames, "frames_fitted": r["fitted"],
                  "iterations": list(r["result"].iterations),
                  "per_frame": {"mpjpe_mm": r["mpjpe"].tolist(), "pa_mpjpe_mm": r["pa_mpjpe"].tolist(),
                                "reprojection_error_px": r["reproj"].tolist()}}
            for key, r in runs.items()
        },
        "network_estimate": {"mpjpe_mm": float(np.mean(est_m)), "pa_mpjpe_mm": float(np.mean(est_pa))},
        "config": {"demo": config_to_dict(config), "calibrated": config_to_dict(cal_cfg),
                   "per_view": config_to_dict(mv_cfg), "smplify": config_to_dict(sv_cfg)},
    }
    with OutputGroup() as group:
        def target(final: Path) -> Path:
            files.append(final)
            return group.path(final)

        for f in range(config.frames):
            write_mesh(target(out / "meshes" / f"frame_{f:04d}.ply"), cal.world_vertices[f].cpu().numpy(), body.faces)
            progress("meshes", f + 1, config.frames)
        # Per-frame betas (T, 10): every frame is fitted on its own (one subject: sequence fitting
        # with shared betas is the recordings' job).
        params = {k: v for k, v in cal.smpl_params().items() if k != "poses"}  # the writer adds poses
        write_smpl_npz(target(out / "params" / "calibrated.npz"), **params, model=body.name, fps=FPS,
                       extra={"reprojection_error": cal.reprojection_error.cpu().numpy(),
                              "view_reprojection_error": cal.view_reprojection_error.cpu().numpy(),
                              "fitted": cal.fitted.cpu().numpy()})
        rows_index = {"frame": np.repeat(np.arange(b), v), "view": np.tile(np.arange(v), b)}
        for key in ("per_view", "smplify"):
            r = runs[key]["result"]
            write_smpl_npz(
                target(out / "params" / f"{key}.npz"), **_crop_fit_arrays(r), model=body.name, fps=FPS,
                extra={**rows_index, "cam": r.cam.reshape(b * v, 3).detach().cpu().numpy(),
                       "view_reprojection_error": r.view_reprojection_error.reshape(b * v).detach().cpu().numpy(),
                       "fitted": r.fitted.reshape(b, -1).expand(b, v).reshape(b * v).cpu().numpy(),
                       "crop_center": capture.crop_center.reshape(b * v, 2).numpy(),
                       "crop_scale": capture.crop_scale.reshape(b * v).numpy()})
        write_smpl_npz(
            target(out / "params" / "ground_truth.npz"), **capture.gt.as_dict(), model=body.name, fps=FPS,
            extra={"keypoints": capture.keypoints.numpy(), "crop_keypoints": capture.crop_keypoints.numpy(),
                   "crop_center": capture.crop_center.numpy(), "crop_scale": capture.crop_scale.numpy(),
                   "keypoint_set": np.asarray(config.keypoints)})
        write_json(target(out / "rig.json"), {"cameras": [
            {"name": c.name, "size": list(c.image_size), "matrix": c.K.tolist(), "distortions": c.dist.tolist(),
             "rotation": c.R.tolist(), "translation": c.t.tolist()} for c in rig]})
        if config.render:
            _overlays(lambda name: target(out / "overlays" / name), body, capture, cal,
                      sorted({0, config.frames // 2, config.frames - 1}))
        write_json(target(out / "metrics.json"), metrics)
        save_config(config, target(out / CONFIG_FILE))
    return DemoReport(out, metrics, rows, files, time.perf_counter() - t_start)
