"""mvspin: multi-view human capture and collaborative learning of SMPL pose and shape."""
from mvspin._version import __version__

__all__ = ["__version__"]
