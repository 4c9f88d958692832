"""nbci: continuous integration for machine-learning notebooks."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "glue"]

# Imported eagerly (nbci.glue needs only the standard library at import time):
# this binds `nbci.glue` to the function once and for all. A lazy __getattr__
# is not enough, because importing the submodule `nbci.glue` anywhere (as
# nbci.collect does) sets the package attribute `glue` to the module.
from nbci.glue import glue
