"""``view``: look at a fitted rig recording in the browser (viser, offline: its web client ships in
the wheel; the optional extra ``mvspin[view]``).

The scene (:func:`build_view_scene`, plain arrays, no viser) holds everything shown: per subject
the fitted body per frame (posed from its ``.npz``), the rig's cameras, each camera's detections
and the fit's projections of the body's keypoints per frame, and the report's per-frame error.
:func:`run` serves it on ``127.0.0.1``: the bodies in the rig's world, the cameras as named
frusta whose image shows the current frame's detections (white) and projections (subject colour),
a timeline (slider, play/pause, step, jump to the worst frames) with the per-frame error plot.

Example:
    >>> from mvspin.apps.view import ViewConfig, build_view_scene
    >>> scene = build_view_scene(ViewConfig(fit="fit/"))  # doctest: +SKIP
    >>> scene.worst_frames[:3]  # doctest: +SKIP
    [118, 117, 40]
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mvspin.config import ConfigError, check_range
from mvspin.progress import Progress, no_progress

__all__ = ["ViewConfig", "ViewScene", "SubjectView", "Viewer", "build_view_scene", "frame_image", "run"]

log = logging.getLogger("mvspin")

SUBJECT_COLOURS = ((255, 80, 60), (60, 200, 255), (120, 255, 80), (255, 200, 40))
"""RGB per subject (the overlay videos' colours)."""


@dataclass(kw_only=True)
class ViewConfig:
    """Every setting of ``mvspin view``."""

    fit: Path
    """Output folder of fit-rig (subject<id>.npz, report.json, config.yaml)."""
    rig: Optional[Path] = None
    """Calibration file (default: the one the fit's config.yaml names)."""
    keypoints: Optional[Path] = None
    """Keypoint folder (default: the one the fit's config.yaml names, else the fit's keypoints/;
    none: no detections shown)."""
    videos: Optional[list[Path]] = None
    """One video or image folder per camera, in the rig's order or named after the cameras:
    each camera's picture shows its frame (default: the fit's config.yaml's videos)."""
    picture_width: int = 480
    """Width in pixels of each camera's picture in the viewer."""
    host: str = "127.0.0.1"
    """Address to serve on (127.0.0.1: this machine only)."""
    port: int = 8080
    """Port to serve on."""
    save: Optional[Path] = None
    """Write the whole recording as a static .viser file to share, and exit (no server)."""
    duration_s: Optional[float] = None
    """Stop serving after this many seconds (default: until interrupted)."""

    def __post_init__(self) -> None:
        self.fit = Path(self.fit)
        for name in ("rig", "keypoints", "save"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)))
        self.videos = None if self.videos is None else [Path(v) for v in self.videos]
        check_range("picture_width", self.picture_width, 16, 4096, integer=True)
        check_range("port", self.port, 0, 65535, integer=True)
        if self.save is not None and self.save.suffix != ".viser":
            raise ConfigError(f"save must end in .viser, got {self.save}", field="save")


@dataclass
class SubjectView:
    """One subject: ``vertices (T, N, 3)`` world metres (posed from its ``.npz``), ``fitted (T,)``,
    ``error_px (T,)`` (NaN where not fitted), ``projections (V, T, K, 2)`` pixels of the body's
    keypoints in each camera."""

    subject_id: int
    vertices: np.ndarray
    fitted: np.ndarray
    error_px: np.ndarray
    projections: Optional[np.ndarray]


@dataclass
class ViewScene:
    """What the viewer shows (see the module docstring); frames are indexed 0..T-1, ``frames``
    gives their numbers in the recording."""

    faces: np.ndarray
    subjects: list[SubjectView]
    frames: np.ndarray
    fps: float
    camera_names: list[str] = field(default_factory=list)
    cameras: list[Any] = field(default_factory=list)
    """calibration.Camera per camera (K, R, t, image_size)."""
    detections: Optional[np.ndarray] = None
    """``(T, V, P, K, 3)`` pixels and confidence, or None without keypoints."""
    videos: Optional[list[Path]] = None
    """Per camera its video or image folder (pictures behind the keypoints), or None."""
    picture_width: int = 480

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def worst_frames(self) -> list[int]:
        """Frame indices by decreasing mean error over the subjects (frames with an error only)."""
        err = np.nanmean(np.stack([s.error_px for s in self.subjects]), axis=0) if self.subjects else np.zeros(0)
        return [int(i) for i in np.argsort(-np.nan_to_num(err, nan=-1.0)) if np.isfinite(err[i])]


def build_view_scene(config: ViewConfig, progress: Progress = no_progress) -> ViewScene:
    """Read a fit-rig folder into a :class:`ViewScene` (bodies posed, keypoints projected).

    Raises:
        FileNotFoundError: the folder holds no fit (one line). Errors of the rig and keypoint
            readers name their files.
    """
    import torch
    import yaml

    from mvspin.body.config import BodyModelConfig
    from mvspin.io_outputs import read_smpl_npz

    folder = config.fit
    npz_files = sorted(folder.glob("subject*.npz"), key=lambda p: int("".join(c for c in p.stem if c.isdigit()) or 0))
    if not folder.is_dir() or not npz_files:
        raise FileNotFoundError(f"{folder}: no fitted recording here (no subject<id>.npz from fit-rig)")
    saved = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else {}
    body = BodyModelConfig(**{k: v for k, v in (saved.get("body") or {}).items()
                              if k in ("smpl_dir", "gender", "resolution")}).load("cpu")
    report = json.loads((folder / "report.json").read_text()) if (folder / "report.json").is_file() else {}
    errors = {s["id"]: s.get("per_frame_px") for s in report.get("subjects", [])}
    rig_path = config.rig or (Path(saved["rig"]) if saved.get("rig") else None)
    rig, detections, keypoint_set, kp_frames = None, None, saved.get("keypoint_set"), None
    if rig_path is not None and rig_path.exists():
        from calibration import load_rig

        rig = load_rig(rig_path)
        kp_path = config.keypoints or (Path(saved["keypoints"]) if saved.get("keypoints") else folder / "keypoints")
        if kp_path is not None and kp_path.exists():
            from mvspin.data.recording_keypoints import read_recording_keypoints

            rec = read_recording_keypoints(kp_path, rig.names, keypoint_set, bool(saved.get("allow_missing_frames")))
            detections, keypoint_set, kp_frames = np.asarray(rec.keypoints), rec.keypoint_set, rec.frames
    else:
        log.info("no calibration (%s): cameras not shown", rig_path)
    subjects, frames, fps = [], np.zeros(0, int), 30.0
    for i, path in enumerate(npz_files):
        p = read_smpl_npz(path)
        t = len(p["transl"])
        frames = np.asarray(p["frames"]) if "frames" in p else np.arange(t)
        fps = float(p["fps"]) or fps
        betas = torch.as_tensor(p["betas"], dtype=torch.float32).reshape(-1, p["betas"].shape[-1]).expand(t, -1)
        pose, orient, transl = (torch.as_tensor(p[k], dtype=torch.float32) for k in ("body_pose", "global_orient", "transl"))
        with torch.no_grad():
            verts = body(body_pose=pose, betas=betas, global_orient=orient, transl=transl).vertices.numpy()
            projections = None
            if rig is not None:
                kp = body.keypoints(keypoint_set or "smpl24", pose, betas, orient, transl).double().numpy()
                projections = np.stack([cam.project(kp.reshape(-1, 3)).reshape(t, -1, 2) for cam in rig])
        sid = int(p["subject_id"]) if "subject_id" in p else i
        fitted = np.asarray(p["fitted"], bool) if "fitted" in p else np.ones(t, bool)
        per_frame = errors.get(sid)
        err = (np.array([np.nan if e is None else e for e in per_frame], float) if per_frame is not None and len(per_frame) == t
               else np.where(fitted, np.asarray(p.get("reprojection_error", np.full(t, np.nan)), float), np.nan))
        subjects.append(SubjectView(sid, verts.astype(np.float32), fitted, err, projections))
        progress("subjects", i + 1, len(npz_files))
    scene = ViewScene(faces=body.faces, subjects=subjects, frames=frames, fps=fps)
    if rig is not None:
        scene.camera_names, scene.cameras = list(rig.names), list(rig)
        videos = config.videos or [Path(v) for v in saved.get("videos") or []]
        if videos and all(v.exists() for v in videos):
            from mvspin.apps.rig.outputs import match_videos

            scene.videos = match_videos(videos, list(rig.names))
    scene.picture_width = config.picture_width
    if detections is not None and kp_frames is not None:
        index = {int(f): i for i, f in enumerate(kp_frames)}
        rows = [index.get(int(f)) for f in frames]
        if all(r is not None for r in rows):
            scene.detections = detections[rows]
    return scene


def _picture(source: Path, number: int) -> Optional[np.ndarray]:
    """Frame ``number`` of a video or image folder as RGB, or None where it has none."""
    from mvspin.apps.rig.network_start import camera_frames
    from mvspin.errors import VideoError

    if source.is_dir():
        try:
            return next(iter(camera_frames(source, [number])))[1]
        except (VideoError, StopIteration):
            return None
    import cv2

    video = cv2.VideoCapture(str(source))
    try:
        video.set(cv2.CAP_PROP_POS_FRAMES, number)
        ok, bgr = video.read()
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None
    finally:
        video.release()


def frame_image(scene: ViewScene, camera: int, frame: int, width: Optional[int] = None) -> np.ndarray:
    """The camera's view of one frame as an RGB image ``(h, width, 3)``: its video frame (else
    black), detections as white dots, the fit's projected keypoints as dots in the subject's
    colour. ``width`` defaults to the scene's ``picture_width``."""
    import cv2

    width = width or scene.picture_width
    w, h = scene.cameras[camera].image_size
    s = width / float(w)
    image = np.zeros((max(1, int(round(h * s))), width, 3), np.uint8)
    if scene.videos is not None:
        picture = _picture(scene.videos[camera], int(scene.frames[frame]))
        if picture is not None:  # pixels from the top-left corner, as the keypoints
            scaled = cv2.resize(picture, (max(1, int(round(picture.shape[1] * s))), max(1, int(round(picture.shape[0] * s)))),
                                interpolation=cv2.INTER_AREA)
            hh, ww = min(image.shape[0], scaled.shape[0]), min(image.shape[1], scaled.shape[1])
            image[:hh, :ww] = scaled[:hh, :ww]
    if scene.detections is not None:
        for person in scene.detections[frame, camera]:
            for x, y, c in person:
                if c > 0:
                    cv2.circle(image, (int(round(x * s)), int(round(y * s))), 3, (255, 255, 255), -1)
    for k, sub in enumerate(scene.subjects):
        if sub.projections is None or not sub.fitted[frame]:
            continue
        for x, y in sub.projections[camera, frame]:
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(image, (int(round(x * s)), int(round(y * s))), 2, SUBJECT_COLOURS[k % 4], -1)
    return image


def _rotation_wxyz(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


class Viewer:
    """A viser server showing a :class:`ViewScene` (see the module docstring); :func:`run` makes
    one. ``frame`` (settable) is the frame index shown; :meth:`look_through` puts every connected
    browser's view at a rig camera."""

    def __init__(self, scene: ViewScene, host: str = "127.0.0.1", port: int = 8080) -> None:
        from mvspin.errors import import_optional

        viser = import_optional("viser", extra="view", purpose="the 3D viewer")
        self.scene = scene
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        server = self.server
        server.scene.set_up_direction("+z")
        self.meshes = [server.scene.add_mesh_simple(f"/subject{s.subject_id}", s.vertices[0], scene.faces,
                                                    color=SUBJECT_COLOURS[k % 4]) for k, s in enumerate(scene.subjects)]
        self.frusta = []
        for v, (name, cam) in enumerate(zip(scene.camera_names, scene.cameras)):
            w, h = cam.image_size
            # camera-to-world in OpenCV axes (x right, y down, z forward), as viser's frusta
            self.frusta.append(server.scene.add_camera_frustum(
                f"/cameras/{name}", fov=float(2 * np.arctan2(h / 2, cam.K[1, 1])), aspect=w / h, scale=0.25,
                wxyz=_rotation_wxyz(cam.R.T), position=-cam.R.T @ cam.t, image=frame_image(scene, v, 0)))
            server.scene.add_label(f"/cameras/{name}/label", name)
        self.slider = server.gui.add_slider("frame", min=0, max=max(scene.num_frames - 1, 1), step=1, initial_value=0)
        self.playing = server.gui.add_checkbox("play", initial_value=False)
        step = server.gui.add_button_group("step", ("< prev", "next >"))
        worst = scene.worst_frames[:5]
        labels = [str(scene.frames[i]) for i in worst]
        jump = server.gui.add_dropdown("worst frames", labels or ["-"])
        self.error = server.gui.add_markdown("")
        self.slider.on_update(lambda _: self._show(int(self.slider.value)))
        step.on_click(lambda e: setattr(self, "frame", self.frame + (1 if "next" in e.target.value else -1)))
        jump.on_update(lambda _: setattr(self, "frame", worst[labels.index(jump.value)]) if jump.value in labels else None)
        self._show(0)

    @property
    def frame(self) -> int:
        return int(self.slider.value)

    @frame.setter
    def frame(self, index: int) -> None:
        self.slider.value = int(np.clip(index, 0, self.scene.num_frames - 1))  # shows it (on_update)

    def _show(self, i: int) -> None:
        scene = self.scene
        with self.server.atomic():
            for mesh, sub in zip(self.meshes, scene.subjects):
                mesh.vertices = sub.vertices[i]
            for v, frustum in enumerate(self.frusta):
                frustum.image = frame_image(scene, v, i)
        errs = ", ".join(f"subject {s.subject_id}: {s.error_px[i]:.1f} px" if np.isfinite(s.error_px[i])
                         else f"subject {s.subject_id}: not fitted" for s in scene.subjects)
        self.error.content = f"frame {scene.frames[i]}: {errs}"

    def look_through(self, camera: int) -> None:
        """Every connected browser views the scene from rig camera ``camera`` (its pose and
        vertical field of view; the principal point is taken at the image centre, and the view
        matches the camera's picture where the browser's window has the camera's aspect); that
        camera's frustum is hidden (its picture would fill the view)."""
        cam = self.scene.cameras[camera]
        for v, frustum in enumerate(self.frusta):
            frustum.visible = v != camera
        for client in self.server.get_clients().values():
            with client.atomic():
                client.camera.fov = float(2 * np.arctan2(cam.image_size[1] / 2, cam.K[1, 1]))
                client.camera.wxyz = _rotation_wxyz(cam.R.T)
                client.camera.position = -cam.R.T @ cam.t

    def stop(self) -> None:
        self.server.stop()


def run(config: ViewConfig, progress: Progress = no_progress) -> Path | None:
    """Serve the viewer (until interrupted, or ``duration_s``), or write ``save`` and return it.

    Raises:
        MissingExtraError: viser is not installed (``pip install 'mvspin[view]'``).
        FileNotFoundError: the folder holds no fit.
    """
    from mvspin.errors import import_optional

    import_optional("viser", extra="view", purpose="the 3D viewer")
    if config.save is not None:
        from mvspin.atomic import check_output_location

        check_output_location(config.save, kind="file", what="save")
    scene = build_view_scene(config, progress)
    viewer = Viewer(scene, config.host, config.port)
    if config.save is not None:
        serializer = viewer.server.get_scene_serializer()
        for i in range(scene.num_frames):
            viewer.frame = i
            serializer.insert_sleep(1.0 / scene.fps)
        from mvspin.atomic import write_bytes_atomic

        write_bytes_atomic(config.save, serializer.serialize())
        viewer.stop()
        return config.save
    log.info("viewer on http://%s:%d (Ctrl-C to stop)", config.host, viewer.server.get_port())
    start = time.monotonic()
    try:
        while config.duration_s is None or time.monotonic() - start < config.duration_s:
            if viewer.playing.value and scene.num_frames > 1:
                viewer.frame = (viewer.frame + 1) % scene.num_frames
            time.sleep(1.0 / scene.fps)
    finally:
        viewer.stop()
    return None
