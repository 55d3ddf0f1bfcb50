"""Fitting SMPL-layout bodies to 2D keypoints: SMPLify and MV-SMPLify (per-view and calibrated),
and rig recordings (subject association, sequence fitting, :func:`fit_recording`)."""
from mvspin.fitting.association import Association, AssociationConfig, associate_subjects
from mvspin.fitting.camera_checks import CameraMismatchError
from mvspin.fitting.config import PRESETS, MVSMPLifyConfig, SMPLifyConfig, validate_config
from mvspin.fitting.engine import FittingEngine
from mvspin.fitting.evaluation import evaluation_joints, pose_errors
from mvspin.fitting.keypoint_targets import DETECTOR_TORSO, TORSO_POINTS, KeypointTargets
from mvspin.fitting.losses import gmof, reprojection_energy, reprojection_error, squared_reprojection_energy
from mvspin.fitting.mv_smplify import MVSMPLify
from mvspin.fitting.recording import RecordingError, RecordingFit, RigFitConfig, SubjectFit, fit_recording
from mvspin.fitting.result import FitResult, PerViewEstimate
from mvspin.fitting.sequence import SequenceFitConfig, SequenceResult, fit_sequence
from mvspin.fitting.smplify import SMPLify
from mvspin.fitting.view_estimates import WorldEstimate, fuse_view_predictions, world_estimate_from_views
from mvspin.geometry import crop_camera_rotation  # its home is geometry; re-exported for existing callers

__all__ = [
    "SMPLify", "MVSMPLify", "FittingEngine", "SMPLifyConfig", "MVSMPLifyConfig", "validate_config", "PRESETS",
    "FitResult", "PerViewEstimate", "WorldEstimate", "fuse_view_predictions", "world_estimate_from_views",
    "KeypointTargets", "DETECTOR_TORSO", "TORSO_POINTS", "CameraMismatchError",
    "gmof", "reprojection_energy", "squared_reprojection_energy", "reprojection_error", "evaluation_joints",
    "pose_errors", "crop_camera_rotation",
    "associate_subjects", "AssociationConfig", "Association", "fit_sequence", "SequenceFitConfig", "SequenceResult",
    "fit_recording", "RigFitConfig", "RecordingFit", "SubjectFit", "RecordingError",
]
