"""Body models in SMPL's parameter layout: the bundled free model and official SMPL files."""
from mvspin.body.config import BodyModelConfig
from mvspin.body.keypoint_sets import (
    KEYPOINT_SETS,
    LANDMARK_NAMES,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    KeypointSet,
    get_keypoint_set,
    keypoint_index_map,
)
from mvspin.body.measures import rest_measurements
from mvspin.body.model import BodyModel, BodyOutput
from mvspin.body.model_files import BodyModelFilesError
from mvspin.body.points import KeypointMap, KeypointSetUnavailable
from mvspin.body.priors import FreePosePrior, GMMPosePrior, angle_prior, angle_prior_gauss_newton, shape_prior
from mvspin.body.safe_pickle import UnsafePickleError, load_restricted_pickle

__all__ = [
    "BodyModel", "BodyModelConfig", "BodyOutput", "BodyModelFilesError", "KeypointSet", "KeypointMap",
    "KeypointSetUnavailable", "KEYPOINT_SETS", "LANDMARK_NAMES", "SMPL_JOINT_NAMES", "SMPL_PARENTS",
    "get_keypoint_set", "keypoint_index_map", "FreePosePrior", "GMMPosePrior", "angle_prior", "angle_prior_gauss_newton",
    "shape_prior", "UnsafePickleError", "load_restricted_pickle", "rest_measurements",
]
