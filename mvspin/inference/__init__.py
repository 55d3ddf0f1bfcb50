"""Inference as a library: what ``mvspin infer`` does, callable from Python.

- :class:`InferConfig`: the settings (the command's options).
- :class:`InferencePipeline`: loads the body model and regressor once; :meth:`~InferencePipeline.run`
  takes paths and returns an :class:`InferReport` (files written, predictions, failures, timings);
  :meth:`~InferencePipeline.predict_image` takes an image array and writes nothing.
- :func:`run_inference`: both in one call.
- :mod:`mvspin.inference.inputs`: input collection, output names and crop boxes.

The network-level pieces (:class:`~mvspin.regressor.predictor.Predictor`, refinement with
SMPLify / MV-SMPLify, view fusion) stay in :mod:`mvspin.regressor.predictor`, which training and
evaluation use too.

Example:
    >>> from pathlib import Path
    >>> from mvspin.inference import InferConfig, InferencePipeline
    >>> pipeline = InferencePipeline(InferConfig(checkpoint=Path("model_checkpoint.pt")))  # doctest: +SKIP
    >>> report = pipeline.run(["photos/", "clip.mp4"])  # doctest: +SKIP
"""
from mvspin.inference.config import BACKBONES, InferConfig
from mvspin.inference.inputs import InferInput, InputError, NoPersonError, PersonBox, collect_inputs, people_in_image
from mvspin.inference.pipeline import (
    STAGES,
    InferencePipeline,
    InferError,
    InferItem,
    InferReport,
    load_regressor,
    run_inference,
    validate_infer_config,
)

__all__ = [
    "BACKBONES", "STAGES", "InferConfig", "InferError", "InferInput", "InferItem", "InferReport",
    "InferencePipeline", "InputError", "NoPersonError", "PersonBox", "collect_inputs", "load_regressor",
    "people_in_image", "run_inference", "validate_infer_config",
]
