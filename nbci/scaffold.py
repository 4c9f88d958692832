"""`nbci init`: the config, the CI pipeline and an example notebook, in a user's repository.

The pipeline is the two GitHub Actions workflows, or with `--gitlab` one
`.gitlab-ci.yml`, or with `--bitbucket` one `bitbucket-pipelines.yml`. The
files are package data under `nbci/scaffold_files/`; the workflows there are
the ones this repository runs itself (a test keeps them from drifting; others
validate the GitLab and Bitbucket pipelines against their published schemas).
Written as-is except for two values: the `nbci==` pin becomes what CI must
install to get this nbci (`install_requirement`), and the default branch
(`main`) of the workflows becomes the repository's (GitLab's pipeline reads
`$CI_DEFAULT_BRANCH`; Bitbucket's names the branch as a key, `'main':`).
Nothing is overwritten without `force`, and nothing is written when any file
is in the way; `.gitignore` only gains the lines for
nbci's output and cache folders.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

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
IGNORED = ("nbci-out/", ".nbci-cache/")
"""nbci's default output and cache folders, added to `.gitignore`."""
_PIN = re.compile(r'"nbci==[^"]*"')
_BRANCHES = "branches: [main]"
_BITBUCKET_BRANCH = "'main':"
_BRANCH_NAME = re.compile(r"[A-Za-z0-9._/-]{1,100}")
_REQUIREMENT = re.compile(r"[A-Za-z0-9.][A-Za-z0-9 ._~:/?#@!&+,;=%<>\[\]*()-]{0,499}")
"""What `--install` may be: a pip requirement or URL that is safe inside the YAML and
the shell's double quotes it is written into (no `"`, `$`, backquote, backslash)."""
_SCRIPT_INSTALL = re.compile(r'^( *- )(python -m pip install "nbci==[^"]*")$', re.MULTILINE)
"""The install line of a GitLab or Bitbucket script step."""
_GIT_FOR_PIP = "apt-get update -qq && apt-get install -y -qq --no-install-recommends git"
"""The python:*-slim images of GitLab and Bitbucket have no git, which pip needs for `git+`."""


@dataclass(frozen=True)
class Branch:
    name: str
    source: str
    """How it was found, for the message: the remote's default, the current branch, or a guess."""


@dataclass(frozen=True)
class Scaffold:
    """What `init` did, for the CLI to say."""

    written: list[Path]
    requirement: str
    """What the pipeline installs (`pip install "<requirement>"`)."""
    branch: Branch | None
    """The default branch the GitHub workflows run on (None for GitLab: it reads its own)."""
    ignored: tuple[str, ...]
    """The lines added to `.gitignore`."""
    gitlab: bool
    bitbucket: bool = False


def init(
    root: Path,
    *,
    force: bool = False,
    gitlab: bool = False,
    bitbucket: bool = False,
    install: str | None = None,
) -> Scaffold:
    """Write the scaffold into `root` (GitLab CI with `gitlab`, Bitbucket Pipelines with
    `bitbucket`).

    The pipeline installs `install`, a pip requirement, or else this nbci as it
    was installed (`install_requirement`). Raises UsageError, before writing
    anything, when a file exists and not `force`, or when `install` is unsafe
    or missing for a local nbci. The config goes to nbci.toml unless
    pyproject.toml already has `[tool.nbci]`.
    """
    requirement = check_requirement(install) if install is not None else install_requirement()
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
        text = render(file.source, branch=branch.name, requirement=requirement)
        written.append(write_text_atomic(root / file.target, text))
    ignored = _ignore_outputs(root)
    return Scaffold(written, requirement, None if gitlab else branch, ignored, gitlab, bitbucket)


def template(source: str) -> str:
    """A scaffold file as shipped."""
    return (resources.files("nbci") / FILES_DIR / source).read_text(encoding="utf-8")


def render(source: str, *, branch: str = "main", requirement: str | None = None) -> str:
    """A scaffold file as `init` writes it (installing `requirement`, default this version)."""
    text = template(source)
    if source.startswith(("workflows/", "gitlab/", "bitbucket/")):
        requirement = requirement or f"nbci=={__version__}"
        if source.startswith(("gitlab/", "bitbucket/")) and "git+" in requirement:
            text = _SCRIPT_INSTALL.sub(rf"\1{_GIT_FOR_PIP}\n\1\2", text)
        text = _PIN.sub(f'"{requirement}"', text)
        text = text.replace(_BRANCHES, f"branches: [{branch}]")
        text = text.replace(_BITBUCKET_BRANCH, f"'{branch}':")
    return text


# -- what CI installs ------------------------------------------------------------------


def install_requirement() -> str:
    """What CI must `pip install` to get this nbci, read from how it was installed.

    From a package index (no PEP 610 `direct_url.json`): this version. From a VCS
    URL: that URL at the installed commit; from an archive URL: that URL. From a
    local folder, file or editable checkout, which no CI runner can reach: a
    UsageError asking for `--install`.
    """
    try:
        distribution = metadata.distribution("nbci")
    except metadata.PackageNotFoundError:
        raise UsageError(_local_install("source that pip did not install")) from None
    direct_url = _direct_url(distribution)
    requirement = requirement_from(distribution.version, direct_url)
    if requirement is None:
        raise UsageError(_local_install(_where(direct_url), _checkout_requirement(direct_url)))
    try:
        return check_requirement(requirement)
    except UsageError:
        raise UsageError(
            f"nbci was installed from {requirement!r}, which nbci init cannot write into a "
            "pipeline: name what CI installs with --install SPEC"
        ) from None


def requirement_from(version: str, direct_url: Mapping[str, Any] | None) -> str | None:
    """The requirement for nbci installed as PEP 610's `direct_url` says; None when local."""
    if direct_url is None:
        return f"nbci=={version}"
    url = direct_url.get("url")
    if not isinstance(url, str) or url.startswith("file:"):
        return None
    vcs = direct_url.get("vcs_info")
    if isinstance(vcs, Mapping):
        commit = vcs.get("commit_id")
        at = f"@{commit}" if isinstance(commit, str) and commit else ""
        requirement = f"nbci @ {vcs.get('vcs', 'git')}+{url}{at}"
    elif isinstance(direct_url.get("archive_info"), Mapping):
        requirement = f"nbci @ {url}"
    else:
        return None
    subdirectory = direct_url.get("subdirectory")
    if isinstance(subdirectory, str) and subdirectory:
        requirement += f"#subdirectory={subdirectory}"
    return requirement


def check_requirement(requirement: str) -> str:
    """`requirement` if it can be written into the pipeline's install line, else UsageError."""
    requirement = requirement.strip()
    if not _REQUIREMENT.fullmatch(requirement) or ": " in requirement or " #" in requirement:
        raise UsageError(
            f"--install: {requirement!r} is not a requirement nbci init can write: give one "
            "pip requirement such as 'nbci==0.1.0' or 'nbci @ git+https://HOST/OWNER/nbci@COMMIT'"
            " (no quotes, $, backslashes, ': ' or ' #')"
        )
    return requirement


def _direct_url(distribution: metadata.Distribution) -> dict[str, Any] | None:
    text = distribution.read_text("direct_url.json")
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _where(direct_url: Mapping[str, Any] | None) -> str:
    data = direct_url or {}
    url = str(data.get("url", ""))
    editable = bool((data.get("dir_info") or {}).get("editable"))
    place = url.removeprefix("file://") or "a local file"
    return f"{'an editable checkout' if editable else 'a local copy'} ({place})"


def _checkout_requirement(direct_url: Mapping[str, Any] | None) -> str | None:
    """For a local folder that is a git checkout with a remote: its origin at its commit."""
    url = str((direct_url or {}).get("url", ""))
    if not url.startswith("file://"):
        return None
    folder = Path(unquote(urlsplit(url).path))
    if not folder.is_dir():
        return None
    origin = _git(folder, "remote", "get-url", "origin")
    commit = _git(folder, "rev-parse", "HEAD")
    if not origin or not commit or not origin.startswith(("https://", "ssh://", "git@")):
        return None
    if origin.startswith("git@"):  # scp-like syntax, which pip does not take
        origin = "ssh://" + origin.replace(":", "/", 1)
    return f"nbci @ git+{origin}@{commit}"


def _local_install(where: str, checkout: str | None = None) -> str:
    example = (
        f"'{checkout}' (its origin at its commit, once pushed)"
        if checkout
        else "'nbci @ git+https://github.com/OWNER/nbci@COMMIT'"
    )
    return (
        f"this nbci was installed from {where}, which a CI runner cannot install: name what "
        f"the pipeline installs with --install SPEC, e.g. {example}, what nbci's own action "
        f"(uses: OWNER/nbci@COMMIT) installs, or 'nbci=={__version__}' from a package index"
    )


# -- the repository ---------------------------------------------------------------------


def default_branch(root: Path) -> Branch:
    """The remote's default branch as git knows it, else the current branch, else `main`."""
    remote = _git(root, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
    if remote is not None and _BRANCH_NAME.fullmatch(name := remote.removeprefix("origin/")):
        return Branch(name, "the remote's default branch")
    current = _git(root, "symbolic-ref", "--quiet", "--short", "HEAD")
    if current is not None and _BRANCH_NAME.fullmatch(current):
        return Branch(current, "the current branch; git knows no remote default")
    return Branch("main", "git knows no branch here")


def _git(root: Path, *args: str) -> str | None:
    """The output of `git args` in `root`, or None when it fails."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _ignore_outputs(root: Path) -> tuple[str, ...]:
    """Add nbci's output and cache folders to `.gitignore` unless it names them already."""
    path = root / ".gitignore"
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError):
        logger.warning("could not read %s: add %s to it yourself", path, " and ".join(IGNORED))
        return ()
    present = {line.strip().strip("/") for line in text.splitlines()}
    missing = tuple(name for name in IGNORED if name.strip("/") not in present)
    if missing:
        lines = "".join(f"/{name}\n" for name in missing)
        separator = "\n" if text and not text.endswith("\n") else ""
        write_text_atomic(path, f"{text}{separator}# nbci's outputs and cache\n{lines}")
    return missing


def next_steps(scaffold: Scaffold) -> list[str]:
    """What the user does after `init`, one line each."""
    lines = [f'The pipeline installs nbci with: pip install "{scaffold.requirement}"']
    commit = "the files above"
    if scaffold.ignored:
        lines.append(f"Added {' and '.join(scaffold.ignored)} to .gitignore")
        commit += " and .gitignore"
    if scaffold.gitlab:
        return [
            *lines,
            f"Next: commit {commit}, and push them to the default branch;",
            "  set GITLAB_TOKEN as a masked CI/CD variable (a project access token, Developer "
            "role, api scope): without it nothing is published.",
        ]
    assert scaffold.branch is not None
    branch = scaffold.branch.name
    if scaffold.bitbucket:
        return [
            *lines,
            f"The pipeline takes {branch} as the default branch ({scaffold.branch.source}); "
            "edit its `branches:` key in bitbucket-pipelines.yml if it is another.",
            f"Next: commit {commit}, and push them to {branch};",
            "  set BITBUCKET_TOKEN as a secured repository variable (a repository access token "
            "with repository:write and pullrequest:write): without it nothing is published.",
        ]
    return [
        *lines,
        f"The workflows take {branch} as the default branch ({scaffold.branch.source}); "
        "edit `branches:` in .github/workflows/nbci.yml if it is another.",
        f"Next: commit {commit}, and push them to {branch} first:",
        "  GitHub runs nbci-publish.yml only from the default branch, so pull requests get "
        "no comment until it is there.",
        "  No secret to set: the workflows use the job's own GITHUB_TOKEN.",
    ]


def _configured_in_pyproject(root: Path) -> bool:
    path = root / "pyproject.toml"
    try:
        with path.open("rb") as f:
            return "nbci" in tomllib.load(f).get("tool", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
