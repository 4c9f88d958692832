"""Where a publish goes on Bitbucket: the repository, pull request and commit.

Bitbucket Pipelines describes the build in variables (support.atlassian.com/
bitbucket-cloud/docs/variables-and-secrets): `BITBUCKET_REPO_FULL_NAME`
(`workspace/slug`), `BITBUCKET_COMMIT` (the commit built: in a pull request
pipeline the source branch's head), `BITBUCKET_PR_ID`,
`BITBUCKET_PR_DESTINATION_BRANCH`, `BITBUCKET_BRANCH`, `BITBUCKET_BUILD_NUMBER`.
The flags override each value and are how Data Center, whose builds run in
Jenkins, Bamboo or another CI, is reached: `--repo PROJECT/slug`, `--pr ID`,
`--sha SHA`, `--api-url https://bitbucket.example.com`.

Which API: `--api-url` ending in `/2.0` (default `https://api.bitbucket.org/2.0`)
is Bitbucket Cloud's REST 2.0; any other address is a Data Center / Server
instance (its root, or its `/rest/api/1.0`), spoken to in REST 1.0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from nbci.errors import UsageError
from nbci.publish.forge import checked_sha

CLOUD_API_URL = "https://api.bitbucket.org/2.0"
CLOUD_WEB_URL = "https://bitbucket.org"
_REPO = re.compile(r"~?[A-Za-z0-9_.{}-]{1,128}/[A-Za-z0-9_.-]{1,128}")
_DC_API = re.compile(r"/rest/api/(1\.0|latest)$")

Flavour = Literal["cloud", "datacenter"]


@dataclass(frozen=True)
class BitbucketContext:
    flavour: Flavour
    api_url: str
    """Cloud: `https://api.bitbucket.org/2.0`; Data Center: the server's root address."""
    web_url: str
    """`https://bitbucket.org`, or the Data Center server's root address."""
    owner: str
    """The Cloud workspace, or the Data Center project key (`~user` for a personal one)."""
    slug: str
    pr: int | None = None
    sha: str | None = None
    """The commit the build tested: a pull request's source head."""
    branch: str | None = None
    """The branch pushed to (a branch pipeline)."""
    destination_branch: str | None = None
    run_url: str | None = None
    in_pipelines: bool = False

    @property
    def repo(self) -> str:
        return f"{self.owner}/{self.slug}"

    @property
    def cloud(self) -> bool:
        return self.flavour == "cloud"


def is_bitbucket_pipelines(env: Mapping[str, str]) -> bool:
    """Bitbucket Pipelines sets `BITBUCKET_BUILD_NUMBER` and `BITBUCKET_REPO_FULL_NAME`."""
    return bool(env.get("BITBUCKET_BUILD_NUMBER") and env.get("BITBUCKET_REPO_FULL_NAME"))


def resolve_bitbucket_context(
    env: Mapping[str, str],
    *,
    repo: str | None = None,
    pr: int | None = None,
    sha: str | None = None,
    api_url: str | None = None,
    run_url: str | None = None,
) -> BitbucketContext:
    """The publish target from Pipelines' variables, each flag overriding its value."""
    in_pipelines = is_bitbucket_pipelines(env)
    full_name = (repo or env.get("BITBUCKET_REPO_FULL_NAME") or "").strip()
    if not _REPO.fullmatch(full_name):
        shown = f" (got {full_name!r})" if full_name else ""
        raise UsageError(
            f"no Bitbucket repository to publish to{shown}: pass --repo WORKSPACE/SLUG "
            "(Data Center: PROJECT/SLUG), or run inside Bitbucket Pipelines"
        )
    owner, slug = full_name.split("/")
    flavour, api, web = _api(api_url)
    pr_id = pr if pr is not None else _positive(env.get("BITBUCKET_PR_ID"))
    commit = checked_sha(sha or env.get("BITBUCKET_COMMIT") or None, sha256=False)
    build = env.get("BITBUCKET_BUILD_NUMBER", "")
    if run_url is None and in_pipelines and build.isdigit():
        run_url = f"{web}/{full_name}/pipelines/results/{build}"
    return BitbucketContext(
        flavour=flavour,
        api_url=api,
        web_url=web,
        owner=owner,
        slug=slug,
        pr=pr_id,
        sha=commit,
        branch=None if pr_id is not None else (env.get("BITBUCKET_BRANCH") or None),
        destination_branch=env.get("BITBUCKET_PR_DESTINATION_BRANCH") or None,
        run_url=run_url,
        in_pipelines=in_pipelines,
    )


def _api(api_url: str | None) -> tuple[Flavour, str, str]:
    """Which API `--api-url` names: (flavour, API address, web address)."""
    value = (api_url or CLOUD_API_URL).strip().rstrip("/")
    split = urlsplit(value)
    if split.scheme not in ("http", "https") or not split.netloc or split.query:
        raise UsageError(f"--api-url: expected an http(s) URL, got {api_url!r}")
    if split.path.endswith("/2.0"):
        if split.netloc == "api.bitbucket.org":
            return "cloud", value, CLOUD_WEB_URL
        return "cloud", value, value.removesuffix("/2.0")
    root = _DC_API.sub("", value)
    return "datacenter", root, root


def _positive(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text.isdigit() and 0 < int(text) < 10**10 else None
