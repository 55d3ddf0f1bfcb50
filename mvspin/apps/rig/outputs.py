"""Files of a fitted rig recording: per subject an AMASS-keyed ``.npz``, an animated ``.glb`` and
optionally a ``.bvh``, a ``.trc`` and meshes; a report (``report.json``, ``report.png``) for the
whole recording.

Every file goes through :mod:`mvspin.atomic`; a subject's files (its meshes included) are
committed together, so an interrupted run leaves whole subjects or nothing of them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from mvspin.atomic import OutputGroup, write_bytes_atomic
from mvspin.body import SMPL_JOINT_NAMES, SMPL_PARENTS, BodyModel
from mvspin.fitting.recording import RecordingFit, recording_summary
from mvspin.io_outputs import (
    Z_UP_TO_Y_UP,
    pose2sim_marker_name,
    write_animated_gltf,
    write_bvh,
    write_mesh,
    write_smpl_npz,
    write_trc,
)
from mvspin.progress import Progress, no_progress

__all__ = ["write_recording_outputs", "write_report_plot", "summary_table", "write_overlay_videos", "match_videos"]


def _subject_files(fit: RecordingFit, body: BodyModel, index: int, out: Path, gender: str,
                   world_rotation: Optional[np.ndarray], meshes: bool, group: OutputGroup,
                   bvh: bool = False, trc: bool = False) -> list[Path]:
    """Write one subject's ``.npz``, ``.glb`` (and ``.bvh``, ``.trc``, meshes) through ``group``
    (together or not at all); returns the final paths."""
    sub = fit.subjects[index]
    r = sub.result
    params = {k: v.detach().cpu().numpy() for k, v in r.smpl_params().items()}
    stem = f"subject{sub.subject_id}"
    finals = [out / f"{stem}.npz", out / f"{stem}.glb"]
    write_smpl_npz(
        group.path(finals[0]), **params, model=body.name, fps=fit.fps, gender=gender,
        extra={"fitted": r.fitted.cpu().numpy(), "frames": np.asarray(fit.frames),
               "reprojection_error": r.reprojection_error.cpu().numpy(), "subject_id": np.array(sub.subject_id)})
    with torch.no_grad():
        betas = r.betas[None].to(body.J_template)
        rest = body(betas=betas)
        rest_joints = body.rest_joints(betas)[0].cpu().numpy()
        rotations = torch.cat([r.global_orient[:, None], r.body_pose], 1).cpu().numpy()
        root = (r.transl + body.rest_joints(betas)[:, 0]).cpu().numpy()
    write_animated_gltf(
        group.path(finals[1]), rest_vertices=rest.vertices[0].cpu().numpy(), faces=body.faces,
        skin_weights=body.smpl.lbs_weights.detach().cpu().numpy(), parents=SMPL_PARENTS, rest_joints=rest_joints,
        joint_rotations=rotations, root_translation=root, fps=fit.fps, joint_names=SMPL_JOINT_NAMES,
        world_rotation=world_rotation, extras={"model": body.name, "subject_id": sub.subject_id})
    written = list(finals)
    if bvh:
        written.append(out / f"{stem}.bvh")
        write_bvh(group.path(written[-1]), parents=SMPL_PARENTS, rest_joints=rest_joints, joint_rotations=rotations,
                  root_translation=root, fps=fit.fps, joint_names=SMPL_JOINT_NAMES, world_rotation=world_rotation)
    if trc:
        written.append(out / f"{stem}.trc")
        names, markers = _markers(fit, body, r)
        write_trc(group.path(written[-1]), markers, names, fit.fps, frame_numbers=np.asarray(fit.frames),
                  world_rotation=world_rotation, name=written[-1].name)
    if meshes:
        (out / "meshes").mkdir(exist_ok=True)
        with torch.no_grad():
            for t0 in range(0, r.num_frames, 64):
                sl = slice(t0, min(r.num_frames, t0 + 64))
                n = sl.stop - sl.start
                verts = body(body_pose=r.body_pose[sl], betas=betas.expand(n, -1), global_orient=r.global_orient[sl],
                             transl=r.transl[sl]).vertices.cpu().numpy()
                for i in range(n):
                    final = out / "meshes" / f"{stem}_{int(fit.frames[sl.start + i]):06d}.obj"
                    write_mesh(group.path(final), verts[i], body.faces)
                    written.append(final)
    return written


def _markers(fit: RecordingFit, body: BodyModel, r) -> tuple[list[str], np.ndarray]:
    """The fitted body's keypoints of the recording's set (Pose2Sim's names) and its 24 SMPL
    joints (``smpl_<joint>``) per frame, metres; NaN in frames not fitted."""
    from mvspin.body import get_keypoint_set

    n = r.num_frames
    with torch.no_grad():
        kp = body.keypoints(fit.keypoint_set, r.body_pose, r.betas.expand(n, -1), r.global_orient, r.transl)
        joints = body(body_pose=r.body_pose, betas=r.betas.expand(n, -1), global_orient=r.global_orient,
                      transl=r.transl).joints
    markers = torch.cat([kp, joints], 1).double().cpu().numpy()
    markers[~r.fitted.cpu().numpy()] = np.nan  # carried by smoothness only: not a measurement
    names = [pose2sim_marker_name(k) for k in get_keypoint_set(fit.keypoint_set).names]
    return names + [f"smpl_{j}" for j in SMPL_JOINT_NAMES], markers


def write_report_plot(summary: dict, path: Path) -> Path:
    """Per-frame mean reprojection error over time (one line per subject), failed frames marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5), dpi=100)
    frames = None
    for sub in summary["subjects"]:
        err = np.array([np.nan if e is None else e for e in sub["per_frame_px"]], dtype=float)
        frames = np.arange(len(err)) if frames is None else frames
        ax.plot(frames, err, lw=1, label=f"subject {sub['id']}")
        failed = [f["frame"] for f in sub["frames_failed"]]
        if failed:
            ax.plot(failed, np.zeros(len(failed)), "rx", ms=4, label=f"subject {sub['id']}: not fitted")
    ax.set_xlabel("frame")
    ax.set_ylabel("mean reprojection error (px)")
    ax.set_title("fit-rig: reprojection error per frame")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())


def summary_table(summary: dict) -> str:
    """The printed table: per subject and camera, mean reprojection error and frames seen."""
    lines = [f"initialisation: {summary.get('initialisation', 'triangulation')}"]
    lines += [f"warning: {w}" for w in summary.get("warnings", [])]
    for sub in summary["subjects"]:
        mean = sub["mean_reprojection_px"]
        lines.append(f"subject {sub['id']}: {sub['frames_fitted']}/{summary['frames']} frames fitted, "
                     f"mean reprojection {mean:.2f} px" if mean is not None else f"subject {sub['id']}: no fit")
        if sub.get("frames_with_network_estimate") is not None:
            lines.append(f"  network estimate in {sub['frames_with_network_estimate']} frames")
        lines.append(f"  {'camera':<16} {'mean px':>9} {'median px':>10} {'p95 px':>8} {'frames':>7}")
        for name, row in sub["per_camera"].items():
            px = ["-" if row.get(k) is None else f"{row[k]:.2f}" for k in ("mean_px", "median_px", "p95_px")]
            lines.append(f"  {name:<16} {px[0]:>9} {px[1]:>10} {px[2]:>8} {row['frames_seen']:>7}")
        for f in sub["frames_failed"][:10]:
            lines.append(f"  frame {f['frame']}: {f['reason']}")
        if len(sub["frames_failed"]) > 10:
            lines.append(f"  ... {len(sub['frames_failed']) - 10} more failed frames in report.json")
    return "\n".join(lines)


def write_recording_outputs(fit: RecordingFit, body: BodyModel, out: str | Path, *, gender: str = "neutral",
                            z_up: bool = True, meshes: bool = False, bvh: bool = False, trc: bool = False,
                            progress: Progress = no_progress, extra: Optional[dict] = None) -> list[Path]:
    """Write every subject's files and the report into ``out``; returns the paths written.

    Args:
        z_up: the rig's world is Z-up: the ``.glb``'s root keys turn it into glTF's Y-up
            (Blender turns it back), so the body stands upright in every viewer.
        meshes: also one ``.obj`` per subject and frame under ``meshes/``.
        bvh: also ``subject<id>.bvh``: the skeleton's motion (Y-up, centimetres).
        trc: also ``subject<id>.trc``: the fitted keypoints and SMPL joints as OpenSim markers
            (Y-up, millimetres; empty in frames not fitted).
        progress: stage ``"write"``, subjects written.
        extra: more entries for report.json (e.g. the keypoint files skipped).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world = Z_UP_TO_Y_UP if z_up else None
    written: list[Path] = []
    for i in range(len(fit.subjects)):
        with OutputGroup() as group:
            files = _subject_files(fit, body, i, out, gender, world, meshes, group, bvh=bvh, trc=trc)
        written.extend(files)
        if meshes:  # an earlier run's meshes of this subject (other frames) must not mix with this run's
            keep = set(files)
            for old in (out / "meshes").glob(f"subject{fit.subjects[i].subject_id}_*.obj"):
                if old not in keep:
                    old.unlink()
        progress("write", i + 1, len(fit.subjects))
    summary = {**recording_summary(fit), **(extra or {})}
    written.append(write_bytes_atomic(out / "report.json", json.dumps(summary, indent=1).encode()))
    written.append(write_report_plot(summary, out / "report.png"))
    return written


_SUBJECT_COLOURS = ((255, 80, 60), (60, 200, 255), (120, 255, 80), (255, 200, 40))


def match_videos(videos: list[Path], camera_names: list[str]) -> list[Path]:
    """Videos in the rig's camera order: by file stem when every camera has one, else in the
    given order when the counts agree (ValueError otherwise)."""
    by_stem = {Path(v).stem: Path(v) for v in videos}
    if set(camera_names) <= set(by_stem):
        return [by_stem[n] for n in camera_names]
    if len(videos) != len(camera_names):
        raise ValueError(f"{len(videos)} videos for a rig of {len(camera_names)} cameras ({', '.join(camera_names)})")
    return [Path(v) for v in videos]


def write_overlay_videos(fit: RecordingFit, body: BodyModel, rig, videos: list[Path], out: str | Path,
                         progress: Progress = no_progress) -> list[Path]:
    """Per camera, the video with each subject's fitted skeleton (SMPL's 24 joints projected,
    one colour per subject) and the detections used (white dots): ``overlay_<camera>.mp4``
    (H.264 with ``mvspin[video]``, see :class:`~mvspin.io_outputs.VideoWriter`).

    A video's frame ``n`` shows keypoint frame number ``n`` (frames without a fit are copied as
    they are); a folder of images gives one overlay frame per keypoint frame, from the image
    whose file name carries its number. ``progress``: stage ``"overlays"``, cameras done.
    """
    import cv2

    from mvspin.apps.rig.network_start import camera_frames
    from mvspin.data.video import VideoFrames
    from mvspin.geometry import perspective_projection
    from mvspin.io_outputs import VideoWriter

    out = Path(out)
    videos = match_videos(list(videos), fit.camera_names)
    cams = rig.to_torch(body.J_template.dtype, body.J_template.device)
    joints2d, used2d = [], []
    with torch.no_grad():
        for sub in fit.subjects:
            r = sub.result
            j = body.keypoints("smpl24", r.body_pose, r.betas.expand(r.num_frames, -1), r.global_orient, r.transl)
            joints2d.append(perspective_projection(j[:, None], cams.K, cams.R, cams.t, cams.dist).cpu().numpy())
            used2d.append(sub.keypoints.cpu().numpy())
    index = {int(f): i for i, f in enumerate(fit.frames)}
    written = []
    for v, (name, path) in enumerate(zip(fit.camera_names, videos)):
        with VideoWriter(out / f"overlay_{name}.mp4", fit.fps) as writer:
            numbered = camera_frames(path, fit.frames) if Path(path).is_dir() else enumerate(VideoFrames(path))
            for n, frame in numbered:
                i = index.get(int(n))
                if i is not None:
                    frame = frame.copy()
                    for s, sub in enumerate(fit.subjects):
                        if not bool(sub.result.fitted[i]):
                            continue
                        colour = _SUBJECT_COLOURS[s % len(_SUBJECT_COLOURS)]
                        pts = joints2d[s][i, v]
                        for child, parent in enumerate(SMPL_PARENTS):
                            if parent >= 0 and np.isfinite(pts[[child, parent]]).all():
                                cv2.line(frame, tuple(int(round(c)) for c in pts[child]),
                                         tuple(int(round(c)) for c in pts[parent]), colour, 3, cv2.LINE_AA)
                        for x, y, conf in used2d[s][i, v]:
                            if conf > 0:
                                cv2.circle(frame, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
                writer.write(frame)
        written.append(writer.path)
        progress("overlays", v + 1, len(videos))
    return written
