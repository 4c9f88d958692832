"""nbci: continuous integration for machine-learning notebooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "glue"]

if TYPE_CHECKING:  # pragma: no cover
    from nbci.glue import glue


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import nbci` (and `nbci --help`) stays instant.
    if name == "glue":
        from nbci.glue import glue

        return glue
    raise AttributeError(f"module 'nbci' has no attribute {name!r}")
