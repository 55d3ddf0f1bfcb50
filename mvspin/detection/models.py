"""The detector model files: where they live, how they are installed, how they are checked.

No weights are in the repository and nothing is downloaded while detecting. BlazePose's two
Apache-2.0 model files come from the ``mediapipe==0.10.21`` wheel on PyPI (the last release that
ships them); :func:`install_blazepose` (``mvspin detect install-model``) downloads that wheel with
pip, without installing it or its dependencies (its pins, numpy<2 and protobuf<5, would break this
environment), extracts the two files and mediapipe's licence into the model cache and checks
their SHA-256. On an offline machine, copy the files by hand and point ``model_dir`` at them.

Cache: ``$MVSPIN_HOME/blazepose/`` (``MVSPIN_HOME`` defaults to ``~/.cache/mvspin``).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mvspin.atomic import check_output_location, write_bytes_atomic
from mvspin.errors import ModelFilesError

__all__ = ["BLAZEPOSE_FILES", "MEDIAPIPE_WHEEL", "INSTALL_COMMAND", "BlazePoseFiles", "model_home",
           "blazepose_dir", "install_blazepose", "find_blazepose", "sha256_of"]

MEDIAPIPE_WHEEL = "mediapipe==0.10.21"
"""The PyPI release whose wheel ships the BlazePose files (later releases ship none)."""

INSTALL_COMMAND = "mvspin detect install-model"
"""The command that installs the BlazePose files (named in every missing-file message)."""

BLAZEPOSE_FILES: dict[str, tuple[str, str]] = {
    # file name -> (member in the wheel, SHA-256 measured on the 0.10.21 manylinux x86_64 wheel)
    "pose_detection.tflite": (
        "mediapipe/modules/pose_detection/pose_detection.tflite",
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"),
    "pose_landmark_full.tflite": (
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"),
}
"""BlazePose (full): the person detector and the landmark model, with their SHA-256."""

LICENSE_NAME = "LICENSE.mediapipe"
_LICENSE_MEMBER = "mediapipe-0.10.21.dist-info/LICENSE"


def model_home() -> Path:
    """The model cache: ``$MVSPIN_HOME`` or ``~/.cache/mvspin``."""
    home = os.environ.get("MVSPIN_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "mvspin"


def blazepose_dir(model_dir: Optional[str | os.PathLike] = None) -> Path:
    """Where the BlazePose files are (or go): ``model_dir`` when given, else the cache's ``blazepose/``."""
    return Path(model_dir).expanduser() if model_dir is not None else model_home() / "blazepose"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class BlazePoseFiles:
    """The two checked BlazePose model files.

    Attributes:
        detector: ``pose_detection.tflite`` (person detector, 224x224 input).
        landmarks: ``pose_landmark_full.tflite`` (landmark model, 256x256 input).
    """

    detector: Path
    landmarks: Path


def find_blazepose(model_dir: Optional[str | os.PathLike] = None, verify: bool = True) -> BlazePoseFiles:
    """The BlazePose files in ``model_dir`` (default: the cache), checked by SHA-256.

    Raises:
        ModelFilesError: a file is missing or is not the expected file (one line naming the
            folder and the install command).
    """
    folder = blazepose_dir(model_dir)
    paths = {}
    for name, (_, expected) in BLAZEPOSE_FILES.items():
        path = folder / name
        if not path.is_file():
            where = f"model_dir {folder}" if model_dir is not None else f"the model cache {folder}"
            raise ModelFilesError(f"BlazePose model file {name} not found in {where}: run `{INSTALL_COMMAND}` "
                                  f"(or copy the files there by hand)")
        if verify and sha256_of(path) != expected:
            raise ModelFilesError(f"{path}: not the expected BlazePose model file (SHA-256 differs): run "
                                  f"`{INSTALL_COMMAND}` again")
        paths[name] = path
    return BlazePoseFiles(paths["pose_detection.tflite"], paths["pose_landmark_full.tflite"])


def _download_wheel(folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--only-binary=:all:", MEDIAPIPE_WHEEL, "-d", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("mediapipe-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise ModelFilesError(f"pip could not download {MEDIAPIPE_WHEEL} (no network? copy the model files by "
                              f"hand and use model_dir): {last}")
    return wheels[0]


def install_blazepose(model_dir: Optional[str | os.PathLike] = None,
                      wheel: Optional[str | os.PathLike] = None) -> BlazePoseFiles:
    """Download the mediapipe 0.10.21 wheel with pip (no dependencies, not installed), extract the
    two BlazePose files and mediapipe's licence into ``model_dir`` (default: the cache), check the
    files' SHA-256 and return them. Each file is written atomically: a failed or interrupted
    install leaves the previous files (or none), never a partial one.

    Args:
        model_dir: target folder (default ``$MVSPIN_HOME/blazepose``).
        wheel: a mediapipe wheel already on disk (skips the download).

    Raises:
        ModelFilesError: the download failed, the wheel lacks a file or a file's SHA-256 differs.
        OutputLocationError: the folder cannot be written.
    """
    folder = check_output_location(blazepose_dir(model_dir), kind="folder", what="model_dir")
    with tempfile.TemporaryDirectory(prefix="mvspin-mediapipe-") as tmp:
        path = Path(wheel) if wheel is not None else _download_wheel(Path(tmp))
        try:
            archive = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as err:
            raise ModelFilesError(f"{path}: not a wheel (zip) file ({err})") from None
        with archive:
            members = set(archive.namelist())
            contents = {}
            for name, (member, expected) in BLAZEPOSE_FILES.items():
                if member not in members:
                    raise ModelFilesError(f"{path}: has no {member} (is it {MEDIAPIPE_WHEEL}?)")
                data = archive.read(member)
                if hashlib.sha256(data).hexdigest() != expected:
                    raise ModelFilesError(f"{path}: {member} is not the expected file (SHA-256 differs)")
                contents[name] = data
            licence = archive.read(_LICENSE_MEMBER) if _LICENSE_MEMBER in members else None
    # Checked in memory first, so nothing is written unless both files are right.
    for name, data in contents.items():
        write_bytes_atomic(folder / name, data)
    if licence is not None:
        write_bytes_atomic(folder / LICENSE_NAME, licence)
    return find_blazepose(model_dir)
