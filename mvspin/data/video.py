"""Frame extraction from dataset videos (OpenCV) and image encoding for bundle files.

Dataset videos (Human3.6M ``.mp4``, MPI-INF-3DHP ``.avi``) are read sequentially: seeking in
compressed streams is not frame-exact with every backend, so frames are decoded in order and
only the requested ones are kept.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Generator, Iterable, Iterator, Optional

import cv2
import numpy as np

from mvspin.errors import VideoError

__all__ = ["VideoError", "VideoInfo", "VideoFrames", "ImageFolderFrames", "open_frames", "video_info",
           "iter_video_frames", "encode_image", "image_size_of_file", "FALLBACK_FPS", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
"""File suffixes (lower case) read as images when a folder of inputs is listed."""
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
"""File suffixes (lower case) read as videos."""

FALLBACK_FPS = 30.0
"""Frame rate assumed when a container does not report one."""
# Frames a container's count may be off by (some muxers count one frame more or less) before a
# shorter stream is called truncated.
FRAME_COUNT_TOLERANCE = 1


@dataclass(frozen=True)
class VideoInfo:
    """Properties a container reports.

    Attributes:
        width, height: frame size in pixels.
        frame_count: frames the container claims (may be approximate for some codecs).
        fps: frames per second the container claims.
    """

    width: int
    height: int
    frame_count: int
    fps: float


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    from mvspin.rendering import quiet_native_output

    # FFmpeg's own lines for a damaged file ("moov atom not found") would sit beside ours.
    with quiet_native_output():
        cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: cannot open video (unsupported or corrupt file)")
    return cap


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Width, height, reported frame count and fps of a video.

    Raises:
        VideoError: the file is missing or cannot be opened.
    """
    path = Path(path)
    cap = _open(path)
    try:
        return VideoInfo(
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            frame_count=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            fps=float(cap.get(cv2.CAP_PROP_FPS)),
        )
    finally:
        cap.release()


def iter_video_frames(path: str | os.PathLike,
                      indices: Iterable[int]) -> Generator[tuple[int, Optional[np.ndarray]], None, None]:
    """Decode a video in order and yield the requested frames.

    Args:
        path: video file.
        indices: 0-based frame indices wanted (any order; duplicates ignored).

    Yields:
        ``(index, frame)`` in increasing index order; ``frame`` is a BGR ``uint8`` array of shape
        ``(H, W, 3)``, or None for indices past the end of the stream (a short or damaged video).

    Raises:
        VideoError: the file is missing or cannot be opened.
    """
    path = Path(path)
    wanted = sorted({int(i) for i in indices})
    if wanted and wanted[0] < 0:
        raise ValueError(f"{path}: negative frame index {wanted[0]}")
    cap = _open(path)
    try:
        position = 0  # index of the next frame the decoder returns
        for k, index in enumerate(wanted):
            ok = True
            while position < index and ok:
                ok = cap.grab()  # decode without converting: cheaper for skipped frames
                position += 1
            frame = None
            if ok:
                ok, frame = cap.read()
                position += 1
            if not ok or frame is None:
                for rest in wanted[k:]:
                    yield rest, None
                return
            yield index, frame
    finally:
        cap.release()


class VideoFrames:
    """All frames of a video, decoded in order as RGB, with a check that none went missing.

    Iterating yields ``(H, W, 3)`` uint8 RGB frames; when the stream ends before the frame count
    the container reports (a truncated or damaged file), the iteration raises
    :class:`VideoError` saying how many frames were decoded, so a cut video never passes for a
    short one.

    Attributes:
        path: the video file.
        fps: frames per second the container reports (:data:`FALLBACK_FPS` when it reports none).
        reported_frames: the container's frame count (0 when unknown).
        decoded: frames decoded so far.

    Raises:
        VideoError: the file is missing or cannot be opened (on construction), no frame can be
            decoded, or frames are missing (while iterating).

    Example:
        >>> for frame in VideoFrames("clip.mp4"):  # doctest: +SKIP
        ...     ...
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        cap = _open(self.path)
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        self.fps = fps if np.isfinite(fps) and fps > 0 else FALLBACK_FPS
        self.reported_frames = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        self.decoded = 0
        self._cap: Optional[cv2.VideoCapture] = cap

    def __iter__(self) -> Iterator[np.ndarray]:
        cap = self._cap
        if cap is None:
            raise VideoError(f"{self.path}: the frames were already read")
        self._cap = None
        try:
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                self.decoded += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
        if self.decoded == 0:
            raise VideoError(f"{self.path}: no frame could be decoded (corrupt or empty video)")
        if self.decoded < self.reported_frames - FRAME_COUNT_TOLERANCE:
            raise VideoError(f"{self.path}: truncated or damaged video: decoded {self.decoded} of the "
                             f"{self.reported_frames} frames the file reports")

    def close(self) -> None:
        """Release the decoder without reading (iterating releases it at the end)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderFrames:
    """The images of a folder, in natural name order (``img_2`` before ``img_10``), as RGB frames;
    the same interface as :class:`VideoFrames` (``fps`` is :data:`FALLBACK_FPS`: a folder has no rate).

    Raises:
        VideoError: the folder is missing or holds no image (on construction), an image cannot be
            decoded (while iterating; the message names it).
    """

    def __init__(self, path: str | os.PathLike, fps: float = FALLBACK_FPS) -> None:
        import re

        self.path = Path(path)
        if not self.path.is_dir():
            raise VideoError(f"{self.path}: image folder not found")

        def natural(p: Path) -> list:
            return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]

        self.files = sorted((p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                            key=natural)
        if not self.files:
            raise VideoError(f"{self.path}: no images in the folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.fps = float(fps)
        self.reported_frames = len(self.files)
        self.decoded = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for f in self.files:
            image = cv2.imdecode(np.fromfile(f, dtype=np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise VideoError(f"{f}: not a decodable image")
            self.decoded += 1
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        """Nothing to release (the interface of :class:`VideoFrames`)."""


def open_frames(path: str | os.PathLike) -> "VideoFrames | ImageFolderFrames":
    """The frames of a video file or of a folder of images (RGB, in order).

    Raises:
        VideoError: missing, unreadable, or an empty folder (one line naming the path).
    """
    path = Path(path)
    return ImageFolderFrames(path) if path.is_dir() else VideoFrames(path)


def encode_image(image_bgr: np.ndarray, ext: str = ".jpg", jpeg_quality: int = 95) -> np.ndarray:
    """Encode a BGR ``uint8`` image (as OpenCV decodes it) to JPEG or PNG bytes (uint8 array)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, image_bgr, params)
    if not ok:
        raise ValueError(f"cannot encode image of shape {image_bgr.shape} as {ext}")
    return buf.reshape(-1)


def image_size_of_file(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a decodable image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: not a decodable image")
    return int(image.shape[1]), int(image.shape[0])
