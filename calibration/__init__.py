"""Cameras and rigs: calibrated pinhole cameras with OpenCV distortion, and triangulation.

A standalone package: it knows cameras, not bodies, and never imports ``mvspin``.
"""
from calibration.camera import DISTORTION_SIZES, Camera, CameraTensors, Rig, stack_rigs
from calibration.triangulation import Triangulation, triangulate_points, undistort_points

__all__ = [
    "Camera", "Rig", "CameraTensors", "stack_rigs", "DISTORTION_SIZES",
    "Triangulation", "triangulate_points", "undistort_points",
]
