"""2D keypoint detection: BlazePose (full) through ai-edge-litert, user RTMPose ONNX files through
onnxruntime, and per-person tracking across frames.

Between ``data`` (video and keypoint files) and the regressor: detections are what the rig fit
reads. Model files are never downloaded while detecting (:mod:`mvspin.detection.models`).
"""
