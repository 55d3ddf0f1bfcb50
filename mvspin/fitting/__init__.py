"""Fitting SMPL-layout bodies to 2D keypoints: SMPLify and MV-SMPLify (per-view and calibrated)."""
from mvspin.fitting.config import MVSMPLifyConfig, SMPLifyConfig, validate_config
from mvspin.fitting.evaluation import evaluation_joints, pose_errors
from mvspin.fitting.keypoint_targets import DETECTOR_HIPS, TORSO_POINTS, KeypointTargets
from mvspin.fitting.losses import gmof, reprojection_energy, reprojection_error
from mvspin.fitting.mv_smplify import FittingEngine, MVSMPLify, crop_camera_rotation
from mvspin.fitting.result import FitResult, PerViewEstimate
from mvspin.fitting.smplify import SMPLify

__all__ = [
    "SMPLify", "MVSMPLify", "FittingEngine", "SMPLifyConfig", "MVSMPLifyConfig", "validate_config",
    "FitResult", "PerViewEstimate", "KeypointTargets", "DETECTOR_HIPS", "TORSO_POINTS",
    "gmof", "reprojection_energy", "reprojection_error", "evaluation_joints", "pose_errors", "crop_camera_rotation",
]
