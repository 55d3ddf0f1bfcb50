"""Shared test settings: small thread count so the suite behaves on 2-core CI machines."""
import os

os.environ.setdefault("EGL_PLATFORM", "surfaceless")  # open3d offscreen rendering on CPU

import torch

torch.set_num_threads(min(2, torch.get_num_threads()))
