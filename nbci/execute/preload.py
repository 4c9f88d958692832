"""Which modules the template pre-imports: the planned notebooks' top-level imports.

Read with `ast` from the code cells, never executed. Left out:
- modules of the project: a `name.py` or `name/` beside a planned notebook
  shadows an installed one, and the template drops anything installed under
  the project folder (`fork_server`); a pull request may change those, and
  the notebook must see the change;
- modules that do not survive a fork (`FORK_UNSAFE`);
- matplotlib when a notebook's folder has a `matplotlibrc` (matplotlib reads
  it from the working directory at import, and the template runs elsewhere).
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from nbci.model import Job

logger = logging.getLogger(__name__)

FORK_UNSAFE = {
    "tensorflow": "starts thread pools on import; documented as not fork-safe",
    "keras": "imports its TensorFlow or JAX backend",
    "jax": "multithreaded from import on; warns that os.fork() may deadlock",
    "jaxlib": "JAX's runtime (see jax)",
    "flax": "imports jax",
    "ray": "starts or connects to a cluster runtime on import of its workers",
    "pycuda": "pycuda.autoinit creates a CUDA context, which a forked child cannot use",
}
"""Top-level packages never pre-imported, and why. The template also refuses any module
after whose import a Python thread is running (and starts again without it)."""
_NEVER = {"__future__", "__main__"}


def modules_to_preload(jobs: Sequence[Job], root: Path, extra: Iterable[str] = ()) -> list[str]:
    """The modules for the template, in first-seen order: configured ones, then imported ones."""
    notebooks = sorted({(root / job.path) for job in jobs})
    folders = {path.parent for path in notebooks}
    wanted: dict[str, None] = dict.fromkeys(extra)
    for path in notebooks:
        wanted.update(dict.fromkeys(notebook_imports(path)))
    chosen = []
    for name in wanted:
        reason = _why_not(name, folders)
        if reason is None:
            chosen.append(name)
        else:
            logger.debug("not pre-importing %s: %s", name, reason)
    return chosen


def notebook_imports(path: Path) -> list[str]:
    """The modules a Python notebook's code cells import at their top level."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
        language = _language(nb.get("metadata", {}))
    except (OSError, ValueError, KeyError, TypeError):
        return []  # the job will say what is wrong with the notebook
    if language not in ("python", None):
        return []
    found: list[str] = []
    for cell in cells:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            found += _imports(_source(cell.get("source", "")))
    return found


def _language(metadata: Any) -> str | None:
    """The notebook's language as its metadata says (None: it does not say)."""
    if not isinstance(metadata, dict):
        return None
    spec, info = metadata.get("kernelspec"), metadata.get("language_info")
    for value in (
        spec.get("language") if isinstance(spec, dict) else None,
        info.get("name") if isinstance(info, dict) else None,
    ):
        if isinstance(value, str):
            return value.lower()
    return None


def _source(raw: Any) -> str:
    """A cell's Python, without IPython's magics and shell escapes (which `ast` cannot read)."""
    text = "".join(raw) if isinstance(raw, list) else str(raw)
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def _imports(code: str) -> list[str]:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    return [name for statement in tree.body for name in _imported_by(statement)]


def _imported_by(statement: ast.stmt) -> Iterator[str]:
    """Modules a top-level statement imports (also inside a top-level `try` or `if`)."""
    if isinstance(statement, ast.Import):
        yield from (alias.name for alias in statement.names)
    elif isinstance(statement, ast.ImportFrom):
        if statement.level == 0 and statement.module:  # relative imports are the project's
            yield statement.module
    elif isinstance(statement, ast.Try | ast.If):
        for inner in statement.body:
            yield from _imported_by(inner)


def _why_not(name: str, folders: Iterable[Path]) -> str | None:
    top = name.partition(".")[0]
    if not top or name in _NEVER:
        return "not a module to pre-import"
    if top in FORK_UNSAFE:
        return FORK_UNSAFE[top]
    for folder in folders:
        if (folder / f"{top}.py").exists() or (folder / top).is_dir():
            return f"a module of the project ({folder / top})"
        if top == "matplotlib" and (folder / "matplotlibrc").exists():
            return f"{folder / 'matplotlibrc'} configures it from the notebook's folder"
    return None
