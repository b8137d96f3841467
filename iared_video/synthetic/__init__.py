"""Generators of the embedded data sets."""

from iared_video.synthetic.formula import *  # noqa: F401,F403
from iared_video.synthetic.formula import __all__  # noqa: F401
