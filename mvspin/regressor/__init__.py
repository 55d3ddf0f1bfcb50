"""The network: a ResNet backbone with SPIN's iterative HMR head, its checkpoints, its input crops
and the predictor that turns images into posed SMPL bodies in each image's camera.

- :mod:`~mvspin.regressor.backbone`: ResNet trunks (torchvision names) and ImageNet weights.
- :mod:`~mvspin.regressor.hmr`: :class:`HMRRegressor` (SPIN's head and attribute names, 6D
  rotations), :class:`RegressorOutput`.
- :mod:`~mvspin.regressor.checkpoint`: SPIN-layout checkpoints (strict loading,
  ``weights_only``) and what their metadata says (:func:`checkpoint_input_size`, the body model
  they were trained for).
- :mod:`~mvspin.regressor.preprocess`: reading images, SPIN's crop boxes, cutting and normalising
  crops (``exact`` or SPIN's own ``spin`` preprocessing).
- :mod:`~mvspin.regressor.predictor`: :class:`Predictor` (batched crops -> regressor -> body
  model -> full-image camera), :class:`Prediction`, :func:`crop_camera_to_image_camera`, and
  refinement with SMPLify / MV-SMPLify.

Training (:mod:`mvspin.learning`) and the ``infer`` job (:mod:`mvspin.apps.infer`) build on these.

Example:
    >>> from mvspin.body import BodyModel  # doctest: +SKIP
    >>> from mvspin.regressor import Predictor, load_regressor_checkpoint  # doctest: +SKIP
    >>> model, meta = load_regressor_checkpoint("model_checkpoint.pt")  # doctest: +SKIP
    >>> predictor = Predictor(model, BodyModel.free("low"))  # doctest: +SKIP
    >>> pred = predictor.predict_images([image], [center], [scale])  # doctest: +SKIP
"""
from mvspin.regressor.backbone import RESNET_DEPTHS, CheckpointError, ResNet, load_imagenet_weights, resnet
from mvspin.regressor.checkpoint import (
    checkpoint_input_size,
    find_checkpoint_setting,
    load_regressor_checkpoint,
    same_body_model,
    save_regressor_checkpoint,
)
from mvspin.regressor.hmr import HMRRegressor, RegressorOutput, default_mean_params
from mvspin.regressor.predictor import (
    Prediction,
    Predictor,
    crop_camera_to_image_camera,
    posed_prediction,
    refine_views_with_mvsmplify,
    refine_with_smplify,
    timed,
    whole_image_box,
)
from mvspin.regressor.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREPROCESSING_MODES,
    bbox_to_center_scale,
    crop_for_network,
    crop_image,
    normalize_crop,
    preprocessing_for_checkpoint,
    read_image,
)

__all__ = [
    "RESNET_DEPTHS", "CheckpointError", "ResNet", "load_imagenet_weights", "resnet",
    "checkpoint_input_size", "find_checkpoint_setting", "load_regressor_checkpoint", "same_body_model",
    "save_regressor_checkpoint",
    "HMRRegressor", "RegressorOutput", "default_mean_params",
    "Prediction", "Predictor", "crop_camera_to_image_camera", "posed_prediction", "refine_views_with_mvsmplify",
    "refine_with_smplify", "timed", "whole_image_box",
    "IMAGENET_MEAN", "IMAGENET_STD", "PREPROCESSING_MODES", "bbox_to_center_scale", "crop_for_network", "crop_image",
    "normalize_crop", "preprocessing_for_checkpoint", "read_image",
]
