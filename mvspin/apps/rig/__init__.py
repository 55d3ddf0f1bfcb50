"""``mvspin fit-rig`` as a library: :func:`fit_rig` and its config and report."""
from mvspin.apps.rig.fit_rig import FitRigConfig, RigReport, fit_rig

__all__ = ["FitRigConfig", "RigReport", "fit_rig"]
