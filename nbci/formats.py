"""What every stage agrees on about a run's files: which images a figure may be, how
large, and how scrapbook marks its outputs. Collect, render and publish import these, so
a figure that is shown locally is also the one that is hosted on the pull request."""

from __future__ import annotations

import re

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_FIGURE_BYTES = 10 * 1024 * 1024
"""One figure file, collected, inlined in report.html, compared or hosted."""
FIGURE_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}
"""The figures a run holds (`figures/<job>/<name>.png` or `.svg`), by suffix."""
SCRAP_PREFIX = "application/scrapbook.scrap."
"""scrapbook's data outputs: `application/scrapbook.scrap.<encoder>+json`."""

_RASTER = (
    (PNG_SIGNATURE, "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_SVG_START = re.compile(
    rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*(<!DOCTYPE[^>]*>\s*)?<svg[\s>]", re.S
)


def image_type(data: bytes) -> str | None:
    """The MIME type of image `data` by its first bytes, or None."""
    for magic, mime in _RASTER:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if _SVG_START.match(data[:4096].lstrip(b"\xef\xbb\xbf")):
        return "image/svg+xml"
    return None
