from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbci.config import Config, load_config, parse_config
from nbci.errors import ConfigError

FULL = """
[tool.nbci]
notebooks = ["notebooks/*.ipynb"]
exclude = ["notebooks/scratch*.ipynb"]
kernel = "python3"
cell_timeout = 120
timeout = 900
jobs = 3
out = "ci-out"
cache_dir = ".cache/nbci"
cache_max_mb = 512
cache_max_age_days = 7
templates = "report-templates"
name = "models"
assets_branch = "nbci-figures"
higher_is_better = ["throughput"]
lower_is_better = ["latency_*"]
deps = ["data/shared.csv"]

[tool.nbci.parameters]
seed = 1

[[tool.nbci.notebook]]
path = "notebooks/train.ipynb"
parameters = { model = "svc" }
matrix = { C = [0.1, 1.0] }
deps = ["data/*.csv"]
timeout = 300
"""


def test_every_key_is_read_from_pyproject(project: Path) -> None:
    (project / "pyproject.toml").write_text(FULL)
    config = load_config(project)
    assert config.root == project.resolve()
    assert config.source == "pyproject.toml: [tool.nbci]"
    assert config.notebooks == ("notebooks/*.ipynb",)
    assert config.exclude == ("notebooks/scratch*.ipynb",)
    assert (config.kernel, config.cell_timeout, config.timeout, config.jobs) == (
        "python3",
        120.0,
        900.0,
        3,
    )
    assert config.out == Path("ci-out")
    assert config.cache_dir == Path(".cache/nbci")
    assert (config.cache_max_mb, config.cache_max_age_days) == (512.0, 7.0)
    assert config.templates == Path("report-templates")
    assert (config.name, config.assets_branch) == ("models", "nbci-figures")
    assert config.higher_is_better == ("throughput",)
    assert config.lower_is_better == ("latency_*",)
    assert config.deps == ("data/shared.csv",)
    assert config.parameters == {"seed": 1}
    (entry,) = config.entries
    assert entry.pattern == "notebooks/train.ipynb"
    assert entry.parameters == {"model": "svc"}
    assert entry.matrix == {"C": (0.1, 1.0)}
    assert entry.deps == ("data/*.csv",)
    assert entry.timeout == 300.0


def test_nbci_toml_is_read_and_found_from_a_subfolder(project: Path) -> None:
    (project / "nbci.toml").write_text('notebooks = ["nb/*.ipynb"]\njobs = 1\n')
    (project / "nb").mkdir()
    config = load_config(project / "nb")
    assert config.source == "nbci.toml:"
    assert config.notebooks == ("nb/*.ipynb",)
    assert config.root == project.resolve()


def test_no_config_gives_defaults(project: Path) -> None:
    config = load_config(project)
    assert config.source is None
    assert config.notebooks == ("notebooks/**/*.ipynb",)
    assert config.out == Path("nbci-out")


def test_both_files_configuring_nbci_is_an_error(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.nbci]\njobs = 1\n")
    (project / "nbci.toml").write_text("jobs = 2\n")
    with pytest.raises(ConfigError, match=r"both here and in .*pyproject\.toml"):
        load_config(project)


def test_explicit_config_file(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text("jobs = 5\n")
    assert load_config(project, config_file=other).jobs == 5
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(project, config_file=tmp_path / "missing.toml")


def test_invalid_toml_names_the_file(project: Path) -> None:
    (project / "nbci.toml").write_text("jobs = = 2\n")
    with pytest.raises(ConfigError, match=r"nbci\.toml: not valid TOML"):
        load_config(project)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("jobz = 2", r"nbci.toml: jobz: unknown key \(did you mean 'jobs'\?\)"),
        ("jobs = 0", r"nbci.toml: jobs: expected a whole number ≥ 1, got 0"),
        ("jobs = true", r"jobs: expected a whole number ≥ 1, got True"),
        ("jobs = 1.5", r"jobs: expected a whole number"),
        ('cell_timeout = "10"', r"cell_timeout: expected a positive number of seconds, got '10'"),
        ("timeout = -1", r"timeout: expected a positive number of seconds"),
        ("timeout = inf", r"timeout: expected a finite number of seconds"),
        ("notebooks = 3", r"notebooks: expected a list of strings, got 3"),
        ('notebooks = [""]', r"notebooks: expected a list of strings"),
        ("kernel = 1", r"kernel: expected a non-empty string, got 1"),
        ("parameters = 1", r"parameters: expected a table, got 1"),
        ('name = "a b"', r"name: expected letters, digits and - _ \. / only"),
        ('assets_branch = "../x"', r"assets_branch: expected letters"),
        ("cache_max_mb = 0", r"cache_max_mb: expected a positive number of megabytes"),
        ("notebook = 1", r"notebook: expected a list, got 1"),
        ("[[notebook]]\nmatrix = {a = [1]}", r"notebook\[0\]\.path: expected a notebook path"),
        ('[[notebook]]\npath = "a"\npath2 = 1', r"notebook\[0\]\.path2: unknown key"),
        ('[[notebook]]\npath = "a"\nmatrix = {a = []}', r"notebook\[0\]\.matrix\.a: expected a"),
        ('[[notebook]]\npath = "a"\nmatrix = {a = 1}', r"notebook\[0\]\.matrix\.a: expected a"),
        ('[[notebook]]\npath = "a"\ntimeout = "x"', r"notebook\[0\]\.timeout: expected a positive"),
        ("higher_is_better = [1]", r"higher_is_better: expected a list of strings"),
    ],
)
def test_wrong_values_are_one_line_naming_file_and_key(
    project: Path, toml: str, message: str
) -> None:
    (project / "nbci.toml").write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(project)
    assert "\n" not in str(raised.value)


def test_pyproject_messages_name_the_table(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.nbci]\ncell_timout = 3\n")
    with pytest.raises(ConfigError) as raised:
        load_config(project)
    assert str(raised.value) == (
        "pyproject.toml: [tool.nbci] cell_timout: unknown key (did you mean 'cell_timeout'?)"
    )


def test_gates_are_parsed_and_bad_rules_are_config_errors(tmp_path: Path) -> None:
    config = parse_config({"gates": {"accuracy": {"min": 0.9}}}, root=tmp_path, file="nbci.toml")
    assert len(config.gates) == 1
    with pytest.raises(ConfigError) as raised:
        parse_config(
            {"gates": {"accuracy": {"mni": 0.9}}},
            root=tmp_path,
            file="pyproject.toml",
            in_pyproject=True,
        )
    assert str(raised.value).startswith('pyproject.toml: [tool.nbci.gates] "accuracy": unknown')


def test_config_is_frozen(tmp_path: Path) -> None:
    config = Config(root=tmp_path)
    with pytest.raises(AttributeError):
        config.jobs = 3  # type: ignore[misc]


def test_the_shipped_schema_is_standard_and_takes_every_key() -> None:
    """Editors and other tools can check a configuration with the schema file alone."""
    import tomllib
    from importlib import resources

    from jsonschema import Draft202012Validator

    text = resources.files("nbci.schemas").joinpath("config.schema.json").read_text("utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    table = tomllib.loads(FULL)["tool"]["nbci"]
    table["gates"] = {"accuracy": {"min": 0.9}}
    assert list(validator.iter_errors(table)) == []
    assert [e.json_path for e in validator.iter_errors({**table, "jobz": 1, "jobs": 0})] == [
        "$",
        "$.jobs",
    ]


def test_tool_nbci_inside_nbci_toml_says_where_the_keys_go(project: Path) -> None:
    (project / "nbci.toml").write_text('[tool.nbci]\nnotebooks = ["nb/*.ipynb"]\n')
    with pytest.raises(ConfigError) as error:
        load_config(project)
    assert str(error.value) == (
        "nbci.toml: [tool.nbci]: in nbci.toml the keys go at the top level, without "
        "[tool.nbci] (that table is for pyproject.toml)"
    )
    (project / "nbci.toml").write_text("tool = 3\n")
    with pytest.raises(ConfigError, match=r"^nbci\.toml: tool: unknown key"):
        load_config(project)
