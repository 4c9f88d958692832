"""Forge and CI tokens never reach notebook code: a real `nbci run`, forked and fresh kernels.

The notebook prints and glues its whole environment, and runs `env` in a
subprocess; every token variable nbci knows, and the one the config names as
publish's `token_env`, is set for nbci with a value that must appear nowhere in
the executed notebook or the run. A variable that is not a token shows the
environment does reach the kernel.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_notebook

from nbci.config import parse_config
from nbci.errors import ConfigError
from nbci.execute.kernels import SECRET_VARIABLES, kernel_environment

from .support import nbci

OWN_TOKEN = "MY_PUBLISH_TOKEN"
SECRETS = {name: f"secret-{name.lower()}-7f3a" for name in (*SECRET_VARIABLES, OWN_TOKEN)}
VISIBLE = ("NBCI_TEST_VISIBLE", "plain-value-9c1d")
CELLS = [
    "import sys\nFORKED = 'numpy' in sys.modules  # before the notebook's own import of it",
    "import json, os, subprocess, numpy, nbci",
    "print(json.dumps(dict(os.environ)))",
    "print(subprocess.run(['env'], capture_output=True, text=True).stdout)",
    "nbci.glue('environment', json.dumps(dict(os.environ)))",
    "nbci.glue('forked', FORKED)",
]


@pytest.mark.kernel
@pytest.mark.tools
@pytest.mark.parametrize("preload", [True, False], ids=["forked", "no-preload"])
def test_kernels_get_no_tokens(preload: bool, tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_notebook(project / "notebooks" / "env.ipynb", CELLS)
    (project / "nbci.toml").write_text(
        f'notebooks = ["notebooks/*.ipynb"]\ntoken_env = "{OWN_TOKEN}"\n'
    )
    flags = [] if preload else ["--no-preload"]
    done = nbci(["run", "--no-cache", *flags], project, env={**SECRETS, **dict([VISIBLE])})

    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((project / "nbci-out" / "results.json").read_text())
    (notebook,) = results["notebooks"]
    seen = json.loads(notebook["scraps"]["environment"]["value"])
    assert seen[VISIBLE[0]] == VISIBLE[1]  # the environment does reach the kernel
    assert notebook["metrics"]["forked"] is preload  # numpy came with the template
    assert not set(SECRETS) & set(seen)
    everything = [done.stdout, done.stderr]
    everything += [
        p.read_text(errors="replace") for p in (project / "nbci-out").rglob("*") if p.is_file()
    ]
    assert VISIBLE[1] in "".join(everything)
    for name, value in SECRETS.items():
        assert not any(value in text for text in everything), f"${name} reached the notebook"


def test_the_token_variable_is_configured_once_for_run_and_publish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = parse_config({"token_env": OWN_TOKEN}, root=Path("."), file="nbci.toml")
    assert config.token_env == OWN_TOKEN
    monkeypatch.setenv(OWN_TOKEN, "x")
    monkeypatch.setenv("KEPT", "y")
    environment = kernel_environment(1, (OWN_TOKEN,))
    assert OWN_TOKEN not in environment and environment["KEPT"] == "y"
    with pytest.raises(ConfigError, match=r"^nbci\.toml: token_env: expected an environment"):
        parse_config({"token_env": "MY TOKEN"}, root=Path("."), file="nbci.toml")
