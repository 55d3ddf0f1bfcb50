"""The calibration package's user-facing error.

``calibration`` never imports ``mvspin``, so it cannot use ``mvspin.errors.MvspinError``; its
errors derive from ``ValueError`` instead, which the ``mvspin`` command line prints as one line.
"""
from __future__ import annotations

__all__ = ["CalibrationError"]


class CalibrationError(ValueError):
    """A calibration file or a calibration job is unusable; the message (one line) names the file,
    camera or board and what is wrong."""
