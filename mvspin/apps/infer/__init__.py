"""The infer job: SMPL bodies from images, folders, videos or a set of views, with a trained regressor.

- :class:`InferConfig`: every setting (the ``mvspin infer`` flags are made from its fields).
- :func:`run`: ``run(config, progress) -> InferReport``; checks the files and the output folder
  first, loads the models once, then handles each input by its kind: single images
  (:mod:`~mvspin.apps.infer.images`), videos (:mod:`~mvspin.apps.infer.video`) and view sets
  (:mod:`~mvspin.apps.infer.views`).
- :class:`InferSession`: the loaded models, for calling from Python on arrays
  (:meth:`InferSession.predict_image`: an image in, bodies out, nothing written).
- :mod:`~mvspin.apps.infer.inputs`: input collection, output names and crop boxes.

The network itself (:class:`~mvspin.regressor.Predictor`, refinement with SMPLify /
MV-SMPLify) lives in :mod:`mvspin.regressor`.

Outputs under ``config.out``: per image ``<name>.npz`` (SMPL parameters, AMASS keys, the original
image's camera), ``<name>.obj`` and overlays; per video one ``<name>.npz`` with a row per frame
and ``<name>_overlay.mp4``; with ``views`` one ``views.npz``/``views.obj``; and
``infer_config.yaml`` (the resolved config). One input's files are written together or not at
all.

Example:
    >>> from pathlib import Path
    >>> from mvspin.apps.infer import InferConfig, run
    >>> config = InferConfig(inputs=[Path("photos/"), Path("clip.mp4")], checkpoint=Path("model_checkpoint.pt"))
    >>> report = run(config)  # doctest: +SKIP
    >>> report.images, report.frames, report.failures  # doctest: +SKIP
"""
from mvspin.apps.infer.config import BACKBONES, MESH_FORMATS, InferConfig
from mvspin.apps.infer.inputs import InferInput, InputError, NoPersonError, PersonBox, collect_inputs, people_in_image
from mvspin.apps.infer.job import check_infer_files, run
from mvspin.apps.infer.session import STAGES, InferError, InferItem, InferReport, InferSession, load_regressor

__all__ = [
    "BACKBONES", "MESH_FORMATS", "STAGES", "InferConfig", "InferError", "InferInput", "InferItem", "InferReport",
    "InferSession", "InputError", "NoPersonError", "PersonBox", "check_infer_files", "collect_inputs",
    "load_regressor", "people_in_image", "run",
]
