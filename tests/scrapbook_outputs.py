"""Notebook outputs in scrapbook's format, built by hand: collect tests without kernels."""

from __future__ import annotations

from typing import Any


def scrap(name: Any, data: Any, encoder: str = "json") -> dict[str, Any]:
    """A data scrap, as `scrapbook.glue(name, data, encoder=...)` stores it."""
    payload = {"name": name, "data": data, "encoder": encoder, "version": 1}
    return {
        "output_type": "display_data",
        "data": {f"application/scrapbook.scrap.{encoder}+json": payload},
        "metadata": {"scrapbook": {"name": name, "data": True, "display": False}},
    }


def shown(name: Any, bundle: dict[str, Any]) -> dict[str, Any]:
    """A display-only scrap (`encoder="display"`) with its MIME bundle."""
    return {
        "output_type": "display_data",
        "data": bundle,
        "metadata": {"scrapbook": {"name": name, "data": False, "display": True}},
    }
