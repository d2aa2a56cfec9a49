"""Frame sources, as the stream has always named them: a re-export of `edgeseg.sources`.

The sources live in their own package (one module per source family, and the `open_source`
factory) on a lower floor than the stream, so verify and calibration read footage through them
too. Import from `edgeseg.sources` in new code.
"""

from edgeseg.sources import *  # noqa: F403 (the whole public API, as before the split)
from edgeseg.sources import __all__  # noqa: F401
