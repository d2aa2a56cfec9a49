"""Navigation: driving commands from segmentation class maps (numpy only, runs on the robot).

Drawing lives apart, in `edgeseg.nav.draw`, so the planner never pulls in OpenCV.
"""

from edgeseg.nav.freespace import FreeSpace, analyse_free_space
from edgeseg.nav.navigator import CAMERA_MODES, NAV_MODES, REASONS, Command, NavConfig, Navigator

__all__ = ["CAMERA_MODES", "NAV_MODES", "REASONS", "Command", "FreeSpace", "NavConfig", "Navigator",
           "analyse_free_space"]
