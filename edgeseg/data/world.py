"""The synthetic world moved to `edgeseg.world` (its own package); this name stays for existing imports."""

from edgeseg.world import *  # noqa: F401,F403
from edgeseg.world import __all__  # noqa: F401
