"""Which modules a notebook's kernel is forked with: the imports its code runs first.

Read with `ast` from the code cells, never executed. A notebook's modules are
its top-level imports (also inside a top-level `try`) in the order it runs
them, up to the first statement that could change what, or how, an import
after it loads (`_changes_imports`): an assignment into an object
(`os.environ[...] =`, `sys.path[:0] =`, `pd.options... =`), a call of
something an import bound (`sys.path.insert`, `matplotlib.use`,
`torch.set_num_threads`, `load_dotenv()`), `exec`/`eval`, a magic or shell
command other than `%matplotlib` and autoreload's, or an import of something
that is not pre-imported (a module of the project runs code nobody read).
What follows it is imported by the notebook itself, exactly as in a fresh
kernel. Also never pre-imported:
- modules of the project: a `name.py` or `name/` beside a planned notebook
  shadows an installed one, and the template refuses anything loaded from
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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nbci._ast import parse_source

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
HARMLESS_MAGICS = ("%matplotlib", "%load_ext autoreload", "%autoreload", "%config")
"""Magics that may come before imports: they change nothing an import reads."""
_CALLS_THAT_CHANGE_EVERYTHING = {"exec", "eval", "setattr", "delattr"}


def modules_for(
    notebook: Path, folders: Iterable[Path], extra: Iterable[str] = ()
) -> tuple[str, ...]:
    """The modules to fork `notebook`'s kernel with, in the order the notebook imports them.

    `folders` are the planned notebooks' folders (a module there is the
    project's); `extra` are configured modules (the user's choice), added
    after them when the notebook's code imports them somewhere (e.g. in a
    function) and its first imports met no module that cannot be pre-imported.
    """
    folders = list(folders)
    found, anywhere = notebook_imports(notebook)
    chosen: list[str] = []
    for name in found:
        reason = _why_not(name, folders)
        if reason is not None:
            logger.debug("%s: not pre-importing %s or what follows: %s", notebook, name, reason)
            return tuple(dict.fromkeys(chosen))
        chosen.append(name)
    chosen += [n for n in extra if n in anywhere and _why_not(n, folders) is None]
    return tuple(dict.fromkeys(chosen))


def notebook_imports(path: Path) -> tuple[list[str], set[str]]:
    """A Python notebook's first imports (up to a statement that could change them) and
    every module its code imports anywhere."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
        language = _language(nb.get("metadata", {}))
    except (OSError, ValueError, KeyError, TypeError):
        return [], set()  # the job will say what is wrong with the notebook
    if language not in ("python", None):
        return [], set()
    found: list[str] = []
    anywhere: set[str] = set()
    bound: set[str] = set()
    stopped = False
    for cell in cells:
        if not (isinstance(cell, dict) and cell.get("cell_type") == "code"):
            continue
        code, magic = _source(cell.get("source", ""))
        tree = _parse(code)
        anywhere |= _all_imports(tree)
        if stopped:
            continue
        if magic or tree is None:
            stopped = True
            continue
        for statement in tree.body:
            if _changes_imports(statement, bound):
                stopped = True
                break
            for name in _imported_by(statement):
                found.append(name)
            bound |= _bound_by(statement)
    return found, anywhere


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


def _source(raw: Any) -> tuple[str, bool]:
    """A cell's Python without IPython's magics and shell escapes (which `ast` cannot read),
    and whether one of those could change what an import loads (`%env`, `!pip install`...)."""
    text = "".join(raw) if isinstance(raw, list) else str(raw)
    kept, magic = [], False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            magic = magic or not stripped.startswith(HARMLESS_MAGICS)
        else:
            kept.append(line)
    return "\n".join(kept), magic


def _parse(code: str) -> ast.Module | None:
    """The code's tree; None where it cannot be read, which stops preloading: always safe."""
    try:
        return parse_source(code)
    except (SyntaxError, ValueError, SystemError):
        return None


def _imported_by(statement: ast.stmt) -> Iterator[str]:
    """Modules a top-level statement imports (also inside a top-level `try`)."""
    if isinstance(statement, ast.Import):
        yield from (alias.name for alias in statement.names)
    elif isinstance(statement, ast.ImportFrom):
        if statement.level == 0 and statement.module:
            yield statement.module
    elif isinstance(statement, ast.Try):
        for inner in statement.body:
            yield from _imported_by(inner)


def _all_imports(tree: ast.Module | None) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _bound_by(statement: ast.stmt) -> set[str]:
    """Names an import statement binds (`np`, `load_dotenv`)."""
    names: set[str] = set()
    for node in ast.walk(statement):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names.add(alias.asname or alias.name.partition(".")[0])
    return names


def _changes_imports(statement: ast.stmt, bound: set[str]) -> bool:
    """Whether `statement` could change what, or how, a later import loads."""
    if isinstance(statement, ast.ImportFrom) and statement.level:
        return True  # the project's own code
    if isinstance(statement, ast.Try):
        inner = [*statement.body, *statement.orelse, *statement.finalbody]
        inner += [s for handler in statement.handlers for s in handler.body]
        return any(_changes_imports(s, bound) for s in inner)
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return False
    for node in ast.walk(statement):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            if any(not isinstance(t, ast.Name) for t in targets):
                return True  # into an object: os.environ[...], sys.path[...], options.x
        if isinstance(node, ast.Call) and _root(node.func) in bound | _CALLS_THAT_CHANGE_EVERYTHING:
            return True
        if isinstance(node, ast.Name | ast.Attribute) and _name(node) in ("environ", "putenv"):
            return True
    return False


def _root(node: ast.expr) -> str | None:
    """`os` for `os.environ.update`; None when the chain starts with a call or subscript."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _name(node: ast.Name | ast.Attribute) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr


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
