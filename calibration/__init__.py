"""Cameras and rigs: calibrated pinhole cameras with OpenCV distortion (one implementation of the
lens model: :mod:`calibration.projection`), and triangulation.

A standalone package: it knows cameras, not bodies, and never imports ``mvspin``.
"""
from calibration.camera import Camera, CameraTensors, Rig, look_at, stack_rigs
from calibration.projection import (
    DISTORTION_SIZES,
    distort,
    project_points,
    undistort,
    undistort_points,
)
from calibration.triangulation import Triangulation, triangulate_points

__all__ = [
    "Camera", "Rig", "CameraTensors", "stack_rigs", "look_at", "DISTORTION_SIZES",
    "distort", "undistort", "project_points", "undistort_points",
    "Triangulation", "triangulate_points",
]
