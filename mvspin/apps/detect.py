"""The ``detect`` job: videos (or folders of images), one per camera -> 2D keypoints per frame.

Writes one folder per camera of OpenPose-layout JSON files (``OUT/<camera>/<camera>_000000000012_keypoints.json``:
``people[].pose_keypoints_2d`` plus ``person_id`` and the ``keypoint_set``), which ``mvspin fit-rig``,
Pose2Sim and other OpenPose readers read, and ``OUT/detect.json`` (this report, the settings and
the inputs' sizes and times, so a rerun with ``reuse`` keeps what is already done).

Each camera's folder appears whole or not at all (:func:`mvspin.atomic.atomic_folder`); a camera
that fails (an unreadable or damaged video, a folder with no images) is reported and the other
cameras finish.

Example:
    >>> from mvspin.apps.detect import DetectConfig, run
    >>> report = run(DetectConfig(inputs=["cam1.mp4", "cam2.mp4"], out="kp"))  # doctest: +SKIP
    >>> [(c.name, round(c.fps)) for c in report.cameras]  # doctest: +SKIP
    [('cam1', 41), ('cam2', 40)]
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from mvspin.atomic import atomic_folder, output_folder, write_bytes_atomic
from mvspin.config import ConfigError, check_range
from mvspin.data.keypoint_files import openpose_frame_json
from mvspin.data.video import ImageFolderFrames, VideoFrames, open_frames
from mvspin.detection.blazepose import BlazePoseOptions
from mvspin.detection.runner import BACKENDS, DetectorSettings, detect_sequence, load_detector
from mvspin.errors import MvspinError
from mvspin.progress import Progress, no_progress

__all__ = ["DetectConfig", "DetectReport", "CameraDetection", "run", "REPORT_NAME", "camera_names_of"]

REPORT_NAME = "detect.json"
"""The report file in the output folder (written last: its presence means the run finished)."""


@dataclass
class DetectConfig:
    """Settings of ``mvspin detect``."""

    inputs: list[str] = field(default_factory=list)
    """Videos or folders of images, one per camera (synchronised: frame i of each is one moment)."""
    out: str = ""
    """Output folder: one folder of OpenPose-layout JSON per camera, and detect.json."""
    detector: str = field(default="blazepose", metadata={"choices": BACKENDS})
    """Detector backend: blazepose (built in; its files come from `mvspin detect install-model`) or onnx (an RTMPose ONNX file given as model)."""
    model: Optional[str] = None
    """RTMPose ONNX model file (SimCC head, COCO-17 or HALPE-26) for detector onnx."""
    model_dir: Optional[str] = None
    """Folder holding the BlazePose files (default: the model cache $MVSPIN_HOME/blazepose)."""
    camera_names: Optional[list[str]] = None
    """Camera names, one per input, in the same order (default: the file or folder names)."""
    threads: int = 1
    """CPU threads of each model."""
    max_frames: Optional[int] = None
    """Detect at most this many frames per camera (default: all)."""
    max_people: int = 4
    """Track at most this many people per camera."""
    detect_every: int = 30
    """Run the person detector every this many frames while all tracks hold, to find people who came in (0: only when a track is lost)."""
    min_detection_score: float = 0.5
    """Person detector candidates below this probability are dropped (MediaPipe's 0.5)."""
    min_presence: float = 0.5
    """A tracked person whose landmark model presence falls below this is lost and detected again (MediaPipe's 0.5)."""
    reuse: bool = False
    """Keep the cameras of an earlier run into the same folder with the same inputs and settings (detect.json says which)."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("inputs: give at least one video or image folder", field="inputs")
        if not str(self.out):
            raise ConfigError("out: give an output folder", field="out")
        if self.detector not in BACKENDS:
            raise ConfigError(f"detector must be one of {', '.join(BACKENDS)}, got {self.detector!r}",
                              field="detector")
        if self.detector == "onnx" and not self.model:
            raise ConfigError("detector onnx needs model (an RTMPose ONNX file)", field="model")
        if self.camera_names is not None:
            if len(self.camera_names) != len(self.inputs):
                raise ConfigError(f"camera_names has {len(self.camera_names)} names for {len(self.inputs)} inputs",
                                  field="camera_names")
        names = camera_names_of(self.inputs, self.camera_names)
        if len(set(names)) != len(names):
            raise ConfigError(f"two inputs have the same camera name ({', '.join(names)}): give camera_names",
                              field="camera_names")
        check_range("threads", self.threads, 1, 256, integer=True)
        check_range("max_frames", self.max_frames, 1, None, integer=True)
        check_range("max_people", self.max_people, 1, 100, integer=True)
        check_range("detect_every", self.detect_every, 0, None, integer=True)
        check_range("min_detection_score", self.min_detection_score, 0, 1)
        check_range("min_presence", self.min_presence, 0, 1)

    def settings(self) -> DetectorSettings:
        """The detector these settings build."""
        return DetectorSettings(
            backend=self.detector, model=self.model, model_dir=self.model_dir, threads=self.threads,
            blazepose=BlazePoseOptions(min_detection_score=self.min_detection_score, min_presence=self.min_presence,
                                       detect_every=self.detect_every, max_people=self.max_people))


def camera_names_of(inputs: list[str], names: Optional[list[str]] = None) -> list[str]:
    """Camera names: ``names`` when given, else each input's file stem or folder name."""
    if names is not None:
        return [str(n) for n in names]
    return [Path(p).stem if Path(p).suffix and not Path(p).is_dir() else Path(p).name for p in inputs]


@dataclass
class CameraDetection:
    """One camera's result.

    Attributes:
        name: camera name (its folder in the output).
        source: the video or image folder.
        folder: the camera's output folder (None when it failed).
        frames: frames detected.
        frames_with_people: frames where at least one person was found.
        people: distinct person ids seen.
        seconds: wall time of decoding + detection.
        fps: frames per second (decoding + detection).
        error: why the camera failed (one line), or None.
        reused: the folder was kept from an earlier run.
        image_size: ``(width, height)`` of the frames, pixels (None when nothing was read).
    """

    name: str
    source: str
    folder: Optional[str] = None
    frames: int = 0
    frames_with_people: int = 0
    people: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    error: Optional[str] = None
    reused: bool = False
    image_size: Optional[tuple[int, int]] = None


@dataclass
class DetectReport:
    """What ``detect`` did.

    Attributes:
        out: the output folder.
        detector: backend name; keypoint_set: the keypoints' set name.
        cameras: one entry per input, in input order.
        warnings: one line each (e.g. cameras with different frame counts).
        report_file: ``OUT/detect.json``.
    """

    out: str
    detector: str
    keypoint_set: str
    cameras: list[CameraDetection]
    warnings: list[str] = field(default_factory=list)
    report_file: Optional[str] = None

    @property
    def failed(self) -> list[CameraDetection]:
        """The cameras that failed."""
        return [c for c in self.cameras if c.error is not None]


def _signature(path: str) -> dict:
    p = Path(path)
    try:
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file())
            return {"path": str(p.resolve()), "files": len(files),
                    "bytes": sum(f.stat().st_size for f in files),
                    "mtime_ns": max((f.stat().st_mtime_ns for f in files), default=0)}
        st = p.stat()
        return {"path": str(p.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"path": str(p)}


def _settings_record(config: DetectConfig) -> dict:
    keep = ("detector", "model", "threads", "max_frames", "max_people", "detect_every", "min_detection_score",
            "min_presence")
    record = {k: getattr(config, k) for k in keep}
    record["threads"] = None  # results do not depend on it enough to redo the work
    return record


def _reusable(out: Path, config: DetectConfig, names: list[str]) -> dict[str, dict]:
    """Cameras of an earlier run that can be kept: same settings, same input, folder present."""
    path = out / REPORT_NAME
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(old, dict) or old.get("settings") != _settings_record(config):
        return {}
    keep = {}
    for cam in old.get("cameras", []):
        if not isinstance(cam, dict) or cam.get("error") is not None:
            continue
        name = cam.get("name")
        if name in names:
            source = config.inputs[names.index(name)]
            if cam.get("input") == _signature(source) and (out / name).is_dir():
                keep[name] = cam
    return keep


def run(config: DetectConfig, progress: Progress = no_progress) -> DetectReport:
    """Detect every person in every frame of every input; write one folder per camera.

    Raises:
        OutputLocationError: ``out`` cannot be written (checked first).
        ModelFilesError: the detector's model files are missing (names the install command).
        DetectionError: the model file is not the expected kind of model.
        A camera that cannot be read or decoded does not raise: it is reported
        (:attr:`DetectReport.failed`) and the other cameras finish.
    """
    with output_folder(config.out, what="out") as out:  # removed again if refused before writing anything
        return _run(config, out, progress)


def _run(config: DetectConfig, out: Path, progress: Progress) -> DetectReport:
    names = camera_names_of(config.inputs, config.camera_names)
    detector = load_detector(config.settings())
    previous = _reusable(out, config, names) if config.reuse else {}
    cameras: list[CameraDetection] = []
    opened: list[Optional[VideoFrames | ImageFolderFrames]] = []
    for name, source in zip(names, config.inputs):  # open every input before the work starts
        if name in previous:
            old = previous[name]
            fields = {k: old[k] for k in ("frames", "frames_with_people", "people", "seconds", "fps") if k in old}
            if isinstance(old.get("image_size"), list) and len(old["image_size"]) == 2:
                fields["image_size"] = tuple(int(v) for v in old["image_size"])
            cameras.append(CameraDetection(name, str(source), str(out / name), reused=True, **fields))
            opened.append(None)
            continue
        cam = CameraDetection(name, str(source))
        cameras.append(cam)
        try:
            opened.append(open_frames(source))
        except (MvspinError, OSError) as err:
            cam.error = str(err)
            opened.append(None)
    for cam, frames in zip(cameras, opened):
        if frames is None:
            continue
        total = frames.reported_frames
        if config.max_frames is not None:
            total = min(total, config.max_frames) if total else config.max_frames
        stage = f"detect {cam.name}"
        progress(stage, 0, total)
        start = time.perf_counter()
        try:
            with atomic_folder(out / cam.name) as tmp:
                sizes: set[tuple[int, int]] = set()

                def sized(source):
                    for image in source:
                        sizes.add((int(image.shape[1]), int(image.shape[0])))
                        yield image

                people = detect_sequence(sized(frames), detector, config.max_frames,
                                         progress=lambda done: progress(stage, done, max(total, done)))
                if len(sizes) > 1:
                    raise MvspinError(f"{cam.source}: frames of different sizes {sorted(sizes)}")
                if not people:
                    raise MvspinError(f"{cam.source}: no frame to detect")
                for index, frame_people in enumerate(people):
                    data = openpose_frame_json(frame_people, detector.keypoint_set)
                    (tmp / f"{cam.name}_{index:012d}_keypoints.json").write_text(
                        json.dumps(data, separators=(",", ":")), encoding="utf-8")
        except (MvspinError, OSError) as err:
            cam.error = str(err)
            continue
        finally:
            frames.close()
        cam.seconds = time.perf_counter() - start
        cam.frames = len(people)
        cam.fps = cam.frames / max(cam.seconds, 1e-9)
        cam.frames_with_people = sum(1 for p in people if p)
        cam.people = len({pid for p in people for pid, _ in p})
        cam.folder = str(out / cam.name)
        cam.image_size = sizes.pop() if sizes else None
    report = DetectReport(str(out), detector.name, detector.keypoint_set, cameras)
    counts = {c.name: c.frames for c in cameras if c.error is None}
    if len(set(counts.values())) > 1:
        most = max(counts.values())
        short = ", ".join(f"{n} ({k})" for n, k in counts.items() if k < most)
        report.warnings.append(f"cameras with fewer frames than the others ({most}): {short}")
    for c in cameras:
        if c.error is None and c.frames_with_people == 0:
            report.warnings.append(f"{c.name}: nobody detected in any frame")
    record = {"settings": _settings_record(config), **asdict(report),
              "cameras": [{**asdict(c), "input": _signature(c.source)} for c in cameras]}
    report.report_file = str(out / REPORT_NAME)
    record["report_file"] = report.report_file
    write_bytes_atomic(out / REPORT_NAME, json.dumps(record, indent=1).encode("utf-8"))
    return report
