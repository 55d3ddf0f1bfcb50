"""Geometry for SMPL regression and fitting: rotations (SPIN 6D, axis-angle, SO(3) mean),
SPIN's crop camera and OpenCV-model projection, SPIN's crop conventions (crop boxes, inside the
image), similarity Procrustes, and 3D pose metrics."""
from calibration.procrustes import similarity_procrustes
from mvspin.geometry.cameras import (
    SPIN_CROP_SIZE,
    SPIN_FOCAL_LENGTH,
    SPIN_SCALE_UNIT,
    crop_cam_to_translation,
    crop_camera_rotation,
    crop_intrinsics,
    crop_to_image_points,
    crop_to_image_transform,
    image_to_crop_points,
    image_to_crop_transform,
    perspective_projection,
    translation_to_crop_cam,
    world_to_camera,
)
from mvspin.geometry.crop import (
    KEYPOINT_MIN_CONFIDENCE,
    SPIN_BBOX_SCALE_FACTOR,
    CropBoxes,
    keypoint_crop_box,
    keypoint_crop_boxes,
    points_inside_image,
)
from mvspin.geometry.metrics import (
    MPI_INF_3DHP_AUC_THRESHOLDS_MM,
    auc,
    joint_errors,
    mpjpe,
    pa_mpjpe,
    pck,
    root_align,
)
from mvspin.geometry.rotations import (
    axis_angle_to_matrix,
    geodesic_distance,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    rot6d_to_matrix,
    smooth_rotations,
    so3_mean,
    so3_right_jacobian,
)

__all__ = [
    # rotations
    "rot6d_to_matrix",
    "matrix_to_rot6d",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "so3_mean",
    "so3_right_jacobian",
    "geodesic_distance",
    "smooth_rotations",
    # cameras
    "SPIN_FOCAL_LENGTH",
    "SPIN_CROP_SIZE",
    "SPIN_SCALE_UNIT",
    "crop_cam_to_translation",
    "translation_to_crop_cam",
    "crop_intrinsics",
    "crop_camera_rotation",
    "world_to_camera",
    "perspective_projection",
    "image_to_crop_transform",
    "crop_to_image_transform",
    "image_to_crop_points",
    "crop_to_image_points",
    # crop conventions
    "SPIN_BBOX_SCALE_FACTOR",
    "KEYPOINT_MIN_CONFIDENCE",
    "CropBoxes",
    "keypoint_crop_boxes",
    "keypoint_crop_box",
    "points_inside_image",
    # procrustes
    "similarity_procrustes",
    # metrics
    "root_align",
    "joint_errors",
    "mpjpe",
    "pa_mpjpe",
    "pck",
    "auc",
    "MPI_INF_3DHP_AUC_THRESHOLDS_MM",
]
