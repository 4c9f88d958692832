"""`nbci init`: the config, the CI pipeline and an example notebook, in a user's repository.

The pipeline is the two GitHub Actions workflows, or with `--gitlab` one
`.gitlab-ci.yml`, or with `--bitbucket` one `bitbucket-pipelines.yml`. The
files are package data under `nbci/scaffold_files/`; the workflows there are
the ones this repository runs itself (a test keeps them from drifting; others
validate the GitLab and Bitbucket pipelines against their published schemas).
Written as-is except for two values: the `nbci==` pin becomes the installed
version, and the default branch (`main`) of the workflows becomes the
repository's when git knows it (GitLab's pipeline reads `$CI_DEFAULT_BRANCH`;
Bitbucket's names the branch as a key, `'main':`). Nothing is overwritten
without `force`, and nothing is written when any file is in the way.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nbci import __version__
from nbci._files import write_text_atomic
from nbci.errors import UsageError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _File:
    source: str
    """Below nbci/scaffold_files/."""
    target: str
    """Below the repository root."""


FILES = (
    _File("nbci.toml", "nbci.toml"),
    _File("workflows/nbci.yml", ".github/workflows/nbci.yml"),
    _File("workflows/nbci-publish.yml", ".github/workflows/nbci-publish.yml"),
    _File("notebooks/example.ipynb", "notebooks/example.ipynb"),
)
GITLAB_FILES = (
    _File("nbci.toml", "nbci.toml"),
    _File("gitlab/gitlab-ci.yml", ".gitlab-ci.yml"),
    _File("notebooks/example.ipynb", "notebooks/example.ipynb"),
)
BITBUCKET_FILES = (
    _File("nbci.toml", "nbci.toml"),
    _File("bitbucket/bitbucket-pipelines.yml", "bitbucket-pipelines.yml"),
    _File("notebooks/example.ipynb", "notebooks/example.ipynb"),
)
FILES_DIR = "scaffold_files"
"""The package data folder holding what `init` writes."""
_PIN = re.compile(r'"nbci==[^"]*"')
_BRANCHES = "branches: [main]"
_BITBUCKET_BRANCH = "'main':"
_BRANCH_NAME = re.compile(r"[A-Za-z0-9._/-]{1,100}")


def init(
    root: Path, *, force: bool = False, gitlab: bool = False, bitbucket: bool = False
) -> list[Path]:
    """Write the scaffold into `root` (for GitLab CI with `gitlab`, Bitbucket Pipelines with
    `bitbucket`); returns the files written.

    Raises UsageError, before writing anything, when a file exists and not `force`.
    The config goes to nbci.toml unless pyproject.toml already has `[tool.nbci]`.
    """
    chosen = GITLAB_FILES if gitlab else BITBUCKET_FILES if bitbucket else FILES
    configured = _configured_in_pyproject(root)
    files = [f for f in chosen if not (f.target == "nbci.toml" and configured)]
    if len(files) < len(chosen):
        logger.info("pyproject.toml already has [tool.nbci]: no nbci.toml written")
    existing = [f.target for f in files if (root / f.target).exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise UsageError(
            f"{existing[0]} already exists{more}: nbci init overwrites nothing without --force"
        )
    branch = default_branch(root)
    written = []
    for file in files:
        text = render(file.source, branch=branch)
        written.append(write_text_atomic(root / file.target, text))
    return written


def template(source: str) -> str:
    """A scaffold file as shipped."""
    return (resources.files("nbci") / FILES_DIR / source).read_text(encoding="utf-8")


def render(source: str, *, branch: str = "main") -> str:
    """A scaffold file as `init` writes it."""
    text = template(source)
    if source.startswith(("workflows/", "gitlab/", "bitbucket/")):
        text = _PIN.sub(f'"nbci=={__version__}"', text)
        text = text.replace(_BRANCHES, f"branches: [{branch}]")
        text = text.replace(_BITBUCKET_BRANCH, f"'{branch}':")
    return text


def default_branch(root: Path) -> str:
    """The remote's default branch as git knows it, else `main`."""
    try:
        done = subprocess.run(
            ["git", "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "main"
    name = done.stdout.strip().removeprefix("origin/")
    return name if done.returncode == 0 and _BRANCH_NAME.fullmatch(name) else "main"


def _configured_in_pyproject(root: Path) -> bool:
    path = root / "pyproject.toml"
    try:
        with path.open("rb") as f:
            return "nbci" in tomllib.load(f).get("tool", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
