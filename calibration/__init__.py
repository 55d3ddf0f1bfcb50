"""Cameras and rigs: calibrated pinhole cameras with OpenCV distortion (one implementation of the
lens model: :mod:`calibration.projection`), calibration files, world-frame alignment and
triangulation.

A standalone package: it knows cameras, not bodies; from ``mvspin`` it imports only the
dependency-free shared core (``mvspin.errors``, ``mvspin.atomic``, ``mvspin.progress``).
"""
from calibration.anipose_group import from_camera_group, to_camera_group
from calibration.camera import Camera, CameraTensors, Rig, look_at, stack_rigs
from calibration.formats import FORMATS, detect_format, load_rig, save_rig
from calibration.projection import (
    DISTORTION_SIZES,
    distort,
    point_distance,
    project_points,
    project_points_jacobian,
    undistort,
    undistort_points,
)
from calibration.triangulation import Triangulation, triangulate_points
from calibration.world_frame import WorldFrame, align_world, set_up_axis, transform_rig
from mvspin.errors import CalibrationError

__all__ = [
    "Camera", "Rig", "CameraTensors", "stack_rigs", "look_at", "DISTORTION_SIZES",
    "distort", "undistort", "point_distance", "project_points", "project_points_jacobian", "undistort_points",
    "Triangulation", "triangulate_points",
    "CalibrationError", "FORMATS", "detect_format", "load_rig", "save_rig",
    "to_camera_group", "from_camera_group",
    "WorldFrame", "align_world", "set_up_axis", "transform_rig",
]
